//! What the feeder does when a worker is slow, stuck or gone: taking back tasks written ahead,
//! timeouts, and settling every task of a worker that died.

use super::*;

impl Feeder {
    /// Takes back the tasks queued behind the front one when they would wait while another
    /// slot idles: the front task has been running longer than [`LONG_TASK`],
    /// or the worker has not taken it for [`STALL`] (stopped, or a task ate its input). Each is
    /// taken back through the claim ring, so it runs exactly once wherever it ends up. With a
    /// `task_timeout`, a worker that answers nothing within it, neither taking its next task
    /// nor skipping one taken back, is killed (no task fails: none of them started).
    pub(super) fn recall_waiting(&mut self) {
        let Some(live) = self.live.as_mut() else { return };
        let now = Instant::now();
        let front_started = live.inflight.front().is_some_and(|f| f.started);
        if live.unsent == 0 {
            // The worker cannot answer for a task whose frame is still being written (a large
            // argument takes a while): it is not stalled, and the wait counts from the end.
            live.front_since = now;
        }
        let waited = match (front_started, live.running_since) {
            (true, Some(since)) => now - since > LONG_TASK,
            _ => now - live.front_since > STALL,
        };
        let waiting = live.inflight.iter().filter(|f| !f.started && !f.recalled).count();
        if !front_started && live.kill.is_none() {
            if let Some(limit) = self.shared.config.task_timeout {
                if !live.inflight.is_empty() && now - live.front_since > limit {
                    live.kill = Some(Kill::Stalled);
                    live.process.kill();
                    self.observe.timed_out(live.process.pid, None);
                    return;
                }
            }
        }
        if waiting == 0 || !waited || self.shared.idle.load(Ordering::SeqCst) == 0 {
            return;
        }
        self.take_back();
    }

    /// Takes back, through the claim ring, every task waiting in the worker's window behind the
    /// running one, from the last: each goes back to the injector (one whose handle was killed
    /// is dropped there by `dispatch`). True when all of them came back; false when one was
    /// claimed first (then it, and every task before it, started or ran).
    pub(super) fn take_back(&mut self) -> bool {
        let Some(live) = self.live.as_mut() else { return true };
        let mut again = Vec::new();
        let mut all = true;
        for i in (0..live.inflight.len()).rev() {
            let f = &live.inflight[i];
            if f.started {
                break;
            }
            if f.recalled {
                continue;
            }
            if !live.process.claims.recall(f.ticket) {
                all = false;
                break; // claimed: it started, and so did every task before it
            }
            f.env.completion.requeue();
            if i > live.unsent || (i == live.unsent && live.offset == 0) {
                // Not a byte of it written yet: it simply leaves.
                again.push(live.inflight.remove(i).expect("in range").env);
            } else {
                let env = &f.env;
                again.push(Envelope {
                    id: env.id,
                    frame: env.frame.clone(),
                    segments: env.segments.clone(),
                    keep: env.keep.clone(),
                    completion: env.completion.clone(),
                    epoch: env.epoch,
                    timeout: env.timeout,
                });
                live.inflight[i].recalled = true;
            }
        }
        live.held_back = true;
        self.slot.inflight.store(live.inflight.iter().filter(|f| !f.recalled).count(), Ordering::SeqCst);
        self.shared.queue.inject_many(again);
        all
    }

    /// After the doorbell rang: handles that asked for their task back. A `cancel` is answered
    /// for each task on its own (taken back if its worker has not claimed it). Then kills
    /// (`TaskHandle::kill`, settled as cancelled already): waiting ones are taken back with the
    /// rest of the window, so none of them runs; a running one is stopped by
    /// [`stop_killed_front`](Feeder::stop_killed_front).
    pub(super) fn answer_doorbell(&mut self) {
        self.answer_cancels();
        let Some(live) = self.live.as_ref() else { return };
        if live.inflight.iter().any(|f| !f.recalled && !f.started && f.env.completion.is_killed()) {
            self.take_back();
        }
        self.stop_killed_front();
    }

    /// Kills the worker when the task it runs was killed through its handle, once every task
    /// behind it was taken back (they run elsewhere: no task that was not killed fails). When
    /// one behind it was claimed first, the killed task has finished on its own: nothing is
    /// killed. Checked after every round of I/O too (cheap: one flag of the front task), since
    /// a task the worker claimed just before the doorbell rang is seen as started only when its
    /// `STARTED` frame is read.
    pub(super) fn stop_killed_front(&mut self) {
        let Some(live) = self.live.as_ref() else { return };
        let front = live.inflight.iter().find(|f| !f.recalled);
        if live.kill.is_some() || !front.is_some_and(|f| f.started && f.env.completion.is_killed()) {
            return;
        }
        if self.take_back() {
            let live = self.live.as_mut().expect("checked above");
            live.kill = Some(Kill::Killed);
            live.process.kill();
        }
    }

    /// Answers every `cancel` waiting on a task in the window: one the worker has not claimed is
    /// taken back through the claim ring (the worker skips it; a frame not yet begun is not
    /// written at all) and settled as cancelled; one it claimed is not (it runs).
    fn answer_cancels(&mut self) {
        let Some(live) = self.live.as_mut() else { return };
        let mut i = 0;
        while i < live.inflight.len() {
            let f = &live.inflight[i];
            if f.recalled || !f.env.completion.is_cancel_requested() {
                i += 1;
                continue;
            }
            let taken_back = !f.started && live.process.claims.recall(f.ticket);
            f.env.completion.answer_cancel(taken_back);
            if taken_back && (i > live.unsent || (i == live.unsent && live.offset == 0)) {
                live.inflight.remove(i);
                continue;
            }
            live.inflight[i].recalled = taken_back;
            i += 1;
        }
        self.slot.inflight.store(live.inflight.iter().filter(|f| !f.recalled).count(), Ordering::SeqCst);
    }

    pub(super) fn check_timers(&mut self) {
        if let Some(live) = self.live.as_mut() {
            // Time the program stood still (Ctrl-Z) counts against no task.
            let paused = crate::pause::paused_ns();
            if paused != live.paused_seen {
                let by = Duration::from_nanos(paused - live.paused_seen);
                live.paused_seen = paused;
                live.running_since = live.running_since.map(|t| t + by);
                live.front_since += by;
            }
        }
        if crate::pause::stopped() {
            return; // just continued after a Ctrl-Z: its time is added first (see `pause.rs`)
        }
        self.stop_killed_front();
        self.recall_waiting();
        let Some(live) = self.live.as_mut() else { return };
        // Each task of a batch is timed on its own: the worker counts the tasks it begins.
        let [count, at] = live.process.claims.begun();
        let begun = count.load(Ordering::Acquire);
        if begun != live.begun_seen && live.running_since.is_some() {
            live.begun_seen = begun;
            let ago = crate::sys::monotonic_ns().saturating_sub(at.load(Ordering::Relaxed));
            live.running_since = Instant::now().checked_sub(Duration::from_nanos(ago)).or(live.running_since);
        }
        if let (Some(limit), Some(since), None) =
            (running_limit(live, &self.shared.config), live.running_since, live.kill)
        {
            if since.elapsed() >= limit {
                live.kill = Some(Kill::Timeout(limit));
                live.process.kill();
                self.observe.timed_out(live.process.pid, Some(limit));
            }
        }
    }

    /// An idle worker has nothing to say: a readable or hung-up socket means it died.
    pub(super) fn check_idle_process(&mut self) {
        let Some(live) = &self.live else { return };
        let healthy = !live.process.has_exited()
            && sys::poll(live.process.socket.as_fd(), false, Some(Duration::ZERO))
                .is_ok_and(|ready| !(ready.readable || ready.hangup));
        if !healthy {
            self.on_death(None);
        }
    }

    /// The worker is gone: settle every task it held, reap it.
    pub(super) fn on_death(&mut self, broken: Option<String>) {
        // Results the worker wrote before dying are still in the socket: read them first.
        if broken.is_none() {
            let _ = self.read_some();
        }
        let mut live = self.live.take().expect("a process died");
        self.shared.queue.sleep.set_warm(self.queue.index(), false);
        let pid = live.process.pid;
        // End of stream from a worker that lives on: its task closed (or broke) its socket.
        // (An exiting process closes its descriptors just before it is seen to exit.)
        let closed = broken.is_none() && live.kill.is_none() && !live.process.wait_exit(CLOSE_TO_EXIT);
        if closed {
            live.process.kill();
        }
        let (status, raw_status) = live.process.finish_with_status(EXIT_GRACE);
        let cause = match (broken, closed, live.fault) {
            (Some(broken), _, _) => broken,
            (None, true, _) => "the task closed or broke the worker's channel to the executor (its socket), so the \
                                worker was killed"
                .to_string(),
            // Rust's runtime aborts on a stack overflow, after a fault in a guard page.
            (None, false, Some(_)) if status.contains("SIGABRT") => {
                format!("the task overflowed its stack ({status})")
            }
            (None, false, Some((_, address))) => format!("{status}, a memory fault at address {address:#x}"),
            (None, false, None) => status,
        };
        // A Ctrl-C that killed this worker interrupts the tasks submitted before it; a task
        // submitted after it is not misreported as interrupted (by this death or a later one).
        let interrupt = self.slot.interrupt.swap(0, Ordering::SeqCst);
        let interrupted = |env: &Envelope| interrupt != 0 && env.epoch < interrupt;
        let running = live.inflight.iter().find(|f| f.started && !f.recalled);
        let death = match live.kill {
            Some(Kill::Timeout(_)) => crate::observe::DeathCause::Timeout,
            Some(Kill::Stalled) => crate::observe::DeathCause::Stalled,
            Some(Kill::Killed) => crate::observe::DeathCause::Killed,
            None if running.is_some_and(|f| interrupted(&f.env)) => crate::observe::DeathCause::Interrupted,
            None => crate::observe::DeathCause::Crash,
        };
        let running = running.map(|f| {
            (f.env.completion.task(), f.env.completion.count(), f.env.id, f.env.frame.len(), live.running_since)
        });
        self.observe.died(pid, death, &cause, running);
        // Counters before any handle is completed (see handle_frames); the death is counted
        // before the pid disappears, so no snapshot shows a vanished worker that did not die.
        self.slot.deaths.fetch_add(1, Ordering::SeqCst);
        self.slot.pid.store(0, Ordering::SeqCst);
        self.slot.inflight.store(0, Ordering::SeqCst);
        let mut again = Vec::new();
        for f in live.inflight.drain(..) {
            let completion = &f.env.completion;
            if f.recalled {
                continue; // already queued again
            }
            if f.started {
                let kind = match live.kill {
                    Some(Kill::Timeout(limit)) => ErrorKind::Timeout { limit },
                    Some(Kill::Stalled) => ErrorKind::WorkerDeath { cause: cause.clone(), pid },
                    Some(Kill::Killed) => ErrorKind::Cancelled,
                    None if interrupted(&f.env) => ErrorKind::Interrupted,
                    None => ErrorKind::WorkerDeath { cause: cause.clone(), pid },
                };
                let error = TaskError::new(kind, completion.task()).with_worker_end(pid, raw_status);
                completion.complete(Err(error));
            } else if interrupted(&f.env) {
                completion.fail(ErrorKind::Interrupted);
            } else {
                completion.requeue();
                again.push(f.env);
            }
        }
        self.shared.queue.inject_many(again);
    }

    /// Graceful stop: close the socket (the worker exits on end of stream) and reap.
    pub(super) fn close_process(&mut self) {
        if let Some(live) = self.live.take() {
            self.shared.queue.sleep.set_warm(self.queue.index(), false);
            debug_assert!(live.inflight.is_empty());
            let idle = !live.retiring && !self.shared.queue.is_terminating();
            self.observe.closed(live.process.pid, idle);
            // End of stream: the worker exits (it is killed if it lingers); whatever its tasks
            // left running in its process group is stopped.
            let _ = live.process.socket.shutdown(std::net::Shutdown::Both);
            live.process.finish(EXIT_GRACE);
            self.slot.pid.store(0, Ordering::SeqCst);
            self.slot.inflight.store(0, Ordering::Relaxed);
        }
    }
}

/// The run-time limit of the task at the front of the window (the one that runs, or will run
/// next): its own (`Executor::submit_with_timeout`), else the executor's `task_timeout`.
pub(super) fn running_limit(live: &Live, config: &Config) -> Option<Duration> {
    live.inflight.iter().find(|f| !f.recalled).and_then(|f| f.env.timeout).or(config.task_timeout)
}
