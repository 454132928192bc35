//! π by Monte Carlo on every CPU: tasks throw random darts at the unit square and count those
//! that land inside the quarter circle. Results stream back in order, so the running estimate
//! sharpens as they arrive, its error shrinking like 1/√darts.
//!
//! ```text
//! cargo run --release --example monte_carlo_pi
//! ```

use serde::{Deserialize, Serialize};
use std::time::Instant;
use workpool::{Parallel, Task};

const TASKS: u64 = 64;
const DARTS_PER_TASK: u64 = 3_000_000;

/// Throws `darts` darts with a random stream of its own; returns how many hit.
#[derive(Serialize, Deserialize)]
struct Darts {
    seed: u64,
    darts: u64,
}

impl Task for Darts {
    type Output = u64;
    fn run(self) -> u64 {
        let mut rng = SplitMix64(self.seed);
        let mut hits = 0;
        for _ in 0..self.darts {
            let (x, y) = (rng.unit(), rng.unit());
            hits += u64::from(x * x + y * y <= 1.0);
        }
        hits
    }
}

workpool::register!(Darts);

/// SplitMix64: small, fast, and good enough for darts; each task seeds its own stream.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), from the top 53 bits.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

fn main() {
    workpool::init();
    let jobs = Parallel::new().effective_n_jobs();
    println!(
        "π from {} darts: {TASKS} tasks of {DARTS_PER_TASK} on {jobs} worker process{}\n",
        TASKS * DARTS_PER_TASK,
        if jobs == 1 { "" } else { "es" }
    );
    println!("  {:>11}  {:>11}  {:>10}  {:>10}", "darts", "estimate", "error", "1σ expected");

    let start = Instant::now();
    let tasks = (0..TASKS).map(|i| Darts { seed: 0x5EED_0000 + i, darts: DARTS_PER_TASK });
    let (mut hits, mut darts, mut next_report) = (0u64, 0u64, 1u64);
    for (done, result) in (1u64..).zip(Parallel::new().iter(tasks)) {
        hits += result.expect("darts never fail");
        darts += DARTS_PER_TASK;
        if done == next_report || done == TASKS {
            let estimate = 4.0 * hits as f64 / darts as f64;
            // Each dart hits with p = π/4: the estimate 4·hits/darts has σ = 4·√(p(1−p)/darts).
            let p = std::f64::consts::FRAC_PI_4;
            let sigma = 4.0 * (p * (1.0 - p) / darts as f64).sqrt();
            let error = estimate - std::f64::consts::PI;
            println!("  {darts:>11}  {estimate:>11.8}  {error:>+10.6}  {sigma:>10.6}");
            next_report *= 4;
        }
    }
    let elapsed = start.elapsed();
    println!(
        "\n{:.2} s, {:.0} million darts a second (worker start-up included)",
        elapsed.as_secs_f64(),
        darts as f64 / elapsed.as_secs_f64() / 1e6
    );
}
