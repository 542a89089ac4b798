//! `/.gatehouse/auth`: forward authentication for a fronting proxy (nginx `auth_request`,
//! Traefik `ForwardAuth`, Caddy `forward_auth`). The proxy asks whether the request it
//! holds may pass; the answer comes from the same `gatekeeper::decide` that judges proxied
//! requests, so both ways of deploying Gatehouse admit exactly the same people.
//!
//! The original request is read from `X-Forwarded-Uri` (+ `X-Forwarded-Host`, Traefik and
//! Caddy) or `X-Original-URL` (nginx), **only** when the TCP peer is one of
//! `server.trusted_proxies`. From anyone else those headers are ignored and the request is
//! judged as itself — the reserved path `/.gatehouse/auth`, which is no app — so it can
//! never pass. The original method (`X-Forwarded-Method`, Traefik and Caddy;
//! `X-Original-Method`, nginx), read under the same rule, decides only how a missing session
//! is answered: a browser's `GET`/`HEAD` is sent to sign in, anything else (a form post, an
//! API call) gets a plain 401 — a redirect would lose its body. Policies do not depend on
//! the method. The forwarded path goes through `route::canonicalize` and the host through
//! `route::parse_host`, like any proxied request; the session cookie is read from the
//! request's own `Cookie` header (the proxies pass the original headers on).
//!
//! Answers ([`answer`], pure): 200 with the identity headers the app would get when proxied
//! (and the assertion JWT); 401 with `Location` = the sign-in page (302 instead for a
//! browser behind Traefik/Caddy, which hand the answer to the client as it is; nginx accepts
//! only 2xx/401/403 and redirects with `error_page 401`); 403 with the reason in
//! `X-Gatehouse-Reason`; 400 for a forwarded target that cannot be judged safely.

use std::sync::Arc;

use http::HeaderMap;

use crate::authn::session::Session as UserSession;
use crate::gatekeeper::{Facts, Verdict};
use crate::snapshot::AppRuntime;

/// The endpoint's path.
pub const PATH: &str = "/.gatehouse/auth";

/// Which convention the proxy used to describe the original request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    /// `X-Original-URL` (nginx `auth_request`): only 2xx, 401 and 403 may be answered.
    Nginx,
    /// `X-Forwarded-Uri` (Traefik, Caddy): a non-2xx answer goes to the client as it is.
    ForwardedUri,
    /// No description (or not from a trusted proxy): the request is judged as itself.
    Itself,
}

/// The original request, as a trusted proxy describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub path: String,
    pub query: Option<String>,
    /// The host the proxy names, if it names one (else the `Host` header is used).
    pub host: Option<String>,
    /// `scheme://host` when the proxy names both: the sign-in `Location` is made absolute
    /// with it (nginx's `error_page 401 =302` needs a URL with a scheme).
    pub origin: Option<String>,
    /// The original method, if the proxy names it.
    pub method: Option<http::Method>,
    pub convention: Convention,
}

impl Original {
    /// Whether the original request may be sent to sign in and back: a `GET` or `HEAD`
    /// (or an unnamed method, which the proxies use only for those).
    pub fn can_redirect(&self) -> bool {
        self.method
            .as_ref()
            .is_none_or(|m| m == http::Method::GET || m == http::Method::HEAD)
    }
}

/// The original method a proxy names, strictly: one value, an HTTP token.
fn method(headers: &HeaderMap, name: &str, header: &str) -> Result<Option<http::Method>, String> {
    single(headers, name)?
        .map(|m| {
            let valid = !m.is_empty()
                && m.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            valid
                .then(|| http::Method::from_bytes(m.as_bytes()).ok())
                .flatten()
                .ok_or_else(|| format!("{header} is not an HTTP method"))
        })
        .transpose()
}

/// The one value of header `name`; `Err` if it is sent more than once or is not text.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    let mut all = headers.get_all(name).iter();
    let first = all.next();
    if all.next().is_some() {
        return Err(format!("{name} is sent more than once"));
    }
    first
        .map(|v| v.to_str().map_err(|_| format!("{name} is not text")))
        .transpose()
}

/// Splits an origin-form target (`/path?query`) strictly: it must start with `/` and carry
/// no fragment, space or control character.
fn split_target(target: &str, header: &str) -> Result<(String, Option<String>), String> {
    if !target.starts_with('/') || target.starts_with("//") {
        return Err(format!("{header} must be a path starting with a single /"));
    }
    if target.bytes().any(|b| b == b'#' || b <= b' ' || b == 0x7f) {
        return Err(format!("{header} holds a character not allowed in a request target"));
    }
    Ok(match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    })
}

/// Reads the original request from a trusted proxy's headers. `Ok(None)`: the proxy sent
/// no description. `Err`: one that cannot be read one way only (400; 403 for nginx).
pub fn original(headers: &HeaderMap) -> Result<Option<Original>, (Convention, String)> {
    let convention = if headers.contains_key("x-forwarded-uri") || !headers.contains_key("x-original-url") {
        Convention::ForwardedUri
    } else {
        Convention::Nginx
    };
    read(headers).map_err(|e| (convention, e))
}

fn read(headers: &HeaderMap) -> Result<Option<Original>, String> {
    if let Some(uri) = single(headers, "x-forwarded-uri")? {
        let (path, query) = split_target(uri, "X-Forwarded-Uri")?;
        let host = single(headers, "x-forwarded-host")?.map(str::to_string);
        let origin = match (single(headers, "x-forwarded-proto")?, &host) {
            (Some(p @ ("http" | "https")), Some(h)) => Some(format!("{p}://{h}")),
            _ => None,
        };
        return Ok(Some(Original {
            path,
            query,
            host,
            origin,
            method: method(headers, "x-forwarded-method", "X-Forwarded-Method")?,
            convention: Convention::ForwardedUri,
        }));
    }
    if let Some(url) = single(headers, "x-original-url")? {
        let mut origin = None;
        let (host, target) = match url.split_once("://") {
            Some((scheme, rest)) => {
                if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                    return Err("X-Original-URL must be an http or https URL".into());
                }
                let cut = rest.find(['/', '?']).unwrap_or(rest.len());
                let (authority, target) = rest.split_at(cut);
                if authority.is_empty() || authority.contains('@') {
                    return Err("X-Original-URL has no valid host".into());
                }
                let target = match target {
                    "" => "/".to_string(),
                    t if t.starts_with('?') => format!("/{t}"),
                    t => t.to_string(),
                };
                origin = Some(format!("{}://{authority}", scheme.to_ascii_lowercase()));
                (Some(authority.to_string()), target)
            }
            None => (None, url.to_string()),
        };
        let (path, query) = split_target(&target, "X-Original-URL")?;
        let host = host.or(single(headers, "x-forwarded-host")?.map(str::to_string));
        return Ok(Some(Original {
            path,
            query,
            host,
            origin,
            method: method(headers, "x-original-method", "X-Original-Method")?,
            convention: Convention::Nginx,
        }));
    }
    Ok(None)
}

/// The facts to judge: the original request's when a trusted proxy describes one, else the
/// request's own (which name this endpoint, never an app).
pub fn facts<'a>(own: Facts<'a>, original: Option<&'a Original>) -> Facts<'a> {
    match original {
        None => own,
        Some(o) => Facts {
            path: &o.path,
            query: o.query.as_deref(),
            host: o.host.as_deref().or(own.host),
            repeated_host: o.host.is_none() && own.repeated_host,
            authority: None,
            // Always ask for the sign-in location; `answer` decides 401 or 302.
            wants_html: true,
            session_cookie: own.session_cookie,
        },
    }
}

/// The answer to the fronting proxy.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Extra response headers (`Location`, `X-Gatehouse-Reason`).
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// Allowed: the app and the person (if signed in) whose identity headers to add.
    pub pass: Option<(Arc<AppRuntime>, Option<Arc<UserSession>>)>,
    /// The app judged, for the access log.
    pub app: Option<Arc<AppRuntime>>,
}

impl Answer {
    fn deny(status: u16, reason: String, app: Option<Arc<AppRuntime>>) -> Answer {
        Answer {
            status,
            headers: vec![("x-gatehouse-reason", reason.clone())],
            body: format!("{reason}\n"),
            pass: None,
            app,
        }
    }
}

/// Turns a verdict into the answer for the proxy. `browser`: the original request wants
/// HTML (it decides 302 over 401 for proxies that hand the answer to the client).
/// `origin`: the original request's `scheme://host` (only a host the gatekeeper accepted
/// reaches the sign-in answer), which makes the sign-in `Location` absolute.
pub fn answer(verdict: Verdict, convention: Convention, browser: bool, origin: Option<&str>) -> Answer {
    match verdict {
        Verdict::Serve { app, session, .. } => Answer {
            status: 200,
            headers: Vec::new(),
            body: String::new(),
            pass: Some((app.clone(), session)),
            app: Some(app),
        },
        Verdict::SignIn { app, location } => {
            let status = if browser && convention == Convention::ForwardedUri {
                302
            } else {
                401
            };
            let reason = format!("{} needs you to sign in", app.app.name);
            let location = match origin {
                Some(o) => format!("{o}{location}"),
                None => location,
            };
            Answer {
                status,
                headers: vec![("location", location), ("x-gatehouse-reason", reason.clone())],
                body: format!("{reason}\n"),
                pass: None,
                app: Some(app),
            }
        }
        Verdict::Unauthorized { app } => {
            let reason = format!("{} needs you to sign in", app.app.name);
            Answer::deny(401, reason, Some(app))
        }
        Verdict::Forbidden { app, session, reason } => {
            let reason = format!("signed in as {}: {reason}", session.identity.user);
            Answer::deny(403, reason, Some(app))
        }
        Verdict::BadRequest { reason } => match convention {
            // nginx turns anything but 2xx/401/403 into a 500: refuse with 403 there.
            Convention::Nginx => Answer::deny(403, format!("refused: {reason}"), None),
            _ => Answer::deny(400, reason, None),
        },
        Verdict::Gateway { path_and_query, .. } => Answer::deny(
            403,
            match convention {
                Convention::Itself => {
                    "no original request: forward-auth answers only server.trusted_proxies sending X-Forwarded-Uri or X-Original-URL".into()
                }
                _ => format!("{path_and_query} is the gateway's own, not an app"),
            },
            None,
        ),
        Verdict::NotFound { path } => Answer::deny(403, format!("no app is served at {path}"), None),
        Verdict::AddSlash { location } => Answer::deny(403, format!("no app is served here; the app is at {location}"), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn reads_both_conventions() {
        let o = original(&headers(&[
            ("X-Forwarded-Uri", "/apps/a/x?q=1"),
            ("X-Forwarded-Host", "gw"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (o.path.as_str(), o.query.as_deref(), o.host.as_deref(), o.convention),
            ("/apps/a/x", Some("q=1"), Some("gw"), Convention::ForwardedUri)
        );
        let o = original(&headers(&[("X-Original-URL", "https://Apps.example.com:8443/x/?a=b")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (o.path.as_str(), o.query.as_deref(), o.host.as_deref(), o.convention),
            ("/x/", Some("a=b"), Some("Apps.example.com:8443"), Convention::Nginx)
        );
        let o = original(&headers(&[("X-Original-URL", "http://h")])).unwrap().unwrap();
        assert_eq!((o.path.as_str(), o.origin.as_deref()), ("/", Some("http://h")));
        assert!(original(&headers(&[])).unwrap().is_none());
    }

    #[test]
    fn the_original_method_decides_whether_to_send_to_sign_in() {
        let read = |pairs: &[(&str, &str)]| original(&headers(pairs)).unwrap().unwrap();
        let uri = ("X-Forwarded-Uri", "/apps/a/");
        assert!(read(&[uri]).can_redirect(), "no method named: a page load");
        assert!(read(&[uri, ("X-Forwarded-Method", "GET")]).can_redirect());
        assert!(read(&[uri, ("X-Forwarded-Method", "HEAD")]).can_redirect());
        for m in ["POST", "PUT", "DELETE", "PATCH", "PROPFIND"] {
            assert!(!read(&[uri, ("X-Forwarded-Method", m)]).can_redirect(), "{m}");
        }
        let url = ("X-Original-URL", "http://h/apps/a/");
        assert!(!read(&[url, ("X-Original-Method", "POST")]).can_redirect());
        // nginx's header under the other convention (and the other way round) is not read.
        assert!(read(&[uri, ("X-Original-Method", "POST")]).can_redirect());
        for bad in ["", "G ET", "GET,POST", "(GET)", "GÉT", "GET\t"] {
            assert!(
                original(&headers(&[uri, ("X-Forwarded-Method", bad)])).is_err(),
                "{bad:?}"
            );
        }
        assert!(original(&headers(&[
            uri,
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Method", "POST")
        ]))
        .is_err());
    }

    #[test]
    fn a_request_that_cannot_be_redirected_gets_401() {
        use gatehouse_config::{Config, ProcessEnv};
        let config = Config::from_toml(
            "[[apps]]\nslug = \"a\"\nupstreams = [\"127.0.0.1:9\"]\naccess = \"authenticated\"\n",
            std::path::Path::new("."),
            &ProcessEnv,
        )
        .expect("valid");
        let snap = crate::snapshot::Snapshot::compile(Arc::new(config), &[], None);
        let app = snap.apps[0].clone();
        let sign_in = || Verdict::SignIn {
            app: app.clone(),
            location: "/.gatehouse/login?rd=/apps/a/".into(),
        };
        assert_eq!(answer(sign_in(), Convention::ForwardedUri, true, None).status, 302);
        assert_eq!(answer(sign_in(), Convention::ForwardedUri, false, None).status, 401);
        let post = original(&headers(&[
            ("X-Forwarded-Uri", "/apps/a/"),
            ("X-Forwarded-Method", "POST"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            answer(sign_in(), post.convention, post.can_redirect(), None).status,
            401,
            "a browser's form post is not redirected"
        );
    }

    #[test]
    fn refuses_what_cannot_be_read_one_way() {
        for bad in [
            vec![("X-Forwarded-Uri", "apps/a/")],
            vec![("X-Forwarded-Uri", "//evil/apps/a/")],
            vec![("X-Forwarded-Uri", "/apps/a/#frag")],
            vec![("X-Forwarded-Uri", "/a"), ("X-Forwarded-Uri", "/b")],
            vec![
                ("X-Forwarded-Uri", "/a"),
                ("X-Forwarded-Host", "a"),
                ("X-Forwarded-Host", "b"),
            ],
            vec![("X-Original-URL", "gopher://h/")],
            vec![("X-Original-URL", "http://user@h/")],
            vec![("X-Original-URL", "http:///x")],
        ] {
            assert!(original(&headers(&bad)).is_err(), "{bad:?}");
        }
    }
}
