//! The forwarding decision, a pure function of the routing table: which subscribers get a
//! publisher's packet, whether a keyframe request goes through, which header extensions may be
//! negotiated. `crate::Sfu` applies these decisions; they are tested here without a network.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use confer_proto::{ChannelId, ParticipantId};

/// Who is in which channel, as the room last said (`confer_room::RoutingTable` on the wire).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    members: BTreeMap<ChannelId, Vec<ParticipantId>>,
    channel_of: HashMap<ParticipantId, ChannelId>,
}

impl Routing {
    /// From the room's table: channel -> members. Each participant is in one channel.
    pub fn new(table: BTreeMap<ChannelId, Vec<ParticipantId>>) -> Self {
        let channel_of = table
            .iter()
            .flat_map(|(c, ms)| ms.iter().map(move |m| (m.clone(), c.clone())))
            .collect();
        Self {
            members: table,
            channel_of,
        }
    }

    /// The channel a participant is in.
    pub fn channel_of(&self, p: &ParticipantId) -> Option<&ChannelId> {
        self.channel_of.get(p)
    }

    /// The members of a channel.
    pub fn members(&self, c: &ChannelId) -> &[ParticipantId] {
        self.members.get(c).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Why a packet was not forwarded (metrics label `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The publisher is in no channel (waiting room, or gone).
    NotRouted,
    /// The publisher is alone in its channel.
    NoSubscribers,
    /// The packet came from an address no peer owns.
    UnknownSource,
    /// The datagram did not parse or the peer refused it.
    Malformed,
    /// The subscriber has no free receive slot for this publisher.
    NoSlot,
}

impl DropReason {
    /// Every reason, in a fixed order (for exporters that keep one counter each).
    pub const ALL: [DropReason; 5] = [
        DropReason::NotRouted,
        DropReason::NoSubscribers,
        DropReason::UnknownSource,
        DropReason::Malformed,
        DropReason::NoSlot,
    ];

    /// A stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NotRouted => "not_routed",
            DropReason::NoSubscribers => "no_subscribers",
            DropReason::UnknownSource => "unknown_source",
            DropReason::Malformed => "malformed",
            DropReason::NoSlot => "no_slot",
        }
    }
}

/// The subscribers of a publisher's packet: the other current members of its channel.
pub fn subscribers<'a>(
    routing: &'a Routing,
    publisher: &ParticipantId,
) -> Result<Vec<&'a ParticipantId>, DropReason> {
    let channel = routing.channel_of(publisher).ok_or(DropReason::NotRouted)?;
    let subs: Vec<&ParticipantId> = routing
        .members(channel)
        .iter()
        .filter(|m| *m != publisher)
        .collect();
    if subs.is_empty() {
        Err(DropReason::NoSubscribers)
    } else {
        Ok(subs)
    }
}

/// A keyframe request reaches a publisher's track at most once per interval, however many
/// subscribers ask (every subscriber that switches keys or joins asks).
#[derive(Debug, Clone)]
pub struct KeyframeThrottle {
    interval: Duration,
    last: HashMap<(ParticipantId, u8), Instant>,
}

impl KeyframeThrottle {
    /// At most one request per `interval` per (publisher, track).
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: HashMap::new(),
        }
    }

    /// Whether a request for `publisher`'s `track` at `now` goes through (and records it).
    pub fn allow(&mut self, publisher: &ParticipantId, track: u8, now: Instant) -> bool {
        let key = (publisher.clone(), track);
        match self.last.get(&key) {
            Some(t) if now.saturating_duration_since(*t) < self.interval => false,
            _ => {
                self.last.insert(key, now);
                true
            }
        }
    }

    /// Forgets a publisher that left.
    pub fn forget(&mut self, publisher: &ParticipantId) {
        self.last.retain(|(p, _), _| p != publisher);
    }
}

/// The audio-level extension (RFC 6464) would tell the server who is speaking: never
/// negotiated. The same for its CSRC variant (RFC 6465).
pub fn extension_allowed(uri: &str) -> bool {
    !matches!(
        uri,
        "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
            | "urn:ietf:params:rtp-hdrext:csrc-audio-level"
    )
}

/// The local (our) ICE user fragment a STUN binding request names in its USERNAME attribute
/// (`<our ufrag>:<their ufrag>`, RFC 8445 §7.2.2), read without checking anything else: the
/// peer it points to verifies the message (MESSAGE-INTEGRITY) itself. `None` for anything
/// that is not a well-formed STUN message with a USERNAME.
pub fn stun_local_ufrag(datagram: &[u8]) -> Option<&str> {
    const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    const USERNAME: u16 = 0x0006;
    let header = datagram.get(..20)?;
    // The top two bits of a STUN message are zero; the magic cookie is fixed.
    if header[0] & 0xc0 != 0 || header[4..8] != MAGIC {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let body = datagram.get(20..20 + len)?;
    let mut at = 0;
    while let Some(tl) = body.get(at..at + 4) {
        let kind = u16::from_be_bytes([tl[0], tl[1]]);
        let n = usize::from(u16::from_be_bytes([tl[2], tl[3]]));
        let value = body.get(at + 4..at + 4 + n)?;
        if kind == USERNAME {
            let name = std::str::from_utf8(value).ok()?;
            return name.split(':').next().filter(|u| !u.is_empty());
        }
        at += 4 + n.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, v) in attrs {
            body.extend_from_slice(&kind.to_be_bytes());
            body.extend_from_slice(&(v.len() as u16).to_be_bytes());
            body.extend_from_slice(v);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        m.extend_from_slice(&[7; 12]);
        m.extend(body);
        m
    }

    #[test]
    fn stun_username_names_our_ufrag() {
        // PRIORITY first (odd-length padding exercised by a 5-byte attribute), then USERNAME.
        let m = stun(&[
            (0x0024, &[0, 0, 0, 1]),
            (0x8029, b"12345"),
            (0x0006, b"sfuU:cliU"),
        ]);
        assert_eq!(stun_local_ufrag(&m), Some("sfuU"));
        assert_eq!(stun_local_ufrag(&stun(&[(0x0024, &[1, 2, 3, 4])])), None);
        assert_eq!(stun_local_ufrag(&stun(&[(0x0006, b":x")])), None);
        // Not STUN: RTP (top bits 10), DTLS, short, a lying length.
        let mut rtp = m.clone();
        rtp[0] = 0x80;
        assert_eq!(stun_local_ufrag(&rtp), None);
        assert_eq!(stun_local_ufrag(&[22, 254, 253]), None);
        assert_eq!(stun_local_ufrag(&m[..19]), None);
        let mut long = m.clone();
        long[3] = 0xff;
        assert_eq!(stun_local_ufrag(&long), None);
        let mut attr = m;
        attr[22] = 0xff; // the first attribute claims more than there is
        assert_eq!(stun_local_ufrag(&attr), None);
    }

    #[test]
    fn stun_parsing_never_panics_on_junk() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..600 {
            let mut d: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            if len >= 8 {
                d[0] &= 0x3f;
                d[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
            }
            let _ = stun_local_ufrag(&d);
        }
    }

    fn p(s: &str) -> ParticipantId {
        ParticipantId::new(s).unwrap()
    }

    fn c(s: &str) -> ChannelId {
        ChannelId::new(s).unwrap()
    }

    fn routing(entries: &[(&str, &[&str])]) -> Routing {
        Routing::new(
            entries
                .iter()
                .map(|(ch, ms)| (c(ch), ms.iter().map(|m| p(m)).collect()))
                .collect(),
        )
    }

    #[test]
    fn a_packet_goes_to_the_other_members_of_the_publishers_channel() {
        let r = routing(&[("joint", &["m", "a", "b"])]);
        let subs = subscribers(&r, &p("a")).unwrap();
        assert_eq!(subs, vec![&p("m"), &p("b")]);
    }

    #[test]
    fn a_caucus_is_sealed_off_from_joint() {
        let r = routing(&[("joint", &["b"]), ("caucus-A", &["m", "a", "ca"])]);
        let subs = subscribers(&r, &p("a")).unwrap();
        assert_eq!(subs, vec![&p("m"), &p("ca")]);
        assert!(!subs.contains(&&p("b")));
        assert_eq!(subscribers(&r, &p("b")), Err(DropReason::NoSubscribers));
    }

    #[test]
    fn a_move_takes_effect_with_the_next_table() {
        let before = routing(&[("joint", &["m", "a", "b"])]);
        assert!(subscribers(&before, &p("a")).unwrap().contains(&&p("b")));
        let after = routing(&[("joint", &["b"]), ("caucus-A", &["m", "a"])]);
        assert!(!subscribers(&after, &p("a")).unwrap().contains(&&p("b")));
        let back = routing(&[("joint", &["m", "a", "b"])]);
        assert!(subscribers(&back, &p("a")).unwrap().contains(&&p("b")));
    }

    #[test]
    fn the_waiting_room_and_the_departed_are_not_routed() {
        let r = routing(&[("joint", &["m", "a"])]);
        assert_eq!(subscribers(&r, &p("w")), Err(DropReason::NotRouted));
        assert_eq!(
            subscribers(&Routing::default(), &p("a")),
            Err(DropReason::NotRouted)
        );
    }

    #[test]
    fn keyframe_requests_are_throttled_per_publisher_track() {
        // A base for virtual offsets; nothing below reads the clock again.
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut k = KeyframeThrottle::new(Duration::from_millis(500));
        assert!(k.allow(&p("a"), 1, at(0)));
        assert!(!k.allow(&p("a"), 1, at(100)));
        assert!(k.allow(&p("a"), 2, at(100)), "another track");
        assert!(k.allow(&p("b"), 1, at(100)), "another publisher");
        assert!(!k.allow(&p("a"), 1, at(499)));
        assert!(k.allow(&p("a"), 1, at(500)));
        k.forget(&p("a"));
        assert!(k.allow(&p("a"), 1, at(501)));
    }

    #[test]
    fn audio_level_is_never_negotiated() {
        assert!(!extension_allowed(
            "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
        ));
        assert!(!extension_allowed(
            "urn:ietf:params:rtp-hdrext:csrc-audio-level"
        ));
        assert!(extension_allowed("urn:ietf:params:rtp-hdrext:sdes:mid"));
    }
}
