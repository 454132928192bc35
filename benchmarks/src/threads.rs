//! CPU time and scheduling counts of this process's threads, told apart by name.

use std::time::Duration;

/// CPU time and scheduling count summed over the threads whose name starts with a prefix.
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadStats {
    /// CPU time, ns (`schedstat` field 1).
    pub cpu_ns: u64,
    /// Times the threads were put on a CPU (`schedstat` field 3): wake-ups, for blocked threads.
    pub slices: u64,
    /// Threads that matched.
    pub threads: usize,
}

/// Sums [`ThreadStats`] over this process's threads whose name (`comm`, at most 15 bytes)
/// starts with `prefix`.
pub fn thread_stats(prefix: &str) -> ThreadStats {
    let mut total = ThreadStats::default();
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    for task in tasks.flatten() {
        let path = task.path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else { continue };
        if !comm.starts_with(prefix) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("schedstat")) else { continue };
        let fields: Vec<u64> = stat.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        if let [cpu_ns, _wait_ns, slices] = fields[..] {
            total.cpu_ns += cpu_ns;
            total.slices += slices;
            total.threads += 1;
        }
    }
    total
}

/// User + system CPU time of the whole process.
pub fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct we hand it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
