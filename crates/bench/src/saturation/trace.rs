//! The trace: real SRTP datagrams from str0m client peers, made at run time.
//!
//! One room of `n` participants, each a str0m peer as a browser's (Opus and VP8, a microphone
//! and a camera, `n - 1` receive slots of each kind: `ClientOffer`), with a UDP socket of its
//! own on 127.0.0.1 (or on another address, the forwarder elsewhere: [`room_on`]). Each
//! peer's offer is accepted by a fresh `confer_sfu::Sfu` whose media address is the
//! forwarder's socket; ICE and DTLS then run in memory (the SFU's datagrams are
//! handed to the peer whose socket address they are for, and back), on the real clock. Once
//! every peer is connected, each writes `per_publisher` frames, two video frames (1,000 B) for
//! one audio frame (160 B), as the 100/s and 50/s of a call; every frame is one RTP packet, and
//! the datagrams str0m would send (SRTP, header extensions as negotiated) are kept in order,
//! RTCP and STUN left out. Nothing is written to disk; the content is fixed, the keys, SSRCs
//! and first sequence numbers are drawn by str0m in each run.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use confer_proto::{ChannelId, ParticipantId};
use confer_sfu::forward::Routing;
use confer_sfu::{Output, Sfu, SfuConfig};
use confer_testkit::media::ClientOffer;
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Frequency, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Input, Output as RtcOutput, Rtc};

use super::io;

const AUDIO_BYTES: usize = 160;
const VIDEO_BYTES: usize = 1000;
/// ICE and DTLS on loopback in memory take a few milliseconds; this bounds a broken run.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// A room ready to be blasted: the SFU with its peers connected, the sockets, the trace.
pub(crate) struct Room {
    pub(crate) sfu: Sfu,
    pub(crate) forwarder: UdpSocket,
    pub(crate) forwarder_addr: SocketAddrV4,
    pub(crate) clients: Vec<UdpSocket>,
    pub(crate) addrs: Vec<SocketAddrV4>,
    /// Per participant, its datagrams in the order it wrote them.
    pub(crate) trace: Vec<Vec<Vec<u8>>>,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room")
            .field("participants", &self.clients.len())
            .finish()
    }
}

struct Peer {
    rtc: Rtc,
    addr: SocketAddr,
    audio: Mid,
    video: Mid,
}

fn pid(i: usize) -> ParticipantId {
    // 32 hex digits: a valid id by construction.
    ParticipantId::new(format!("{i:032x}")).expect("a valid participant id")
}

/// True for an RTP datagram (not RTCP, STUN or DTLS): RFC 5764 §5.1.2, RFC 5761 §4.
pub(crate) fn is_rtp(d: &[u8]) -> bool {
    d.len() >= 12 && (128..=191).contains(&d[0]) && !(192..=223).contains(&d[1])
}

/// A room of `participants`, connected, and `per_publisher` datagrams from each.
pub(crate) fn room(participants: usize, per_publisher: usize) -> anyhow::Result<Room> {
    room_on(
        io::socket()?,
        Ipv4Addr::LOCALHOST,
        participants,
        per_publisher,
    )
}

/// The same with the forwarder on `forwarder` and the peers' sockets on `client_ip`.
pub(crate) fn room_on(
    (forwarder, forwarder_addr): (UdpSocket, SocketAddrV4),
    client_ip: Ipv4Addr,
    participants: usize,
    per_publisher: usize,
) -> anyhow::Result<Room> {
    let fwd = SocketAddr::V4(forwarder_addr);
    let start = Instant::now();
    let mut sfu = Sfu::new(SfuConfig::new(fwd), start);
    let mut clients = Vec::new();
    let mut addrs = Vec::new();
    let mut peers = Vec::new();
    for i in 0..participants {
        let (socket, addr) = io::socket_on(client_ip)?;
        let o = ClientOffer::new(SocketAddr::V4(addr), participants - 1, start);
        let answer = sfu.accept_offer(pid(i), &o.offer.to_sdp_string(), start)?;
        let mut rtc = o.rtc;
        rtc.sdp_api()
            .accept_answer(o.pending, SdpAnswer::from_sdp_string(&answer)?)?;
        clients.push(socket);
        addrs.push(addr);
        peers.push(Peer {
            rtc,
            addr: SocketAddr::V4(addr),
            audio: o.audio,
            video: o.video,
        });
    }
    let table: BTreeMap<ChannelId, Vec<ParticipantId>> =
        BTreeMap::from([(ChannelId::breakout(1), (0..participants).map(pid).collect())]);
    sfu.set_routing(Routing::new(table), start);
    connect(&mut sfu, &mut peers, fwd)?;
    let trace = peers
        .iter_mut()
        .map(|p| frames(&mut p.rtc, p.audio, p.video, per_publisher))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Room {
        sfu,
        forwarder,
        forwarder_addr,
        clients,
        addrs,
        trace,
    })
}

/// ICE and DTLS between the SFU and every peer, in memory.
fn connect(sfu: &mut Sfu, peers: &mut [Peer], fwd: SocketAddr) -> anyhow::Result<()> {
    let start = Instant::now();
    // Rounds after every client reports connected: the SFU's side may need the last flight.
    let mut settle = 0;
    while settle < 20 {
        let now = Instant::now();
        if now - start > HANDSHAKE_LIMIT {
            bail!("ICE and DTLS did not complete in {HANDSHAKE_LIMIT:?}");
        }
        for p in peers.iter_mut() {
            p.rtc.handle_input(Input::Timeout(now))?;
            loop {
                match p.rtc.poll_output()? {
                    RtcOutput::Transmit(t) => sfu.handle_datagram(now, p.addr, fwd, &t.contents),
                    RtcOutput::Timeout(_) => break,
                    RtcOutput::Event(_) => {}
                }
            }
        }
        sfu.handle_timeout(now);
        loop {
            match sfu.poll_output() {
                Output::Transmit {
                    destination,
                    contents,
                } => {
                    let Some(p) = peers.iter_mut().find(|p| p.addr == destination) else {
                        continue;
                    };
                    let contents = contents.as_slice().try_into()?;
                    p.rtc.handle_input(Input::Receive(
                        now,
                        Receive {
                            proto: Protocol::Udp,
                            source: fwd,
                            destination,
                            contents,
                        },
                    ))?;
                }
                Output::Timeout(_) => break,
                _ => {}
            }
        }
        if peers.iter().all(|p| p.rtc.is_connected()) {
            settle += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// `n` frames written by `rtc` on its `audio` and `video` m-lines (video, video, audio, ...),
/// as the datagrams str0m sends.
pub(crate) fn frames(
    rtc: &mut Rtc,
    audio: Mid,
    video: Mid,
    n: usize,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let pt_of = |rtc: &mut Rtc, mid: Mid, codec: Codec| {
        rtc.writer(mid).and_then(|w| {
            w.payload_params()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
        })
    };
    let opus = pt_of(rtc, audio, Codec::Opus).context("no Opus payload type")?;
    let vp8 = pt_of(rtc, video, Codec::Vp8).context("no VP8 payload type")?;
    let mut out = Vec::with_capacity(n);
    let (mut audio_n, mut video_n) = (0u64, 0u64);
    for k in 0..n {
        let now = Instant::now();
        let is_video = k % 3 != 2;
        let (mid, pt, time, mut frame) = if is_video {
            video_n += 1;
            // VP8 inter frame tag (bit 0 set), then filler.
            let t = MediaTime::new(video_n * 900, Frequency::NINETY_KHZ);
            (video, vp8, t, vec![0x11; VIDEO_BYTES])
        } else {
            audio_n += 1;
            let t = MediaTime::new(audio_n * 960, Frequency::FORTY_EIGHT_KHZ);
            (audio, opus, t, vec![0x01; AUDIO_BYTES])
        };
        frame[1..9].copy_from_slice(&(k as u64).to_be_bytes());
        rtc.writer(mid)
            .context("the send m-line has a writer")?
            .write(pt, now, time, frame)?;
        rtc.handle_input(Input::Timeout(now))?;
        loop {
            match rtc.poll_output()? {
                RtcOutput::Transmit(t) if is_rtp(&t.contents) => out.push(t.contents.to_vec()),
                RtcOutput::Timeout(_) => break,
                _ => {}
            }
        }
    }
    if out.len() != n {
        bail!("{n} frames written made {} RTP datagrams", out.len());
    }
    Ok(out)
}
