//! Where the SFU's instructions go (../shared/design/BENCHMARKS.md, "Where the time goes"):
//! instructions per forwarded copy by component, counted by `valgrind --tool=callgrind` on a
//! fixed trace, so the figure does not move with the machine's other load.
//!
//! The section runs this executable under callgrind with the hidden subcommand [`SUBCOMMAND`]
//! ([`child`]), at fan-outs 3 and 5: a room (4 or 6 participants) is built as the saturation section's
//! (str0m client peers, ICE and DTLS in memory, the trace of their SRTP datagrams), then the
//! datagrams are fed to the `Sfu` in-process, no sockets, in batches of 32 in round-robin order
//! of publishers: `handle_datagram` for each datagram of a batch, then `poll_output` until a
//! `Timeout` (a timer already due is run with `handle_timeout`, as the saturation shell does),
//! the transmits dropped. Time is virtual: batch `k` is at `start + k` ms (32 datagrams per ms,
//! about Confer's saturated rate at fan-out 5). The first [`WARM`] datagrams are fed outside
//! the measured region; callgrind counts only inside `forward_fixed_trace` (collection off at
//! start, `--toggle-collect`), the next [`PACKETS`] datagrams.
//!
//! `callgrind_annotate` gives each function's **exclusive** instructions per calling context
//! (`--separate-callers`, so a function is split by the chain of its callers), and each
//! context goes to one component, so the components add up to the total:
//! - by the function itself: **SRTP** (aws-lc: AES-GCM and its wrappers), **malloc/free**
//!   (glibc's allocator, Rust's allocation shims, and this benchmark's counting allocator),
//!   **memcpy/memset** (and memmove, memcmp);
//! - otherwise by the nearest of its callers that says where it runs: **str0m receive**
//!   (`Rtc::handle_input` of a received datagram, less its timer pass), **str0m timers**
//!   (str0m's `handle_timeout`s: the pass every received datagram runs, and `Input::Timeout`),
//!   **str0m poll** (`Rtc::poll_output`), **Confer's glue** (`confer_sfu`'s own functions, and
//!   std code they call directly), **other** (the driver's loop).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use confer_sfu::{Output, Sfu};

use super::io::BATCH;
use super::trace;
use crate::alloc_count::Allocs;
use crate::report::{Cell, Table};

/// The hidden subcommand the section runs under callgrind.
pub(crate) const SUBCOMMAND: &str = "__callgrind-sfu";
/// Fan-outs measured (rooms of 4 and 6).
const FANOUTS: [usize; 2] = [3, 5];
/// Datagrams fed before the measured region (first-use allocations, tables growing).
const WARM: usize = 384;
/// Datagrams fed inside it (callgrind runs some 50 times slower than the CPU).
const PACKETS: usize = 3072;
/// Virtual time between batches.
const STEP: Duration = Duration::from_millis(1);
/// Callers kept per context: deep enough to reach `Rtc::handle_input` from aws-lc's leaves.
const DEPTH: usize = 40;
/// The function callgrind counts inside.
const REGION: &str = "forward_fixed_trace";

/// The subcommand (`__callgrind-sfu FANOUT`): builds the room, feeds the trace, prints what
/// the parent parses.
pub(crate) fn child() -> anyhow::Result<()> {
    let fanout: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let per_publisher = (WARM + PACKETS).div_ceil(fanout + 1);
    let room = trace::room(fanout + 1, per_publisher)?;
    let mut sfu = room.sfu;
    let local = SocketAddr::V4(room.forwarder_addr);
    // Round-robin over publishers: datagram i of each, then i + 1.
    let mut order: Vec<(SocketAddr, &[u8])> = Vec::with_capacity(WARM + PACKETS);
    for i in 0..per_publisher {
        for (addr, t) in room.addrs.iter().zip(&room.trace) {
            order.push((SocketAddr::V4(*addr), t[i].as_slice()));
        }
    }
    order.truncate(WARM + PACKETS);
    let (warm, measured) = order.split_at(WARM);
    let start = Instant::now();
    feed(&mut sfu, warm, local, start, 0);
    let copies0 = sfu.stats().forwarded_packets;
    let allocs0 = Allocs::now();
    forward_fixed_trace(&mut sfu, measured, local, start, WARM / BATCH);
    let allocs = Allocs::since(allocs0);
    let copies = sfu.stats().forwarded_packets - copies0;
    println!(
        "datagrams {} copies {copies} allocations {} bytes {}",
        measured.len(),
        allocs.calls,
        allocs.bytes
    );
    Ok(())
}

/// The measured region (callgrind toggles collection on entering and leaving it).
#[inline(never)]
fn forward_fixed_trace(
    sfu: &mut Sfu,
    datagrams: &[(SocketAddr, &[u8])],
    local: SocketAddr,
    start: Instant,
    first_batch: usize,
) {
    feed(sfu, datagrams, local, start, first_batch);
}

/// Batches of [`BATCH`] datagrams, one `now` each, then the SFU's output until a timeout.
fn feed(
    sfu: &mut Sfu,
    datagrams: &[(SocketAddr, &[u8])],
    local: SocketAddr,
    start: Instant,
    first_batch: usize,
) {
    for (k, batch) in datagrams.chunks(BATCH).enumerate() {
        let now = start + STEP * (first_batch + k) as u32;
        for &(from, d) in batch {
            sfu.handle_datagram(now, from, local, d);
        }
        // As the saturation shell: a timer due now runs, a few rounds at most.
        let mut rounds = 0;
        loop {
            match sfu.poll_output() {
                Output::Transmit { contents, .. } => drop(std::hint::black_box(contents)),
                Output::Timeout(t) if t <= now && rounds < 4 => {
                    rounds += 1;
                    sfu.handle_timeout(now);
                }
                Output::Timeout(_) => break,
                _ => {}
            }
        }
    }
}

/// Where a context's instructions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Component {
    Receive,
    TimersAfterReceive,
    TimersInput,
    Poll,
    Glue,
    Srtp,
    Malloc,
    Mem,
    Other,
}

impl Component {
    const ALL: [Component; 9] = [
        Component::Receive,
        Component::TimersAfterReceive,
        Component::TimersInput,
        Component::Poll,
        Component::Srtp,
        Component::Glue,
        Component::Malloc,
        Component::Mem,
        Component::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            Component::Receive => "str0m receive (handle_input of a datagram, less its timer pass)",
            Component::TimersAfterReceive => {
                "str0m timers: the pass after each received datagram (handle_input)"
            }
            Component::TimersInput => {
                "str0m timers: Input::Timeout (the SFU's flush in poll_output, handle_timeout)"
            }
            Component::Poll => "str0m poll (Rtc::poll_output)",
            Component::Srtp => "SRTP (aws-lc AES-GCM and its wrappers)",
            Component::Glue => "Confer's glue (confer_sfu's own code, exclusive)",
            Component::Malloc => "malloc/free (glibc, Rust's shims, the counting allocator)",
            Component::Mem => "memcpy/memmove/memset/memcmp",
            Component::Other => "other (the driver's loop)",
        }
    }
}

/// aws-lc (C and Rust wrappers), str0m's SRTP provider on it, and str0m's SRTP contexts.
fn is_crypto(f: &str) -> bool {
    f.contains("aws_lc")
        || f.contains("str0m_proto::crypto")
        || f.contains("AeadAes")
        || f.contains("::srtp::")
}

/// glibc's allocator (by its source file), Rust's allocation shims, the counting allocator.
fn is_malloc(file: &str, f: &str) -> bool {
    file.contains("/malloc/")
        || ["malloc", "free", "realloc", "calloc", "cfree"].contains(&f)
        || f.starts_with("__rustc::__rust_")
        || f.starts_with("__rust_")
        || f.starts_with("__rdl_")
        || f.contains("confer_bench::alloc_count::")
}

/// glibc's string functions that move or compare memory.
fn is_mem(file: &str, f: &str) -> bool {
    let libc = file.contains("/string/") || f.starts_with("__mem") || f.starts_with("mem");
    libc && ["cpy", "move", "set", "cmp"].iter().any(|p| f.contains(p))
}

/// The component of one context: `chain[0]` the function (defined in `file`), then its
/// callers, nearest first.
fn classify(file: &str, chain: &[&str]) -> Component {
    let f = chain[0];
    if is_malloc(file, f) {
        return Component::Malloc;
    }
    if is_mem(file, f) {
        return Component::Mem;
    }
    // aws-lc's static functions have no prefix: SRTP if a crypto frame comes before str0m's
    // or Confer's code.
    for c in chain {
        if is_crypto(c) {
            return Component::Srtp;
        }
        if c.contains("str0m::") || c.contains("confer_") {
            break;
        }
    }
    phase(chain)
}

/// Where a context runs: the nearest of its callers that says so (str0m's entry points,
/// Confer's code), else the driver.
fn phase(chain: &[&str]) -> Component {
    for (i, c) in chain.iter().enumerate() {
        let str0m = c.starts_with("str0m::") || c.starts_with("<str0m::");
        let above_is_datagram = || {
            chain[i + 1..]
                .iter()
                .find(|x| x.contains("confer_sfu::"))
                .is_some_and(|x| x.contains("handle_datagram"))
        };
        if str0m && c.contains("handle_timeout") {
            return if above_is_datagram() {
                Component::TimersAfterReceive
            } else {
                Component::TimersInput
            };
        }
        if str0m && c.contains("poll_output") {
            return Component::Poll;
        }
        // `do_handle_receive` is inlined into `handle_input`; its timer pass is not.
        if str0m && (c.contains("do_handle_receive") || c.contains("Rtc::handle_input")) {
            return if above_is_datagram() {
                Component::Receive
            } else {
                Component::TimersInput
            };
        }
        if c.contains("confer_sfu::") {
            return Component::Glue;
        }
    }
    Component::Other
}

/// `(instructions, source file, function with its callers)` per line of `callgrind_annotate`,
/// and the program's total.
fn parse_annotate(text: &str) -> (Vec<(u64, String, String)>, u64) {
    let mut rows = Vec::new();
    let mut total = 0;
    for line in text.lines() {
        let line = line.trim();
        let Some((n, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(n) = n.replace(',', "").parse::<u64>() else {
            continue;
        };
        let rest = rest.trim_start();
        // "(12.34%)" follows the count in callgrind_annotate 3.19.
        let rest = match rest.strip_prefix('(') {
            Some(r) => r.split_once(')').map_or(r, |(_, x)| x).trim_start(),
            None => rest,
        };
        if rest.starts_with("PROGRAM TOTALS") {
            total = n;
            continue;
        }
        // "file:function [object]": the file holds no ':', the object is last.
        let Some((file, func)) = rest.split_once(':') else {
            continue;
        };
        let func = match func.rfind(" [") {
            Some(k) if func.ends_with(']') => &func[..k],
            _ => func,
        };
        rows.push((n, file.to_owned(), func.to_owned()));
    }
    (rows, total)
}

/// What the child printed: datagrams fed, copies forwarded, allocations and their bytes.
fn parse_child(stdout: &str) -> Option<[u64; 4]> {
    let line = stdout.lines().find(|l| l.starts_with("datagrams "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .step_by(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    v.try_into().ok()
}

/// One callgrind run at `fanout`: instructions by component, the total, datagrams, copies,
/// allocations and their bytes, and how long it took.
struct Profile {
    by: BTreeMap<Component, u64>,
    /// SRTP's instructions by where they run (decrypting in receive, encrypting in poll).
    srtp_by: BTreeMap<Component, u64>,
    total: u64,
    datagrams: u64,
    copies: u64,
    allocs: u64,
    alloc_bytes: u64,
    took: Duration,
}

fn profile(fanout: usize) -> anyhow::Result<Profile> {
    let exe = std::env::current_exe()?;
    let dir = std::env::temp_dir().join(format!("confer-bench-callgrind-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let out = dir.join(format!("callgrind.out.{fanout}"));
    let started = Instant::now();
    let run = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg("--collect-atstart=no")
        .arg(format!("--toggle-collect=*{REGION}"))
        .arg(format!("--separate-callers={DEPTH}"))
        .arg(&exe)
        .arg(SUBCOMMAND)
        .arg(fanout.to_string())
        .output()?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    let Some([datagrams, copies, allocs, alloc_bytes]) = parse_child(&stdout) else {
        std::fs::remove_dir_all(&dir).ok();
        anyhow::bail!(
            "callgrind run failed: {}\n{}",
            run.status,
            String::from_utf8_lossy(&run.stderr)
        );
    };
    let annotate = Command::new("callgrind_annotate")
        .arg("--inclusive=no")
        .arg("--threshold=100")
        .arg(&out)
        .output();
    std::fs::remove_dir_all(&dir).ok();
    let (rows, total) = parse_annotate(&String::from_utf8_lossy(&annotate?.stdout));
    if total == 0 || copies == 0 {
        anyhow::bail!("callgrind_annotate gave no totals ({copies} copies)");
    }
    let mut by: BTreeMap<Component, u64> = BTreeMap::new();
    let mut srtp_by: BTreeMap<Component, u64> = BTreeMap::new();
    for (n, file, func) in &rows {
        let chain: Vec<&str> = func.split('\'').collect();
        let c = classify(file, &chain);
        *by.entry(c).or_default() += n;
        if c == Component::Srtp {
            *srtp_by.entry(phase(&chain)).or_default() += n;
        }
    }
    Ok(Profile {
        by,
        srtp_by,
        total,
        datagrams,
        copies,
        allocs,
        alloc_bytes,
        took: started.elapsed(),
    })
}

/// Runs the section: callgrind on the child at each fan-out, then the table.
pub(crate) fn run() -> anyhow::Result<Vec<Table>> {
    println!();
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!(
            "SFU instructions per copy: skipped, valgrind is not installed (scripts/install-bench-deps.sh installs it)"
        );
        return Ok(Vec::new());
    }
    let profiles = FANOUTS
        .iter()
        .map(|&f| profile(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut columns = vec!["component".to_owned()];
    for f in FANOUTS {
        columns.push(format!("fan-out {f}: instructions per copy"));
        columns.push(format!("fan-out {f}: % of total"));
    }
    let detail: Vec<String> = FANOUTS
        .iter()
        .zip(&profiles)
        .map(|(f, p)| {
            let placed: u64 = p.by.values().sum();
            format!(
                "fan-out {f}: {} datagrams, {} copies, {} instructions ({:.1} % placed), {:.0} s under callgrind",
                p.datagrams,
                p.copies,
                grouped(p.total),
                100.0 * placed as f64 / p.total as f64,
                p.took.as_secs_f64()
            )
        })
        .collect();
    let mut table = Table::new(
        format!(
            "SFU instructions per forwarded copy by component (callgrind on a fixed trace fed in-process after {WARM} datagrams of warm-up; exclusive instructions by calling context; {})",
            detail.join("; ")
        ),
        &columns.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let mut row = |label: &str, f: &dyn Fn(&Profile) -> (f64, f64), decimals: usize| {
        let mut cells = vec![Cell::text(label)];
        for p in &profiles {
            let (v, pct) = f(p);
            cells.push(Cell::num(v, decimals));
            cells.push(Cell::num(pct, 1));
        }
        table.row(cells);
    };
    for c in Component::ALL {
        row(
            c.label(),
            &|p| {
                let n = p.by.get(&c).copied().unwrap_or(0);
                (
                    n as f64 / p.copies as f64,
                    100.0 * n as f64 / p.total as f64,
                )
            },
            0,
        );
    }
    row("total", &|p| (p.total as f64 / p.copies as f64, 100.0), 0);
    for (c, label) in [
        (
            Component::Receive,
            "SRTP, of it: in str0m receive (decrypting)",
        ),
        (Component::Poll, "SRTP, of it: in str0m poll (encrypting)"),
    ] {
        row(
            label,
            &|p| {
                let n = p.srtp_by.get(&c).copied().unwrap_or(0);
                (
                    n as f64 / p.copies as f64,
                    100.0 * n as f64 / p.total as f64,
                )
            },
            0,
        );
    }
    row(
        "allocations per copy (the Sfu's calls only, no shell; counting allocator)",
        &|p| (p.allocs as f64 / p.copies as f64, f64::NAN),
        2,
    );
    row(
        "allocated bytes per copy (the same)",
        &|p| (p.alloc_bytes as f64 / p.copies as f64, f64::NAN),
        0,
    );
    table.print();
    Ok(vec![table])
}

fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotate_lines_are_parsed() {
        let text = "--------\n\
                    10,000 (100.0%)  PROGRAM TOTALS\n\
                    --------\n\
                    4,000 (40.00%)  ???:aws_lc_0_30_0_aes_hw_ctr32_encrypt_blocks'str0m_aws_lc_rs::x [/bin/b]\n\
                    1,000 (10.00%)  /src/a.rs:confer_sfu::sfu::Sfu::drain [/bin/b]\n";
        let (rows, total) = parse_annotate(text);
        assert_eq!(total, 10_000);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].0, 1000);
        assert_eq!(rows[1].1, "/src/a.rs");
        assert_eq!(rows[1].2, "confer_sfu::sfu::Sfu::drain");
    }

    #[test]
    fn contexts_go_to_their_component() {
        let c = |s: &str| classify("???", &s.split('\'').collect::<Vec<_>>());
        assert_eq!(
            c("malloc'str0m::x'str0m::Rtc::poll_output"),
            Component::Malloc
        );
        assert_eq!(
            c("_aesni_ctr32_ghash_6x'aws_lc_0_47_0_aesni_gcm_encrypt'str0m::Rtc::poll_output"),
            Component::Srtp
        );
        assert_eq!(
            classify("./malloc/./malloc/malloc.c", &["unlink_chunk.constprop.0"]),
            Component::Malloc
        );
        assert_eq!(
            c("__memmove_avx_unaligned_erms'confer_sfu::sfu::Sfu::drain"),
            Component::Mem
        );
        assert_eq!(
            c(
                "str0m::session::Session::handle_timeout'str0m::Rtc::handle_input'confer_sfu::sfu::Sfu::handle_datagram"
            ),
            Component::TimersAfterReceive
        );
        assert_eq!(
            c(
                "str0m::streams::x'str0m::Rtc::handle_input'confer_sfu::sfu::Sfu::flush'confer_sfu::sfu::Sfu::poll_output"
            ),
            Component::TimersInput
        );
        assert_eq!(
            c("core::hash::x'confer_sfu::sfu::Sfu::handle_datagram"),
            Component::Glue
        );
        assert_eq!(
            c("confer_bench::saturation::callgrind::feed"),
            Component::Other
        );
    }
}
