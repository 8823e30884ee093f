//! confer/1 end to end through the real server: Rust clients with real keys.

mod canaries;
mod channels;
mod cluster;
mod cluster_docs;
mod consent;
mod documents;
mod harness;
mod media;
mod membership;
mod rosters;
mod turn;

use confer_e2e::TestServer;
use confer_proto::{Role, Side};
use harness::{Peer, config};

/// A mediator, then parties and counsel admitted through consent and signed rosters; returns
/// once everyone is secured in joint.
pub(crate) async fn cast(ts: &TestServer, who: &[(Role, Option<Side>)]) -> Vec<Peer> {
    let mut m = Peer::join(ts.server.addr(), &ts.invite(Role::Mediator, None), config()).await;
    m.secured_in("joint").await;
    let mut peers = vec![m];
    for (role, side) in who {
        let mut p = Peer::join(ts.server.addr(), &ts.invite(*role, *side), config()).await;
        p.secured_in("joint").await;
        peers.push(p);
    }
    // Everyone holds the final joint roster and a key from everyone else.
    let n = peers.len();
    for p in &mut peers {
        p.until_true(|s| {
            s.core
                .roster_members(&confer_proto::ChannelId::joint())
                .len()
                == n
        })
        .await;
    }
    peers
}
