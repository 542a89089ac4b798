//! Upstream pools: round robin over the healthy members of an app's upstreams, with
//! passive health (a failed connect takes a member out) and active health checks (a
//! background loop puts it back once it answers again).

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{RwLock, Weak};
use std::time::Duration;

use gatehouse_config::{HealthCheck, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One upstream of an app and its health.
#[derive(Debug)]
pub struct Member {
    pub upstream: Upstream,
    /// Resolved at start and re-resolved by the health checker; `None` until it resolves.
    addr: RwLock<Option<SocketAddr>>,
    healthy: AtomicBool,
    failures: AtomicU32,
    successes: AtomicU32,
}

impl Member {
    fn new(upstream: Upstream) -> Member {
        let addr = resolve(&upstream);
        Member {
            healthy: AtomicBool::new(addr.is_some()),
            addr: RwLock::new(addr),
            upstream,
            failures: AtomicU32::new(0),
            successes: AtomicU32::new(0),
        }
    }

    /// The resolved address, if any.
    pub fn addr(&self) -> Option<SocketAddr> {
        *self.addr.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

fn resolve(u: &Upstream) -> Option<SocketAddr> {
    (u.host.as_str(), u.port).to_socket_addrs().ok()?.next()
}

/// The upstreams of one app.
#[derive(Debug)]
pub struct Pool {
    pub members: Vec<Member>,
    next: AtomicUsize,
    check: HealthCheck,
}

/// A member's health changed; the caller logs it and updates the gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Unchanged,
    WentDown,
    CameUp,
}

impl Pool {
    pub fn new(upstreams: &[Upstream], check: HealthCheck) -> Pool {
        Pool {
            members: upstreams.iter().cloned().map(Member::new).collect(),
            next: AtomicUsize::new(0),
            check,
        }
    }

    /// Picks the next healthy member in round-robin order, skipping those in `tried`. When
    /// every member is marked down, it still picks the untried ones in turn ("panic
    /// routing", as Envoy does): an app that has just come back — a restart, a deploy — is
    /// served at once instead of after its next health check, and a dead one costs a
    /// refused connection. `None`: nothing is left to try (the caller answers 503).
    pub fn select(&self, tried: &[usize]) -> Option<usize> {
        let n = self.members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let in_turn = || (0..n).map(move |k| (start + k) % n).filter(|i| !tried.contains(i));
        let panic = self.all_down();
        in_turn().find(|i| panic || self.members[*i].is_healthy())
    }

    /// Whether [`Pool::select`] would pick a member other than those in `tried` (worth a
    /// retry).
    pub fn has_alternative(&self, tried: &[usize]) -> bool {
        let panic = self.all_down();
        (0..self.members.len()).any(|i| (panic || self.members[i].is_healthy()) && !tried.contains(&i))
    }

    /// Every member is marked down.
    pub fn all_down(&self) -> bool {
        self.members.iter().all(|m| !m.is_healthy())
    }

    /// Records a failure (passive: a failed connect; active: a failed check).
    pub fn record_failure(&self, i: usize) -> Transition {
        let m = &self.members[i];
        m.successes.store(0, Ordering::Relaxed);
        let f = m.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if f >= self.check.unhealthy_after && m.healthy.swap(false, Ordering::Relaxed) {
            Transition::WentDown
        } else {
            Transition::Unchanged
        }
    }

    /// Records a successful active check.
    pub fn record_success(&self, i: usize) -> Transition {
        let m = &self.members[i];
        m.failures.store(0, Ordering::Relaxed);
        let s = m.successes.fetch_add(1, Ordering::Relaxed) + 1;
        if s >= self.check.healthy_after && !m.healthy.swap(true, Ordering::Relaxed) {
            Transition::CameUp
        } else {
            Transition::Unchanged
        }
    }

    pub fn health_check(&self) -> &HealthCheck {
        &self.check
    }
}

/// Probes member `m` once: a TCP connect, or with a configured path an HTTP/1.1 GET that
/// must answer 2xx or 3xx. Re-resolves the host name first.
pub async fn probe(m: &Member, check: &HealthCheck) -> bool {
    let resolved = {
        let u = m.upstream.clone();
        tokio::task::spawn_blocking(move || resolve(&u)).await.ok().flatten()
    };
    if let Some(a) = resolved {
        *m.addr.write().unwrap_or_else(|e| e.into_inner()) = Some(a);
    }
    let Some(addr) = m.addr() else { return false };
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        // TLS upstreams are checked at the TCP level only.
        let (Some(path), false) = (&check.path, m.upstream.tls) else {
            return Some(true);
        };
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: gatehouse-health-check\r\nConnection: close\r\n\r\n",
            m.upstream.address
        );
        stream.write_all(req.as_bytes()).await.ok()?;
        let mut buf = [0u8; 16];
        let mut got = 0;
        while got < 12 {
            let n = stream.read(&mut buf[got..]).await.ok()?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Some(status_ok(&buf[..got]))
    };
    matches!(tokio::time::timeout(check.timeout, attempt).await, Ok(Some(true)))
}

/// Whether an HTTP status line starts `HTTP/1.x 2..` or `3..`.
fn status_ok(head: &[u8]) -> bool {
    head.len() >= 12 && head.starts_with(b"HTTP/1.") && matches!(head[9], b'2' | b'3')
}

/// Runs the active checks of one pool for as long as the pool is in use (a snapshot still
/// holds it); calls `on_change` when a member changes.
pub async fn check_loop(pool: Weak<Pool>, on_change: impl Fn(&Pool, usize, Transition) + Send + Sync) {
    let Some(interval) = pool.upgrade().map(|p| p.check.interval.max(Duration::from_millis(100))) else {
        return;
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let results = futures_util::future::join_all(pool.members.iter().map(|m| probe(m, &pool.check))).await;
        for (i, ok) in results.into_iter().enumerate() {
            let t = if ok {
                pool.record_success(i)
            } else {
                pool.record_failure(i)
            };
            on_change(&pool, i, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: u16, check: HealthCheck) -> Pool {
        let ups: Vec<Upstream> = (1..=n)
            .map(|p| Upstream {
                address: format!("127.0.0.1:{p}"),
                host: "127.0.0.1".into(),
                port: p,
                tls: false,
            })
            .collect();
        Pool::new(&ups, check)
    }

    #[test]
    fn round_robin_skips_unhealthy_and_tried() {
        let p = pool(3, HealthCheck::default());
        let picks: Vec<_> = (0..6).map(|_| p.select(&[]).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        assert_eq!(p.record_failure(1), Transition::WentDown);
        let picks: Vec<_> = (0..4).map(|_| p.select(&[]).unwrap()).collect();
        assert!(!picks.contains(&1));
        assert_eq!(p.select(&[0, 2]), None);
        assert!(!p.has_alternative(&[0, 2]));
        assert_eq!(p.record_success(1), Transition::CameUp);
        assert!(p.has_alternative(&[0, 2]));
    }

    #[test]
    fn when_all_are_down_each_is_still_tried_in_turn() {
        let p = pool(2, HealthCheck::default());
        assert_eq!(p.record_failure(0), Transition::WentDown);
        assert_eq!(p.select(&[0]), Some(1), "one healthy left: no panic");
        assert_eq!(p.select(&[1]), None, "the healthy one was tried; the down one is not");
        assert_eq!(p.record_failure(1), Transition::WentDown);
        assert!(p.all_down());
        let picks: Vec<_> = (0..4).map(|_| p.select(&[]).unwrap()).collect();
        assert!(picks.contains(&0) && picks.contains(&1), "{picks:?}");
        assert_eq!(p.select(&[0]), Some(1));
        assert!(p.has_alternative(&[0]));
        assert_eq!(p.select(&[0, 1]), None, "each at most once per request");
        assert!(!p.has_alternative(&[0, 1]));
    }

    #[test]
    fn thresholds() {
        let p = pool(
            1,
            HealthCheck {
                unhealthy_after: 2,
                healthy_after: 2,
                ..HealthCheck::default()
            },
        );
        assert_eq!(p.record_failure(0), Transition::Unchanged);
        assert_eq!(p.record_failure(0), Transition::WentDown);
        assert!(!p.members[0].is_healthy());
        assert_eq!(p.select(&[]), Some(0), "the only member: still tried (panic routing)");
        assert_eq!(p.select(&[0]), None);
        assert_eq!(p.record_success(0), Transition::Unchanged);
        assert_eq!(p.record_success(0), Transition::CameUp);
        assert_eq!(p.select(&[]), Some(0));
    }

    #[test]
    fn status_lines() {
        assert!(status_ok(b"HTTP/1.1 200 OK"));
        assert!(status_ok(b"HTTP/1.0 302 Found"));
        assert!(!status_ok(b"HTTP/1.1 503 Nope"));
        assert!(!status_ok(b"HTTP/1.1"));
        assert!(!status_ok(b"garbage garbage"));
    }
}
