//! Entry points for the cargo-fuzz targets in `tests/fuzz/` (feature `fuzzing`; also built
//! for unit tests, which replay the committed corpora through them). Each function runs one
//! parser of untrusted input the way a request runs it — path canonicalisation and routing,
//! `Host`, cookies, SAML responses and logout messages before their signature is trusted,
//! the configuration file — and panics when an invariant the rest of the gateway relies on
//! does not hold, so that the fuzzer reports it. Nothing here is used by the gateway itself.

use std::path::Path;
use std::sync::Arc;

use gatehouse_config::{Config, Provider, ProviderKind};
use samael::service_provider::ServiceProvider;

use crate::authn::saml::{self, parse_redirect_query};
use crate::gatekeeper::{decide, Facts, Verdict};
use crate::route::{canonicalize, parse_host, request_host};
use crate::snapshot::Snapshot;

/// The apps every routing input is judged against: path and host routes, a stripped
/// prefix, slug hosts under `app_domain`, and one app of each access kind.
pub const ROUTING_CONFIG: &str = r#"
[server]
public_url = "https://gate.fuzz.test"
app_domain = "apps.fuzz.test"
[[apps]]
slug = "public"
access = "public"
upstreams = ["127.0.0.1:9"]
[[apps]]
slug = "secret"
upstreams = ["127.0.0.1:9"]
allow_users = ["alice"]
[[apps]]
slug = "team"
access = "authenticated"
path = "/apps/public/team/"
strip_prefix = true
upstreams = ["127.0.0.1:9"]
[[apps]]
slug = "graf"
host = "grafana.fuzz.test"
upstreams = ["127.0.0.1:9"]
[[apps]]
slug = "root"
access = "public"
host = "root.fuzz.test"
path = "/"
upstreams = ["127.0.0.1:9"]
"#;

/// The compiled [`ROUTING_CONFIG`].
pub fn routing_snapshot() -> Snapshot {
    let config = Config::from_toml(
        ROUTING_CONFIG,
        Path::new("."),
        &std::collections::HashMap::<String, String>::new(),
    )
    .unwrap_or_else(|p| panic!("the fuzzing config is invalid: {p}"));
    Snapshot::compile(Arc::new(config), &[], None)
}

/// Splits fuzz input into `n` text fields at `\n` (the last one takes the rest).
pub fn fields(data: &[u8], n: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(data);
    let mut out: Vec<String> = text.splitn(n, '\n').map(str::to_string).collect();
    out.resize(n, String::new());
    out
}

/// Canonical paths are fixed points without empty or dot segments.
fn check_canonical(p: &str) {
    assert!(p.starts_with('/'), "canonical path {p:?} is not absolute");
    assert_eq!(
        canonicalize(p).as_deref(),
        Ok(p),
        "canonical path {p:?} is not a fixed point"
    );
    let inner = p.trim_matches('/');
    if !inner.is_empty() {
        for seg in inner.split('/') {
            assert!(
                !seg.is_empty() && seg != "." && seg != "..",
                "segment {seg:?} left in {p:?}"
            );
        }
    }
}

/// Path canonicalisation and routing, as the gatekeeper does them for an anonymous request:
/// input `host \n path \n query \n absolute-form authority`. Invariants: a canonical path is
/// a fixed point; without a session only a public app is served, and the path sent upstream
/// is canonical (or, for a stripped prefix, the canonical rest of it); every refusal names
/// a reason.
pub fn route(snap: &Snapshot, data: &[u8]) {
    let f = fields(data, 4);
    let (host, authority) = (&f[0], &f[3]);
    // The request target as pingora hands it over: parsed, path and query apart.
    let target = if f[2].is_empty() {
        f[1].clone()
    } else {
        format!("{}?{}", f[1], f[2])
    };
    let Ok(uri) = target.parse::<http::Uri>() else { return };
    let (path, query) = (uri.path(), uri.query().unwrap_or(""));
    if let Ok(c) = canonicalize(path) {
        check_canonical(&c);
    }
    let facts = Facts {
        path,
        query: (!query.is_empty()).then_some(query),
        host: (!host.is_empty()).then_some(host.as_str()),
        repeated_host: false,
        authority: (!authority.is_empty()).then_some(authority.as_str()),
        wants_html: path.len() % 2 == 0,
        session_cookie: None,
    };
    match decide(snap, &facts, None) {
        Verdict::Serve { app, upstream_path, .. } => {
            assert!(
                matches!(app.app.access, gatehouse_config::Access::Public),
                "anonymous request served by non-public app {}: {f:?}",
                app.app.slug
            );
            let path_only = upstream_path.split('?').next().unwrap_or("");
            check_canonical(path_only);
            let routed_host = request_host(facts.host, false, facts.authority).expect("served without a valid host");
            if app.app.host.is_none() && !routed_host.ends_with(".apps.fuzz.test") {
                let c = canonicalize(path).expect("served a path that does not canonicalise");
                assert!(
                    c.starts_with(&app.app.path),
                    "{c:?} served by {} ({})",
                    app.app.slug,
                    app.app.path
                );
            }
        }
        Verdict::BadRequest { reason } => assert!(!reason.is_empty()),
        Verdict::SignIn { location, .. } => {
            assert!(
                location.starts_with("/.gatehouse/login"),
                "sign-in redirect to {location:?}"
            )
        }
        Verdict::AddSlash { location } => check_canonical(location.split('?').next().unwrap_or("")),
        Verdict::Gateway { path_and_query, .. } => {
            let path_only = path_and_query.split('?').next().unwrap_or("");
            check_canonical(path_only);
        }
        Verdict::NotFound { .. } | Verdict::Unauthorized { .. } | Verdict::Forbidden { .. } => {}
    }
    // The post-sign-in target is same-origin whatever was asked for.
    let rd = gatehouse_admin_ui::safe_redirect(path);
    assert!(
        rd.starts_with('/') && !rd.starts_with("//") && !rd.starts_with("/\\"),
        "{path:?} → {rd:?}"
    );
}

/// `Host` parsing: an accepted value names one host, without port, user info, spaces or
/// escapes, and parses again to itself; the header and an absolute-form authority that
/// disagree are refused.
pub fn host(data: &[u8]) {
    let f = fields(data, 2);
    for value in &f {
        if let Ok(h) = parse_host(value) {
            assert!(!h.is_empty());
            assert!(!h.contains(['@', ' ', '%', '/', '\\', '[', ']']), "{value:?} → {h:?}");
            assert!(
                !h.contains(':') || value.starts_with('['),
                "port left in {h:?} from {value:?}"
            );
            assert_eq!(h, h.to_ascii_lowercase());
            let again = if h.contains(':') { format!("[{h}]") } else { h.clone() };
            assert_eq!(parse_host(&again).as_ref(), Ok(&h), "{value:?}");
        }
    }
    if let Ok(h) = request_host(Some(&f[0]), false, Some(&f[1])) {
        assert_eq!(parse_host(&f[0]).as_ref(), Ok(&h));
        assert_eq!(parse_host(&f[1]).as_ref(), Ok(&h));
    }
}

/// Cookie parsing: the `Cookie` headers a client sends (input: header values separated by
/// `\n`). Invariants: after [`crate::identity::strip_cookies`], no gateway cookie is left
/// under any ASCII case; a session or CSRF value is only ever looked up when well formed.
pub fn cookies(data: &[u8]) {
    let names = [
        "gatehouse_session",
        "gatehouse_csrf",
        "gatehouse_login",
        "gatehouse_session_saml",
    ];
    let mut headers = http::HeaderMap::new();
    let mut values = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(v) = http::HeaderValue::from_bytes(line) {
            values.push(String::from_utf8_lossy(line).into_owned());
            headers.append(http::header::COOKIE, v);
        }
    }
    for name in names {
        if let Some(v) = crate::identity::cookie(&headers, name) {
            let _ = crate::authn::session::well_formed(v);
            let _ = crate::authn::session::hash_id(v);
            let _ = gatehouse_admin_ui::csrf::verify(b"fuzz key", Some(v), v);
        }
    }
    let kept = crate::identity::strip_cookies(&values, &names);
    let mut after = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(&kept) {
        after.append(http::header::COOKIE, v);
    }
    for pair in kept.split(';') {
        let name = pair.split('=').next().unwrap_or("").trim();
        assert!(
            !names.iter().any(|n| n.eq_ignore_ascii_case(name)),
            "gateway cookie {name:?} survived in {kept:?}"
        );
    }
    for name in names {
        assert_eq!(crate::identity::cookie(&after, name), None, "{name} left in {kept:?}");
    }
    // An app's Set-Cookie for a gateway cookie never reaches the browser.
    let mut set = http::HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(v) = http::HeaderValue::from_bytes(line) {
            set.append(http::header::SET_COOKIE, v);
        }
    }
    let owned: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let left = crate::identity::without_gateway_cookies(&set, &owned);
    let mut left_map = http::HeaderMap::new();
    for v in left {
        left_map.append(http::header::SET_COOKIE, v);
    }
    assert!(!crate::identity::sets_gateway_cookie(&left_map, &owned));
}

/// The SAML service provider [`saml_response`] checks responses with.
pub struct SamlTarget(ServiceProvider);

impl std::fmt::Debug for SamlTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SamlTarget")
    }
}

/// A SAML service provider for [`saml_response`], trusting the IdP of `idp_metadata` (a
/// fixed test certificate: no fuzz input carries a valid signature, so everything up to and
/// including the signature check is what runs).
pub fn saml_sp(idp_metadata: &str) -> SamlTarget {
    let dir = std::env::temp_dir().join(format!("gatehouse-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join("idp.xml");
    std::fs::write(&file, idp_metadata).unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
    let toml = format!(
        "[server]\npublic_url = \"https://gate.fuzz.test\"\n[[providers]]\nid = \"idp\"\nkind = \"saml\"\nidp_metadata = {:?}\n",
        file.display().to_string()
    );
    let config = Config::from_toml(
        &toml,
        Path::new("."),
        &std::collections::HashMap::<String, String>::new(),
    )
    .unwrap_or_else(|p| panic!("the fuzzing SAML config is invalid: {p}"));
    // The metadata is in `idp_metadata` from here on: leave no folder per fuzzing process.
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = config
        .providers
        .iter()
        .find_map(|p: &Provider| match &p.kind {
            ProviderKind::Saml(s) => Some(s.clone()),
            _ => None,
        })
        .expect("a SAML provider");
    let base = "https://gate.fuzz.test";
    let (sp, _) = saml::build_sps(
        "idp",
        &cfg,
        idp_metadata,
        base,
        &format!("{base}/.gatehouse/saml/idp/acs"),
        &format!("{base}/.gatehouse/saml/idp/slo"),
    )
    .unwrap_or_else(|e| panic!("the fuzzing SAML provider: {e}"));
    SamlTarget(sp)
}

/// A posted `SAMLResponse` as the ACS handles it: decoded and prechecked, its Destination
/// read, then the signature check and parsing by samael (panics there are caught, as in
/// production). Input: the form field's value. Nothing unsigned may pass.
pub fn saml_response(target: &SamlTarget, data: &[u8]) {
    let sp = &target.0;
    let text = String::from_utf8_lossy(data);
    let b64 = base64_of(data);
    for candidate in [&*text, b64.as_str()] {
        let Ok(xml) = saml::decode_response(candidate) else {
            continue;
        };
        let _ = saml::root_attribute(&xml, "Destination");
        let _ = saml::root_attribute(&xml, "InResponseTo");
        let verified = saml::verify_response(sp, &xml, Some(&["_fuzz-request"][..]));
        let unsolicited = saml::verify_response(sp, &xml, None);
        assert!(
            verified.is_err() && unsolicited.is_err(),
            "an unsigned response was accepted: {xml}"
        );
    }
}

fn base64_of(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A logout message's query (HTTP-Redirect binding) as the SLO endpoint reads it: the
/// parameters split (none repeated), the signed bytes rebuilt from exactly the parsed
/// values, then — as if the signature had verified — the message inflated, checked and
/// parsed. Input: the query string.
pub fn saml_logout(data: &[u8]) {
    let query = String::from_utf8_lossy(data);
    let Ok(q) = parse_redirect_query(&query) else { return };
    if let Some(signed) = q.signed_bytes() {
        // What is signed holds exactly the parsed message, once.
        let prefix = format!("{}={}", q.param, q.message);
        assert!(signed.starts_with(&prefix), "{signed:?} does not start with {prefix:?}");
        assert_eq!(signed.matches("&SigAlg=").count(), 1, "{signed:?}");
    }
    let kind = if q.param == "SAMLRequest" {
        "LogoutRequest"
    } else {
        "LogoutResponse"
    };
    let Ok(xml) = q.logout_xml(kind) else { return };
    if kind == "LogoutRequest" {
        let _ = xml.parse::<samael::schema::LogoutRequest>();
    } else {
        let _ = xml.parse::<samael::schema::LogoutResponse>();
    }
    if let Some(end) = saml::root_attribute(&xml, "NotOnOrAfter").ok().flatten() {
        let _ = chrono::DateTime::parse_from_rfc3339(&end);
    }
}

/// The configuration file: any text gets a `Config` or a list of problems, each with a
/// path and a message; never a panic. `file:` secrets are read relative to an empty folder.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env: std::collections::HashMap<String, String> = [("FUZZ_SECRET".to_string(), "s3cret".to_string())]
        .into_iter()
        .collect();
    let base = std::env::temp_dir().join("gatehouse-fuzz-config-base");
    match Config::from_toml(text, &base, &env) {
        Ok(c) => {
            // A valid config compiles into a snapshot without panicking.
            let _ = Snapshot::compile(Arc::new(c), &[], None);
        }
        Err(problems) => {
            assert!(!problems.0.is_empty(), "refused without a problem");
            for p in &problems.0 {
                assert!(!p.message.is_empty(), "a problem without a message at {:?}", p.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Every committed seed, through its target: the corpora are regression tests too.
    use super::*;

    fn corpus(target: &str) -> Vec<Vec<u8>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fuzz/corpus")
            .join(target);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("corpus entry").path();
            out.push(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
        }
        assert!(!out.is_empty(), "no seeds in {}", dir.display());
        out
    }

    #[test]
    fn seeds_pass_every_target() {
        let snap = routing_snapshot();
        for seed in corpus("route") {
            route(&snap, &seed);
        }
        for seed in corpus("host") {
            host(&seed);
        }
        for seed in corpus("cookie") {
            cookies(&seed);
        }
        for seed in corpus("saml_logout") {
            saml_logout(&seed);
        }
        for seed in corpus("config") {
            config(&seed);
        }
        let sp = saml_sp(include_str!("../../tests/fuzz/fixtures/idp-metadata.xml"));
        for seed in corpus("saml_response") {
            saml_response(&sp, &seed);
        }
    }
}
