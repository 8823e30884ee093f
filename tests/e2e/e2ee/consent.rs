//! Keys only after consent; the session code everyone compares.

use confer_client::envelope::Envelope;
use confer_e2e::TestServer;
use confer_proto::{ChannelId, Role, ServerMessage, Side};

use super::cast;
use super::harness::{Peer, config};

#[tokio::test]
async fn a_party_whose_acknowledgment_does_not_verify_is_never_admitted_nor_keyed() {
    let ts = TestServer::start(|_| {}).await;
    let mut p = cast(&ts, &[(Role::Party, Some(Side::A))]).await;
    // This party acknowledges a different agreement than the mediator presented.
    let mut cfg = config();
    cfg.agreement_hash = confer_client::agreement_hash("some other text");
    let mut rogue = Peer::join(
        ts.server.addr(),
        &ts.invite(Role::Party, Some(Side::B)),
        cfg,
    )
    .await;
    p[0].until_true(|s| s.core.stats().consents_rejected == 1)
        .await;
    // The server recorded a hash (it cannot judge it); the mediator's client did not admit.
    p[0].until_true(|s| s.inbound.iter().any(|m| matches!(m, ServerMessage::Session { session } if session.waiting.iter().any(|w| w.consented)))).await;
    let verified_before = p[0].with(|s| s.core.stats().consents_verified);
    // A proper party arriving after it is admitted: the mediator processed the rogue first.
    let mut ok = Peer::join(
        ts.server.addr(),
        &ts.invite(Role::Counsel, Some(Side::A)),
        config(),
    )
    .await;
    ok.secured_in("joint").await;
    assert_eq!(
        p[0].with(|s| s.core.stats().consents_verified),
        verified_before + 1
    );
    rogue.with(|s| {
        assert!(s.core.secured().is_none());
        assert!(
            !s.inbound
                .iter()
                .any(|m| matches!(m, ServerMessage::Channel { .. })),
            "never admitted"
        );
        assert!(
            !s.envelopes()
                .iter()
                .any(|(_, e)| matches!(e, Envelope::Pw { .. } | Envelope::Roster { .. })),
            "no keys, no roster"
        );
    });
    assert!(!p[1].with(|s| {
        s.core
            .roster_members(&ChannelId::joint())
            .contains(&rogue.pid)
    }));
    rogue
        .until_true(|s| s.core.stats().keys_received == 0)
        .await;
}

#[tokio::test]
async fn session_codes_match_everywhere_and_change_when_an_identity_joins() {
    let ts = TestServer::start(|_| {}).await;
    let mut p = cast(
        &ts,
        &[(Role::Party, Some(Side::A)), (Role::Party, Some(Side::B))],
    )
    .await;
    let code = p[0]
        .with(|s| s.core.session_code().map(str::to_owned))
        .unwrap();
    for q in &p {
        assert_eq!(
            q.with(|s| s.core.session_code().map(str::to_owned))
                .as_deref(),
            Some(code.as_str())
        );
    }
    assert_eq!(code.split(' ').count(), 6);
    let mut c = Peer::join(
        ts.server.addr(),
        &ts.invite(Role::Counsel, Some(Side::B)),
        config(),
    )
    .await;
    c.secured_in("joint").await;
    p.push(c);
    for q in p.iter_mut() {
        q.until_true(|s| s.core.roster_members(&ChannelId::joint()).len() == 4)
            .await;
    }
    let new_code = p[0]
        .with(|s| s.core.session_code().map(str::to_owned))
        .unwrap();
    assert_ne!(new_code, code, "a new identity in JOINT changes the code");
    for q in &p {
        assert_eq!(
            q.with(|s| s.core.session_code().map(str::to_owned))
                .as_deref(),
            Some(new_code.as_str())
        );
    }
}

#[tokio::test]
async fn invite_links_bind_consent_to_the_invite_secret_and_pin_the_mediator() {
    use confer_client::link::Invite;
    use confer_e2ee::secret::Secret32;
    use confer_proto::ClientMessage;
    let ts = TestServer::start(|_| {}).await;
    let mut cfg = config();
    cfg.admit_without_invite_secret = false;
    let mut m = Peer::join(ts.server.addr(), &ts.invite(Role::Mediator, None), cfg).await;
    m.secured_in("joint").await;
    let m_ik = m.with(|s| s.core.identity().unwrap().ik_pub());
    m.send(ClientMessage::CreateInvite {
        role: Role::Party,
        side: Some(Side::A),
        ttl_secs: Some(600),
    });
    let token = m
        .until(|s| {
            s.inbound.iter().find_map(|x| match x {
                ServerMessage::Invite { token, .. } => Some(token.clone()),
                _ => None,
            })
        })
        .await;
    let psk: Secret32 = m.with(|s| s.core.issue_invite(Role::Party, Some(Side::A)));

    // Through the link: consent sealed with the invite secret, mediator key pinned: admitted.
    let mut good = config();
    good.invite = Some(Invite {
        token: token.clone(),
        psk: Some(psk),
        mediator_ik: Some(m_ik),
    });
    let mut a = Peer::join(ts.server.addr(), &token, good).await;
    a.secured_in("joint").await;

    // A bare token (which the server could have minted for itself): verified but held.
    let mut b = Peer::join(
        ts.server.addr(),
        &ts.invite(Role::Party, Some(Side::B)),
        config(),
    )
    .await;
    m.until_true(|s| s.core.stats().consents_held == 1).await;
    assert!(b.with(|s| s.core.secured().is_none()));

    // A link whose pinned mediator key is not the mediator's: alarm, no consent sent.
    let mut wrong = config();
    wrong.invite = Some(Invite {
        token: String::new(),
        psk: None,
        mediator_ik: Some([7; 32]),
    });
    let mut c = Peer::join(
        ts.server.addr(),
        &ts.invite(Role::Counsel, Some(Side::A)),
        wrong,
    )
    .await;
    c.until_true(|s| s.alarms().contains(&"mediator_key_mismatch".to_string()))
        .await;
    let sent_pairwise = c.with(|s| {
        s.outbound
            .iter()
            .any(|f| match serde_json::from_str::<ClientMessage>(f) {
                Ok(ClientMessage::Relay { data, .. }) => {
                    matches!(Envelope::from_data(&data), Some(Envelope::Pw { .. }))
                }
                _ => false,
            })
    });
    assert!(!sent_pairwise, "no acknowledgment went out");
    b.until_true(|s| s.core.secured().is_none()).await;
    assert_eq!(m.with(|s| s.core.stats().consents_verified), 2);
    // A person checks who B is and admits B by hand: then B is keyed like anyone else.
    assert_eq!(m.with(|s| s.core.held()), vec![b.pid.clone()]);
    m.admit_held(&b.pid, Role::Party, Some(Side::B));
    b.secured_in("joint").await;
    a.until_true(|s| s.core.roster_members(&ChannelId::joint()).len() == 3)
        .await;
    assert!(m.with(|s| s.core.held().is_empty()));
}
