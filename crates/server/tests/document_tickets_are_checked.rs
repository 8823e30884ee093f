#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Every misuse of a document ticket is refused with its own status and stable code, writes
//! nothing, and never repeats the token: none at all, garbage, another server's key, an
//! edited payload, expired on the server's clock, a token of another kind (an invite, a
//! resume token), another document, another operation, and paths that are not a chunk's.

mod docs_common;
mod manual_server;

use base64::Engine as _;
use confer_proto::{Role, ServerMessage};
use confer_server::token::{DocClaims, Tokens};
use docs_common::*;

fn claims_of(ticket: &str) -> DocClaims {
    let payload = ticket.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}

fn refused(reply: &Reply, status: u16, code: &str, ticket: &str) {
    assert_eq!((reply.status, reply.code().as_str()), (status, code));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    for part in ticket.split('.').filter(|p| p.len() > 8) {
        assert!(
            !contains(&reply.body, part.as_bytes()),
            "the answer repeats the token"
        );
    }
}

#[tokio::test]
async fn misused_tickets_are_refused_each_with_its_code() {
    let d = Docs::start("docs-tickets", |_| {}).await;
    let mut r = d.session("s-tickets").await;
    let addr = d.addr();
    let doc = random_doc_id();
    let size = 65_537;
    let up = ask(&mut r.a, upload(&doc, size)).await.unwrap();
    let down = ask(&mut r.b, download(&doc)).await.unwrap();
    let body = random_bytes(17);
    let path = format!("/docs/{doc}/1");

    // No ticket, or not a JWT.
    let none = http(addr, "PUT", &path, None, &body, Framing::ContentLength).await;
    refused(&none, 401, "ticket_missing", "");
    let garbage = "eyJhbGciOiJIUzI1NiJ9.bm90IGEgdGlja2V0.c2lnbmF0dXJlLWdhcmJhZ2U";
    refused(
        &put(addr, &doc, 1, garbage, &body).await,
        401,
        "ticket_invalid",
        garbage,
    );

    // The same claims under another key; the real ticket with its op edited.
    let claims = claims_of(&up.token);
    assert_eq!(claims.doc_id.as_str(), doc);
    let forged = Tokens::new(&[9; 32]).mint_doc(&claims);
    refused(
        &put(addr, &doc, 1, &forged, &body).await,
        401,
        "ticket_invalid",
        &forged,
    );
    let [h, p, s] = down.token.split('.').collect::<Vec<_>>()[..] else {
        panic!("three parts")
    };
    let text = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap(),
    )
    .unwrap();
    let edited = text.replace(r#""op":"down""#, r#""op":"up""#);
    assert_ne!(edited, text);
    let edited = format!(
        "{h}.{}.{s}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(edited)
    );
    refused(
        &put(addr, &doc, 1, &edited, &body).await,
        401,
        "ticket_invalid",
        &edited,
    );

    // Tokens of this server of the other kinds.
    let invite = d.invite("s-tickets", Role::Observer, None);
    refused(
        &put(addr, &doc, 1, &invite, &body).await,
        403,
        "ticket_wrong_kind",
        &invite,
    );
    let (mut c, welcome) =
        confer_testkit::ws::WsClient::join(addr, &d.invite("s-tickets", Role::CoMediator, None))
            .await;
    let ServerMessage::Welcome { resume_token, .. } = welcome else {
        panic!("welcome")
    };
    refused(
        &get(addr, &doc, 1, &resume_token).await,
        403,
        "ticket_wrong_kind",
        &resume_token,
    );

    // Another document; another operation, both ways.
    let other = random_doc_id();
    refused(
        &put(addr, &other, 1, &up.token, &body).await,
        403,
        "ticket_wrong_doc",
        &up.token,
    );
    refused(
        &get(addr, &doc, 1, &up.token).await,
        403,
        "ticket_wrong_op",
        &up.token,
    );
    refused(
        &put(addr, &doc, 1, &down.token, &body).await,
        403,
        "ticket_wrong_op",
        &down.token,
    );

    // Paths that are not a chunk of this document.
    for bad in [
        "/docs/NOTHEX/1",
        "/docs/{doc}/01",
        "/docs/{doc}/-1",
        "/docs/{doc}/x",
    ] {
        let bad = bad.replace("{doc}", &doc);
        let reply = http(
            addr,
            "PUT",
            &bad,
            Some(&up.token),
            &body,
            Framing::ContentLength,
        )
        .await;
        refused(&reply, 400, "bad_request", &up.token);
    }
    refused(
        &put(addr, &doc, 2, &up.token, &body).await,
        400,
        "bad_chunk_index",
        &up.token,
    );
    refused(
        &get(addr, &doc, 2, &down.token).await,
        400,
        "bad_chunk_index",
        &down.token,
    );
    assert!(d.stored().is_empty(), "no refused request wrote anything");

    // Good until its expiry on the server's clock, then refused.
    d.clock.advance(599);
    assert_eq!(put(addr, &doc, 1, &up.token, &body).await.status, 201);
    d.clock.advance(1);
    refused(
        &put(addr, &doc, 0, &up.token, &body).await,
        401,
        "ticket_expired",
        &up.token,
    );
    refused(
        &get(addr, &doc, 1, &down.token).await,
        401,
        "ticket_expired",
        &down.token,
    );
    // A new ticket works again.
    let down = ask(&mut r.b, download(&doc)).await.unwrap();
    assert_eq!(get(addr, &doc, 1, &down.token).await.body, body);
    assert_eq!(d.stored().len(), 1);
    c.sync().await;
}
