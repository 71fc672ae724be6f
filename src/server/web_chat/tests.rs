//! The web chat's routes in process (`oneshot` through the real router and a SQLite store):
//! origins, sessions, messages, the transcript and the stream.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tern_engine::channel::ChannelKind;
use tern_engine::channels::ChannelDraft;
use tower::ServiceExt as _;

use crate::server::tests::Harness;

const SHOP: &str = "https://shop.example";

async fn with_site() -> Harness {
    let h = Harness::new().await;
    for (name, origin) in [("site", SHOP), ("blog", "https://blog.example")] {
        let draft =
            ChannelDraft { kind: Some(ChannelKind::Web), origins: vec![origin.into()], ..ChannelDraft::default() };
        h.channels.save(name, draft, false).await.unwrap();
    }
    h
}

fn request(
    method: Method,
    uri: &str,
    origin: Option<&str>,
    session: Option<&str>,
    body: Option<Value>,
) -> Request<Body> {
    let mut r = Request::builder().method(method).uri(uri);
    if let Some(o) = origin {
        r = r.header(header::ORIGIN, o);
    }
    if let Some(s) = session {
        r = r.header(header::AUTHORIZATION, format!("Bearer {s}"));
    }
    match body {
        Some(b) => r.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_string())).unwrap(),
        None => r.body(Body::empty()).unwrap(),
    }
}

async fn new_session(h: &Harness, channel: &str, origin: &str) -> String {
    let (status, headers, body) = h
        .send_as_is(request(
            Method::POST,
            &format!("/v1/channels/{channel}/web/sessions"),
            Some(origin),
            None,
            Some(json!({})),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], origin);
    body["session"].as_str().unwrap().to_string()
}

async fn say(h: &Harness, session: &str, id: &str, text: &str) -> (StatusCode, Value) {
    let body = json!({"message_id": id, "text": text});
    let (status, _, body) = h
        .send_as_is(request(Method::POST, "/v1/channels/site/web/messages", Some(SHOP), Some(session), Some(body)))
        .await;
    (status, body)
}

async fn history(h: &Harness, session: &str) -> Vec<(String, String)> {
    let (status, _, body) =
        h.send_as_is(request(Method::GET, "/v1/channels/site/web/history", Some(SHOP), Some(session), None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["from"].as_str().unwrap().to_string(), e["text"].as_str().unwrap().to_string()))
        .collect()
}

/// The transcript once it has `n` entries (the run finishes in the service's own task).
async fn history_of(h: &Harness, session: &str, n: usize) -> Vec<(String, String)> {
    for _ in 0..500 {
        let got = history(h, session).await;
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the transcript never had {n} entries: {:?}", history(h, session).await);
}

#[tokio::test]
async fn a_visitor_chats_and_reads_the_transcript_again_and_a_retry_runs_once() {
    let h = with_site().await;
    let session = new_session(&h, "site", SHOP).await;
    let (status, body) = say(&h, &session, "m-1", "ask").await;
    assert!(status.is_success(), "{body}");
    assert_eq!(body["message_id"], "m-1");
    let got = history_of(&h, &session, 2).await;
    assert_eq!(got, [("contact".into(), "ask".into()), ("bot".into(), "what?".into())]);
    // The widget's retry after a network error: the same message, not run again.
    assert!(say(&h, &session, "m-1", "ask").await.0.is_success());
    // Messages of a conversation run in order: once the next one is answered, a second run of
    // the first (which would have answered the question with "ask") would be in the
    // transcript before it.
    say(&h, &session, "m-2", "fine").await;
    let got = history_of(&h, &session, 4).await;
    assert_eq!(got[2..], [("contact".into(), "fine".into()), ("bot".into(), "got fine".into())], "{got:?}");
    // The same id for other words is refused.
    assert_eq!(say(&h, &session, "m-1", "something else").await.0, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_visitor_reads_only_their_own_conversation() {
    let h = with_site().await;
    let first = new_session(&h, "site", SHOP).await;
    say(&h, &first, "m-1", "ask").await;
    history_of(&h, &first, 2).await;
    let second = new_session(&h, "site", SHOP).await;
    assert!(history(&h, &second).await.is_empty(), "a new visitor sees nothing of another's");
    // A token of another web channel, a changed one, none: no session.
    let blog = new_session(&h, "blog", "https://blog.example").await;
    let tampered = format!("{}x", &first[..first.len() - 1]);
    for s in [Some(blog.as_str()), Some(tampered.as_str()), Some("v1.x.y.z"), None] {
        let (status, headers, body) =
            h.send_as_is(request(Method::GET, "/v1/channels/site/web/history", Some(SHOP), s, None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{s:?}: {body}");
        assert_eq!(body["code"], "unauthorized");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], SHOP, "the page learns it must start again");
    }
    // The channel's generic message route takes no session and no token: a web channel has
    // none.
    let req = Request::post("/v1/channels/site/conversations/x/messages")
        .header(header::AUTHORIZATION, format!("Bearer {first}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"text": "hello"}"#))
        .unwrap();
    assert_eq!(h.send_as_is(req).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn pages_of_other_origins_get_nothing() {
    let h = with_site().await;
    let session = new_session(&h, "site", SHOP).await;
    for origin in [
        None,
        Some("https://evil.example"),
        Some("https://shop.example.evil.example"),
        Some("http://shop.example"),
        Some("null"),
    ] {
        for (method, path, body) in [
            (Method::POST, "sessions", Some(json!({}))),
            (Method::POST, "messages", Some(json!({"message_id": "m", "text": "hi"}))),
            (Method::GET, "history", None),
            (Method::GET, "stream", None),
            (Method::OPTIONS, "messages", None),
        ] {
            let uri = format!("/v1/channels/site/web/{path}");
            let (status, headers, _) = h.send_as_is(request(method.clone(), &uri, origin, Some(&session), body)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{origin:?} {method} {path}");
            assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN), "{origin:?} {method} {path}");
        }
    }
    // A page of Tern's own origin is not one of a visitors' chat's origins.
    let mut own = request(Method::GET, "/v1/channels/site/web/history", None, Some(&session), None);
    own.headers_mut().insert("sec-fetch-site", "same-origin".parse().unwrap());
    assert_eq!(h.send_as_is(own).await.0, StatusCode::FORBIDDEN);
    // The other web channel's origin is not this one's.
    let (status, _, _) = h
        .send_as_is(request(
            Method::POST,
            "/v1/channels/site/web/sessions",
            Some("https://blog.example"),
            None,
            Some(json!({})),
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A preflight of an allowed page names what the widget sends.
    let (status, headers, _) =
        h.send_as_is(request(Method::OPTIONS, "/v1/channels/site/web/messages", Some(SHOP), None, None)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], SHOP);
    assert!(headers[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap().contains("authorization"));
    // The widget is public, on a web channel's name only.
    let (status, headers, body) =
        h.send_as_is(request(Method::GET, "/v1/channels/site/web/widget.js", None, None, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/javascript"));
    assert!(body.as_str().is_some_and(|js| js.contains("Open chat")));
    for name in ["default", "nope", "Site"] {
        let (status, _, _) =
            h.send_as_is(request(Method::GET, &format!("/v1/channels/{name}/web/widget.js"), None, None, None)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}");
    }
}

#[tokio::test]
async fn a_bad_message_says_what_is_wrong() {
    let h = with_site().await;
    let session = new_session(&h, "site", SHOP).await;
    for (body, code) in [
        (json!({"message_id": "m", "text": "   "}), "bad-message"),
        (json!({"message_id": "m", "text": "x".repeat(2001)}), "bad-message"),
        (json!({"message_id": "m", "text": "hi", "display": "y".repeat(201)}), "bad-message"),
        (json!({"message_id": "a\u{200B}b", "text": "hi"}), "bad-id"),
        (json!({"message_id": "m", "text": "hi", "start_flow": "ask"}), "bad-message"),
        (json!({"message_id": "m", "text": "\u{200B}\u{200B}"}), "bad-message"),
        (json!({"message_id": "m", "text": "hi", "display": "Yes\u{202E}oN"}), "bad-message"),
    ] {
        let (status, _, answer) = h
            .send_as_is(request(Method::POST, "/v1/channels/site/web/messages", Some(SHOP), Some(&session), Some(body)))
            .await;
        assert!(status.is_client_error(), "{answer}");
        assert_eq!(answer["code"], code, "{answer}");
    }
}

#[tokio::test]
async fn the_stream_sends_the_transcript_then_what_comes_next() {
    let h = with_site().await;
    let session = new_session(&h, "site", SHOP).await;
    say(&h, &session, "m-1", "ask").await;
    history_of(&h, &session, 2).await;
    let resp = h
        .app
        .clone()
        .oneshot(request(Method::GET, "/v1/channels/site/web/stream?after=1", Some(SHOP), Some(&session), None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    assert_eq!(resp.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], SHOP);
    let mut body = resp.into_body().into_data_stream();
    let mut seen = String::new();
    let mut next_event = async || loop {
        let chunk =
            tokio::time::timeout(std::time::Duration::from_secs(10), body.next()).await.unwrap().unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if let Some((event, rest)) = seen.split_once("\n\n") {
            let event = event.to_string();
            seen = rest.to_string();
            if !event.starts_with(':') {
                return event;
            }
        }
    };
    let first = next_event().await;
    assert!(first.contains("event: entry") && first.contains("id: 2"), "only after entry 1: {first}");
    assert!(first.contains("what?"), "{first}");
    // A message sent while the stream is open arrives on it.
    say(&h, &session, "m-2", "fine").await;
    let mine = next_event().await;
    assert!(mine.contains("id: 3") && mine.contains(r#""from":"contact""#) && mine.contains("fine"), "{mine}");
    let reply = next_event().await;
    assert!(reply.contains("id: 4") && reply.contains(r#""from":"bot""#) && reply.contains("got fine"), "{reply}");
}

#[tokio::test]
async fn one_address_cannot_hold_every_stream() {
    let h = with_site().await;
    // The oneshot requests have no peer address: they are one address.
    let mut open = Vec::new();
    for _ in 0..(tern_engine::web_chat::slots::MAX_STREAMS_PER_ADDRESS / 3 + 1) {
        let session = new_session(&h, "site", SHOP).await;
        for _ in 0..3 {
            let resp = h
                .app
                .clone()
                .oneshot(request(Method::GET, "/v1/channels/site/web/stream", Some(SHOP), Some(&session), None))
                .await
                .unwrap();
            open.push(resp);
        }
    }
    let statuses: Vec<u16> = open.iter().map(|r| r.status().as_u16()).collect();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(statuses.len() - refused, tern_engine::web_chat::slots::MAX_STREAMS_PER_ADDRESS, "{statuses:?}");
    assert!(refused >= 1, "{statuses:?}");
    drop(open);
}

#[test]
fn behind_a_trusted_proxy_the_visitor_is_the_last_address_it_did_not_add() {
    let edge = super::WebEdge { trusted_proxies: vec!["10.0.0.1".parse().unwrap()], ..super::WebEdge::default() };
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("x-forwarded-for", "6.6.6.6, 1.2.3.4".parse().unwrap());
    let proxy = Some("10.0.0.1".parse().unwrap());
    assert_eq!(edge.visitor_address(proxy, &headers), "1.2.3.4", "what the client wrote before is not believed");
    let direct = Some("5.6.7.8".parse().unwrap());
    assert_eq!(edge.visitor_address(direct, &headers), "5.6.7.8", "a client that is no proxy is itself");
    assert_eq!(edge.visitor_address(proxy, &axum::http::HeaderMap::new()), "10.0.0.1");
    for (forwarded, visitor) in [
        ("6.6.6.6, 1.2.3.4:4444", "1.2.3.4"),
        ("6.6.6.6, [2001:db8::5]:4444", "2001:db8::"),
        ("6.6.6.6, unknown", "10.0.0.1"),
        ("6.6.6.6, 1.2.3.4, 10.0.0.1", "1.2.3.4"),
    ] {
        headers.insert("x-forwarded-for", forwarded.parse().unwrap());
        assert_eq!(edge.visitor_address(proxy, &headers), visitor, "{forwarded}");
    }
    let ipv6 = Some("2001:db8:1:2::99".parse().unwrap());
    assert_eq!(edge.visitor_address(ipv6, &headers), "2001:db8:1:2::");
}
