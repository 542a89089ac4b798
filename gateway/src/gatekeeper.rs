//! The one place a request is judged: canonical path → the gateway's own pages → route →
//! session → `gatehouse_policy::evaluate`, turned into a [`Verdict`]. The proxy only
//! renders verdicts; the forward-auth endpoint calls the same [`Gatekeeper::judge`].
//!
//! [`decide`] is pure (a snapshot, the request's facts and the session already looked up)
//! and unit-tested here without pingora; [`Gatekeeper::judge`] adds the session lookup.

use std::sync::Arc;

use gatehouse_policy::{evaluate, Allow, Decision, Deny};

use crate::authn::session::{Session, Sessions};
use crate::route::{canonicalize, request_host, RouteMatch};
use crate::snapshot::{AppRuntime, Live, Snapshot};
use crate::web;

/// What the gatekeeper needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The request target's path, as sent.
    pub path: &'a str,
    /// The query string without `?`, if any.
    pub query: Option<&'a str>,
    /// The `Host` header (`None`: absent or not text).
    pub host: Option<&'a str>,
    /// More than one `Host` header was sent.
    pub repeated_host: bool,
    /// The authority of an absolute-form request target (`GET http://host/path`).
    pub authority: Option<&'a str>,
    /// The client wants HTML (a browser): send it to the sign-in page rather than a 401.
    pub wants_html: bool,
    /// The gateway session cookie's value, if sent.
    pub session_cookie: Option<&'a str>,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Verdict {
    /// Proxy to `app`, sending `upstream_path` (canonical, prefix stripped if the app says
    /// so, with the query) and, when signed in, the identity of `session`.
    Serve {
        app: Arc<AppRuntime>,
        upstream_path: String,
        session: Option<Arc<Session>>,
        allow: Allow,
    },
    /// One of the gateway's own pages (portal, sign-in, callbacks, JWKS …).
    Gateway {
        path_and_query: String,
        session: Option<Arc<Session>>,
    },
    /// Not signed in, from a browser: redirect (302) to `location`, the sign-in page that
    /// brings the person back here.
    SignIn { app: Arc<AppRuntime>, location: String },
    /// Not signed in, from an API client: 401.
    Unauthorized { app: Arc<AppRuntime> },
    /// Signed in but not allowed: 403 with the reason.
    Forbidden {
        app: Arc<AppRuntime>,
        session: Arc<Session>,
        reason: Deny,
    },
    /// The path names an app's prefix without its trailing `/`: 308 to `location`.
    AddSlash { location: String },
    /// No app is served here: 404.
    NotFound { path: String },
    /// The request cannot be judged safely (e.g. an encoded `/` in the path): 400.
    BadRequest { reason: String },
}

/// Characters escaped in the `rd` parameter of the sign-in redirect.
const RD: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Judges a request against `snap`, with the session (if any) already looked up.
pub fn decide(snap: &Snapshot, facts: &Facts<'_>, session: Option<Arc<Session>>) -> Verdict {
    let host = match request_host(facts.host, facts.repeated_host, facts.authority) {
        Ok(h) => h,
        Err(e) => return Verdict::BadRequest { reason: e.to_string() },
    };
    let path = match canonicalize(facts.path) {
        Ok(p) => p,
        Err(e) => return Verdict::BadRequest { reason: e.to_string() },
    };
    let with_query = |p: &str| match facts.query {
        Some(q) => format!("{p}?{q}"),
        None => p.to_string(),
    };
    if web::is_reserved(&path) {
        return Verdict::Gateway {
            path_and_query: with_query(&path),
            session,
        };
    }
    let (app, upstream_path) = match snap.router.resolve(&host, &path) {
        None if path == "/" => {
            return Verdict::Gateway {
                path_and_query: with_query(&path),
                session,
            }
        }
        None => return Verdict::NotFound { path },
        Some(RouteMatch::AddSlash { location, .. }) => {
            return Verdict::AddSlash {
                location: with_query(&location),
            }
        }
        Some(RouteMatch::App { app, upstream_path }) => match snap.apps.get(app) {
            Some(a) => (a.clone(), upstream_path),
            None => return Verdict::NotFound { path },
        },
    };
    let decision = evaluate(&app.policy_now(), session.as_ref().map(|s| &s.identity));
    match decision {
        Decision::Allow(allow) => Verdict::Serve {
            app,
            upstream_path: with_query(&upstream_path),
            session,
            allow,
        },
        Decision::Deny(reason) => match session {
            Some(session) => Verdict::Forbidden { app, session, reason },
            None if facts.wants_html => {
                let rd = percent_encoding::utf8_percent_encode(&with_query(&path), RD).to_string();
                Verdict::SignIn {
                    app,
                    location: format!("/.gatehouse/login?rd={rd}"),
                }
            }
            None => Verdict::Unauthorized { app },
        },
    }
}

/// Judges requests against the live snapshot, looking up sessions.
#[derive(Debug, Clone)]
pub struct Gatekeeper {
    pub live: Arc<Live>,
    pub sessions: Arc<Sessions>,
}

impl Gatekeeper {
    /// The verdict for a request: its session looked up (cache, then store), then
    /// [`decide`] against the snapshot current at this moment.
    pub async fn judge(&self, facts: &Facts<'_>) -> Verdict {
        let session = match facts.session_cookie {
            Some(c) => self.sessions.lookup(c).await,
            None => None,
        };
        decide(&self.live.peek(), facts, session)
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
slug = "team"
upstreams = ["127.0.0.1:9"]
access = "authenticated"
strip_prefix = true

[[apps]]
slug = "fin"
upstreams = ["127.0.0.1:9"]
allow_groups = ["finance"]

[[apps]]
slug = "graf"
host = "grafana.example.com"
upstreams = ["127.0.0.1:9"]
allow_users = ["alice"]
"#;

    fn snap() -> Snapshot {
        let config = Config::from_toml(CONFIG, Path::new("."), &ProcessEnv).expect("valid");
        Snapshot::compile(Arc::new(config), &[], None)
    }

    fn session(user: &str, groups: &[&str]) -> Arc<Session> {
        Arc::new(Session::detached(Identity {
            user: UserName::new(user),
            groups: groups.iter().map(|g| GroupName::new(g)).collect(),
            admin: false,
        }))
    }

    fn facts<'a>(path: &'a str, query: Option<&'a str>, host: &'a str, html: bool) -> Facts<'a> {
        Facts {
            path,
            query,
            host: Some(host),
            repeated_host: false,
            authority: None,
            wants_html: html,
            session_cookie: None,
        }
    }

    /// A short name for a verdict, for table tests.
    fn kind(v: &Verdict) -> String {
        match v {
            Verdict::Serve { app, upstream_path, .. } => format!("serve {} {upstream_path}", app.app.slug),
            Verdict::Gateway { path_and_query, .. } => format!("gateway {path_and_query}"),
            Verdict::SignIn { location, .. } => format!("sign-in {location}"),
            Verdict::Unauthorized { app } => format!("401 {}", app.app.slug),
            Verdict::Forbidden { app, reason, .. } => format!("403 {} {reason:?}", app.app.slug),
            Verdict::AddSlash { location } => format!("308 {location}"),
            Verdict::NotFound { path } => format!("404 {path}"),
            Verdict::BadRequest { .. } => "400".to_string(),
        }
    }

    #[test]
    fn verdicts() {
        let s = snap();
        let alice = || Some(session("alice", &["staff"]));
        let carol = || Some(session("carol", &["Finance"]));
        let cases: Vec<(Facts, Option<Arc<Session>>, &str)> = vec![
            (
                facts("/apps/pub/x", Some("a=1"), "gw", false),
                None,
                "serve pub /apps/pub/x?a=1",
            ),
            (
                facts("/apps/team/x/", None, "gw", true),
                None,
                "sign-in /.gatehouse/login?rd=/apps/team/x/",
            ),
            (
                facts("/apps/team/x", Some("q=1&r=2"), "gw", true),
                None,
                "sign-in /.gatehouse/login?rd=/apps/team/x%3Fq%3D1%26r%3D2",
            ),
            (facts("/apps/team/x", None, "gw", false), None, "401 team"),
            (facts("/apps/team/x", None, "gw", false), alice(), "serve team /x"),
            (facts("/apps/fin/", None, "gw", true), alice(), "403 fin NotAllowed"),
            (facts("/apps/fin/", None, "gw", true), carol(), "serve fin /apps/fin/"),
            (
                facts("/apps/pub/../fin/", None, "gw", true),
                alice(),
                "403 fin NotAllowed",
            ),
            (
                facts("/apps/pub/%2e%2e/fin/", None, "gw", true),
                alice(),
                "403 fin NotAllowed",
            ),
            (facts("/apps/pub/%2fx", None, "gw", true), None, "400"),
            (facts("/apps/fin", Some("x=1"), "gw", true), None, "308 /apps/fin/?x=1"),
            (facts("/apps/none/", None, "gw", true), None, "404 /apps/none/"),
            (facts("/", None, "gw", true), None, "gateway /"),
            (
                facts("/.gatehouse/login", Some("rd=/"), "gw", true),
                None,
                "gateway /.gatehouse/login?rd=/",
            ),
            (
                facts("/apps/pub/../../.gatehouse/login", None, "gw", true),
                None,
                "gateway /.gatehouse/login",
            ),
            (
                facts("/", None, "Grafana.Example.com:443", true),
                alice(),
                "serve graf /",
            ),
            (
                facts("/", None, "grafana.example.com", true),
                carol(),
                "403 graf NotAllowed",
            ),
            (facts("/", None, "grafana.example.com", false), None, "401 graf"),
            // Hosts that cannot be read one way only are refused, not guessed at.
            (
                facts("/apps/pub/", None, "grafana.example.com:abc", true),
                alice(),
                "400",
            ),
            (facts("/apps/pub/", None, "grafana.example.com:", true), alice(), "400"),
            (facts("/apps/pub/", None, "grafana.example.com x", true), alice(), "400"),
            (
                facts("/apps/pub/", None, "grafana.example.com@evil", true),
                alice(),
                "400",
            ),
            (facts("/apps/pub/", None, "", true), alice(), "400"),
            (facts("/", None, "[::1]:8080", true), None, "gateway /"),
            (facts("/apps/pub/%252e%252e/fin/", None, "gw", true), carol(), "400"),
        ];
        for (i, (f, session, want)) in cases.into_iter().enumerate() {
            assert_eq!(kind(&decide(&s, &f, session)), want, "case {i}: {f:?}");
        }
    }

    #[test]
    fn absolute_form_targets_and_missing_hosts() {
        let s = snap();
        let f = |host: Option<&'static str>, repeated: bool, authority: Option<&'static str>| Facts {
            path: "/",
            query: None,
            host,
            repeated_host: repeated,
            authority,
            wants_html: true,
            session_cookie: None,
        };
        let alice = || Some(session("alice", &[]));
        assert_eq!(kind(&decide(&s, &f(None, false, None), None)), "400");
        assert_eq!(kind(&decide(&s, &f(Some("gw"), true, None), None)), "400");
        assert_eq!(
            kind(&decide(&s, &f(None, false, Some("grafana.example.com")), alice())),
            "serve graf /"
        );
        assert_eq!(
            kind(&decide(&s, &f(Some("gw"), false, Some("grafana.example.com")), alice())),
            "400",
            "an absolute-form target must name the Host's host"
        );
        assert_eq!(
            kind(&decide(
                &s,
                &f(Some("Grafana.example.com."), false, Some("grafana.example.com:80")),
                alice()
            )),
            "serve graf /"
        );
    }

    #[test]
    fn the_verdict_holds_the_app_it_was_routed_to() {
        let live = Live::new(snap());
        let v = decide(&live.peek(), &facts("/apps/pub/", None, "gw", true), None);
        live.publish(Snapshot::compile(live.load().config.clone(), &[], None));
        let Verdict::Serve { app, .. } = v else {
            panic!("served")
        };
        assert_eq!(app.app.slug, "pub");
        assert!(!Arc::ptr_eq(&app, &live.load().apps[0]), "a new snapshot has new apps");
    }
}
