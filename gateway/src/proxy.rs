//! The pingora `ProxyHttp` implementation. Each phase is a few lines calling the pure
//! functions of `route`, `forwarded`, `upstream` and `gatehouse_policy::evaluate`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use gatehouse_admin_ui::pages::ErrorText;
use gatehouse_config::{Access, App, Config};
use gatehouse_policy::{evaluate, AppPolicy, Decision, Deny, GroupName, UserName};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::authn::session::{Session as UserSession, Sessions};
use crate::forwarded::{forwarded, Forwarded, Incoming};
use crate::identity::{self, Keys};
use crate::metrics::Metrics;
use crate::respond;
use crate::route::{canonicalize, normalize_host, RouteMatch, Router};
use crate::upstream::{Pool, Transition};
use crate::web;

/// Everything the proxy phases read; built once at start.
pub struct State {
    pub config: Config,
    pub router: Router,
    pub policies: Vec<AppPolicy>,
    pub pools: Vec<Arc<Pool>>,
    pub web: axum::Router,
    pub metrics: Metrics,
    pub sessions: Arc<Sessions>,
    pub keys: Arc<Keys>,
    /// SAML providers (for metadata refresh in the background).
    pub saml: Vec<Arc<crate::authn::saml::SamlProvider>>,
    /// The session cookie and the CSRF cookie: never forwarded to apps.
    pub cookie_names: [String; 2],
    pub tls: bool,
    /// Requests being served; the shutdown drain waits for zero.
    pub in_flight: Arc<AtomicUsize>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("apps", &self.config.apps.len()).finish()
    }
}

/// The policy `evaluate` sees for a config-defined app.
pub fn app_policy(app: &App) -> AppPolicy {
    let access = match app.access {
        Access::Public => gatehouse_policy::Access::Public,
        Access::Authenticated => gatehouse_policy::Access::Authenticated,
        Access::Restricted => gatehouse_policy::Access::Restricted {
            groups: app.allow_groups.iter().map(|g| GroupName::new(g)).collect(),
            users: app.allow_users.iter().map(|u| UserName::new(u)).collect(),
        },
    };
    AppPolicy {
        slug: app.slug.clone(),
        access,
    }
}

impl State {
    /// Records a health transition of member `i` of app `app` in logs and metrics.
    pub fn health_changed(&self, app: usize, i: usize, t: Transition) {
        let slug = &self.config.apps[app].slug;
        let member = &self.pools[app].members[i];
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
        self.metrics
            .upstream_healthy
            .with_label_values(&[slug.as_str(), up.as_str()])
            .set(i64::from(member.is_healthy()));
    }
}

/// Per-request state.
#[derive(Debug)]
pub struct Ctx {
    start: Instant,
    app: Option<usize>,
    upstream_path: String,
    tried: Vec<usize>,
    upstream_sent: Option<Instant>,
    client: Option<IpAddr>,
    forwarded: Option<Forwarded>,
    session: Option<Arc<UserSession>>,
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
        respond::error(session, &self.0.config.branding, &e).await?;
        Ok(true)
    }
}

/// Characters escaped in the `rd` parameter of the login redirect.
const RD: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn header<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
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
            tried: Vec::new(),
            upstream_sent: None,
            client: None,
            forwarded: None,
            session: None,
            _in_flight: InFlight(self.0.in_flight.clone()),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let st = &self.0;
        let req = session.req_header();
        let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        let fwd = forwarded(
            peer,
            st.tls,
            &st.config.server.trusted_proxies,
            Incoming {
                x_forwarded_for: header(req, "x-forwarded-for"),
                x_forwarded_proto: header(req, "x-forwarded-proto"),
                x_forwarded_host: header(req, "x-forwarded-host"),
                host: header(req, "host"),
            },
        );
        ctx.client = fwd.client;
        ctx.forwarded = Some(fwd);
        let path = match canonicalize(req.uri.path()) {
            Ok(p) => p,
            Err(e) => {
                return self
                    .page(session, 400, "This address is not valid", &e.to_string())
                    .await
            }
        };
        let query = req.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        let cookie = identity::cookie(&req.headers, &st.cookie_names[0]).map(str::to_string);
        let host = header(req, "host")
            .or(req.uri.host())
            .map(normalize_host)
            .unwrap_or_default();
        if let Some(c) = &cookie {
            ctx.session = st.sessions.lookup(c).await;
        }
        let route = if web::is_reserved(&path) {
            None
        } else {
            st.router.resolve(&host, &path)
        };
        if web::is_reserved(&path) || (route.is_none() && path == "/") {
            let info = gatehouse_admin_ui::RequestInfo {
                client: ctx.client,
                viewer: ctx.session.as_ref().map(|s| gatehouse_admin_ui::Viewer {
                    identity: s.identity.clone(),
                    display_name: s.display_name.clone(),
                }),
                session_cookie: cookie,
            };
            web::serve(session, &st.web, &format!("{path}{query}"), info).await?;
            return Ok(true);
        }
        match route {
            None => {
                let msg = format!("No app is served at {path}. The App Portal lists the apps you can open.");
                self.page(session, 404, "There is no app here", &msg).await
            }
            Some(RouteMatch::AddSlash { location, .. }) => {
                respond::redirect(session, 308, &format!("{location}{query}")).await?;
                Ok(true)
            }
            Some(RouteMatch::App { app, upstream_path }) => {
                ctx.app = Some(app);
                let who = ctx.session.as_ref().map(|s| &s.identity);
                match evaluate(&st.policies[app], who) {
                    Decision::Allow(_) => {
                        ctx.upstream_path = format!("{upstream_path}{query}");
                        Ok(false)
                    }
                    Decision::Deny(Deny::NotSignedIn) => {
                        if respond::wants_html(&session.req_header().headers) {
                            let rd = percent_encoding::utf8_percent_encode(&format!("{path}{query}"), RD).to_string();
                            respond::redirect(session, 302, &format!("/.gatehouse/login?rd={rd}")).await?;
                            Ok(true)
                        } else {
                            let name = &st.config.apps[app].name;
                            let msg = format!("{name} needs you to sign in at /.gatehouse/login.");
                            self.page(session, 401, "Sign-in required", &msg).await
                        }
                    }
                    Decision::Deny(reason) => {
                        let name = &st.config.apps[app].name;
                        let user = who.map(|w| w.user.as_str()).unwrap_or("");
                        let msg = format!(
                            "Signed in as {user}: {reason}. Ask an administrator of this gateway if you need access."
                        );
                        self.page(session, 403, &format!("You cannot open {name}"), &msg).await
                    }
                }
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let app = ctx
            .app
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no app routed"))?;
        let pool = &self.0.pools[app];
        let Some(i) = pool.select(&ctx.tried) else {
            return Err(Error::explain(ErrorType::HTTPStatus(503), "no healthy upstream"));
        };
        ctx.tried.push(i);
        let m = &pool.members[i];
        let addr = m
            .addr()
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), "upstream not resolved"))?;
        let t = &self.0.config.apps[app].timeouts;
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
        if let (Some(app), Some(&i)) = (ctx.app, ctx.tried.last()) {
            let pool = &self.0.pools[app];
            let t = pool.record_failure(i);
            self.0.health_changed(app, i, t);
            // Nothing was sent yet, so any method may go to another upstream.
            e.set_retry(pool.has_alternative(&ctx.tried));
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let st = &self.0;
        let uri: http::Uri = ctx
            .upstream_path
            .parse()
            .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "upstream path", e))?;
        up.set_uri(uri);
        let [session_cookie, csrf_cookie] = &st.cookie_names;
        identity::scrub(up, &[session_cookie.as_str(), csrf_cookie.as_str()]);
        for h in [
            "forwarded",
            "x-real-ip",
            "x-forwarded-host",
            "x-forwarded-for",
            "x-forwarded-proto",
        ] {
            up.remove_header(h);
        }
        if let Some(f) = ctx.forwarded.take() {
            up.insert_header("x-forwarded-for", f.for_chain)?;
            up.insert_header("x-forwarded-proto", f.proto)?;
            if let Some(h) = f.host {
                up.insert_header("x-forwarded-host", h)?;
            }
            if let Some(c) = f.client {
                up.insert_header("x-real-ip", c.to_string())?;
            }
        }
        if let (Some(s), Some(app_idx)) = (&ctx.session, ctx.app) {
            let app = &st.config.apps[app_idx];
            let assertion = st
                .keys
                .assertion(app, app_idx, s)
                .map_err(|e| Error::because(ErrorType::InternalError, "assertion", e))?;
            for (name, value) in identity::identity_headers(app, s, &assertion) {
                // Values a directory supplies may not be valid header values; leave them out.
                if let Err(e) = up.insert_header(name, value) {
                    tracing::warn!(header = name, error = %e, "identity header not sent");
                }
            }
        }
        ctx.upstream_sent = Some(Instant::now());
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _res: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let (Some(app), Some(sent)) = (ctx.app, ctx.upstream_sent) {
            let slug = self.0.config.apps[app].slug.as_str();
            self.0
                .metrics
                .upstream_latency
                .with_label_values(&[slug])
                .observe(sent.elapsed().as_secs_f64());
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = match e.etype() {
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
            let name = ctx
                .app
                .map(|a| self.0.config.apps[a].name.as_str())
                .unwrap_or("This app");
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
            if let Err(err) = respond::error(session, &self.0.config.branding, &page).await {
                tracing::debug!(error = %err, "could not write the error page");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let st = &self.0;
        let status = session.response_written().map(|r| r.status.as_u16()).unwrap_or(0);
        let slug = ctx.app.map(|a| st.config.apps[a].slug.as_str()).unwrap_or("-");
        let mut buf = itoa::Buffer::new();
        st.metrics.requests.with_label_values(&[slug, buf.format(status)]).inc();
        let req = session.req_header();
        let upstream = ctx
            .app
            .zip(ctx.tried.last())
            .map(|(a, &i)| st.pools[a].members[i].upstream.address.as_str())
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
