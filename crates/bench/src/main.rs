//! `confer-bench`: Confer's benchmarks (see ../shared/design/BENCHMARKS.md). Each section
//! measures Confer and a baseline side by side in the same run and prints the ratio; every
//! figure is the median of several runs. Results are recorded in docs/benchmarks.md.
//!
//! `cargo run --release -p confer-bench [-- e2ee|signalling|noisy|sfu|saturation|callgrind|cluster] [--summary PATH]`;
//! `make bench` runs them all with the web client's and writes `target/bench/summary.json`.
//! The `janus` section (Janus VideoRoom against Confer at saturation) needs root and network
//! namespaces: `scripts/bench-netns.sh target/release/confer-bench janus`; it runs only when
//! named (`make bench` runs it so and imports its tables).

use std::time::{Duration, Instant};

mod alloc_count;
mod cluster;
mod e2ee;
mod noisy;
mod peer;
mod report;
mod saturation;
mod sfu;
mod signalling;

/// Every allocation is counted per thread (allocations per forwarded packet, heap per
/// participant); counting costs a thread-local increment.
#[global_allocator]
static ALLOC: alloc_count::Counting = alloc_count::Counting;

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

const SECTIONS: [&str; 8] = [
    "e2ee",
    "signalling",
    "noisy",
    "sfu",
    "saturation",
    "callgrind",
    "cluster",
    "janus",
];
/// Sections run only when named (they need what `scripts/bench-netns.sh` sets up).
const ONLY_NAMED: [&str; 1] = ["janus"];

fn usage() -> String {
    format!(
        "usage: confer-bench [SECTION...] [--summary PATH] [--import LABEL=PATH...]\n\
         SECTION: {} (none: all of them but {})\n\
         --summary PATH: also write every table as JSON (one object per table)\n\
         --import LABEL=PATH: add the Markdown tables another program printed to PATH",
        SECTIONS.join(", "),
        ONLY_NAMED.join(", ")
    )
}

fn main() -> anyhow::Result<()> {
    // Programs the sections run in processes of their own (not in the usage): the one the
    // `callgrind` section runs under valgrind, and the idle-memory measure.
    match std::env::args().nth(1).as_deref() {
        Some(saturation::callgrind::SUBCOMMAND) => return saturation::callgrind::child(),
        Some(saturation::memory::SUBCOMMAND) => return saturation::memory::child(),
        _ => {}
    }
    let mut sections = Vec::new();
    let mut summary = None;
    let mut imports = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--summary" => summary = Some(args.next().ok_or_else(|| anyhow::anyhow!(usage()))?),
            "--import" => {
                let v = args.next().ok_or_else(|| anyhow::anyhow!(usage()))?;
                let (label, path) = v.split_once('=').ok_or_else(|| anyhow::anyhow!(usage()))?;
                imports.push((label.to_owned(), path.to_owned()));
            }
            s if SECTIONS.contains(&s) => sections.push(a),
            _ => anyhow::bail!(usage()),
        }
    }
    let all = sections.is_empty();
    let wants = |s: &str| (all && !ONLY_NAMED.contains(&s)) || sections.iter().any(|x| x == s);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("confer-bench on {cores} cores");
    let mut tables = Vec::new();
    for (label, path) in &imports {
        let text = std::fs::read_to_string(path)?;
        tables.extend(report::tables_in_markdown(&text, label));
    }
    if wants("e2ee") {
        tables.extend(e2ee::run());
    }
    if wants("signalling") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        tables.extend(rt.block_on(signalling::run())?);
    }
    if wants("noisy") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        tables.extend(rt.block_on(noisy::run())?);
    }
    if wants("sfu") {
        tables.extend(sfu::run());
    }
    if wants("saturation") {
        tables.extend(saturation::run()?);
    }
    if wants("callgrind") {
        tables.extend(saturation::callgrind::run()?);
    }
    if wants("cluster") {
        tables.extend(cluster::run()?);
    }
    if wants("janus") {
        tables.extend(saturation::janus::run()?);
    }
    if let Some(path) = summary {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let doc = serde_json::json!({
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "cores": cores,
            "load_average_at_end": load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
            "tables": tables.iter().map(report::Table::to_json).collect::<Vec<_>>(),
        });
        if let Some(dir) = std::path::Path::new(&path).parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
        println!();
        println!("{} tables written to {path}", tables.len());
    }
    Ok(())
}
