#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Frames: seal/open for every codec, clear prefixes, tampering, wrong context, the replay
//! window, ratchet steps, header encoding, padding.

mod common;

use confer_e2ee::frame::*;

fn ctx(channel: u8) -> FrameCtx {
    FrameCtx::new(b"session-1", [channel; 16], [2; 16], STREAM_CAMERA).unwrap()
}

fn pair(base: [u8; 32]) -> (Sealer, Opener) {
    let s = Sealer::new(ctx(1), base, 0);
    let mut o = Opener::new(ctx(1));
    o.add_generation(0, base);
    (s, o)
}

#[test]
fn every_codec_round_trips() {
    let (mut s, mut o) = pair([7; 32]);
    let key_frame: Vec<u8> = (0..40).map(|i| (i * 2) as u8).collect(); // byte 0 even: key frame
    let delta: Vec<u8> = (0..40).map(|i| (i * 2 + 1) as u8).collect();
    for (codec, payload) in [
        (Codec::Vp8, key_frame.clone()),
        (Codec::Vp8, delta.clone()),
        (Codec::Opus, vec![9; 80]),
    ] {
        let f = s.seal(codec, &payload).unwrap();
        assert_eq!(o.open(codec, &f).unwrap(), payload);
    }
    let f = s.seal(Codec::Vp8, &key_frame).unwrap();
    assert_eq!(
        &f[..10],
        &key_frame[..10],
        "a VP8 key frame keeps its 10-byte header in clear"
    );
    assert_ne!(&f[10..20], &key_frame[10..20]);
    let f = s.seal(Codec::Vp8, &delta).unwrap();
    assert_eq!(f[0], delta[0]);
    assert_ne!(
        &f[1..10],
        &delta[1..10],
        "a delta frame keeps only 1 byte in clear"
    );
    let data = FrameCtx::new(b"session-1", [1; 16], [2; 16], STREAM_DATA).unwrap();
    let mut ds = Sealer::new(data.clone(), [7; 32], 0);
    let mut dop = Opener::new(data);
    dop.add_generation(0, [7; 32]);
    let f = ds.seal(Codec::Data, b"chat message").unwrap();
    assert_eq!(
        f.len(),
        256 + 16 + 1 + 1,
        "one padded block, the tag, a 1-byte header, its length"
    );
    assert_eq!(dop.open(Codec::Data, &f).unwrap(), b"chat message");
}

#[test]
fn vp8_payloads_too_short_for_their_prefix_are_never_sent() {
    let (mut s, _) = pair([7; 32]);
    assert!(s.seal(Codec::Vp8, &[0, 1, 2]).is_err());
    assert!(s.seal(Codec::Vp8, &[]).is_err());
}

#[test]
fn tampering_is_detected() {
    let (mut s, mut o) = pair([7; 32]);
    let payload: Vec<u8> = (0..40).map(|i| (i * 2) as u8).collect();
    let f = s.seal(Codec::Vp8, &payload).unwrap();
    for i in 0..f.len() - 1 {
        let mut t = f.clone();
        t[i] ^= 0x01;
        assert!(
            o.open(Codec::Vp8, &t).is_err(),
            "flipping byte {i} must be caught"
        );
    }
    assert_eq!(o.failures as usize, f.len() - 1);
    assert_eq!(o.open(Codec::Vp8, &f).unwrap(), payload);
}

#[test]
fn another_channel_cannot_open() {
    let (mut s, _) = pair([7; 32]);
    let f = s.seal(Codec::Opus, b"caucus audio").unwrap();
    let mut other = Opener::new(ctx(9));
    other.add_generation(0, [7; 32]);
    assert!(other.open(Codec::Opus, &f).is_err());
    let mut wrong_key = Opener::new(ctx(1));
    wrong_key.add_generation(0, [8; 32]);
    assert!(wrong_key.open(Codec::Opus, &f).is_err());
    let mut no_gen = Opener::new(ctx(1));
    no_gen.add_generation(1, [7; 32]);
    assert!(no_gen.open(Codec::Opus, &f).is_err());
}

#[test]
fn replays_are_rejected_and_reordering_within_the_window_is_fine() {
    let (mut s, mut o) = pair([7; 32]);
    let frames: Vec<Vec<u8>> = (0..200)
        .map(|i| s.seal(Codec::Opus, &[i as u8; 20]).unwrap())
        .collect();
    assert!(o.open(Codec::Opus, &frames[150]).is_ok());
    assert!(o.open(Codec::Opus, &frames[150]).is_err(), "replay");
    assert!(
        o.open(Codec::Opus, &frames[100]).is_ok(),
        "late but within 128"
    );
    assert!(
        o.open(Codec::Opus, &frames[22]).is_err(),
        "older than the window"
    );
    assert!(o.open(Codec::Opus, &frames[199]).is_ok());
    assert!(o.open(Codec::Opus, &frames[100]).is_err());
}

#[test]
fn replay_window_rules() {
    let mut w = ReplayWindow::default();
    assert!(w.check(1000));
    w.commit(1000);
    assert!(!w.check(1000));
    assert!(w.check(999));
    assert!(w.check(873), "highest - 127");
    assert!(!w.check(872), "highest - 128");
    assert!(w.check(1000 + (1 << 16)));
    assert!(!w.check(1000 + (1 << 16) + 1), "too far ahead");
    w.commit(1200);
    assert!(w.check(1100));
    assert!(!w.check(1000));
}

#[test]
fn ratchet_steps_open_up_to_fifteen_then_need_a_new_generation() {
    let (mut s, mut o) = pair([3; 32]);
    for step in 0..=15u8 {
        assert_eq!(s.step(), step);
        let f = s.seal(Codec::Opus, b"x").unwrap();
        assert_eq!(o.open(Codec::Opus, &f).unwrap(), b"x");
        if step < 15 {
            s.ratchet().unwrap();
        }
    }
    assert_eq!(s.ratchet(), Err(NeedNewGeneration));
    // A receiver can jump straight to step 15 from the base key.
    let (mut s2, mut o2) = pair([4; 32]);
    for _ in 0..15 {
        s2.ratchet().unwrap();
    }
    let f = s2.seal(Codec::Opus, b"y").unwrap();
    assert_eq!(o2.open(Codec::Opus, &f).unwrap(), b"y");
    let _ = &mut o;
}

#[test]
fn headers_are_minimal_and_round_trip() {
    for (kid, ctr) in [
        (0, 0),
        (7, 7),
        (8, 8),
        (0xff, 0x100),
        (u64::MAX, u64::MAX),
        (0x1234, 3),
    ] {
        let h = encode_header(kid, ctr);
        assert!(h.len() <= 17);
        assert_eq!(decode_header(&h).unwrap(), (kid, ctr));
    }
    assert_eq!(encode_header(0, 0), vec![0x00]);
    assert_eq!(encode_header(8, 0), vec![0x80, 0x08]);
    // Non-minimal encodings are rejected: an extended field holding < 8, or a leading zero.
    assert!(decode_header(&[0x80, 0x05]).is_err());
    assert!(decode_header(&[0x90, 0x00, 0x10]).is_err());
    assert!(decode_header(&[0x08, 0x02]).is_err());
    assert!(decode_header(&[0x00, 0x00]).is_err(), "trailing byte");
}

#[test]
fn trailer_rules() {
    let (mut s, mut o) = pair([7; 32]);
    let f = s.seal(Codec::Opus, b"audio").unwrap();
    let mut zero = f.clone();
    *zero.last_mut().unwrap() = 0;
    assert!(o.open(Codec::Opus, &zero).is_err());
    let mut big = f;
    *big.last_mut().unwrap() = 18;
    assert!(o.open(Codec::Opus, &big).is_err());
    assert!(o.open(Codec::Opus, &[5]).is_err());
    assert!(o.open(Codec::Opus, &[]).is_err());
}

#[test]
fn a_frame_opens_only_as_the_codec_its_stream_carries() {
    let data = FrameCtx::new(b"s", [1; 16], [2; 16], STREAM_DATA).unwrap();
    let mut s = Sealer::new(data.clone(), [7; 32], 0);
    assert!(
        s.seal(Codec::Opus, b"x").is_err(),
        "no media on the data stream"
    );
    let f = s.seal(Codec::Data, b"chat").unwrap();
    let mut o = Opener::new(data);
    o.add_generation(0, [7; 32]);
    assert!(
        o.open(Codec::Opus, &f).is_err(),
        "a data frame never opens as audio"
    );
    assert_eq!(o.open(Codec::Data, &f).unwrap(), b"chat");
    let (mut media, _) = pair([7; 32]);
    assert!(
        media.seal(Codec::Data, b"x").is_err(),
        "no data on a media stream"
    );
}

#[test]
fn generations_above_the_kid_range_are_refused() {
    let mut s = Sealer::new(ctx(1), [7; 32], MAX_GENERATION + 1);
    assert!(s.seal(Codec::Opus, b"x").is_err());
    let mut o = Opener::new(ctx(1));
    o.add_generation(MAX_GENERATION + 2, [7; 32]);
    assert!(o.generations().is_empty());
}

#[test]
fn an_unauthenticated_frame_changes_no_state() {
    let (mut s, mut o) = pair([7; 32]);
    for _ in 0..5 {
        s.ratchet().unwrap();
    }
    let f = s.seal(Codec::Opus, b"late step").unwrap();
    let mut forged = f.clone();
    forged[0] ^= 1;
    assert!(o.open(Codec::Opus, &forged).is_err());
    // The genuine frame with the same counter still opens: the forgery consumed nothing.
    assert_eq!(o.open(Codec::Opus, &f).unwrap(), b"late step");
}

#[test]
fn padding_is_strict() {
    let p = pad(b"hi").unwrap();
    assert_eq!(p.len(), 256);
    assert_eq!(unpad(&p).unwrap(), b"hi");
    assert_eq!(pad(&[1; 254]).unwrap().len(), 256);
    assert_eq!(pad(&[1; 255]).unwrap().len(), 512);
    let mut bad = p.clone();
    bad[100] = 1;
    assert!(unpad(&bad).is_err(), "non-zero padding");
    let mut overrun = p.clone();
    overrun[0] = 0x01;
    assert!(unpad(&overrun).is_err(), "length overruns");
    assert!(unpad(&p[..255]).is_err());
    assert!(
        unpad(&[0; 512]).is_err(),
        "an extra zero block is not what pad produces"
    );
}

#[test]
fn sender_key_messages_round_trip_strictly() {
    let m = SenderKeyMsg {
        channel_id: [1; 16],
        epoch: 3,
        stream: 1,
        generation: 9,
        base_key: confer_e2ee::secret::Secret32::new([5; 32]),
    };
    let b = m.encode();
    assert_eq!(SenderKeyMsg::decode(&b).unwrap(), m);
    assert!(SenderKeyMsg::decode(&b[..b.len() - 1]).is_err());
    let mut extra = b;
    extra.push(0);
    assert!(SenderKeyMsg::decode(&extra).is_err());
    assert!(!format!("{m:?}").contains("5, 5"), "Debug is redacted");
}
