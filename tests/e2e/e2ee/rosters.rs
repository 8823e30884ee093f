//! Replayed, rolled-back, forked, gapped or forged rosters raise alarms.

use confer_client::envelope::{Bytes, Envelope};
use confer_e2e::TestServer;
use confer_e2ee::identity::Identity;
use confer_e2ee::roster::Roster;
use confer_proto::{Role, Side};

use super::cast;
use super::harness::Peer;

fn rosters_from_mediator(
    a: &Peer,
    m: &confer_proto::ParticipantId,
) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    a.with(|s| {
        s.envelopes()
            .into_iter()
            .filter(|(f, _)| f == m)
            .filter_map(|(_, e)| match e {
                Envelope::Roster { ch, enc, sig, .. } => Some((ch, enc.0, sig.0)),
                _ => None,
            })
            .collect()
    })
}

fn resign(enc: &[u8], signer: &Identity, edit: impl FnOnce(&mut Roster)) -> String {
    let mut r = Roster::decode(enc).unwrap();
    edit(&mut r);
    let sr = r.sign(signer).unwrap();
    Envelope::Roster {
        ch: "joint".into(),
        enc: Bytes(sr.encoded),
        sig: Bytes(sr.signature.to_vec()),
        dik: None,
        dsig: None,
    }
    .to_data()
}

#[tokio::test]
async fn the_client_alarms_on_replay_rollback_fork_gap_and_forgery() {
    let ts = TestServer::start(|_| {}).await;
    let mut p = cast(
        &ts,
        &[(Role::Party, Some(Side::A)), (Role::Party, Some(Side::B))],
    )
    .await;
    let m_pid = p[0].pid.clone();
    let a_pid = p[1].pid.clone();
    let joint: Vec<_> = rosters_from_mediator(&p[1], &m_pid)
        .into_iter()
        .filter(|r| r.0 == "joint")
        .collect();
    assert!(joint.len() >= 2, "A saw the joint roster grow");
    let (first, latest) = (joint[0].clone(), joint.last().cloned().unwrap());
    assert!(p[1].with(|s| s.alarms().is_empty()));

    // The same bytes the server would replay, relayed again from the mediator's pseudonym:
    // A holds that roster already, so nothing changes (managers resend a room's history).
    let old = Envelope::Roster {
        ch: first.0.clone(),
        enc: Bytes(first.1.clone()),
        sig: Bytes(first.2.clone()),
        dik: None,
        dsig: None,
    }
    .to_data();
    p[0].relay_raw(&a_pid, old);
    // A roster of an older epoch that A never accepted (the mediator's key signed it; the
    // server held it back): a rollback.
    let older = p[0].with(|s| {
        resign(&latest.1, s.core.identity().unwrap(), |r| {
            r.epoch = 1;
            r.members.retain(|x| x.role == 0);
        })
    });
    p[0].relay_raw(&a_pid, older);
    p[1].until_true(|s| s.alarms().contains(&"roster_rollback".to_string()))
        .await;

    // A fork: the mediator's key signs a different roster for the same epoch.
    // (It drops party B, never the mediator: the signer must stay listed.)
    let forked = p[0].with(|s| {
        let m_ik = s.core.identity().unwrap().ik_pub();
        resign(&latest.1, s.core.identity().unwrap(), |r| {
            r.members
                .retain(|x| x.role == 0 && x.ik_pub == m_ik || x.side != 2)
        })
    });
    p[0].relay_raw(&a_pid, forked);
    p[1].until_true(|s| s.alarms().contains(&"roster_fork".to_string()))
        .await;

    // A gap: an epoch two ahead (rosters withheld).
    let gap = p[0].with(|s| resign(&latest.1, s.core.identity().unwrap(), |r| r.epoch += 2));
    p[0].relay_raw(&a_pid, gap);
    p[1].until_true(|s| s.alarms().contains(&"roster_gap".to_string()))
        .await;

    // A forgery: the next epoch, properly linked, signed by a key that is not the mediator's.
    let mut rng = confer_client::os_rng();
    let stranger = Identity::generate(&mut rng);
    let latest_hash =
        confer_e2ee::roster::roster_hash(&latest.1, &latest.2.clone().try_into().unwrap());
    let forged = resign(&latest.1, &stranger, |r| {
        r.epoch += 1;
        r.prev_hash = latest_hash;
    });
    p[0].relay_raw(&a_pid, forged);
    p[1].until_true(|s| s.alarms().contains(&"roster_bad_signature".to_string()))
        .await;

    // A roster "from" anyone but the mediator.
    let from_b = Envelope::Roster {
        ch: latest.0.clone(),
        enc: Bytes(latest.1.clone()),
        sig: Bytes(latest.2.clone()),
        dik: None,
        dsig: None,
    }
    .to_data();
    p[2].relay_raw(&a_pid, from_b);
    p[1].until_true(|s| s.alarms().contains(&"roster_from_non_mediator".to_string()))
        .await;

    // None of it changed A's view of who is in the room.
    assert_eq!(
        p[1].with(|s| s
            .core
            .roster_members(&confer_proto::ChannelId::joint())
            .len()),
        3
    );
}
