#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The SFU makes one DTLS certificate and answers every offer with it: a key pair per offer
//! was the costliest part of an offer. Peers still connect (every forwarding test does it).

use confer_proto::ParticipantId;
use confer_sfu::{Sfu, SfuConfig};
use confer_testkit::VirtualClock;
use confer_testkit::media::ClientOffer;

fn fingerprint(answer: &str) -> String {
    let lines: Vec<&str> = answer
        .lines()
        .filter(|l| l.starts_with("a=fingerprint:"))
        .collect();
    assert!(!lines.is_empty(), "no fingerprint in {answer}");
    // Every m-line of one answer carries the same one.
    assert!(lines.iter().all(|l| *l == lines[0]), "{lines:?}");
    lines[0].to_owned()
}

fn answer(sfu: &mut Sfu, who: &str, clock: &VirtualClock) -> String {
    let client = ClientOffer::new("10.0.0.9:5000".parse().unwrap(), 2, clock.now());
    sfu.accept_offer(
        ParticipantId::new(who).unwrap(),
        &client.offer.to_sdp_string(),
        clock.now(),
    )
    .unwrap()
}

#[test]
fn every_answer_of_one_sfu_carries_the_same_fingerprint() {
    let clock = VirtualClock::new();
    let mut sfu = Sfu::new(
        SfuConfig::new("10.0.0.1:7882".parse().unwrap()),
        clock.now(),
    );
    let a = fingerprint(&answer(&mut sfu, "a", &clock));
    let b = fingerprint(&answer(&mut sfu, "b", &clock));
    // A re-offer too.
    let a2 = fingerprint(&answer(&mut sfu, "a", &clock));
    assert_eq!(a, b);
    assert_eq!(a, a2);
    // Another SFU (another process) has its own certificate.
    let mut other = Sfu::new(
        SfuConfig::new("10.0.0.1:7882".parse().unwrap()),
        clock.now(),
    );
    assert_ne!(a, fingerprint(&answer(&mut other, "a", &clock)));
}
