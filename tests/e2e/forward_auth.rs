//! `/.gatehouse/auth`: forward authentication for nginx `auth_request`, Traefik
//! `ForwardAuth` and Caddy `forward_auth`. Direct requests (trusted and untrusted peers,
//! spoofed and tricky forwarded targets), then a real nginx and a real Caddy running the
//! snippets of `config/examples/forward-auth/` in front of a test backend.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gatehouse_tests::cluster::within;
use gatehouse_tests::raw::{self, RawResponse};
use gatehouse_tests::{free_port, Backend, Gateway};
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};

use crate::gatehouse;

const PW: &str = "correct horse battery staple";

/// A gateway with `team` (group `staff` only) and `pub` (anyone), trusting `trusted`.
async fn gateway(trusted: &str, b: SocketAddr) -> Gateway {
    gatehouse()
        .server(&format!("trusted_proxies = [\"{trusted}\"]"))
        .app("team", &[b], "name = \"Team\"\nallow_groups = [\"staff\"]")
        .app("pub", &[b], "name = \"Public\"\naccess = \"public\"")
        .user("alice", PW, false, &["staff"])
        .user("bob", PW, false, &["sales"])
        .start()
        .await
}

/// Signs `user` in at the gateway; the `Cookie` header value a browser would then send.
async fn cookie(gw: &Gateway, user: &str) -> String {
    let mut b = gw.browser();
    let p = b.login(user, PW, None).await;
    assert_eq!(p.status, 303, "sign-in of {user}: {}", p.body);
    b.cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Verifies an assertion against the gateway's JWKS for audience `aud`.
async fn verify(gw: &Gateway, token: &str, aud: &str) -> Result<serde_json::Value, String> {
    let jwks: jsonwebtoken::jwk::JwkSet = gw
        .get("/.well-known/gatehouse/jwks.json")
        .await
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let kid = decode_header(token).map_err(|e| e.to_string())?.kid.ok_or("no kid")?;
    let jwk = jwks.find(&kid).ok_or("kid not in JWKS")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut v = Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[aud]);
    v.set_issuer(&[gw.url("")]);
    decode::<serde_json::Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

async fn auth(gw: &Gateway, headers: &[(&str, &str)]) -> RawResponse {
    raw::get(gw.addr, "/.gatehouse/auth", headers).await
}

const JSON: (&str, &str) = ("Accept", "application/json");
const HTML: (&str, &str) = ("Accept", "text/html");

#[tokio::test(flavor = "multi_thread")]
async fn trusted_proxy_gets_the_gatekeepers_answer() {
    let b = Backend::start("b").await;
    let gw = gateway("127.0.0.1/32", b.addr).await;
    let alice = cookie(&gw, "alice").await;
    let bob = cookie(&gw, "bob").await;
    let fwd = |uri: &'static str| [("X-Forwarded-Uri", uri), ("X-Forwarded-Host", "apps.example.com")];

    // Anonymous: 401 naming the sign-in page (an API client, and nginx's convention even
    // for browsers); 302 for a browser behind Traefik/Caddy.
    let r = auth(&gw, &[&fwd("/apps/team/x?a=1")[..], &[JSON]].concat()).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("location"), Some("/.gatehouse/login?rd=/apps/team/x%3Fa%3D1"));
    let r = auth(&gw, &[&fwd("/apps/team/x")[..], &[HTML]].concat()).await;
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(r.header("location"), Some("/.gatehouse/login?rd=/apps/team/x"));
    let r = auth(&gw, &[("X-Original-URL", "http://apps.example.com/apps/team/x"), HTML]).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some("http://apps.example.com/.gatehouse/login?rd=/apps/team/x")
    );
    let r = auth(
        &gw,
        &[&fwd("/apps/team/x")[..], &[HTML, ("X-Forwarded-Proto", "https")]].concat(),
    )
    .await;
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some("https://apps.example.com/.gatehouse/login?rd=/apps/team/x")
    );

    // A browser's form post (the method named by the proxy): 401, not a redirect that would
    // lose its body; a GET named the same way is still redirected.
    let post = ("X-Forwarded-Method", "POST");
    let r = auth(&gw, &[&fwd("/apps/team/x")[..], &[HTML, post]].concat()).await;
    assert_eq!(r.status, 401, "{r:?}");
    let r = auth(
        &gw,
        &[&fwd("/apps/team/x")[..], &[HTML, ("X-Forwarded-Method", "GET")]].concat(),
    )
    .await;
    assert_eq!(r.status, 302, "{r:?}");
    let r = auth(
        &gw,
        &[&fwd("/apps/team/x")[..], &[HTML, ("X-Forwarded-Method", "G T")]].concat(),
    )
    .await;
    assert_eq!(r.status, 400, "a method that is not one: {r:?}");

    // A member: 2xx with the identity headers and an assertion for this app.
    let r = auth(&gw, &[&fwd("/apps/team/x")[..], &[("Cookie", &alice)]].concat()).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-forwarded-user"), Some("alice"));
    assert_eq!(r.header("x-forwarded-groups"), Some("staff"));
    assert_eq!(r.header("x-forwarded-preferred-username"), Some("alice"));
    let jwt = r.header("x-gatehouse-assertion").expect("assertion").to_string();
    let claims = verify(&gw, &jwt, "team").await.expect("the assertion verifies");
    assert_eq!(claims["sub"], "alice");
    // nginx's convention, the cookie among others.
    let other = format!("other=1; {alice}");
    let r = auth(
        &gw,
        &[
            ("X-Original-URL", "https://apps.example.com/apps/team/"),
            ("Cookie", &other),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-forwarded-user"), Some("alice"));

    // Signed in but not allowed: 403 with the reason.
    let r = auth(&gw, &[&fwd("/apps/team/x")[..], &[("Cookie", &bob), HTML]].concat()).await;
    assert_eq!(r.status, 403, "{r:?}");
    let reason = r.header("x-gatehouse-reason").expect("reason");
    assert!(reason.contains("bob"), "{reason}");
    assert!(r.header("x-forwarded-user").is_none());

    // A public app: anyone passes, nobody's identity is claimed.
    let r = auth(&gw, &fwd("/apps/pub/")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.header("x-forwarded-user").is_none(), "{r:?}");

    // The forwarded target is canonicalised like a proxied path: dot segments climb into
    // `team`, never out of it.
    for uri in ["/apps/pub/../team/", "/apps/pub/%2e%2e/team/", "/apps/pub//..//team/x"] {
        let r = auth(&gw, &[("X-Forwarded-Uri", uri), ("Cookie", &bob)]).await;
        assert_eq!(r.status, 403, "{uri}: {r:?}");
        let r = auth(&gw, &[("X-Forwarded-Uri", uri), ("Cookie", &alice)]).await;
        assert_eq!(r.status, 200, "{uri}: {r:?}");
    }
    // … and what cannot be read one way only is refused (400; 403 for nginx, which
    // accepts no other status from auth_request).
    for uri in [
        "/apps/pub/%2f../team/",
        "/apps/pub/..%2fteam/",
        "/apps/pub/%5c..%5cteam/",
        "/apps/pub/..;/team/",
        "/apps/pub/%252e%252e/team/",
        "/../apps/pub/",
        "apps/pub/",
        "//apps.example.com/apps/pub/",
        "/apps/pub/#x",
    ] {
        let r = auth(&gw, &[("X-Forwarded-Uri", uri), ("Cookie", &alice)]).await;
        assert_eq!(r.status, 400, "{uri}: {r:?}");
        let url = format!("http://apps.example.com{uri}");
        if !uri.starts_with('/') || uri.starts_with("//") {
            continue;
        }
        let r = auth(&gw, &[("X-Original-URL", &url), ("Cookie", &alice)]).await;
        assert_eq!(r.status, 403, "{url}: {r:?}");
    }
    // Hosts go through the strict Host parsing; repeated descriptions are refused.
    for host in ["apps.example.com@evil", "apps.example.com:x", "a b", ""] {
        let r = auth(&gw, &[("X-Forwarded-Uri", "/apps/pub/"), ("X-Forwarded-Host", host)]).await;
        assert_eq!(r.status, 400, "{host:?}: {r:?}");
    }
    let r = auth(
        &gw,
        &[
            ("X-Forwarded-Uri", "/apps/team/"),
            ("X-Forwarded-Uri", "/apps/pub/"),
            ("Cookie", &bob),
        ],
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    // The gateway's own pages are not apps.
    let r = auth(&gw, &[("X-Forwarded-Uri", "/.gatehouse/admin/"), ("Cookie", &alice)]).await;
    assert_eq!(r.status, 403, "{r:?}");
    // No description at all: the request is judged as itself, which is no app.
    let r = auth(&gw, &[("Cookie", &alice)]).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(b.hits(), 0, "forward-auth never proxies");
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_peer_cannot_describe_a_request() {
    let b = Backend::start("b").await;
    // The test client (127.0.0.1) is not a trusted proxy here.
    let gw = gateway("10.0.0.0/8", b.addr).await;
    let alice = cookie(&gw, "alice").await;
    for headers in [
        vec![("X-Forwarded-Uri", "/apps/pub/")],
        vec![
            ("X-Forwarded-Uri", "/apps/pub/"),
            ("X-Forwarded-Host", "apps.example.com"),
        ],
        vec![("X-Original-URL", "http://apps.example.com/apps/pub/")],
        vec![("X-Forwarded-Uri", "/apps/team/"), ("Cookie", &alice)],
        vec![
            ("X-Original-URL", "http://apps.example.com/apps/team/"),
            ("Cookie", &alice),
        ],
        vec![("X-Forwarded-Uri", "/apps/team/"), ("Cookie", &alice), HTML],
    ] {
        let r = auth(&gw, &headers).await;
        assert_eq!(r.status, 403, "{headers:?}: {r:?}");
        assert!(r.header("x-forwarded-user").is_none(), "{r:?}");
        assert!(r.header("x-gatehouse-assertion").is_none(), "{r:?}");
    }
    // The same request as a trusted proxy's would pass: the difference is the peer.
    let trusting = gateway("127.0.0.1/32", b.addr).await;
    let r = auth(&trusting, &[("X-Forwarded-Uri", "/apps/pub/")]).await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// A proxy run as a child process from a temp dir; killed on drop.
struct Proxy {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// One of `config/examples/forward-auth/` with its placeholders filled in.
    fn snippet(file: &str, listen: SocketAddr, gw: &Gateway, backend: SocketAddr) -> String {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let path = root.join("config/examples/forward-auth").join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
        assert!(
            readme.contains(&format!("\n{text}```")),
            "README.md must show {} unchanged",
            path.display()
        );
        text.replace("@LISTEN@", &listen.to_string())
            .replace("@GATEHOUSE@", &gw.addr.to_string())
            .replace("@BACKEND@", &backend.to_string())
    }

    async fn start(mut cmd: Command, addr: SocketAddr, dir: tempfile::TempDir, log: &str) -> Proxy {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(log)).expect("log"))
            .spawn()
            .expect("start the proxy");
        let proxy = Proxy { child, addr, dir };
        let up = within(Duration::from_secs(20), || async {
            tokio::net::TcpStream::connect(addr).await.is_ok()
        })
        .await;
        assert!(up.is_some(), "proxy did not listen; log:\n{}", proxy.log(log));
        proxy
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    async fn nginx(gw: &Gateway, backend: SocketAddr) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("site.conf"),
            Self::snippet("nginx.conf", addr, gw, backend),
        )
        .unwrap();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{}}\nhttp {{\n access_log {d}/access.log;\n client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n include {d}/site.conf;\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let mut cmd = Command::new("/usr/sbin/nginx");
        cmd.arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"));
        Self::start(cmd, addr, dir, "stderr.log").await
    }

    async fn caddy(gw: &Gateway, backend: SocketAddr) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let file = dir.path().join("Caddyfile");
        std::fs::write(&file, Self::snippet("Caddyfile", addr, gw, backend)).unwrap();
        let mut cmd = Command::new("caddy");
        cmd.args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"));
        Self::start(cmd, addr, dir, "stderr.log").await
    }
}

fn echoed(r: &RawResponse, name: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_else(|_| panic!("not JSON: {r:?}"));
    v["headers"][name]
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// What both proxies must do with the same gateway and backend.
async fn protects(proxy: &Proxy, gw: &Gateway, b: &Backend) {
    let alice = cookie(gw, "alice").await;
    let bob = cookie(gw, "bob").await;
    let spoof = ("X-Forwarded-User", "root");

    // Anonymous browser: redirected to Gatehouse's sign-in, which the proxy serves too.
    let r = raw::get(proxy.addr, "/apps/team/page?x=1", &[HTML, spoof]).await;
    assert_eq!(r.status, 302, "{r:?}");
    let location = r.header("location").expect("location").to_string();
    assert!(
        location.ends_with("/.gatehouse/login?rd=/apps/team/page%3Fx%3D1"),
        "{location}"
    );
    let path = location.find("/.gatehouse/").map(|i| &location[i..]).unwrap();
    let login = raw::get(proxy.addr, path, &[HTML]).await;
    assert_eq!(login.status, 200, "the sign-in page through the proxy: {login:?}");
    assert_eq!(b.hits(), 0, "nothing reached the app");

    // A member: the backend sees who it is, never the client's spoofed copy.
    let r = raw::get(proxy.addr, "/apps/team/page", &[("Cookie", &alice), spoof, JSON]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(echoed(&r, "x-forwarded-user"), ["alice"]);
    assert_eq!(echoed(&r, "x-forwarded-groups"), ["staff"]);
    let jwt = echoed(&r, "x-gatehouse-assertion");
    assert_eq!(jwt.len(), 1, "{r:?}");
    assert_eq!(verify(gw, &jwt[0], "team").await.expect("verifies")["sub"], "alice");

    // A non-member: 403, and the app is not reached.
    let hits = b.hits();
    let r = raw::get(proxy.addr, "/apps/team/page", &[("Cookie", &bob), HTML]).await;
    assert_eq!(r.status, 403, "{r:?}");
    // A traversal out of the protected location is judged as where it lands.
    let r = raw::get(proxy.addr, "/apps/team/%2e%2e/team/page", &[("Cookie", &bob), JSON]).await;
    assert!(matches!(r.status, 400 | 403), "{r:?}");
    assert_eq!(b.hits(), hits, "the app was not reached for bob");
}

fn have(bin: &str) -> bool {
    Command::new(bin).arg("-v").output().is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_auth_request() {
    assert!(
        have("/usr/sbin/nginx"),
        "nginx is not installed: run tests/peers/install.sh"
    );
    let b = Backend::start("app").await;
    let gw = gateway("127.0.0.1/32", b.addr).await;
    let proxy = Proxy::nginx(&gw, b.addr).await;
    protects(&proxy, &gw, &b).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn caddy_forward_auth() {
    assert!(have("caddy"), "caddy is not installed: run tests/peers/install.sh");
    let b = Backend::start("app").await;
    let gw = gateway("127.0.0.1/32", b.addr).await;
    let proxy = Proxy::caddy(&gw, b.addr).await;
    protects(&proxy, &gw, &b).await;
    // Caddy names the original method: an anonymous browser's form post is answered 401
    // rather than redirected to sign in (its body would be lost).
    let hits = b.hits();
    let post = format!(
        "POST /apps/team/form HTTP/1.1\r\nHost: {}\r\nAccept: text/html\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\nConnection: close\r\n\r\na=1",
        proxy.addr
    );
    let r = raw::send(proxy.addr, post.as_bytes()).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(b.hits(), hits, "the app was not reached");
}
