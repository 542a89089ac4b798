//! The pingora `ProxyHttp` implementation. Each phase is a few lines calling the pure
//! functions of `route`, `forwarded`, `upstream` and `gatehouse_policy::evaluate`; a
//! served page load is counted as a visit (`usage::Recorder`, in memory).

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use gatehouse_admin_ui::pages::ErrorText;
use gatehouse_store::Store;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::authn::session::{Session as UserSession, Sessions};
use crate::forward_auth::{self, Convention};
use crate::forwarded::{forwarded, is_trusted, Forwarded, Incoming};
use crate::gatekeeper::{Facts, Gatekeeper, Verdict};
use crate::identity::{self, names, KeyRing};
use crate::metrics::Metrics;
use crate::respond;
use crate::route::canonicalize;
use crate::snapshot::{AppRuntime, Live};
use crate::streams::{Kind, Registration, Socket, Streams, Watched};
use crate::upstream::{Pool, Transition};
use crate::web;

/// Everything the proxy phases read. What can change at runtime (apps, policies, pools,
/// the config file's reloadable settings, signing keys) sits behind `live` and `keys`.
pub struct State {
    pub live: Arc<Live>,
    pub gatekeeper: Gatekeeper,
    pub web: axum::Router,
    pub metrics: Metrics,
    pub sessions: Arc<Sessions>,
    pub keys: Arc<KeyRing>,
    pub store: Arc<Store>,
    /// SAML providers (for metadata refresh in the background).
    pub saml: Vec<Arc<crate::authn::saml::SamlProvider>>,
    /// The session cookie's name.
    pub session_cookie: String,
    /// Every cookie the gateway sets: never forwarded to apps, never set by apps.
    pub gateway_cookies: Vec<String>,
    /// The branding in force (the pages' too): the admin UI's, else the config file's.
    pub branding: Arc<gatehouse_admin_ui::BrandingCell>,
    pub tls: bool,
    /// Requests being served; the shutdown drain waits for zero.
    pub in_flight: Arc<AtomicUsize>,
    /// Visits per app, counted in memory (`usage::Flusher` writes them to the store).
    pub usage: Arc<crate::usage::Recorder>,
    /// Set once this process hands its listeners to a successor or starts shutting down:
    /// every response then says `Connection: close`, so that keep-alive clients move to
    /// a fresh connection (served by the successor) instead of being cut while idle.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Single sign-on starts per client address (`server.limits.signin_starts_per_client`).
    pub signin_starts: crate::limits::StartLimiter,
    /// Open WebSocket and event streams, judged again while they last (`streams`).
    pub streams: Arc<Streams>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("apps", &self.live.peek().apps.len())
            .finish()
    }
}

/// Records a health transition of member `i` of `pool` (serving app `slug`) in logs and metrics.
pub fn health_changed(metrics: &Metrics, slug: &str, pool: &Pool, i: usize, t: Transition) {
    let member = &pool.members[i];
    let up = &member.upstream.address;
    match t {
        Transition::Unchanged => return,
        Transition::WentDown => {
            tracing::warn!(app = %slug, upstream = %up, "upstream marked unhealthy")
        }
        Transition::CameUp => {
            tracing::info!(app = %slug, upstream = %up, "upstream healthy again")
        }
    }
    metrics
        .upstream_healthy
        .with_label_values(&[slug, up.as_str()])
        .set(i64::from(member.is_healthy()));
}

/// Per-request state.
#[derive(Debug)]
pub struct Ctx {
    start: Instant,
    /// The app this request was routed to, held for the request's whole life.
    app: Option<Arc<AppRuntime>>,
    upstream_path: String,
    /// Members that refused a connection for this request (not tried again).
    unreachable: Vec<usize>,
    /// The member of the current attempt.
    member: Option<usize>,
    upstream_sent: Option<Instant>,
    client: Option<IpAddr>,
    /// Computed once in `request_filter`; set again on every upstream attempt (retries).
    forwarded: Option<Forwarded>,
    session: Option<Arc<UserSession>>,
    /// A WebSocket or event stream: registered to be judged again while open.
    stream: Option<Registration>,
    /// The descriptor of the current attempt's upstream connection (`connected_to_upstream`),
    /// kept so that a stream can be ended on both sides.
    upstream_fd: Option<std::os::unix::io::RawFd>,
    _in_flight: InFlight,
}

/// Counts a request as in flight for as long as its context lives.
#[derive(Debug)]
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The gateway service.
#[derive(Debug, Clone)]
pub struct Gateway(pub Arc<State>);

impl Gateway {
    async fn page(&self, session: &mut Session, status: u16, title: &str, message: &str) -> Result<bool> {
        let e = ErrorText {
            status,
            title,
            message,
            action: Some(("Go to the App Portal", "/")),
        };
        respond::error(session, &self.0.branding.get(), &e).await?;
        Ok(true)
    }

    /// Writes the response a verdict calls for; `Ok(false)`: proxy the request.
    async fn render(&self, session: &mut Session, ctx: &mut Ctx, verdict: Verdict) -> Result<bool> {
        match verdict {
            Verdict::Serve {
                app,
                upstream_path,
                session: who,
                ..
            } => {
                let req = session.req_header();
                if self.0.usage.enabled() && crate::usage::is_visit(&req.method, &req.headers) {
                    let person = who.as_ref().map_or("", |s| s.identity.user.as_str());
                    self.0.usage.record(&app.app.slug, person, crate::authn::session::now());
                }
                ctx.app = Some(app);
                ctx.upstream_path = upstream_path;
                ctx.session = who;
                Ok(false)
            }
            Verdict::Gateway {
                path_and_query,
                session: who,
            } => {
                let path = path_and_query.split('?').next().unwrap_or("");
                if crate::limits::is_signin_start(path) && !self.0.signin_starts.allow(ctx.client) {
                    let msg = "Too many sign-ins were started from your network address in the last 10 minutes. Wait a few minutes, then try again.";
                    return self.page(session, 429, "Too many sign-in attempts", msg).await;
                }
                let info = gatehouse_admin_ui::RequestInfo {
                    client: ctx.client,
                    viewer: who.as_ref().map(|s| gatehouse_admin_ui::Viewer {
                        identity: s.identity.clone(),
                        display_name: s.display_name.as_deref().map(str::to_string),
                        token: None,
                    }),
                    session_cookie: identity::cookie(&session.req_header().headers, &self.0.session_cookie)
                        .map(str::to_string),
                    session_id_hash: who.as_ref().map(|s| s.id_hash().to_string()),
                };
                ctx.session = who;
                web::serve(session, &self.0.web, &path_and_query, info, &self.0.branding.get()).await?;
                Ok(true)
            }
            Verdict::SignIn { app, location } => {
                ctx.app = Some(app);
                respond::redirect(session, 302, &location).await?;
                Ok(true)
            }
            Verdict::Unauthorized { app } => {
                let msg = format!("{} needs you to sign in at /.gatehouse/login.", app.app.name);
                ctx.app = Some(app);
                self.page(session, 401, "Sign-in required", &msg).await
            }
            Verdict::Forbidden {
                app,
                session: who,
                reason,
            } => {
                let title = format!("You cannot open {}", app.app.name);
                let requestable = app.source == crate::snapshot::AppSource::Store && !who.is_detached();
                let msg = if requestable {
                    format!("Signed in as {}: {reason}.", who.identity.user)
                } else {
                    format!(
                        "Signed in as {}: {reason}. Ask an administrator of this gateway if you need access.",
                        who.identity.user
                    )
                };
                let page = ErrorText {
                    status: 403,
                    title: &title,
                    message: &msg,
                    action: Some(("Go to the App Portal", "/")),
                };
                if requestable && respond::wants_html(&session.req_header().headers) {
                    // Apps defined in the store can be asked for: the page offers the form
                    // and says where an earlier request stands.
                    let earlier = self
                        .0
                        .store
                        .access_request(&app.app.slug, &who.identity.user)
                        .await
                        .ok()
                        .flatten();
                    let key = self.0.keys.current().csrf_key();
                    let token = gatehouse_admin_ui::csrf::bound_token(&key, &who.id_hash(), "request");
                    let decided_by = earlier.as_ref().and_then(|r| r.decided_by.clone());
                    let status = earlier
                        .as_ref()
                        .filter(|r| r.status != gatehouse_store::RequestStatus::Approved)
                        .map(|r| (r.status.as_str(), decided_by.as_deref()));
                    let boxed = gatehouse_admin_ui::pages::RequestBox {
                        app: &app.app.slug,
                        token: &token,
                        status,
                    };
                    let html = gatehouse_admin_ui::pages::forbidden_page(&self.0.branding.get(), &page, Some(&boxed));
                    respond::send(session, 403, "text/html; charset=utf-8", &[], bytes::Bytes::from(html)).await?;
                } else {
                    respond::error(session, &self.0.branding.get(), &page).await?;
                }
                ctx.app = Some(app);
                ctx.session = Some(who);
                Ok(true)
            }
            Verdict::AddSlash { location } => {
                respond::redirect(session, 308, &location).await?;
                Ok(true)
            }
            Verdict::NotFound { path } => {
                let msg = format!("No app is served at {path}. The App Portal lists the apps you can open.");
                self.page(session, 404, "There is no app here", &msg).await
            }
            Verdict::BadRequest { reason } => self.page(session, 400, "This address is not valid", &reason).await,
        }
    }
}

impl Gateway {
    /// `/.gatehouse/auth` (see `forward_auth`): the original request a trusted proxy
    /// describes is judged by the gatekeeper, and the answer written without proxying.
    async fn forward_auth(&self, session: &mut Session, ctx: &mut Ctx, trusted: bool) -> Result<bool> {
        let st = &self.0;
        let req = session.req_header();
        let described = if trusted {
            forward_auth::original(&req.headers)
        } else {
            Ok(None)
        };
        let own = own_facts(req, &st.session_cookie);
        let browser = own.wants_html;
        let answer = match &described {
            Err((convention, reason)) => forward_auth::answer(
                Verdict::BadRequest { reason: reason.clone() },
                *convention,
                browser,
                None,
            ),
            Ok(original) => {
                let convention = original.as_ref().map_or(Convention::Itself, |o| o.convention);
                let facts = forward_auth::facts(own, original.as_ref());
                let verdict = st.gatekeeper.judge(&facts).await;
                let origin = original.as_ref().and_then(|o| o.origin.as_deref());
                let browser = browser && original.as_ref().is_none_or(|o| o.can_redirect());
                forward_auth::answer(verdict, convention, browser, origin)
            }
        };
        let mut extra: Vec<(&str, String)> = answer.headers.clone();
        let prepared = match &answer.pass {
            Some((app, Some(who))) => Some(
                st.keys
                    .prepared(&app.app, app.id, who)
                    .map_err(|e| Error::because(ErrorType::InternalError, "assertion", e))?,
            ),
            _ => None,
        };
        for (name, value) in prepared.iter().flat_map(|p| p.headers.iter()) {
            extra.push((name.as_str(), String::from_utf8_lossy(value.as_bytes()).into_owned()));
        }
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        respond::send(
            session,
            answer.status,
            "text/plain; charset=utf-8",
            &extra,
            bytes::Bytes::from(answer.body),
        )
        .await?;
        ctx.app = answer.app;
        ctx.session = answer.pass.and_then(|(_, who)| who);
        Ok(true)
    }
}

impl Gateway {
    /// Registers a long-lived response (WebSocket, event stream) to be closed when its
    /// access ends (`streams`); the registration lives in the request's context.
    fn watch_stream(&self, session: &Session, ctx: &mut Ctx, kind: Kind) {
        let Some(app) = &ctx.app else { return };
        if ctx.stream.is_some() {
            return;
        }
        // The client's connection first, then the app's.
        let sockets = session
            .as_downstream()
            .stream()
            .map(|s| s.id())
            .into_iter()
            .chain(ctx.upstream_fd)
            .filter_map(Socket::of)
            .collect();
        let req = session.req_header();
        let facts = own_facts(req, &self.0.session_cookie);
        ctx.stream = self.0.streams.register(
            Watched {
                kind,
                app: app.clone(),
                session: ctx.session.clone(),
                path: facts.path.to_string(),
                query: facts.query.map(str::to_string),
                host: facts.host.map(str::to_string),
                repeated_host: facts.repeated_host,
                authority: facts.authority.map(str::to_string),
            },
            sockets,
        );
    }
}

/// The facts of a request as it was sent.
fn own_facts<'a>(req: &'a RequestHeader, session_cookie: &str) -> Facts<'a> {
    Facts {
        path: req.uri.path(),
        query: req.uri.query(),
        host: header(req, &http::header::HOST),
        repeated_host: req.headers.get_all(http::header::HOST).iter().nth(1).is_some(),
        authority: req.uri.authority().map(|a| a.as_str()),
        wants_html: respond::wants_html(&req.headers),
        session_cookie: identity::cookie(&req.headers, session_cookie),
    }
}

fn header<'a>(req: &'a RequestHeader, name: &http::HeaderName) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        self.0.in_flight.fetch_add(1, Ordering::SeqCst);
        Ctx {
            start: Instant::now(),
            app: None,
            upstream_path: String::new(),
            unreachable: Vec::new(),
            member: None,
            upstream_sent: None,
            client: None,
            forwarded: None,
            session: None,
            stream: None,
            upstream_fd: None,
            _in_flight: InFlight(self.0.in_flight.clone()),
        }
    }

    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut Ctx) -> Result<()> {
        crate::limits::headers_read(session);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let st = &self.0;
        if st.draining.load(std::sync::atomic::Ordering::Relaxed) {
            session.set_keepalive(None);
        }
        if crate::limits::header_bytes(session.req_header()) > crate::limits::MAX_HEADER_BYTES {
            session.set_keepalive(None);
            let msg = format!(
                "The request's headers are larger than the gateway accepts ({} KiB). Clearing this site's cookies usually helps.",
                crate::limits::MAX_HEADER_BYTES / 1024
            );
            return self.page(session, 431, "Request headers too large", &msg).await;
        }
        let req = session.req_header();
        let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        let fwd = forwarded(
            peer,
            st.tls,
            &st.live.peek().config.server.trusted_proxies,
            Incoming {
                x_forwarded_for: header(req, &names::X_FORWARDED_FOR),
                x_forwarded_proto: header(req, &names::X_FORWARDED_PROTO),
                x_forwarded_host: header(req, &names::X_FORWARDED_HOST),
                host: header(req, &http::header::HOST),
            },
        );
        ctx.client = fwd.client;
        ctx.forwarded = Some(fwd);
        let facts = own_facts(req, &st.session_cookie);
        // Only a path that names `auth` or holds an escape can be the forward-auth endpoint:
        // other requests skip a second canonicalisation.
        let maybe_auth = facts.path.contains("auth") || facts.path.contains('%');
        if maybe_auth && canonicalize(facts.path).is_ok_and(|p| p == forward_auth::PATH) {
            let trusted = is_trusted(peer, &st.live.peek().config.server.trusted_proxies);
            return self.forward_auth(session, ctx, trusted).await;
        }
        let verdict = st.gatekeeper.judge(&facts).await;
        self.render(session, ctx, verdict).await
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let app = ctx
            .app
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no app routed"))?;
        let pool = &app.pool;
        // A retry after a reused connection failed may go to the same member (a new
        // connection); one that refused to connect is skipped.
        let Some(i) = pool.select(&ctx.unreachable) else {
            return Err(Error::explain(ErrorType::HTTPStatus(503), "no healthy upstream"));
        };
        ctx.member = Some(i);
        let m = &pool.members[i];
        let addr = m
            .addr()
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), "upstream not resolved"))?;
        let t = &app.app.timeouts;
        let mut peer = HttpPeer::new(addr, m.upstream.tls, m.upstream.host.clone());
        peer.options.connection_timeout = Some(t.connect);
        peer.options.total_connection_timeout = Some(t.connect);
        peer.options.read_timeout = Some(t.read);
        peer.options.write_timeout = Some(t.write);
        peer.options.idle_timeout = Some(t.idle);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let (Some(app), Some(i)) = (&ctx.app, ctx.member) {
            ctx.unreachable.push(i);
            let pool = &app.pool;
            let t = pool.record_failure(i);
            health_changed(&self.0.metrics, &app.app.slug, pool, i, t);
            // Nothing was sent yet, so any method may go to another upstream.
            e.set_retry(pool.has_alternative(&ctx.unreachable));
        }
        e
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.upstream_fd = Some(fd);
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let st = &self.0;
        // Most apps are sent the target as the client wrote it (origin-form, canonical, no
        // prefix stripped): then the request line's bytes stay, without parsing a new URI.
        // Any other target (absolute-form, escapes decoded, prefix stripped) is replaced.
        if up.raw_path() != ctx.upstream_path.as_bytes() {
            let uri: http::Uri = ctx
                .upstream_path
                .parse()
                .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "upstream path", e))?;
            up.set_uri(uri);
        }
        // Identity headers and the client's own forwarding headers (set below).
        identity::scrub(up, &st.gateway_cookies);
        let prepared = match (&ctx.session, &ctx.app) {
            (Some(s), Some(app)) => Some(
                st.keys
                    .prepared(&app.app, app.id, s)
                    .map_err(|e| Error::because(ErrorType::InternalError, "assertion", e))?,
            ),
            _ => None,
        };
        // The forwarding headers and the identity headers: the maps grow once for all.
        up.reserve_headers(4 + prepared.as_ref().map_or(0, |p| p.headers.len()));
        // Not taken: pingora runs this phase again for every retry on another upstream.
        if let Some(f) = &ctx.forwarded {
            let value = |v: String| {
                http::HeaderValue::try_from(v)
                    .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "forwarding header", e))
            };
            up.insert_header_ready(&names::X_FORWARDED_FOR, value(f.for_chain.clone())?);
            up.insert_header_ready(&names::X_FORWARDED_PROTO, http::HeaderValue::from_static(f.proto));
            if let Some(h) = &f.host {
                up.insert_header_ready(&names::X_FORWARDED_HOST, value(h.clone())?);
            }
            if let Some(c) = f.client {
                up.insert_header_ready(&names::X_REAL_IP, value(crate::forwarded::ip_text(c))?);
            }
        }
        if let Some(prepared) = prepared {
            for (name, value) in &prepared.headers {
                up.insert_header_ready(name, value.clone());
            }
            if let Some(token) = &prepared.dash_cookie {
                identity::add_cookie(up, identity::DASH_TOKEN_COOKIE, token)
                    .map_err(|e| Error::because(ErrorType::InternalError, "Dash token", e))?;
            }
        }
        ctx.upstream_sent = Some(Instant::now());
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        res: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(kind) = Kind::of(res.status.as_u16(), &res.headers) {
            self.watch_stream(session, ctx, kind);
        }
        // An app must not set (or clear) the gateway's own cookies.
        if identity::sets_gateway_cookie(&res.headers, &self.0.gateway_cookies) {
            let kept = identity::without_gateway_cookies(&res.headers, &self.0.gateway_cookies);
            res.remove_header(&http::header::SET_COOKIE);
            for v in kept {
                res.append_header(http::header::SET_COOKIE, v)?;
            }
            if let Some(app) = &ctx.app {
                tracing::warn!(app = %app.app.slug, "dropped an app's Set-Cookie for a gateway cookie");
            }
        }
        if let (Some(app), Some(sent)) = (&ctx.app, ctx.upstream_sent) {
            app.metrics(&self.0.metrics)
                .upstream_latency
                .observe(sent.elapsed().as_secs_f64());
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        // Every member was marked down and the ones tried anyway (panic routing) refused:
        // the app is unavailable (503), not merely unreachable this once (502).
        let none_up = !ctx.unreachable.is_empty() && ctx.app.as_ref().is_some_and(|a| a.pool.all_down());
        let code = match e.etype() {
            _ if none_up && e.esource() == &ErrorSource::Upstream => 503,
            ErrorType::ConnectTimedout if none_up => 503,
            ErrorType::HTTPStatus(c) => *c,
            ErrorType::ReadTimedout | ErrorType::WriteTimedout if e.esource() == &ErrorSource::Upstream => 504,
            ErrorType::ConnectTimedout => 502,
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code > 0 && session.response_written().is_none() {
            let name = ctx.app.as_ref().map(|a| a.app.name.as_str()).unwrap_or("This app");
            let (title, msg) = match code {
                503 => ("The app is unavailable", format!("{name} has no healthy server right now. Try again in a minute; if it persists, tell the app's owner.")),
                504 => ("The app took too long", format!("{name} did not answer in time. Try again; if it persists, tell the app's owner.")),
                502 => ("The app could not be reached", format!("Gatehouse could not get an answer from {name}. Try again in a minute; if it persists, tell the app's owner.")),
                400 => ("Bad request", "The request could not be read.".to_string()),
                _ => ("Something went wrong", "Gatehouse could not complete this request. Try again.".to_string()),
            };
            let page = ErrorText {
                status: code,
                title,
                message: &msg,
                action: Some(("Go to the App Portal", "/")),
            };
            if let Err(err) = respond::error(session, &self.0.branding.get(), &page).await {
                tracing::debug!(error = %err, "could not write the error page");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        // A stream is over: forget its sockets before pingora lets go of them.
        ctx.stream = None;
        crate::limits::request_done(session);
        let st = &self.0;
        let status = session.response_written().map(|r| r.status.as_u16()).unwrap_or(0);
        let slug = ctx.app.as_ref().map(|a| a.app.slug.as_str()).unwrap_or("-");
        match &ctx.app {
            Some(app) if status == 200 => app.metrics(&st.metrics).ok.inc(),
            _ => {
                let mut buf = itoa::Buffer::new();
                st.metrics.requests.with_label_values(&[slug, buf.format(status)]).inc();
            }
        }
        let req = session.req_header();
        let upstream = ctx
            .app
            .as_ref()
            .zip(ctx.member)
            .map(|(a, i)| a.pool.members[i].upstream.address.as_str())
            .unwrap_or("-");
        tracing::info!(
            target: "gatehouse::access",
            method = %req.method,
            path = %req.uri.path(),
            app = slug,
            status,
            duration_ms = ctx.start.elapsed().as_secs_f64() * 1000.0,
            client = %ctx.client.map(|c| c.to_string()).unwrap_or_default(),
            upstream,
            error = %e.map(|e| e.etype().as_str()).unwrap_or(""),
        );
    }
}
