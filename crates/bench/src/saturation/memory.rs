//! Memory per participant, from the counting allocator ([`crate::alloc_count`]): the live heap
//! bytes a step adds on the thread that runs it.
//! - **Idle**: offers accepted by one `Sfu` (the trace's client offers: Opus and VP8 sent, 5
//!   receive slots of each, as a room of 6), nothing connected or flowing: the live bytes
//!   `accept_offer` adds, per participant; and the process's resident memory (`VmRSS`) over
//!   the same step, with every client offer made beforehand and kept alive, so what grows is
//!   the SFU's (and malloc's rounding and arenas). Measured in a fresh process (the hidden
//!   subcommand [`SUBCOMMAND`]): in this one, memory freed by the saturation runs is reused
//!   and resident memory would not move.
//! - **Connected** and **active**: the heap an `Sfu` owns, measured as the live bytes
//!   released by dropping it, less an empty `Sfu`'s, per participant: connected is a room of
//!   6 after ICE and DTLS with nothing sent; active is the saturation section's room of 6 at
//!   fan-out 5 after Confer forwarded its trace (packet histories for NACKs and RTX filled).
//!   Resident memory is not given for these: the traces and client peers in the same process
//!   would swamp it.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Command;
use std::time::Instant;

use confer_proto::ParticipantId;
use confer_sfu::{Sfu, SfuConfig};
use confer_testkit::media::ClientOffer;

use super::trace;
use crate::alloc_count::Allocs;
use crate::report::{Cell, Table};

/// The hidden subcommand that measures idle participants in a fresh process.
pub(crate) const SUBCOMMAND: &str = "__memory-idle";
/// Idle participants measured together (enough for resident memory to move by megabytes).
const IDLE: usize = 120;
/// Receive slots of each kind per participant (a room of 6).
const SLOTS: usize = 5;
/// The target, in bytes per idle participant.
const TARGET_IDLE: f64 = 200_000.0;

/// Heap bytes an `Sfu` owns: what dropping it releases.
pub(super) fn owned(sfu: Sfu) -> f64 {
    let before = Allocs::now();
    drop(sfu);
    -Allocs::since(before).live() as f64
}

/// An empty `Sfu`'s heap.
fn empty() -> f64 {
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9));
    owned(Sfu::new(SfuConfig::new(addr), Instant::now()))
}

fn rss_bytes() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib * 1024.0)
}

fn pid(i: usize) -> ParticipantId {
    // 32 hex digits: a valid id by construction.
    ParticipantId::new(format!("{i:032x}")).expect("a valid participant id")
}

/// Idle: (live heap bytes per participant, resident bytes per participant, heap owned at drop
/// per participant).
fn idle() -> anyhow::Result<(f64, f64, f64)> {
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9));
    let now = Instant::now();
    let mut sfu = Sfu::new(SfuConfig::new(addr), now);
    let offers: Vec<(ClientOffer, String)> = (0..IDLE)
        .map(|i| {
            let port = 20_000 + i as u16;
            let client = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
            let o = ClientOffer::new(client, SLOTS, now);
            let sdp = o.offer.to_sdp_string();
            (o, sdp)
        })
        .collect();
    let rss0 = rss_bytes();
    let heap0 = Allocs::now();
    for (i, (_, sdp)) in offers.iter().enumerate() {
        let answer = sfu.accept_offer(pid(i), sdp, now)?;
        drop(answer);
    }
    let live = Allocs::since(heap0).live() as f64;
    let rss = rss_bytes() - rss0;
    let at_drop = owned(sfu) - empty();
    drop(offers);
    let n = IDLE as f64;
    Ok((live / n, rss / n, at_drop / n))
}

/// The subcommand: prints the idle figures for the parent.
pub(crate) fn child() -> anyhow::Result<()> {
    let (live, rss, at_drop) = idle()?;
    println!("idle {live} {rss} {at_drop}");
    Ok(())
}

/// [`idle`] in a fresh process.
fn idle_in_child() -> anyhow::Result<(f64, f64, f64)> {
    let out = Command::new(std::env::current_exe()?)
        .arg(SUBCOMMAND)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text
        .lines()
        .find_map(|l| l.strip_prefix("idle "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    match v[..] {
        [live, rss, at_drop] => Ok((live, rss, at_drop)),
        _ => anyhow::bail!(
            "{SUBCOMMAND} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Connected: a room of `participants` after ICE and DTLS, nothing sent.
fn connected(participants: usize) -> anyhow::Result<f64> {
    let room = trace::room(participants, 0)?;
    Ok((owned(room.sfu) - empty()) / participants as f64)
}

/// The memory table; `active` is the heap a room of `participants` owned after forwarding
/// (median over the saturation runs), per the whole room.
pub(super) fn run(active: f64, participants: usize) -> anyhow::Result<Table> {
    let (idle_live, idle_rss, idle_owned) = idle_in_child()?;
    let connected = connected(participants)?;
    let active = (active - empty()) / participants as f64;
    let mut table = Table::new(
        format!(
            "SFU memory per participant (counting allocator: live heap bytes; idle: {IDLE} offers accepted by one Sfu, {SLOTS} receive slots of each kind; connected and active: a room of {participants}, the heap the Sfu releases when dropped, less an empty Sfu's)"
        ),
        &[
            "participant",
            "heap bytes",
            "heap bytes (at drop)",
            "RSS bytes",
            "target",
            "met",
        ],
    );
    let met = |b: f64| if b < TARGET_IDLE { "yes" } else { "no" };
    table.row(vec![
        Cell::text("idle (offer accepted)"),
        Cell::num(idle_live, 0),
        Cell::num(idle_owned, 0),
        Cell::num(idle_rss, 0),
        Cell::text("< 200 KB"),
        Cell::text(met(idle_live.max(idle_rss))),
    ]);
    table.row(vec![
        Cell::text("connected (ICE and DTLS done, nothing sent)"),
        Cell::num(f64::NAN, 0),
        Cell::num(connected, 0),
        Cell::num(f64::NAN, 0),
        Cell::text("-"),
        Cell::text("-"),
    ]);
    table.row(vec![
        Cell::text(format!(
            "active (forwarding at fan-out {}, after the saturation trace)",
            participants - 1
        )),
        Cell::num(f64::NAN, 0),
        Cell::num(active, 0),
        Cell::num(f64::NAN, 0),
        Cell::text("-"),
        Cell::text("-"),
    ]);
    table.print();
    Ok(table)
}
