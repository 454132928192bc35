//! Environment knobs, scenario selection, timing and medians.

use std::time::{Duration, Instant};

/// The value of environment variable `name` as a number, or `default` when unset or unparsable.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Whether a scenario is to run: `WORKPOOL_BENCH_ONLY` is a comma-separated list of scenario
/// names (all of them when unset).
pub fn selected(name: &str) -> bool {
    std::env::var("WORKPOOL_BENCH_ONLY").map_or(true, |only| only.split(',').any(|s| s.trim() == name))
}

/// The median (the mean of the two middle values for an even count; NaN for none).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The wall time of one call.
pub fn time(f: &mut impl FnMut()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// Runs `a` and `b` once each, `a` first on even runs and `b` first on odd ones (so neither
/// always gets the warmer caches or the quieter moment); returns their wall times as `(a, b)`.
pub fn alternate(run: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (Duration, Duration) {
    if run % 2 == 0 {
        let ta = time(&mut a);
        (ta, time(&mut b))
    } else {
        let tb = time(&mut b);
        (time(&mut a), tb)
    }
}

/// `runs` alternating runs of `a` and `b` (see [`alternate`]); their times in milliseconds.
pub fn alternate_ms(runs: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (Vec<f64>, Vec<f64>) {
    let (mut ta, mut tb) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for run in 0..runs {
        let (x, y) = alternate(run, &mut a, &mut b);
        ta.push(x.as_secs_f64() * 1e3);
        tb.push(y.as_secs_f64() * 1e3);
    }
    (ta, tb)
}

/// A rate: `12.3M/s`, `45.6k/s` or `789/s`.
pub fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M/s", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k/s", v / 1e3)
    } else {
        format!("{v:.0}/s")
    }
}

/// Milliseconds with two decimals: `7.52 ms`.
pub fn fmt_ms(v: f64) -> String {
    format!("{v:.2} ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn alternate_runs_both_and_swaps_the_order() {
        let order = std::cell::RefCell::new(Vec::new());
        for run in 0..2 {
            alternate(run, || order.borrow_mut().push('a'), || order.borrow_mut().push('b'));
        }
        assert_eq!(*order.borrow(), ['a', 'b', 'b', 'a']);
    }
}
