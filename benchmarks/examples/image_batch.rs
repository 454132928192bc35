//! A batch of images resized and blurred in worker processes, timed against doing the same in
//! one process, with the speed-up and Amdahl's estimate of the serial fraction of the run.
//!
//! ```text
//! cargo run --release -p workpool-benchmarks --example image_batch
//! ```
//!
//! Two ways to feed the workers, same work and same results:
//!
//! * **pixels shipped**: the parent makes each picture (procedurally, standing in for decoding a
//!   file) and sends its raw pixels as a [`workpool::Bytes`] (2.4 MB: it travels in shared
//!   memory, mapped by the worker without a copy); the worker halves it with an area filter,
//!   box-blurs it three times (close to a Gaussian blur) and sends back a small summary;
//! * **pixels as `Vec<u8>`**: the same, with the pixels in a plain `Vec<u8>` field, which serde
//!   encodes element by element (what not to do);
//! * **made in the worker**: the parent sends only a seed (standing in for a file name), and the
//!   worker makes the picture itself before doing the same.
//!
//!
//! rayon doing the same on threads is the yardstick for the speed-up.
//!
//! Whatever the parent does alone (making and encoding pixels, collecting results) is the serial
//! part that caps the speed-up. For a speed-up S on N workers, Amdahl's law gives the serial
//! fraction f = (N/S − 1)/(N − 1), and at most 1/(f + (1 − f)/M) on M workers.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use workpool::{Bytes, Executor, Task};

const IMAGES: u32 = 16;
const WIDTH: usize = 1024;
const HEIGHT: usize = 768;
const BLUR_RADIUS: usize = 3;
const BLUR_PASSES: usize = 3;

/// An RGB picture, 8 bits a channel, rows top to bottom: the raw pixels in a `Bytes`.
#[derive(Serialize, Deserialize)]
struct Image {
    width: usize,
    height: usize,
    pixels: Bytes,
}

impl Image {
    /// A picture from a seed: gradients, rings and a little noise, in integer arithmetic.
    fn generate(seed: u32, width: usize, height: usize) -> Image {
        let mut pixels = Vec::with_capacity(width * height * 3);
        let (cx, cy) = ((seed as usize * 97) % width, (seed as usize * 61) % height);
        let mut noise = seed.wrapping_mul(0x9E37_79B9) | 1;
        for y in 0..height {
            for x in 0..width {
                noise ^= noise << 13;
                noise ^= noise >> 17;
                noise ^= noise << 5;
                let (dx, dy) = (x.abs_diff(cx), y.abs_diff(cy));
                let ring = ((dx * dx + dy * dy) >> 6) as u32;
                let r = (x * 255 / width) as u32 ^ (ring & 0x3f);
                let g = (y * 255 / height) as u32 + (ring & 0x1f);
                let b = ((x ^ y) as u32).wrapping_add(seed * 17) ^ (noise & 0x0f);
                pixels.extend_from_slice(&[r as u8, g.min(255) as u8, b as u8]);
            }
        }
        Image { width, height, pixels: Bytes::from(pixels) }
    }

    /// Halves both sides, each new pixel the mean of a 2×2 block.
    fn half(&self) -> Image {
        let (w, h) = (self.width / 2, self.height / 2);
        let mut pixels = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let at = |xx: usize, yy: usize| u32::from(self.pixels[(yy * self.width + xx) * 3 + c]);
                    let sum = at(2 * x, 2 * y) + at(2 * x + 1, 2 * y) + at(2 * x, 2 * y + 1) + at(2 * x + 1, 2 * y + 1);
                    pixels[(y * w + x) * 3 + c] = ((sum + 2) / 4) as u8;
                }
            }
        }
        Image { width: w, height: h, pixels: Bytes::from(pixels) }
    }

    /// A box blur of `radius`, separably: rows, then columns; edges clamp.
    fn box_blur(&self, radius: usize) -> Image {
        let (w, h) = (self.width, self.height);
        let pass = |src: &[u8], len: usize, lines: usize, stride: usize, step: usize| {
            let mut out = vec![0u8; src.len()];
            let span = (2 * radius + 1) as u32;
            for line in 0..lines {
                for c in 0..3 {
                    let px = |i: usize| u32::from(src[line * stride + i.min(len - 1) * step + c]);
                    let mut sum: u32 = (0..=radius).map(px).sum::<u32>() + radius as u32 * px(0);
                    for i in 0..len {
                        out[line * stride + i * step + c] = ((sum + span / 2) / span) as u8;
                        sum += px(i + radius + 1);
                        sum -= px(i.saturating_sub(radius));
                    }
                }
            }
            out
        };
        let rows = pass(&self.pixels[..], w, h, w * 3, 3);
        let cols = pass(&rows, h, w, 3, w * 3);
        Image { width: w, height: h, pixels: Bytes::from(cols) }
    }
}

/// What a worker sends back: the thumbnail's size, mean colour and a checksum of its pixels.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Summary {
    width: usize,
    height: usize,
    mean: [f32; 3],
    checksum: u64,
}

/// The work on one picture: halve, blur, summarize.
fn thumbnail(image: &Image) -> Summary {
    let mut image = image.half();
    for _ in 0..BLUR_PASSES {
        image = image.box_blur(BLUR_RADIUS);
    }
    let mut sums = [0u64; 3];
    let mut checksum: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, &v) in image.pixels.iter().enumerate() {
        sums[i % 3] += u64::from(v);
        checksum = (checksum ^ u64::from(v)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let n = (image.width * image.height) as f32;
    Summary { width: image.width, height: image.height, mean: sums.map(|s| s as f32 / n), checksum }
}

/// A picture shipped to the worker, pixels and all.
#[derive(Serialize, Deserialize)]
struct FromPixels(Image);

impl Task for FromPixels {
    type Output = Summary;
    fn run(self) -> Summary {
        thumbnail(&self.0)
    }
}

/// A picture shipped with its pixels in a plain `Vec<u8>` (encoded element by element).
#[derive(Serialize, Deserialize)]
struct FromVec {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Task for FromVec {
    type Output = Summary;
    fn run(self) -> Summary {
        thumbnail(&Image { width: self.width, height: self.height, pixels: Bytes::from(self.pixels) })
    }
}

/// A picture the worker makes itself from its seed.
#[derive(Serialize, Deserialize)]
struct FromSeed(u32);

impl Task for FromSeed {
    type Output = Summary;
    fn run(self) -> Summary {
        thumbnail(&Image::generate(self.0, WIDTH, HEIGHT))
    }
}

workpool::register!(FromPixels, FromVec, FromSeed);

fn main() {
    workpool::init();
    let workers = workpool::cpu_count();
    let executor = Executor::builder().workers(workers).build().expect("start the executor");
    println!(
        "{IMAGES} pictures of {WIDTH}×{HEIGHT} RGB → halved, box blur r={BLUR_RADIUS} ×{BLUR_PASSES}; {workers} worker process{}",
        if workers == 1 { "" } else { "es" }
    );

    // Start the workers first: their start-up is not what this example measures.
    let warm = (0..4 * workers as u32).map(|i| FromPixels(Image::generate(i, 16, 16)));
    executor.map(warm).for_each(|r| {
        r.expect("warm-up");
    });

    let capacity = hardware_parallelism(workers);
    if workers > 1 {
        println!("hardware check: {workers} threads of plain arithmetic get through {capacity:.2}× the work of one");
        if capacity < 0.8 * workers as f64 {
            println!(
                "  (these CPUs are shared or throttled: that caps the speed-ups below, whatever the program does)"
            );
        }
    }

    // Best of two runs of each, to see past other programs on the machine.
    let (t_seq, sequential): (_, Vec<Summary>) =
        best_of(2, || (0..IMAGES).map(|i| thumbnail(&Image::generate(i, WIDTH, HEIGHT))).collect());
    let (t_ship, shipped): (_, Vec<Summary>) = best_of(2, || {
        let tasks = (0..IMAGES).map(|i| FromPixels(Image::generate(i, WIDTH, HEIGHT)));
        executor.map(tasks).map(|r| r.expect("a thumbnail")).collect()
    });
    let (t_vec, as_vec): (_, Vec<Summary>) = best_of(2, || {
        let tasks = (0..IMAGES).map(|i| {
            let image = Image::generate(i, WIDTH, HEIGHT);
            FromVec { width: image.width, height: image.height, pixels: image.pixels.into_vec() }
        });
        executor.map(tasks).map(|r| r.expect("a thumbnail")).collect()
    });
    let (t_seed, seeded): (_, Vec<Summary>) =
        best_of(2, || executor.map((0..IMAGES).map(FromSeed)).map(|r| r.expect("a thumbnail")).collect());
    let pool = rayon::ThreadPoolBuilder::new().num_threads(workers).build().expect("a rayon pool");
    let (t_rayon, with_rayon): (_, Vec<Summary>) = best_of(2, || {
        pool.install(|| (0..IMAGES).into_par_iter().map(|i| thumbnail(&Image::generate(i, WIDTH, HEIGHT))).collect())
    });
    assert_eq!(sequential, shipped, "workers compute exactly what this process computes");
    assert_eq!(sequential, as_vec, "workers compute exactly what this process computes");
    assert_eq!(sequential, with_rayon, "rayon computes exactly what this process computes");
    assert_eq!(sequential, seeded, "workers compute exactly what this process computes");
    let first = &sequential[0];
    println!(
        "each thumbnail {}×{} (picture 0: mean RGB {:.1}, {:.1}, {:.1}); every way agrees exactly\n",
        first.width, first.height, first.mean[0], first.mean[1], first.mean[2]
    );

    let n = workers as f64;
    println!("                             time    speed-up S   serial fraction f");
    println!("  one process             {:>7}", fmt(t_seq));
    let mut fractions = Vec::new();
    let ways = [
        ("pixels shipped (Bytes)", t_ship),
        ("pixels as Vec<u8>", t_vec),
        ("made in the worker", t_seed),
        ("rayon, threads", t_rayon),
    ];
    for (what, t) in ways {
        let s = t_seq.as_secs_f64() / t.as_secs_f64();
        if workers > 1 {
            let f = ((n / s - 1.0) / (n - 1.0)).clamp(0.0, 1.0);
            fractions.push((what, f));
            println!("  {what:<22}  {:>7}   {s:>8.2}×   {:>14.1}%", fmt(t), 100.0 * f);
        } else {
            println!("  {what:<22}  {:>7}   {s:>8.2}×", fmt(t));
        }
    }
    println!();
    if workers == 1 {
        println!("one CPU: nothing runs in parallel, so there is no serial fraction to estimate");
        return;
    }
    println!(
        "Amdahl: f = (N/S − 1)/(N − 1) with N = {workers}; on M workers the speed-up is at most 1/(f + (1 − f)/M):"
    );
    for (what, f) in fractions {
        let at = |m: f64| 1.0 / (f + (1.0 - f) / m);
        let limit = if f > 0.0 { format!("{:.1}×", 1.0 / f) } else { "unbounded".to_string() };
        println!("  {what:<22}  8 workers: {:>5.1}×   32 workers: {:>5.1}×   limit: {limit}", at(8.0), at(32.0));
    }
}

/// How many times the work of one thread `threads` threads get through in the same time: the
/// parallelism the machine really offers right now (shared or throttled CPUs offer less).
fn hardware_parallelism(threads: usize) -> f64 {
    let spin = || {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        std::hint::black_box(x)
    };
    let (one, _) = best_of(3, spin);
    let (all, _) =
        best_of(3, || std::thread::scope(|s| (0..threads).map(|_| s.spawn(spin)).for_each(|h| drop(h.join()))));
    threads as f64 * one.as_secs_f64() / all.as_secs_f64()
}

/// The shortest of `runs` timed runs of `f`, and the last result.
fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut result = None;
    for _ in 0..runs {
        let start = Instant::now();
        result = Some(f());
        best = best.min(start.elapsed());
    }
    (best, result.expect("at least one run"))
}

fn fmt(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}
