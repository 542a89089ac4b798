//! Test harness for Gatehouse's end-to-end suites: starts the real `gatehouse` binary with a
//! config the test describes, upstream apps on free loopback ports, and raw HTTP clients for
//! requests that ordinary clients would "fix" (dot segments, spoofed headers).
//!
//! ```ignore
//! let app = Backend::start("a").await;
//! let gw = GatewayBuilder::new(bin).app("a", &[app.addr], "access = \"public\"").start().await;
//! let res = gw.get("/apps/a/").await;
//! ```
#![forbid(unsafe_code)]

pub mod backend;
pub mod browser;
pub mod cluster;
pub mod dataapps;
pub mod demo;
pub mod identity;
pub mod ldap;
pub mod link;
pub mod nginx;
pub mod oidc;
pub mod private_pg;
pub mod raw;
pub mod saml;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use backend::Backend;
pub use browser::{Browser, Page};

/// A free port on 127.0.0.1, never the same twice in one test process, so parallel tests
/// cannot be handed each other's ports.
///
/// Ports come from below the kernel's ephemeral range (`ip_local_port_range`): a port that
/// `bind(:0)` handed out and we released could be taken, before our child process binds it,
/// by the local end of any outgoing connection on the machine (pingora then logs "is in
/// use, will try again"); ports below that range are only ever taken by explicit binds.
/// Each process starts at an offset from its pid, and every candidate is test-bound first.
/// A KiB figure of `/proc/<pid>/status` (`VmRSS`, `RssAnon`, …); 0 if it cannot be read.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (low, span) = (
        ephemeral_low.saturating_sub(12_000).max(1024),
        12_000u32.min(ephemeral_low.saturating_sub(1024)),
    );
    if span < 1000 {
        // An unusual machine: fall back to the kernel's choice.
        return std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free loopback port");
    }
    let _ = NEXT.compare_exchange(
        0,
        1 + (std::process::id() * 97) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let port = (low + NEXT.fetch_add(1, Ordering::SeqCst) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below {ephemeral_low}");
}

/// A port for a process started later (e.g. the gateway's, when a peer must know its URLs
/// first: pass it to [`GatewayBuilder::listen_port`]). Same as [`free_port`].
pub fn reserve_port() -> u16 {
    free_port()
}

/// Describes a gateway to start.
#[derive(Debug)]
pub struct GatewayBuilder {
    bin: PathBuf,
    server: Vec<String>,
    sections: Vec<String>,
    tls: bool,
    redirect: bool,
    args: Vec<String>,
    users: Vec<User>,
    env: Vec<(String, String)>,
    listen_port: Option<u16>,
}

/// A local account to create before the gateway starts (through `gatehouse user add`).
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: String,
    pub admin: bool,
    pub groups: Vec<String>,
}

impl GatewayBuilder {
    pub fn new(bin: impl AsRef<Path>) -> Self {
        GatewayBuilder {
            bin: bin.as_ref().to_path_buf(),
            server: vec![],
            sections: vec![],
            tls: false,
            redirect: false,
            args: vec![],
            users: vec![],
            env: vec![],
            listen_port: None,
        }
    }

    /// Listens on this loopback port (from [`reserve_port`]) instead of a fresh free one.
    pub fn listen_port(mut self, port: u16) -> Self {
        self.listen_port = Some(port);
        self
    }

    /// Adds `key = value` lines to `[server]`.
    pub fn server(mut self, line: &str) -> Self {
        self.server.push(line.to_string());
        self
    }

    /// Adds an app `slug` with `upstreams` and extra TOML lines (`access = "public"`, …).
    pub fn app(mut self, slug: &str, upstreams: &[SocketAddr], extra: &str) -> Self {
        let ups: Vec<String> = upstreams.iter().map(|u| format!("\"{u}\"")).collect();
        self.sections.push(format!(
            "[[apps]]\nslug = \"{slug}\"\nupstreams = [{}]\n{extra}\n",
            ups.join(", ")
        ));
        self
    }

    /// Adds raw TOML (other sections).
    pub fn raw(mut self, toml: &str) -> Self {
        self.sections.push(toml.to_string());
        self
    }

    /// Terminates TLS with a fresh self-signed certificate for `localhost`/127.0.0.1;
    /// `redirect` also opens a plain listener that redirects to HTTPS.
    pub fn tls(mut self, redirect: bool) -> Self {
        self.tls = true;
        self.redirect = redirect;
        self
    }

    /// A local account, created with the CLI before start.
    pub fn user(mut self, name: &str, password: &str, admin: bool, groups: &[&str]) -> Self {
        self.users.push(User {
            name: name.into(),
            password: password.into(),
            admin,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        });
        self
    }

    /// An environment variable for the gateway process.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Extra command-line arguments before `serve` (e.g. `--log-format json`).
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }

    /// Writes the config, starts the gateway and waits until `/.gatehouse/healthz` answers.
    pub async fn start(self) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = self.listen_port.unwrap_or_else(free_port);
        let metrics_port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let metrics: SocketAddr = format!("127.0.0.1:{metrics_port}").parse().expect("addr");
        let mut server = vec![
            format!("listen = \"{addr}\""),
            format!("metrics_listen = \"{metrics}\""),
            "threads = 2".to_string(),
            "shutdown_grace_period = \"10s\"".to_string(),
        ];
        let mut redirect_addr = None;
        let mut ca_pem = None;
        if self.tls {
            let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .expect("self-signed certificate");
            std::fs::write(dir.path().join("tls.crt"), cert.cert.pem()).expect("write cert");
            std::fs::write(dir.path().join("tls.key"), cert.key_pair.serialize_pem()).expect("write key");
            ca_pem = Some(cert.cert.pem());
            server.push("tls = { cert = \"tls.crt\", key = \"tls.key\" }".into());
            server.push(format!("public_url = \"https://localhost:{port}\""));
            if self.redirect {
                let r: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
                server.push(format!("http_redirect_listen = \"{r}\""));
                redirect_addr = Some(r);
            }
        }
        server.extend(self.server);
        let config = format!("[server]\n{}\n\n{}", server.join("\n"), self.sections.join("\n"));
        let config_path = dir.path().join("gatehouse.toml");
        std::fs::write(&config_path, &config).expect("write config");
        for u in &self.users {
            let mut args = vec!["user".to_string(), "add".into(), u.name.clone(), "--config".into()];
            args.push(config_path.to_string_lossy().into_owned());
            if u.admin {
                args.push("--admin".into());
            }
            for g in &u.groups {
                args.push("--group".into());
                args.push(g.clone());
            }
            let out = cli(&self.bin, &args, Some(&format!("{}\n", u.password)));
            assert!(
                out.status.success(),
                "user add {}: {}",
                u.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let log_path = dir.path().join("gatehouse.log");
        let spec = Spawn {
            bin: self.bin,
            args: self.args,
            env: self.env,
            config: config_path,
            log: log_path.clone(),
        };
        let child = spec.spawn();
        let mut gw = Gateway {
            child,
            spec,
            addr,
            metrics,
            redirect: redirect_addr,
            ca_pem,
            dir,
            log: log_path,
        };
        gw.wait_ready().await;
        gw
    }
}

/// Runs the gatehouse binary with `args`, feeding `stdin`; returns its output.
pub fn cli(bin: &Path, args: &[String], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).expect("stdin");
    }
    child.wait_with_output().expect("wait")
}

/// How to (re)start the gateway process.
#[derive(Debug, Clone)]
struct Spawn {
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    config: PathBuf,
    log: PathBuf,
}

impl Spawn {
    fn spawn(&self) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        Command::new(&self.bin)
            .args(&self.args)
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env("GATEHOUSE_LOG", "info")
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()))
    }
}

/// A running gateway process. Killed when dropped.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
    spec: Spawn,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub redirect: Option<SocketAddr>,
    pub ca_pem: Option<String>,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl Gateway {
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = self.client();
        let url = self.url("/.gatehouse/healthz");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("gateway exited ({status}) before it was ready; log:\n{}", self.log());
            }
            if let Ok(r) = client.get(&url).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway did not become ready; log:\n{}", self.log());
    }

    /// The base URL (`http://127.0.0.1:port` or `https://localhost:port`).
    pub fn url(&self, path: &str) -> String {
        if self.ca_pem.is_some() {
            format!("https://localhost:{}{path}", self.addr.port())
        } else {
            format!("http://{}{path}", self.addr)
        }
    }

    /// A client that trusts this gateway's certificate, never follows redirects, and
    /// resolves `localhost` to 127.0.0.1.
    pub fn client(&self) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .resolve("localhost", self.addr)
            .timeout(Duration::from_secs(60));
        if let Some(pem) = &self.ca_pem {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("pem"));
        }
        b.build().expect("client")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client().get(self.url(path)).send().await.expect("request")
    }

    /// The `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.metrics))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the gateway process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        status_kib(self.pid(), "VmRSS")
    }

    /// Sends a signal (`TERM`, `INT`, …) to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -{sig} failed");
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Stops the process (SIGTERM, then waits) and starts it again with the same config,
    /// database and ports.
    pub async fn restart(&mut self) {
        self.signal("TERM");
        let exited = tokio::task::block_in_place(|| self.wait_exit(Duration::from_secs(15)));
        assert!(exited.is_some(), "gateway did not stop");
        self.child = self.spec.spawn();
        self.wait_ready().await;
    }

    /// The config file of this gateway.
    pub fn config_path(&self) -> &Path {
        &self.spec.config
    }

    /// Runs a `gatehouse` subcommand against this gateway's config
    /// (`--config <file>` is appended).
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        a.push("--config".into());
        a.push(self.spec.config.to_string_lossy().into_owned());
        cli(&self.spec.bin, &a, stdin)
    }

    /// A fresh browser (no cookies) for this gateway.
    pub fn browser(&self) -> Browser {
        Browser::new(self.client(), self.url(""))
    }

    /// Everything the gateway logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
