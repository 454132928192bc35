//! The comparison table and the Python peers' figures, shared by the executor and parallel
//! benches (included with `#[path]`; the thread-pool bench has no Python peers).

use crate::common::median;
use std::collections::HashMap;

/// Figures from peers.py-style output files (`<library> <scenario> <value> <unit>`), keyed by
/// the first two words; `WORKPOOL_BENCH_PEERS` lists the files, separated by `:`.
pub(crate) fn python_peers() -> HashMap<String, f64> {
    let Ok(paths) = std::env::var("WORKPOOL_BENCH_PEERS") else { return HashMap::new() };
    let mut peers = HashMap::new();
    for path in paths.split(':').filter(|p| !p.is_empty()) {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("WORKPOOL_BENCH_PEERS: {path}: {e}"));
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let Some(value) = words.get(2).and_then(|v| v.parse().ok()) {
                peers.insert(format!("{} {}", words[0], words[1]), value);
            }
        }
    }
    peers
}

/// Rows of: scenario, workpool median (min .. max), peer, peer median, and workpool / peer as
/// the median of per-run ratios when both were measured in each run (noise between runs
/// cancels), else the ratio of the medians. Whether higher or lower is better is said in the
/// scenario's name.
#[derive(Default)]
pub(crate) struct Table {
    rows: Vec<[String; 5]>,
}

impl Table {
    pub(crate) fn row(&mut self, name: &str, wp: &[f64], peer_name: &str, peer: &[f64], fmt: fn(f64) -> String) {
        let ratio = if wp.len() == peer.len() {
            median(&wp.iter().zip(peer).map(|(w, p)| w / p).collect::<Vec<_>>())
        } else {
            median(wp) / median(peer)
        };
        let min = wp.iter().copied().fold(f64::INFINITY, f64::min);
        let max = wp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let spread = if wp.len() > 1 { format!(" ({} .. {})", fmt(min), fmt(max)) } else { String::new() };
        self.rows.push([
            name.to_string(),
            format!("{}{spread}", fmt(median(wp))),
            peer_name.to_string(),
            if peer.is_empty() { "—".into() } else { fmt(median(peer)) },
            if ratio.is_finite() { format!("{ratio:.2}x") } else { "—".into() },
        ]);
    }

    /// A row against one supplied Python figure, when present.
    pub(crate) fn python(&mut self, peers: &HashMap<String, f64>, key: &str, wp: &[f64], fmt: fn(f64) -> String) {
        if let Some(&value) = peers.get(key) {
            // The peers report times in ms and rates per second, as this table does.
            self.row("", wp, &format!("{key} (Python)"), &[value], fmt);
        }
    }

    pub(crate) fn print(&self) {
        println!();
        println!("| scenario | workpool median (min .. max) | peer | peer median | workpool / peer |");
        println!("|---|---:|---|---:|---:|");
        for [a, b, c, d, e] in &self.rows {
            println!("| {a} | {b} | {c} | {d} | {e} |");
        }
    }
}
