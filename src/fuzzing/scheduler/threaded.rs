//! The threaded interpretation: real scheduler threads sleep and are woken while bursts of
//! work arrive; a job not run within a generous deadline is a lost wake-up.

use super::super::input::Bytes;
use super::shape;
use crate::scheduler::{Queue, Shared, Wait};
use std::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Upper bound on jobs in one threaded run.
const MAX_JOBS: usize = 2048;

/// A job of the threaded run: when it runs it pushes `children` jobs onto its worker's deque
/// (each with one child fewer), like fork-join does.
#[derive(Debug)]
struct Job {
    id: u32,
    children: u8,
    spin: u16,
}

struct Counters {
    ran: Vec<AtomicU8>,
    next: AtomicU32,
    /// Jobs created (incremented before the push) and finished.
    created: AtomicUsize,
    finished: AtomicUsize,
}

impl Counters {
    fn job(&self, children: u8, spin: u16) -> Option<Job> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if id as usize >= MAX_JOBS {
            return None;
        }
        self.created.fetch_add(1, Ordering::SeqCst);
        Some(Job { id, children, spin })
    }

    fn run(&self, job: Job, queue: &Queue<Job>) {
        let before = self.ran[job.id as usize].fetch_add(1, Ordering::Relaxed);
        assert_eq!(before, 0, "job {} ran twice", job.id);
        for _ in 0..job.spin {
            std::hint::spin_loop();
        }
        for _ in 0..job.children {
            if let Some(child) = self.job(job.children - 1, job.spin / 2) {
                queue.push(child);
            }
        }
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
}

struct ExitGuard(mpsc::Sender<usize>, usize);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let _ = self.0.send(self.1);
    }
}

enum Op {
    Inject(u8, u16),
    InjectMany(usize, u8),
    Gap(Duration),
    Quiesce,
    Wake(usize),
    WakeAll,
    Yield,
}

fn scale(d: Duration) -> Duration {
    if cfg!(miri) {
        d / 10
    } else {
        d
    }
}

/// Generous: a correct scheduler finishes these jobs in microseconds.
fn hang_limit() -> Duration {
    if cfg!(miri) {
        Duration::from_secs(600)
    } else {
        Duration::from_secs(20)
    }
}

/// The multi-threaded interpretation (see the module docs).
pub fn threaded(mode: u8, mut input: Bytes<'_>) {
    let (workers, order) = shape(mode);
    let timed_waits = mode & 8 != 0;
    let mut ops = Vec::new();
    while !input.is_empty() && ops.len() < 48 {
        let op = input.byte();
        ops.push(match op % 12 {
            0..=2 => Op::Inject(input.byte() % 4, input.byte() as u16 * 4),
            3 => Op::InjectMany(input.below(8), input.byte() % 3),
            4 | 5 => Op::Gap(scale(Duration::from_micros(u64::from(input.byte()) * 4))),
            6 => Op::Quiesce,
            7 => Op::Wake(input.below(workers)),
            8 => Op::WakeAll,
            _ => Op::Yield,
        });
    }
    let (shared, queues) = Shared::<Job>::new(workers, order);
    let counters = Arc::new(Counters {
        ran: (0..MAX_JOBS).map(|_| AtomicU8::new(0)).collect(),
        next: AtomicU32::new(0),
        created: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
    });
    let (exited, exits) = mpsc::channel();
    let threads: Vec<_> = queues
        .into_iter()
        .map(|queue| {
            let counters = counters.clone();
            let exited = exited.clone();
            std::thread::spawn(move || {
                // Reports the exit even if a job's assertion panics on this thread.
                let _exit = ExitGuard(exited, queue.index());
                loop {
                    // Some runs use short deadlines: timed sleeps must not lose wake-ups either.
                    let deadline = timed_waits.then(|| Instant::now() + Duration::from_micros(300));
                    match queue.wait(&|| false, deadline, true) {
                        Wait::Job(job) => counters.run(job, &queue),
                        Wait::Terminated => break,
                        Wait::TimedOut | Wait::Ready => {}
                    }
                }
            })
        })
        .collect();
    drop(exited);
    let quiesce = |what: &str| {
        let deadline = Instant::now() + hang_limit();
        while counters.finished.load(Ordering::SeqCst) != counters.created.load(Ordering::SeqCst) {
            if Instant::now() >= deadline {
                let created = counters.created.load(Ordering::SeqCst);
                let finished = counters.finished.load(Ordering::SeqCst);
                let sleeping = shared.sleep.sleeping();
                shared.terminate(); // let the threads go, so the report is not followed by a hang
                panic!(
                    "lost wake-up ({what}): {finished} of {created} jobs done after {:?}, {sleeping} of \
                     {workers} workers asleep",
                    hang_limit(),
                );
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    };
    for op in ops {
        match op {
            Op::Inject(children, spin) => {
                if let Some(job) = counters.job(children, spin) {
                    shared.inject(job);
                }
            }
            Op::InjectMany(k, children) => {
                let jobs: Vec<Job> = (0..k).filter_map(|_| counters.job(children, 0)).collect();
                shared.inject_many(jobs);
            }
            Op::Gap(d) => std::thread::sleep(d),
            Op::Quiesce => quiesce("bursts separated by idle gaps"),
            Op::Wake(w) => {
                shared.sleep.wake_thread(w);
            }
            Op::WakeAll => shared.sleep.wake_all(),
            Op::Yield => std::thread::yield_now(),
        }
    }
    quiesce("the final burst");
    shared.terminate();
    let deadline = Instant::now() + hang_limit();
    for _ in 0..workers {
        let left = deadline.saturating_duration_since(Instant::now());
        if exits.recv_timeout(left).is_err() {
            panic!("a worker did not leave after terminate within {:?}", hang_limit());
        }
    }
    for thread in threads {
        thread.join().expect("worker threads do not panic");
    }
    assert!(shared.is_empty(), "terminated workers left jobs behind");
    let created = counters.created.load(Ordering::SeqCst);
    assert_eq!(counters.finished.load(Ordering::SeqCst), created);
    for (id, count) in counters.ran.iter().take(created).enumerate() {
        assert_eq!(count.load(Ordering::Relaxed), 1, "job {id} ran {} times", count.load(Ordering::Relaxed));
    }
}
