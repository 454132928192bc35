//! Step 2 of the feeder's loop: one round of socket I/O with the worker process: poll, write
//! frames, read and handle what the worker reports.

use super::*;

impl Feeder {
    /// Step 2: one round of socket I/O.
    pub(super) fn pump(&mut self) {
        self.forward_releases();
        let live = self.live.as_mut().expect("pump needs a process");
        let want_write = live.unsent < live.inflight.len() || !live.control.is_empty();
        let mut timeout = POLL_TICK;
        if live.inflight.iter().any(|f| !f.started && !f.recalled) {
            // Something waits in the window: look again soon whether another slot went idle
            // (see `recall_waiting`; an idle feeder does not wake this one).
            timeout = timeout.min(RECALL_CHECK);
        }
        if let (Some(limit), Some(since)) = (faults::running_limit(live, &self.shared.config), live.running_since) {
            if live.kill.is_none() {
                timeout = timeout.min((since + limit).saturating_duration_since(Instant::now()));
            }
        }
        // The slot's doorbell (`TaskHandle::kill`); the exit descriptor again when it has none.
        let bell = self.slot.doorbell.fd().unwrap_or(live.process.exit_fd());
        let watch = [(live.process.socket.as_fd(), want_write), (live.process.exit_fd(), false), (bell, false)];
        let (ready, exited, rung) = match sys::poll_many(&watch, Some(timeout)) {
            Ok(ready) => (ready[0], ready[1].readable || ready[1].hangup, ready[2].readable),
            Err(e) => return self.on_death(Some(format!("poll failed: {e}"))),
        };
        if (rung || self.slot.doorbell.fd().is_none()) && self.slot.doorbell.drain() {
            self.answer_doorbell();
        }
        if exited && !(ready.readable || ready.hangup) {
            // Dead, although its socket is still open (a process it started holds it).
            return self.on_death(None);
        }
        if ready.writable {
            // A failed write means the worker is gone; its exit status says why.
            if self.write_some().is_err() {
                return self.on_death(None);
            }
        }
        if ready.readable || ready.hangup {
            match self.read_some() {
                Ok(true) => {}
                Ok(false) => return self.on_death(None),
                Err(e) => {
                    self.live.as_ref().expect("live").process.kill();
                    return self.on_death(Some(format!("the worker broke the protocol ({e})")));
                }
            }
        }
        self.check_timers();
    }

    /// Writes as many unsent frames as the socket takes.
    pub(super) fn write_some(&mut self) -> std::io::Result<()> {
        let live = self.live.as_mut().expect("live");
        loop {
            // The feeder's own frames (`SHARE`, `FORGET`) go between two task frames, each
            // whole, before the next task frame begins: a `SHARE` precedes the task that needs it.
            if live.offset == 0 && !live.control.is_empty() {
                match sys::send_vectored_fds(live.process.socket.as_fd(), &[IoSlice::new(&live.control)], &[]) {
                    Ok(n) => drop(live.control.drain(..n)),
                    Err(e) if e.kind() == IoKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == IoKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            if live.unsent >= live.inflight.len() {
                return Ok(());
            }
            let mut slices = Vec::with_capacity(MAX_IOVECS);
            let first = &live.inflight[live.unsent].env;
            slices.push(IoSlice::new(&first.frame[live.offset..]));
            // A frame's descriptors go with the call that writes its first byte: a frame that
            // carries some begins a call of its own (see wire.rs).
            let fds: Vec<_> =
                if live.offset == 0 { first.segments.iter().map(|s| s.fd()).collect() } else { Vec::new() };
            // More frames in the same call, unless own frames wait to go in after this one.
            let more = if live.control.is_empty() { MAX_IOVECS - 1 } else { 0 };
            for f in live.inflight.iter().skip(live.unsent + 1).take(more) {
                if !f.env.segments.is_empty() {
                    break;
                }
                slices.push(IoSlice::new(&f.env.frame));
            }
            match sys::send_vectored_fds(live.process.socket.as_fd(), &slices, &fds) {
                Ok(mut n) => {
                    while n > 0 {
                        let left = live.inflight[live.unsent].env.frame.len() - live.offset;
                        if n >= left {
                            n -= left;
                            live.unsent += 1;
                            live.offset = 0;
                        } else {
                            live.offset += n;
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == IoKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == IoKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads and handles everything available; false on end of stream.
    pub(super) fn read_some(&mut self) -> Result<bool, WireError> {
        loop {
            let live = self.live.as_mut().expect("live");
            let got = live.reader.fill_socket(live.process.socket.as_fd());
            match got {
                Ok(0) => {
                    self.handle_frames()?;
                    return Ok(false);
                }
                Ok(_) => self.handle_frames()?,
                Err(e) if e.kind() == IoKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == IoKind::Interrupted => {}
                Err(_) => return Ok(false),
            }
        }
    }

    pub(super) fn handle_frames(&mut self) -> Result<(), WireError> {
        let shared = &self.shared;
        let slot = &self.slot;
        let observe = &mut self.observe;
        let live = self.live.as_mut().expect("live");
        while let Some((frame, fds)) = live.reader.next_frame_fds()? {
            if frame.kind == wire::RELEASED {
                let inodes = wire::parse_u64s(frame.body)?;
                live.kept.retain(|s| !s.own_inode().is_some_and(|ino| inodes.contains(&ino)));
                continue;
            }
            // Every report is about the first task in flight, in the order they were written: a
            // task taken back is answered `SKIPPED` (and nothing else), any other one `STARTED`
            // then `DONE`. (A task's id may be in flight twice: taken back, then sent again.)
            let skipped = frame.kind == wire::SKIPPED;
            let front = live.inflight.front_mut().filter(|f| f.recalled == skipped && f.env.id == frame.id);
            let Some(front) = front else {
                return Err(WireError(format!("frame kind {} for task {} which is not next", frame.kind, frame.id)));
            };
            match frame.kind {
                wire::SKIPPED if live.unsent > 0 => {
                    live.inflight.pop_front();
                    live.unsent -= 1;
                    // The worker reads its input: the next task is owed from now.
                    live.front_since = Instant::now();
                    live.held_back = false;
                    slot.inflight.store(live.inflight.iter().filter(|f| !f.recalled).count(), Ordering::SeqCst);
                }
                wire::STARTED if !front.started && live.unsent > 0 => {
                    front.started = true;
                    live.running_since = Some(Instant::now());
                }
                wire::FAULT if front.started => live.fault = Some(wire::parse_fault(frame.body)?),
                wire::DONE if live.unsent > 0 => {
                    let (done, elapsed_ns) = wire::parse_done(frame.body)?;
                    let f = live.inflight.pop_front().expect("front exists");
                    if wire::done_kept(frame.body) {
                        // Only recyclable ones matter: a sealed one is never written again.
                        for segment in f.env.segments.iter().filter(|s| s.own_inode().is_some()) {
                            if !live.kept.iter().any(|k| Arc::ptr_eq(k, segment)) {
                                live.kept.push(segment.clone());
                            }
                        }
                    }
                    live.unsent -= 1;
                    live.running_since = None;
                    live.front_since = Instant::now();
                    live.held_back = false;
                    let sample = elapsed_ns as f64;
                    self.avg_ns = if self.avg_ns <= 0.0 { sample } else { 0.8 * self.avg_ns + 0.2 * sample };
                    // Counters first: whoever `join` wakes must see the task counted as done.
                    slot.tasks_run.fetch_add(1, Ordering::SeqCst);
                    slot.inflight.store(live.inflight.iter().filter(|f| !f.recalled).count(), Ordering::SeqCst);
                    let task = (f.env.completion.task(), f.env.completion.count(), f.env.id, f.env.frame.len());
                    observe.done(task, elapsed_ns, frame.body.len(), live.front_since, live.inflight.is_empty());
                    f.env.completion.set_elapsed(elapsed_ns);
                    // The result's segments are mapped first (one of ours coming back is found
                    // while the task still holds it); then the task's segments go back to the
                    // pool (and the shared values it kept alive may be released), before
                    // whoever waits for it wakes: a caller that sends its next buffer at once
                    // finds the segment free.
                    let outcome = outcome(done, fds);
                    let completion = f.env.completion.clone();
                    drop(f);
                    settle(&completion, outcome);
                    live.idle_since = Instant::now();
                    // After every task (a read of /proc/PID/statm, a few µs, only when a ceiling
                    // is set): a fresh worker whose first task grows it is caught too.
                    if let Some(ceiling) = shared.config.max_worker_memory {
                        if sys::rss_bytes(live.process.pid).is_some_and(|rss| rss > ceiling) {
                            live.retiring = true;
                            observe.recycling(live.process.pid, "max_worker_memory");
                        }
                    }
                }
                kind => return Err(WireError(format!("unexpected frame kind {kind} for task {}", frame.id))),
            }
        }
        Ok(())
    }
}

/// What a `DONE` report means for its task: the result (its out-of-band segments mapped), or
/// the error. `fds`: the descriptors that came with the report (closed here unless its outputs
/// keep them).
fn outcome(done: Done<'_>, fds: Vec<std::os::fd::OwnedFd>) -> Result<crate::bytes::Encoded, ErrorKind> {
    match done {
        Done::Ok(bytes) => Ok(crate::bytes::Encoded::new(bytes.to_vec(), fds)),
        Done::Panic { message, location, .. } => {
            let location = (!location.is_empty()).then(|| location.to_string());
            Err(ErrorKind::Panic { message: message.to_string(), location })
        }
        Done::Decode(message) => {
            Err(ErrorKind::Codec { stage: "decoding the argument in the worker", message: message.to_string() })
        }
        Done::Encode(message) => {
            Err(ErrorKind::Codec { stage: "encoding the result in the worker", message: message.to_string() })
        }
        Done::Unknown => Err(ErrorKind::NotRegistered),
    }
}

/// Completes the task's handle with its outcome.
fn settle(completion: &Completion, outcome: Result<crate::bytes::Encoded, ErrorKind>) {
    match outcome {
        Ok(encoded) => completion.complete(Ok(encoded)),
        Err(kind) => completion.fail(kind),
    }
}
