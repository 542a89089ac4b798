//! Long-lived connections end with access: an open WebSocket and an open server-sent event
//! stream are closed within 5 s of their session being signed out, revoked by an
//! administrator or expiring, and of their person losing access (grant removed, app made
//! restricted) — on the client's side and on the app's; streams of people who keep access
//! stay open and keep carrying traffic.
//! Each limit is a deadline waited for, not a sleep.

use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{FutureExt, SinkExt, StreamExt};
use gatehouse_tests::{Backend, Browser, Gateway};
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::gatehouse;

const PW: &str = "correct horse battery staple";
const API: &str = "/.gatehouse/admin/api";

/// How soon after access ends its open streams must be closed.
const LIMIT: Duration = Duration::from_secs(5);

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One person's open WebSocket (the backend echoes) and event stream (the backend sends an
/// event every 200 ms, forever) through the gateway.
struct Open {
    who: String,
    ws: Ws,
    events: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
}

fn cookie(b: &Browser) -> String {
    b.cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

async fn open(gw: &Gateway, b: &Browser, slug: &str, who: &str) -> Open {
    let cookie = cookie(b);
    let mut req = format!("ws://{}/apps/{slug}/ws", gw.addr)
        .into_client_request()
        .unwrap();
    if !cookie.is_empty() {
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
    }
    let (ws, res) = tokio_tungstenite::connect_async(req)
        .await
        .unwrap_or_else(|e| panic!("{who}: WebSocket through the gateway: {e}"));
    assert_eq!(res.status(), 101, "{who}");
    let res = gw
        .client()
        .get(gw.url(&format!("/apps/{slug}/events")))
        .header("cookie", cookie)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{who}: event stream");
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "text/event-stream",
        "{who}"
    );
    let mut o = Open {
        who: who.to_string(),
        ws,
        events: res.bytes_stream().boxed(),
    };
    o.assert_open().await;
    o
}

impl Open {
    /// Both still carry traffic: a message is echoed on the WebSocket, and a new event
    /// arrives on the stream (what had arrived before is read away first).
    async fn assert_open(&mut self) {
        let who = &self.who;
        self.ws
            .send(Message::Text("still there?".into()))
            .await
            .unwrap_or_else(|e| panic!("{who}: WebSocket closed: {e}"));
        match tokio::time::timeout(LIMIT, self.ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => assert_eq!(t.as_str(), "echo: still there?", "{who}"),
            other => panic!("{who}: WebSocket closed or silent: {other:?}"),
        }
        loop {
            match self.events.next().now_or_never() {
                Some(Some(Ok(_))) => continue,
                Some(other) => panic!("{who}: event stream ended: {other:?}"),
                None => break,
            }
        }
        match tokio::time::timeout(LIMIT, self.events.next()).await {
            Ok(Some(Ok(chunk))) => assert!(
                String::from_utf8_lossy(&chunk).contains("data: tick"),
                "{who}: {chunk:?}"
            ),
            other => panic!("{who}: event stream ended or silent: {other:?}"),
        }
    }

    /// Both are closed by the gateway before `deadline`.
    async fn assert_closed_by(mut self, deadline: Instant) {
        let who = self.who.clone();
        let ws_closed = tokio::time::timeout_at(deadline, async {
            loop {
                match self.ws.next().await {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => continue,
                }
            }
        })
        .await;
        assert!(
            ws_closed.is_ok(),
            "{who}: WebSocket still open {LIMIT:?} after access ended"
        );
        let events_closed = tokio::time::timeout_at(deadline, async {
            loop {
                match self.events.next().await {
                    None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                }
            }
        })
        .await;
        assert!(
            events_closed.is_ok(),
            "{who}: event stream still open {LIMIT:?} after access ended"
        );
    }
}

/// The app behind the gateway sees exactly `n` of its streams still open by `deadline`: the
/// gateway closed its side too, not just the client's.
async fn app_sees(b: &Backend, n: usize, deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    let seen = gatehouse_tests::cluster::within(left, || async { b.open_streams() == n }).await;
    assert!(
        seen.is_some(),
        "the app still has {} streams open, expected {n}",
        b.open_streams()
    );
}

async fn signed_in(gw: &Gateway, user: &str) -> Browser {
    let mut b = gw.browser();
    assert_eq!(b.login(user, PW, None).await.status, 303, "{user} signs in");
    b
}

/// Creates an admin API token on the tokens page as `admin` (signed in); returns it.
async fn admin_token(admin: &mut Browser) -> String {
    let page = admin.get("/.gatehouse/admin/tokens").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.input_value("csrf").expect("csrf");
    let origin = admin.origin();
    let p = admin
        .post_form_with(
            "/.gatehouse/admin/tokens",
            &[
                ("csrf", &csrf),
                ("name", "ops"),
                ("scope", "admin"),
                ("duration", ""),
                ("until", ""),
            ],
            &[("origin", &origin)],
        )
        .await;
    assert_eq!(p.status, 201, "{}", p.body);
    let start = p.body.find("value=\"ghk_").expect("the secret is shown") + "value=\"".len();
    let end = start + p.body[start..].find('"').unwrap();
    p.body[start..end].to_string()
}

/// Calls the admin API with `token`; returns the status and the JSON answer.
async fn api(gw: &Gateway, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = gw
        .client()
        .request(method, gw.url(&format!("{API}{path}")))
        .header("authorization", format!("Bearer {token}"));
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_end_within_5s_of_sign_out_and_of_revocation() {
    let b = Backend::start("live").await;
    let gw = gatehouse()
        .app("team", &[b.addr], "access = \"authenticated\"")
        .user("root", PW, true, &[])
        .user("alice", PW, false, &["staff"])
        .user("bob", PW, false, &["staff"])
        .start()
        .await;
    let mut root = signed_in(&gw, "root").await;
    let token = admin_token(&mut root).await;
    let mut laptop = signed_in(&gw, "alice").await;
    let phone = signed_in(&gw, "alice").await;
    let on_laptop = open(&gw, &laptop, "team", "alice on her laptop").await;
    let mut on_phone = open(&gw, &phone, "team", "alice on her phone").await;
    let mut bobs = open(&gw, &signed_in(&gw, "bob").await, "team", "bob").await;
    app_sees(&b, 6, Instant::now() + LIMIT).await;

    // Signing out ends that session's streams, and only those.
    let t = Instant::now();
    assert_eq!(laptop.logout().await.status, 303);
    on_laptop.assert_closed_by(t + LIMIT).await;
    app_sees(&b, 4, t + LIMIT).await;
    on_phone.assert_open().await;
    bobs.assert_open().await;

    // An administrator revokes alice's sessions through the admin API.
    let t = Instant::now();
    let (status, answer) = api(&gw, &token, "DELETE", "/sessions/alice", None).await;
    assert_eq!(status, 200, "{answer}");
    on_phone.assert_closed_by(t + LIMIT).await;
    app_sees(&b, 2, t + LIMIT).await;
    bobs.assert_open().await;
    assert!(gw.log().contains("long-lived stream closed"), "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_end_within_5s_of_losing_access() {
    let b = Backend::start("live").await;
    let gw = gatehouse()
        .user("root", PW, true, &[])
        .user("alice", PW, false, &["staff"])
        .user("bob", PW, false, &["staff"])
        .start()
        .await;
    let mut root = signed_in(&gw, "root").await;
    let token = admin_token(&mut root).await;
    let up = b.addr.to_string();
    for (slug, access) in [("reports", "restricted"), ("board", "authenticated")] {
        let (status, answer) = api(
            &gw,
            &token,
            "POST",
            "/apps",
            Some(json!({"slug": slug, "name": slug, "upstreams": [up], "access": access})),
        )
        .await;
        assert_eq!(status, 201, "{answer}");
    }
    for user in ["alice", "bob"] {
        let (status, answer) = api(
            &gw,
            &token,
            "POST",
            "/apps/reports/grants",
            Some(json!({"kind": "user", "name": user})),
        )
        .await;
        assert_eq!(status, 201, "{answer}");
    }
    let alice = signed_in(&gw, "alice").await;
    let bob = signed_in(&gw, "bob").await;
    let alice_reports = open(&gw, &alice, "reports", "alice on reports").await;
    let alice_board = open(&gw, &alice, "board", "alice on board").await;
    let mut bob_reports = open(&gw, &bob, "reports", "bob on reports").await;
    let mut bob_board = open(&gw, &bob, "board", "bob on board").await;
    app_sees(&b, 8, Instant::now() + LIMIT).await;

    // Her grant removed: her streams on that app end; bob's, and hers elsewhere, stay.
    let t = Instant::now();
    let (status, answer) = api(&gw, &token, "DELETE", "/apps/reports/grants/user/alice", None).await;
    assert!(status < 300, "{status} {answer}");
    alice_reports.assert_closed_by(t + LIMIT).await;
    app_sees(&b, 6, t + LIMIT).await;
    bob_reports.assert_open().await;
    let mut alice_board = alice_board;
    alice_board.assert_open().await;

    // The app made restricted to bob: her streams on it end, his stay.
    let (status, answer) = api(
        &gw,
        &token,
        "POST",
        "/apps/board/grants",
        Some(json!({"kind": "user", "name": "bob"})),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let (_, app) = api(&gw, &token, "GET", "/apps/board", None).await;
    let version = app["version"].as_i64().unwrap_or_else(|| panic!("{app}"));
    let t = Instant::now();
    let (status, answer) = api(
        &gw,
        &token,
        "PATCH",
        "/apps/board",
        Some(json!({"access": "restricted", "version": version})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    alice_board.assert_closed_by(t + LIMIT).await;
    app_sees(&b, 4, t + LIMIT).await;
    bob_board.assert_open().await;
    bob_reports.assert_open().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_end_within_5s_of_their_session_expiring() {
    const LIFETIME: Duration = Duration::from_secs(4);
    let b = Backend::start("live").await;
    let gw = gatehouse()
        .raw("[session]\nidle_timeout = \"4s\"\nabsolute_timeout = \"4s\"\n")
        .app("team", &[b.addr], "access = \"authenticated\"")
        .app("pub", &[b.addr], "access = \"public\"")
        .user("alice", PW, false, &["staff"])
        .start()
        .await;
    let signed_in_at = Instant::now();
    let alice = signed_in(&gw, "alice").await;
    let alices = open(&gw, &alice, "team", "alice").await;
    // Someone who needs no session: the public app's streams go on.
    let mut anonymous = open(&gw, &gw.browser(), "pub", "anonymous").await;
    alices.assert_closed_by(signed_in_at + LIFETIME + LIMIT).await;
    app_sees(&b, 2, signed_in_at + LIFETIME + LIMIT).await;
    anonymous.assert_open().await;
}

/// pingora 0.9.1 tore an upgraded connection down right after its 101 whenever the app's 101
/// was read before the upgrade request's own empty body end (cloudflare/pingora#946; the
/// patched copy in gateway/vendor/pingora-proxy): the client got the 101, then end-of-file
/// on its first message. It took a loaded machine or an app that answers fast; here 40
/// WebSockets are opened next to busy event streams, and every one must echo.
#[tokio::test(flavor = "multi_thread")]
async fn fresh_websockets_survive_their_first_message() {
    let b = Backend::start("live").await;
    let gw = gatehouse()
        .app("team", &[b.addr], "access = \"authenticated\"")
        .user("alice", PW, false, &["staff"])
        .start()
        .await;
    let alice = signed_in(&gw, "alice").await;
    let mut kept = Vec::new();
    for i in 0..40 {
        // `open` sends a first message on each WebSocket and waits for its echo.
        kept.push(open(&gw, &alice, "team", &format!("WebSocket #{i}")).await);
    }
}
