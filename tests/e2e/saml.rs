//! SAML 2.0 sign-in against a real IdP (SimpleSAMLphp, see tests/peers/saml/): the full
//! SP-initiated login, every refusal with a crafted or modified response, a provider that
//! must not start, encrypted assertions, 2,000 groups, group mapping, IdP-initiated login
//! and single logout both ways.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gatehouse_tests::saml::{sp_metadata, SamlIdp, SID_GROUP};
use gatehouse_tests::{reserve_port, Backend, Browser, Gateway, Page};

use crate::gatehouse;

struct Setup {
    gw: Gateway,
    idp: SamlIdp,
    base: String,
    _backend: Backend,
    _files: tempfile::TempDir,
}

/// An IdP and a gateway with SAML provider `idp`, registered at the IdP from the metadata
/// the gateway serves.
async fn setup(extra: &str, idp_options: &[&str], with_sp_keys: bool) -> Setup {
    setup_with(extra, idp_options, with_sp_keys, false).await
}

/// Like [`setup`]; with `by_url` the gateway reads the IdP metadata from the IdP's URL.
async fn setup_with(extra: &str, idp_options: &[&str], with_sp_keys: bool, by_url: bool) -> Setup {
    let port = reserve_port();
    let base = format!("http://127.0.0.1:{port}");
    let entity = format!("{base}/.gatehouse/saml/idp/metadata");
    let idp = SamlIdp::start(
        &sp_metadata(&entity, &format!("{base}/.gatehouse/saml/idp/acs"), None, None),
        &[],
    )
    .await;
    let files = tempfile::tempdir().unwrap();
    let md: PathBuf = files.path().join("idp-metadata.xml");
    std::fs::write(&md, idp.metadata_xml().await).unwrap();
    let mut keys = String::new();
    if with_sp_keys {
        // XML encryption needs an RSA key (key transport).
        let ok = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=gatehouse-sp",
                "-keyout",
            ])
            .arg(files.path().join("sp.key"))
            .arg("-out")
            .arg(files.path().join("sp.crt"))
            .output()
            .unwrap();
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
        keys = format!(
            "sp_cert = \"{}\"\nsp_key = \"file:{}\"\n",
            files.path().join("sp.crt").display(),
            files.path().join("sp.key").display()
        );
    }
    let backend = Backend::start("app").await;
    let b = [backend.addr];
    let gw = gatehouse()
        .listen_port(port)
        .raw(&format!(
            "[[providers]]\nid = \"idp\"\nkind = \"saml\"\nlabel = \"Company SSO\"\nidp_metadata = \"{}\"\nuser_attribute = \"uid\"\n{keys}{extra}\n",
            if by_url { idp.metadata_url.clone() } else { md.display().to_string() }
        ))
        .app("any", &b, "access = \"authenticated\"\nheaders = { groups_sent = \"all\" }")
        .app("fin", &b, "access = \"restricted\"\nallow_groups = [\"finance\"]\nheaders = { groups_sent = \"referenced\" }")
        .start()
        .await;
    let sp_xml = gw.get("/.gatehouse/saml/idp/metadata").await.text().await.unwrap();
    idp.register_sp(&sp_xml, idp_options).await;
    Setup {
        gw,
        idp,
        base,
        _backend: backend,
        _files: files,
    }
}

/// Starts sign-in at the gateway and signs in at the IdP; returns the response, the relay
/// state and the ACS path, not yet posted.
async fn at_idp(s: &Setup, b: &mut Browser, user: &str) -> (String, Option<String>, String) {
    let p = b.get("/.gatehouse/saml/idp/start?rd=/apps/any/x").await;
    assert_eq!(p.status, 303, "{}", p.body);
    s.idp.clear_session();
    let (resp, relay, acs) = s.idp.login(p.location().unwrap(), user, &format!("{user}-pw")).await;
    let path = acs.strip_prefix(&s.base).expect("ACS on the gateway").to_string();
    (resp, relay, path)
}

async fn post(b: &mut Browser, acs: &str, resp: &str, relay: Option<&str>) -> Page {
    let mut form = vec![("SAMLResponse", resp)];
    if let Some(r) = relay {
        form.push(("RelayState", r));
    }
    b.post_form(acs, &form).await
}

async fn sign_in(s: &Setup, user: &str) -> Browser {
    let mut b = s.gw.browser();
    let (resp, relay, acs) = at_idp(s, &mut b, user).await;
    let p = post(&mut b, &acs, &resp, relay.as_deref()).await;
    assert_eq!(p.status, 303, "ACS: {}", p.body);
    assert_eq!(p.location(), Some("/apps/any/x"));
    b
}

fn header(p: &Page, name: &str) -> String {
    p.json()["headers"][name][0].as_str().unwrap_or_default().to_string()
}

/// `url` (or a bare query) with parameter `name`'s value replaced by `encoded` (already
/// URL-encoded); every other parameter stays byte for byte.
fn with_param(url: &str, name: &str, encoded: &str) -> String {
    let (head, query) = url.split_once('?').map_or(("", url), |(h, q)| (h, q));
    let prefix = format!("{name}=");
    let query: Vec<String> = query
        .split('&')
        .map(|kv| {
            if kv.starts_with(&prefix) {
                format!("{prefix}{encoded}")
            } else {
                kv.to_string()
            }
        })
        .collect();
    assert!(query.iter().any(|kv| kv.starts_with(&prefix)), "no {name} in {url}");
    if head.is_empty() {
        query.join("&")
    } else {
        format!("{head}?{}", query.join("&"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sp_initiated_login_reaches_the_app_with_groups() {
    let s = setup("", &[], false).await;
    let md = s.gw.get("/.gatehouse/saml/idp/metadata").await.text().await.unwrap();
    assert!(
        md.contains(&format!("{}/.gatehouse/saml/idp/acs", s.base)) && md.contains("EntityDescriptor"),
        "{md}"
    );
    let login = s.gw.browser().get("/.gatehouse/login").await.body;
    assert!(login.contains("Sign in with Company SSO"));
    let mut alice = sign_in(&s, "alice").await;
    let p = alice.get("/apps/any/").await;
    assert_eq!(header(&p, "x-forwarded-user"), "idp:alice");
    assert_eq!(header(&p, "x-forwarded-email"), "alice@example.org");
    assert_eq!(header(&p, "x-forwarded-groups"), "finance,staff");
    assert_eq!(alice.get("/apps/fin/").await.status, 200);
    let mut bob = sign_in(&s, "bob").await;
    assert_eq!(bob.get("/apps/fin/").await.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn crafted_and_modified_responses_are_refused() {
    let s = setup("", &[], false).await;
    for (mode, words) in [
        ("unsigned", "signature"),
        ("other_key", "signature"),
        ("modified_after_signing", "signature"),
        ("second_assertion", "exactly one"),
        ("comment_in_nameid", "comments"),
        ("wrong_audience", "audience"),
        ("expired", "expired"),
        ("wrong_in_response_to", "another request"),
        ("wrong_destination", "Destination"),
        ("wrong_recipient", "Recipient"),
    ] {
        let mut b = s.gw.browser();
        let (resp, relay, acs) = at_idp(&s, &mut b, "alice").await;
        let bad = s.idp.craft(mode, &resp);
        let p = post(&mut b, &acs, &bad, relay.as_deref()).await;
        assert_eq!(p.status, 401, "{mode}: {}", p.body);
        assert!(
            p.body.contains("could not be verified") && p.body.contains(words),
            "{mode} ({words}): {}",
            p.body
        );
        assert!(p.body.contains("Try again"));
        assert!(!b.cookies.contains_key("gatehouse_session"), "{mode} created a session");
    }
    // A document type declaration is refused for itself: the response is otherwise the
    // genuine one, with its one signed assertion (the DTD is outside the signed element).
    let mut b = s.gw.browser();
    let (resp, relay, acs) = at_idp(&s, &mut b, "alice").await;
    let xml = gatehouse_tests::saml::decode_base64(&resp);
    let with_dtd = format!("<!DOCTYPE Response [<!ENTITY who \"admin\">]>{}", xml.trim_start());
    assert_eq!(with_dtd.matches(":Assertion ").count(), 1, "{with_dtd}");
    let p = post(
        &mut b,
        &acs,
        &gatehouse_tests::saml::encode_base64(&with_dtd),
        relay.as_deref(),
    )
    .await;
    assert_eq!(p.status, 401, "DTD: {}", p.body);
    assert!(p.body.contains("document type declaration"), "{}", p.body);
    assert!(!b.cookies.contains_key("gatehouse_session"), "a DTD created a session");
    // Replay: the genuine response works once, never twice.
    let mut b = s.gw.browser();
    let (resp, relay, acs) = at_idp(&s, &mut b, "alice").await;
    assert_eq!(post(&mut b, &acs, &resp, relay.as_deref()).await.status, 303);
    let mut thief = s.gw.browser();
    let p = post(&mut thief, &acs, &resp, relay.as_deref()).await;
    assert_eq!(p.status, 401, "replayed response: {}", p.body);
    let p = post(&mut thief, &acs, &resp, None).await;
    assert_eq!(p.status, 401, "replayed without relay state");
    // Garbage in any form gets a clear refusal.
    for junk in ["not base64!!", "PGZvbz4=", ""] {
        let p = post(&mut thief, &acs, junk, None).await;
        assert!(p.status == 401 || p.status == 400, "{junk}: {}", p.status);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_whose_idp_metadata_has_no_signing_certificate_does_not_start() {
    let idp = SamlIdp::start(
        &sp_metadata("http://127.0.0.1:1/sp", "http://127.0.0.1:1/acs", None, None),
        &[],
    )
    .await;
    let md = idp.metadata_xml().await;
    let start = md.find("<md:KeyDescriptor").expect("KeyDescriptor in IdP metadata");
    let mut stripped = md.clone();
    while let Some(a) = stripped.find("<md:KeyDescriptor") {
        let end = stripped[a..].find("</md:KeyDescriptor>").unwrap() + a + "</md:KeyDescriptor>".len();
        stripped.replace_range(a..end, "");
    }
    assert!(start > 0 && !stripped.contains("X509Certificate"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("idp.xml"), &stripped).unwrap();
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\n[[providers]]\nid = \"idp\"\nkind = \"saml\"\nidp_metadata = \"idp.xml\"\n",
            reserve_port()
        ),
    )
    .unwrap();
    // A gateway that starts anyway would serve forever: wait for its exit with a deadline.
    let stderr = dir.path().join("stderr");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running after 20 s: must refuse to start\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(1), "must refuse to start");
    let err = std::fs::read_to_string(&stderr).unwrap();
    assert!(err.contains("no signing certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_assertions_are_decrypted_with_the_sp_key() {
    // samael checks signatures before decrypting, so the Response itself must be signed.
    let s = setup("", &["--encrypt-assertion", "--sign-response"], true).await;
    let md = s.gw.get("/.gatehouse/saml/idp/metadata").await.text().await.unwrap();
    assert!(
        md.contains("X509Certificate"),
        "SP metadata carries its certificate: {md}"
    );
    let mut b = s.gw.browser();
    let (resp, relay, acs) = at_idp(&s, &mut b, "alice").await;
    let xml = gatehouse_tests::saml::decode_base64(&resp);
    assert!(xml.contains("EncryptedAssertion"), "the IdP encrypted it");
    let p = post(&mut b, &acs, &resp, relay.as_deref()).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(header(&b.get("/apps/any/").await, "x-forwarded-user"), "idp:alice");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_group_values_sign_in_quickly_with_a_small_cookie() {
    let s = setup("", &[], false).await;
    let mut b = s.gw.browser();
    let (resp, relay, acs) = at_idp(&s, &mut b, "many").await;
    assert!(resp.len() > 150_000, "response is {} bytes of base64", resp.len());
    let t = Instant::now();
    let p = post(&mut b, &acs, &resp, relay.as_deref()).await;
    let took = t.elapsed();
    eprintln!(
        "SAML ACS with 2,001 group values ({} KB response): {took:?}",
        resp.len() / 1024
    );
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let c = b
        .set_cookies
        .iter()
        .find(|c| c.starts_with("gatehouse_session="))
        .unwrap();
    assert!(c.split(';').next().unwrap().len() < 100);
    assert_eq!(
        header(&b.get("/apps/any/").await, "x-forwarded-groups")
            .split(',')
            .count(),
        2001
    );
}

/// Issue 11, defect 10: with the Response and the Assertion both signed (SimpleSAMLphp's
/// default), 2,000 groups once took seconds and held up every other request. The sign-in
/// must be as quick as with one signature, and health checks must keep answering meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_groups_signed_at_both_levels_sign_in_quickly_without_stalling_others() {
    let s = setup("", &["--sign-response"], false).await;
    let mut b = s.gw.browser();
    let (resp, relay, acs) = at_idp(&s, &mut b, "many").await;
    assert!(resp.len() > 150_000, "response is {} bytes of base64", resp.len());
    let xml = gatehouse_tests::saml::decode_base64(&resp);
    let signatures = xml.matches("<ds:Signature ").count() + xml.matches("<ds:Signature>").count();
    assert_eq!(signatures, 2, "the IdP signs both the Response and the Assertion");
    // Health checks every 10 ms on their own connection while the sign-in runs.
    let health = s.gw.client();
    let url = s.gw.url("/.gatehouse/healthz");
    assert_eq!(health.get(&url).send().await.unwrap().status(), 200);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            let mut count = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let r = health.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                worst = worst.max(t.elapsed());
                count += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (worst, count)
        })
    };
    let t = Instant::now();
    let p = post(&mut b, &acs, &resp, relay.as_deref()).await;
    let took = t.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (worst, count) = poller.await.unwrap();
    eprintln!(
        "SAML ACS, Response and Assertion signed, 2,001 group values ({} KB): {took:?}; \
         slowest of {count} health checks meanwhile: {worst:?}",
        resp.len() / 1024
    );
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert!(worst < Duration::from_millis(150), "a health check took {worst:?}");
    assert_eq!(
        header(&b.get("/apps/any/").await, "x-forwarded-groups")
            .split(',')
            .count(),
        2001
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn group_values_are_mapped_to_gatehouse_groups() {
    let s = setup(&format!("group_map = {{ \"{SID_GROUP}\" = \"finance\" }}"), &[], false).await;
    let mut sid = sign_in(&s, "sid").await;
    assert_eq!(sid.get("/apps/fin/").await.status, 200);
}

/// Attribute values with commas and `%` reach the app as one group each: percent-encoded
/// inside the comma-separated header, real lists in the assertion.
#[tokio::test(flavor = "multi_thread")]
async fn group_values_with_commas_cannot_inject_groups() {
    let s = setup("", &[], false).await;
    let mut rnd = sign_in(&s, "rnd").await;
    let p = rnd.get("/apps/any/").await;
    let headers = &p.json()["headers"];
    assert_eq!(
        headers["x-forwarded-groups"][0],
        "100%25 remote,r&d%2C europe,staff%2Cadmins"
    );
    gatehouse_tests::identity::assert_groups(headers, &["100% remote", "r&d, europe", "staff,admins"]);
    let seen = gatehouse_tests::identity::split_groups(headers["x-forwarded-groups"][0].as_str().unwrap());
    assert!(!seen.iter().any(|g| g == "admins"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn idp_initiated_login_only_when_enabled() {
    let s = setup("", &[], false).await;
    let entity = format!("{}/.gatehouse/saml/idp/metadata", s.base);
    let (resp, _, acs) = s
        .idp
        .login(&s.idp.idp_initiated_login_url(&entity, None), "alice", "alice-pw")
        .await;
    let mut b = s.gw.browser();
    let p = post(&mut b, acs.strip_prefix(&s.base).unwrap(), &resp, None).await;
    assert_eq!(p.status, 401);
    assert!(p.body.contains("unsolicited"), "{}", p.body);

    let s = setup("allow_idp_initiated = true", &[], false).await;
    let entity = format!("{}/.gatehouse/saml/idp/metadata", s.base);
    let (resp, relay, acs) = s
        .idp
        .login(
            &s.idp.idp_initiated_login_url(&entity, Some("//evil.example")),
            "alice",
            "alice-pw",
        )
        .await;
    let mut b = s.gw.browser();
    let p = post(&mut b, acs.strip_prefix(&s.base).unwrap(), &resp, relay.as_deref()).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location(), Some("/"), "a foreign RelayState is not followed");
}

/// The assertion-ID replay cache on its own: an unsolicited response (no InResponseTo, so
/// no single-use sign-in record is involved) posted again under a fresh RelayState.
#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_assertion_is_refused_by_its_id_under_a_fresh_relay_state() {
    let s = setup("allow_idp_initiated = true", &[], false).await;
    let entity = format!("{}/.gatehouse/saml/idp/metadata", s.base);
    let (resp, relay, acs) = s
        .idp
        .login(
            &s.idp.idp_initiated_login_url(&entity, Some("/apps/any/first")),
            "alice",
            "alice-pw",
        )
        .await;
    let acs = acs.strip_prefix(&s.base).unwrap().to_string();
    assert!(!gatehouse_tests::saml::decode_base64(&resp).contains("InResponseTo="));
    let mut b = s.gw.browser();
    let p = post(&mut b, &acs, &resp, relay.as_deref()).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location(), Some("/apps/any/first"));
    let mut thief = s.gw.browser();
    let p = post(&mut thief, &acs, &resp, Some("/apps/any/second")).await;
    assert_eq!(p.status, 401, "replayed under a fresh RelayState: {}", p.body);
    assert!(p.body.contains("already used (replay)"), "{}", p.body);
    assert!(
        !thief.cookies.contains_key("gatehouse_session"),
        "the replay created a session"
    );
    let p = post(&mut thief, &acs, &resp, None).await;
    assert_eq!(p.status, 401, "replayed without RelayState: {}", p.body);
    assert!(p.body.contains("already used (replay)"), "{}", p.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn sp_initiated_logout_ends_the_session_at_both_ends() {
    let s = setup("", &[], false).await;
    let mut alice = sign_in(&s, "alice").await;
    let p = alice.logout().await;
    assert_eq!(p.status, 303);
    let to_idp = p.location().unwrap().to_string();
    assert!(
        to_idp.starts_with(&s.idp.slo_url) && to_idp.contains("SAMLRequest="),
        "{to_idp}"
    );
    let hop = s.idp.follow(&to_idp).await;
    let back = hop.location.expect("IdP answers at our SLO endpoint");
    assert!(back.contains("/.gatehouse/saml/idp/slo?SAMLResponse="), "{back}");
    let p = alice.get(back.strip_prefix(&s.base).unwrap()).await;
    assert_eq!(p.status, 303);
    assert_eq!(p.location(), Some("/.gatehouse/login?signed_out=1"));
    assert_eq!(alice.get("/apps/any/").await.status, 302);
}

#[tokio::test(flavor = "multi_thread")]
async fn idp_initiated_logout_ends_the_session() {
    let s = setup("", &[], false).await;
    let mut alice = s.gw.browser();
    let p = alice.get("/.gatehouse/saml/idp/start?rd=/apps/any/").await;
    // Keep the IdP session (no clear_session) so the IdP knows this SP to log out of.
    let (resp, relay, acs) = s.idp.login(p.location().unwrap(), "alice", "alice-pw").await;
    let acs = acs.strip_prefix(&s.base).unwrap().to_string();
    assert_eq!(post(&mut alice, &acs, &resp, relay.as_deref()).await.status, 303);
    assert_eq!(alice.get("/apps/any/").await.status, 200);
    let hop = s
        .idp
        .follow(
            &s.idp
                .idp_initiated_logout_url(&format!("{}/.gatehouse/healthz", s.base)),
        )
        .await;
    let to_sp = hop.location.expect("LogoutRequest to the gateway");
    assert!(to_sp.contains("/.gatehouse/saml/idp/slo?SAMLRequest="), "{to_sp}");
    // Tampering with the signed LogoutRequest is refused and ends nothing: the message still
    // decodes and parses (only its ID changed), so only the signature can refuse it.
    let xml = gatehouse_tests::saml::redirect_decode(
        &gatehouse_tests::saml::query_param(&to_sp, "SAMLRequest").expect("SAMLRequest"),
    );
    let changed = xml.replacen(" ID=\"", " ID=\"_tampered", 1);
    assert_ne!(changed, xml);
    let tampered = with_param(
        &to_sp,
        "SAMLRequest",
        &gatehouse_tests::browser::urlencode(&gatehouse_tests::saml::redirect_encode(&changed)),
    );
    let mut stranger = s.gw.browser();
    let p = stranger.get(tampered.strip_prefix(&s.base).unwrap()).await;
    assert_eq!(p.status, 401, "{}", p.body);
    assert!(p.body.contains("signature does not verify"), "{}", p.body);
    assert_eq!(alice.get("/apps/any/").await.status, 200);
    let p = stranger.get(to_sp.strip_prefix(&s.base).unwrap()).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let answer = p.location().unwrap().to_string();
    assert!(
        answer.starts_with(&s.idp.slo_url) && answer.contains("SAMLResponse="),
        "{answer}"
    );
    let hop = s.idp.follow(&answer).await;
    assert!(
        hop.location
            .as_deref()
            .is_some_and(|l| l.ends_with("/.gatehouse/healthz")),
        "{hop:?}"
    );
    assert_eq!(alice.get("/apps/any/").await.status, 302, "session ended by the IdP");
}

/// Signs `bob` in with an IdP session of his own, then has the IdP log him out: returns the
/// signed LogoutRequest URL the IdP sends to the gateway (not delivered) and its XML.
async fn bobs_logout_request(s: &Setup) -> (String, String) {
    let mut bob = s.gw.browser();
    let p = bob.get("/.gatehouse/saml/idp/start?rd=/apps/any/").await;
    s.idp.clear_session();
    let (resp, relay, acs) = s.idp.login(p.location().unwrap(), "bob", "bob-pw").await;
    let acs = acs.strip_prefix(&s.base).unwrap().to_string();
    assert_eq!(post(&mut bob, &acs, &resp, relay.as_deref()).await.status, 303);
    let hop = s
        .idp
        .follow(
            &s.idp
                .idp_initiated_logout_url(&format!("{}/.gatehouse/healthz", s.base)),
        )
        .await;
    let to_sp = hop.location.expect("LogoutRequest to the gateway");
    let path = to_sp.strip_prefix(&s.base).unwrap().to_string();
    let xml = gatehouse_tests::saml::redirect_decode(
        &gatehouse_tests::saml::query_param(&to_sp, "SAMLRequest").expect("SAMLRequest"),
    );
    assert!(xml.contains(">bob</"), "{xml}");
    (path, xml)
}

/// Single logout takes exactly one of each parameter and verifies the bytes it reads: a
/// forged SAMLRequest for alice in front of bob's signed one (the signature was checked over
/// the last, the message read from the first) is refused and alice stays signed in; so is
/// any duplicated parameter, and a validly signed message for another Destination, too old,
/// or seen before.
#[tokio::test(flavor = "multi_thread")]
async fn logout_requests_are_verified_exactly_as_read() {
    let s = setup("", &[], false).await;
    let mut alice = sign_in(&s, "alice").await;
    assert_eq!(alice.get("/apps/any/").await.status, 200);
    let (legit, xml) = bobs_logout_request(&s).await;
    let (slo, query) = legit.split_once('?').unwrap();
    let forged = xml.replace(">bob</", ">alice</");
    let forged = gatehouse_tests::browser::urlencode(&gatehouse_tests::saml::redirect_encode(&forged));
    let mut stranger = s.gw.browser();
    let attacks = [
        format!("{slo}?SAMLRequest={forged}&{query}"),
        format!("{slo}?{query}&SAMLRequest={forged}"),
        format!("{slo}?SAMLRe%71uest={forged}&{query}"),
        format!("{slo}?{query}&RelayState=elsewhere"),
        format!("{slo}?{query}&SigAlg=x"),
        format!("{slo}?{query}&Signature=x"),
        format!("{slo}?{query}&SAMLResponse={forged}"),
    ];
    for (i, attack) in attacks.iter().enumerate() {
        let p = stranger.get(attack).await;
        assert_eq!(p.status, 401, "attack {i} was not refused: {}", p.body);
        assert_eq!(
            alice.get("/apps/any/").await.status,
            200,
            "attack {i} ended alice's session"
        );
    }
    assert!(stranger
        .get(&format!("{slo}?SAMLRequest={forged}&{query}"))
        .await
        .body
        .contains("more than once"));

    // The forged request in place of bob's, with bob's SigAlg and Signature; the same without
    // any signature: each decodes and parses, so only the signature check refuses them.
    for (why, attack, says) in [
        (
            "bob's signature on alice's request",
            format!("{slo}?{}", with_param(query, "SAMLRequest", &forged)),
            "signature does not verify",
        ),
        ("no signature", format!("{slo}?SAMLRequest={forged}"), "is not signed"),
    ] {
        let p = stranger.get(&attack).await;
        assert_eq!(p.status, 401, "{why}: {}", p.body);
        assert!(p.body.contains(says), "{why}: {}", p.body);
        assert_eq!(alice.get("/apps/any/").await.status, 200, "{why} ended alice's session");
    }

    // Signed with the IdP's key, but for another SP's endpoint, stale, or from the future.
    let now_id = |xml: &str, id: &str| {
        let at = xml.find(" ID=\"").unwrap() + 5;
        let end = at + xml[at..].find('"').unwrap();
        format!("{}{id}{}", &xml[..at], &xml[end..])
    };
    let instant = |xml: &str, t: &str| {
        let at = xml.find("IssueInstant=\"").unwrap() + 14;
        let end = at + xml[at..].find('"').unwrap();
        format!("{}{t}{}", &xml[..at], &xml[end..])
    };
    let dest = {
        let at = xml.find("Destination=\"").unwrap() + 13;
        xml[at..at + xml[at..].find('"').unwrap()].to_string()
    };
    assert!(dest.ends_with("/.gatehouse/saml/idp/slo"), "{dest}");
    let for_alice = xml.replace(">bob</", ">alice</");
    for (why, bad, says) in [
        (
            "another Destination",
            now_id(&for_alice, "_d1").replace(&dest, "http://127.0.0.1:9/other/slo"),
            "another Destination",
        ),
        (
            "no Destination",
            now_id(&for_alice, "_d2").replace(&format!(" Destination=\"{dest}\""), ""),
            "another Destination",
        ),
        (
            "issued 10 minutes ago",
            instant(&now_id(&for_alice, "_d3"), &gatehouse_tests::saml::instant(-600)),
            "too old",
        ),
        (
            "issued 10 minutes ahead",
            instant(&now_id(&for_alice, "_d4"), &gatehouse_tests::saml::instant(600)),
            "in the future",
        ),
        (
            // XML allows either quote: the check reads the attribute as XML does.
            "expired, its NotOnOrAfter in single quotes",
            {
                // In place of the IdP's own NotOnOrAfter if it sent one (a repeated attribute
                // is refused as unreadable), else added.
                let x = now_id(&for_alice, "_d5");
                let past = format!(" NotOnOrAfter='{}'", gatehouse_tests::saml::instant(-600));
                match x.find(" NotOnOrAfter=\"") {
                    Some(at) => {
                        let end = at + 15 + x[at + 15..].find('"').unwrap() + 1;
                        format!("{}{past}{}", &x[..at], &x[end..])
                    }
                    None => x.replacen(" ID=\"", &format!("{past} ID=\""), 1),
                }
            },
            "has expired",
        ),
    ] {
        let p = stranger
            .get(&format!("{slo}?{}", s.idp.sign_redirect("SAMLRequest", &bad, None)))
            .await;
        assert_eq!(p.status, 401, "{why}: {}", p.body);
        assert!(p.body.contains(says), "{why}: {}", p.body);
        assert_eq!(alice.get("/apps/any/").await.status, 200, "{why} ended alice's session");
    }

    // A request for alice that is fresh and correctly addressed, signed with the IdP's own key
    // but with RSA-SHA1: SHA-1 is not accepted.
    let sha1 = instant(&now_id(&for_alice, "_sha1"), &gatehouse_tests::saml::instant(0));
    let p = stranger
        .get(&format!(
            "{slo}?{}",
            s.idp.sign_redirect_with("sha1", "SAMLRequest", &sha1, None)
        ))
        .await;
    assert_eq!(p.status, 401, "RSA-SHA1: {}", p.body);
    assert!(p.body.contains("rsa-sha1 is not allowed"), "{}", p.body);
    assert_eq!(
        alice.get("/apps/any/").await.status,
        200,
        "RSA-SHA1 ended alice's session"
    );

    // bob's own request is accepted once; the same message again is a replay.
    let p = stranger.get(&legit).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let p = stranger.get(&legit).await;
    assert_eq!(p.status, 401, "replayed LogoutRequest: {}", p.body);
    assert!(p.body.contains("already"), "{}", p.body);
    assert_eq!(alice.get("/apps/any/").await.status, 200);
    // A fresh, correctly addressed and signed request for alice does end her session.
    let good = instant(&now_id(&for_alice, "_fresh"), &gatehouse_tests::saml::instant(0));
    let p = stranger
        .get(&format!(
            "{slo}?{}",
            s.idp.sign_redirect("SAMLRequest", &good, Some("r"))
        ))
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(alice.get("/apps/any/").await.status, 302);
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_signed_at_both_levels_are_accepted() {
    let s = setup("", &["--sign-response"], false).await;
    let mut alice = sign_in(&s, "alice").await;
    assert_eq!(header(&alice.get("/apps/any/").await, "x-forwarded-user"), "idp:alice");
    // And tampering is still caught when the Response carries its own signature.
    let mut b = s.gw.browser();
    let (resp, relay, acs) = at_idp(&s, &mut b, "alice").await;
    let p = post(
        &mut b,
        &acs,
        &s.idp.craft("modified_after_signing", &resp),
        relay.as_deref(),
    )
    .await;
    assert_eq!(p.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_by_url_is_refreshed_and_a_failed_refresh_keeps_the_last_good_copy() {
    let s = setup_with("metadata_refresh = \"1s\"", &[], false, true).await;
    let _ = sign_in(&s, "alice").await;
    s.idp.stop();
    let t = Instant::now();
    while !s.gw.log().contains("keeping the last good copy") {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no warning about the failed refresh"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.idp.start_again();
    // Recovery: the gateway fetches the metadata again (the IdP's request log shows it), and
    // from then on its refreshes succeed: two more fetches without a new warning.
    let fetches = || {
        std::fs::read_to_string(s.idp.dir.path().join("log/php-server.log"))
            .unwrap_or_default()
            .matches("GET /simplesaml/saml2/idp/metadata.php")
            .count()
    };
    let warnings = || s.gw.log().matches("keeping the last good copy").count();
    let after_restart = fetches();
    assert!(
        gatehouse_tests::cluster::within(Duration::from_secs(10), || async { fetches() > after_restart })
            .await
            .is_some(),
        "the gateway did not fetch the metadata again after the IdP came back"
    );
    let warned = warnings();
    let seen = fetches();
    assert!(
        gatehouse_tests::cluster::within(Duration::from_secs(10), || async { fetches() >= seen + 2 })
            .await
            .is_some(),
        "the refreshes stopped"
    );
    assert_eq!(
        warnings(),
        warned,
        "the refresh still fails after the IdP came back:\n{}",
        s.gw.log()
    );
    let mut bob = sign_in(&s, "bob").await;
    assert_eq!(bob.get("/apps/any/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn under_tls_a_sign_in_started_in_one_browser_cannot_end_in_another() {
    let port = reserve_port();
    let base = format!("https://localhost:{port}");
    let idp = SamlIdp::start(
        &sp_metadata(
            &format!("{base}/.gatehouse/saml/idp/metadata"),
            &format!("{base}/.gatehouse/saml/idp/acs"),
            None,
            None,
        ),
        &[],
    )
    .await;
    let files = tempfile::tempdir().unwrap();
    let md = files.path().join("idp.xml");
    std::fs::write(&md, idp.metadata_xml().await).unwrap();
    let backend = Backend::start("app").await;
    let gw = gatehouse()
        .listen_port(port)
        .tls(false)
        .raw(&format!(
            "[[providers]]\nid = \"idp\"\nkind = \"saml\"\nidp_metadata = \"{}\"\nuser_attribute = \"uid\"\n",
            md.display()
        ))
        .app("any", &[backend.addr], "access = \"authenticated\"")
        .start()
        .await;
    let sp_xml = gw.get("/.gatehouse/saml/idp/metadata").await.text().await.unwrap();
    idp.register_sp(&sp_xml, &[]).await;

    let mut attacker = gw.browser();
    let p = attacker.get("/.gatehouse/saml/idp/start").await;
    assert_eq!(p.status, 303);
    let binding = attacker
        .set_cookies
        .iter()
        .find(|c| c.contains("_saml="))
        .expect("binding cookie");
    assert!(
        binding.contains("SameSite=None") && binding.contains("Secure") && binding.contains("HttpOnly"),
        "{binding}"
    );
    let (resp, relay, acs) = idp.login(p.location().unwrap(), "bob", "bob-pw").await;
    let acs = acs.strip_prefix(&base).unwrap().to_string();
    let mut victim = gw.browser();
    let p = post(&mut victim, &acs, &resp, relay.as_deref()).await;
    assert_eq!(p.status, 401);
    assert!(p.body.contains("another browser"), "{}", p.body);
    assert!(!victim.cookies.keys().any(|k| k.ends_with("gatehouse_session")));

    idp.clear_session();
    let mut alice = gw.browser();
    let p = alice.get("/.gatehouse/saml/idp/start?rd=/apps/any/").await;
    let (resp, relay, _) = idp.login(p.location().unwrap(), "alice", "alice-pw").await;
    let p = post(&mut alice, &acs, &resp, relay.as_deref()).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(alice.get("/apps/any/").await.status, 200);
}

/// Behind a load balancer without stickiness the IdP's POST may reach another replica than
/// the one that started the sign-in; and an assertion used on one replica is refused on all.
#[tokio::test(flavor = "multi_thread")]
async fn a_sign_in_started_on_one_replica_completes_on_another() {
    let db = gatehouse_tests::cluster::PgDatabase::create();
    let store = format!("\n[store]\nurl = \"{}\"\n", db.url);
    let s = setup(&store, &[], false).await;
    let md = s._files.path().join("idp-metadata.xml");
    let backend = Backend::start("app").await;
    let other = gatehouse()
        .server(&format!("public_url = \"{}\"", s.base))
        .raw(&format!(
            "[[providers]]\nid = \"idp\"\nkind = \"saml\"\nlabel = \"Company SSO\"\nidp_metadata = \"{}\"\nuser_attribute = \"uid\"\n{store}\n",
            md.display()
        ))
        .app("any", &[backend.addr], "access = \"authenticated\"")
        .start()
        .await;
    let mut on_start = s.gw.browser();
    let (resp, relay, acs) = at_idp(&s, &mut on_start, "alice").await;
    let mut on_finish = other.browser();
    on_finish.cookies = on_start.cookies.clone();
    let p = post(&mut on_finish, &acs, &resp, relay.as_deref()).await;
    assert_eq!(p.status, 303, "ACS on the other replica: {}", p.body);
    assert_eq!(p.location(), Some("/apps/any/x"));
    assert_eq!(
        header(&on_finish.get("/apps/any/x").await, "x-forwarded-user"),
        "idp:alice"
    );
    // The same response again on the first replica: the RelayState record is used up.
    let mut again = s.gw.browser();
    let p = post(&mut again, &acs, &resp, relay.as_deref()).await;
    assert_eq!(p.status, 401, "{}", p.body);
}

/// Signature wrapping that keeps exactly one Assertion, so the "exactly one assertion" rule
/// cannot be what refuses it (tests/peers/saml/craft.py): a Response signed with the IdP's key
/// that holds no assertion (a failed sign-in) hidden in the wrapper's `Extensions`, or in a
/// `ds:Object` of the wrapper's own valid signature, and the IdP's assertion, unsigned and
/// naming "admin", where the signed one belongs. Only what the signature covers is read — the
/// failed Response —, so the refusal names the IdP's failure, not the assertion. With the
/// signed element's ID on the wrapper too, the duplicate ID is refused before verification.
#[tokio::test(flavor = "multi_thread")]
async fn signature_wrapping_that_keeps_one_assertion_is_refused() {
    let s = setup("", &[], false).await;
    for (mode, words) in [
        ("wrapped_in_extensions", "the IdP refused the sign-in"),
        ("wrapped_in_object", "the IdP refused the sign-in"),
        ("wrapped_id_reuse", "signature is missing or does not verify"),
    ] {
        let mut b = s.gw.browser();
        let (resp, relay, acs) = at_idp(&s, &mut b, "alice").await;
        let bad = s.idp.craft(mode, &resp);
        let xml = gatehouse_tests::saml::decode_base64(&bad);
        assert_eq!(xml.matches(":Assertion ").count(), 1, "{mode}: {xml}");
        assert!(xml.contains(">admin<"), "{mode}: {xml}");
        if mode != "wrapped_id_reuse" {
            // The document's signature is genuine: xmlsec1 verifies it with the IdP's certificate.
            s.idp
                .xmlsec_verify(&bad)
                .unwrap_or_else(|e| panic!("{mode}: the crafted signature does not verify: {e}"));
        }
        let p = post(&mut b, &acs, &bad, relay.as_deref()).await;
        assert_eq!(p.status, 401, "{mode}: {}", p.body);
        assert!(p.body.contains(words), "{mode} ({words}): {}", p.body);
        assert!(!b.cookies.contains_key("gatehouse_session"), "{mode} created a session");
    }
}

/// SHA-1 is not accepted: a response the IdP signs with RSA-SHA1 (SHA-1 digests), and the
/// genuine response re-signed with RSA-SHA256 over SHA-1 digests, are refused although each
/// signature is valid.
#[tokio::test(flavor = "multi_thread")]
async fn sha1_signatures_and_digests_are_refused() {
    let s = setup("", &["--signature-algorithm", "sha1"], false).await;
    let mut b = s.gw.browser();
    let (resp, relay, acs) = at_idp(&s, &mut b, "alice").await;
    let xml = gatehouse_tests::saml::decode_base64(&resp);
    assert!(
        xml.contains("xmldsig#rsa-sha1") && xml.contains("xmldsig#sha1"),
        "the IdP signs with SHA-1: {xml}"
    );
    s.idp.xmlsec_verify(&resp).expect("the IdP's SHA-1 signature is valid");
    let p = post(&mut b, &acs, &resp, relay.as_deref()).await;
    assert_eq!(p.status, 401, "RSA-SHA1: {}", p.body);
    assert!(p.body.contains("signature"), "{}", p.body);
    assert!(
        !b.cookies.contains_key("gatehouse_session"),
        "RSA-SHA1 created a session"
    );

    let s = setup("", &[], false).await;
    let mut b = s.gw.browser();
    let (resp, relay, acs) = at_idp(&s, &mut b, "alice").await;
    let bad = s.idp.craft("sha1_digest", &resp);
    let xml = gatehouse_tests::saml::decode_base64(&bad);
    assert!(
        xml.contains("xmldsig-more#rsa-sha256") && xml.contains("xmldsig#sha1\""),
        "{xml}"
    );
    s.idp.xmlsec_verify(&bad).expect("the re-signed response is valid");
    let p = post(&mut b, &acs, &bad, relay.as_deref()).await;
    assert_eq!(p.status, 401, "SHA-1 digest: {}", p.body);
    assert!(p.body.contains("signature"), "{}", p.body);
    assert!(
        !b.cookies.contains_key("gatehouse_session"),
        "a SHA-1 digest created a session"
    );
}
