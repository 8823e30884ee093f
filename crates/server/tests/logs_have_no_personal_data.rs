//! Info-level logs carry no participant id, session id, client address, token or content.

mod common;

use common::*;

#[tokio::test]
async fn info_logs_never_contain_ids_addresses_tokens_or_content() {
    let dir = temp_dir("logs");
    let serve = Serve::start(&dir).await;
    let session = "mediation-2026-smith-v-jones";
    let tokens = serve.trio(session);
    let canary = "CANARY-display-name-Alice-Smith";
    let trace = short_session(serve.addr, tokens, canary).await;
    serve.signal_term();
    let (code, logs) = serve.wait().await;
    assert_eq!(code, 0);

    // The log is not empty: the events happened and were logged, just without personal data.
    assert!(logs.contains("participant joined"), "{logs}");
    assert!(logs.contains("session ended"), "{logs}");
    let mut forbidden: Vec<String> = trace.participant_ids.clone();
    forbidden.push(session.to_owned());
    forbidden.push(canary.to_owned());
    forbidden.push(HASH.to_owned());
    forbidden.extend(trace.tokens.iter().cloned());
    for a in &trace.client_addrs {
        forbidden.push(a.to_string());
        forbidden.push(format!(":{}", a.port()));
    }
    for f in &forbidden {
        assert!(
            !logs.contains(f.as_str()),
            "the log contains {f:?}:\n{logs}"
        );
    }
    for line in logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(v["level"].is_string());
    }
    std::fs::remove_dir_all(dir).unwrap();
}
