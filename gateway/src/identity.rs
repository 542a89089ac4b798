//! Telling apps who is calling: removing every identity header a client sent (any case,
//! `_` or `-`), removing the gateway's cookies from `Cookie`, then adding the identity
//! headers and the `X-Gatehouse-Assertion` JWT (ES256) for the app. Signing keys live in
//! the store; the JWKS publishes every key whose tokens may still be valid.

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

/// Lifetime of an assertion JWT.
pub const ASSERTION_TTL: Duration = Duration::from_secs(300);

/// Whether a header name is an identity header in some spelling (`X_Forwarded_User`, …).
pub fn is_identity_header(name: &str) -> bool {
    let normalized: String = name
        .chars()
        .map(|c| if c == '_' { '-' } else { c.to_ascii_lowercase() })
        .collect();
    IDENTITY_HEADERS.contains(&normalized.as_str())
}

/// Removes identity headers and the named cookies from a request going upstream.
pub fn scrub(req: &mut RequestHeader, cookie_names: &[&str]) {
    let doomed: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|k| is_identity_header(k.as_str()))
        .cloned()
        .collect();
    for name in doomed {
        req.remove_header(&name);
    }
    let cookies: Vec<String> = req
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    if cookies.is_empty() {
        return;
    }
    let kept = strip_cookies(&cookies, cookie_names);
    req.remove_header(&http::header::COOKIE);
    if !kept.is_empty() {
        // The value came from the client's own header, minus pairs: still a valid value.
        let _ = req.insert_header(http::header::COOKIE, kept);
    }
}

/// Joins `Cookie` header values, without the pairs named in `names`.
pub fn strip_cookies(values: &[String], names: &[&str]) -> String {
    values
        .iter()
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or("").trim();
            !names.iter().any(|n| n.eq_ignore_ascii_case(name))
        })
        .collect::<Vec<_>>()
        .join("; ")
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

/// The groups an app is told about: all, or only those its policy names.
pub fn groups_for(app: &App, groups: &BTreeSet<gatehouse_policy::GroupName>) -> Vec<String> {
    match app.headers.groups_sent {
        GroupsSent::All => groups.iter().map(|g| g.as_str().to_string()).collect(),
        GroupsSent::Referenced => app
            .allow_groups
            .iter()
            .map(|g| gatehouse_policy::GroupName::new(g))
            .filter(|g| groups.contains(g))
            .map(|g| g.as_str().to_string())
            .collect(),
    }
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

/// The headers to add for `session` calling `app`.
pub fn identity_headers(app: &App, s: &Session, assertion: &str) -> Vec<(&'static str, String)> {
    let user = s.identity.user.as_str().to_string();
    let groups = groups_for(app, &s.identity.groups).join(",");
    let email = s.email.clone().unwrap_or_default();
    let mut h = vec![
        ("x-forwarded-user", user.clone()),
        ("x-forwarded-email", email.clone()),
        ("x-forwarded-groups", groups.clone()),
        ("x-forwarded-preferred-username", user.clone()),
        ("x-gatehouse-assertion", assertion.to_string()),
    ];
    if app.headers.remote_headers {
        h.push(("remote-user", user.clone()));
        h.push(("remote-groups", groups));
        h.push(("remote-email", email));
        h.push(("remote-name", s.display_name.clone().unwrap_or_else(|| user.clone())));
    }
    if app.headers.plotly_user_data {
        let data = serde_json::json!({ "username": user, "groups": groups_for(app, &s.identity.groups) });
        h.push(("plotly-user-data", data.to_string()));
    }
    h
}

/// The active signing key and the published set.
pub struct Keys {
    kid: String,
    encoding: EncodingKey,
    jwks: String,
    issuer: String,
    cache: moka::sync::Cache<(String, usize), Arc<str>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("kid", &self.kid).finish()
    }
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
        Ok(Keys {
            kid: active.kid.clone(),
            encoding,
            jwks: serde_json::json!({ "keys": jwks }).to_string(),
            issuer: issuer.to_string(),
            cache: moka::sync::Cache::builder()
                .max_capacity(200_000)
                .time_to_live(ASSERTION_TTL - Duration::from_secs(60))
                .build(),
        })
    }

    /// The JWKS document.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// The assertion for `session` calling app number `app_index`, signed at most once per
    /// four minutes per session and app.
    pub fn assertion(&self, app: &App, app_index: usize, s: &Session) -> Result<Arc<str>, GatewayError> {
        let key = (s.id_hash.clone(), app_index);
        if let Some(t) = self.cache.get(&key) {
            return Ok(t);
        }
        let iat = now();
        let groups = groups_for(app, &s.identity.groups);
        let claims = Claims {
            iss: &self.issuer,
            aud: &app.slug,
            sub: s.identity.user.as_str(),
            email: s.email.as_deref(),
            name: s.display_name.as_deref(),
            groups: &groups,
            iat,
            exp: iat + ASSERTION_TTL.as_secs() as i64,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let token: Arc<str> = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| GatewayError::Io(format!("signing assertion: {e}")))?
            .into();
        self.cache.insert(key, token.clone());
        Ok(token)
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
    fn cookie_lookup() {
        let mut h = http::HeaderMap::new();
        h.append(http::header::COOKIE, "a=1; s=xyz".parse().unwrap());
        assert_eq!(cookie(&h, "s"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), None);
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
