//! Telling apps who is calling: removing every identity header a client sent (any case,
//! `_` or `-`), removing the gateway's cookies from `Cookie`, then adding the identity
//! headers and the `X-Gatehouse-Assertion` JWT (ES256) for the app. Signing keys live in
//! the store; the JWKS publishes every key whose tokens may still be valid.
//!
//! Which groups an app is told is chosen once per session and app ([`Keys::prepared`]):
//! under `groups_sent = "auto"` (the default) every group while the identity headers stay
//! within [`LINE_BUDGET`] and [`TOTAL_BUDGET`] — sizes common app servers accept next to the
//! app's own headers — else only the groups the app's policy names, logged once per app.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use gatehouse_config::{App, GroupsSent};
use gatehouse_store::{Actor, SigningKeyRecord, Store};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use pingora::http::RequestHeader;
use serde::Serialize;

use crate::authn::session::{now, Session};
use crate::GatewayError;

/// Every header through which Gatehouse tells an app who is calling. A client's copy of any
/// of them, in any spelling, is removed before the request goes upstream.
pub const IDENTITY_HEADERS: &[&str] = &[
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-gatehouse-assertion",
    "remote-user",
    "remote-groups",
    "remote-email",
    "remote-name",
    "plotly-user-data",
];

/// The headers Gatehouse adds to proxied requests, and the non-standard ones it reads on
/// every request, as ready names: inserted with `RequestHeader::insert_header_ready` (our
/// pingora-http patch) or looked up with them, nothing is parsed or allocated for a name
/// per request. Added ones go on the wire in lower case.
pub mod names {
    use http::HeaderName;

    pub static X_REQUESTED_WITH: HeaderName = HeaderName::from_static("x-requested-with");
    pub static SEC_FETCH_DEST: HeaderName = HeaderName::from_static("sec-fetch-dest");

    pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
    pub static X_FORWARDED_USER: HeaderName = HeaderName::from_static("x-forwarded-user");
    pub static X_FORWARDED_EMAIL: HeaderName = HeaderName::from_static("x-forwarded-email");
    pub static X_FORWARDED_GROUPS: HeaderName = HeaderName::from_static("x-forwarded-groups");
    pub static X_FORWARDED_PREFERRED_USERNAME: HeaderName = HeaderName::from_static("x-forwarded-preferred-username");
    pub static X_GATEHOUSE_ASSERTION: HeaderName = HeaderName::from_static("x-gatehouse-assertion");
    pub static REMOTE_USER: HeaderName = HeaderName::from_static("remote-user");
    pub static REMOTE_GROUPS: HeaderName = HeaderName::from_static("remote-groups");
    pub static REMOTE_EMAIL: HeaderName = HeaderName::from_static("remote-email");
    pub static REMOTE_NAME: HeaderName = HeaderName::from_static("remote-name");
    pub static PLOTLY_USER_DATA: HeaderName = HeaderName::from_static("plotly-user-data");
}

/// The cookie `dash_enterprise_auth` reads in token mode (`DASH_JWKS_URL` set): base64 of a
/// JWT. Gatehouse adds it to upstream requests of apps with `headers.dash_token` and removes a
/// client's copy from every request, so an app never sees one the gateway did not sign.
pub const DASH_TOKEN_COOKIE: &str = "kcIdToken";

/// The `aud` of the Dash token: `dash_enterprise_auth`'s default `DASH_AUD`.
pub const DASH_AUDIENCE: &str = "dash";

/// Lifetime of an assertion JWT.
pub const ASSERTION_TTL: Duration = Duration::from_secs(300);

/// Under `groups_sent = "auto"`, the most bytes one identity header line may take on the
/// wire (`name: value` and CRLF; for the `kcIdToken` cookie, its `name=value` share of the
/// `Cookie` line). Half of the smallest per-line limit measured (nginx's 8 KiB buffer,
/// gunicorn's 8190-byte `limit_request_field_size`; see docs/configuration.md).
pub const LINE_BUDGET: usize = 4096;

/// Under `groups_sent = "auto"`, the most bytes all identity header lines (and the
/// `kcIdToken` cookie) may take together: leaves the app's own headers and cookies room
/// under Node's 16 KiB and nginx's 4 × 8 KiB.
pub const TOTAL_BUDGET: usize = 8192;

/// Whether a header name is an identity header in some spelling (`X_Forwarded_User`, …):
/// ASCII case and `_` for `-` do not matter. Allocation-free: it runs for every header of
/// every request.
pub fn is_identity_header(name: &str) -> bool {
    let fold = |b: u8| if b == b'_' { b'-' } else { b.to_ascii_lowercase() };
    IDENTITY_HEADERS
        .iter()
        .any(|h| h.len() == name.len() && h.bytes().zip(name.bytes()).all(|(a, b)| a == fold(b)))
}

/// Headers that say where a request came from, which the gateway sets itself from what it
/// saw (`forwarded.rs`): a client's copy is removed with the identity headers.
pub const FORWARDING_HEADERS: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "x-forwarded-host",
    "x-forwarded-for",
    "x-forwarded-proto",
];

/// Removes identity headers, the [`FORWARDING_HEADERS`], the named cookies and any
/// [`DASH_TOKEN_COOKIE`] from a request going upstream. One pass over the request's header
/// names; only headers that are present are removed (a removal hashes and parses its name).
pub fn scrub(req: &mut RequestHeader, cookie_names: &[String]) {
    let doomed: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|k| is_identity_header(k.as_str()) || FORWARDING_HEADERS.contains(&k.as_str()))
        .cloned()
        .collect();
    for name in doomed {
        req.remove_header(&name);
    }
    // Most requests carry none of these cookies: leave their `Cookie` as it is.
    let named = req.headers.get_all(http::header::COOKIE).iter().any(|v| {
        v.as_bytes().split(|&b| b == b';').any(|pair| {
            let name = trim(pair.split(|&b| b == b'=').next().unwrap_or_default());
            dropped_cookie(name, cookie_names)
        })
    });
    if !named {
        return;
    }
    let kept = strip_cookie_bytes(
        req.headers.get_all(http::header::COOKIE).iter().map(|v| v.as_bytes()),
        |name| dropped_cookie(name, cookie_names),
    );
    req.remove_header(&http::header::COOKIE);
    if !kept.is_empty() {
        // The client's own bytes minus whole pairs: a valid value unless the client's was
        // not (then no `Cookie` goes upstream at all, which drops the gateway's cookies too).
        if let Ok(v) = http::HeaderValue::from_maybe_shared(bytes::Bytes::from(kept)) {
            let _ = req.insert_header(http::header::COOKIE, v);
        }
    }
}

/// Whether [`scrub`] removes the cookie called `name`: one of `cookie_names` or a
/// [`DASH_TOKEN_COOKIE`] (ASCII case-insensitive).
fn dropped_cookie(name: &[u8], cookie_names: &[String]) -> bool {
    name.eq_ignore_ascii_case(DASH_TOKEN_COOKIE.as_bytes())
        || cookie_names.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(name))
}

/// Joins `Cookie` header values, without the pairs named in `names`.
pub fn strip_cookies<N: AsRef<str>>(values: &[String], names: &[N]) -> String {
    let kept = strip_cookie_bytes(values.iter().map(|v| v.as_bytes()), |name| {
        names.iter().any(|n| n.as_ref().as_bytes().eq_ignore_ascii_case(name))
    });
    // Cut only at ASCII `;` and spaces, so text that was UTF-8 still is.
    String::from_utf8(kept).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `b` without leading and trailing white space: Unicode's if `b` is UTF-8 (as `str::trim`,
/// so that no spelling an app's cookie parser might trim escapes [`scrub`]), else ASCII's.
fn trim(b: &[u8]) -> &[u8] {
    match std::str::from_utf8(b) {
        Ok(s) => s.trim().as_bytes(),
        Err(_) => b.trim_ascii(),
    }
}

/// Joins `Cookie` header values with `; `, each pair trimmed, without empty pairs and
/// without the pairs whose (trimmed) name `drop` says to remove. One allocation.
fn strip_cookie_bytes<'a>(values: impl Iterator<Item = &'a [u8]>, drop: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut kept = Vec::new();
    for pair in values.flat_map(|v| v.split(|&b| b == b';')) {
        let pair = trim(pair);
        if pair.is_empty() || drop(trim(pair.split(|&b| b == b'=').next().unwrap_or_default())) {
            continue;
        }
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(pair);
    }
    kept
}

/// Adds the cookie `name=value` to the request's `Cookie` header (after [`scrub`], which
/// leaves at most one).
pub fn add_cookie(req: &mut RequestHeader, name: &str, value: &str) -> Result<(), GatewayError> {
    let cookie = match req.headers.get(http::header::COOKIE) {
        Some(v) if !v.is_empty() => format!("{}; {name}={value}", String::from_utf8_lossy(v.as_bytes())),
        _ => format!("{name}={value}"),
    };
    req.insert_header(http::header::COOKIE, cookie)
        .map_err(|e| GatewayError::Io(format!("cookie {name}: {e}")))
}

/// The name a `Set-Cookie` value sets.
fn set_cookie_name(value: &http::HeaderValue) -> &[u8] {
    let v = value.as_bytes();
    let end = v.iter().position(|&b| b == b'=' || b == b';').unwrap_or(v.len());
    v[..end].trim_ascii()
}

/// Whether any `Set-Cookie` in `headers` names one of `names` (ASCII case-insensitive).
pub fn sets_gateway_cookie(headers: &http::HeaderMap, names: &[String]) -> bool {
    headers.get_all(http::header::SET_COOKIE).iter().any(|v| {
        names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(set_cookie_name(v)))
    })
}

/// The `Set-Cookie` values of `headers` that do not name one of `names`.
pub fn without_gateway_cookies(headers: &http::HeaderMap, names: &[String]) -> Vec<http::HeaderValue> {
    headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter(|v| {
            !names
                .iter()
                .any(|n| n.as_bytes().eq_ignore_ascii_case(set_cookie_name(v)))
        })
        .cloned()
        .collect()
}

/// The value of cookie `name` in the request's `Cookie` headers, if any.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// All of a person's groups, as an app is told them (never an empty name, which no header
/// could tell from "no groups").
pub fn all_groups(groups: &BTreeSet<gatehouse_policy::GroupName>) -> Vec<String> {
    groups
        .iter()
        .filter(|g| !g.as_str().is_empty())
        .map(|g| g.as_str().to_string())
        .collect()
}

/// The person's groups that the app's policy names (`allow_groups`), in the policy's order.
pub fn referenced_groups(app: &App, groups: &BTreeSet<gatehouse_policy::GroupName>) -> Vec<String> {
    app.allow_groups
        .iter()
        .map(|g| gatehouse_policy::GroupName::new(g))
        .filter(|g| groups.contains(g))
        .map(|g| g.as_str().to_string())
        .collect()
}

/// The bytes a comma-separated groups header's value takes for `groups` (see
/// [`groups_header`]), without building it.
fn groups_header_len(groups: &[String]) -> usize {
    let names: usize = groups
        .iter()
        .map(|g| g.len() + 2 * g.bytes().filter(|b| matches!(b, b',' | b'%')).count())
        .sum();
    names + groups.len().saturating_sub(1)
}

/// One group name as an element of a comma-separated groups header
/// (`X-Forwarded-Groups`, `Remote-Groups`): `%` becomes `%25` and `,` becomes `%2C`, nothing
/// else changes, so names without either read as before. Splitting the header on `,` and
/// percent-decoding each part gives back exactly the names: a group called `staff,admins`
/// (or an LDAP CN like `R&D, Europe`) cannot make an app see another group.
pub fn encode_group(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.contains([',', '%']) {
        return name.into();
    }
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            ',' => out.push_str("%2C"),
            c => out.push(c),
        }
    }
    out.into()
}

/// The value of a comma-separated groups header: each name encoded by [`encode_group`].
pub fn groups_header(groups: &[String]) -> String {
    let mut out = String::new();
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&encode_group(g));
    }
    out
}

/// Claims of the assertion JWT.
#[derive(Debug, Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    groups: &'a [String],
    iat: i64,
    exp: i64,
}

/// Claims of the Dash token: what `dash_enterprise_auth.get_user_data()` returns in token
/// mode (`get_username()` is its `preferred_username`).
#[derive(Debug, Serialize)]
struct DashClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    preferred_username: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    groups: &'a [String],
    iat: i64,
    exp: i64,
}

/// The headers to add for `session` calling `app`, telling it `group_list`. Group names go
/// into the comma-separated headers encoded by [`groups_header`]; `Plotly-User-Data` has
/// them as a JSON list.
pub fn identity_headers(
    app: &App,
    s: &Session,
    group_list: &[String],
    assertion: &str,
) -> Vec<(&'static http::HeaderName, String)> {
    let user = s.identity.user.as_str().to_string();
    let groups = groups_header(group_list);
    let email = s.email.as_deref().unwrap_or_default().to_string();
    let mut h = vec![
        (&names::X_FORWARDED_USER, user.clone()),
        (&names::X_FORWARDED_EMAIL, email.clone()),
        (&names::X_FORWARDED_GROUPS, groups.clone()),
        (&names::X_FORWARDED_PREFERRED_USERNAME, user.clone()),
        (&names::X_GATEHOUSE_ASSERTION, assertion.to_string()),
    ];
    if app.headers.remote_headers {
        h.push((&names::REMOTE_USER, user.clone()));
        h.push((&names::REMOTE_GROUPS, groups));
        h.push((&names::REMOTE_EMAIL, email));
        h.push((
            &names::REMOTE_NAME,
            s.display_name.as_deref().map_or_else(|| user.clone(), str::to_string),
        ));
    }
    if app.headers.plotly_user_data {
        let data = serde_json::json!({ "username": user, "groups": group_list });
        h.push((&names::PLOTLY_USER_DATA, data.to_string()));
    }
    h
}

/// Everything added to a request for one session calling one app: the assertion and the
/// identity headers as ready `HeaderName`/`HeaderValue`s. Built once per session, app
/// definition and signing key (and again when the assertion is due for renewal or the
/// session's identity changed), so a signed-in request does no per-request work in
/// proportion to the user's groups.
#[derive(Debug)]
pub struct Prepared {
    /// The session's key (checked: the cache is keyed by its first 8 bytes).
    key: crate::authn::session::Key,
    fingerprint: u64,
    /// Each identity header's name (a ready [`names`] static: the proxy inserts it without
    /// parsing or allocating a name) and its ready value (the assertion is the value of
    /// `x-gatehouse-assertion`: [`Prepared::assertion`]; kept once, not twice).
    pub headers: Vec<(&'static http::HeaderName, http::HeaderValue)>,
    /// The [`DASH_TOKEN_COOKIE`] value, for apps with `headers.dash_token`.
    pub dash_cookie: Option<Arc<str>>,
    /// How many groups the app is told (in every header, the assertion and the Dash token).
    pub groups_sent: usize,
    /// Whether `groups_sent = "auto"` sent only the groups the app's policy names because
    /// all of them would have gone over the budget.
    pub limited: bool,
}

/// The bytes identity headers take on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderSizes {
    /// The longest line: `name: value` and CRLF, or the Dash token's `name=value`.
    pub largest_line: usize,
    /// All of them together.
    pub total: usize,
}

impl HeaderSizes {
    /// Whether they are within [`LINE_BUDGET`] and [`TOTAL_BUDGET`].
    pub fn within_budget(self) -> bool {
        self.largest_line <= LINE_BUDGET && self.total <= TOTAL_BUDGET
    }
}

impl Prepared {
    /// The size of what this adds to a request.
    pub fn sizes(&self) -> HeaderSizes {
        let lines = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + 2 + v.len() + 2)
            .chain(self.dash_cookie.iter().map(|c| DASH_TOKEN_COOKIE.len() + 1 + c.len()));
        lines.fold(
            HeaderSizes {
                largest_line: 0,
                total: 0,
            },
            |acc, l| HeaderSizes {
                largest_line: acc.largest_line.max(l),
                total: acc.total + l,
            },
        )
    }

    fn build(
        app: &App,
        s: &Session,
        groups: &[String],
        assertion: Arc<str>,
        dash_cookie: Option<Arc<str>>,
    ) -> Prepared {
        let headers = identity_headers(app, s, groups, &assertion)
            .into_iter()
            .filter_map(|(name, value)| match http::HeaderValue::from_str(&value) {
                Ok(v) => Some((name, v)),
                Err(_) => {
                    // Values a directory supplies may not be valid header values.
                    tracing::warn!(header = name.as_str(), user = %s.identity.user, "identity header not sent: not a valid header value");
                    None
                }
            })
            .collect();
        Prepared {
            key: s.key,
            fingerprint: s.fingerprint,
            headers,
            dash_cookie,
            groups_sent: groups.len(),
            limited: false,
        }
    }

    /// The signed assertion (JWT), as the `X-Gatehouse-Assertion` header carries it.
    pub fn assertion(&self) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| **n == names::X_GATEHOUSE_ASSERTION)
            .and_then(|(_, v)| v.to_str().ok())
            .unwrap_or_default()
    }

    /// About how many bytes this entry keeps alive, the cache's own bookkeeping included
    /// (the cache's weight: it holds a budget of bytes, not a number of entries, so 100,000
    /// sessions cannot grow it without bound).
    fn weight(&self) -> u32 {
        let values: usize = self.headers.iter().map(|(_, v)| v.len() + 48).sum();
        let dash = self.dash_cookie.as_ref().map_or(0, |c| c.len() + 16);
        u32::try_from(std::mem::size_of::<Prepared>() + values + dash + CACHE_ENTRY_BYTES).unwrap_or(u32::MAX)
    }

    fn fits(&self, s: &Session) -> bool {
        self.fingerprint == s.fingerprint && self.key == s.key
    }
}

/// The bytes the cache of prepared headers and assertions may keep (about 1.2 KiB per
/// session and app, the cache's bookkeeping included): a working set of ~7,000 session–app
/// pairs used within the assertion's lifetime (4 minutes) is served without signing; beyond
/// it the least used are signed again when next used (one ES256 signature each). Chosen for
/// the memory target of 100,000 live sessions in 64 MiB (BENCHMARKS.md, "Scale").
const PREPARED_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// What a moka cache keeps per entry besides the value (its node, timer and frequency
/// bookkeeping; measured at 309–373 bytes, BENCHMARKS.md "Scale again").
const CACHE_ENTRY_BYTES: usize = 320;

/// The cache key of what is prepared for session `s` and app `app_id`: the first 64 bits of
/// the session's id hash (the entry itself is checked against the whole hash).
fn prepared_key(s: &Session, app_id: u64) -> (u64, u64) {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&s.key[..8]);
    let prefix = if s.is_detached() {
        s.fingerprint
    } else {
        u64::from_le_bytes(prefix)
    };
    (prefix, app_id)
}

/// The active signing key and the published set.
pub struct Keys {
    kid: String,
    encoding: EncodingKey,
    jwks: String,
    issuer: String,
    cache: moka::sync::Cache<(u64, u64), Arc<Prepared>>,
    /// Apps (by slug) for which `groups_sent = "auto"` limiting someone's groups was logged
    /// lately: logged once a day per app, not per person or request.
    limited_logged: moka::sync::Cache<String, ()>,
    /// Key of the sign-in forms' CSRF field, derived from the active signing key: a secret
    /// in the store that every replica shares and no app sees.
    csrf_key: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("kid", &self.kid).finish()
    }
}

/// The signing keys in use, replaced whole when the store's keys change (rotation on any
/// replica arrives through the change feed).
#[derive(Debug)]
pub struct KeyRing {
    current: arc_swap::ArcSwap<Keys>,
}

impl KeyRing {
    pub fn new(keys: Keys) -> KeyRing {
        KeyRing {
            current: arc_swap::ArcSwap::from_pointee(keys),
        }
    }

    /// The keys in use now.
    pub fn current(&self) -> Arc<Keys> {
        self.current.load_full()
    }

    /// Re-reads the keys from the store and uses them from the next assertion on (a new
    /// key means new assertions: the cache goes with the old keys).
    pub async fn reload(&self, store: &Store) -> Result<(), GatewayError> {
        let issuer = self.current.load().issuer.clone();
        let keys = Keys::load(store, &issuer).await?;
        if keys.kid != self.current.load().kid || keys.jwks != self.current.load().jwks {
            tracing::info!(kid = %keys.kid, "signing keys reloaded");
            self.current.store(Arc::new(keys));
        }
        Ok(())
    }

    /// See [`Keys::prepared`].
    pub fn prepared(&self, app: &App, app_id: u64, s: &Session) -> Result<Arc<Prepared>, GatewayError> {
        self.current.load().prepared(app, app_id, s)
    }

    /// The JWKS document.
    pub fn jwks(&self) -> String {
        self.current.load().jwks.clone()
    }
}

/// The record of apps whose limited groups were logged: a day per entry.
fn limited_log() -> moka::sync::Cache<String, ()> {
    moka::sync::Cache::builder()
        .max_capacity(10_000)
        .time_to_live(Duration::from_secs(24 * 3600))
        .build()
}

/// A fresh P-256 key as a store record.
pub fn generate_key() -> Result<SigningKeyRecord, GatewayError> {
    let err = |e: openssl::error::ErrorStack| GatewayError::Io(format!("key generation: {e}"));
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(err)?;
    let key = EcKey::generate(&group).map_err(err)?;
    let mut ctx = BigNumContext::new().map_err(err)?;
    let (mut x, mut y) = (BigNum::new().map_err(err)?, BigNum::new().map_err(err)?);
    key.public_key()
        .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
        .map_err(err)?;
    let pem = PKey::from_ec_key(key)
        .map_err(err)?
        .private_key_to_pem_pkcs8()
        .map_err(err)?;
    let b64 = |b: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let x = b64(x.to_vec_padded(32).map_err(err)?);
    let y = b64(y.to_vec_padded(32).map_err(err)?);
    let kid = b64(rand::random::<[u8; 12]>().to_vec());
    let jwk =
        serde_json::json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "use": "sig", "alg": "ES256" });
    Ok(SigningKeyRecord {
        kid,
        private_pem: String::from_utf8_lossy(&pem).into_owned(),
        public_jwk: jwk.to_string(),
        created_at: now(),
        retired_at: None,
    })
}

/// Retires the active key and creates a new one, as `actor` (audit log); old keys stay
/// published until their tokens have expired. Returns the new key id.
pub async fn rotate(store: &Store, actor: &Actor) -> Result<String, GatewayError> {
    let t = now();
    for k in store.signing_keys().await? {
        if k.retired_at.is_none() {
            store.retire_signing_key(&k.kid, t, actor).await?;
        }
    }
    let k = generate_key()?;
    store.insert_signing_key(&k, actor).await?;
    Ok(k.kid)
}

impl Keys {
    /// Loads the keys from the store, creating the first one; drops retired keys whose
    /// tokens can no longer be valid (both audited as the gateway).
    pub async fn load(store: &Store, issuer: &str) -> Result<Keys, GatewayError> {
        let t = now();
        let grace = ASSERTION_TTL.as_secs() as i64 + 60;
        let mut keys = Vec::new();
        for k in store.signing_keys().await? {
            match k.retired_at {
                Some(r) if t - r > grace => {
                    store.delete_signing_key(&k.kid, &Actor::gateway()).await?;
                }
                _ => keys.push(k),
            }
        }
        if !keys.iter().any(|k| k.retired_at.is_none()) {
            let k = generate_key()?;
            store.insert_signing_key(&k, &Actor::gateway()).await?;
            keys.push(k);
        }
        let active = keys
            .iter()
            .rev()
            .find(|k| k.retired_at.is_none())
            .ok_or_else(|| GatewayError::Io("no signing key".into()))?;
        let encoding = EncodingKey::from_ec_pem(active.private_pem.as_bytes())
            .map_err(|e| GatewayError::Io(format!("signing key {}: {e}", active.kid)))?;
        let jwks: Vec<serde_json::Value> = keys
            .iter()
            .filter_map(|k| serde_json::from_str(&k.public_jwk).ok())
            .collect();
        let csrf_key = {
            use sha2::Digest;
            sha2::Sha256::new()
                .chain_update(b"gatehouse-csrf-key\0")
                .chain_update(active.private_pem.as_bytes())
                .finalize()
                .into()
        };
        Ok(Keys {
            csrf_key,
            kid: active.kid.clone(),
            encoding,
            jwks: serde_json::json!({ "keys": jwks }).to_string(),
            issuer: issuer.to_string(),
            cache: moka::sync::Cache::builder()
                .weigher(|_, p: &Arc<Prepared>| p.weight())
                .max_capacity(PREPARED_CACHE_BYTES)
                .time_to_live(ASSERTION_TTL - Duration::from_secs(60))
                .build(),
            limited_logged: limited_log(),
        })
    }

    /// The key of the sign-in and sign-out forms' CSRF field (see
    /// `gatehouse_admin_ui::csrf::form_token`). It changes with the signing key, so a form
    /// left open across a key rotation asks to sign in again.
    pub fn csrf_key(&self) -> [u8; 32] {
        self.csrf_key
    }

    /// The JWKS document.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// The assertion and identity headers for `session` calling `app` (whose runtime id is
    /// `app_id`: a new one for every compiled definition), signed at most once per four
    /// minutes per session and app. The groups are chosen here, by `headers.groups_sent`.
    pub fn prepared(&self, app: &App, app_id: u64, s: &Session) -> Result<Arc<Prepared>, GatewayError> {
        let key = prepared_key(s, app_id);
        if let Some(p) = self.cache.get(&key).filter(|p| p.fits(s)) {
            return Ok(p);
        }
        let groups = &s.identity.groups;
        let p = match app.headers.groups_sent {
            GroupsSent::All => self.build(app, s, &all_groups(groups))?,
            GroupsSent::Referenced => self.build(app, s, &referenced_groups(app, groups))?,
            GroupsSent::Auto => self.build_within_budget(app, s)?,
        };
        let p = Arc::new(p);
        self.cache.insert(key, p.clone());
        Ok(p)
    }

    /// `groups_sent = "auto"`: all groups if what is added then fits the budget, else only
    /// the referenced ones. A groups header alone over [`LINE_BUDGET`] is found without
    /// signing anything.
    fn build_within_budget(&self, app: &App, s: &Session) -> Result<Prepared, GatewayError> {
        let all = all_groups(&s.identity.groups);
        let groups_line = "x-forwarded-groups: \r\n".len() + groups_header_len(&all);
        let over = if groups_line > LINE_BUDGET {
            HeaderSizes {
                largest_line: groups_line,
                total: groups_line,
            }
        } else {
            let p = self.build(app, s, &all)?;
            let sizes = p.sizes();
            if sizes.within_budget() {
                return Ok(p);
            }
            sizes
        };
        let mut p = self.build(app, s, &referenced_groups(app, &s.identity.groups))?;
        p.limited = true;
        self.log_limited(app, s, all.len(), over, &p);
        Ok(p)
    }

    /// Says (once a day per app) that an app was sent only the referenced groups, and how
    /// to send all of them.
    fn log_limited(&self, app: &App, s: &Session, all: usize, over: HeaderSizes, p: &Prepared) {
        if self.limited_logged.contains_key(&app.slug) {
            return;
        }
        self.limited_logged.insert(app.slug.clone(), ());
        tracing::warn!(
            app = %app.slug,
            user = %s.identity.user,
            groups = all,
            sent = p.groups_sent,
            "identity headers with all {all} groups of {} would take at least {} bytes ({} in one line), \
             over what common app servers accept ({LINE_BUDGET} a line, {TOTAL_BUDGET} together): \
             the app is sent only the {} groups its access names, for this and every such person \
             (logged once a day per app). To send every group anyway, set \
             headers.groups_sent = \"all\" (admin UI: Groups sent to the app)",
            s.identity.user,
            over.total,
            over.largest_line,
            p.groups_sent,
        );
    }

    /// The assertion, the Dash token (for apps with `headers.dash_token`) and the identity
    /// headers telling `app` that `s` is in `groups`.
    fn build(&self, app: &App, s: &Session, groups: &[String]) -> Result<Prepared, GatewayError> {
        let dash = if app.headers.dash_token {
            Some(self.sign_dash(s, groups)?)
        } else {
            None
        };
        Ok(Prepared::build(app, s, groups, self.sign(app, s, groups)?, dash))
    }

    fn sign(&self, app: &App, s: &Session, groups: &[String]) -> Result<Arc<str>, GatewayError> {
        let iat = now();
        let claims = Claims {
            iss: &self.issuer,
            aud: &app.slug,
            sub: s.identity.user.as_str(),
            email: s.email.as_deref(),
            name: s.display_name.as_deref(),
            groups,
            iat,
            exp: iat + ASSERTION_TTL.as_secs() as i64,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| GatewayError::Io(format!("signing assertion: {e}")))?
            .into())
    }

    /// The `kcIdToken` cookie value for `session` calling `app`: standard base64 of an ES256
    /// JWT (`kid` in the JWKS, `aud` [`DASH_AUDIENCE`], `preferred_username`, `email`,
    /// `groups` as the app is told them, 5 minutes); prepared with the headers.
    fn sign_dash(&self, s: &Session, groups: &[String]) -> Result<Arc<str>, GatewayError> {
        let iat = now();
        let user = s.identity.user.as_str();
        let claims = DashClaims {
            iss: &self.issuer,
            aud: DASH_AUDIENCE,
            sub: user,
            preferred_username: user,
            email: s.email.as_deref(),
            name: s.display_name.as_deref(),
            groups,
            iat,
            exp: iat + ASSERTION_TTL.as_secs() as i64,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let jwt = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| GatewayError::Io(format!("signing Dash token: {e}")))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(jwt).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_header_spellings() {
        for n in [
            "X-Forwarded-User",
            "x_forwarded_user",
            "X_FORWARDED-USER",
            "Remote-User",
            "remote_groups",
            "Plotly-User-Data",
            "X-Gatehouse-Assertion",
        ] {
            assert!(is_identity_header(n), "{n}");
        }
        for n in [
            "x-forwarded-for",
            "x-forwarded-proto",
            "user-agent",
            "x-forwarded-users",
        ] {
            assert!(!is_identity_header(n), "{n}");
        }
    }

    #[test]
    fn cookies_are_stripped_by_name() {
        let v = vec![
            "a=1; gatehouse_session=abc; b=2".to_string(),
            "gatehouse_csrf=x".to_string(),
        ];
        assert_eq!(strip_cookies(&v, &["gatehouse_session", "gatehouse_csrf"]), "a=1; b=2");
        assert_eq!(
            strip_cookies(&["gatehouse_session=1".to_string()], &["gatehouse_session"]),
            ""
        );
    }

    #[test]
    fn scrub_removes_a_clients_dash_token_and_add_cookie_appends() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("cookie", "a=1; kcIdToken=forged; KCIDTOKEN=x; gatehouse_session=s")
            .unwrap();
        scrub(&mut req, &["gatehouse_session".to_string()]);
        assert_eq!(req.headers.get("cookie").unwrap(), "a=1");
        add_cookie(&mut req, DASH_TOKEN_COOKIE, "dG9rZW4=").unwrap();
        assert_eq!(req.headers.get("cookie").unwrap(), "a=1; kcIdToken=dG9rZW4=");
        let mut bare = RequestHeader::build("GET", b"/", None).unwrap();
        add_cookie(&mut bare, DASH_TOKEN_COOKIE, "t").unwrap();
        assert_eq!(bare.headers.get("cookie").unwrap(), "kcIdToken=t");
        // A client's empty `Cookie` header gets the pair alone, no leading `; `.
        let mut empty = RequestHeader::build("GET", b"/", None).unwrap();
        empty.insert_header("cookie", "").unwrap();
        scrub(&mut empty, &["gatehouse_session".to_string()]);
        add_cookie(&mut empty, DASH_TOKEN_COOKIE, "t").unwrap();
        assert_eq!(empty.headers.get("cookie").unwrap(), "kcIdToken=t");
    }

    #[test]
    fn apps_cannot_set_gateway_cookies() {
        let names = vec!["gatehouse_session".to_string(), "gatehouse_csrf".to_string()];
        let mut h = http::HeaderMap::new();
        for v in [
            "theme=dark; Path=/",
            "Gatehouse_Session=planted; Path=/",
            " gatehouse_csrf =x",
            "gatehouse_sessionx=1",
        ] {
            h.append(http::header::SET_COOKIE, v.parse().unwrap());
        }
        assert!(sets_gateway_cookie(&h, &names));
        let kept: Vec<_> = without_gateway_cookies(&h, &names)
            .into_iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert_eq!(kept, ["theme=dark; Path=/", "gatehouse_sessionx=1"]);
    }

    /// A ready name replaces every copy of its header, in any spelling, and goes on the wire
    /// once, in lower case, beside the request's other headers with their own case kept.
    #[test]
    fn ready_names_replace_a_header_and_keep_the_wire_consistent() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("Host", "apps.example.com").unwrap();
        req.append_header("X-Forwarded-For", "6.6.6.6").unwrap();
        req.append_header("x-FORWARDED-for", "7.7.7.7").unwrap();
        req.append_header("Accept", "*/*").unwrap();
        assert!(req.has_case());
        req.insert_header_ready(&names::X_FORWARDED_FOR, http::HeaderValue::from_static("192.0.2.1"));
        req.insert_header_ready(&names::X_REAL_IP, http::HeaderValue::from_static("192.0.2.1"));
        req.insert_header_ready(&names::X_GATEHOUSE_ASSERTION, http::HeaderValue::from_static("a.b.c"));
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        let lines: Vec<&str> = wire.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 5, "{wire}");
        for line in [
            "Host: apps.example.com",
            "Accept: */*",
            "x-forwarded-for: 192.0.2.1",
            "x-real-ip: 192.0.2.1",
            "x-gatehouse-assertion: a.b.c",
        ] {
            assert_eq!(lines.iter().filter(|l| **l == line).count(), 1, "{line} in {wire}");
        }
        assert_eq!(req.headers.get_all("x-forwarded-for").iter().count(), 1);
    }

    #[test]
    fn scrub_removes_identity_headers_and_gateway_cookies_only() {
        let names = vec!["gatehouse_session".to_string()];
        let scrubbed = |cookies: &[&str]| {
            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            req.append_header("x_forwarded_user", "mallory").unwrap();
            req.append_header("Remote-Groups", "admins").unwrap();
            req.append_header("X-Forwarded-For", "10.0.0.1").unwrap();
            req.append_header("forwarded", "for=10.0.0.2").unwrap();
            req.append_header("X-Real-IP", "10.0.0.3").unwrap();
            req.append_header("x-forwarded-host", "evil.test").unwrap();
            req.append_header("x-forwarded-proto", "https").unwrap();
            req.append_header("x-forwarded-port", "1").unwrap();
            req.append_header("x-request-id", "kept").unwrap();
            for c in cookies {
                req.append_header("cookie", *c).unwrap();
            }
            scrub(&mut req, &names);
            assert!(!req.headers.keys().any(|k| is_identity_header(k.as_str())));
            for h in FORWARDING_HEADERS {
                assert!(!req.headers.contains_key(*h), "{h} kept");
            }
            // Only these: the case map pingora writes the request from must agree.
            let mut left: Vec<_> = req
                .headers
                .keys()
                .map(|k| k.as_str())
                .filter(|k| *k != "cookie")
                .collect();
            left.sort_unstable();
            assert_eq!(left, ["x-forwarded-port", "x-request-id"]);
            let mut wire = Vec::new();
            req.header_to_h1_wire(&mut wire);
            let wire = String::from_utf8(wire).unwrap();
            assert!(
                wire.contains("x-forwarded-port: 1\r\n") && wire.contains("x-request-id: kept\r\n"),
                "{wire}"
            );
            assert!(!wire.contains("10.0.0") && !wire.contains("evil"), "{wire}");
            req.headers
                .get_all("cookie")
                .iter()
                .map(|v| String::from_utf8(v.as_bytes().to_vec()).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(scrubbed(&["a=1; gatehouse_session=x; b=2"]), ["a=1; b=2"]);
        assert_eq!(scrubbed(&["a=1", " Gatehouse_Session =x"]), ["a=1"]);
        assert_eq!(scrubbed(&["gatehouse_session=x"]), Vec::<String>::new());
        assert_eq!(scrubbed(&["a=1;b=2", "c=3"]), ["a=1;b=2", "c=3"], "left as sent");
        assert_eq!(scrubbed(&["gatehouse_sessionx=1"]), ["gatehouse_sessionx=1"]);
        // A name an app's parser might trim to the gateway's (Unicode white space) goes too;
        // the bytes of other pairs go upstream as the client sent them, UTF-8 or not.
        assert_eq!(scrubbed(&["a=\u{e9}; \u{a0}gatehouse_session=x"]), ["a=\u{e9}"]);
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header(
            "cookie",
            http::HeaderValue::from_bytes(b"a=\xff; gatehouse_session=x; kcIdToken=y").unwrap(),
        )
        .unwrap();
        scrub(&mut req, &names);
        assert_eq!(req.headers.get("cookie").unwrap().as_bytes(), b"a=\xff");
    }

    #[test]
    fn cookie_lookup() {
        let mut h = http::HeaderMap::new();
        h.append(http::header::COOKIE, "a=1; s=xyz".parse().unwrap());
        assert_eq!(cookie(&h, "s"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), None);
    }

    pub(super) fn keys() -> Keys {
        let k = generate_key().unwrap();
        Keys {
            kid: k.kid.clone(),
            encoding: EncodingKey::from_ec_pem(k.private_pem.as_bytes()).unwrap(),
            jwks: String::new(),
            issuer: "test".into(),
            cache: moka::sync::Cache::new(100),
            limited_logged: limited_log(),
            csrf_key: [0; 32],
        }
    }

    fn app() -> App {
        app_named("a")
    }

    fn app_named(slug: &str) -> App {
        let toml = format!("[[apps]]\nslug = '{slug}'\nupstreams = ['127.0.0.1:1']\naccess = 'authenticated'");
        let c = gatehouse_config::Config::from_toml(&toml, std::path::Path::new("."), &gatehouse_config::ProcessEnv);
        c.expect("valid config").apps.remove(0)
    }

    fn session(id_hash: &str, user: &str, groups: &[&str]) -> Session {
        let mut s = Session::detached(gatehouse_policy::Identity {
            user: gatehouse_policy::UserName::new(user),
            groups: groups.iter().map(|g| gatehouse_policy::GroupName::new(g)).collect(),
            admin: false,
        });
        if !id_hash.is_empty() {
            s.key = crate::authn::session::key_of_hash(id_hash);
        }
        s
    }

    fn header<'a>(p: &'a Prepared, name: &str) -> &'a str {
        let (_, v) = p.headers.iter().find(|(n, _)| n.as_str() == name).expect(name);
        v.to_str().unwrap()
    }

    /// What is prepared for a session and app is reused while the session's identity is
    /// the same, and never handed to another session or to a changed identity.
    #[test]
    fn prepared_headers_are_reused_only_for_the_same_identity() {
        let (k, app) = (keys(), app());
        let id = "ab".repeat(32);
        let first = k.prepared(&app, 1, &session(&id, "alice", &["staff"])).unwrap();
        assert_eq!(header(&first, "x-forwarded-user"), "alice");
        assert_eq!(header(&first, "x-forwarded-groups"), "staff");
        assert_eq!(header(&first, "x-gatehouse-assertion"), first.assertion());
        // The cache weighs an entry by what it keeps alive: at least every value's bytes.
        let values: usize = first.headers.iter().map(|(_, v)| v.len()).sum();
        assert!(
            first.assertion().len() > 100 && first.weight() as usize > values,
            "{}",
            first.weight()
        );
        let again = k.prepared(&app, 1, &session(&id, "alice", &["staff"])).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "a hit: nothing built or signed again");
        // The same session after a re-check changed its groups: built again.
        let changed = k
            .prepared(&app, 1, &session(&id, "alice", &["staff", "finance"]))
            .unwrap();
        assert_eq!(header(&changed, "x-forwarded-groups"), "finance,staff");
        assert_ne!(changed.assertion(), first.assertion());
        // Another session whose hash shares the first 64 bits: its own headers.
        let twin = format!("{}{}", &id[..16], "cd".repeat(24));
        let other = k.prepared(&app, 1, &session(&twin, "bob", &[])).unwrap();
        assert_eq!(header(&other, "x-forwarded-user"), "bob");
        // Sessions without an id (judged without a store record) never share by accident.
        let carol = k.prepared(&app, 1, &session("", "carol", &[])).unwrap();
        let dave = k.prepared(&app, 1, &session("", "dave", &[])).unwrap();
        assert_eq!(header(&carol, "x-forwarded-user"), "carol");
        assert_eq!(header(&dave, "x-forwarded-user"), "dave");
        // Another app definition: its own entry.
        let second_app = k
            .prepared(&app, 2, &session(&id, "alice", &["staff", "finance"]))
            .unwrap();
        assert!(!Arc::ptr_eq(&second_app, &changed));
    }

    /// An app with `headers = { … }` as given, restricted to `finance` and `group-0007`.
    pub(super) fn app_with(headers: &str) -> App {
        let toml = format!(
            "[[apps]]\nslug = 'a'\nupstreams = ['127.0.0.1:1']\naccess = 'restricted'\n\
             allow_groups = ['finance', 'group-0007', 'Unheld']\nheaders = {{ {headers} }}"
        );
        let c = gatehouse_config::Config::from_toml(&toml, std::path::Path::new("."), &gatehouse_config::ProcessEnv);
        c.expect("valid config").apps.remove(0)
    }

    /// `group-0000` … for `n` groups.
    fn numbered(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("group-{i:04}")).collect()
    }

    pub(super) fn member_of(groups: &[String]) -> Session {
        let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
        session(&"ef".repeat(32), "alice", &refs)
    }

    /// Part `n` of a JWT (0: header, 1: claims), not verified: only what it says.
    fn jwt_part(jwt: &str, n: usize) -> serde_json::Value {
        let part = jwt.split('.').nth(n).expect("a JWT");
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap();
        serde_json::from_slice(&json).unwrap()
    }

    /// The `groups` claim of a JWT (not verified: only what it says).
    fn claimed_groups(jwt: &str) -> Vec<String> {
        serde_json::from_value(jwt_part(jwt, 1)["groups"].clone()).unwrap()
    }

    const EVERY_HEADER: &str = "remote_headers = true, plotly_user_data = true, dash_token = true";

    #[test]
    fn auto_sends_every_group_while_the_headers_fit() {
        let k = keys();
        let app = app_with(EVERY_HEADER);
        assert_eq!(app.headers.groups_sent, GroupsSent::Auto, "the default");
        let groups = numbered(20);
        let p = k.prepared(&app, 1, &member_of(&groups)).unwrap();
        assert!(!p.limited);
        assert_eq!(p.groups_sent, 20);
        assert_eq!(header(&p, "x-forwarded-groups"), groups.join(","));
        assert_eq!(header(&p, "remote-groups"), groups.join(","));
        assert_eq!(claimed_groups(p.assertion()), groups);
        assert!(p.sizes().within_budget(), "{:?}", p.sizes());
        assert!(!k.limited_logged.contains_key("a"), "nothing to log");
    }

    /// 2,000 groups: "auto" sends only the referenced ones — in every header, the assertion
    /// and the Dash token — and says so once; "all" sends all of them, over the budget.
    #[test]
    fn auto_sends_the_referenced_groups_past_the_budget_and_all_sends_all() {
        let k = keys();
        let groups = numbered(2000);
        let s = member_of(&groups);
        let auto = k.prepared(&app_with(EVERY_HEADER), 1, &s).unwrap();
        assert!(auto.limited);
        assert_eq!(auto.groups_sent, 1);
        assert_eq!(header(&auto, "x-forwarded-groups"), "group-0007");
        assert_eq!(header(&auto, "remote-groups"), "group-0007");
        assert_eq!(
            header(&auto, "plotly-user-data"),
            r#"{"groups":["group-0007"],"username":"alice"}"#
        );
        assert_eq!(claimed_groups(auto.assertion()), ["group-0007"]);
        let dash = base64::engine::general_purpose::STANDARD
            .decode(auto.dash_cookie.as_deref().unwrap())
            .unwrap();
        assert_eq!(claimed_groups(std::str::from_utf8(&dash).unwrap()), ["group-0007"]);
        assert!(auto.sizes().within_budget(), "{:?}", auto.sizes());
        assert!(k.limited_logged.contains_key("a"), "logged");

        let all = k
            .prepared(&app_with(&format!("{EVERY_HEADER}, groups_sent = 'all'")), 2, &s)
            .unwrap();
        assert!(!all.limited);
        assert_eq!(all.groups_sent, 2000);
        assert_eq!(claimed_groups(all.assertion()), groups);
        assert!(all.sizes().largest_line > 8192, "{:?}", all.sizes());

        let referenced = k
            .prepared(&app_with("groups_sent = 'referenced'"), 3, &member_of(&numbered(3)))
            .unwrap();
        assert_eq!(
            header(&referenced, "x-forwarded-groups"),
            "",
            "referenced stays referenced"
        );
    }

    /// Adding groups one at a time: all are sent up to the last set whose headers fit, the
    /// referenced ones from the first that does not.
    #[test]
    fn the_switch_happens_exactly_at_the_budget() {
        let k = keys();
        let app = app_with("");
        let all_app = app_with("groups_sent = 'all'");
        let mut last_fitting = None;
        for n in (1..400).step_by(7) {
            let s = member_of(&numbered(n));
            let auto = k.prepared(&app, n as u64, &s).unwrap();
            let all = k.build(&all_app, &s, &all_groups(&s.identity.groups)).unwrap();
            assert_eq!(
                auto.limited,
                !all.sizes().within_budget(),
                "{n} groups: {:?}",
                all.sizes()
            );
            if auto.limited {
                assert_eq!(auto.groups_sent, usize::from(n > 7), "{n}");
            } else {
                assert_eq!(auto.groups_sent, n);
                last_fitting = Some(n);
            }
        }
        let last = last_fitting.expect("small sets fit");
        assert!(
            (50..393).contains(&last),
            "the budget ends somewhere in the middle: {last}"
        );
    }

    /// What is prepared for one app or one session is never handed to another, however the
    /// calls interleave, and each keeps its own cache entry.
    #[test]
    fn prepared_headers_are_kept_per_app_and_per_session() {
        let (k, a, b) = (keys(), app(), app_named("b"));
        let id = "ab".repeat(32);
        let alice = session(&id, "alice", &["staff"]);
        let bob = session(&"12".repeat(32), "bob", &[]);
        let for_a = k.prepared(&a, 1, &alice).unwrap();
        let for_b = k.prepared(&b, 2, &alice).unwrap();
        assert_eq!(jwt_part(for_a.assertion(), 1)["aud"], "a");
        assert_eq!(jwt_part(for_b.assertion(), 1)["aud"], "b", "app b's own assertion");
        let bobs = k.prepared(&a, 1, &bob).unwrap();
        assert_eq!(header(&bobs, "x-forwarded-user"), "bob");
        assert!(Arc::ptr_eq(&for_a, &k.prepared(&a, 1, &alice).unwrap()), "still cached");
        assert!(Arc::ptr_eq(&for_b, &k.prepared(&b, 2, &alice).unwrap()));
        assert!(Arc::ptr_eq(&bobs, &k.prepared(&a, 1, &bob).unwrap()));
        // The same person in another session whose hash shares the first 64 bits.
        let twin = session(&format!("{}{}", &id[..16], "cd".repeat(24)), "alice", &["staff"]);
        let for_twin = k.prepared(&a, 1, &twin).unwrap();
        assert!(!Arc::ptr_eq(&for_twin, &for_a), "another session's entry");
    }

    /// Assertions and Dash tokens say who signed them (`kid`), for whom (`aud`), and last
    /// five minutes.
    #[test]
    fn assertions_and_dash_tokens_last_five_minutes() {
        let k = keys();
        let p = k
            .prepared(&app_with("dash_token = true"), 1, &member_of(&numbered(1)))
            .unwrap();
        let dash = base64::engine::general_purpose::STANDARD
            .decode(p.dash_cookie.as_deref().unwrap())
            .unwrap();
        for (jwt, aud) in [
            (p.assertion(), "a"),
            (std::str::from_utf8(&dash).unwrap(), DASH_AUDIENCE),
        ] {
            let claims = jwt_part(jwt, 1);
            assert_eq!(claims["aud"], aud);
            assert_eq!(claims["sub"], "alice");
            let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
            assert_eq!(exp - iat, 300, "{claims}");
            assert_eq!(jwt_part(jwt, 0)["kid"].as_str(), Some(k.kid.as_str()));
        }
    }

    /// [`Prepared::sizes`] counts what goes on the wire: `name: value` and CRLF per header,
    /// and the Dash token's `name=value` in the `Cookie` line.
    #[test]
    fn sizes_are_the_bytes_on_the_wire() {
        let k = keys();
        let groups = numbered(3);
        let p = k.build(&app_with(EVERY_HEADER), &member_of(&groups), &groups).unwrap();
        let lines: Vec<usize> = p
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {}\r\n", v.to_str().unwrap()).len())
            .chain([format!("{DASH_TOKEN_COOKIE}={}", p.dash_cookie.as_deref().unwrap()).len()])
            .collect();
        assert_eq!(lines.len(), 11);
        assert_eq!(
            p.sizes(),
            HeaderSizes {
                largest_line: *lines.iter().max().unwrap(),
                total: lines.iter().sum(),
            }
        );
    }

    #[test]
    fn the_budget_is_a_line_limit_and_a_total_limit() {
        let sizes = |largest_line, total| HeaderSizes { largest_line, total };
        assert!(sizes(LINE_BUDGET, TOTAL_BUDGET).within_budget(), "both limits included");
        assert!(sizes(10, 10).within_budget());
        assert!(
            !sizes(LINE_BUDGET + 1, LINE_BUDGET + 1).within_budget(),
            "one line too long"
        );
        assert!(!sizes(100, TOTAL_BUDGET + 1).within_budget(), "too much together");
    }

    /// A groups header line of exactly [`LINE_BUDGET`] bytes fits: under "auto" every group
    /// is sent (here one name of commas, each sent as `%2C`, so the groups line is the
    /// longest while the assertion stays short).
    #[test]
    fn a_groups_line_of_exactly_the_budget_is_sent_whole() {
        let k = keys();
        let overhead = "x-forwarded-groups: \r\n".len();
        let commas = ",".repeat((LINE_BUDGET - overhead) / 3);
        assert_eq!(overhead + 3 * commas.len(), LINE_BUDGET);
        let p = k.prepared(&app_with(""), 1, &member_of(&[commas])).unwrap();
        assert!(!p.limited);
        assert_eq!(p.groups_sent, 1);
        assert_eq!(p.sizes().largest_line, LINE_BUDGET);
    }

    /// A key's `Debug` names it and shows nothing secret.
    #[test]
    fn keys_debug_shows_the_key_id_only() {
        let k = keys();
        assert_eq!(format!("{k:?}"), format!("Keys {{ kid: {:?} }}", k.kid));
    }

    /// "Limited" is logged once a day per app.
    #[test]
    fn limited_groups_are_logged_once_a_day() {
        assert_eq!(limited_log().policy().time_to_live(), Some(Duration::from_secs(86_400)));
    }

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("keys.db")).await.unwrap();
        (store, dir)
    }

    /// The key ids a JWKS document publishes.
    fn published(jwks: &str) -> BTreeSet<String> {
        let doc: serde_json::Value = serde_json::from_str(jwks).unwrap();
        doc["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    }

    fn retired_at(at: i64) -> SigningKeyRecord {
        SigningKeyRecord {
            retired_at: Some(at),
            created_at: at - 3600,
            ..generate_key().unwrap()
        }
    }

    /// The first load creates a key; a retired key stays published while assertions it
    /// signed may still be valid (five minutes, and a minute of leeway) and is deleted from
    /// the store after that. Cached assertions are renewed a minute before they expire.
    #[tokio::test]
    async fn retired_keys_stay_published_while_their_assertions_may_be_valid() {
        let (store, _dir) = store().await;
        let first = Keys::load(&store, "https://gh.test").await.unwrap();
        assert_eq!(published(first.jwks()), BTreeSet::from([first.kid.clone()]));
        let t = now();
        let recent = retired_at(t - 300);
        let old = retired_at(t - 420);
        for k in [&recent, &old] {
            store.insert_signing_key(k, &Actor::cli()).await.unwrap();
        }
        let keys = Keys::load(&store, "https://gh.test").await.unwrap();
        assert_eq!(keys.kid, first.kid, "the active key stays");
        assert_eq!(keys.csrf_key(), first.csrf_key(), "and so does the CSRF key");
        assert_eq!(
            published(keys.jwks()),
            BTreeSet::from([first.kid.clone(), recent.kid.clone()])
        );
        let stored: BTreeSet<String> = store.signing_keys().await.unwrap().into_iter().map(|k| k.kid).collect();
        assert_eq!(stored, BTreeSet::from([first.kid.clone(), recent.kid]));
        assert_eq!(keys.cache.policy().time_to_live(), Some(Duration::from_secs(240)));
    }

    /// A rotation (on any replica) is taken up by `reload`: new assertions are signed with
    /// the new key, the old one stays published, and the CSRF key changes with it. A reload
    /// that finds nothing new keeps the keys and their cache; one that finds only another
    /// published key publishes it.
    #[tokio::test]
    async fn reload_takes_up_rotations_and_nothing_else() {
        let (store, _dir) = store().await;
        let ring = KeyRing::new(Keys::load(&store, "https://gh.test").await.unwrap());
        let first = ring.current();
        let (app, s) = (app(), member_of(&numbered(1)));
        let before = ring.prepared(&app, 1, &s).unwrap();
        ring.reload(&store).await.unwrap();
        assert!(Arc::ptr_eq(&ring.current(), &first), "nothing new: the same keys");
        assert!(Arc::ptr_eq(&before, &ring.prepared(&app, 1, &s).unwrap()), "and cache");

        let new_kid = rotate(&store, &Actor::cli()).await.unwrap();
        assert_ne!(new_kid, first.kid);
        ring.reload(&store).await.unwrap();
        let second = ring.current();
        assert_eq!(second.kid, new_kid);
        assert_ne!(second.csrf_key(), first.csrf_key());
        assert_eq!(
            published(&ring.jwks()),
            BTreeSet::from([first.kid.clone(), new_kid.clone()])
        );
        let after = ring.prepared(&app, 1, &s).unwrap();
        assert_eq!(jwt_part(after.assertion(), 0)["kid"].as_str(), Some(new_kid.as_str()));

        let extra = retired_at(now());
        store.insert_signing_key(&extra, &Actor::cli()).await.unwrap();
        ring.reload(&store).await.unwrap();
        assert_eq!(ring.current().kid, new_kid);
        assert!(published(&ring.jwks()).contains(&extra.kid));
    }

    #[test]
    fn session_id_hashes_are_lower_case_hex_sha256() {
        assert_eq!(
            crate::authn::session::hash_id("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn generated_keys_sign_and_verify() {
        let k = generate_key().unwrap();
        let enc = EncodingKey::from_ec_pem(k.private_pem.as_bytes()).unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_str(&k.public_jwk).unwrap();
        let dec = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            &serde_json::json!({"sub": "a", "exp": now() + 60}),
            &enc,
        )
        .unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
        v.validate_aud = false;
        assert!(jsonwebtoken::decode::<serde_json::Value>(&t, &dec, &v).is_ok());
    }
}

#[cfg(test)]
mod groups_header_tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn group_names_are_encoded_only_where_they_would_be_ambiguous() {
        let g = |names: &[&str]| groups_header(&names.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(g(&[]), "");
        assert_eq!(g(&["finance", "staff"]), "finance,staff");
        assert_eq!(g(&["staff,admins"]), "staff%2Cadmins");
        assert_eq!(g(&["r&d, europe", "staff"]), "r&d%2C europe,staff");
        assert_eq!(g(&["100%"]), "100%25");
        assert_eq!(g(&["a%2Cb"]), "a%252Cb", "an encoded-looking name stays itself");
        assert_eq!(g(&["cn=x,ou=g,dc=corp"]), "cn=x%2Cou=g%2Cdc=corp");
        assert_eq!(g(&["é ü", "x y"]), "é ü,x y", "other characters are left alone");
    }

    /// What an app does with the header: split on `,`, percent-decode each part.
    fn decode_groups(header: &str) -> Vec<String> {
        if header.is_empty() {
            return vec![];
        }
        header
            .split(',')
            .map(|p| {
                percent_encoding::percent_decode_str(p)
                    .decode_utf8()
                    .unwrap()
                    .into_owned()
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        /// Under "auto", whatever the person's groups, no identity header line and not all of
        /// them together go over the budget; and every group is sent exactly when all of them
        /// fit.
        #[test]
        fn auto_never_goes_over_the_budget(
            names in proptest::collection::btree_set("[a-zA-Z0-9 ,%&=-]{1,48}", 0..500),
            every_header in any::<bool>(),
        ) {
            let k = super::tests::keys();
            let headers = if every_header { "remote_headers = true, plotly_user_data = true, dash_token = true" } else { "" };
            let app = super::tests::app_with(headers);
            let names: Vec<String> = names.into_iter().collect();
            let s = super::tests::member_of(&names);
            let auto = k.prepared(&app, 1, &s).unwrap();
            prop_assert!(auto.sizes().within_budget(), "{:?}", auto.sizes());
            let all = k.build(&app, &s, &all_groups(&s.identity.groups)).unwrap();
            prop_assert_eq!(auto.limited, !all.sizes().within_budget());
            if !auto.limited {
                prop_assert_eq!(auto.groups_sent, all.groups_sent);
            }
        }

        /// `groups_header_len` is the length of `groups_header`.
        #[test]
        fn groups_header_len_is_exact(names in proptest::collection::vec("[a-z,% ]{0,12}", 0..8)) {
            prop_assert_eq!(groups_header_len(&names), groups_header(&names).len());
        }

        /// Splitting the header on `,` and percent-decoding each part gives back exactly the
        /// group names, whatever they contain.
        #[test]
        fn groups_header_round_trips(
            names in proptest::collection::btree_set(
                prop_oneof![any::<String>(), "[a-z,% 2C5]{1,12}"].prop_filter("non-empty", |s| !s.is_empty()),
                0..8,
            )
        ) {
            let names: Vec<String> = names.into_iter().collect();
            let header = groups_header(&names);
            prop_assert_eq!(decode_groups(&header), names.clone());
            prop_assert_eq!(header.matches(',').count(), names.len().saturating_sub(1));
        }
    }
}
