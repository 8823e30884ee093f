//! Canaries: a plaintext marker in chat and a marker inside every key never appear in any
//! byte the server receives, logs, or writes to its data directory. The key marker is stamped
//! by [`PeerRng`] into every identity seed, session secret, HPKE ephemeral secret, sender base
//! key and invite secret the three clients draw (see its doc); the plaintext marker is sent
//! as chat in joint and in a caucus.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use confer_e2e::TestServer;
use confer_proto::{ChannelId, ClientMessage, Role, Side};

use super::harness::{KEY_MARKER, Peer, PeerRng, config};

const PLAINTEXT: &str = "PLAINTEXT-CANARY-we-accept-the-offer";
/// Every participant's display name: it travels only end to end (pairwise type 4).
const NAME: &str = "NAME-CANARY Ada Lovelace";

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every JSON string in `text`, and every base64url string decoded: the bytes to scan.
fn decoded_strings(v: &serde_json::Value, out: &mut Vec<Vec<u8>>) {
    match v {
        serde_json::Value::String(s) => {
            out.push(s.as_bytes().to_vec());
            if let Ok(b) = B64.decode(s.as_bytes()) {
                out.push(b);
            }
            // Relay payloads are JSON inside a string: look inside them too.
            if let Ok(inner) = serde_json::from_str::<serde_json::Value>(s) {
                decoded_strings(&inner, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| decoded_strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| decoded_strings(x, out)),
        _ => {}
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn walk(dir: &std::path::Path, out: &mut Vec<(String, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push((
                p.display().to_string(),
                std::fs::read(&p).unwrap_or_default(),
            ));
        }
    }
}

#[tokio::test]
async fn canaries_never_reach_the_server_its_logs_or_its_disk() {
    let logs = Logs::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .try_init()
        .expect("the only subscriber in this test process");

    let ts = TestServer::start(|_| {}).await;
    let rng = PeerRng {
        canary: true,
        stamped: Default::default(),
    };
    let join = |role, side| {
        let token = ts.invite(role, side);
        let rng = rng.clone();
        let addr = ts.server.addr();
        let mut cfg = config();
        cfg.display_name = Some(NAME.to_owned());
        async move { Peer::join_with(addr, &token, cfg, rng, Default::default()).await }
    };
    let mut m = join(Role::Mediator, None).await;
    m.secured_in("joint").await;
    let mut a = join(Role::Party, Some(Side::A)).await;
    let mut b = join(Role::Party, Some(Side::B)).await;
    a.secured_in("joint").await;
    b.secured_in("joint").await;
    for q in [&mut m, &mut a, &mut b] {
        q.until_true(|s| s.core.roster_members(&ChannelId::joint()).len() == 3)
            .await;
    }
    a.chat(PLAINTEXT).await.unwrap();
    b.until_true(|s| s.has_chat(PLAINTEXT)).await;
    // The names were really exchanged (and verified against the roster commitments).
    b.until_true(|s| s.core.names().len() == 2).await;
    m.send(ClientMessage::Move {
        participant_id: a.pid.clone(),
        channel_id: ChannelId::caucus(Side::A),
    });
    m.send(ClientMessage::Move {
        participant_id: m.pid.clone(),
        channel_id: ChannelId::caucus(Side::A),
    });
    a.secured_in("caucus-A").await;
    m.secured_in("caucus-A").await;
    a.until_true(|s| s.core.roster_present(&ChannelId::caucus(Side::A)).len() == 2)
        .await;
    a.chat(&format!("{PLAINTEXT} (caucus)")).await.unwrap();
    m.until_true(|s| s.has_chat(&format!("{PLAINTEXT} (caucus)")))
        .await;
    m.send(ClientMessage::End);
    for q in [&mut m, &mut a, &mut b] {
        q.until_true(|s| s.closed == Some(4000)).await;
        assert!(q.with(|s| s.core.stats().keys_deleted));
    }
    ts.server.flush_audit().await.unwrap();

    // The markers were really in play: keys were stamped, the text was really sent.
    assert!(
        rng.stamped.load(Ordering::Relaxed) >= 9,
        "identity, session and sender keys were drawn with the marker"
    );

    // 1. Every byte the server received: the frames the clients sent.
    let mut frames = Vec::new();
    for q in [&m, &a, &b] {
        frames.extend(q.with(|s| s.outbound.clone()));
    }
    assert!(frames.len() > 10);
    for f in &frames {
        assert!(!f.contains(PLAINTEXT), "plaintext on the wire: {f}");
        assert!(!f.contains(NAME), "a name on the wire: {f}");
        assert!(!contains(f.as_bytes(), KEY_MARKER));
        let v: serde_json::Value = serde_json::from_str(f).expect("JSON frame");
        let mut fields = Vec::new();
        decoded_strings(&v, &mut fields);
        for field in fields {
            assert!(
                !contains(&field, KEY_MARKER),
                "key material on the wire in {f}"
            );
            assert!(
                !contains(&field, PLAINTEXT.as_bytes()),
                "plaintext on the wire in {f}"
            );
            assert!(
                !contains(&field, NAME.as_bytes()),
                "a name on the wire in {f}"
            );
        }
    }
    // 2. Everything logged, at every level.
    let logged = logs.0.lock().expect("lock").clone();
    assert!(
        !logged.is_empty(),
        "the server logged (at trace level) while the session ran"
    );
    assert!(!contains(&logged, PLAINTEXT.as_bytes()));
    assert!(!contains(&logged, NAME.as_bytes()));
    assert!(!contains(&logged, KEY_MARKER));
    // 3. Everything on disk.
    let mut files = Vec::new();
    walk(&ts.dir, &mut files);
    assert!(files.iter().any(|(n, _)| n.ends_with("audit.db")));
    for (name, bytes) in files {
        assert!(!contains(&bytes, PLAINTEXT.as_bytes()), "{name}");
        assert!(!contains(&bytes, NAME.as_bytes()), "{name}");
        assert!(!contains(&bytes, KEY_MARKER), "{name}");
    }
}
