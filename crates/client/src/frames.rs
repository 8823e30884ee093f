//! Synthetic, self-describing media frames: what `confer-bot --publish` sends and checks.
//!
//! A frame names its track (stream), its counter and its send time, and carries a body that
//! anyone can recompute from (publisher, stream, counter). A receiver that opened a frame
//! rebuilds it from those fields and compares every byte, so a frame that was cut, reordered
//! into another track, attributed to the wrong publisher or altered never verifies.
//!
//! ```text
//! video: VP8 frame tag (key frame: 10 bytes, delta: 1 byte) || description
//! audio: description
//! description = "CFRM" || u8(stream) || u64(counter) || u64(sent_at_us) || u16(len) || body[len]
//! body        = SHA-256("confer-bot frame" || participant_id || u8(stream) || u64(counter) || u32(i)) blocks
//! ```

use confer_e2ee::frame::{STREAM_AUDIO, STREAM_CAMERA, STREAM_SCREEN};
use confer_proto::ParticipantId;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 4] = b"CFRM";
/// Width and height written into a synthetic VP8 key frame header.
const VP8_SIZE: (u16, u16) = (320, 180);

/// What a verified frame said about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// The stream (0 microphone, 1 camera, 2 screen).
    pub stream: u8,
    /// The publisher's counter for this stream.
    pub counter: u64,
    /// Microseconds since the Unix epoch when it was made.
    pub sent_at_us: u64,
    /// A VP8 key frame.
    pub keyframe: bool,
}

fn body_len(stream: u8, keyframe: bool) -> usize {
    match (stream, keyframe) {
        (STREAM_AUDIO, _) => 120,
        (_, true) => 900,
        (_, false) => 500,
    }
}

fn body(publisher: &ParticipantId, stream: u8, counter: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u32;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(b"confer-bot frame");
        h.update(publisher.as_str().as_bytes());
        h.update([stream]);
        h.update(counter.to_be_bytes());
        h.update(i.to_be_bytes());
        out.extend_from_slice(&h.finalize());
        i += 1;
    }
    out.truncate(len);
    out
}

/// Builds frame `counter` of `publisher`'s `stream`. `keyframe` matters for video only.
pub fn build(
    publisher: &ParticipantId,
    stream: u8,
    counter: u64,
    sent_at_us: u64,
    keyframe: bool,
) -> Vec<u8> {
    let video = stream == STREAM_CAMERA || stream == STREAM_SCREEN;
    let keyframe = video && keyframe;
    let len = body_len(stream, keyframe);
    let mut out = Vec::with_capacity(len + 40);
    if video {
        if keyframe {
            // RFC 6386 §9.1: frame tag (bit 0 clear: key frame; show_frame set), start code,
            // then 14-bit width and height.
            out.extend_from_slice(&[0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a]);
            out.extend_from_slice(&VP8_SIZE.0.to_le_bytes());
            out.extend_from_slice(&VP8_SIZE.1.to_le_bytes());
        } else {
            out.push(0x11);
        }
    }
    out.extend_from_slice(MAGIC);
    out.push(stream);
    out.extend_from_slice(&counter.to_be_bytes());
    out.extend_from_slice(&sent_at_us.to_be_bytes());
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&body(publisher, stream, counter, len));
    out
}

/// Checks an opened frame byte for byte against what `publisher` would have built for
/// `stream`; `None` if anything differs.
pub fn verify(publisher: &ParticipantId, stream: u8, frame: &[u8]) -> Option<FrameInfo> {
    let video = stream == STREAM_CAMERA || stream == STREAM_SCREEN;
    let keyframe = video && frame.first()? & 1 == 0;
    let skip = match (video, keyframe) {
        (false, _) => 0,
        (true, true) => 10,
        (true, false) => 1,
    };
    let d = frame.get(skip..)?;
    if d.get(..4)? != MAGIC || *d.get(4)? != stream {
        return None;
    }
    let counter = u64::from_be_bytes(d.get(5..13)?.try_into().ok()?);
    let sent_at_us = u64::from_be_bytes(d.get(13..21)?.try_into().ok()?);
    let expected = build(publisher, stream, counter, sent_at_us, keyframe);
    (expected == frame).then_some(FrameInfo {
        stream,
        counter,
        sent_at_us,
        keyframe,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(c: char) -> ParticipantId {
        ParticipantId::new(c.to_string().repeat(32)).unwrap()
    }

    #[test]
    fn frames_verify_only_as_built() {
        let a = pid('a');
        for (stream, key) in [(0, false), (1, true), (1, false), (2, true)] {
            let f = build(&a, stream, 7, 1_000, key);
            let info = verify(&a, stream, &f).unwrap();
            assert_eq!((info.counter, info.sent_at_us), (7, 1_000));
            assert_eq!(info.keyframe, key);
            // Another publisher, another stream, one flipped bit, a cut: never verifies.
            assert!(verify(&pid('b'), stream, &f).is_none());
            assert!(verify(&a, (stream + 1) % 3, &f).is_none());
            for i in [0, f.len() / 2, f.len() - 1] {
                let mut g = f.clone();
                g[i] ^= 0x40;
                assert!(verify(&a, stream, &g).is_none(), "bit flip at {i}");
            }
            assert!(verify(&a, stream, &f[..f.len() - 1]).is_none());
        }
    }

    #[test]
    fn vp8_tag_follows_the_key_frame_rule() {
        let a = pid('a');
        assert_eq!(build(&a, 1, 0, 0, true)[0] & 1, 0);
        assert_eq!(&build(&a, 1, 0, 0, true)[3..6], &[0x9d, 0x01, 0x2a]);
        assert_eq!(build(&a, 1, 1, 0, false)[0] & 1, 1);
        // Audio has no VP8 tag: the description starts at once.
        assert_eq!(&build(&a, 0, 0, 0, true)[..4], MAGIC);
    }
}
