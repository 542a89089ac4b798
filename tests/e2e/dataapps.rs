//! Real data apps behind the gateway: Dash 4 with `dash_enterprise_auth`, Streamlit, Shiny for
//! Python and Jupyter Server (scripts in `tests/dataapps/`, installed from PyPI by
//! `tests/peers/dataapps.sh`), each under `/apps/<slug>/` and reached through the real
//! sign-in. For each framework: the person with access gets the app and the app knows who
//! they are; a person without access and an anonymous client are refused before the app sees
//! anything; identity headers a client forges never reach the app; and (Streamlit, Shiny,
//! Jupyter) a WebSocket carries 60 s of traffic through the gateway. The four tests run in
//! parallel, so the suite takes about a minute and a half.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use gatehouse_tests::dataapps::{DataApp, Framework};
use gatehouse_tests::Gateway;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::gatehouse;

const PW: &str = "data apps pw 4Kq";

/// How long each WebSocket carries traffic.
const WS_TRAFFIC: Duration = Duration::from_secs(60);

/// Identity headers a client might forge, in several spellings. Every value says `mallory`,
/// so one look at what the app saw finds any that got through.
const FORGED: &[(&str, &str)] = &[
    (
        "Plotly-User-Data",
        r#"{"username": "mallory", "groups": ["mallory-admins"]}"#,
    ),
    (
        "Plotly_User_Data",
        r#"{"username": "mallory", "groups": ["mallory-admins"]}"#,
    ),
    ("X-Forwarded-User", "mallory"),
    ("X_Forwarded_User", "mallory"),
    ("X-Forwarded-Preferred-Username", "mallory"),
    ("X-Forwarded-Email", "mallory@example.com"),
    ("X-Forwarded-Groups", "mallory-admins"),
    ("Remote-User", "mallory"),
    ("Remote-Groups", "mallory-admins"),
    ("X-Gatehouse-Assertion", "mallory.jwt.here"),
];

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A gateway serving `app` as `slug` to group `analysts` (alice; bob is in `sales`), with
/// `headers` as the app's `headers = { … }`.
async fn gateway(slug: &str, app: &DataApp, headers: &str) -> Gateway {
    assert_eq!(app.prefix, format!("/apps/{slug}/"));
    gatehouse()
        .app(
            slug,
            &[app.addr],
            &format!("name = \"{slug}\"\nallow_groups = [\"analysts\"]\nheaders = {{ {headers} }}"),
        )
        .user("alice", PW, false, &["analysts"])
        .user("bob", PW, false, &["sales"])
        .start()
        .await
}

/// A client-made `kcIdToken` (the cookie `dash_enterprise_auth` reads in token mode), sent
/// with every request; it must never reach an app.
const FORGED_COOKIE: &str = "kcIdToken=mallory";

/// Signs `user` in through the login form; the browser, holding the session cookie.
async fn signed_in(gw: &Gateway, user: &str) -> gatehouse_tests::Browser {
    let mut b = gw.browser();
    let p = b.login(user, PW, None).await;
    assert_eq!(p.status, 303, "sign-in of {user}: {}", p.body);
    b
}

/// Signs `user` in through the login form; the `Cookie` header value a browser would send.
async fn sign_in(gw: &Gateway, user: &str) -> String {
    signed_in(gw, user)
        .await
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A request as a browser of `cookie` would send it, plus every forged identity header.
fn request(gw: &Gateway, method: reqwest::Method, cookie: &str, path: &str) -> reqwest::RequestBuilder {
    let mut req = gw
        .client()
        .request(method, gw.url(path))
        .header("accept", "text/html,application/json;q=0.9,*/*;q=0.8")
        .header("cookie", with_forged_cookie(cookie));
    for (k, v) in FORGED {
        req = req.header(*k, *v);
    }
    req
}

fn with_forged_cookie(cookie: &str) -> String {
    if cookie.is_empty() {
        FORGED_COOKIE.to_string()
    } else {
        format!("{cookie}; {FORGED_COOKIE}")
    }
}

async fn get(gw: &Gateway, cookie: &str, path: &str) -> reqwest::Response {
    request(gw, reqwest::Method::GET, cookie, path)
        .send()
        .await
        .expect("request")
}

/// Opens a WebSocket through the gateway as a browser page of the gateway's origin would,
/// with every forged identity header.
async fn websocket(gw: &Gateway, cookie: &str, path: &str, protocol: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let mut req = format!("ws://{}{path}", gw.addr)
        .into_client_request()
        .expect("ws request");
    let h = req.headers_mut();
    h.insert("origin", HeaderValue::from_str(&gw.url("")).unwrap());
    h.insert("cookie", HeaderValue::from_str(&with_forged_cookie(cookie)).unwrap());
    if let Some(p) = protocol {
        h.insert("sec-websocket-protocol", HeaderValue::from_str(p).unwrap());
    }
    for (k, v) in FORGED {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    tokio_tungstenite::connect_async(req).await.map(|(ws, _)| ws)
}

/// The HTTP status with which the gateway refused an upgrade.
fn refused_upgrade(r: Result<Ws, tungstenite::Error>) -> u16 {
    match r {
        Err(tungstenite::Error::Http(res)) => res.status().as_u16(),
        Ok(_) => panic!("the WebSocket upgrade was accepted"),
        Err(e) => panic!("the WebSocket upgrade failed without an HTTP answer: {e}"),
    }
}

/// Reads messages until one satisfies `done` (returning its mapped value), for at most
/// `limit`.
async fn until<T>(ws: &mut Ws, limit: Duration, what: &str, mut done: impl FnMut(&Message) -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => panic!("WebSocket error while waiting for {what}: {e}"),
            Ok(None) => panic!("WebSocket closed while waiting for {what}"),
            Err(_) => panic!("no {what} within {limit:?}"),
        };
        if let Some(v) = done(&msg) {
            return v;
        }
    }
}

/// bob (no access) and an anonymous client are refused the page and, when `ws` names one,
/// the WebSocket, and the app sees none of it.
async fn outsiders_are_refused(gw: &Gateway, app: &DataApp, page: &str, ws: Option<&str>) {
    let bob = sign_in(gw, "bob").await;
    let before = app.seen().len();
    let r = get(gw, &bob, page).await;
    assert_eq!(r.status(), 403, "bob is not in analysts");
    assert!(
        r.text().await.unwrap().contains("You cannot open"),
        "the gateway's 403 page says why"
    );
    let r = get(gw, "", page).await;
    assert_eq!(r.status(), 302, "anonymous: to the sign-in page");
    if let Some(ws) = ws {
        assert_eq!(refused_upgrade(websocket(gw, &bob, ws, None).await), 403);
        let anon = refused_upgrade(websocket(gw, "", ws, None).await);
        assert!(anon == 401 || anon == 302, "anonymous upgrade answered {anon}");
    }
    assert_eq!(
        app.seen().len(),
        before,
        "a refused request reached the app: {:?}",
        &app.seen()[before..]
    );
}

/// A Dash background callback through the gateway, as the renderer runs it: the first
/// `_dash-update-component` starts a job in another process and answers its signed handles
/// (bound to the page load's `end_id` from `_dash-config`); the renderer then polls with
/// them until the result comes. Someone without access cannot poll the job.
#[tokio::test(flavor = "multi_thread")]
async fn dash_background_callback_is_polled_through_the_gateway() {
    let app = DataApp::start(Framework::Dash, "/apps/dash/").await;
    let gw = gateway("dash", &app, "plotly_user_data = true").await;
    let alice = sign_in(&gw, "alice").await;
    let html = get(&gw, &alice, "/apps/dash/").await.text().await.unwrap();
    let start = html.find("id=\"_dash-config\"").expect("_dash-config in the page");
    let json_start = start + html[start..].find('>').expect("script tag") + 1;
    let json_end = json_start + html[json_start..].find("</script>").expect("end of script");
    let config: serde_json::Value = serde_json::from_str(&html[json_start..json_end]).expect("config JSON");
    let end_id = config["end_id"].as_str().expect("end_id").to_string();

    let call = |value: serde_json::Value| {
        serde_json::json!({
            "output": "slow.children",
            "outputs": {"id": "slow", "property": "children"},
            "inputs": [{"id": "run", "property": "n_clicks", "value": value}],
            "changedPropIds": ["run.n_clicks"],
            "state": [],
        })
        .to_string()
    };
    let post = |cookie: &str, query: String, body: String| {
        request(
            &gw,
            reqwest::Method::POST,
            cookie,
            &format!("/apps/dash/_dash-update-component?{query}"),
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
    };
    let r = post(&alice, format!("endId={end_id}"), call(serde_json::json!(1)))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let started: serde_json::Value = r.json().await.unwrap();
    let (cache_key, job) = match (started["cacheKey"].as_str(), started["job"].as_str()) {
        (Some(c), Some(j)) => (c.to_string(), j.to_string()),
        _ => panic!("no background job started: {started}"),
    };
    let poll = format!("endId={end_id}&cacheKey={cache_key}&job={job}");

    // bob (not in analysts) cannot poll it: refused before the app.
    let bob = sign_in(&gw, "bob").await;
    let before = app.seen().len();
    let r = post(&bob, poll.clone(), call(serde_json::Value::Null)).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(app.seen().len(), before, "bob's poll reached the app");

    // alice polls, as the renderer does, until the job's result comes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut polls = 0;
    let result = loop {
        let r = post(&alice, poll.clone(), call(serde_json::Value::Null)).await.unwrap();
        assert_eq!(r.status(), 200, "poll {polls}");
        polls += 1;
        let text = r.text().await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        if v.get("response").is_some() {
            break v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no result after {polls} polls; last answer {text}; app log:\n{}",
            app.log()
        );
        // The renderer's polling interval.
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(result["response"]["slow"]["children"], "done after click 1", "{result}");
    no_forgery_reached(&app);
}

/// Nothing the app saw carries a forged value, and it saw something.
fn no_forgery_reached(app: &DataApp) -> Vec<serde_json::Value> {
    let seen = app.seen();
    assert!(!seen.is_empty(), "the app saw nothing; log:\n{}", app.log());
    let text = serde_json::to_string(&seen).unwrap();
    assert!(
        !text.contains("mallory"),
        "a forged identity header reached the app: {text}"
    );
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn dash_pages_callbacks_and_dash_enterprise_auth_in_header_mode() {
    let app = DataApp::start(Framework::Dash, "/apps/dash/").await;
    let gw = gateway("dash", &app, "plotly_user_data = true").await;
    let alice = sign_in(&gw, "alice").await;

    // The page and the two documents the renderer fetches, all under the prefix.
    let r = get(&gw, &alice, "/apps/dash/").await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("_dash-config") && html.contains("/apps/dash/"), "{html}");
    for doc in ["_dash-layout", "_dash-dependencies"] {
        let r = get(&gw, &alice, &format!("/apps/dash/{doc}")).await;
        assert_eq!(r.status(), 200, "{doc}");
        let _: serde_json::Value = r.json().await.expect("JSON");
    }

    // A callback, as the renderer posts it: dash_enterprise_auth.get_username() inside it.
    let body = serde_json::json!({
        "output": "who.children",
        "outputs": {"id": "who", "property": "children"},
        "inputs": [{"id": "q", "property": "value", "value": "hello"}],
        "changedPropIds": ["q.value"],
        "state": [],
    });
    let r = request(&gw, reqwest::Method::POST, &alice, "/apps/dash/_dash-update-component")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out: serde_json::Value = r.json().await.unwrap();
    let who: serde_json::Value =
        serde_json::from_str(out["response"]["who"]["children"].as_str().expect("children")).unwrap();
    assert_eq!(who["q"], "hello");
    assert_eq!(who["username"], "alice", "{who}");
    assert_eq!(who["user_data"]["groups"], serde_json::json!(["analysts"]), "{who}");

    // A plain Flask route of the same app.
    let r = get(&gw, &alice, "/apps/dash/whoami").await;
    assert_eq!(r.status(), 200);
    let me: serde_json::Value = r.json().await.unwrap();
    assert_eq!(me["username"], "alice", "{me}");

    let seen = no_forgery_reached(&app);
    for s in &seen {
        let data: serde_json::Value =
            serde_json::from_str(s["headers"]["plotly-user-data"].as_str().expect("Plotly-User-Data")).unwrap();
        assert_eq!(data["username"], "alice", "{s}");
    }
    outsiders_are_refused(&gw, &app, "/apps/dash/", None).await;

    // Without `plotly_user_data` the app is told nothing through that header, whatever the
    // client sends: header mode reads no user.
    let plain = gateway("dash", &app, "").await;
    let alice = sign_in(&plain, "alice").await;
    let me: serde_json::Value = get(&plain, &alice, "/apps/dash/whoami").await.json().await.unwrap();
    assert_eq!(me["username"], serde_json::Value::Null, "{me}");
    no_forgery_reached(&app);
}

/// Streamlit's `BackMsg { rerun_script: ClientState { query_string } }` (protobuf fields 11
/// and 1): what the browser sends to run the script.
fn streamlit_rerun(query: &str) -> Vec<u8> {
    let q = query.as_bytes();
    assert!(q.len() < 120, "one-byte protobuf lengths");
    let mut client_state = vec![0x0a, q.len() as u8];
    client_state.extend_from_slice(q);
    let mut msg = vec![(11 << 3) | 2, client_state.len() as u8];
    msg.extend_from_slice(&client_state);
    msg
}

#[tokio::test(flavor = "multi_thread")]
async fn streamlit_over_its_websocket_for_60_seconds() {
    let app = DataApp::start(Framework::Streamlit, "/apps/streamlit/").await;
    let gw = gateway("streamlit", &app, "").await;
    let alice = sign_in(&gw, "alice").await;

    let r = get(&gw, &alice, "/apps/streamlit/").await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().to_lowercase().contains("streamlit"));
    let r = get(&gw, &alice, "/apps/streamlit/_stcore/health").await;
    assert_eq!(r.status(), 200);

    let mut ws = websocket(&gw, &alice, "/apps/streamlit/_stcore/stream", Some("streamlit"))
        .await
        .expect("WebSocket upgrade through the gateway");
    let start = Instant::now();
    let mut run = 0u32;
    let mut pace = tokio::time::interval(Duration::from_secs(2));
    while run < 3 || start.elapsed() < WS_TRAFFIC {
        pace.tick().await;
        ws.send(Message::Binary(streamlit_rerun(&format!("run={run}")).into()))
            .await
            .expect("send rerun");
        // The script's output (a protobuf delta) carries the text it wrote.
        let want = format!("run={run} user=alice st.user=alice");
        until(&mut ws, Duration::from_secs(30), &want, |m| {
            let data = m.clone().into_data();
            data.windows(want.len()).any(|w| w == want.as_bytes()).then_some(())
        })
        .await;
        run += 1;
    }
    ws.close(None).await.ok();
    eprintln!(
        "streamlit: {run} script runs over one WebSocket in {:?}",
        start.elapsed()
    );

    let seen = no_forgery_reached(&app);
    assert_eq!(seen.len() as u32, run, "one record per script run");
    for s in &seen {
        assert_eq!(s["headers"]["x-forwarded-user"], "alice", "st.context.headers: {s}");
        assert_eq!(s["st_user"]["name"], "alice", "st.user: {s}");
    }
    outsiders_are_refused(&gw, &app, "/apps/streamlit/", Some("/apps/streamlit/_stcore/stream")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shiny_session_over_its_websocket_for_60_seconds() {
    let app = DataApp::start(Framework::Shiny, "/apps/shiny/").await;
    let gw = gateway("shiny", &app, "").await;
    let alice = sign_in(&gw, "alice").await;

    let r = get(&gw, &alice, "/apps/shiny/").await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let script = html
        .split("src=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .find(|s| s.contains("shiny.js"))
        .unwrap_or_else(|| panic!("no shiny.js in {html}"));
    let r = get(&gw, &alice, &format!("/apps/shiny/{script}")).await;
    assert_eq!(r.status(), 200, "relative asset {script}");

    let mut ws = websocket(&gw, &alice, "/apps/shiny/websocket/", None)
        .await
        .expect("WebSocket upgrade through the gateway");
    // The browser's first message: every input, and the output marked visible.
    let init = serde_json::json!({"method": "init", "data": {"n": 0, ".clientdata_output_who_hidden": false}});
    ws.send(Message::Text(init.to_string().into())).await.unwrap();
    let start = Instant::now();
    let mut n = 0u32;
    let mut pace = tokio::time::interval(Duration::from_secs(2));
    loop {
        let want = format!("n={n} user=alice");
        until(&mut ws, Duration::from_secs(30), &want, |m| {
            let v: serde_json::Value = serde_json::from_str(m.to_text().ok()?).ok()?;
            (v["values"]["who"] == want.as_str()).then_some(())
        })
        .await;
        if n >= 3 && start.elapsed() >= WS_TRAFFIC {
            break;
        }
        pace.tick().await;
        n += 1;
        let update = serde_json::json!({"method": "update", "data": {"n": n}});
        ws.send(Message::Text(update.to_string().into())).await.unwrap();
    }
    ws.close(None).await.ok();
    eprintln!("shiny: {n} updates over one session in {:?}", start.elapsed());

    let seen = no_forgery_reached(&app);
    let sessions: Vec<_> = seen.iter().filter(|s| s["where"] == "shiny session").collect();
    assert_eq!(sessions.len(), 1, "{seen:?}");
    assert_eq!(sessions[0]["headers"]["x-forwarded-user"], "alice");
    outsiders_are_refused(&gw, &app, "/apps/shiny/", Some("/apps/shiny/websocket/")).await;
}

/// A Jupyter `execute_request` on the shell channel (legacy JSON WebSocket protocol).
fn execute_request(msg_id: &str, code: &str) -> String {
    serde_json::json!({
        "header": {"msg_id": msg_id, "username": "alice", "session": "gatehouse-test",
                   "msg_type": "execute_request", "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "buffers": [], "channel": "shell",
        "content": {"code": code, "silent": false, "store_history": false,
                    "user_expressions": {}, "allow_stdin": false, "stop_on_error": true},
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn jupyter_kernel_runs_cells_over_its_websocket_for_60_seconds() {
    let app = DataApp::start(Framework::Jupyter, "/apps/jupyter/").await;
    let gw = gateway("jupyter", &app, "").await;
    let alice = sign_in(&gw, "alice").await;

    // The server's page sets its XSRF cookie, which a POST must echo in X-XSRFToken.
    let r = get(&gw, &alice, "/apps/jupyter/").await;
    assert_eq!(r.status(), 200);
    let xsrf = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("_xsrf="))
        .and_then(|c| c.split(';').next())
        .expect("Jupyter sets _xsrf")
        .to_string();
    let cookie = format!("{alice}; _xsrf={xsrf}");
    let me: serde_json::Value = get(&gw, &cookie, "/apps/jupyter/api/me").await.json().await.unwrap();
    assert_eq!(me["identity"]["username"], "alice", "{me}");

    let r = request(&gw, reqwest::Method::POST, &cookie, "/apps/jupyter/api/kernels")
        .header("x-xsrftoken", &xsrf)
        .header("content-type", "application/json")
        .body(r#"{"name": "python3"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "start a kernel");
    let kernel: serde_json::Value = r.json().await.unwrap();
    let id = kernel["id"].as_str().expect("kernel id").to_string();

    let channels = format!("/apps/jupyter/api/kernels/{id}/channels?session_id=gatehouse-test");
    let mut ws = websocket(&gw, &cookie, &channels, None)
        .await
        .expect("kernel WebSocket through the gateway");
    let start = Instant::now();
    let mut cell = 0u64;
    let mut pace = tokio::time::interval(Duration::from_secs(2));
    while cell < 3 || start.elapsed() < WS_TRAFFIC {
        pace.tick().await;
        let msg_id = format!("cell-{cell}");
        ws.send(Message::Text(
            execute_request(&msg_id, &format!("print({cell} * 7)")).into(),
        ))
        .await
        .unwrap();
        // stdout on iopub and the reply on shell, in either order (two channels); the first
        // cell waits for the kernel.
        let want = format!("{}\n", cell * 7);
        let (mut printed, mut replied) = (false, false);
        until(&mut ws, Duration::from_secs(60), &format!("cell {cell}"), |m| {
            let v: serde_json::Value = serde_json::from_str(m.to_text().ok()?).ok()?;
            if v["parent_header"]["msg_id"] != msg_id.as_str() {
                return None;
            }
            if v["msg_type"] == "stream" && v["content"]["text"] == want.as_str() {
                printed = true;
            }
            if v["msg_type"] == "execute_reply" {
                assert_eq!(v["content"]["status"], "ok", "{v}");
                replied = true;
            }
            (printed && replied).then_some(())
        })
        .await;
        cell += 1;
    }
    ws.close(None).await.ok();
    eprintln!(
        "jupyter: {cell} cells over one kernel WebSocket in {:?}",
        start.elapsed()
    );

    let seen = no_forgery_reached(&app);
    for s in &seen {
        assert_eq!(s["headers"]["x-forwarded-user"], "alice", "{s}");
    }
    outsiders_are_refused(&gw, &app, "/apps/jupyter/api/me", Some(&channels)).await;
}

/// The JWT inside a `kcIdToken` cookie value (standard base64), as the package decodes it.
fn dash_token_claims(cookie_header: &str) -> (String, serde_json::Value) {
    use base64::Engine as _;
    let value = cookie_header
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("kcIdToken="))
        .next()
        .unwrap_or_else(|| panic!("no kcIdToken in {cookie_header}"));
    let jwt = base64::engine::general_purpose::STANDARD
        .decode(value)
        .expect("kcIdToken is base64");
    let jwt = String::from_utf8(jwt).expect("a JWT");
    let claims = gatehouse_tests::identity::claims(&jwt);
    (value.to_string(), claims)
}

#[tokio::test(flavor = "multi_thread")]
async fn dash_enterprise_auth_token_mode_and_its_logout_link() {
    // The app verifies the token against the gateway's JWKS, so it needs the gateway's URL.
    let port = gatehouse_tests::reserve_port();
    let jwks = format!("http://127.0.0.1:{port}/.well-known/gatehouse/jwks.json");
    let app = DataApp::start_with(
        Framework::Dash,
        "/apps/dash/",
        &[("DASH_JWKS_URL", &jwks), ("DASH_LOGOUT_URL", "/.gatehouse/logout")],
    )
    .await;
    let gw = gatehouse()
        .listen_port(port)
        .app(
            "dash",
            &[app.addr],
            "name = \"Dash\"\nallow_groups = [\"analysts\"]\nheaders = { dash_token = true }",
        )
        .user("alice", PW, false, &["analysts"])
        .user("bob", PW, false, &["sales"])
        .start()
        .await;
    let mut browser = signed_in(&gw, "alice").await;
    let alice = browser
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");

    // get_username() in a callback and in a Flask route: preferred_username of a token the
    // package fetched the key for from the gateway's JWKS (by kid, with the JWK's alg).
    let body = serde_json::json!({
        "output": "who.children",
        "outputs": {"id": "who", "property": "children"},
        "inputs": [{"id": "q", "property": "value", "value": "token"}],
        "changedPropIds": ["q.value"],
        "state": [],
    });
    let r = request(&gw, reqwest::Method::POST, &alice, "/apps/dash/_dash-update-component")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()
            .get_all("set-cookie")
            .iter()
            .all(|c| !c.to_str().unwrap().contains("kcIdToken")),
        "the token goes upstream only, never to the browser"
    );
    let out: serde_json::Value = r.json().await.unwrap();
    let who: serde_json::Value =
        serde_json::from_str(out["response"]["who"]["children"].as_str().expect("children")).unwrap();
    assert_eq!(who["username"], "alice", "{who}\napp log:\n{}", app.log());
    assert_eq!(who["user_data"]["groups"], serde_json::json!(["analysts"]), "{who}");
    assert_eq!(who["user_data"]["aud"], "dash", "{who}");
    let r = get(&gw, &alice, "/apps/dash/whoami").await;
    assert_eq!(r.status(), 200);
    assert!(r
        .headers()
        .get_all("set-cookie")
        .iter()
        .all(|c| !c.to_str().unwrap().contains("kcIdToken")));
    let me: serde_json::Value = r.json().await.unwrap();
    assert_eq!(me["username"], "alice", "{me}");

    // What the app received: the gateway's token, never the client's.
    let seen = no_forgery_reached(&app);
    let (token, claims) = dash_token_claims(seen[0]["headers"]["cookie"].as_str().expect("Cookie"));
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["aud"], "dash");
    assert_eq!(claims["iss"], gw.url(""));
    assert_eq!(claims["groups"], serde_json::json!(["analysts"]));
    outsiders_are_refused(&gw, &app, "/apps/dash/whoami", None).await;

    // Through a gateway without `dash_token`, even that real token, replayed by a client,
    // is removed: token mode finds no user.
    let plain = gatehouse()
        .app("dash", &[app.addr], "allow_groups = [\"analysts\"]")
        .user("alice", PW, false, &["analysts"])
        .start()
        .await;
    let plain_alice = sign_in(&plain, "alice").await;
    let me: serde_json::Value = plain
        .client()
        .get(plain.url("/apps/dash/whoami"))
        .header("cookie", format!("{plain_alice}; kcIdToken={token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        me["username"],
        serde_json::Value::Null,
        "a replayed kcIdToken reached the app: {me}"
    );

    // create_logout_button(): a plain link to DASH_LOGOUT_URL. Following it shows a
    // confirmation page and signs nobody out; its form, with the token, does.
    let layout: serde_json::Value = get(&gw, &alice, "/apps/dash/_dash-layout").await.json().await.unwrap();
    let layout = layout.to_string();
    assert!(layout.contains(r#""href":"/.gatehouse/logout""#), "{layout}");
    let confirm = browser.get("/.gatehouse/logout").await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("method=\"post\""), "{}", confirm.body);
    let csrf = confirm
        .input_value("csrf")
        .expect("the confirmation form carries a token");
    assert_eq!(
        browser.get("/apps/dash/whoami").await.status,
        200,
        "a GET signs nobody out"
    );
    let forged = browser
        .post_form("/.gatehouse/logout", &[("csrf", "not-the-token")])
        .await;
    assert_eq!(
        forged.status, 400,
        "a POST without the token (cross-site) signs nobody out"
    );
    assert_eq!(browser.get("/apps/dash/whoami").await.status, 200);
    let out = browser.post_form("/.gatehouse/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303, "{}", out.body);
    assert_eq!(browser.get("/apps/dash/whoami").await.status, 302, "signed out");
    let r = get(&gw, &alice, "/apps/dash/whoami").await;
    assert_eq!(r.status(), 302, "the old session cookie is dead too");
}
