//! `confer-bench`: Confer's benchmarks (see ../shared/design/BENCHMARKS.md). Each section
//! measures Confer and a baseline side by side in the same run and prints the ratio; every
//! figure is the median of several runs. Results are recorded in docs/benchmarks.md.
//!
//! `cargo run --release -p confer-bench [-- e2ee|signalling|noisy|sfu]`

use std::time::{Duration, Instant};

mod e2ee;
mod noisy;
mod peer;
mod sfu;
mod signalling;

/// Median of `runs` measurements of `f` (each returns a rate or a duration in some unit).
pub(crate) fn median(runs: usize, mut f: impl FnMut() -> f64) -> f64 {
    let mut v: Vec<f64> = (0..runs).map(|_| f()).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(crate) fn per_sec(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

pub(crate) fn elapsed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn main() -> anyhow::Result<()> {
    let which = std::env::args().nth(1).unwrap_or_default();
    println!(
        "confer-bench on {} cores (medians of 5 runs)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if which.is_empty() || which == "e2ee" {
        e2ee::run();
    }
    if which.is_empty() || which == "signalling" {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(signalling::run())?;
    }
    if which.is_empty() || which == "noisy" {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(noisy::run())?;
    }
    if which.is_empty() || which == "sfu" {
        sfu::run();
    }
    Ok(())
}
