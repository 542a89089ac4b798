//! Several gateways as one deployment: a throwaway PostgreSQL database they share, and a real
//! HAProxy (Debian package) balancing round robin, without stickiness, in front of them.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// The server the store tests use; `GATEHOUSE_TEST_PG_URL` overrides it.
pub fn pg_admin_url() -> String {
    std::env::var("GATEHOUSE_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database created for one test and dropped with it.
#[derive(Debug)]
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub fn create() -> PgDatabase {
        let name = format!("gatehouse_e2e_{:016x}", rand_u64());
        psql(&pg_admin_url(), &format!("CREATE DATABASE {name}"));
        let admin = pg_admin_url();
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        PgDatabase {
            url: format!("{base}/{name}"),
            name,
        }
    }

    /// The server's address (the URL's host and port), for a [`Link`](crate::link::Link)
    /// in front of it.
    pub fn server_addr(&self) -> SocketAddr {
        use std::net::ToSocketAddrs;
        let authority = self.url.split_once('@').map_or(self.url.as_str(), |(_, rest)| rest);
        let host_port = authority.split('/').next().unwrap_or(authority);
        host_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| panic!("no server address in {}", self.url))
    }

    /// This database's URL with the server's address replaced by `addr` (a link's).
    pub fn url_via(&self, addr: SocketAddr) -> String {
        let (head, rest) = self.url.split_once('@').expect("the URL names a user");
        let path = rest.split_once('/').map_or("", |(_, p)| p);
        format!("{head}@{addr}/{path}")
    }

    /// Runs SQL on this database as another client would (`psql`); panics on failure.
    pub fn sql(&self, sql: &str) -> String {
        psql(&self.url, sql)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &pg_admin_url(),
                "-qAtc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `sql` with psql against `url`; returns its unaligned output.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// HAProxy balancing round robin over `backends`, no stickiness. Stopped when dropped.
#[derive(Debug)]
pub struct LoadBalancer {
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl LoadBalancer {
    pub async fn start(backends: &[SocketAddr]) -> LoadBalancer {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, b)| format!("    server gw{i} {b}\n"))
            .collect();
        // `http-reuse never` and `option http-server-close`: each request may land on another
        // replica, as behind a plain load balancer that does not pin connections.
        let cfg = format!(
            "global\n    maxconn 512\n\ndefaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n    option http-server-close\n    http-reuse never\n\nfrontend fe\n    bind {addr}\n    default_backend gateways\n\nbackend gateways\n    balance roundrobin\n{servers}"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).expect("write haproxy.cfg");
        let child = spawn_haproxy(&path, dir.path());
        let lb = LoadBalancer { addr, child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "haproxy did not start listening on {addr}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        lb
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn spawn_haproxy(cfg: &Path, dir: &Path) -> Child {
    let log = std::fs::File::create(dir.join("haproxy.log")).expect("log file");
    Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(cfg)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("haproxy runs (tests/peers/install.sh installs it)")
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it returns true or `within` has passed; returns how long it took.
pub async fn within<F, Fut>(within: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return Some(start.elapsed());
        }
        if start.elapsed() > within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
