//! The markdown table the benches print: workpool against one peer, measured in the same runs.

use crate::measure::median;

/// Rows of: scenario, workpool median (min .. max over runs), peer median (min .. max), and
/// workpool / peer as the **median of the per-run ratios** (each run measured both, so noise
/// between runs cancels). Whether a high or a low ratio is better is said in the scenario's
/// name.
#[derive(Debug)]
pub struct Table {
    peer: String,
    rows: Vec<[String; 4]>,
}

impl Table {
    /// An empty table against `peer` (the peer's column header).
    pub fn new(peer: &str) -> Self {
        Table { peer: peer.to_string(), rows: Vec::new() }
    }

    /// Adds a row from paired measurements (`wp[i]` and `peer[i]` come from the same run).
    pub fn row(&mut self, name: &str, wp: &[f64], peer: &[f64], fmt: fn(f64) -> String) {
        assert_eq!(wp.len(), peer.len(), "{name}: a ratio needs both measured in each run");
        let ratio = median(&wp.iter().zip(peer).map(|(w, p)| w / p).collect::<Vec<_>>());
        self.rows.push([
            name.to_string(),
            with_spread(wp, fmt),
            with_spread(peer, fmt),
            if ratio.is_finite() { format!("{ratio:.2}×") } else { "—".into() },
        ]);
    }

    /// The table, in markdown.
    pub fn render(&self) -> String {
        let peer = &self.peer;
        let mut out = format!(
            "| scenario | workpool, median (min .. max) | {peer}, median (min .. max) | workpool / {peer} (median of per-run ratios) |\n"
        );
        out.push_str("|---|---:|---:|---:|\n");
        for [a, b, c, d] in &self.rows {
            out.push_str(&format!("| {a} | {b} | {c} | {d} |\n"));
        }
        out
    }
}

fn with_spread(values: &[f64], fmt: fn(f64) -> String) -> String {
    if values.is_empty() {
        return "—".into();
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.len() == 1 {
        fmt(median(values))
    } else {
        format!("{} ({} .. {})", fmt(median(values)), fmt(min), fmt(max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_is_the_median_of_per_run_ratios() {
        let mut t = Table::new("peer");
        // Per-run ratios 0.5, 2.0, 1.0: median 1.0, although the medians are 2 and 2.
        t.row("x", &[1.0, 4.0, 2.0], &[2.0, 2.0, 2.0], |v| format!("{v}"));
        assert!(t.render().contains("| x | 2 (1 .. 4) | 2 (2 .. 2) | 1.00× |"), "{}", t.render());
    }
}
