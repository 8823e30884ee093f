//! A str0m client peer on a real UDP socket on 127.0.0.1, negotiated with `confer serve`'s SFU
//! through signalling (`media_offer`, then `media_answer`) as a browser's is, then ICE and DTLS
//! over loopback; and a probe over two of them: one publishes audio and video frames stamped
//! with the time they were written, the other receives them and measures loss and latency.
//!
//! Frame layout (each frame fits one RTP packet, so frames received are packets forwarded):
//! `[VP8 tag or 0][in window: u8][written at: u64 µs since the probe's epoch][filler]`.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use confer_proto::{ErrorCode, ServerMessage};
use confer_testkit::media::ClientOffer;
use serde_json::json;
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Frequency, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Event, Input, Output, Rtc};
use tokio::sync::Notify;

use crate::signalling::{Ws, recv, send};

const AUDIO_EVERY: Duration = Duration::from_millis(20);
const VIDEO_EVERY: Duration = Duration::from_millis(10);
const AUDIO_BYTES: usize = 160;
const VIDEO_BYTES: usize = 1000;
const HEADER: usize = 10;

/// A client peer and its socket.
pub(crate) struct UdpPeer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    buf: Vec<u8>,
}

impl std::fmt::Debug for UdpPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpPeer")
            .field("local", &self.local)
            .finish()
    }
}

/// A socket on 127.0.0.1 and its address.
pub(crate) fn bind() -> anyhow::Result<(UdpSocket, SocketAddr)> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let local = socket.local_addr()?;
    Ok((socket, local))
}

/// The server's reply to a `media_offer`, if `msg` is one.
pub(crate) fn offer_reply(msg: &ServerMessage) -> Option<Result<&str, ErrorCode>> {
    match msg {
        ServerMessage::MediaAnswer { sdp } => Some(Ok(sdp)),
        ServerMessage::Error {
            code,
            in_reply_to: Some(r),
            ..
        } if r == "media_offer" => Some(Err(*code)),
        _ => None,
    }
}

/// The `media_offer` frame for an offer.
pub(crate) fn offer_frame(offer: &ClientOffer) -> String {
    json!({"type": "media_offer", "sdp": offer.offer.to_sdp_string()}).to_string()
}

/// The offering peer, with the server's answer applied.
pub(crate) fn answered(offer: ClientOffer, sdp: &str) -> anyhow::Result<Rtc> {
    let ClientOffer {
        mut rtc, pending, ..
    } = offer;
    rtc.sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(sdp)?)?;
    Ok(rtc)
}

impl UdpPeer {
    pub(crate) fn new(rtc: Rtc, socket: UdpSocket) -> anyhow::Result<Self> {
        let local = socket.local_addr()?;
        Ok(Self {
            rtc,
            socket,
            local,
            buf: vec![0u8; 2048],
        })
    }

    /// Offers a microphone, a camera and `slots` receive slots of each kind through `ws`
    /// (reading past anything else the server sends meanwhile); the peer with the answer
    /// applied, and its microphone's and camera's m-lines. ICE and DTLS start with `step`.
    pub(crate) async fn negotiate(ws: &mut Ws, slots: usize) -> anyhow::Result<(Self, Mid, Mid)> {
        let (socket, local) = bind()?;
        let offer = ClientOffer::new(local, slots, Instant::now());
        let (audio, video) = (offer.audio, offer.video);
        send(ws, serde_json::from_str(&offer_frame(&offer))?).await?;
        let sdp = loop {
            if let Some(reply) = offer_reply(&recv(ws).await?) {
                match reply {
                    Ok(sdp) => break sdp.to_owned(),
                    Err(code) => anyhow::bail!("media_offer refused: {code:?}"),
                }
            }
        };
        Ok((Self::new(answered(offer, &sdp)?, socket)?, audio, video))
    }

    /// Another offer's peer on the same socket (the SFU replaces a participant's peer).
    pub(crate) fn replace(&mut self, rtc: Rtc) {
        self.rtc = rtc;
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.rtc.is_connected()
    }

    /// Sends what str0m has to send and hands its events to `on_event`; then waits for one
    /// datagram until str0m's next timer or `until`, whichever comes first.
    pub(crate) fn step(&mut self, until: Instant, mut on_event: impl FnMut(Event)) {
        let wake = loop {
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(e)) => on_event(e),
                Ok(Output::Timeout(t)) => break t.min(until),
                // A failed peer only waits to be replaced or stopped.
                Err(_) => {
                    std::thread::sleep(until.saturating_duration_since(Instant::now()));
                    return;
                }
            }
        };
        let wait = wake.saturating_duration_since(Instant::now());
        if !wait.is_zero()
            && self.socket.set_read_timeout(Some(wait)).is_ok()
            && let Ok((n, source)) = self.socket.recv_from(&mut self.buf)
            && let Ok(contents) = self.buf[..n].try_into()
        {
            let _ = self.rtc.handle_input(Input::Receive(
                Instant::now(),
                Receive {
                    proto: Protocol::Udp,
                    source,
                    destination: self.local,
                    contents,
                },
            ));
            return;
        }
        let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
    }
}

/// Shared by a probe's publisher, its subscriber and whoever runs them.
#[derive(Debug)]
pub(crate) struct Probe {
    epoch: Instant,
    /// Frames written while this is set are measured.
    pub(crate) measuring: AtomicBool,
    /// Ends both threads.
    pub(crate) stop: AtomicBool,
    /// Notified when the subscriber receives its first frame.
    pub(crate) flowing: Notify,
}

/// What a probe's subscriber received of the frames written in the window.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// Microseconds from being written by the publisher to arriving at the subscriber.
    pub(crate) latency_us: Vec<u64>,
}

impl Probe {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            measuring: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            flowing: Notify::new(),
        })
    }

    fn frame(&self, video: bool, measured: bool, now: Instant) -> Vec<u8> {
        // VP8 delta-frame tag for video; the rest is opaque to str0m and to the SFU.
        let mut f = vec![if video { 0x11 } else { 0x00 }, u8::from(measured)];
        f.extend_from_slice(&((now - self.epoch).as_micros() as u64).to_be_bytes());
        f.resize(if video { VIDEO_BYTES } else { AUDIO_BYTES }, 0xa5);
        f
    }

    /// Publishes audio (every 20 ms, 160 B) and video (every 10 ms, 1,000 B) once connected,
    /// until stopped; returns how many frames were written in the window.
    pub(crate) fn publish(
        self: &Arc<Self>,
        mut peer: UdpPeer,
        audio: Mid,
        video: Mid,
    ) -> JoinHandle<u64> {
        let probe = self.clone();
        std::thread::spawn(move || {
            let (mut next_audio, mut next_video) = (Instant::now(), Instant::now());
            let mut in_window = 0u64;
            while !probe.stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                for (is_video, mid, next, every) in [
                    (false, audio, &mut next_audio, AUDIO_EVERY),
                    (true, video, &mut next_video, VIDEO_EVERY),
                ] {
                    if now < *next {
                        continue;
                    }
                    // After a late wake-up, one frame catches up and the missed ones are skipped.
                    *next = (*next + every).max(now);
                    if !peer.is_connected() {
                        continue;
                    }
                    let (codec, rate) = if is_video {
                        (Codec::Vp8, Frequency::NINETY_KHZ)
                    } else {
                        (Codec::Opus, Frequency::FORTY_EIGHT_KHZ)
                    };
                    let Some(w) = peer.rtc.writer(mid) else {
                        continue;
                    };
                    let Some(pt) = w
                        .payload_params()
                        .find(|p| p.spec().codec == codec)
                        .map(|p| p.pt())
                    else {
                        continue;
                    };
                    let measured = probe.measuring.load(Ordering::Relaxed);
                    let frame = probe.frame(is_video, measured, now);
                    let t =
                        MediaTime::from_micros((now - probe.epoch).as_micros() as u64).rebase(rate);
                    if w.write(pt, now, t, frame).is_ok() {
                        in_window += u64::from(measured);
                    }
                }
                peer.step(next_audio.min(next_video), |_| {});
            }
            in_window
        })
    }

    /// Receives until stopped; the frames written in the window.
    pub(crate) fn subscribe(self: &Arc<Self>, mut peer: UdpPeer) -> JoinHandle<Received> {
        let probe = self.clone();
        std::thread::spawn(move || {
            let mut got = Received::default();
            let mut first = true;
            while !probe.stop.load(Ordering::Relaxed) {
                peer.step(Instant::now() + Duration::from_millis(20), |e| {
                    let Event::MediaData(d) = e else { return };
                    if first {
                        first = false;
                        probe.flowing.notify_one();
                    }
                    if d.data.len() < HEADER || d.data[1] != 1 {
                        return;
                    }
                    let mut at = [0u8; 8];
                    at.copy_from_slice(&d.data[2..HEADER]);
                    let written = Duration::from_micros(u64::from_be_bytes(at));
                    let arrived = d.network_time - probe.epoch;
                    got.latency_us
                        .push(arrived.saturating_sub(written).as_micros() as u64);
                });
            }
            got
        })
    }
}
