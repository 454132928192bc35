//! Helpers shared by the benches (each bench is its own crate and includes this module).

pub(crate) fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Whether a scenario is to run: `WORKPOOL_BENCH_ONLY` is a comma-separated list of scenario
/// names (all of them when unset).
pub(crate) fn selected(name: &str) -> bool {
    std::env::var("WORKPOOL_BENCH_ONLY").map_or(true, |only| only.split(',').any(|s| s.trim() == name))
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub(crate) fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M/s", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k/s", v / 1e3)
    } else {
        format!("{v:.0}/s")
    }
}
