//! SAML 2.0 sign-in (Gatehouse as service provider) with `samael` + libxmlsec1.
//!
//! samael verifies signatures (and reduces the document to what was signed, the defence
//! against signature wrapping) and the usual conditions; this module adds what it does not
//! guarantee: a provider refuses to start without an IdP signing certificate (samael would
//! silently skip verification), algorithms are pinned, exactly one assertion, no XML
//! comments or DTDs, single-use login records for `InResponseTo` and an assertion-ID replay
//! record, both in the store so that any replica can take the IdP's POST, signature checks
//! on the blocking pool, attribute → identity mapping, and single logout both ways (logout messages: one of
//! each parameter, the IdP's signature over exactly the bytes read, Destination,
//! IssueInstant and a replay check). Metadata loads and refreshes (IdP entity id, signing
//! certificate expiry) and refused responses are recorded in the provider's
//! [`Health`](crate::providers::Health) for the admin UI.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use gatehouse_config::{MetadataSource, Saml as SamlConfig, UserNamespace};
use gatehouse_policy::UserName;
use samael::crypto::{AllowedSignatureAlgorithm, ReduceMode};
use samael::metadata::{EntityDescriptor, HTTP_REDIRECT_BINDING};
use samael::schema::Assertion;
use samael::service_provider::{ServiceProvider, ServiceProviderBuilder};
use samael::traits::ToXml;
use serde::{Deserialize, Serialize};

use gatehouse_store::Store;

use super::session::NewIdentity;
use crate::GatewayError;

/// How long a started SAML sign-in may take.
const ATTEMPT_TTL: Duration = Duration::from_secs(600);
/// How long assertion ids are remembered (longer than any assertion is accepted).
const REPLAY_TTL: Duration = Duration::from_secs(3600);
/// How old a logout message may be (its IssueInstant), and how far ahead of our clock.
const LOGOUT_MAX_AGE: Duration = Duration::from_secs(300);
const LOGOUT_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Why a SAML sign-in or logout was refused — which check failed, in words an admin can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlError(pub String);

impl std::fmt::Display for SamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn refuse(why: impl Into<String>) -> SamlError {
    SamlError(why.into())
}

/// What a session keeps for single logout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SamlSessionData {
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub session_index: Option<String>,
}

/// A sign-in in flight, kept in the store (the IdP's POST may reach any replica) under its
/// RelayState, single use.
#[derive(Serialize, Deserialize)]
struct Attempt {
    request_id: String,
    rd: String,
    /// The browser's binding value, when the sign-in was started under TLS.
    binding: Option<String>,
}

fn attempt_key(relay_state: &str) -> String {
    format!("saml:{relay_state}")
}

/// One configured SAML provider.
pub struct SamlProvider {
    pub id: String,
    pub label: String,
    cfg: SamlConfig,
    /// Strict: every response must answer one of our requests.
    sp: RwLock<Arc<ServiceProvider>>,
    /// Accepts unsolicited (IdP-initiated) responses; only used when allowed and the
    /// response names no request.
    sp_unsolicited: RwLock<Arc<ServiceProvider>>,
    acs_url: String,
    slo_url: String,
    public_url: String,
    /// Login attempts and the assertion ids already used, shared by every replica.
    store: Arc<Store>,
    /// Metadata loads and refreshes and the last error, for the admin UI's Providers page.
    pub health: crate::providers::Health,
    /// For the Providers page's probe of the IdP (built once: building loads root certificates).
    http: reqwest::Client,
}

impl std::fmt::Debug for SamlProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamlProvider").field("id", &self.id).finish()
    }
}

fn algorithm(uri: &str) -> Option<AllowedSignatureAlgorithm> {
    Some(match uri {
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" => AllowedSignatureAlgorithm::RsaSha256,
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384" => AllowedSignatureAlgorithm::RsaSha384,
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512" => AllowedSignatureAlgorithm::RsaSha512,
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256" => AllowedSignatureAlgorithm::EcdsaSha256,
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384" => AllowedSignatureAlgorithm::EcdsaSha384,
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512" => AllowedSignatureAlgorithm::EcdsaSha512,
        _ => return None,
    })
}

/// Local names of the elements of an XML document, in order (a light scan; the document
/// has already been refused if it holds comments or a DTD).
fn element_names(xml: &str) -> Vec<&str> {
    xml.split('<')
        .skip(1)
        .filter(|tag| !tag.is_empty() && !tag.starts_with(['/', '?', '!']))
        .map(|tag| {
            let name = tag
                .split(|c: char| c.is_whitespace() || c == '>' || c == '/')
                .next()
                .unwrap_or(tag);
            name.rsplit(':').next().unwrap_or(name)
        })
        .collect()
}

/// samael announces single logout with the HTTP-POST binding and the SP certificate for
/// signing only; Gatehouse takes logout messages by HTTP-Redirect and decrypts assertions
/// with the same certificate, so the metadata says so.
fn adjust_metadata(xml: &str, slo_url: &str) -> String {
    let post = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
    let mut out = xml.replace(
        &format!("Binding=\"{post}\" Location=\"{slo_url}\""),
        &format!("Binding=\"{HTTP_REDIRECT_BINDING}\" Location=\"{slo_url}\""),
    );
    let open = "<md:KeyDescriptor use=\"signing\">";
    if let Some(a) = out.find(open) {
        if let Some(len) = out[a..].find("</md:KeyDescriptor>") {
            let end = a + len + "</md:KeyDescriptor>".len();
            let enc = out[a..end].replacen("use=\"signing\"", "use=\"encryption\"", 1);
            out.insert_str(end, &enc);
        }
    }
    out
}

/// An attribute of the message's root element (what precedes it — declaration, comments,
/// white space — skipped; character and predefined entity references decoded), read by an
/// XML parser so that every way of writing the attribute (either quote, any white space
/// before it or around `=`) is seen. `Ok(None)`: the root has no such attribute. `Err`: no
/// root element could be read, or its attributes are malformed or one is repeated — a
/// message whose addressing cannot be read is refused, never let through unchecked.
pub(crate) fn root_attribute(xml: &str, name: &str) -> Result<Option<String>, SamlError> {
    use quick_xml::events::Event;
    let unreadable = || refuse("the message's root element cannot be read as XML");
    let mut reader = quick_xml::Reader::from_str(xml);
    // Every event but the end consumes input: at most as many events as bytes.
    for _ in 0..=xml.len() {
        match reader.read_event().map_err(|_| unreadable())? {
            Event::Start(root) | Event::Empty(root) => {
                let mut found = None;
                // Every attribute is read (duplicates are an error), not only up to `name`.
                for a in root.attributes() {
                    let a = a.map_err(|_| unreadable())?;
                    if a.key.as_ref() == name.as_bytes() {
                        let v = a
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .map_err(|_| unreadable())?;
                        found = Some(v.into_owned());
                    }
                }
                return Ok(found);
            }
            Event::Eof => return Err(unreadable()),
            _ => {}
        }
    }
    Err(unreadable())
}

/// Structural checks on a decoded response before any parsing by samael.
pub fn precheck(xml: &str) -> Result<(), SamlError> {
    if xml.contains("<!DOCTYPE") || xml.contains("<!ENTITY") {
        return Err(refuse("the response contains a document type declaration"));
    }
    if xml.contains("<!--") {
        return Err(refuse(
            "the response contains XML comments (a known way to alter signed values)",
        ));
    }
    let names = element_names(xml);
    if names.first() != Some(&"Response") {
        return Err(refuse("the message is not a SAML Response"));
    }
    let assertions = names
        .iter()
        .filter(|n| **n == "Assertion" || **n == "EncryptedAssertion")
        .count();
    if assertions != 1 {
        return Err(refuse(format!(
            "the response holds {assertions} assertions; exactly one is accepted"
        )));
    }
    Ok(())
}

/// The XML of a posted `SAMLResponse` (base64, whitespace ignored), after [`precheck`].
/// Everything here runs before any signature is checked, on whatever anyone posts.
pub(crate) fn decode_response(saml_response: &str) -> Result<String, SamlError> {
    let compact: String = saml_response.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| refuse("the SAMLResponse is not base64"))?;
    let xml = String::from_utf8(bytes).map_err(|_| refuse("the SAMLResponse is not UTF-8"))?;
    precheck(&xml)?;
    Ok(xml)
}

/// Verifies the signatures of a prechecked response and reads its one assertion; `ids`:
/// the request ids it may answer (`None`: unsolicited). CPU work: call it off the async
/// workers.
pub(crate) fn verify_response(sp: &ServiceProvider, xml: &str, ids: Option<&[&str]>) -> Result<Assertion, SamlError> {
    // samael can panic on documents it does not expect; a response must never crash us.
    // The reduction is the strictest one: what is parsed is exactly the bytes xmlsec
    // digested for a verified signature. Every Signature in the document must verify; with
    // one, its element is used; with the Response and the Assertion both signed, the
    // Response (which holds the Assertion) is, and anything else (several signatures but
    // not exactly one over a Response) is refused. samael's default mode instead maps the
    // signed bytes back onto the parsed tree, cloning its set of kept nodes at every child:
    // quadratic, seconds for 2,000 attribute values.
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        sp.parse_xml_response_with_mode(xml, ids, ReduceMode::PreDigest)
    }))
    .map_err(|_| refuse("the response could not be read"))?
    .map_err(|e| refuse(describe(&e)))
}

fn inflate(data: &[u8]) -> Option<String> {
    let mut out = String::new();
    flate2::read::DeflateDecoder::new(data)
        .take(4 * 1024 * 1024)
        .read_to_string(&mut out)
        .ok()?;
    Some(out)
}

fn deflate_b64(xml: &str) -> String {
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = enc.write_all(xml.as_bytes());
    let bytes = enc.finish().unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn xml_escape(s: &str) -> String {
    html_escape::encode_double_quoted_attribute(s).into_owned()
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn new_id() -> String {
    format!("_{}", hex(&rand::random::<[u8; 16]>()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The parameters of the HTTP-Redirect binding that Gatehouse reads.
const REDIRECT_PARAMS: [&str; 5] = ["SAMLRequest", "SAMLResponse", "RelayState", "SigAlg", "Signature"];

/// `application/x-www-form-urlencoded` decoding of one query component (`+` is a space).
fn form_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// An HTTP-Redirect binding message as received: each parameter is the exact, still
/// URL-encoded text of the query, so the bytes whose signature is checked are the bytes
/// that are then decoded and read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectQuery<'a> {
    /// `SAMLRequest` or `SAMLResponse`.
    pub param: &'static str,
    pub message: &'a str,
    pub relay_state: Option<&'a str>,
    pub sig_alg: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Splits a query of the HTTP-Redirect binding. Refuses a query that has any of
/// `SAMLRequest`, `SAMLResponse`, `RelayState`, `SigAlg` and `Signature` more than once —
/// compared by decoded name, so `SAMLRe%71uest` is `SAMLRequest` — and one with both or
/// neither of `SAMLRequest` and `SAMLResponse`. Other parameters are ignored (nothing reads
/// them, and they are not signed).
pub fn parse_redirect_query(query: &str) -> Result<RedirectQuery<'_>, SamlError> {
    let mut found: [Option<&str>; 5] = [None; 5];
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = form_decode(name);
        if let Some(i) = REDIRECT_PARAMS.iter().position(|p| *p == name) {
            if found[i].replace(value).is_some() {
                return Err(refuse(format!("the logout message has {name} more than once")));
            }
        }
    }
    let [request, response, relay_state, sig_alg, signature] = found;
    let (param, message) = match (request, response) {
        (Some(m), None) => ("SAMLRequest", m),
        (None, Some(m)) => ("SAMLResponse", m),
        (Some(_), Some(_)) => return Err(refuse("the logout message has both a SAMLRequest and a SAMLResponse")),
        (None, None) => return Err(refuse("no SAMLRequest or SAMLResponse")),
    };
    Ok(RedirectQuery {
        param,
        message,
        relay_state,
        sig_alg,
        signature,
    })
}

impl RedirectQuery<'_> {
    /// What the binding signs: `SAMLRequest=…[&RelayState=…]&SigAlg=…` (or `SAMLResponse`), the
    /// values exactly as received, in this order whatever the query's.
    pub fn signed_bytes(&self) -> Option<String> {
        let mut s = format!("{}={}", self.param, self.message);
        if let Some(rs) = self.relay_state {
            s.push_str("&RelayState=");
            s.push_str(rs);
        }
        s.push_str("&SigAlg=");
        s.push_str(self.sig_alg?);
        Some(s)
    }

    /// The message's XML, refused unless its root is a `kind` (`LogoutRequest` or
    /// `LogoutResponse`) without DTD or comments.
    pub(crate) fn logout_xml(&self, kind: &str) -> Result<String, SamlError> {
        let xml = self.xml()?;
        if xml.contains("<!DOCTYPE") || xml.contains("<!ENTITY") || xml.contains("<!--") {
            return Err(refuse(format!("the {kind} contains a DTD or comments")));
        }
        if element_names(&xml).first() != Some(&kind) {
            return Err(refuse(format!("the {} is not a {kind}", self.param)));
        }
        Ok(xml)
    }

    /// The message's XML: URL-decoded, base64, raw DEFLATE (at most 4 MiB inflated).
    fn xml(&self) -> Result<String, SamlError> {
        // Some IdPs leave `+` of the base64 unencoded; it then reads as a space.
        let b64 = form_decode(self.message).replace(' ', "+");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| refuse(format!("the {} is not base64", self.param)))?;
        inflate(&raw).ok_or_else(|| refuse(format!("the {} is not deflated XML", self.param)))
    }
}

impl SamlProvider {
    /// Builds the provider from its configuration. Refuses an IdP metadata without a
    /// signing certificate, and unknown signature algorithms.
    pub fn new(
        id: &str,
        label: &str,
        cfg: &SamlConfig,
        public_url: &str,
        store: Arc<Store>,
    ) -> Result<SamlProvider, GatewayError> {
        let err = |m: String| GatewayError::Io(format!("SAML provider {id}: {m}"));
        let xml = match &cfg.idp_metadata {
            MetadataSource::File(p) => {
                std::fs::read_to_string(p).map_err(|e| err(format!("IdP metadata {}: {e}", p.display())))?
            }
            MetadataSource::Url(u) => fetch_metadata(u).map_err(|e| err(format!("IdP metadata {u}: {e}")))?,
        };
        let acs_url = format!("{public_url}/.gatehouse/saml/{id}/acs");
        let slo_url = format!("{public_url}/.gatehouse/saml/{id}/slo");
        let (sp, sp_unsolicited) = build_sps(id, cfg, &xml, public_url, &acs_url, &slo_url).map_err(err)?;
        let health = crate::providers::Health::default();
        note_metadata(&health, &sp);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| err(format!("HTTP client: {e}")))?;
        Ok(SamlProvider {
            id: id.to_string(),
            label: label.to_string(),
            cfg: cfg.clone(),
            sp: RwLock::new(Arc::new(sp)),
            sp_unsolicited: RwLock::new(Arc::new(sp_unsolicited)),
            acs_url,
            slo_url,
            public_url: public_url.to_string(),
            store,
            health,
            http,
        })
    }

    fn sp(&self) -> Arc<ServiceProvider> {
        self.sp
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    fn entity_id(&self, public_url: &str) -> String {
        self.cfg
            .entity_id
            .clone()
            .unwrap_or_else(|| format!("{public_url}/.gatehouse/saml/{}/metadata", self.id))
    }

    /// The SP metadata to hand to the IdP team.
    pub fn metadata(&self) -> Result<String, SamlError> {
        let md = self
            .sp()
            .metadata()
            .map_err(|e| refuse(format!("cannot build metadata: {e}")))?;
        let xml = md
            .to_string()
            .map_err(|e| refuse(format!("cannot write metadata: {e:?}")))?;
        Ok(adjust_metadata(&xml, &self.slo_url))
    }

    /// Starts a sign-in: the IdP URL (HTTP-Redirect binding) carrying an AuthnRequest, and
    /// a RelayState that refers to a login record holding where to go next.
    pub async fn start(&self, rd: &str, binding: Option<&str>) -> Result<String, SamlError> {
        let sp = self.sp();
        let sso = sp
            .sso_binding_location(HTTP_REDIRECT_BINDING)
            .ok_or_else(|| refuse("the IdP metadata has no HTTP-Redirect SingleSignOnService"))?;
        let req = sp
            .make_authentication_request(&sso)
            .map_err(|e| refuse(format!("AuthnRequest: {e}")))?;
        let relay = hex(&rand::random::<[u8; 16]>());
        let attempt = Attempt {
            request_id: req.id.clone(),
            rd: rd.to_string(),
            binding: binding.map(str::to_string),
        };
        let data = serde_json::to_string(&attempt).map_err(|e| refuse(format!("login record: {e}")))?;
        let expires = crate::authn::session::now() + ATTEMPT_TTL.as_secs() as i64;
        self.store
            .put_login_attempt(&attempt_key(&relay), &self.id, &data, expires)
            .await
            .map_err(|e| refuse(format!("the session store is unavailable ({e})")))?;
        let url = match &sp.key {
            Some(key) => req.signed_redirect(&relay, key),
            None => req.redirect(&relay),
        }
        .map_err(|e| refuse(format!("AuthnRequest: {e}")))?
        .ok_or_else(|| refuse("AuthnRequest has no destination"))?;
        Ok(url.to_string())
    }

    /// Checks a posted SAMLResponse. Returns the identity, the data for single logout and
    /// where to go next.
    pub async fn acs(
        &self,
        saml_response: &str,
        relay_state: Option<&str>,
        binding: Option<&str>,
    ) -> Result<(NewIdentity, SamlSessionData, String), SamlError> {
        let r = self.check_response(saml_response, relay_state, binding).await;
        match &r {
            Ok(_) => self.health.ok(),
            Err(e) => self.health.error(format!("sign-in refused: {e}")),
        }
        r
    }

    async fn check_response(
        &self,
        saml_response: &str,
        relay_state: Option<&str>,
        binding: Option<&str>,
    ) -> Result<(NewIdentity, SamlSessionData, String), SamlError> {
        let xml = decode_response(saml_response)?;
        // The Response element may be unsigned (only the assertion is); still, a response
        // addressed elsewhere is refused.
        if let Some(dest) = root_attribute(&xml, "Destination")? {
            if dest != self.acs_url {
                return Err(refuse("the response was sent to another Destination"));
            }
        }
        let attempt: Option<Attempt> = match relay_state {
            Some(r) => self
                .store
                .take_login_attempt(&attempt_key(r), crate::authn::session::now())
                .await
                .map_err(|e| refuse(format!("the session store is unavailable ({e})")))?
                .filter(|a| a.provider == self.id)
                .and_then(|a| serde_json::from_str(&a.data).ok()),
            None => None,
        };
        // A sign-in started in one browser cannot be completed in another (login CSRF).
        if let Some(expected) = attempt.as_ref().and_then(|a| a.binding.as_deref()) {
            if binding != Some(expected) {
                return Err(refuse("the sign-in was started in another browser"));
            }
        }
        let (sp, ids, rd) = match &attempt {
            Some(a) => (self.sp(), Some(vec![a.request_id.clone()]), a.rd.clone()),
            None if self.cfg.allow_idp_initiated && !xml.contains("InResponseTo=") => {
                let sp = self
                    .sp_unsolicited
                    .read()
                    .map(|s| s.clone())
                    .unwrap_or_else(|e| e.into_inner().clone());
                let rd = relay_state
                    .map(gatehouse_admin_ui::safe_redirect)
                    .unwrap_or_else(|| "/".into());
                (sp, None, rd)
            }
            None if !xml.contains("InResponseTo=") => {
                return Err(refuse(
                    "unsolicited (IdP-initiated) sign-in is not enabled for this provider",
                ))
            }
            None => {
                return Err(refuse(
                    "the response answers no sign-in started here (unknown, used or expired)",
                ))
            }
        };
        // Signature verification and parsing are CPU work (a 2,000-group response is
        // ~150 KB of XML): off the async workers, so one sign-in never delays requests.
        let assertion = tokio::task::spawn_blocking(move || {
            let id_refs: Vec<&str> = ids.iter().flatten().map(String::as_str).collect();
            verify_response(&sp, &xml, ids.as_ref().map(|_| id_refs.as_slice()))
        })
        .await
        .map_err(|_| refuse("the response could not be read"))??;
        let now = crate::authn::session::now();
        let first = self
            .store
            .first_sighting(
                &format!("saml:{}:{}", self.id, assertion.id),
                now + REPLAY_TTL.as_secs() as i64,
                now,
            )
            .await
            .map_err(|e| refuse(format!("the session store is unavailable ({e})")))?;
        if !first {
            return Err(refuse("this assertion was already used (replay)"));
        }
        let (who, data) = self.identity(&assertion)?;
        Ok((who, data, rd))
    }

    /// Whether this provider's users are named `<id>:<name>` (its own namespace, the
    /// default) rather than sharing the local accounts' names.
    pub fn own_namespace(&self) -> bool {
        self.cfg.user_namespace == UserNamespace::Own
    }

    /// The session user name for the IdP's `name`: `<id>:<name>` unless the provider shares
    /// the local namespace (`user_namespace = "shared"`).
    pub fn user_name(&self, name: &str) -> String {
        match self.cfg.user_namespace {
            UserNamespace::Own => UserName::qualified(&self.id, name).as_str().to_string(),
            UserNamespace::Shared => name.to_string(),
        }
    }

    fn identity(&self, a: &Assertion) -> Result<(NewIdentity, SamlSessionData), SamlError> {
        let name_id = a
            .subject
            .as_ref()
            .and_then(|s| s.name_id.as_ref())
            .ok_or_else(|| refuse("the assertion has no NameID"))?;
        let mut attrs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for st in a.attribute_statements.iter().flatten() {
            for attr in &st.attributes {
                let names = [attr.name.clone(), attr.friendly_name.clone()];
                for n in names.into_iter().flatten() {
                    let vals = attr.values.iter().filter_map(|v| v.value.clone());
                    attrs.entry(n).or_default().extend(vals);
                }
            }
        }
        let first = |n: &str| attrs.get(n).and_then(|v| v.first().cloned());
        let user = match &self.cfg.user_attribute {
            Some(attr) => first(attr).ok_or_else(|| refuse(format!("the assertion has no {attr} attribute")))?,
            None => name_id.value.trim().to_string(),
        };
        if user.is_empty() {
            return Err(refuse("the assertion names no user"));
        }
        let groups: Vec<String> = attrs
            .get(&self.cfg.groups_attribute)
            .into_iter()
            .flatten()
            .map(|g| self.cfg.group_map.get(g).cloned().unwrap_or_else(|| g.clone()))
            .collect();
        let session_index = a
            .authn_statements
            .iter()
            .flatten()
            .find_map(|s| s.session_index.clone());
        Ok((
            NewIdentity {
                username: self.user_name(&user),
                email: first(&self.cfg.email_attribute),
                display_name: first(&self.cfg.name_attribute),
                groups,
                admin: false,
                provider: self.id.clone(),
            },
            SamlSessionData {
                name_id: name_id.value.clone(),
                name_id_format: name_id.format.clone(),
                session_index,
            },
        ))
    }

    /// The IdP's SLO URL with a LogoutRequest for this session (SP-initiated logout).
    pub fn logout_url(&self, data: &SamlSessionData, public_url: &str) -> Option<String> {
        let sp = self.sp();
        let slo = sp.slo_binding_location(HTTP_REDIRECT_BINDING)?;
        let format = data
            .name_id_format
            .as_deref()
            .map(|f| format!(" Format=\"{}\"", xml_escape(f)))
            .unwrap_or_default();
        let index = data
            .session_index
            .as_deref()
            .map(|i| format!("<samlp:SessionIndex>{}</samlp:SessionIndex>", xml_escape(i)))
            .unwrap_or_default();
        let xml = format!(
            r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{now}" Destination="{dest}"><saml:Issuer>{issuer}</saml:Issuer><saml:NameID{format}>{name}</saml:NameID>{index}</samlp:LogoutRequest>"#,
            id = new_id(),
            now = now_iso(),
            dest = xml_escape(&slo),
            issuer = xml_escape(&self.entity_id(public_url)),
            name = xml_escape(&data.name_id),
        );
        let mut url = reqwest::Url::parse(&slo).ok()?;
        url.query_pairs_mut()
            .append_pair("SAMLRequest", &deflate_b64(&xml))
            .append_pair("RelayState", "signed-out");
        Some(url.to_string())
    }

    /// Handles a message at our SLO endpoint (HTTP-Redirect binding). Every parameter at most
    /// once; the IdP's signature is required on both kinds and checked over exactly the bytes
    /// then read; the message must come from the IdP, name this endpoint as its Destination,
    /// be issued within the last [`LOGOUT_MAX_AGE`], and not have been seen before (its ID, in
    /// the store shared by replicas). A LogoutRequest names the user whose sessions must end
    /// and gets a LogoutResponse URL; a LogoutResponse (to our request) needs no action.
    pub async fn slo(&self, query: &str, public_url: &str) -> Result<SloOutcome, SamlError> {
        let q = parse_redirect_query(query)?;
        let kind = if q.param == "SAMLRequest" {
            "LogoutRequest"
        } else {
            "LogoutResponse"
        };
        self.verify_redirect_signature(&q, kind)?;
        let xml = q.logout_xml(kind)?;
        let (id, issuer, destination, issued) = if kind == "LogoutRequest" {
            let m: samael::schema::LogoutRequest =
                xml.parse().map_err(|_| refuse("the LogoutRequest could not be read"))?;
            (m.id, m.issuer.and_then(|i| i.value), m.destination, m.issue_instant)
        } else {
            let m: samael::schema::LogoutResponse = xml
                .parse()
                .map_err(|_| refuse("the LogoutResponse could not be read"))?;
            (m.id, m.issuer.and_then(|i| i.value), m.destination, m.issue_instant)
        };
        if issuer != self.sp().idp_metadata.entity_id {
            return Err(refuse(format!("the {kind} comes from another issuer")));
        }
        // A signed message names where it was sent (SAML bindings 3.4.5.2): one signed for
        // another SP's endpoint is not ours to act on.
        if destination.as_deref() != Some(self.slo_url.as_str()) {
            return Err(refuse(format!("the {kind} was sent to another Destination")));
        }
        let now = chrono::Utc::now();
        let issued = issued.ok_or_else(|| refuse(format!("the {kind} has no IssueInstant")))?;
        let skew = chrono::Duration::from_std(LOGOUT_CLOCK_SKEW).unwrap_or_default();
        let max_age = chrono::Duration::from_std(LOGOUT_MAX_AGE).unwrap_or_default();
        if issued > now + skew {
            return Err(refuse(format!("the {kind} was issued in the future")));
        }
        if issued < now - max_age {
            return Err(refuse(format!("the {kind} is too old (issued {issued})")));
        }
        if let Some(end) = root_attribute(&xml, "NotOnOrAfter")? {
            let end = chrono::DateTime::parse_from_rfc3339(&end)
                .map_err(|_| refuse(format!("the {kind} has an unreadable NotOnOrAfter")))?;
            if now - skew >= end {
                return Err(refuse(format!("the {kind} has expired")));
            }
        }
        let id = id
            .filter(|i| !i.is_empty())
            .ok_or_else(|| refuse(format!("the {kind} has no ID")))?;
        let t = crate::authn::session::now();
        let first = self
            .store
            .first_sighting(
                &format!("saml-logout:{}:{id}", self.id),
                t + REPLAY_TTL.as_secs() as i64,
                t,
            )
            .await
            .map_err(|e| refuse(format!("the session store is unavailable ({e})")))?;
        if !first {
            return Err(refuse(format!("this {kind} was already used (replay)")));
        }
        if kind == "LogoutResponse" {
            return Ok(SloOutcome::LoggedOut);
        }
        let req: samael::schema::LogoutRequest =
            xml.parse().map_err(|_| refuse("the LogoutRequest could not be read"))?;
        let name_id = req
            .name_id
            .as_ref()
            .map(|n| n.value.clone())
            .ok_or_else(|| refuse("the LogoutRequest names no user"))?;
        let sp = self.sp();
        let slo = sp
            .slo_binding_location(HTTP_REDIRECT_BINDING)
            .ok_or_else(|| refuse("the IdP has no SLO endpoint"))?;
        let resp = format!(
            r#"<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{now}" Destination="{dest}" InResponseTo="{irt}"><saml:Issuer>{issuer}</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status></samlp:LogoutResponse>"#,
            id = new_id(),
            now = now_iso(),
            dest = xml_escape(&slo),
            irt = xml_escape(req.id.as_deref().unwrap_or("")),
            issuer = xml_escape(&self.entity_id(public_url)),
        );
        let mut url = reqwest::Url::parse(&slo).map_err(|_| refuse("bad SLO URL in IdP metadata"))?;
        url.query_pairs_mut().append_pair("SAMLResponse", &deflate_b64(&resp));
        if let Some(rs) = q.relay_state {
            url.query_pairs_mut().append_pair("RelayState", &form_decode(rs));
        }
        Ok(SloOutcome::EndSessions {
            name_id,
            session_index: req.session_index.clone(),
            respond_to: url.to_string(),
        })
    }

    /// Verifies the HTTP-Redirect binding signature (`Signature` with `SigAlg` over
    /// [`RedirectQuery::signed_bytes`]) with the IdP's signing certificates.
    fn verify_redirect_signature(&self, q: &RedirectQuery<'_>, kind: &str) -> Result<(), SamlError> {
        let (Some(signed), Some(sig_alg), Some(signature)) = (q.signed_bytes(), q.sig_alg, q.signature) else {
            return Err(refuse(format!("the {kind} is not signed")));
        };
        let alg = form_decode(sig_alg);
        if !self.cfg.allowed_signature_algorithms.iter().any(|a| a == &alg) {
            return Err(refuse(format!("signature algorithm {alg} is not allowed")));
        }
        let digest = match alg.as_str() {
            a if a.ends_with("sha256") => openssl::hash::MessageDigest::sha256(),
            a if a.ends_with("sha384") => openssl::hash::MessageDigest::sha384(),
            a if a.ends_with("sha512") => openssl::hash::MessageDigest::sha512(),
            a if a.ends_with("sha1") => openssl::hash::MessageDigest::sha1(),
            _ => return Err(refuse("unknown signature algorithm")),
        };
        let sig = base64::engine::general_purpose::STANDARD
            .decode(form_decode(signature).replace(' ', "+"))
            .map_err(|_| refuse("bad signature encoding"))?;
        let certs = self.sp().idp_signing_certs().ok().flatten().unwrap_or_default();
        for der in certs {
            let Ok(cert) = openssl::x509::X509::from_der(der.der_data()) else {
                continue;
            };
            let Ok(key) = cert.public_key() else { continue };
            let Ok(mut v) = openssl::sign::Verifier::new(digest, &key) else {
                continue;
            };
            if v.update(signed.as_bytes()).is_ok() && v.verify(&sig).unwrap_or(false) {
                return Ok(());
            }
        }
        Err(refuse(format!(
            "the {kind}'s signature does not verify with the IdP's certificate"
        )))
    }

    /// The IdP metadata URL and refresh interval, when the metadata comes from a URL.
    pub fn metadata_url(&self) -> Option<(&str, Duration)> {
        match &self.cfg.idp_metadata {
            MetadataSource::Url(u) => Some((u.as_str(), self.cfg.metadata_refresh)),
            MetadataSource::File(_) => None,
        }
    }

    /// Fetches the IdP metadata again (URL sources only). On any failure — unreachable,
    /// unreadable, no signing certificate — the last good copy stays in use.
    pub async fn refresh_metadata(&self) -> Result<(), String> {
        let r = self.fetch_and_swap_metadata().await;
        let t = crate::authn::session::now();
        self.health
            .update(|h| h.last_refresh = Some((t, r.as_ref().err().cloned())));
        r
    }

    async fn fetch_and_swap_metadata(&self) -> Result<(), String> {
        let Some((url, _)) = self.metadata_url() else {
            return Ok(());
        };
        let url = url.to_string();
        let xml = tokio::task::spawn_blocking(move || fetch_metadata(&url))
            .await
            .map_err(|e| e.to_string())??;
        let (sp, unsolicited) = build_sps(
            &self.id,
            &self.cfg,
            &xml,
            &self.public_url,
            &self.acs_url,
            &self.slo_url,
        )?;
        note_metadata(&self.health, &sp);
        if let Ok(mut s) = self.sp.write() {
            *s = Arc::new(sp);
        }
        if let Ok(mut s) = self.sp_unsolicited.write() {
            *s = Arc::new(unsolicited);
        }
        Ok(())
    }

    pub fn acs_url(&self) -> &str {
        &self.acs_url
    }

    /// Where the IdP metadata comes from, in words.
    pub fn metadata_source(&self) -> String {
        match &self.cfg.idp_metadata {
            MetadataSource::File(p) => format!("file {}", p.display()),
            MetadataSource::Url(u) => format!(
                "{u} (refreshed every {})",
                humantime_secs(self.cfg.metadata_refresh.as_secs())
            ),
        }
    }

    /// Asks the IdP's sign-in endpoint (HTTP-Redirect binding) for anything: any HTTP answer
    /// means reachable. For the Providers page.
    pub async fn probe(&self) -> Result<(), String> {
        let sso = self
            .sp()
            .sso_binding_location(HTTP_REDIRECT_BINDING)
            .ok_or_else(|| "the IdP metadata has no HTTP-Redirect SingleSignOnService".to_string())?;
        match self.http.get(&sso).send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("{sso}: {e}")),
        }
    }

    pub fn slo_url(&self) -> &str {
        &self.slo_url
    }
}

/// Records the IdP entity id and the earliest signing-certificate expiry of freshly loaded
/// metadata.
fn note_metadata(health: &crate::providers::Health, sp: &ServiceProvider) {
    let entity = sp.idp_metadata.entity_id.clone();
    let expiry = sp
        .idp_signing_certs()
        .ok()
        .flatten()
        .unwrap_or_default()
        .iter()
        .filter_map(|c| cert_not_after(c.der_data()))
        .min();
    let t = crate::authn::session::now();
    health.update(|h| {
        h.metadata_loaded_at = Some(t);
        h.idp_entity_id = entity;
        h.cert_expires_at = expiry;
    });
}

/// A DER certificate's `notAfter` in epoch seconds.
pub fn cert_not_after(der: &[u8]) -> Option<i64> {
    let cert = openssl::x509::X509::from_der(der).ok()?;
    let epoch = openssl::asn1::Asn1Time::from_unix(0).ok()?;
    let d = epoch.diff(cert.not_after()).ok()?;
    Some(i64::from(d.days) * 86_400 + i64::from(d.secs))
}

fn humantime_secs(s: u64) -> String {
    crate::providers::ago(i64::try_from(s).unwrap_or(i64::MAX))
}

/// What the SLO endpoint must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SloOutcome {
    /// Our own logout came back: show the signed-out page.
    LoggedOut,
    /// The IdP ends this user's sessions; then send the browser to `respond_to`.
    EndSessions {
        name_id: String,
        session_index: Option<String>,
        respond_to: String,
    },
}

fn fetch_metadata(url: &str) -> Result<String, String> {
    // Startup only: a blocking fetch on a helper thread keeps this free of runtimes.
    let url = url.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let r = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| e.to_string())?
                .get(&url)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            r.error_for_status()
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())
        })
    })
    .join()
    .map_err(|_| "metadata fetch failed".to_string())?
}

pub(crate) fn build_sps(
    id: &str,
    cfg: &SamlConfig,
    idp_xml: &str,
    public_url: &str,
    acs_url: &str,
    slo_url: &str,
) -> Result<(ServiceProvider, ServiceProvider), String> {
    let idp: EntityDescriptor = idp_xml.parse().map_err(|e| format!("IdP metadata is not valid: {e}"))?;
    let algs: Vec<AllowedSignatureAlgorithm> = cfg
        .allowed_signature_algorithms
        .iter()
        .map(|a| algorithm(a).ok_or_else(|| format!("unknown signature algorithm {a}")))
        .collect::<Result<_, _>>()?;
    let (key, cert) = match (&cfg.sp_key, &cfg.sp_cert) {
        (Some(k), Some(c)) => {
            let key =
                openssl::pkey::PKey::private_key_from_pem(k.expose().as_bytes()).map_err(|e| format!("sp_key: {e}"))?;
            let pem = std::fs::read(c).map_err(|e| format!("sp_cert {}: {e}", c.display()))?;
            let der = openssl::x509::X509::from_pem(&pem)
                .and_then(|x| x.to_der())
                .map_err(|e| format!("sp_cert: {e}"))?;
            (Some(key), Some(samael::crypto::CertificateDer::from(der)))
        }
        _ => (None, None),
    };
    let entity_id = cfg
        .entity_id
        .clone()
        .unwrap_or_else(|| format!("{public_url}/.gatehouse/saml/{id}/metadata"));
    let build = |unsolicited: bool| {
        let mut b = ServiceProviderBuilder::default();
        b.entity_id(entity_id.clone())
            .metadata_url(entity_id.clone())
            .acs_url(acs_url.to_string())
            .slo_url(slo_url.to_string())
            .idp_metadata(idp.clone())
            .allow_idp_initiated(unsolicited)
            .allowed_signature_algorithms(algs.clone())
            .max_clock_skew(chrono::Duration::seconds(60))
            .max_issue_delay(chrono::Duration::seconds(300));
        if let (Some(k), Some(c)) = (&key, &cert) {
            b.key(k.clone()).certificate(c.clone());
        }
        b.build().map_err(|e| e.to_string())
    };
    let strict = build(false)?;
    // samael skips signature checks when the IdP metadata has no signing certificate.
    match strict.idp_signing_certs() {
        Ok(Some(c)) if !c.is_empty() => {}
        _ => {
            return Err("the IdP metadata carries no signing certificate; refusing to accept unsigned sign-ins".into())
        }
    }
    Ok((strict, build(true)?))
}

fn describe(e: &samael::service_provider::Error) -> String {
    use samael::service_provider::Error as E;
    match e {
        E::FailedToValidateSignature => "the signature is missing or does not verify with the IdP's certificate".into(),
        E::DestinationValidationError { .. } => "the response was sent to another Destination".into(),
        E::AssertionRecipientMismatch { .. } => "the assertion is for another Recipient".into(),
        E::AssertionConditionAudienceRestrictionFailed { .. } => "the assertion is for another audience".into(),
        E::AssertionInResponseToInvalid { .. } | E::ResponseInResponseToInvalid { .. } => {
            "the response answers another request (InResponseTo)".into()
        }
        E::AssertionExpired { .. }
        | E::ResponseExpired { .. }
        | E::AssertionConditionExpired { .. }
        | E::AssertionSubjectConfirmationExpired { .. } => "the assertion has expired".into(),
        E::AssertionConditionExpiredBefore { .. } | E::AssertionSubjectConfirmationExpiredBefore { .. } => {
            "the assertion is not valid yet".into()
        }
        E::AssertionIssuerMismatch { .. } | E::ResponseIssuerMismatch { .. } => {
            "the response comes from another issuer".into()
        }
        E::ResponseBadStatusCode { code } => format!("the IdP refused the sign-in ({code})"),
        E::FailedToDecryptAssertion | E::MissingPrivateKeySP => "the encrypted assertion could not be decrypted".into(),
        other => format!("the response is not valid ({other})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precheck_counts_assertions_and_refuses_comments() {
        let one = r#"<samlp:Response xmlns:samlp="p"><saml:Assertion ID="a"><saml:NameID>x</saml:NameID></saml:Assertion></samlp:Response>"#;
        assert!(precheck(one).is_ok());
        let two = one.replace("</samlp:Response>", "<Assertion ID=\"b\"/></samlp:Response>");
        assert!(precheck(&two).unwrap_err().0.contains("2 assertions"));
        let none = r#"<samlp:Response xmlns:samlp="p"></samlp:Response>"#;
        assert!(precheck(none).is_err());
        let comment = one.replace(">x<", ">alice<!---->.evil<");
        assert!(precheck(&comment).unwrap_err().0.contains("comments"));
        // A DTD is refused for itself: the same document with its one assertion passes
        // without it.
        let dtd = format!("<!DOCTYPE x [<!ENTITY a 'b'>]>{one}");
        assert!(precheck(&dtd).unwrap_err().0.contains("document type declaration"));
        let entity = format!("<!ENTITY a 'b'>{one}");
        assert!(precheck(&entity).unwrap_err().0.contains("document type declaration"));
        assert!(precheck("<saml:Assertion/>").is_err());
        let enc = r#"<Response><EncryptedAssertion/></Response>"#;
        assert!(precheck(enc).is_ok());
    }

    #[test]
    fn posted_responses_are_base64_with_any_line_breaks() {
        let one = r#"<samlp:Response xmlns:samlp="p"><saml:Assertion ID="a"/></samlp:Response>"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(one);
        let wrapped: String = b64
            .as_bytes()
            .chunks(20)
            .map(|c| format!("{}\r\n ", std::str::from_utf8(c).unwrap()))
            .collect();
        assert_eq!(decode_response(&wrapped).unwrap(), one);
        assert!(decode_response("not base64!").unwrap_err().0.contains("not base64"));
        let latin1 = base64::engine::general_purpose::STANDARD.encode(b"<Response>\xff</Response>");
        assert!(decode_response(&latin1).unwrap_err().0.contains("UTF-8"));
    }

    #[test]
    fn redirect_messages_inflate_to_at_most_4_mib() {
        let big = "a".repeat(5 * 1024 * 1024);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(deflate_b64(&big))
            .unwrap();
        assert_eq!(inflate(&raw).map(|s| s.len()), Some(4 * 1024 * 1024));
        assert!(inflate(b"not deflate").is_none());
    }

    #[test]
    fn logout_messages_must_be_plain_and_of_their_kind() {
        let req = r#"<samlp:LogoutRequest xmlns:samlp="p" ID="x"><saml:NameID>a</saml:NameID></samlp:LogoutRequest>"#;
        let query = |xml: &str| format!("SAMLRequest={}", deflate_b64(xml));
        let read = |xml: &str, kind: &str| {
            let q = query(xml);
            parse_redirect_query(&q)
                .and_then(|r| r.logout_xml(kind))
                .map_err(|e| e.0)
        };
        assert_eq!(read(req, "LogoutRequest").unwrap(), req);
        assert!(read(req, "LogoutResponse")
            .unwrap_err()
            .contains("is not a LogoutResponse"));
        for (bad, why) in [
            (format!("<!DOCTYPE x>{req}"), "DTD"),
            (format!("<!ENTITY a 'b'>{req}"), "DTD"),
            (req.replace(">a<", ">a<!-- c --><"), "comments"),
        ] {
            assert!(
                read(&bad, "LogoutRequest").unwrap_err().contains("DTD or comments"),
                "{why}"
            );
        }
    }

    #[test]
    fn certificate_expiry_is_read_in_seconds_since_1970() {
        let mut params = rcgen::CertificateParams::new(vec!["idp.test".to_string()]).unwrap();
        // Not at midnight, so that the seconds within the day count too.
        params.not_after = rcgen::date_time_ymd(2031, 2, 3) + std::time::Duration::from_secs(3661);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        // 2031-02-03T01:01:01Z
        assert_eq!(cert_not_after(cert.der()), Some(1_927_843_200 + 3661));
        assert_eq!(cert_not_after(b"not a certificate"), None);
    }

    #[test]
    fn signature_algorithms_are_the_sha2_ones_only() {
        use AllowedSignatureAlgorithm as A;
        let more = "http://www.w3.org/2001/04/xmldsig-more#";
        let known = [
            ("rsa-sha256", A::RsaSha256),
            ("rsa-sha384", A::RsaSha384),
            ("rsa-sha512", A::RsaSha512),
            ("ecdsa-sha256", A::EcdsaSha256),
            ("ecdsa-sha384", A::EcdsaSha384),
            ("ecdsa-sha512", A::EcdsaSha512),
        ];
        for (name, want) in known {
            let got = algorithm(&format!("{more}{name}"));
            assert_eq!(format!("{got:?}"), format!("{:?}", Some(want)), "{name}");
        }
        for refused in [
            "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1",
            "http://www.w3.org/2001/04/xmldsig-more#RSA-SHA256",
            "",
        ] {
            assert!(algorithm(refused).is_none(), "{refused}");
        }
    }

    #[test]
    fn sha1_cannot_be_configured() {
        // `build_sps` refuses an algorithm without a mapping, so a provider naming SHA-1
        // does not start.
        assert_eq!(algorithm("http://www.w3.org/2000/09/xmldsig#rsa-sha1"), None);
        assert_eq!(algorithm("http://www.w3.org/2000/09/xmldsig#dsa-sha1"), None);
        assert_eq!(
            algorithm("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"),
            Some(AllowedSignatureAlgorithm::RsaSha256)
        );
        assert_eq!(
            algorithm("http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512"),
            Some(AllowedSignatureAlgorithm::EcdsaSha512)
        );
    }

    #[test]
    fn root_attributes() {
        let x = r#"<?xml version="1.0"?><samlp:Response ID="r" Destination="http://a/acs?x=1&amp;y=2"><Assertion Destination="no"/></samlp:Response>"#;
        assert_eq!(
            root_attribute(x, "Destination").unwrap().as_deref(),
            Some("http://a/acs?x=1&y=2")
        );
        assert_eq!(root_attribute(x, "Missing").unwrap(), None);
        // Every spelling XML allows is read: single quotes, any white space before the
        // name and around `=`, character references; a prefixed name is another attribute.
        for doc in [
            "<R Destination='http://a/acs'/>",
            "<R\n\tDestination = \"http://a/acs\">x</R>",
            "<!-- c --><R ID=\"1\"\r\nDestination=\"http://a&#x2F;acs\" >",
            "<?xml version=\"1.0\"?>\n<p:R x:Destination=\"no\" Destination=\"http://a/acs\"/>",
        ] {
            assert_eq!(
                root_attribute(doc, "Destination").unwrap().as_deref(),
                Some("http://a/acs"),
                "{doc}"
            );
        }
        // Only the root's own attributes.
        assert_eq!(
            root_attribute("<R><A Destination=\"x\"/></R>", "Destination").unwrap(),
            None
        );
        // Unreadable: refused, not taken as "no such attribute".
        for bad in [
            "<R Destination=\"a\" Destination=\"b\"/>",
            "<R Destination=a/>",
            "<R Destination=\"a&nbsp;\"/>",
            "no element",
            "",
        ] {
            assert!(root_attribute(bad, "Destination").is_err(), "{bad}");
        }
    }

    #[test]
    fn metadata_announces_redirect_logout_and_encryption() {
        let md = r#"<md:SPSSODescriptor><md:KeyDescriptor use="signing"><ds:KeyInfo>C</ds:KeyInfo></md:KeyDescriptor><md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="http://g/slo"/></md:SPSSODescriptor>"#;
        let out = adjust_metadata(md, "http://g/slo");
        assert!(out.contains(r#"Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="http://g/slo""#));
        assert!(out.contains(r#"<md:KeyDescriptor use="encryption"><ds:KeyInfo>C</ds:KeyInfo></md:KeyDescriptor>"#));
    }

    #[test]
    fn element_names_skip_declarations_and_closing_tags() {
        assert_eq!(element_names("<?xml version='1.0'?><a:B x='1'><C/></a:B>"), ["B", "C"]);
        assert_eq!(element_names("<A\n\tx='1'>t</A><B>u<C>"), ["A", "B", "C"]);
        assert_eq!(element_names("<!DOCTYPE x><p:q:R>"), ["R"]);
        assert_eq!(element_names("text <"), Vec::<&str>::new());
        assert_eq!(element_names(""), Vec::<&str>::new());
    }
}

#[cfg(test)]
mod redirect_query_tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn one_of_each_parameter_exactly_as_received() {
        let q = parse_redirect_query("SigAlg=a%3Ab&Signature=s%2B%3D&x=1&SAMLRequest=m%2Bn&RelayState=r+s").unwrap();
        assert_eq!(
            q,
            RedirectQuery {
                param: "SAMLRequest",
                message: "m%2Bn",
                relay_state: Some("r+s"),
                sig_alg: Some("a%3Ab"),
                signature: Some("s%2B%3D"),
            }
        );
        // Signed in the binding's order, whatever the query's, with the encoded values.
        assert_eq!(
            q.signed_bytes().unwrap(),
            "SAMLRequest=m%2Bn&RelayState=r+s&SigAlg=a%3Ab"
        );
        let r = parse_redirect_query("SAMLResponse=m&SigAlg=a").unwrap();
        assert_eq!(r.param, "SAMLResponse");
        assert_eq!(r.signed_bytes().unwrap(), "SAMLResponse=m&SigAlg=a");
        assert_eq!(parse_redirect_query("SAMLResponse=m").unwrap().signed_bytes(), None);
    }

    #[test]
    fn duplicated_or_conflicting_parameters_are_refused() {
        for (query, why) in [
            (
                "SAMLRequest=forged&SAMLRequest=signed&SigAlg=a&Signature=s",
                "more than once",
            ),
            (
                "SAMLRequest=signed&SigAlg=a&Signature=s&SAMLRequest=forged",
                "more than once",
            ),
            (
                "SAMLRe%71uest=forged&SAMLRequest=signed&SigAlg=a&Signature=s",
                "more than once",
            ),
            (
                "SAMLRequest=m&RelayState=a&RelayState=b&SigAlg=a&Signature=s",
                "more than once",
            ),
            ("SAMLRequest=m&SigAlg=a&SigAlg=b&Signature=s", "more than once"),
            ("SAMLRequest=m&SigAlg=a&Signature=s&Signature=t", "more than once"),
            ("SAMLResponse=m&SAMLResponse=n", "more than once"),
            ("SAMLRequest=m&Signature", "not signed"),
            ("SAMLRequest=m&SAMLResponse=n&SigAlg=a&Signature=s", "both"),
            ("RelayState=r&SigAlg=a&Signature=s", "no SAMLRequest"),
            ("", "no SAMLRequest"),
        ] {
            match parse_redirect_query(query) {
                Err(e) => assert!(e.0.contains(why), "{query}: {e}"),
                // A bare `Signature` is one, empty parameter: refused later as unsigned.
                Ok(q) if why == "not signed" => assert_eq!(q.signed_bytes(), None, "{query}"),
                Ok(q) => panic!("{query} was accepted: {q:?}"),
            }
        }
    }

    /// A parameter value as it may appear in a query: letters, digits, `+`, `%XX`.
    fn value() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                "[A-Za-z0-9._~-]",
                Just("+".to_string()),
                "%[0-9A-F]{2}".prop_map(|s| s.to_string()),
            ],
            0..12,
        )
        .prop_map(|v| v.concat())
    }

    /// `name` with some of its characters percent-encoded (the same name once decoded).
    fn spelled(name: &str, mask: &[bool]) -> String {
        name.chars()
            .zip(mask.iter().cycle())
            .map(|(c, &enc)| {
                if enc {
                    format!("%{:02X}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect()
    }

    proptest! {
        /// Any well-formed query (each parameter once, in any order, with unknown extras)
        /// parses to exactly its values; the same query with any of the five parameters
        /// added again — in any position, its name spelled in any encoding — is refused.
        #[test]
        fn any_duplicated_parameter_is_refused(
            response in any::<bool>(),
            message in value(),
            relay_state in proptest::option::of(value()),
            sig_alg in proptest::option::of(value()),
            signature in proptest::option::of(value()),
            extras in proptest::collection::vec(("[a-z]{1,6}", value()), 0..3),
            order in any::<u64>(),
            dup in 0usize..5,
            dup_value in value(),
            mask in proptest::collection::vec(any::<bool>(), 1..8),
            at in any::<prop::sample::Index>(),
        ) {
            let param = if response { "SAMLResponse" } else { "SAMLRequest" };
            let mut pairs: Vec<(String, String)> = vec![(param.to_string(), message.clone())];
            for (n, v) in [("RelayState", &relay_state), ("SigAlg", &sig_alg), ("Signature", &signature)] {
                if let Some(v) = v {
                    pairs.push((n.to_string(), v.clone()));
                }
            }
            pairs.extend(extras.iter().cloned());
            // A deterministic shuffle from the drawn seed.
            let mut seed = order;
            for i in (1..pairs.len()).rev() {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                pairs.swap(i, (seed >> 33) as usize % (i + 1));
            }
            let join = |pairs: &[(String, String)]| {
                pairs.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&")
            };
            let query = join(&pairs);
            let q = parse_redirect_query(&query).unwrap();
            prop_assert_eq!(q.param, param);
            prop_assert_eq!(q.message, message.as_str());
            prop_assert_eq!(q.relay_state, relay_state.as_deref());
            prop_assert_eq!(q.sig_alg, sig_alg.as_deref());
            prop_assert_eq!(q.signature, signature.as_deref());

            // Duplicate one of the five that is present (the other message name conflicts).
            let present: Vec<&str> = REDIRECT_PARAMS
                .iter()
                .copied()
                .filter(|n| pairs.iter().any(|(p, _)| p == n))
                .collect();
            let name = present[dup % present.len()];
            let mut doubled = pairs.clone();
            doubled.insert(at.index(doubled.len() + 1), (spelled(name, &mask), dup_value));
            prop_assert!(parse_redirect_query(&join(&doubled)).is_err(), "{}", join(&doubled));
            let other = if response { "SAMLRequest" } else { "SAMLResponse" };
            let mut both = pairs.clone();
            both.insert(at.index(both.len() + 1), (other.to_string(), "x".to_string()));
            prop_assert!(parse_redirect_query(&join(&both)).is_err());
        }
    }
}
