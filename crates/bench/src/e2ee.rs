//! confer/1 frame seal+open against raw ChaCha20-Poly1305 on the same payloads, and the cost of
//! rekeying an 8-member channel (one fresh generation sealed to 7 members, opened by each).

use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use confer_e2ee::frame::{
    Codec, FrameCtx, Opener, STREAM_CAMERA, STREAM_DATA, Sealer, SenderKeyMsg,
};
use confer_e2ee::identity::Identity;
use confer_e2ee::pairwise::{self, MsgType, Pair};
use confer_e2ee::secret::Secret32;

use crate::report::{Cell, Table};
use crate::{elapsed, median, per_sec};

type Rng = rand_core::UnwrapErr<getrandom::SysRng>;

fn frames_per_sec(size: usize, n: u64) -> (f64, f64) {
    let payload: Vec<u8> = (0..size).map(|i| (i * 7) as u8 & 0xfe).collect(); // VP8 key frames
    let ours = median(5, || {
        let ctx = FrameCtx::new(b"bench", [1; 16], [2; 16], STREAM_CAMERA).expect("ctx");
        let mut s = Sealer::new(ctx.clone(), [7; 32], 0);
        let mut o = Opener::new(ctx);
        o.add_generation(0, [7; 32]);
        per_sec(
            n,
            elapsed(|| {
                for _ in 0..n {
                    let f = s.seal(Codec::Vp8, &payload).expect("seal");
                    let p = o.open(Codec::Vp8, &f).expect("open");
                    assert_eq!(p.len(), size);
                }
            }),
        )
    });
    let raw = median(5, || {
        let c = ChaCha20Poly1305::new_from_slice(&[7; 32]).expect("key");
        per_sec(
            n,
            elapsed(|| {
                for i in 0..n {
                    let mut nonce = [0u8; 12];
                    nonce[4..].copy_from_slice(&i.to_be_bytes());
                    let ct = c
                        .encrypt(
                            &nonce.into(),
                            Payload {
                                msg: &payload,
                                aad: b"hdr",
                            },
                        )
                        .expect("seal");
                    let pt = c
                        .decrypt(
                            &nonce.into(),
                            Payload {
                                msg: &ct,
                                aad: b"hdr",
                            },
                        )
                        .expect("open");
                    assert_eq!(pt.len(), size);
                }
            }),
        )
    });
    (ours, raw)
}

fn rekey_ms(members: usize) -> f64 {
    let mut rng: Rng = rand_core::UnwrapErr(getrandom::SysRng);
    let sender = Identity::generate(&mut rng);
    let others: Vec<Identity> = (1..members).map(|_| Identity::generate(&mut rng)).collect();
    median(5, || {
        let d = elapsed(|| {
            let base = Secret32::random(&mut rng);
            let msg = SenderKeyMsg {
                channel_id: [3; 16],
                epoch: 2,
                stream: STREAM_DATA,
                generation: 1,
                base_key: base,
            };
            let pt = msg.encode();
            for (i, r) in others.iter().enumerate() {
                let pair = Pair {
                    session_id: b"bench",
                    from: [0; 16],
                    to: [i as u8 + 1; 16],
                };
                let sealed = pairwise::seal(
                    &mut rng,
                    &sender,
                    &r.ek_pub(),
                    pair,
                    MsgType::SenderKey,
                    0,
                    &pt,
                    None,
                )
                .expect("seal");
                let opened = pairwise::open(
                    r,
                    &sender.ek_pub(),
                    pair,
                    MsgType::SenderKey,
                    0,
                    &sealed,
                    None,
                )
                .expect("open");
                assert_eq!(opened.len(), pt.len());
            }
        });
        d.as_secs_f64() * 1000.0
    })
}

pub(crate) fn run() -> Vec<Table> {
    let mut frames = Table::new(
        "E2EE frames: confer/1 seal+open vs raw ChaCha20-Poly1305 seal+open (same payload, medians of 5)",
        &[
            "payload",
            "confer/1 frames/s",
            "raw frames/s",
            "ratio",
            "target",
        ],
    );
    for (size, n) in [(160usize, 200_000u64), (1200, 100_000), (8000, 20_000)] {
        let (ours, raw) = frames_per_sec(size, n);
        frames.row(vec![
            Cell::text(format!("{size} B")),
            Cell::num(ours, 0),
            Cell::num(raw, 0),
            Cell::num(ours / raw, 2),
            Cell::text("≥ 0.80"),
        ]);
    }
    frames.print();
    let mut rekey = Table::new(
        "Rekey: one fresh generation sealed to every other member, and opened by each (median of 5)",
        &["members", "client CPU ms", "target"],
    );
    for m in [2usize, 4, 8] {
        rekey.row(vec![
            Cell::num(m as f64, 0),
            Cell::num(rekey_ms(m), 2),
            Cell::text("< 100"),
        ]);
    }
    rekey.print();
    vec![frames, rekey]
}
