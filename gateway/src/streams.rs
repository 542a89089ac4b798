//! Long-lived responses end with their access. A WebSocket (a `101` upgrade) or a
//! server-sent event stream (`content-type: text/event-stream`) was allowed once, at its
//! request; these live in [`Streams`] while they are open and are judged again — by the same
//! [`gatekeeper::decide`] against the current snapshot, with the session as the store has it
//! now — after every change the [`crate::server::Reloader`] applies and every
//! [`RECHECK_INTERVAL`] (the safety net, and how a session's timeouts are noticed). One that
//! lost access (session revoked, signed out or expired; app made restricted, grant removed or
//! expired; app moved or removed) is closed.
//!
//! Pingora has no per-connection hook that could end a quiet stream (its body filters run only
//! when bytes arrive), so a stream is ended through its sockets: the registration keeps the
//! downstream and upstream connections' descriptors with their kernel socket cookies
//! ([`Socket`], `SO_COOKIE`), and ending it shuts both sockets down (`shutdown(2)`, both
//! ways) — the client sees the connection close, pingora's own copy loop sees end-of-file on
//! both sides and finishes the request as if a peer had left, dropping both connections.
//! The descriptor is only touched while it still names the same socket (its cookie is unique
//! for the kernel's lifetime), so a connection that closed meanwhile and whose number was
//! reused is never affected. Nothing is added to an ordinary request but the upstream
//! descriptor kept in its context. A registration is removed when the request is logged (or
//! its context dropped, [`Registration`]), however the request ends.

use std::collections::HashMap;
use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pingora::protocols::l4::ext::get_socket_cookie;

use crate::authn::session::{Current, Key, Session};
use crate::gatekeeper::{self, Facts, Gatekeeper, Verdict};
use crate::snapshot::{AppRuntime, Snapshot};

/// How often every open stream is judged again even without a change: a session's idle and
/// absolute timeouts, and changes the feed did not announce, are noticed within this.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What kind of long-lived response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    WebSocket,
    EventStream,
}

impl Kind {
    /// The long-lived kind of an upstream response, if it is one: a `101` upgrade, or a
    /// `text/event-stream` body. One status compare and one header lookup per response.
    pub fn of(status: u16, headers: &http::HeaderMap) -> Option<Kind> {
        if status == 101 {
            return Some(Kind::WebSocket);
        }
        let ct = headers.get(http::header::CONTENT_TYPE)?.as_bytes();
        const SSE: &[u8] = b"text/event-stream";
        (ct.len() >= SSE.len() && ct[..SSE.len()].eq_ignore_ascii_case(SSE)).then_some(Kind::EventStream)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::WebSocket => "websocket",
            Kind::EventStream => "event-stream",
        }
    }
}

/// A stream's request, kept to judge it again: the facts the gatekeeper saw and what it
/// allowed.
#[derive(Debug)]
pub struct Watched {
    pub kind: Kind,
    /// The app it was routed to.
    pub app: Arc<AppRuntime>,
    /// The session it was allowed with (its identity is used while the store cannot be
    /// asked); `None`: anonymous, on a public app.
    pub session: Option<Arc<Session>>,
    pub path: String,
    pub query: Option<String>,
    pub host: Option<String>,
    pub repeated_host: bool,
    pub authority: Option<String>,
}

impl Watched {
    /// The request's facts as the gatekeeper takes them (no cookie: the session is given).
    fn facts(&self) -> Facts<'_> {
        Facts {
            path: &self.path,
            query: self.query.as_deref(),
            host: self.host.as_deref(),
            repeated_host: self.repeated_host,
            authority: self.authority.as_deref(),
            wants_html: false,
            session_cookie: None,
        }
    }
}

/// Why a stream was ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Revoked, signed out, expired, or its account removed or disabled.
    SessionEnded,
    /// The policy no longer allows this person (or anonymous people) on the app.
    AccessRemoved,
    /// The address no longer leads to the same app (removed, moved, or another app's now).
    AppGone,
}

impl Ended {
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::SessionEnded => "session ended",
            Ended::AccessRemoved => "access removed",
            Ended::AppGone => "app moved or removed",
        }
    }
}

/// Judges an open stream again: `Ok` to keep it. `now` is its session as the store has it
/// now (`None` for an anonymous stream). Pure; the same [`gatekeeper::decide`] as requests.
pub fn rejudge(snap: &Snapshot, w: &Watched, now: Option<Current>) -> Result<(), Ended> {
    let session = match now {
        None => None,
        Some(Current::Gone) => return Err(Ended::SessionEnded),
        Some(Current::Live(s)) => Some(s),
        // The store cannot be asked: judge by the identity the stream was allowed with.
        Some(Current::Unknown) => w.session.clone(),
    };
    match gatekeeper::decide(snap, &w.facts(), session) {
        Verdict::Serve { app, .. } if app.app.slug == w.app.app.slug => Ok(()),
        Verdict::Serve { .. } | Verdict::NotFound { .. } | Verdict::AddSlash { .. } | Verdict::Gateway { .. } => {
            Err(Ended::AppGone)
        }
        Verdict::BadRequest { .. } => Err(Ended::AppGone),
        Verdict::SignIn { .. } | Verdict::Unauthorized { .. } | Verdict::Forbidden { .. } => Err(Ended::AccessRemoved),
    }
}

/// One connection of a stream as the kernel knows it: its descriptor and the socket's cookie
/// (`SO_COOKIE`, never reused while the kernel runs), so that a descriptor that was closed and
/// handed to another connection is never shut down by mistake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Socket {
    fd: RawFd,
    cookie: u64,
}

impl Socket {
    /// The socket behind `fd` now; `None` when it has no cookie (not a socket, or a kernel
    /// without `SO_COOKIE`: then the stream cannot be ended early, and the caller says so).
    pub fn of(fd: RawFd) -> Option<Socket> {
        let cookie = get_socket_cookie(fd).ok().filter(|c| *c != 0)?;
        Some(Socket { fd, cookie })
    }

    /// Shuts the connection down both ways if `fd` still is this socket; whether it did.
    fn shut(&self) -> bool {
        if get_socket_cookie(self.fd).ok() != Some(self.cookie) {
            return false;
        }
        nix::sys::socket::shutdown(self.fd, nix::sys::socket::Shutdown::Both).is_ok()
    }
}

struct Entry {
    watched: Arc<Watched>,
    sockets: Vec<Socket>,
    ended: bool,
}

/// The open long-lived streams of this process.
#[derive(Default)]
pub struct Streams {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Entry>>,
    changed: tokio::sync::Notify,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams").field("open", &self.len()).finish()
    }
}

/// Keeps a stream registered; dropping it (the request is logged or its context dropped,
/// however the request ended) removes the stream.
#[derive(Debug)]
pub struct Registration {
    streams: Arc<Streams>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.streams.lock().remove(&self.id);
    }
}

impl Streams {
    pub fn new() -> Streams {
        Streams::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Streams open now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers a stream with the connections that carry it (the client's first). With no
    /// socket to shut down nothing could end it early: not registered (logged).
    pub fn register(self: &Arc<Self>, watched: Watched, sockets: Vec<Socket>) -> Option<Registration> {
        if sockets.is_empty() {
            tracing::warn!(app = %watched.app.app.slug, "a stream whose connection is unknown cannot be ended early");
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            id,
            Entry {
                watched: Arc::new(watched),
                sockets,
                ended: false,
            },
        );
        Some(Registration {
            streams: self.clone(),
            id,
        })
    }

    /// Something that may change access happened (the reloader applied a change): judge
    /// the open streams now rather than at the next tick.
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    /// Runs until dropped: judges every open stream again after each [`Streams::changed`]
    /// and every [`RECHECK_INTERVAL`], and ends those that lost access.
    pub async fn watch(&self, gatekeeper: &Gatekeeper) {
        let mut tick = tokio::time::interval(RECHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.changed.notified() => {}
            }
            self.rejudge_all(gatekeeper).await;
        }
    }

    /// Ends stream `id` now: shuts its sockets down (those still open). Whether it was open.
    fn end(&self, id: u64) -> bool {
        let mut open = self.lock();
        let Some(e) = open.get_mut(&id) else { return false };
        e.ended = true;
        // Under the lock: a request that finishes removes its entry under it too, so its
        // descriptors are still its own here (and the cookie check covers the rest).
        e.sockets.iter().filter(|s| s.shut()).count() > 0
    }

    /// Judges every open stream once; returns how many were ended.
    pub async fn rejudge_all(&self, gatekeeper: &Gatekeeper) -> usize {
        let open: Vec<(u64, Arc<Watched>)> = self
            .lock()
            .iter()
            .filter(|(_, e)| !e.ended)
            .map(|(id, e)| (*id, e.watched.clone()))
            .collect();
        if open.is_empty() {
            return 0;
        }
        let snap = gatekeeper.live.load();
        // One session read per session, however many streams it has open.
        let mut sessions: HashMap<Key, Current> = HashMap::new();
        let mut ended = 0;
        for (id, w) in &open {
            let now = match &w.session {
                None => None,
                Some(s) => Some(match sessions.get(&s.key) {
                    Some(c) => c.clone(),
                    None => {
                        let c = gatekeeper.sessions.current(&s.id_hash()).await;
                        sessions.insert(s.key, c.clone());
                        c
                    }
                }),
            };
            if let Err(why) = rejudge(&snap, w, now) {
                self.end(*id);
                ended += 1;
                tracing::info!(
                    app = %w.app.app.slug,
                    user = %w.session.as_ref().map(|s| s.identity.user.as_str()).unwrap_or("-"),
                    kind = w.kind.as_str(),
                    reason = why.as_str(),
                    "long-lived stream closed: access ended"
                );
            }
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use gatehouse_config::{Config, ProcessEnv};
    use gatehouse_policy::{GroupName, Identity, UserName};

    use super::*;

    const CONFIG: &str = r#"
[[apps]]
slug = "pub"
upstreams = ["127.0.0.1:9"]
access = "public"

[[apps]]
slug = "fin"
upstreams = ["127.0.0.1:9"]
allow_groups = ["finance"]
"#;

    fn snap(config: &str) -> Snapshot {
        let config = Config::from_toml(config, Path::new("."), &ProcessEnv).expect("valid");
        Snapshot::compile(Arc::new(config), &[], None)
    }

    fn session(user: &str, groups: &[&str]) -> Arc<Session> {
        Arc::new(Session::detached(Identity {
            user: UserName::new(user),
            groups: groups.iter().map(|g| GroupName::new(g)).collect(),
            admin: false,
        }))
    }

    fn watched(s: &Snapshot, slug: &str, session: Option<Arc<Session>>) -> Watched {
        let app = s
            .apps
            .iter()
            .find(|a| a.app.slug.as_str() == slug)
            .expect("app")
            .clone();
        Watched {
            kind: Kind::WebSocket,
            app,
            session,
            path: format!("/apps/{slug}/ws"),
            query: None,
            host: Some("gw".into()),
            repeated_host: false,
            authority: None,
        }
    }

    #[test]
    fn kinds() {
        let mut h = http::HeaderMap::new();
        assert_eq!(Kind::of(101, &h), Some(Kind::WebSocket));
        assert_eq!(Kind::of(200, &h), None);
        h.insert("content-type", "Text/Event-Stream; charset=utf-8".parse().unwrap());
        assert_eq!(Kind::of(200, &h), Some(Kind::EventStream));
        h.insert("content-type", "text/event".parse().unwrap());
        assert_eq!(Kind::of(200, &h), None);
        h.insert("content-type", "text/html".parse().unwrap());
        assert_eq!(Kind::of(200, &h), None);
    }

    #[test]
    fn streams_are_judged_like_requests() {
        let s = snap(CONFIG);
        let carol = session("carol", &["finance"]);
        let w = watched(&s, "fin", Some(carol.clone()));
        assert_eq!(rejudge(&s, &w, Some(Current::Live(carol.clone()))), Ok(()));
        // Revoked, signed out or expired.
        assert_eq!(rejudge(&s, &w, Some(Current::Gone)), Err(Ended::SessionEnded));
        // Out of the group now.
        let moved = session("carol", &["sales"]);
        assert_eq!(rejudge(&s, &w, Some(Current::Live(moved))), Err(Ended::AccessRemoved));
        // The store cannot be asked: judged by the identity the stream was allowed with.
        assert_eq!(rejudge(&s, &w, Some(Current::Unknown)), Ok(()));
        // The app is restricted to another group now, or gone.
        let other = snap(&CONFIG.replace("allow_groups = [\"finance\"]", "allow_groups = [\"audit\"]"));
        assert_eq!(rejudge(&other, &w, Some(Current::Unknown)), Err(Ended::AccessRemoved));
        let gone = snap(&CONFIG.replace("slug = \"fin\"", "slug = \"finance\""));
        assert_eq!(rejudge(&gone, &w, Some(Current::Live(carol))), Err(Ended::AppGone));

        // Anonymous on a public app: kept until the app stops being public.
        let anon = watched(&s, "pub", None);
        assert_eq!(rejudge(&s, &anon, None), Ok(()));
        let closed = snap(&CONFIG.replace("access = \"public\"", "access = \"authenticated\""));
        assert_eq!(rejudge(&closed, &anon, None), Err(Ended::AccessRemoved));
        // Signed in on a public app: the session ending ends the stream (the app was told
        // who was calling).
        let signed = watched(&s, "pub", Some(session("dave", &[])));
        assert_eq!(rejudge(&s, &signed, Some(Current::Gone)), Err(Ended::SessionEnded));
    }

    /// A connected pair over loopback: (the server's side, the client's side).
    async fn pair(l: &tokio::net::TcpListener) -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let c = tokio::net::TcpStream::connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (s, _) = l.accept().await.expect("accept");
        (s, c)
    }

    async fn listener() -> tokio::net::TcpListener {
        tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind")
    }

    #[tokio::test]
    async fn ending_a_stream_closes_its_connections_and_leaves_with_the_request() {
        use std::os::unix::io::AsRawFd;
        use tokio::io::AsyncReadExt;

        let streams = Arc::new(Streams::new());
        let s = snap(CONFIG);
        // Nothing to shut down: not registered.
        assert!(streams.register(watched(&s, "pub", None), Vec::new()).is_none());
        assert!(streams.is_empty());

        let l = listener().await;
        let (down, mut client) = pair(&l).await;
        let (up, mut app) = pair(&l).await;
        let sockets = [&down, &up]
            .iter()
            .map(|t| Socket::of(t.as_raw_fd()).expect("a socket"))
            .collect();
        let reg = streams.register(watched(&s, "pub", None), sockets).expect("registered");
        assert_eq!(streams.len(), 1);
        let id = *streams.lock().keys().next().expect("entry");
        assert!(streams.end(id), "its sockets were shut down");
        // Both peers see the connection end.
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).await.expect("eof"), 0, "the client's side closed");
        assert_eq!(app.read(&mut buf).await.expect("eof"), 0, "the app's side closed");
        drop(reg);
        assert!(streams.is_empty(), "the registration left with the request");
        assert!(!streams.end(id), "an ended request is not ended again");
    }

    #[tokio::test]
    async fn a_reused_descriptor_is_never_shut_down() {
        use std::os::unix::io::AsRawFd;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let l = listener().await;
        let (old, _peer) = pair(&l).await;
        let fd = old.as_raw_fd();
        let recorded = Socket::of(fd).expect("a socket");
        drop(old);
        // Open connections until one gets the same descriptor number.
        let mut held = Vec::new();
        let reused = loop {
            let (srv, cli) = pair(&l).await;
            if srv.as_raw_fd() == fd || cli.as_raw_fd() == fd {
                break (srv, cli);
            }
            held.push((srv, cli));
            assert!(held.len() < 64, "descriptor {fd} never reused");
        };
        assert!(!recorded.shut(), "another socket now has that number");
        let (mut srv, mut cli) = reused;
        cli.write_all(b"x").await.expect("still open");
        let mut buf = [0u8; 1];
        srv.read_exact(&mut buf).await.expect("still open");
        assert_eq!(&buf, b"x");
    }
}
