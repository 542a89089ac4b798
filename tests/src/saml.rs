//! A real SAML 2.0 identity provider for the SAML suites: SimpleSAMLphp 1.19 from Debian 12's
//! `simplesamlphp` package (downloaded and unpacked, never installed, by tests/peers/saml.sh),
//! served by PHP's built-in web server on a free loopback port (tests/peers/saml/start.sh).
//!
//! ```ignore
//! // Any SP metadata to begin with (e.g. sp_metadata(…) for the gateway's future URLs, known
//! // with crate::reserve_port), ~0.6–1 s (a few s on a busy machine: RSA key generation):
//! let idp = SamlIdp::start(&sp_metadata(sp_entity, acs, Some(slo), None), &[]).await;
//! // gateway configured with idp.metadata_url …; (re-)register the SP metadata it serves:
//! idp.register_sp(&gateway_sp_metadata_xml, &["--sign-response"]).await;
//! let (saml_response, relay_state, acs) = idp.login(&authn_request_url, "alice", "alice-pw").await;
//! let tampered = idp.craft("second_assertion", &saml_response);
//! idp.stop();                                             // "IdP down"
//! idp.start_again();                                      // same port, keys, users; ~0.3–0.5 s
//! ```
//!
//! Users (user / password): `alice`/`alice-pw` (groups finance, staff; email alice@example.org;
//! displayName "Alice Able"), `bob`/`bob-pw` (staff), `many`/`many-pw` (bulk-0000 … bulk-1999 and
//! staff: a ~150 KB response), `sid`/`sid-pw` (AD-style groups [`SID_GROUP`] and [`DN_GROUP`]),
//! `rnd`/`rnd-pw` (groups `R&D, Europe`, `staff,admins` and `100% remote`: commas and `%`).
//! NameID: persistent, value = uid. Attributes (NameFormat basic): `uid`, `email`,
//! `displayName`, `groups`. The Assertion is signed (RSA-SHA256); start options (flags of
//! start.sh): `--sign-response` (Response too), `--sign-response-only`, `--encrypt-assertion`
//! (with the SP metadata's certificate), `--signature-algorithm sha1|sha256|sha512`,
//! `--no-sign-logout`, `--assertion-lifetime SECS`.
//!
//! Browser-less flows (all through this IdP's own cookie jar, see [`SamlIdp::follow`]):
//! - SP-initiated login: `GET {sso_url}?SAMLRequest=…&RelayState=…` → 302
//!   `{base}/module.php/core/loginuserpass.php?AuthState=…` → 200 login form (fields `username`,
//!   `password`, `AuthState`; `action="?"`) → POST it → 200 page with an auto-submitting
//!   `<form method="post" action="{ACS}">` carrying `SAMLResponse` and `RelayState`. With a live
//!   IdP session the first GET answers that page at once (SSO). [`SamlIdp::login`] does all this.
//! - IdP-initiated login: [`SamlIdp::idp_initiated_login_url`] (`{sso_url}?spentityid=…`), same
//!   chain; the response has no `InResponseTo`.
//! - SP-initiated logout: `GET {slo_url}?SAMLRequest=<LogoutRequest>&RelayState=…` → 302
//!   `{base}/module.php/core/idp/resumelogout.php?id=…` → 302 `{SP SLO}?SAMLResponse=<LogoutResponse>
//!   &RelayState=…&SigAlg=…&Signature=…` (HTTP-Redirect, signed unless `--no-sign-logout`).
//! - IdP-initiated logout: `GET {slo_url}?ReturnTo=<url>` ([`SamlIdp::idp_initiated_logout_url`])
//!   → 302 resumelogout.php → 302 `{SP SLO}?SAMLRequest=<LogoutRequest>&RelayState=…&SigAlg=…
//!   &Signature=…` (NameID + SessionIndex of the login) → the SP answers with a redirect to
//!   `{slo_url}?SAMLResponse=<LogoutResponse>&RelayState=<same>` → 302 `<ReturnTo>`. Only SPs the
//!   current IdP session logged in to get a LogoutRequest; with none the chain goes straight to
//!   `ReturnTo`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;

/// The AD-style SID group value of user `sid`.
pub const SID_GROUP: &str = "S-1-5-21-1-2-3-1101";
/// The AD-style DN group value of user `sid`.
pub const DN_GROUP: &str = "CN=Finance,OU=Groups,DC=corp";

/// A running SimpleSAMLphp IdP. Stopped when dropped (its folder is then deleted).
#[derive(Debug)]
pub struct SamlIdp {
    /// The instance folder: config/, metadata/, cert/, log/, sessions/, php.pid.
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// `http://127.0.0.1:PORT/simplesaml`
    pub base: String,
    /// `{base}/saml2/idp/metadata.php` (IdP metadata XML; also the entity id).
    pub metadata_url: String,
    pub entity_id: String,
    /// `{base}/saml2/idp/SSOService.php` (HTTP-Redirect binding).
    pub sso_url: String,
    /// `{base}/saml2/idp/SingleLogoutService.php` (HTTP-Redirect binding).
    pub slo_url: String,
    /// The IdP's signing certificate (PEM, self-signed RSA-2048), as in its metadata.
    pub cert_pem_file: PathBuf,
    /// Its private key (PEM).
    pub key_pem_file: PathBuf,
    sp_metadata_file: PathBuf,
    options: Mutex<Vec<String>>,
    client: Mutex<reqwest::Client>,
}

/// Where a browser ends up after following the IdP's redirects: either a redirect that leaves
/// the IdP (`location` set, e.g. to the SP's SLO endpoint) or a page the IdP answered.
#[derive(Debug, Clone)]
pub struct IdpHop {
    pub status: u16,
    /// The URL that answered.
    pub url: String,
    /// A `Location` outside the IdP (the chain stops there), if any.
    pub location: Option<String>,
    pub body: String,
}

impl IdpHop {
    /// The `value` of `<input … name="{name}" value="…">`, HTML-unescaped.
    pub fn input_value(&self, name: &str) -> Option<String> {
        input_value(&self.body, name)
    }

    /// The `action` of the first `<form>`, HTML-unescaped and resolved against `url`.
    pub fn form_action(&self) -> Option<String> {
        let form = self.body.find("<form")?;
        let rest = &self.body[form..];
        let tag_end = rest.find('>')?;
        let tag = &rest[..tag_end];
        let a = tag.find("action=\"")? + "action=\"".len();
        let end = tag[a..].find('"')? + a;
        let action = html_unescape(&tag[a..end]);
        let base = reqwest::Url::parse(&self.url).ok()?;
        Some(base.join(&action).ok()?.to_string())
    }

    /// Is this SimpleSAMLphp's username/password form?
    pub fn is_login_form(&self) -> bool {
        self.input_value("AuthState").is_some() && self.body.contains("name=\"password\"")
    }

    /// A query parameter of `location`, URL-decoded.
    pub fn location_param(&self, name: &str) -> Option<String> {
        query_param(self.location.as_deref()?, name)
    }
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/saml")
}

/// The unpacked package's `usr/share/simplesamlphp` (see tests/peers/saml.sh).
pub fn package_dir() -> PathBuf {
    let cache = std::env::var_os("GATEHOUSE_SSP_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/gatehouse/simplesamlphp")
        });
    cache.join("root/usr/share/simplesamlphp")
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// Are PHP, the unpacked SimpleSAMLphp package, xmlsec1, openssl, curl and python3 present?
pub fn installed() -> bool {
    package_dir().join("www/_include.php").is_file()
        && ["php", "xmlsec1", "openssl", "curl", "python3"]
            .iter()
            .all(|t| on_path(t))
}

fn assert_installed() {
    assert!(
        installed(),
        "SimpleSAMLphp IdP not available (php, xmlsec1, openssl, curl, python3 and the unpacked package in {}): \
         run tests/peers/saml.sh",
        package_dir().display()
    );
}

fn run_script(name: &str, args: &[&str]) -> Output {
    let script = scripts().join(name);
    Command::new("bash")
        .arg(&script)
        .args(args)
        // Ends the server if this test process dies without dropping the SamlIdp.
        .env("GATEHOUSE_SAML_OWNER_PID", std::process::id().to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()))
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn new_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

impl SamlIdp {
    /// Builds and starts a fresh IdP on a free loopback port that knows the SP described by
    /// `sp_metadata_xml` (an `EntityDescriptor` with an `SPSSODescriptor`), with start.sh
    /// `options`; returns once its metadata URL answers. Panics with the script's output (and
    /// the IdP's logs) if that fails, or if the IdP is not installed (tests/peers/saml.sh).
    pub async fn start(sp_metadata_xml: &str, options: &[&str]) -> SamlIdp {
        let xml = sp_metadata_xml.to_string();
        let options: Vec<String> = options.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let o: Vec<&str> = options.iter().map(String::as_str).collect();
            Self::start_blocking(&xml, &o)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// [`SamlIdp::start`] for code that is not async.
    pub fn start_blocking(sp_metadata_xml: &str, options: &[&str]) -> SamlIdp {
        assert_installed();
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-saml-idp-")
            .tempdir()
            .expect("tempdir");
        let path = dir.path().to_str().expect("utf-8 temp path").to_string();
        let sp_metadata_file = dir.path().join("sp-metadata.xml");
        std::fs::write(&sp_metadata_file, sp_metadata_xml).expect("write SP metadata");
        let sp = sp_metadata_file.to_str().expect("utf-8 path").to_string();
        // free_port() releases the port before php binds it; retry on the rare collision.
        let mut attempt = 0;
        let port = loop {
            attempt += 1;
            let port = crate::free_port();
            let port_s = port.to_string();
            let mut args = vec![path.as_str(), port_s.as_str(), sp.as_str()];
            args.extend_from_slice(options);
            let out = run_script("start.sh", &args);
            if out.status.success() {
                break port;
            }
            let text = output_text(&out);
            if attempt < 3 && text.contains("Address already in use") {
                continue;
            }
            panic!(
                "tests/peers/saml/start.sh {} failed ({}):\n{text}",
                args.join(" "),
                out.status
            );
        };
        let base = format!("http://127.0.0.1:{port}/simplesaml");
        let metadata_url = format!("{base}/saml2/idp/metadata.php");
        SamlIdp {
            cert_pem_file: dir.path().join("cert/idp.crt"),
            key_pem_file: dir.path().join("cert/idp.key"),
            sso_url: format!("{base}/saml2/idp/SSOService.php"),
            slo_url: format!("{base}/saml2/idp/SingleLogoutService.php"),
            entity_id: metadata_url.clone(),
            metadata_url,
            base,
            port,
            dir,
            sp_metadata_file,
            options: Mutex::new(options.iter().map(|s| s.to_string()).collect()),
            client: Mutex::new(new_client()),
        }
    }

    fn dir_str(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 temp path")
    }

    fn start_args(&self) -> Vec<String> {
        let mut args = vec![
            self.dir_str().to_string(),
            self.port.to_string(),
            self.sp_metadata_file.to_str().expect("utf-8 path").to_string(),
        ];
        args.extend(self.options.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned());
        args
    }

    fn run_start(args: &[String]) {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_script("start.sh", &a);
        assert!(
            out.status.success(),
            "tests/peers/saml/start.sh {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            output_text(&out)
        );
    }

    /// Registers (another) SP from its metadata XML — typically what the gateway serves at
    /// `/.gatehouse/saml/<provider>/metadata` — with start.sh `options`, replacing the previous
    /// SP and options. The running server picks it up at once (no restart). Works on any
    /// tokio runtime flavour.
    pub async fn register_sp(&self, sp_metadata_xml: &str, options: &[&str]) {
        std::fs::write(&self.sp_metadata_file, sp_metadata_xml).expect("write SP metadata");
        *self.options.lock().unwrap_or_else(|e| e.into_inner()) = options.iter().map(|s| s.to_string()).collect();
        let args = self.start_args();
        tokio::task::spawn_blocking(move || Self::run_start(&args))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    }

    /// Stops the server and waits until it has exited; keys, config and sessions stay.
    pub fn stop(&self) {
        let out = run_script("stop.sh", &[self.dir_str()]);
        assert!(
            out.status.success(),
            "tests/peers/saml/stop.sh failed ({}):\n{}",
            out.status,
            output_text(&out)
        );
    }

    /// Starts the server again after [`SamlIdp::stop`]: same port, keys, SP and options;
    /// returns once the metadata URL answers. Only checks readiness if it is running.
    pub fn start_again(&self) {
        Self::run_start(&self.start_args());
    }

    /// The IdP's signing certificate (PEM).
    pub fn cert_pem(&self) -> String {
        std::fs::read_to_string(&self.cert_pem_file).expect("IdP certificate")
    }

    /// The certificate as in metadata (`<ds:X509Certificate>` content: base64 DER, one line).
    pub fn cert_base64(&self) -> String {
        self.cert_pem()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>()
    }

    /// The query of an HTTP-Redirect binding message signed with the IdP's own key (RSA-SHA256),
    /// as the IdP would send it: `{param}=<deflated, base64, URL-encoded xml>[&RelayState=…]
    /// &SigAlg=…&Signature=…`, the signature over exactly those encoded bytes. For messages the
    /// IdP would never send (another Destination, an old IssueInstant) that still verify.
    pub fn sign_redirect(&self, param: &str, xml: &str, relay_state: Option<&str>) -> String {
        self.sign_redirect_with("sha256", param, xml, relay_state)
    }

    /// [`SamlIdp::sign_redirect`] with RSA over digest `hash`: `"sha256"` or `"sha1"`
    /// (`SigAlg` …`xmldsig#rsa-sha1`, which no SP should accept).
    pub fn sign_redirect_with(&self, hash: &str, param: &str, xml: &str, relay_state: Option<&str>) -> String {
        use crate::browser::urlencode;
        let sig_alg = match hash {
            "sha1" => "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
            "sha256" => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            other => panic!("sign_redirect_with: unknown hash {other}"),
        };
        let mut signed = format!("{param}={}", urlencode(&redirect_encode(xml)));
        if let Some(rs) = relay_state {
            signed.push_str(&format!("&RelayState={}", urlencode(rs)));
        }
        signed.push_str(&format!("&SigAlg={}", urlencode(sig_alg)));
        let mut child = Command::new("openssl")
            .args(["dgst", &format!("-{hash}"), "-sign"])
            .arg(self.dir.path().join("cert").join("idp.key"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(signed.as_bytes()).expect("openssl stdin");
        }
        let out = child.wait_with_output().expect("openssl");
        assert!(
            out.status.success(),
            "openssl dgst: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let signature = base64::engine::general_purpose::STANDARD.encode(&out.stdout);
        format!("{signed}&Signature={}", urlencode(&signature))
    }

    /// The IdP metadata XML, as served at [`SamlIdp::metadata_url`].
    pub async fn metadata_xml(&self) -> String {
        let res = self
            .client()
            .get(&self.metadata_url)
            .send()
            .await
            .expect("IdP metadata");
        assert_eq!(res.status(), 200, "IdP metadata");
        res.text().await.expect("IdP metadata body")
    }

    /// SimpleSAMLphp's log so far (logins, logouts, errors), then PHP's and the web server's.
    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join("log").join(f)).unwrap_or_default();
        format!(
            "{}\n--- php-errors.log ---\n{}\n--- php-server.log ---\n{}",
            read("simplesamlphp.log"),
            read("php-errors.log"),
            read("php-server.log")
        )
    }

    /// A tampered copy of `saml_response_b64` (see tests/peers/saml/craft.py for the modes:
    /// `unsigned`, `other_key`, `modified_after_signing`, `second_assertion`,
    /// `comment_in_nameid`, `wrong_audience`, `expired`, `wrong_in_response_to`,
    /// `wrong_destination`, `wrong_recipient`, `wrong_issuer`, `sha1_digest`,
    /// `wrapped_in_extensions`, `wrapped_in_object`, `wrapped_id_reuse`), base64. Panics if
    /// it cannot.
    pub fn craft(&self, mode: &str, saml_response_b64: &str) -> String {
        self.try_craft(mode, saml_response_b64)
            .unwrap_or_else(|e| panic!("craft.py {mode} failed: {e}"))
    }

    /// [`SamlIdp::craft`], returning craft.py's error (e.g. for an encrypted response).
    pub fn try_craft(&self, mode: &str, saml_response_b64: &str) -> Result<String, String> {
        use std::io::Write;
        let script = scripts().join("craft.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(mode)
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(saml_response_b64.as_bytes())
            .expect("write to craft.py");
        let out = child.wait_with_output().expect("craft.py");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(output_text(&out))
        }
    }

    /// The certificate craft.py's `other_key` mode signs with (made on first use; not in the
    /// IdP's metadata).
    pub fn other_cert_pem_file(&self) -> PathBuf {
        self.dir.path().join("cert/other.crt")
    }

    /// `xmlsec1 --verify` of a base64 SAMLResponse against the IdP's certificate only (the
    /// certificate in `KeyInfo` is ignored); `Err` has xmlsec1's output.
    pub fn xmlsec_verify(&self, saml_response_b64: &str) -> Result<(), String> {
        xmlsec_verify(&decode_base64(saml_response_b64), &self.cert_pem_file)
    }

    fn client(&self) -> reqwest::Client {
        self.client.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forgets the browser's IdP session (a fresh cookie jar): the next login shows the form.
    pub fn clear_session(&self) {
        *self.client.lock().unwrap_or_else(|e| e.into_inner()) = new_client();
    }

    /// GETs `url` with this IdP's cookie jar and follows redirects while they stay on the IdP
    /// (at most 10). Stops at the first redirect leaving it (`location`) or at a page.
    pub async fn follow(&self, url: &str) -> IdpHop {
        self.follow_from(self.client().get(url), url).await
    }

    async fn follow_from(&self, first: reqwest::RequestBuilder, first_url: &str) -> IdpHop {
        let client = self.client();
        let origin = format!("http://127.0.0.1:{}/", self.port);
        let mut req = first;
        let mut url = first_url.to_string();
        for _ in 0..10 {
            let res = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("IdP request {url}: {e}\nIdP log:\n{}", self.log()));
            let status = res.status().as_u16();
            let location = res.headers().get("location").and_then(|v| v.to_str().ok()).map(|l| {
                reqwest::Url::parse(&url)
                    .and_then(|b| b.join(l))
                    .map(|u| u.to_string())
                    .unwrap_or_else(|_| l.to_string())
            });
            let body = res.text().await.unwrap_or_default();
            match location {
                Some(next) if (300..400).contains(&status) => {
                    if !next.starts_with(&origin) {
                        return IdpHop {
                            status,
                            url,
                            location: Some(next),
                            body,
                        };
                    }
                    req = client.get(&next);
                    url = next;
                }
                _ => {
                    return IdpHop {
                        status,
                        url,
                        location: None,
                        body,
                    }
                }
            }
        }
        panic!("more than 10 redirects inside the IdP, last {url}");
    }

    /// The browser-less IdP login: opens `authn_request_url` (the SP's redirect to the IdP's
    /// SSO endpoint with `SAMLRequest` and `RelayState`, or an IdP-initiated URL), posts the
    /// login form with `user` and `password` (unless the IdP session already exists), and
    /// returns the `SAMLResponse` (base64), `RelayState` and the form's action (the SP's ACS
    /// URL) from the auto-submitting page. Panics (with the IdP's log) on anything else.
    pub async fn login(&self, authn_request_url: &str, user: &str, password: &str) -> (String, Option<String>, String) {
        match self.try_login(authn_request_url, user, password).await {
            Ok(r) => r,
            Err(e) => panic!("SAML login as {user} failed: {e}\nIdP log:\n{}", self.log()),
        }
    }

    /// [`SamlIdp::login`], with `Err` (the page the IdP answered) instead of a panic, e.g. for a
    /// wrong password.
    pub async fn try_login(
        &self,
        authn_request_url: &str,
        user: &str,
        password: &str,
    ) -> Result<(String, Option<String>, String), String> {
        let mut hop = self.follow(authn_request_url).await;
        if hop.is_login_form() {
            let auth_state = hop.input_value("AuthState").unwrap_or_default();
            let action = hop.form_action().unwrap_or_else(|| hop.url.clone());
            let body = format!(
                "username={}&password={}&AuthState={}",
                crate::browser::urlencode(user),
                crate::browser::urlencode(password),
                crate::browser::urlencode(&auth_state)
            );
            let req = self
                .client()
                .post(&action)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
            hop = self.follow_from(req, &action).await;
            if hop.is_login_form() {
                return Err(format!(
                    "the IdP showed the login form again (wrong user or password?) at {}",
                    hop.url
                ));
            }
        }
        match (hop.input_value("SAMLResponse"), hop.form_action()) {
            (Some(response), Some(acs)) if hop.location.is_none() => Ok((response, hop.input_value("RelayState"), acs)),
            _ => Err(format!(
                "no SAMLResponse form: {} {} location {:?}: {}",
                hop.status,
                hop.url,
                hop.location,
                &hop.body[..hop.body.len().min(3000)]
            )),
        }
    }

    /// The IdP-initiated (unsolicited) login URL for the SP `sp_entity_id`.
    pub fn idp_initiated_login_url(&self, sp_entity_id: &str, relay_state: Option<&str>) -> String {
        let mut url = format!(
            "{}?spentityid={}",
            self.sso_url,
            crate::browser::urlencode(sp_entity_id)
        );
        if let Some(rs) = relay_state {
            url.push_str(&format!("&RelayState={}", crate::browser::urlencode(rs)));
        }
        url
    }

    /// The URL that makes the IdP end its current session: it sends a LogoutRequest to every
    /// SP the session logged in to (HTTP-Redirect to the SP's SingleLogoutService from its
    /// metadata), and once each has answered, redirects to `return_to` (a loopback URL).
    pub fn idp_initiated_logout_url(&self, return_to: &str) -> String {
        format!("{}?ReturnTo={}", self.slo_url, crate::browser::urlencode(return_to))
    }
}

impl Drop for SamlIdp {
    fn drop(&mut self) {
        let _ = run_script("stop.sh", &[self.dir_str()]);
    }
}

// ---- helpers for SAML messages --------------------------------------------------------------

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#039;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

fn input_value(body: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker)? + marker.len();
    let end = body[start..].find('"')? + start;
    Some(html_unescape(&body[start..end]))
}

/// A query parameter of `url`, URL-decoded.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    u.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Standard base64 (as in `SAMLResponse`), whitespace ignored, to UTF-8 text.
pub fn decode_base64(b64: &str) -> String {
    let clean: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(clean)
        .unwrap_or_else(|e| panic!("not base64 ({e}): {}", &b64[..b64.len().min(200)]));
    String::from_utf8(bytes).expect("UTF-8 XML")
}

/// Standard base64 of UTF-8 text (an HTTP-POST binding `SAMLResponse`).
pub fn encode_base64(xml: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(xml.as_bytes())
}

/// HTTP-Redirect binding encoding: raw DEFLATE, then base64 (not yet URL-encoded).
pub fn redirect_encode(xml: &str) -> String {
    use std::io::Write;
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(xml.as_bytes()).expect("deflate");
    base64::engine::general_purpose::STANDARD.encode(enc.finish().expect("deflate"))
}

/// HTTP-Redirect binding decoding (base64, then raw INFLATE), e.g. of a `SAMLRequest` the IdP
/// sends to the SP's SingleLogoutService.
pub fn redirect_decode(b64: &str) -> String {
    use std::io::Read;
    let clean: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(clean)
        .expect("base64 in a Redirect-binding message");
    let mut out = String::new();
    flate2::read::DeflateDecoder::new(&raw[..])
        .read_to_string(&mut out)
        .expect("raw DEFLATE in a Redirect-binding message");
    out
}

/// A SAML `xs:dateTime` (UTC, seconds) `offset_secs` from now.
pub fn instant(offset_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
        + offset_secs;
    let (days, secs) = (now.div_euclid(86_400), now.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A minimal unsigned AuthnRequest (HTTP-POST ACS) from `sp_entity_id` to `destination`.
pub fn authn_request_xml(id: &str, sp_entity_id: &str, acs_url: &str, destination: &str) -> String {
    format!(
        r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{}" Destination="{destination}" AssertionConsumerServiceURL="{acs_url}" ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"><saml:Issuer>{sp_entity_id}</saml:Issuer><samlp:NameIDPolicy Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent" AllowCreate="true"/></samlp:AuthnRequest>"#,
        instant(0)
    )
}

/// `{sso_url}?SAMLRequest=…&RelayState=…`: what an SP's redirect to the IdP looks like.
pub fn redirect_url(endpoint: &str, param: &str, xml: &str, relay_state: Option<&str>) -> String {
    let mut url = format!(
        "{endpoint}?{param}={}",
        crate::browser::urlencode(&redirect_encode(xml))
    );
    if let Some(rs) = relay_state {
        url.push_str(&format!("&RelayState={}", crate::browser::urlencode(rs)));
    }
    url
}

/// A minimal SP metadata document (HTTP-POST ACS, optional HTTP-Redirect SLO, optional
/// certificate as base64 DER for signing and encryption).
pub fn sp_metadata(entity_id: &str, acs_url: &str, slo_url: Option<&str>, cert_base64: Option<&str>) -> String {
    let key = cert_base64
        .map(|c| {
            format!(
                r#"<md:KeyDescriptor><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>{c}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#
            )
        })
        .unwrap_or_default();
    let slo = slo_url
        .map(|u| {
            format!(r#"<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{u}"/>"#)
        })
        .unwrap_or_default();
    format!(
        r#"<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{entity_id}">
  <md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" AuthnRequestsSigned="false" WantAssertionsSigned="true">
    {key}{slo}
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{acs_url}" index="0" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"#
    )
}

/// `xmlsec1 --verify` of a SAML XML document against `cert_pem_file` only (certificates in
/// `KeyInfo` ignored). Checks the first signature in the document (the Response's if it is
/// signed, else the Assertion's); `Err` has xmlsec1's output.
pub fn xmlsec_verify(xml: &str, cert_pem_file: &Path) -> Result<(), String> {
    let tmp = tempfile::Builder::new()
        .prefix("gatehouse-saml-verify-")
        .suffix(".xml")
        .tempfile()
        .expect("temp file");
    std::fs::write(tmp.path(), xml).expect("write XML");
    let out = Command::new("xmlsec1")
        .arg("--verify")
        .arg("--pubkey-cert-pem")
        .arg(cert_pem_file)
        .args(["--enabled-key-data", "key-name"])
        .args(["--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"])
        .args(["--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:protocol:Response"])
        .arg(tmp.path())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run xmlsec1 (tests/peers/saml.sh installs it): {e}"));
    if out.status.success() {
        Ok(())
    } else {
        Err(output_text(&out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const SP: &str = "http://127.0.0.1:1/sp";
    const ACS: &str = "http://127.0.0.1:1/acs";
    const SLO: &str = "http://127.0.0.1:1/slo";

    fn sp_xml() -> String {
        sp_metadata(SP, ACS, Some(SLO), None)
    }

    fn count(hay: &str, needle: &str) -> usize {
        hay.matches(needle).count()
    }

    /// Where the first `<prefix:local …>` / `<prefix:local>` start tag begins.
    fn open_tag(xml: &str, local: &str) -> usize {
        let needle = format!(":{local}");
        let mut from = 0;
        loop {
            let i = xml[from..]
                .find(&needle)
                .unwrap_or_else(|| panic!("no <…:{local}> in {xml}"))
                + from;
            let next = xml.as_bytes().get(i + needle.len()).copied();
            let lt = xml[..i].rfind('<').expect("<");
            if matches!(next, Some(b'>' | b' ')) && !xml[lt + 1..i].contains(['/', ' ', '>', '!']) {
                return lt;
            }
            from = i + 1;
        }
    }

    /// The text content of the first `<…:local>` element (up to its first child or end tag).
    fn text_of<'a>(xml: &'a str, local: &str) -> &'a str {
        let lt = open_tag(xml, local);
        let start = xml[lt..].find('>').expect(">") + lt + 1;
        let end = xml[start..].find("</").expect("</") + start;
        &xml[start..end]
    }

    /// The value of `attr="…"` on the first `<…:local …>` start tag.
    fn attr_of(xml: &str, local: &str, attr: &str) -> String {
        let lt = open_tag(xml, local);
        let tag = &xml[lt..xml[lt..].find('>').expect(">") + lt];
        let a = tag
            .find(&format!(" {attr}=\""))
            .unwrap_or_else(|| panic!("no {attr} on {tag}"))
            + attr.len()
            + 3;
        tag[a..a + tag[a..].find('"').expect("\"")].to_string()
    }

    /// How many `ds:Signature` elements.
    fn signature_count(xml: &str) -> usize {
        count(xml, "<ds:Signature ") + count(xml, "<ds:Signature>")
    }

    fn group_values(xml: &str) -> Vec<String> {
        let start = xml.find("Name=\"groups\"").expect("groups attribute");
        let end = xml[start..].find("</saml:Attribute>").expect("end of groups") + start;
        xml[start..end]
            .split("<saml:AttributeValue")
            .skip(1)
            .map(|v| {
                let s = v.find('>').expect(">") + 1;
                v[s..v.find("</saml:AttributeValue>").expect("close")].to_string()
            })
            .collect()
    }

    async fn sp_login(idp: &SamlIdp, id: &str, user: &str, pw: &str) -> (String, Option<String>, String) {
        let req = authn_request_xml(id, SP, ACS, &idp.sso_url);
        let url = redirect_url(&idp.sso_url, "SAMLRequest", &req, Some("relay-state-1"));
        idp.login(&url, user, pw).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn login_signature_and_crafted_responses() {
        let t = Instant::now();
        let idp = SamlIdp::start(&sp_xml(), &[]).await;
        eprintln!("fresh SimpleSAMLphp ready in {:?}", t.elapsed());
        assert_eq!(
            idp.entity_id,
            format!("http://127.0.0.1:{}/simplesaml/saml2/idp/metadata.php", idp.port)
        );
        let md = idp.metadata_xml().await;
        assert!(md.contains(&format!("entityID=\"{}\"", idp.entity_id)), "{md}");
        assert!(
            md.contains(&idp.cert_base64()),
            "metadata carries the signing cert: {md}"
        );
        assert!(md.contains(&idp.sso_url) && md.contains(&idp.slo_url), "{md}");

        // SP-initiated login as alice.
        let t = Instant::now();
        let (b64, relay, acs) = sp_login(&idp, "_req-alice-1", "alice", "alice-pw").await;
        eprintln!("alice's login took {:?}", t.elapsed());
        assert_eq!(acs, ACS);
        assert_eq!(relay.as_deref(), Some("relay-state-1"));
        let xml = decode_base64(&b64);
        assert_eq!(attr_of(&xml, "Response", "InResponseTo"), "_req-alice-1");
        assert_eq!(attr_of(&xml, "Response", "Destination"), ACS);
        assert_eq!(text_of(&xml, "NameID"), "alice");
        assert_eq!(
            attr_of(&xml, "NameID", "Format"),
            "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
        );
        assert_eq!(text_of(&xml, "Audience"), SP);
        assert_eq!(attr_of(&xml, "SubjectConfirmationData", "Recipient"), ACS);
        assert_eq!(group_values(&xml), ["finance", "staff"]);
        for (name, value) in [
            ("uid", "alice"),
            ("email", "alice@example.org"),
            ("displayName", "Alice Able"),
        ] {
            assert!(
                xml.contains(&format!(
                    "<saml:Attribute Name=\"{name}\" NameFormat=\"urn:oasis:names:tc:SAML:2.0:attrname-format:basic\"><saml:AttributeValue xsi:type=\"xs:string\">{value}</saml:AttributeValue>"
                )),
                "{name}: {xml}"
            );
        }
        assert_eq!(signature_count(&xml), 1, "only the Assertion is signed: {xml}");
        assert!(xml.find("<ds:Signature").expect("sig") > xml.find("<saml:Assertion").expect("assertion"));
        idp.xmlsec_verify(&b64).expect("xmlsec1 accepts the IdP's response");

        // Each craft mode makes exactly its change.
        let t = Instant::now();
        let c = |mode: &str| {
            let out = idp.craft(mode, &b64);
            (out.clone(), decode_base64(&out))
        };
        let (u_b64, u) = c("unsigned");
        assert_eq!(count(&u, "Signature"), 0, "{u}");
        assert_eq!(text_of(&u, "NameID"), "alice");
        assert!(idp.xmlsec_verify(&u_b64).is_err());

        let (o_b64, o) = c("other_key");
        assert_eq!(signature_count(&o), 1);
        assert!(!o.contains(&idp.cert_base64()[..60]), "signed with another cert");
        let err = idp
            .xmlsec_verify(&o_b64)
            .expect_err("other_key must fail against the IdP cert");
        assert!(err.contains("fail") || err.contains("invalid"), "{err}");
        xmlsec_verify(&o, &idp.other_cert_pem_file()).expect("other_key verifies with the other cert");

        let (m_b64, m) = c("modified_after_signing");
        assert_eq!(text_of(&m, "NameID"), "admin");
        assert_eq!(signature_count(&m), 1);
        idp.xmlsec_verify(&m_b64)
            .expect_err("modified_after_signing must fail against the IdP cert");

        let (s_b64, s) = c("second_assertion");
        assert_eq!(count(&s, "<saml:Assertion "), 2, "{s}");
        assert_eq!(signature_count(&s), 1);
        assert_eq!(text_of(&s, "NameID"), "admin", "the unsigned one comes first");
        assert!(s.contains(">alice</saml:NameID>"), "the signed one stays");
        idp.xmlsec_verify(&s_b64)
            .expect("the signed assertion still verifies: only a wrapping check catches this");

        let (n_b64, n) = c("comment_in_nameid");
        assert!(n.contains(">alice<!---->.evil</saml:NameID>"), "{n}");
        idp.xmlsec_verify(&n_b64)
            .expect("comment_in_nameid is validly re-signed");

        let (a_b64, a) = c("wrong_audience");
        assert_eq!(text_of(&a, "Audience"), "http://127.0.0.1:1/not-this-sp");
        idp.xmlsec_verify(&a_b64).expect("re-signed");

        let (e_b64, e) = c("expired");
        let before = attr_of(&xml, "Conditions", "NotBefore");
        assert!(attr_of(&e, "Conditions", "NotOnOrAfter") < before, "{e}");
        assert!(attr_of(&e, "SubjectConfirmationData", "NotOnOrAfter") < before);
        assert!(attr_of(&e, "Conditions", "NotOnOrAfter") < instant(-3000));
        idp.xmlsec_verify(&e_b64).expect("re-signed");

        let (i_b64, i) = c("wrong_in_response_to");
        assert_eq!(attr_of(&i, "Response", "InResponseTo"), "_not-the-request-id");
        assert_eq!(
            attr_of(&i, "SubjectConfirmationData", "InResponseTo"),
            "_not-the-request-id"
        );
        idp.xmlsec_verify(&i_b64).expect("re-signed");

        let (d_b64, d) = c("wrong_destination");
        assert_eq!(attr_of(&d, "Response", "Destination"), "http://127.0.0.1:1/not-the-acs");
        assert_eq!(attr_of(&d, "SubjectConfirmationData", "Recipient"), ACS);
        idp.xmlsec_verify(&d_b64).expect("re-signed");

        let (r_b64, r) = c("wrong_recipient");
        assert_eq!(
            attr_of(&r, "SubjectConfirmationData", "Recipient"),
            "http://127.0.0.1:1/not-the-acs"
        );
        idp.xmlsec_verify(&r_b64).expect("re-signed");

        let (w_b64, w) = c("wrong_issuer");
        assert_eq!(text_of(&w, "Issuer"), "http://127.0.0.1:1/not-the-idp");
        assert_eq!(count(&w, "http://127.0.0.1:1/not-the-idp"), 2);
        idp.xmlsec_verify(&w_b64).expect("re-signed");
        eprintln!("11 craft modes took {:?}", t.elapsed());

        // A wrong password gets the form again, no response.
        idp.clear_session();
        let req = authn_request_xml("_req-bad", SP, ACS, &idp.sso_url);
        let url = redirect_url(&idp.sso_url, "SAMLRequest", &req, None);
        assert!(idp.try_login(&url, "alice", "wrong").await.is_err());

        // bob and the AD-style groups of sid.
        idp.clear_session();
        let (b, _, _) = sp_login(&idp, "_req-bob", "bob", "bob-pw").await;
        assert_eq!(group_values(&decode_base64(&b)), ["staff"]);
        idp.clear_session();
        let (s, _, _) = sp_login(&idp, "_req-sid", "sid", "sid-pw").await;
        let sx = decode_base64(&s);
        assert_eq!(text_of(&sx, "NameID"), "sid");
        assert_eq!(group_values(&sx), [SID_GROUP, DN_GROUP]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_groups_sso_idp_initiated_and_logout_chains() {
        let idp = SamlIdp::start(&sp_xml(), &[]).await;

        // many: 2,001 group values, a ~150 KB response.
        let t = Instant::now();
        let (b64, _, _) = sp_login(&idp, "_req-many", "many", "many-pw").await;
        eprintln!("many's login took {:?}", t.elapsed());
        let xml = decode_base64(&b64);
        let groups = group_values(&xml);
        assert_eq!(groups.len(), 2001);
        assert_eq!(groups[0], "bulk-0000");
        assert!(groups.contains(&"bulk-1999".to_string()) && groups.contains(&"staff".to_string()));
        assert!(
            (120_000..200_000).contains(&xml.len()),
            "response is {} bytes",
            xml.len()
        );
        eprintln!("many's response: {} bytes XML, {} bytes base64", xml.len(), b64.len());
        idp.xmlsec_verify(&b64).expect("signature over 2,001 groups");

        // SSO: with the IdP session, a second request is answered without the form.
        let req = authn_request_xml("_req-many-2", SP, ACS, &idp.sso_url);
        let hop = idp.follow(&redirect_url(&idp.sso_url, "SAMLRequest", &req, None)).await;
        assert!(!hop.is_login_form());
        assert!(hop.input_value("SAMLResponse").is_some(), "{}", hop.body);

        // IdP-initiated login: no InResponseTo, the given RelayState.
        idp.clear_session();
        let (b, relay, acs) = idp
            .login(&idp.idp_initiated_login_url(SP, Some("/apps/x/")), "alice", "alice-pw")
            .await;
        let x = decode_base64(&b);
        assert_eq!(acs, ACS);
        assert_eq!(relay.as_deref(), Some("/apps/x/"));
        assert!(!x.contains("InResponseTo"), "{x}");
        assert_eq!(text_of(&x, "NameID"), "alice");

        // SP-initiated logout: LogoutRequest → signed LogoutResponse to the SP's SLO URL.
        let lr = format!(
            r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_sp-logout-1" Version="2.0" IssueInstant="{}" Destination="{}"><saml:Issuer>{SP}</saml:Issuer><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">alice</saml:NameID></samlp:LogoutRequest>"#,
            instant(0),
            idp.slo_url
        );
        let hop = idp
            .follow(&redirect_url(&idp.slo_url, "SAMLRequest", &lr, Some("after-logout")))
            .await;
        let loc = hop
            .location
            .clone()
            .unwrap_or_else(|| panic!("no redirect to the SP: {hop:?}"));
        assert!(loc.starts_with(&format!("{SLO}?SAMLResponse=")), "{loc}");
        assert_eq!(hop.location_param("RelayState").as_deref(), Some("after-logout"));
        assert!(hop.location_param("Signature").is_some() && hop.location_param("SigAlg").is_some());
        let resp = redirect_decode(&hop.location_param("SAMLResponse").expect("SAMLResponse"));
        assert!(resp.contains("InResponseTo=\"_sp-logout-1\""), "{resp}");
        assert!(resp.contains("urn:oasis:names:tc:SAML:2.0:status:Success"), "{resp}");
        // The IdP session is gone: the form again.
        let req = authn_request_xml("_req-after", SP, ACS, &idp.sso_url);
        assert!(idp
            .follow(&redirect_url(&idp.sso_url, "SAMLRequest", &req, None))
            .await
            .is_login_form());

        // IdP-initiated logout: LogoutRequest to the SP, its LogoutResponse, then ReturnTo.
        sp_login(&idp, "_req-again", "alice", "alice-pw").await;
        let return_to = "http://127.0.0.1:1/logged-out";
        let hop = idp.follow(&idp.idp_initiated_logout_url(return_to)).await;
        let loc = hop
            .location
            .clone()
            .unwrap_or_else(|| panic!("no LogoutRequest: {hop:?}"));
        assert!(loc.starts_with(&format!("{SLO}?SAMLRequest=")), "{loc}");
        assert!(hop.location_param("Signature").is_some());
        let req = redirect_decode(&hop.location_param("SAMLRequest").expect("SAMLRequest"));
        assert!(
            req.contains(">alice</saml:NameID>") && req.contains("SessionIndex"),
            "{req}"
        );
        let req_id = attr_of(&req, "LogoutRequest", "ID");
        let relay = hop.location_param("RelayState").expect("RelayState");
        let answer = format!(
            r#"<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_sp-logout-response-1" Version="2.0" IssueInstant="{}" Destination="{}" InResponseTo="{req_id}"><saml:Issuer>{SP}</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status></samlp:LogoutResponse>"#,
            instant(0),
            idp.slo_url
        );
        let hop = idp
            .follow(&redirect_url(&idp.slo_url, "SAMLResponse", &answer, Some(&relay)))
            .await;
        assert_eq!(hop.location.as_deref(), Some(return_to), "{hop:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn options_restart_and_encryption() {
        let idp = SamlIdp::start(&sp_xml(), &["--sign-response"]).await;
        let (b64, _, _) = sp_login(&idp, "_req-1", "alice", "alice-pw").await;
        let xml = decode_base64(&b64);
        assert_eq!(signature_count(&xml), 2, "Response and Assertion signed: {xml}");
        let resp_id = attr_of(&xml, "Response", "ID");
        assert!(xml.contains(&format!("URI=\"#{resp_id}\"")));
        idp.xmlsec_verify(&b64).expect("the Response signature verifies");
        // Re-signing keeps both signatures valid; modifying breaks the Response's.
        let a = idp.craft("wrong_audience", &b64);
        assert_eq!(signature_count(&decode_base64(&a)), 2);
        idp.xmlsec_verify(&a).expect("both re-signed");
        idp.xmlsec_verify(&idp.craft("modified_after_signing", &b64))
            .expect_err("modified");

        // Stop: the IdP is down; start again: same port and certificate.
        let cert = idp.cert_pem();
        idp.stop();
        assert!(
            reqwest::get(&idp.metadata_url).await.is_err(),
            "IdP still answers after stop"
        );
        let t = Instant::now();
        idp.start_again();
        eprintln!("SimpleSAMLphp restart took {:?}", t.elapsed());
        assert_eq!(idp.cert_pem(), cert);
        assert!(idp.metadata_xml().await.contains(&idp.cert_base64()));

        // Encrypted assertion with the SP's certificate (RSA, made here with openssl).
        let sp_key = idp.dir.path().join("sp.key");
        let sp_crt = idp.dir.path().join("sp.crt");
        let ok = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=sp",
            ])
            .arg("-keyout")
            .arg(&sp_key)
            .arg("-out")
            .arg(&sp_crt)
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(ok.success());
        let pem = std::fs::read_to_string(&sp_crt).expect("sp cert");
        let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        idp.register_sp(&sp_metadata(SP, ACS, Some(SLO), Some(&der)), &["--encrypt-assertion"])
            .await;
        idp.clear_session();
        let (enc, _, _) = sp_login(&idp, "_req-enc", "alice", "alice-pw").await;
        let ex = decode_base64(&enc);
        assert!(ex.contains("<saml:EncryptedAssertion>"), "{ex}");
        assert!(!ex.contains(">alice<"), "{ex}");
        let err = idp.try_craft("wrong_audience", &enc).expect_err("encrypted: refused");
        assert!(err.contains("EncryptedAssertion"), "{err}");
        let f = idp.dir.path().join("enc.xml");
        std::fs::write(&f, &ex).expect("write");
        let out = Command::new("xmlsec1")
            .args(["--decrypt", "--privkey-pem"])
            .arg(&sp_key)
            .arg(&f)
            .output()
            .expect("xmlsec1 --decrypt");
        let dec = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(dec.contains(">alice</saml:NameID>") && dec.contains("finance"), "{dec}");
    }
}
