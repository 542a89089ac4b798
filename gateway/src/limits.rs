//! Limits on what one client of the main listener can make the gateway hold: the size of a
//! request's headers, the time it may take to send them (slow clients, "slowloris"), and
//! how many single sign-on attempts one address may start. Pingora itself refuses more than
//! 256 header lines or 1 MiB of header with 400; the limits here are tighter or are ones
//! pingora does not have.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::http::RequestHeader;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream, TimingDigest,
    UniqueID, UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Largest request line plus headers the gateway accepts (each header counted as
/// `name: value\r\n`); a larger request gets 431 and its connection is closed. Browsers
/// send a few KiB; nginx's default ceiling is 32 KiB.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// How long one address's count of sign-in starts lasts (the life of a login record).
pub const SIGNIN_WINDOW: Duration = Duration::from_secs(600);

/// How long, and how many bytes, of a refused request's body are read and dropped after
/// the answer (a "lingering close", as nginx does): closing with unread data makes the
/// kernel reset the connection, and the client would lose the answer.
const DRAIN_TIME: Duration = Duration::from_secs(2);
const DRAIN_BYTES: usize = 16 * 1024 * 1024;

/// Reads and drops what is left of the request body, for at most [`DRAIN_TIME`] and
/// [`DRAIN_BYTES`]; call after answering a refused request whose connection then closes.
pub async fn drain_briefly(session: &mut pingora::proxy::Session) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut n = 0;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            n += chunk.len();
            if n > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

/// The size of a request's head as [`MAX_HEADER_BYTES`] counts it.
pub fn header_bytes(req: &RequestHeader) -> usize {
    let line = req.method.as_str().len() + req.raw_path().len() + 12;
    req.headers
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

/// Whether a canonical path starts a single sign-on (`/.gatehouse/{oidc,saml}/<id>/start`),
/// which writes a login record to the store.
pub fn is_signin_start(path: &str) -> bool {
    let Some(rest) = path
        .strip_prefix("/.gatehouse/oidc/")
        .or_else(|| path.strip_prefix("/.gatehouse/saml/"))
    else {
        return false;
    };
    matches!(rest.split_once('/'), Some((id, "start")) if !id.is_empty())
}

/// Counts sign-in starts per client address (IPv6 per /64) over [`SIGNIN_WINDOW`] from an
/// address's first start. A flood from one address is refused once it has used its share;
/// nothing already started is ever dropped, and other addresses are unaffected.
pub struct StartLimiter {
    per_client: u32,
    counts: moka::sync::Cache<IpAddr, Arc<AtomicU32>>,
}

impl std::fmt::Debug for StartLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartLimiter")
            .field("per_client", &self.per_client)
            .finish()
    }
}

/// The key an address is counted under: IPv4 as is, IPv6 by its /64 (one host's share).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl StartLimiter {
    /// `per_client` starts per address per [`SIGNIN_WINDOW`]; at most 100,000 addresses
    /// are tracked at once.
    pub fn new(per_client: u32) -> StartLimiter {
        StartLimiter::with_window(per_client, SIGNIN_WINDOW)
    }

    fn with_window(per_client: u32, window: Duration) -> StartLimiter {
        StartLimiter {
            per_client,
            counts: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(window)
                .build(),
        }
    }

    /// Counts a start by `client`; false when that address has used its share (the start
    /// must then be refused). A request without a known address is not limited here.
    pub fn allow(&self, client: Option<IpAddr>) -> bool {
        let Some(ip) = client else { return true };
        let n = self
            .counts
            .get_with(client_key(ip), || Arc::new(AtomicU32::new(0)))
            .fetch_add(1, Ordering::Relaxed);
        n < self.per_client
    }
}

/// Where a connection is in reading a request's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading headers that must be complete by this instant.
    Header(Instant),
    /// Headers read; the request (body, response, WebSocket) is under way.
    Served,
    /// Between requests on a kept-alive connection: the next byte starts the clock.
    Idle,
}

/// The header clock of one connection, shared by its stream and the proxy phases.
#[derive(Debug)]
struct Clock {
    limit: Duration,
    phase: Mutex<Phase>,
}

impl Clock {
    fn get(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn set(&self, p: Phase) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = p;
    }
}

/// A client stream whose reads fail with `TimedOut` once a request's headers have taken
/// longer than the limit: pingora's own read timeout is per read, so a client sending one
/// byte a second would hold its connection (and a task) for ever. The proxy marks the
/// headers read ([`headers_read`]) and the request done ([`request_done`]).
#[derive(Debug)]
pub struct HeaderDeadline {
    inner: Stream,
    clock: Arc<Clock>,
    timer: Pin<Box<Sleep>>,
}

impl HeaderDeadline {
    fn new(inner: Stream, limit: Duration) -> HeaderDeadline {
        let deadline = Instant::now() + limit;
        HeaderDeadline {
            inner,
            clock: Arc::new(Clock {
                limit,
                phase: Mutex::new(Phase::Header(deadline)),
            }),
            timer: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

fn clock_of(session: &pingora::proxy::Session) -> Option<&Arc<Clock>> {
    let stream = session.downstream_session.stream()?;
    let any: &dyn std::any::Any = (**stream).as_any();
    any.downcast_ref::<HeaderDeadline>().map(|d| &d.clock)
}

/// The request's headers have been read: the header clock stops.
pub fn headers_read(session: &pingora::proxy::Session) {
    if let Some(c) = clock_of(session) {
        c.set(Phase::Served);
    }
}

/// The request is done: the next request's first byte starts the header clock again.
pub fn request_done(session: &pingora::proxy::Session) {
    if let Some(c) = clock_of(session) {
        c.set(Phase::Idle);
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "request headers not complete in time")
}

impl AsyncRead for HeaderDeadline {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        match this.clock.get() {
            Phase::Served => r,
            Phase::Idle => {
                if buf.filled().len() > before {
                    // The timer itself is moved only if a read of this request's headers
                    // has to wait (below): most requests arrive in one read and never touch
                    // tokio's timer wheel.
                    this.clock.set(Phase::Header(Instant::now() + this.clock.limit));
                }
                r
            }
            Phase::Header(deadline) => {
                if Instant::now() >= deadline {
                    return Poll::Ready(Err(timed_out()));
                }
                if r.is_ready() {
                    return r;
                }
                if this.timer.deadline() != deadline {
                    this.timer.as_mut().reset(deadline);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(timed_out())),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for HeaderDeadline {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for HeaderDeadline {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeaderDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeaderDeadline {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeaderDeadline {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeaderDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeaderDeadline {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for HeaderDeadline {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

/// A listening app whose HTTP/1 connections get a [`HeaderDeadline`].
#[derive(Debug)]
pub struct HeaderTimeout<A> {
    inner: Arc<A>,
    limit: Duration,
}

impl<A> HeaderTimeout<A> {
    pub fn new(inner: A, limit: Duration) -> HeaderTimeout<A> {
        HeaderTimeout {
            inner: Arc::new(inner),
            limit,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for HeaderTimeout<A> {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let already = (*stream).as_any().is::<HeaderDeadline>();
        // HTTP/2 multiplexes requests on one connection; its frames are not one header.
        let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        let stream: Stream = if already || h2 {
            stream
        } else {
            Box::new(HeaderDeadline::new(stream, self.limit))
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signin_start_paths() {
        assert!(is_signin_start("/.gatehouse/oidc/okta/start"));
        assert!(is_signin_start("/.gatehouse/saml/idp/start"));
        assert!(!is_signin_start("/.gatehouse/saml/idp/acs"));
        assert!(!is_signin_start("/.gatehouse/oidc//start"));
        assert!(!is_signin_start("/.gatehouse/oidc/a/b/start"));
        assert!(!is_signin_start("/.gatehouse/login"));
    }

    #[test]
    fn starts_are_counted_per_address_and_per_ipv6_64() {
        let l = StartLimiter::new(3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!((0..3).all(|_| l.allow(Some(a))));
        assert!(!l.allow(Some(a)), "the fourth start of one address is refused");
        assert!(l.allow(Some(b)), "another address keeps its share");
        assert!(l.allow(None));
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!((0..3).all(|i| l.allow(Some(v6(&format!("2001:db8:1:2::{i}"))))));
        assert!(!l.allow(Some(v6("2001:db8:1:2:ffff::1"))), "one /64 is one client");
        assert!(l.allow(Some(v6("2001:db8:1:3::1"))));
    }

    #[test]
    fn the_share_comes_back_after_the_window() {
        let l = StartLimiter::with_window(1, Duration::from_millis(50));
        let a: IpAddr = IpAddr::from([192, 0, 2, 9]);
        assert!(l.allow(Some(a)));
        assert!(!l.allow(Some(a)));
        std::thread::sleep(Duration::from_millis(80));
        assert!(l.allow(Some(a)));
    }
}
