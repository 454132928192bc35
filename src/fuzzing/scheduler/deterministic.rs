//! The deterministic interpretation: one thread plays every scheduler thread against a
//! reference model of the deques and of the jobs event counter.

use super::super::input::Bytes;
use super::shape;
use crate::scheduler::sleep::Slept;
use crate::scheduler::{Order, Queue, Shared, Wait};
use std::cell::Cell;
use std::collections::VecDeque;
use std::time::Instant;

/// The reference model of one scheduler.
struct Model {
    order: Order,
    local: Vec<VecDeque<u32>>,
    injector: VecDeque<u32>,
    /// Times each job id ran (or was drained): must end at exactly one.
    ran: Vec<u8>,
    /// The jobs event counter the sleep protocol should hold.
    jec: u32,
    sleepy: Vec<Option<u32>>,
    terminated: bool,
}

impl Model {
    fn new_job(&mut self) -> u32 {
        self.ran.push(0);
        (self.ran.len() - 1) as u32
    }

    fn new_jobs_announced(&mut self) {
        if self.jec % 2 == 1 {
            self.jec = self.jec.wrapping_add(1);
        }
    }

    fn ran(&mut self, job: u32, how: &str) {
        let count = &mut self.ran[job as usize];
        *count += 1;
        assert_eq!(*count, 1, "job {job} came out a second time ({how})");
    }

    fn pop_local(&mut self, w: usize) -> Option<u32> {
        match self.order {
            Order::Lifo => self.local[w].pop_back(),
            Order::Fifo => self.local[w].pop_front(),
        }
    }

    fn queued(&self) -> usize {
        self.injector.len() + self.local.iter().map(VecDeque::len).sum::<usize>()
    }

    /// A job worker `w` must have stolen from another worker's deque (or nothing, when every
    /// queue is empty).
    fn stolen(&mut self, w: usize, got: Option<u32>) {
        let Some(job) = got else {
            assert_eq!(self.queued(), 0, "worker {w} found nothing although jobs are queued");
            return;
        };
        let victim = (0..self.local.len()).find(|&v| v != w && self.local[v].front() == Some(&job));
        let Some(victim) = victim else {
            panic!("worker {w} got job {job}, which is not at the steal end of any other deque");
        };
        self.local[victim].pop_front();
    }

    /// Checks what `find_work` on worker `w` returned against the search order: its own deque,
    /// then the other workers' (oldest job first, from a random victim), then the injector.
    fn found(&mut self, w: usize, got: Option<u32>, queue: &Queue<u32>) {
        let peers_have_work = (0..self.local.len()).any(|v| v != w && !self.local[v].is_empty());
        let from_peer =
            got.is_some_and(|job| (0..self.local.len()).any(|v| v != w && self.local[v].front() == Some(&job)));
        if !self.local[w].is_empty() {
            let want = self.pop_local(w);
            assert_eq!(got, want, "worker {w} must take its own {:?} job first", self.order);
        } else if from_peer || got.is_none() {
            self.stolen(w, got);
        } else {
            // Single-threaded on x86 nothing ever answers Steal::Retry, so the injector is only
            // reached when every peer is empty. Elsewhere a compare_exchange_weak may fail
            // spuriously (ARM does, Miri simulates it): a Retry from a peer lets find_work go
            // on to the injector before it repeats the search.
            let strict = cfg!(target_arch = "x86_64") && !cfg!(miri);
            assert!(!(strict && peers_have_work), "worker {w} took {got:?} from the injector while peers had work");
            let first = self.injector.pop_front();
            assert_eq!(got, first, "worker {w} must take the oldest injected job");
            // The rest of the batch moved to the local deque, arranged so that local pops continue
            // in injection order. How many moved is crossbeam's business: pop them all to check
            // their order, then push them back as they were (pushes the model accounts for).
            let len = queue.local_len();
            let mut moved = Vec::new();
            while let Some(job) = queue.pop() {
                moved.push(job);
            }
            assert_eq!(moved.len(), len, "local_len of worker {w} after a batch");
            assert!(
                moved.len() <= self.injector.len(),
                "worker {w} moved {} jobs out of {}",
                moved.len(),
                self.injector.len()
            );
            let batch: Vec<u32> = self.injector.drain(..moved.len()).collect();
            assert_eq!(moved, batch, "a batch from the injector must come out of the local deque in injection order");
            let restore: Vec<u32> = match self.order {
                Order::Fifo => moved,
                Order::Lifo => moved.into_iter().rev().collect(),
            };
            for job in restore {
                queue.push(job);
                self.local[w].push_back(job);
                self.new_jobs_announced();
            }
        }
        if let Some(job) = got {
            self.ran(job, "find_work");
        }
    }
}

/// The single-threaded interpretation (see the module docs).
pub fn deterministic(mode: u8, mut input: Bytes<'_>) {
    let (workers, order) = shape(mode);
    let (shared, queues) = Shared::<u32>::new(workers, order);
    let mut m = Model {
        order,
        local: vec![VecDeque::new(); workers],
        injector: VecDeque::new(),
        ran: Vec::new(),
        jec: 0,
        sleepy: vec![None; workers],
        terminated: false,
    };
    let mut steps = 0;
    while !input.is_empty() && steps < 4096 {
        steps += 1;
        let op = input.byte();
        let w = input.below(workers);
        match op % 16 {
            0 | 1 => {
                let job = m.new_job();
                shared.inject(job);
                m.injector.push_back(job);
                m.new_jobs_announced();
            }
            2 => {
                let k = input.below(5);
                let jobs: Vec<u32> = (0..k).map(|_| m.new_job()).collect();
                shared.inject_many(jobs.iter().copied());
                m.injector.extend(&jobs);
                if k > 0 {
                    m.new_jobs_announced();
                }
            }
            3 | 4 => {
                let job = m.new_job();
                queues[w].push(job);
                m.local[w].push_back(job);
                m.new_jobs_announced();
            }
            5 => {
                let got = queues[w].pop();
                let want = m.pop_local(w);
                assert_eq!(got, want, "pop of worker {w}'s own {order:?} deque");
                if let Some(job) = got {
                    m.ran(job, "pop");
                }
            }
            6 | 7 => {
                let got = queues[w].find_work();
                m.found(w, got, &queues[w]);
            }
            8 => {
                // Never blocks: either ready() holds or the scheduler is terminating.
                let got = queues[w].wait(&|| true, None, m.terminated);
                match got {
                    Wait::Job(job) => m.found(w, Some(job), &queues[w]),
                    Wait::Ready | Wait::Terminated => {
                        assert_eq!(m.queued(), 0, "wait gave up although jobs are queued");
                        if matches!(got, Wait::Terminated) {
                            assert!(m.terminated);
                        }
                    }
                    Wait::TimedOut => panic!("wait without a deadline timed out"),
                }
            }
            9 => {
                let mut drained = Vec::new();
                shared.drain(|job| drained.push(job));
                drained.sort_unstable();
                let mut want: Vec<u32> = m.injector.drain(..).collect();
                for local in &mut m.local {
                    want.extend(local.drain(..));
                }
                want.sort_unstable();
                assert_eq!(drained, want, "drain must hand out exactly the queued jobs");
                for job in drained {
                    m.ran(job, "drain");
                }
            }
            10 => {
                let e = shared.sleep.get_sleepy();
                if m.jec % 2 == 0 {
                    m.jec = m.jec.wrapping_add(1);
                }
                assert_eq!(e, m.jec, "get_sleepy must return the (odd) jobs event counter");
                m.sleepy[w] = Some(e);
            }
            11 => {
                let Some(e) = m.sleepy[w].take() else { continue };
                let registered = Cell::new(false);
                let should_register = m.jec == e;
                let blocking = input.byte() & 1 == 1;
                let slept = if blocking {
                    // Registers, blocks, and times out at once (the deadline has passed).
                    let ready = || {
                        registered.set(true);
                        false
                    };
                    shared.sleep.sleep(w, e, &ready, Some(Instant::now()))
                } else {
                    let ready = || {
                        registered.set(true);
                        true
                    };
                    shared.sleep.sleep(w, e, &ready, None)
                };
                assert_eq!(
                    registered.get(),
                    should_register,
                    "worker {w} slept at JEC {e} with the counter at {}: it must register exactly when no \
                     work was announced since it got sleepy",
                    m.jec
                );
                let want = if blocking && should_register { Slept::TimedOut } else { Slept::Aborted };
                assert_eq!(slept, want);
                assert_eq!(shared.sleep.sleeping(), 0, "a sleeper that left is still counted");
            }
            12 => assert!(!shared.sleep.wake_thread(w), "nobody is blocked, yet worker {w} was woken"),
            13 => {
                shared.sleep.wake_all();
                assert_eq!(shared.sleep.sleeping(), 0);
            }
            14 => {
                shared.terminate();
                m.terminated = true;
                assert!(shared.is_terminating());
            }
            _ => {
                assert_eq!(shared.is_empty(), m.queued() == 0, "is_empty disagrees with the model");
                assert_eq!(queues[w].local_len(), m.local[w].len(), "local_len of worker {w}");
                assert_eq!(shared.threads(), workers);
                // Worker w's whole deque, in pop order, then put back as it was.
                let mut popped = Vec::new();
                while let Some(job) = queues[w].pop() {
                    popped.push(job);
                }
                let want: Vec<u32> = match order {
                    Order::Lifo => m.local[w].iter().rev().copied().collect(),
                    Order::Fifo => m.local[w].iter().copied().collect(),
                };
                assert_eq!(popped, want, "worker {w}'s deque, in {order:?} pop order");
                m.local[w].clear();
                let restore: Vec<u32> = match order {
                    Order::Lifo => popped.into_iter().rev().collect(),
                    Order::Fifo => popped,
                };
                for job in restore {
                    queues[w].push(job);
                    m.local[w].push_back(job);
                    m.new_jobs_announced();
                }
                assert_eq!(queues[w].index(), w);
            }
        }
    }
    // Shutdown drains: every worker keeps searching until nothing is left anywhere.
    shared.terminate();
    loop {
        let mut any = false;
        for (w, queue) in queues.iter().enumerate() {
            match queue.wait(&|| false, None, true) {
                Wait::Job(job) => {
                    m.found(w, Some(job), queue);
                    any = true;
                }
                Wait::Terminated => {}
                other => panic!("a terminating wait ended with {other:?}"),
            }
        }
        if !any {
            break;
        }
    }
    assert!(shared.is_empty(), "jobs are still queued after every worker left");
    assert_eq!(m.queued(), 0, "the model still holds jobs the scheduler lost");
    if let Some(job) = m.ran.iter().position(|&n| n != 1) {
        panic!("job {job} came out {} times", m.ran[job]);
    }
}
