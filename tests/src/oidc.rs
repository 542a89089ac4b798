//! A real OpenID Provider on a free loopback port: panva's certified npm `oidc-provider` (8.x,
//! pinned in tests/peers/oidc/package-lock.json) run by tests/peers/oidc/server.mjs with a
//! configuration the test owns. Install it with tests/peers/oidc.sh.
//!
//! ```ignore
//! let gw_port = gatehouse_tests::reserve_port();        // the gateway's port, known up front
//! let base = format!("http://127.0.0.1:{gw_port}");
//! let op = OpenIdProvider::start(
//!     &[Client::new("gatehouse", "gatehouse-secret",
//!         &format!("{base}/.gatehouse/oidc/corp/callback"), &format!("{base}/"))],
//!     false,
//! ).await;                                               // ~0.3–0.6 s
//! let gw = gatehouse().listen_port(gw_port).raw(&format!("… issuer = \"{}\" …", op.issuer)).start().await;
//! // the gateway answers /apps/x/ with a redirect to the OP's authorize URL:
//! let callback = op.login(&OpenIdProvider::browser_client(), &authorize_url, "alice", "alice-pw").await?;
//! // `callback` is <redirect_uri>?code=…&state=…&iss=…; GET it at the gateway with the gateway's cookies.
//! ```
//!
//! The OP: issuer `http://127.0.0.1:<port>`, discovery at `/.well-known/openid-configuration`,
//! endpoints `/auth`, `/token`, `/me` (userinfo), `/jwks`, `/session/end`, `/token/revocation`.
//! Code flow only, PKCE S256 required, `state` and `nonce` as sent; a refresh token with every
//! code grant (no `offline_access` needed; it lives as long as the OP session, which RP-initiated
//! logout ends). Scopes: `openid` (sub), `profile` (name, preferred_username, groups), `email`
//! (email, email_verified), `groups` (groups). Every client may use client_secret_basic (default;
//! other metadata through [`Client`] is not exposed) and the refresh_token grant.
//!
//! Users (passwords `<name>-pw`, `sub` = name): `alice` (alice@example.org; finance, staff), `bob`
//! (bob@example.org; staff), `carol` (carol@contractor.example; contractors), `many`
//! (many@example.org; bulk-0000 … bulk-1999, staff). `groups` is in the ID token unless started
//! with `groups_in_userinfo_only`, then only userinfo releases it.
//!
//! Browser-less login ([`OpenIdProvider::login`] does it), with a cookie jar, no auto-redirects:
//! 1. `GET <authorize URL>` → `303 Location: /interaction/<uid>` (relative; sets `_interaction*`)
//! 2. `POST /interaction/<uid>/login` form `login=alice&password=alice-pw` → `303 Location:
//!    http://127.0.0.1:<port>/auth/<uid>` (wrong password or unknown user: `401`, the form again)
//! 3. `GET /auth/<uid>` → `303 Location: <redirect_uri>?code=…&state=…&iss=…` (consent is implied)
//!
//! `GET /interaction/<uid>/abort` instead of step 2 ends in `<redirect_uri>?error=access_denied&…`.
//! The same jar signed in before goes straight from step 1 to `<redirect_uri>?code=…`.
//!
//! RP-initiated logout: `GET /session/end?id_token_hint=…&post_logout_redirect_uri=…&state=…` →
//! `303 <post_logout_redirect_uri>?state=…` directly (the server submits oidc-provider's
//! confirmation form itself and ends the OP session); an unregistered post_logout_redirect_uri
//! or a bad hint → 400 page. [`OpenIdProvider::last_end_session`] shows what reached the OP.
//!
//! Key rotation happens at runtime ([`OpenIdProvider::rotate_keys`]): the new RS256 key signs, the
//! old ones stay in the JWKS, sessions and tokens survive. Keys also survive
//! [`OpenIdProvider::stop`] / [`OpenIdProvider::start_again`] (same port, same keys; users,
//! sessions and tokens start afresh); `start_again(true)` adds a new signing key first.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A relying party registered at the OP.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub secret: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
}

impl Client {
    /// A client with one redirect URI and one post-logout redirect URI.
    pub fn new(id: &str, secret: &str, redirect_uri: &str, post_logout_redirect_uri: &str) -> Client {
        Client {
            id: id.into(),
            secret: secret.into(),
            redirect_uris: vec![redirect_uri.into()],
            post_logout_redirect_uris: vec![post_logout_redirect_uri.into()],
        }
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "client_id": self.id,
            "client_secret": self.secret,
            "redirect_uris": self.redirect_uris,
            "post_logout_redirect_uris": self.post_logout_redirect_uris,
        })
    }
}

/// The ID-token tampering modes of [`OpenIdProvider::misbehave`].
pub const MISBEHAVE_MODES: &[&str] = &[
    "wrong_nonce",
    "wrong_audience",
    "expired",
    "unknown_key",
    "unknown_kid",
    "alg_none",
    "hs256_with_public_key",
];

/// A running OpenID Provider. Killed when dropped (its state folder is then deleted).
#[derive(Debug)]
pub struct OpenIdProvider {
    /// `http://127.0.0.1:<port>`, also the base URL of every endpoint.
    pub issuer: String,
    pub port: u16,
    state: tempfile::TempDir,
    child: Option<Child>,
    clients_json: String,
    groups_in_userinfo_only: bool,
    http: reqwest::Client,
}

fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/oidc")
}

fn assert_installed() {
    let dir = peer_dir();
    assert!(
        dir.join("node_modules/oidc-provider/package.json").exists(),
        "the OpenID Provider peer is not installed ({} has no node_modules/oidc-provider): run tests/peers/oidc.sh",
        dir.display()
    );
}

/// Starts server.mjs and waits for `ready`; `Err` carries the reason and the log.
fn spawn(
    port: u16,
    state: &Path,
    clients_json: &str,
    groups_in_userinfo_only: bool,
    rotate: bool,
) -> Result<Child, String> {
    let log_path = state.join("server.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .expect("OP log file");
    let mut cmd = Command::new("node");
    cmd.current_dir(peer_dir())
        .arg("server.mjs")
        .args(["--port", &port.to_string()])
        .arg("--state-dir")
        .arg(state)
        .args(["--owner-pid", &std::process::id().to_string()])
        .env("OIDC_CLIENTS", clients_json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    if groups_in_userinfo_only {
        cmd.arg("--groups-in-userinfo-only");
    }
    if rotate {
        cmd.arg("--rotate");
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`node` is not on PATH: run tests/peers/oidc.sh (installs Node.js and the OP)")
        }
        Err(e) => panic!("cannot start node tests/peers/oidc/server.mjs: {e}"),
    };
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Reads until the process ends so it never blocks on a full pipe.
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(line) if line.trim() == "ready" => return Ok(child),
            Ok(_) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                // stdout closed: the process ended (or is about to).
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("the OP exited ({status}) before it was ready; log:\n{log}"));
            }
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!("the OP did not print `ready` within 30 s; log:\n{log}"));
        }
    }
}

impl OpenIdProvider {
    /// Starts a fresh OP on a free loopback port with these clients; returns once it listens.
    /// Panics (never skips) if Node.js or the npm packages are missing.
    pub async fn start(clients: &[Client], groups_in_userinfo_only: bool) -> OpenIdProvider {
        assert_installed();
        let clients_json = serde_json::Value::Array(clients.iter().map(Client::to_json).collect()).to_string();
        let state = tempfile::Builder::new()
            .prefix("gatehouse-oidc-")
            .tempdir()
            .expect("tempdir");
        let state_path = state.path().to_path_buf();
        let json = clients_json.clone();
        let (port, child) = tokio::task::spawn_blocking(move || {
            // free_port() releases the port before node binds it; retry on the rare collision.
            let mut attempt = 0;
            loop {
                attempt += 1;
                let port = crate::free_port();
                match spawn(port, &state_path, &json, groups_in_userinfo_only, false) {
                    Ok(child) => return (port, child),
                    Err(e) if attempt < 3 && e.contains("EADDRINUSE") => continue,
                    Err(e) => panic!("{e}"),
                }
            }
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        OpenIdProvider {
            issuer: format!("http://127.0.0.1:{port}"),
            port,
            state,
            child: Some(child),
            clients_json,
            groups_in_userinfo_only,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    /// `issuer` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// The OP's log (stderr of server.mjs) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("server.log")).unwrap_or_default()
    }

    /// The state folder (keys.json, cookie-keys.json, server.log).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Stops the OP (its port then refuses connections: "provider down").
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the OP again after [`OpenIdProvider::stop`] on the same port with the same keys
    /// (`rotate`: a new signing key first, the old ones stay in the JWKS). Users, sessions and
    /// tokens start afresh. Stops a running OP first.
    pub async fn start_again(&mut self, rotate: bool) {
        self.stop();
        let (port, state, json, g) = (
            self.port,
            self.state.path().to_path_buf(),
            self.clients_json.clone(),
            self.groups_in_userinfo_only,
        );
        let child = tokio::task::spawn_blocking(move || spawn(port, &state, &json, g, rotate))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
            .unwrap_or_else(|e| panic!("{e}"));
        self.child = Some(child);
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let mut req = self.http.request(method.clone(), self.url(path));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} at the OP: {e}"));
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {path} at the OP: {status} {text}");
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path} at the OP: not JSON: {text}"))
    }

    /// Replaces `user`'s groups (seen by the next ID token, refresh and userinfo).
    pub async fn set_groups(&self, user: &str, groups: &[&str]) {
        self.control(
            reqwest::Method::POST,
            &format!("/test/users/{user}/groups"),
            Some(serde_json::json!(groups)),
        )
        .await;
    }

    /// Merges claims into `user`'s (`{"email_verified": false}`, `{"email": …}`, `{"name": …}`).
    pub async fn set_claims(&self, user: &str, claims: serde_json::Value) {
        self.control(
            reqwest::Method::POST,
            &format!("/test/users/{user}/claims"),
            Some(claims),
        )
        .await;
    }

    /// Adds a new RS256 signing key at runtime; the old keys stay in the JWKS. Returns the new kid.
    pub async fn rotate_keys(&self) -> String {
        let v = self.control(reqwest::Method::POST, "/test/rotate-keys", None).await;
        v["kid"].as_str().expect("kid").to_string()
    }

    /// `{"kid": signing kid, "kids": [every kid in the JWKS, newest first]}`.
    pub async fn keys(&self) -> serde_json::Value {
        self.control(reqwest::Method::GET, "/test/keys", None).await
    }

    /// Makes the NEXT token response that carries an ID token carry a tampered one (one of
    /// [`MISBEHAVE_MODES`]; `"off"` disarms).
    pub async fn misbehave(&self, mode: &str) {
        self.control(
            reqwest::Method::POST,
            "/test/misbehave",
            Some(serde_json::json!({ "mode": mode })),
        )
        .await;
    }

    /// Makes the NEXT ID token carry the named time claims (`iat`, `nbf`, `exp`) set to now
    /// plus the given seconds (`{"iat": 45, "exp": -45}`), re-signed with the real key.
    pub async fn misbehave_times(&self, claims: serde_json::Value) {
        self.control(
            reqwest::Method::POST,
            "/test/misbehave",
            Some(serde_json::json!({ "mode": "times", "claims": claims })),
        )
        .await;
    }

    /// How many times the JWKS (`GET /jwks`) has been fetched since the OP started.
    pub async fn jwks_fetches(&self) -> u64 {
        let v = self.control(reqwest::Method::GET, "/test/requests", None).await;
        v["jwks"].as_u64().expect("jwks count")
    }

    /// Whether the OP requires PKCE (it does unless told otherwise).
    pub async fn require_pkce(&self, required: bool) {
        self.control(
            reqwest::Method::POST,
            "/test/pkce",
            Some(serde_json::json!({ "required": required })),
        )
        .await;
    }

    /// `{"required", "authorize": [{"code_challenge", "code_challenge_method"}], "token":
    /// [{"code_verifier", "status"}]}`: the PKCE parameters of every request so far.
    pub async fn pkce_seen(&self) -> serde_json::Value {
        self.control(reqwest::Method::GET, "/test/pkce", None).await
    }

    /// `{"pending": mode or null, "applied": [{"mode", "original", "tampered"}, …]}`.
    pub async fn misbehave_status(&self) -> serde_json::Value {
        self.control(reqwest::Method::GET, "/test/misbehave", None).await
    }

    /// The last request to the end-session endpoint (`null` if none): `count`, `method`,
    /// `params`, `id_token_hint_present`, `id_token_hint`, `post_logout_redirect_uri`, `state`,
    /// `client_id`, `status` (200 accepted, 4xx refused), `error`, `location` (final redirect).
    pub async fn last_end_session(&self) -> serde_json::Value {
        self.control(reqwest::Method::GET, "/test/last-end-session", None).await
    }

    /// A client for talking to the OP like a browser: a cookie jar, no automatic redirects.
    pub fn browser_client() -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client")
    }

    /// Signs `user` in through the OP's form, starting at `authorize_url` (the OP authorize URL
    /// the RP redirected to), with `browser` (from [`OpenIdProvider::browser_client`], so the
    /// OP's cookies are kept). Returns the first redirect that leaves the OP: normally
    /// `<redirect_uri>?code=…&state=…&iss=…`, or `?error=…` when the OP refuses the request.
    /// `Err` says where the chain stopped (e.g. `401` for a wrong password) with the body.
    pub async fn login(
        &self,
        browser: &reqwest::Client,
        authorize_url: &str,
        user: &str,
        password: &str,
    ) -> Result<String, String> {
        let mut url = authorize_url.to_string();
        let mut posted = false;
        for _ in 0..10 {
            let is_interaction = url.starts_with(&self.url("/interaction/"));
            let res = if is_interaction && !posted {
                posted = true;
                browser
                    .post(format!("{url}/login"))
                    .form(&[("login", user), ("password", password)])
                    .send()
                    .await
            } else {
                browser.get(&url).send().await
            }
            .map_err(|e| format!("{url}: {e}"))?;
            let status = res.status();
            let location = res
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let Some(location) = location.filter(|_| status.is_redirection()) else {
                let body = res.text().await.unwrap_or_default();
                return Err(format!("{url}: {} {body}", status.as_u16()));
            };
            let next = if location.starts_with('/') {
                self.url(&location)
            } else {
                location
            };
            if !next.starts_with(&format!("{}/", self.issuer)) {
                return Ok(next);
            }
            url = next;
        }
        Err(format!("too many redirects at the OP, last {url}"))
    }
}

impl Drop for OpenIdProvider {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine as _;
    use serde_json::{json, Value};
    use sha2::{Digest, Sha256};
    use std::time::Instant;

    const RP: &str = "http://127.0.0.1:1"; // never contacted: the test reads the redirects

    fn client() -> Client {
        Client::new("gw", "gw-secret", &format!("{RP}/cb"), &format!("{RP}/bye"))
    }

    fn rand_str(tag: &str) -> String {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let seed = format!(
            "{tag}-{nanos}-{}-{}",
            N.fetch_add(1, Ordering::Relaxed),
            std::process::id()
        );
        B64.encode(Sha256::digest(seed.as_bytes()))
    }

    /// An authorize request: (URL, state, nonce, code_verifier).
    fn authorize(op: &OpenIdProvider, scope: &str) -> (String, String, String, String) {
        let (state, nonce, verifier) = (rand_str("state"), rand_str("nonce"), rand_str("verifier"));
        let challenge = B64.encode(Sha256::digest(verifier.as_bytes()));
        let url = reqwest::Url::parse_with_params(
            &op.url("/auth"),
            &[
                ("response_type", "code"),
                ("client_id", "gw"),
                ("redirect_uri", &format!("{RP}/cb")),
                ("scope", scope),
                ("state", &state),
                ("nonce", &nonce),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .expect("url");
        (url.to_string(), state, nonce, verifier)
    }

    fn query(url: &str) -> std::collections::HashMap<String, String> {
        reqwest::Url::parse(url)
            .expect("url")
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn part(jwt: &str, i: usize) -> Value {
        let p = jwt.split('.').nth(i).expect("JWT part");
        serde_json::from_slice(&B64.decode(p).expect("base64url")).expect("JSON")
    }

    async fn token(op: &OpenIdProvider, form: &[(&str, &str)]) -> (u16, Value) {
        let res = op
            .http
            .post(op.url("/token"))
            .basic_auth("gw", Some("gw-secret"))
            .form(form)
            .send()
            .await
            .expect("token request");
        let status = res.status().as_u16();
        (status, res.json().await.expect("token JSON"))
    }

    async fn jwks(op: &OpenIdProvider) -> jsonwebtoken::jwk::JwkSet {
        op.http
            .get(op.url("/jwks"))
            .send()
            .await
            .expect("jwks")
            .json()
            .await
            .expect("jwks JSON")
    }

    /// Verifies an RS256 ID token against the OP's JWKS, as a careful RP would.
    async fn verify(op: &OpenIdProvider, id_token: &str) -> Result<Value, String> {
        let header = jsonwebtoken::decode_header(id_token).map_err(|e| e.to_string())?;
        if header.alg != jsonwebtoken::Algorithm::RS256 {
            return Err(format!("alg {:?}", header.alg));
        }
        let set = jwks(op).await;
        let kid = header.kid.ok_or("no kid")?;
        let jwk = set.find(&kid).ok_or(format!("kid {kid} not in the JWKS"))?;
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_audience(&["gw"]);
        v.set_issuer(&[&op.issuer]);
        v.leeway = 0;
        jsonwebtoken::decode::<Value>(id_token, &key, &v)
            .map(|d| d.claims)
            .map_err(|e| e.to_string())
    }

    /// Full code flow for `user`: returns the token response.
    async fn sign_in(op: &OpenIdProvider, user: &str, scope: &str) -> (Value, String) {
        let browser = OpenIdProvider::browser_client();
        let (url, state, nonce, verifier) = authorize(op, scope);
        let callback = op
            .login(&browser, &url, user, &format!("{user}-pw"))
            .await
            .unwrap_or_else(|e| panic!("login {user}: {e}\nOP log:\n{}", op.log()));
        assert!(callback.starts_with(&format!("{RP}/cb?")), "{callback}");
        let q = query(&callback);
        assert_eq!(q.get("state"), Some(&state));
        assert_eq!(q.get("iss"), Some(&op.issuer));
        let code = q.get("code").expect("code");
        let (status, tokens) = token(
            op,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &format!("{RP}/cb")),
                ("code_verifier", &verifier),
            ],
        )
        .await;
        assert_eq!(status, 200, "{tokens}");
        (tokens, nonce)
    }

    fn groups(claims: &Value) -> Vec<String> {
        claims["groups"]
            .as_array()
            .map(|a| a.iter().filter_map(|g| g.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn code_flow_refresh_misbehave_rotation_and_logout() {
        let t0 = Instant::now();
        let op = OpenIdProvider::start(&[client()], false).await;
        eprintln!("OP started in {:?}", t0.elapsed());

        let disco: Value = op
            .http
            .get(op.url("/.well-known/openid-configuration"))
            .send()
            .await
            .expect("discovery")
            .json()
            .await
            .expect("discovery JSON");
        assert_eq!(disco["issuer"], json!(op.issuer));
        assert_eq!(disco["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(disco["end_session_endpoint"], json!(op.url("/session/end")));
        assert_eq!(disco["userinfo_endpoint"], json!(op.url("/me")));
        assert_eq!(disco["jwks_uri"], json!(op.url("/jwks")));

        // Wrong password and unknown users are refused with the form again (401).
        let browser = OpenIdProvider::browser_client();
        let (url, ..) = authorize(&op, "openid");
        let err = op
            .login(&browser, &url, "alice", "wrong")
            .await
            .expect_err("wrong password");
        assert!(err.contains(" 401 ") && err.contains("name=\"password\""), "{err}");
        let (url, ..) = authorize(&op, "openid");
        let err = op
            .login(&browser, &url, "mallory", "mallory-pw")
            .await
            .expect_err("no such user");
        assert!(err.contains(" 401 "), "{err}");

        // PKCE is required: no code_challenge → error redirect.
        let res = browser
            .get(op.url(&format!(
                "/auth?response_type=code&client_id=gw&redirect_uri={RP}/cb&scope=openid&state=s1&nonce=n1"
            )))
            .send()
            .await
            .expect("authorize");
        let loc = res.headers()["location"].to_str().expect("location").to_string();
        assert!(
            loc.starts_with(&format!("{RP}/cb?")) && loc.contains("error=invalid_request"),
            "{loc}"
        );

        // Abort at the login form → access_denied at the RP.
        let (url, state, ..) = authorize(&op, "openid");
        let res = browser.get(&url).send().await.expect("authorize");
        let interaction = op.url(res.headers()["location"].to_str().expect("location"));
        let res = browser.get(format!("{interaction}/abort")).send().await.expect("abort");
        let resume = res.headers()["location"].to_str().expect("location").to_string();
        let res = browser.get(&resume).send().await.expect("resume");
        let denied = res.headers()["location"].to_str().expect("location").to_string();
        let q = query(&denied);
        assert_eq!(q.get("error").map(String::as_str), Some("access_denied"), "{denied}");
        assert_eq!(q.get("state"), Some(&state));

        // A full login: the ID token carries the claims and groups and verifies with the JWKS.
        let t1 = Instant::now();
        let (tokens, nonce) = sign_in(&op, "alice", "openid profile email").await;
        eprintln!("login + code exchange in {:?}", t1.elapsed());
        let id_token = tokens["id_token"].as_str().expect("id_token").to_string();
        let claims = verify(&op, &id_token).await.expect("valid ID token");
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["preferred_username"], "alice");
        assert_eq!(claims["email"], "alice@example.org");
        assert_eq!(claims["email_verified"], true);
        assert_eq!(claims["name"], "Alice Example");
        assert_eq!(claims["nonce"], json!(nonce));
        assert_eq!(groups(&claims), ["finance", "staff"]);
        let mut refresh = tokens["refresh_token"]
            .as_str()
            .expect("refresh_token (no offline_access asked)")
            .to_string();

        // Refresh sees changed groups; so does userinfo.
        op.set_groups("alice", &["finance", "auditors"]).await;
        let (status, t) = token(&op, &[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await;
        assert_eq!(status, 200, "{t}");
        let claims = verify(&op, t["id_token"].as_str().expect("id_token"))
            .await
            .expect("valid");
        assert_eq!(groups(&claims), ["finance", "auditors"]);
        if let Some(r) = t["refresh_token"].as_str() {
            refresh = r.to_string();
        }
        let info: Value = op
            .http
            .get(op.url("/me"))
            .bearer_auth(t["access_token"].as_str().expect("access_token"))
            .send()
            .await
            .expect("userinfo")
            .json()
            .await
            .expect("userinfo JSON");
        assert_eq!(groups(&info), ["finance", "auditors"]);
        assert_eq!(info["email"], "alice@example.org");

        // Each misbehave mode tampers exactly the next ID token.
        let key_set = jwks(&op).await;
        for mode in MISBEHAVE_MODES {
            op.misbehave(mode).await;
            let (status, t) = token(&op, &[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await;
            assert_eq!(status, 200, "{mode}: {t}");
            if let Some(r) = t["refresh_token"].as_str() {
                refresh = r.to_string();
            }
            let bad = t["id_token"].as_str().expect("id_token");
            let (header, payload) = (part(bad, 0), part(bad, 1));
            let checked = verify(&op, bad).await.and_then(|c| {
                if c["nonce"] == json!(nonce) {
                    Ok(c)
                } else {
                    Err(format!("nonce {}", c["nonce"]))
                }
            });
            assert!(checked.is_err(), "{mode}: a careful RP must refuse it, but it verified");
            match *mode {
                "wrong_nonce" => {
                    assert_ne!(payload["nonce"], json!(nonce));
                    assert_eq!(header["alg"], "RS256");
                }
                "wrong_audience" => assert_eq!(payload["aud"], "someone-else"),
                "expired" => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs() as i64)
                        .unwrap_or_default();
                    let (exp, iat) = (
                        payload["exp"].as_i64().expect("exp"),
                        payload["iat"].as_i64().expect("iat"),
                    );
                    assert!(
                        (now - 3610..=now - 3590).contains(&exp) && iat < exp,
                        "exp {exp} iat {iat} now {now}"
                    );
                }
                "unknown_key" => assert!(key_set.find(header["kid"].as_str().expect("kid")).is_some()),
                "unknown_kid" => assert!(key_set.find(header["kid"].as_str().expect("kid")).is_none()),
                "alg_none" => {
                    assert_eq!(header["alg"], "none");
                    assert!(bad.ends_with('.'));
                }
                "hs256_with_public_key" => assert_eq!(header["alg"], "HS256"),
                _ => unreachable!(),
            }
            // The claims other than the tampered ones are intact (groups, sub).
            assert_eq!(payload["sub"], "alice", "{mode}");
            assert_eq!(groups(&payload), ["finance", "auditors"], "{mode}");
            // Signed with the real key: the token verifies once the tampered claim is ignored.
            if matches!(*mode, "wrong_nonce" | "wrong_audience" | "expired") {
                let set = jwks(&op).await;
                let key =
                    jsonwebtoken::DecodingKey::from_jwk(set.find(header["kid"].as_str().expect("kid")).expect("jwk"))
                        .expect("key");
                let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
                v.validate_aud = false;
                v.validate_exp = false;
                jsonwebtoken::decode::<Value>(bad, &key, &v)
                    .unwrap_or_else(|e| panic!("{mode}: not signed with the real key: {e}"));
            }
            // ... and the one after is fine again.
            let (status, t) = token(&op, &[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await;
            assert_eq!(status, 200, "{t}");
            verify(&op, t["id_token"].as_str().expect("id_token"))
                .await
                .unwrap_or_else(|e| panic!("after {mode}: {e}"));
            if let Some(r) = t["refresh_token"].as_str() {
                refresh = r.to_string();
            }
        }
        assert_eq!(op.misbehave_status().await["pending"], Value::Null);

        // Key rotation at runtime: new kid signs, old kid stays in the JWKS, sessions survive.
        let old_kid = part(&id_token, 0)["kid"].as_str().expect("kid").to_string();
        let new_kid = op.rotate_keys().await;
        assert_ne!(new_kid, old_kid);
        let set = jwks(&op).await;
        assert!(set.find(&new_kid).is_some() && set.find(&old_kid).is_some());
        let (status, t) = token(&op, &[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await;
        assert_eq!(status, 200, "{t}");
        let rotated = t["id_token"].as_str().expect("id_token");
        assert_eq!(part(rotated, 0)["kid"], json!(new_kid));
        verify(&op, rotated).await.expect("signed by the new key");
        verify(&op, &id_token).await.expect("the old token still verifies");
        let (tokens, _) = sign_in(&op, "bob", "openid profile").await;
        let bob = verify(&op, tokens["id_token"].as_str().expect("id_token"))
            .await
            .expect("valid");
        assert_eq!(groups(&bob), ["staff"]);

        // 2,000 groups in one ID token.
        let (tokens, _) = sign_in(&op, "many", "openid profile email").await;
        let many = verify(&op, tokens["id_token"].as_str().expect("id_token"))
            .await
            .expect("valid");
        assert_eq!(groups(&many).len(), 2001);
        assert!(groups(&many).contains(&"bulk-1999".to_string()));

        // RP-initiated logout: no confirmation page, straight back to the RP; recorded.
        assert_eq!(op.last_end_session().await, Value::Null);
        let url = reqwest::Url::parse_with_params(
            &op.url("/session/end"),
            &[
                ("id_token_hint", id_token.as_str()),
                ("post_logout_redirect_uri", &format!("{RP}/bye")),
                ("state", "bye-state"),
            ],
        )
        .expect("url");
        let res = browser.get(url).send().await.expect("end_session");
        assert_eq!(res.status().as_u16(), 303);
        assert_eq!(res.headers()["location"], format!("{RP}/bye?state=bye-state").as_str());
        let last = op.last_end_session().await;
        assert_eq!(last["id_token_hint_present"], true);
        assert_eq!(last["id_token_hint"], json!(id_token));
        assert_eq!(last["post_logout_redirect_uri"], json!(format!("{RP}/bye")));
        assert_eq!(last["status"], 200);
        assert_eq!(last["location"], json!(format!("{RP}/bye?state=bye-state")));
        // An unregistered post_logout_redirect_uri is refused (and recorded).
        let url = reqwest::Url::parse_with_params(
            &op.url("/session/end"),
            &[
                ("id_token_hint", id_token.as_str()),
                ("post_logout_redirect_uri", "http://evil.example/"),
            ],
        )
        .expect("url");
        let res = browser.get(url).send().await.expect("end_session");
        assert_eq!(res.status().as_u16(), 400);
        let last = op.last_end_session().await;
        assert_eq!(last["count"], 2);
        assert!(
            last["error"]
                .as_str()
                .unwrap_or_default()
                .contains("post_logout_redirect_uri"),
            "{last}"
        );
        eprintln!("whole OP smoke test in {:?}", t0.elapsed());
    }

    #[tokio::test]
    async fn groups_in_userinfo_only_and_restart_keeps_keys() {
        let mut op = OpenIdProvider::start(&[client()], true).await;
        let (tokens, _) = sign_in(&op, "carol", "openid profile email").await;
        let claims = verify(&op, tokens["id_token"].as_str().expect("id_token"))
            .await
            .expect("valid");
        assert_eq!(claims["email"], "carol@contractor.example");
        assert!(claims.get("groups").is_none(), "{claims}");
        let info: Value = op
            .http
            .get(op.url("/me"))
            .bearer_auth(tokens["access_token"].as_str().expect("access_token"))
            .send()
            .await
            .expect("userinfo")
            .json()
            .await
            .expect("userinfo JSON");
        assert_eq!(groups(&info), ["contractors"]);

        // Restart: same port and keys; with rotate, a new signing key in front of the old one.
        let kids = op.keys().await["kids"].clone();
        let t = Instant::now();
        op.start_again(false).await;
        eprintln!("OP restart in {:?}", t.elapsed());
        assert_eq!(op.keys().await["kids"], kids);
        op.start_again(true).await;
        let after = op.keys().await;
        let after_kids = after["kids"].as_array().expect("kids");
        assert_eq!(after_kids.len(), 2);
        assert_eq!(after_kids[1], kids[0]);
        assert_eq!(after["kid"], after_kids[0]);
        let (tokens, _) = sign_in(&op, "carol", "openid").await;
        let id_token = tokens["id_token"].as_str().expect("id_token");
        assert_eq!(part(id_token, 0)["kid"], after_kids[0]);
        verify(&op, id_token).await.expect("valid");

        // Stopped: connections are refused.
        op.stop();
        assert!(op.http.get(op.url("/jwks")).send().await.is_err());
    }
}
