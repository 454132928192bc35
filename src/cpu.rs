//! `cpu_count()`: the CPUs this process may really use.
//!
//! The smallest of: the CPUs in the affinity mask (`sched_getaffinity`, through
//! [`std::thread::available_parallelism`]), the cgroup CPU quota (v2 `cpu.max`, v1
//! `cpu.cfs_quota_us` / `cpu.cfs_period_us`, rounded up as loky does), and the
//! `WORKPOOL_MAX_CPU_COUNT` environment variable when set. Never less than one.

use std::fs;
use std::path::{Path, PathBuf};

/// Number of CPUs this process can use: affinity mask, cgroup quota and
/// `WORKPOOL_MAX_CPU_COUNT`, whichever is smallest (at least 1).
///
/// Used for `n_jobs(-1)`, for the default number of workers and for thread caps in workers.
///
/// ```
/// assert!(workpool::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    let affinity = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let quota = cgroup_cpu_limit(Path::new("/"));
    let env = std::env::var("WORKPOOL_MAX_CPU_COUNT").ok().and_then(|v| v.trim().parse::<usize>().ok());
    [Some(affinity), quota, env].into_iter().flatten().min().unwrap_or(1).max(1)
}

/// The CPU limit from cgroups, looking up this process's cgroup under `root` (normally `/`:
/// `root/proc/self/cgroup` and `root/sys/fs/cgroup/...`). Tests point `root` at a fake tree.
pub(crate) fn cgroup_cpu_limit(root: &Path) -> Option<usize> {
    let membership = fs::read_to_string(root.join("proc/self/cgroup")).ok()?;
    let mut limits = Vec::new();
    for line in membership.lines() {
        // "hierarchy-id:controllers:path"; v2 has id 0 and no controllers.
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if id == "0" && controllers.is_empty() {
            let base = root.join("sys/fs/cgroup");
            limits.extend(walk_up(&base, rel, |dir| read_v2(&dir.join("cpu.max"))));
        } else if controllers.split(',').any(|c| c == "cpu") {
            for mount in ["cpu,cpuacct", "cpu", "cpuacct,cpu"] {
                let base = root.join("sys/fs/cgroup").join(mount);
                if base.is_dir() {
                    limits.extend(walk_up(&base, rel, read_v1));
                    break;
                }
            }
        }
    }
    limits.into_iter().min()
}

/// The smallest limit found in `base/rel` and each of its ancestors up to `base`.
fn walk_up(base: &Path, rel: &str, read: impl Fn(&Path) -> Option<usize>) -> Option<usize> {
    let mut dir: PathBuf = base.join(rel);
    let mut best: Option<usize> = None;
    loop {
        if let Some(limit) = read(&dir) {
            best = Some(best.map_or(limit, |b| b.min(limit)));
        }
        if dir == base || !dir.pop() || !dir.starts_with(base) {
            return best;
        }
    }
}

/// cgroup v2: `cpu.max` holds "max 100000" (no limit) or "QUOTA PERIOD".
fn read_v2(file: &Path) -> Option<usize> {
    let text = fs::read_to_string(file).ok()?;
    let mut fields = text.split_whitespace();
    let quota = fields.next()?;
    let period: u64 = fields.next()?.parse().ok()?;
    if quota == "max" {
        return None;
    }
    ceil_ratio(quota.parse().ok()?, period)
}

/// cgroup v1: `cpu.cfs_quota_us` (-1: no limit) over `cpu.cfs_period_us`.
fn read_v1(dir: &Path) -> Option<usize> {
    let quota: i64 = fs::read_to_string(dir.join("cpu.cfs_quota_us")).ok()?.trim().parse().ok()?;
    let period: u64 = fs::read_to_string(dir.join("cpu.cfs_period_us")).ok()?.trim().parse().ok()?;
    if quota <= 0 {
        return None;
    }
    ceil_ratio(quota as u64, period)
}

fn ceil_ratio(quota: u64, period: u64) -> Option<usize> {
    if period == 0 {
        return None;
    }
    Some((quota.div_ceil(period)).max(1) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(files: &[(&str, &str)]) -> PathBuf {
        let root = std::env::temp_dir().join(format!(
            "workpool-cgroup-{}-{}",
            std::process::id(),
            files.len() * 7 + files[0].1.len()
        ));
        let _ = fs::remove_dir_all(&root);
        for (path, text) in files {
            let p = root.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        root
    }

    #[test]
    fn v2_quota_rounds_up() {
        let root = fake(&[
            ("proc/self/cgroup", "0::/user.slice/app\n"),
            ("sys/fs/cgroup/user.slice/app/cpu.max", "150000 100000\n"),
        ]);
        assert_eq!(cgroup_cpu_limit(&root), Some(2));
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn v2_parent_limit_applies_and_max_is_unlimited() {
        let root = fake(&[
            ("proc/self/cgroup", "0::/a/b\n"),
            ("sys/fs/cgroup/a/b/cpu.max", "max 100000\n"),
            ("sys/fs/cgroup/a/cpu.max", "50000 100000\n"),
        ]);
        assert_eq!(cgroup_cpu_limit(&root), Some(1));
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn v1_quota_and_no_limit() {
        let root = fake(&[
            ("proc/self/cgroup", "4:cpu,cpuacct:/docker/x\n1:name=systemd:/\n"),
            ("sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_quota_us", "300000\n"),
            ("sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_period_us", "100000\n"),
        ]);
        assert_eq!(cgroup_cpu_limit(&root), Some(3));
        fs::write(root.join("sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_quota_us"), "-1\n").unwrap();
        assert_eq!(cgroup_cpu_limit(&root), None);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn no_cgroup_file_means_no_limit() {
        assert_eq!(cgroup_cpu_limit(Path::new("/nonexistent-workpool-root")), None);
    }

    #[test]
    fn cpu_count_is_positive_and_within_affinity() {
        let n = cpu_count();
        assert!(n >= 1);
        assert!(n <= std::thread::available_parallelism().unwrap().get());
    }
}
