//! The media task: one UDP socket, the sans-IO [`confer_sfu::Sfu`], and the glue to
//! signalling (offers, slot announcements, routing from every session's room).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use confer_proto::{ChannelId, MediaSlot, ParticipantId, ServerMessage};
use confer_room::RoutingTable;
use confer_sfu::forward::Routing;
use confer_sfu::{Output, Sfu, SfuConfig, SfuStats};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::conn::Conn;
use crate::messages::{MediaCmd, MediaHandle, OfferRefused};

/// Binds the UDP port and starts the task; returns the bound address.
pub(crate) async fn start(
    listen: SocketAddr,
    public: Option<SocketAddr>,
) -> std::io::Result<(MediaHandle, SocketAddr)> {
    let socket = UdpSocket::bind(listen).await?;
    let local = socket.local_addr()?;
    let public = public.unwrap_or(local);
    if public.ip().is_unspecified() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the SFU listens on a wildcard address; set media_public_addr to the address clients reach it at",
        ));
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let sfu = Sfu::new(SfuConfig::new(public), Instant::now().into_std());
    tokio::spawn(run(socket, public, sfu, rx));
    Ok((MediaHandle { tx }, local))
}

// Channel names repeat across sessions ("joint"): the SFU sees them qualified by session.
fn merged(tables: &BTreeMap<u64, RoutingTable>) -> Routing {
    let mut all = BTreeMap::new();
    for (s, t) in tables {
        for (ch, members) in t {
            if let Ok(id) = ChannelId::new(format!("s{s}-{}", ch.as_str())) {
                all.insert(id, members.clone());
            }
        }
    }
    Routing::new(all)
}

// `public` is the destination str0m's ICE expects: the one candidate it announced, even when a
// NAT translates it to the bound address.
async fn run(
    socket: UdpSocket,
    public: SocketAddr,
    mut sfu: Sfu,
    mut rx: mpsc::UnboundedReceiver<MediaCmd>,
) {
    let mut buf = vec![0u8; 2048];
    let mut conns: HashMap<ParticipantId, Conn> = HashMap::new();
    let mut tables: BTreeMap<u64, RoutingTable> = BTreeMap::new();
    let mut reported = SfuStats::default();
    loop {
        let wake = loop {
            match sfu.poll_output() {
                Output::Timeout(t) => break t,
                Output::Transmit {
                    destination,
                    contents,
                } => {
                    // UDP: a full socket buffer drops the datagram, as the network would.
                    let _ = socket.try_send_to(&contents, destination);
                }
                Output::Slots { participant, slots } => {
                    if let Some(c) = conns.get(&participant) {
                        c.send_msg(&ServerMessage::MediaSlots {
                            slots: to_wire(slots),
                        });
                    }
                }
                Output::PeerGone(p) => {
                    conns.remove(&p);
                }
            }
        };
        report(&sfu, &mut reported, conns.len());
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    sfu.handle_datagram(Instant::now().into_std(), from, public, &buf[..n]);
                }
            }
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { return };
                let now = Instant::now().into_std();
                match cmd {
                    MediaCmd::Offer { pid, sdp, conn, reply } => {
                        let r = sfu.accept_offer(pid.clone(), &sdp, now).map_err(|e| OfferRefused::Sdp(e.to_string()));
                        if r.is_ok() {
                            conns.insert(pid, conn);
                        }
                        let _ = reply.send(r);
                    }
                    MediaCmd::Routing { session, table } => {
                        let before: Vec<ParticipantId> = tables.get(&session).map(|t| t.values().flatten().cloned().collect()).unwrap_or_default();
                        if table.is_empty() {
                            tables.remove(&session);
                        } else {
                            tables.insert(session, table);
                        }
                        // Whoever left the session loses its peer at once.
                        let still: Vec<ParticipantId> = tables.get(&session).map(|t| t.values().flatten().cloned().collect()).unwrap_or_default();
                        for p in before.iter().filter(|p| !still.contains(p)) {
                            sfu.remove_peer(p);
                            conns.remove(p);
                        }
                        // Only this session's peers can have changed slots.
                        let mut changed = before;
                        changed.extend(still);
                        sfu.set_routing_for(merged(&tables), &changed, now);
                    }
                    MediaCmd::Keyframe { subscriber, publisher } => sfu.request_keyframe(&subscriber, &publisher, now),
                    MediaCmd::Gone { pid } => {
                        sfu.remove_peer(&pid);
                        conns.remove(&pid);
                    }
                    MediaCmd::Reconnected { pid, conn } => {
                        if let Some(c) = conns.get_mut(&pid) {
                            // Announcements made while it was away went to the old connection.
                            if let Some(slots) = sfu.slots_of(&pid) {
                                conn.send_msg(&ServerMessage::MediaSlots { slots: to_wire(slots) });
                            }
                            *c = conn;
                        }
                    }
                }
            }
            () = tokio::time::sleep_until(Instant::from_std(wake)) => {
                sfu.handle_timeout(Instant::now().into_std());
            }
        }
    }
}

fn report(sfu: &Sfu, last: &mut SfuStats, peers: usize) {
    let s = sfu.stats();
    metrics::gauge!("confer_media_peers").set(peers as f64);
    metrics::counter!("confer_media_forwarded_packets_total")
        .increment(s.forwarded_packets - last.forwarded_packets);
    metrics::counter!("confer_media_forwarded_bytes_total")
        .increment(s.forwarded_bytes - last.forwarded_bytes);
    metrics::counter!("confer_media_keyframe_requests_total")
        .increment(s.keyframe_requests - last.keyframe_requests);
    for (reason, n) in &s.drops {
        let before = last.drops.get(reason).copied().unwrap_or(0);
        if *n > before {
            metrics::counter!("confer_media_drops_total", "reason" => *reason)
                .increment(n - before);
        }
    }
    *last = s.clone();
}

fn to_wire(slots: Vec<confer_sfu::SlotView>) -> Vec<MediaSlot> {
    slots
        .into_iter()
        .map(|s| MediaSlot {
            mid: s.mid,
            kind: if s.video { "video" } else { "audio" }.into(),
            participant_id: s.publisher,
        })
        .collect()
}
