//! OpenID Connect sign-in against a real OpenID Provider (npm `oidc-provider`, see
//! tests/peers/oidc/): the full code flow, every refusal with its clear page, key rotation,
//! 2,000 groups, two providers at once, refresh, userinfo fallback, provider filters and
//! RP-initiated logout.

use std::time::{Duration, Instant};

use gatehouse_tests::oidc::{Client, OpenIdProvider};
use gatehouse_tests::{reserve_port, Backend, Browser, Gateway, Page};

use crate::gatehouse;

struct Setup {
    gw: Gateway,
    op: OpenIdProvider,
    base: String,
    _backend: Backend,
}

fn provider_block(id: &str, op: &OpenIdProvider, client: &str, extra: &str) -> String {
    format!(
        "[[providers]]\nid = \"{id}\"\nkind = \"oidc\"\nlabel = \"{id} login\"\nissuer = \"{}\"\nclient_id = \"{client}\"\nclient_secret = \"{client}-secret\"\nscopes = [\"openid\", \"profile\", \"email\", \"groups\"]\n{extra}\n",
        op.issuer
    )
}

/// One OP, one gateway with provider `op` and apps `any` (authenticated) and `fin`
/// (finance only).
async fn setup(groups_in_userinfo_only: bool, extra: &str, server_extra: &str) -> Setup {
    let port = reserve_port();
    let base = format!("http://127.0.0.1:{port}");
    let op = OpenIdProvider::start(
        &[Client::new(
            "gatehouse",
            "gatehouse-secret",
            &format!("{base}/.gatehouse/oidc/op/callback"),
            &format!("{base}/.gatehouse/login?signed_out=1"),
        )],
        groups_in_userinfo_only,
    )
    .await;
    let backend = Backend::start("app").await;
    let b = [backend.addr];
    let gw = gatehouse()
        .listen_port(port)
        .server(server_extra)
        .raw(&provider_block("op", &op, "gatehouse", extra))
        .app(
            "any",
            &b,
            "access = \"authenticated\"\nheaders = { groups_sent = \"all\" }",
        )
        .app(
            "fin",
            &b,
            "access = \"restricted\"\nallow_groups = [\"finance\"]\nheaders = { groups_sent = \"referenced\" }",
        )
        .start()
        .await;
    Setup {
        gw,
        op,
        base,
        _backend: backend,
    }
}

/// Starts sign-in at the gateway, signs in at the OP, and returns the callback URL (not yet
/// visited) — so tests can tamper with it.
async fn to_callback(s: &Setup, b: &mut Browser, provider: &str, user: &str, pw: &str) -> String {
    let p = b
        .get(&format!("/.gatehouse/oidc/{provider}/start?rd=/apps/any/x"))
        .await;
    assert_eq!(p.status, 303, "start: {}", p.body);
    let authorize = p.location().unwrap().to_string();
    assert!(
        authorize.contains("code_challenge_method=S256") && authorize.contains("nonce="),
        "{authorize}"
    );
    let op_browser = OpenIdProvider::browser_client();
    s.op.login(&op_browser, &authorize, user, pw).await.expect("OP login")
}

/// Visits a callback URL at the gateway.
async fn visit(s: &Setup, b: &mut Browser, callback: &str) -> Page {
    let path = callback.strip_prefix(&s.base).expect("callback on the gateway");
    b.get(path).await
}

async fn sign_in(s: &Setup, user: &str, pw: &str) -> Browser {
    let mut b = s.gw.browser();
    let cb = to_callback(s, &mut b, "op", user, pw).await;
    let p = visit(s, &mut b, &cb).await;
    assert_eq!(p.status, 303, "callback: {}", p.body);
    assert_eq!(p.location(), Some("/apps/any/x"));
    b
}

fn header(p: &Page, name: &str) -> String {
    p.json()["headers"][name][0].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn code_flow_signs_in_and_the_app_sees_identity_and_groups() {
    let s = setup(false, "", "").await;
    let login = s.gw.browser().get("/.gatehouse/login").await;
    assert!(login.body.contains("Sign in with op login"), "{}", login.body);
    assert!(login.body.contains("/.gatehouse/oidc/op/start"));
    let mut alice = sign_in(&s, "alice", "alice-pw").await;
    let p = alice.get("/apps/any/x").await;
    assert_eq!(p.status, 200);
    assert_eq!(header(&p, "x-forwarded-user"), "op:alice");
    assert_eq!(header(&p, "x-forwarded-email"), "alice@example.org");
    assert_eq!(header(&p, "x-forwarded-groups"), "finance,staff");
    assert_eq!(alice.get("/apps/fin/").await.status, 200);
    let mut bob = sign_in(&s, "bob", "bob-pw").await;
    assert_eq!(bob.get("/apps/fin/").await.status, 403);
    // Only one small binding cookie per browser, however many attempts.
    let mut b = s.gw.browser();
    for _ in 0..3 {
        let _ = b.get("/.gatehouse/oidc/op/start").await;
    }
    assert_eq!(
        b.cookies.keys().filter(|k| k.contains("login")).count(),
        1,
        "{:?}",
        b.cookies
    );
    let log = s.gw.log();
    assert!(
        !log.contains("gatehouse-secret") && !log.contains("alice-pw"),
        "a secret reached the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_state_and_replayed_callbacks_are_refused() {
    let s = setup(false, "", "").await;
    // Tampered state.
    let mut b = s.gw.browser();
    let cb = to_callback(&s, &mut b, "op", "alice", "alice-pw").await;
    let tampered = cb.replace("state=", "state=x");
    let p = visit(&s, &mut b, &tampered).await;
    assert_eq!(p.status, 400);
    assert!(
        p.body.contains("This sign-in attempt expired") && p.body.contains("Try again"),
        "{}",
        p.body
    );
    assert!(!b.cookies.contains_key("gatehouse_session"));
    // The real callback still works once (the tampered one did not consume it)...
    let p = visit(&s, &mut b, &cb).await;
    assert_eq!(p.status, 303);
    // ...and never twice, not even from the same browser.
    let mut again = s.gw.browser();
    again.cookies = b.cookies.clone();
    again.cookies.remove("gatehouse_session");
    let p = visit(&s, &mut again, &cb).await;
    assert_eq!(p.status, 400, "replayed callback");
    // A callback completed in another browser (login CSRF) is refused.
    let mut victim_browser = s.gw.browser();
    let mut attacker = s.gw.browser();
    let cb = to_callback(&s, &mut attacker, "op", "bob", "bob-pw").await;
    let p = visit(&s, &mut victim_browser, &cb).await;
    assert_eq!(p.status, 400);
    assert!(!victim_browser.cookies.contains_key("gatehouse_session"));
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_id_tokens_are_refused_with_a_clear_page() {
    let s = setup(false, "", "").await;
    let mut failed = Vec::new();
    for (mode, words) in [
        ("wrong_nonce", "nonce"),
        ("wrong_audience", "another client"),
        ("expired", "expired"),
        ("unknown_key", "signature"),
        ("unknown_kid", "key the provider does not publish"),
        ("alg_none", "the token is not signed"),
        ("hs256_with_public_key", "not allowed"),
        ("wrong_issuer", "the token comes from another issuer"),
        ("wrong_azp", "another client (aud/azp)"),
    ] {
        let mut b = s.gw.browser();
        let cb = to_callback(&s, &mut b, "op", "alice", "alice-pw").await;
        s.op.misbehave(mode).await;
        let p = visit(&s, &mut b, &cb).await;
        // Every mode is tried, and every one that got through is named.
        if p.status != 401
            || !p.body.contains("could not be verified")
            || !p.body.contains(words)
            || !p.body.contains("Try again")
            || b.cookies.contains_key("gatehouse_session")
        {
            let page: String = p.body.chars().take(600).collect();
            failed.push(format!("{mode}: want 401 saying \"{words}\", got {}: {page}", p.status));
        }
    }
    assert!(
        failed.is_empty(),
        "tampered ID tokens not refused as they should be:\n{}",
        failed.join("\n")
    );
}

/// PKCE does not depend on the provider insisting: one that does not require it still gets
/// an S256 challenge, and the token request carries the verifier that matches it (the OP
/// checks it whenever a challenge was sent).
#[tokio::test(flavor = "multi_thread")]
async fn pkce_is_sent_and_verified_even_when_the_provider_does_not_require_it() {
    let s = setup(false, "", "").await;
    s.op.require_pkce(false).await;
    let mut alice = sign_in(&s, "alice", "alice-pw").await;
    assert_eq!(alice.get("/apps/any/").await.status, 200);
    let seen = s.op.pkce_seen().await;
    assert_eq!(seen["required"], false, "{seen}");
    let authorize = seen["authorize"].as_array().expect("authorization requests");
    assert!(!authorize.is_empty(), "{seen}");
    assert!(
        authorize
            .iter()
            .all(|a| a["code_challenge"] == true && a["code_challenge_method"] == "S256"),
        "{seen}"
    );
    let token = seen["token"].as_array().expect("token requests");
    assert_eq!(token.len(), 1, "{seen}");
    assert_eq!(token[0]["code_verifier"], true, "{seen}");
    assert_eq!(token[0]["status"], 200, "the verifier matches the challenge: {seen}");
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_errors_give_a_page_with_try_again() {
    let s = setup(false, "", "").await;
    let mut b = s.gw.browser();
    let p = b.get("/.gatehouse/oidc/op/start").await;
    let authorize = p.location().unwrap().to_string();
    let op_browser = OpenIdProvider::browser_client();
    let first = op_browser.get(&authorize).send().await.unwrap();
    let interaction = first.headers()["location"].to_str().unwrap().to_string();
    let abort = op_browser
        .get(s.op.url(&format!("{interaction}/abort")))
        .send()
        .await
        .unwrap();
    let mut loc = abort.headers()["location"].to_str().unwrap().to_string();
    for _ in 0..5 {
        if loc.starts_with(&s.base) {
            break;
        }
        let next = if loc.starts_with('/') {
            s.op.url(&loc)
        } else {
            loc.clone()
        };
        let r = op_browser.get(next).send().await.unwrap();
        loc = r.headers()["location"].to_str().unwrap().to_string();
    }
    assert!(loc.contains("error=access_denied"), "{loc}");
    let p = visit(&s, &mut b, &loc).await;
    assert_eq!(p.status, 403);
    assert!(
        p.body.contains("access_denied") && p.body.contains("Try again"),
        "{}",
        p.body
    );
    let p = b.get("/.gatehouse/oidc/nope/start").await;
    assert_eq!(p.status, 404);
    let p = b.get("/.gatehouse/oidc/op/callback?code=x").await;
    assert_eq!(p.status, 400, "a callback without state");
}

#[tokio::test(flavor = "multi_thread")]
async fn key_rotation_at_the_provider_is_followed() {
    let s = setup(false, "", "").await;
    let _ = sign_in(&s, "alice", "alice-pw").await;
    // Rotate: the next token has a kid the gateway has not seen. The gateway fetches the
    // JWKS again for it, at most every 5 s: sign-in works again once that floor has passed.
    s.op.rotate_keys().await;
    let t = Instant::now();
    let mut b = loop {
        let mut b = s.gw.browser();
        let cb = to_callback(&s, &mut b, "op", "bob", "bob-pw").await;
        let p = visit(&s, &mut b, &cb).await;
        if p.status == 303 {
            break b;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "still refused {:?} after a key rotation: {}",
            t.elapsed(),
            p.body
        );
    };
    assert_eq!(b.get("/apps/any/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_groups_keep_the_cookie_small() {
    let s = setup(false, "", "").await;
    let t = Instant::now();
    let mut many = sign_in(&s, "many", "many-pw").await;
    eprintln!("OIDC sign-in with 2,001 groups in the ID token: {:?}", t.elapsed());
    let c = many
        .set_cookies
        .iter()
        .find(|c| c.starts_with("gatehouse_session="))
        .unwrap();
    assert!(c.split(';').next().unwrap().len() < 100);
    let p = many.get("/apps/any/").await;
    assert_eq!(header(&p, "x-forwarded-groups").split(',').count(), 2001);
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_come_from_userinfo_when_not_in_the_id_token() {
    let s = setup(true, "", "").await;
    let mut alice = sign_in(&s, "alice", "alice-pw").await;
    assert_eq!(
        header(&alice.get("/apps/any/").await, "x-forwarded-groups"),
        "finance,staff"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_filters_refuse_other_domains_and_groups() {
    let s = setup(
        false,
        "allowed_email_domains = [\"example.org\"]\nrequired_groups = [\"staff\", \"contractors\"]",
        "",
    )
    .await;
    let _ = sign_in(&s, "alice", "alice-pw").await;
    let mut carol = s.gw.browser();
    let cb = to_callback(&s, &mut carol, "op", "carol", "carol-pw").await;
    let p = visit(&s, &mut carol, &cb).await;
    assert_eq!(p.status, 403);
    assert!(p.body.contains("email domain"), "{}", p.body);
    let s = setup(false, "required_groups = [\"finance\"]", "").await;
    let mut bob = s.gw.browser();
    let cb = to_callback(&s, &mut bob, "op", "bob", "bob-pw").await;
    let p = visit(&s, &mut bob, &cb).await;
    assert_eq!(p.status, 403);
    assert!(p.body.contains("none of the groups"), "{}", p.body);
}

/// `allowed_email_domains` trusts verified addresses only: `email_verified = false` is
/// refused with a page that says why, `true` is admitted, and `require_verified_email =
/// false` admits unverified addresses again.
#[tokio::test(flavor = "multi_thread")]
async fn allowed_email_domains_need_a_verified_email() {
    let s = setup(false, "allowed_email_domains = [\"example.org\"]", "").await;
    s.op.set_claims("bob", serde_json::json!({"email_verified": false}))
        .await;
    let mut bob = s.gw.browser();
    let cb = to_callback(&s, &mut bob, "op", "bob", "bob-pw").await;
    let p = visit(&s, &mut bob, &cb).await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(p.body.contains("email address is not verified"), "{}", p.body);
    assert!(!bob.cookies.contains_key("gatehouse_session"));
    assert_eq!(bob.get("/apps/any/").await.status, 302);

    s.op.set_claims("bob", serde_json::json!({"email_verified": true}))
        .await;
    let mut bob = sign_in(&s, "bob", "bob-pw").await;
    assert_eq!(
        header(&bob.get("/apps/any/").await, "x-forwarded-email"),
        "bob@example.org"
    );

    let s = setup(
        false,
        "allowed_email_domains = [\"example.org\"]\nrequire_verified_email = false",
        "",
    )
    .await;
    s.op.set_claims("bob", serde_json::json!({"email_verified": false}))
        .await;
    let mut bob = sign_in(&s, "bob", "bob-pw").await;
    assert_eq!(
        header(&bob.get("/apps/any/").await, "x-forwarded-email"),
        "bob@example.org"
    );
}

/// Group claims with commas and `%` reach the app as one group each: percent-encoded
/// inside the comma-separated header, real lists in the assertion.
#[tokio::test(flavor = "multi_thread")]
async fn group_claims_with_commas_cannot_inject_groups() {
    let s = setup(false, "", "").await;
    s.op.set_groups("bob", &["staff,admins", "R&D, Europe", "50%"]).await;
    let mut bob = sign_in(&s, "bob", "bob-pw").await;
    let p = bob.get("/apps/any/").await;
    let headers = &p.json()["headers"];
    assert_eq!(headers["x-forwarded-groups"][0], "50%25,r&d%2C europe,staff%2Cadmins");
    gatehouse_tests::identity::assert_groups(headers, &["50%", "r&d, europe", "staff,admins"]);
    let seen = gatehouse_tests::identity::split_groups(headers["x-forwarded-groups"][0].as_str().unwrap());
    assert!(!seen.iter().any(|g| g == "admins"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_updates_groups_and_logout_reaches_the_provider() {
    let s = setup(false, "refresh_interval = \"1s\"", "").await;
    let mut alice = sign_in(&s, "alice", "alice-pw").await;
    assert_eq!(alice.get("/apps/fin/").await.status, 200);
    s.op.set_groups("alice", &["staff", "auditors"]).await;
    let t = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let p = alice.get("/apps/any/").await;
        if header(&p, "x-forwarded-groups") == "auditors,staff" {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "groups never refreshed: {}",
            header(&p, "x-forwarded-groups")
        );
    }
    assert_eq!(alice.get("/apps/fin/").await.status, 403);

    let p = alice.logout().await;
    assert_eq!(p.status, 303);
    let to_op = p.location().unwrap().to_string();
    assert!(to_op.starts_with(&s.op.url("/session/end")), "{to_op}");
    assert!(
        to_op.contains("id_token_hint=") && to_op.contains("post_logout_redirect_uri="),
        "{to_op}"
    );
    let r = OpenIdProvider::browser_client().get(&to_op).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let back = r.headers()["location"].to_str().unwrap();
    assert!(
        back.starts_with(&format!("{}/.gatehouse/login?signed_out=1", s.base)),
        "{back}"
    );
    let seen = s.op.last_end_session().await;
    assert_eq!(seen["status"], 200, "{seen}");
    assert_eq!(alice.get("/apps/any/").await.status, 302, "local session gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_failure_ends_the_session() {
    let s = setup(false, "refresh_interval = \"1s\"", "").await;
    let mut alice = sign_in(&s, "alice", "alice-pw").await;
    let mut op = s.op;
    op.stop();
    op.start_again(false).await; // refresh tokens do not survive the OP restart
    let t = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(400)).await;
        if alice.get("/apps/any/").await.status == 302 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "session survived a failed refresh"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_providers_each_with_their_button() {
    let port = reserve_port();
    let base = format!("http://127.0.0.1:{port}");
    let back = format!("{base}/.gatehouse/login?signed_out=1");
    let staff = OpenIdProvider::start(
        &[Client::new(
            "gh-staff",
            "gh-staff-secret",
            &format!("{base}/.gatehouse/oidc/staff/callback"),
            &back,
        )],
        false,
    )
    .await;
    let partners = OpenIdProvider::start(
        &[Client::new(
            "gh-partners",
            "gh-partners-secret",
            &format!("{base}/.gatehouse/oidc/partners/callback"),
            &back,
        )],
        false,
    )
    .await;
    partners.set_groups("carol", &["partner-portal"]).await;
    let backend = Backend::start("app").await;
    let gw = gatehouse()
        .listen_port(port)
        .raw(&provider_block("staff", &staff, "gh-staff", ""))
        .raw(&provider_block("partners", &partners, "gh-partners", ""))
        .app("any", &[backend.addr], "access = \"authenticated\"")
        .start()
        .await;
    let page = gw.browser().get("/.gatehouse/login").await.body;
    assert!(
        page.contains("Sign in with staff login") && page.contains("Sign in with partners login"),
        "{page}"
    );
    for (provider, op, user, groups) in [
        ("staff", &staff, "alice", "finance,staff"),
        ("partners", &partners, "carol", "partner-portal"),
    ] {
        let mut b = gw.browser();
        let p = b.get(&format!("/.gatehouse/oidc/{provider}/start?rd=/apps/any/")).await;
        let cb = op
            .login(
                &OpenIdProvider::browser_client(),
                p.location().unwrap(),
                user,
                &format!("{user}-pw"),
            )
            .await
            .unwrap();
        let p = b.get(cb.strip_prefix(&base).unwrap()).await;
        assert_eq!(p.status, 303, "{provider}: {}", p.body);
        let p = b.get("/apps/any/").await;
        assert_eq!(p.json()["headers"]["x-forwarded-groups"][0], groups, "{provider}");
    }
}

/// Issue 11, defect 8: an OIDC user named like a local account was that account for
/// `allow_users`. An external provider's users are `<provider>:<name>` unless the provider
/// is configured to share the local namespace; a local name cannot claim a provider's.
#[tokio::test(flavor = "multi_thread")]
async fn an_oidc_user_named_like_a_local_user_is_not_that_user_unless_configured() {
    let port = reserve_port();
    let base = format!("http://127.0.0.1:{port}");
    let back = format!("{base}/.gatehouse/login?signed_out=1");
    let op = OpenIdProvider::start(
        &[
            Client::new(
                "gh-ext",
                "gh-ext-secret",
                &format!("{base}/.gatehouse/oidc/ext/callback"),
                &back,
            ),
            Client::new(
                "gh-corp",
                "gh-corp-secret",
                &format!("{base}/.gatehouse/oidc/corp/callback"),
                &back,
            ),
        ],
        false,
    )
    .await;
    let backend = Backend::start("app").await;
    let b = [backend.addr];
    let gw = gatehouse()
        .listen_port(port)
        .user("carol", "carol-local-pw", false, &[])
        .user("ext:carol", "poser-pw", false, &[])
        .raw("[[providers]]\nid = \"local\"\nkind = \"local\"\n")
        .raw(&provider_block("ext", &op, "gh-ext", ""))
        .raw(&provider_block("corp", &op, "gh-corp", "user_namespace = \"shared\""))
        .app("carols", &b, "access = \"restricted\"\nallow_users = [\"carol\"]")
        .app(
            "extcarols",
            &b,
            "access = \"restricted\"\nallow_users = [\"ext:carol\"]",
        )
        .start()
        .await;
    let oidc_sign_in = |provider: &'static str| {
        let (gw, op, base) = (&gw, &op, &base);
        async move {
            let mut b = gw.browser();
            let p = b.get(&format!("/.gatehouse/oidc/{provider}/start?rd=/")).await;
            let cb = op
                .login(
                    &OpenIdProvider::browser_client(),
                    p.location().unwrap(),
                    "carol",
                    "carol-pw",
                )
                .await
                .unwrap();
            let p = b.get(cb.strip_prefix(base.as_str()).unwrap()).await;
            (b, p)
        }
    };
    // The external provider's carol is ext:carol: not the local carol's app, but her own.
    let (mut ext, p) = oidc_sign_in("ext").await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(ext.get("/apps/carols/").await.status, 403);
    let p = ext.get("/apps/extcarols/").await;
    assert_eq!(p.status, 200);
    assert_eq!(header(&p, "x-forwarded-user"), "ext:carol");
    // A provider configured to share the local namespace: its carol is the local carol.
    let (mut corp, p) = oidc_sign_in("corp").await;
    assert_eq!(p.status, 303, "{}", p.body);
    let p = corp.get("/apps/carols/").await;
    assert_eq!(p.status, 200);
    assert_eq!(header(&p, "x-forwarded-user"), "carol");
    assert_eq!(corp.get("/apps/extcarols/").await.status, 403);
    // The local carol is carol; a local account named `ext:carol` cannot sign in as the
    // external provider's user.
    let mut local = gw.browser();
    assert_eq!(
        local
            .login("carol", "carol-local-pw", Some("/apps/carols/"))
            .await
            .status,
        303
    );
    assert_eq!(local.get("/apps/carols/").await.status, 200);
    let mut poser = gw.browser();
    let p = poser.login("ext:carol", "poser-pw", Some("/apps/extcarols/")).await;
    assert_ne!(p.status, 303, "{}", p.body);
    assert_ne!(poser.get("/apps/extcarols/").await.status, 200);
    assert!(gw.log().contains("in another provider's namespace"), "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_starts_while_the_provider_is_down_and_recovers() {
    let port = reserve_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut op = OpenIdProvider::start(
        &[Client::new(
            "gatehouse",
            "gatehouse-secret",
            &format!("{base}/.gatehouse/oidc/op/callback"),
            &base,
        )],
        false,
    )
    .await;
    op.stop();
    let backend = Backend::start("app").await;
    let gw = gatehouse()
        .listen_port(port)
        .raw(&provider_block("op", &op, "gatehouse", ""))
        .app("any", &[backend.addr], "access = \"authenticated\"")
        .start()
        .await;
    let mut b = gw.browser();
    let p = b.get("/.gatehouse/oidc/op/start").await;
    assert_eq!(p.status, 502);
    assert!(
        p.body.contains("cannot be reached") && p.body.contains("Try again"),
        "{}",
        p.body
    );
    op.start_again(false).await;
    // Discovery is retried at most every 5 s: wait until sign-in starts again.
    let recovered = gatehouse_tests::cluster::within(Duration::from_secs(15), || {
        let gw = &gw;
        async move {
            let p = gw.browser().get("/.gatehouse/oidc/op/start").await;
            p.status == 303
        }
    })
    .await;
    assert!(
        recovered.is_some(),
        "sign-in did not start again after the provider came back"
    );
    let s = Setup {
        gw,
        op,
        base,
        _backend: backend,
    };
    let mut alice = sign_in(&s, "alice", "alice-pw").await;
    assert_eq!(alice.get("/apps/any/").await.status, 200);
}

/// Behind a load balancer without stickiness the provider's callback may reach another
/// replica than the one that started the sign-in: the login record is in the shared store.
#[tokio::test(flavor = "multi_thread")]
async fn a_sign_in_started_on_one_replica_completes_on_another() {
    let db = gatehouse_tests::cluster::PgDatabase::create();
    let store = format!("\n[store]\nurl = \"{}\"\n", db.url);
    let s = setup(false, &store, "").await;
    let backend = Backend::start("app").await;
    let other = gatehouse()
        .server(&format!("public_url = \"{}\"", s.base))
        .raw(&provider_block("op", &s.op, "gatehouse", &store))
        .app("any", &[backend.addr], "access = \"authenticated\"")
        .start()
        .await;
    for (starts, finishes) in [(&s.gw, &other), (&other, &s.gw)] {
        let mut on_start = starts.browser();
        let p = on_start.get("/.gatehouse/oidc/op/start?rd=/apps/any/x").await;
        assert_eq!(p.status, 303, "start: {}", p.body);
        let cb =
            s.op.login(
                &OpenIdProvider::browser_client(),
                p.location().unwrap(),
                "alice",
                "alice-pw",
            )
            .await
            .expect("OP login");
        let mut on_finish = finishes.browser();
        on_finish.cookies = on_start.cookies.clone();
        let p = visit(&s, &mut on_finish, &cb).await;
        assert_eq!(p.status, 303, "callback on the other replica: {}", p.body);
        assert_eq!(p.location(), Some("/apps/any/x"));
        let page = on_finish.get("/apps/any/x").await;
        assert_eq!(header(&page, "x-forwarded-user"), "op:alice");
        // Single use across replicas: the same callback again, anywhere, is refused.
        let mut again = starts.browser();
        again.cookies = on_start.cookies.clone();
        assert_ne!(visit(&s, &mut again, &cb).await.status, 303, "replayed callback");
    }
}

/// Clock leeway of 60 s, both ways, and no more: an ID token issued (`iat`) or valid from
/// (`nbf`) 45 s ahead of the gateway's clock, or expired (`exp`) 45 s ago, is accepted; 80 s
/// is refused, each with its reason. (The 15–20 s margins absorb a slow machine between the
/// OP signing the token and the gateway checking it.)
#[tokio::test(flavor = "multi_thread")]
async fn id_token_times_get_60_s_leeway_both_ways_and_no_more() {
    let s = setup(false, "", "").await;
    let mut failed = Vec::new();
    for (claims, refusal) in [
        (serde_json::json!({ "iat": 45 }), None),
        (serde_json::json!({ "nbf": 45 }), None),
        (serde_json::json!({ "exp": -45 }), None),
        (serde_json::json!({ "iat": 80 }), Some("issued in the future")),
        (serde_json::json!({ "nbf": 80 }), Some("not valid yet")),
        (serde_json::json!({ "exp": -80 }), Some("the token has expired")),
    ] {
        let applied = s.op.misbehave_status().await["applied"].as_array().map_or(0, Vec::len);
        let mut b = s.gw.browser();
        let cb = to_callback(&s, &mut b, "op", "alice", "alice-pw").await;
        s.op.misbehave_times(claims.clone()).await;
        let p = visit(&s, &mut b, &cb).await;
        let status = s.op.misbehave_status().await;
        assert_eq!(
            status["applied"].as_array().map_or(0, Vec::len),
            applied + 1,
            "{claims}: the OP did not change the token: {status}"
        );
        let page: String = p.body.chars().take(600).collect();
        match refusal {
            None if p.status != 303 || !b.cookies.contains_key("gatehouse_session") => {
                failed.push(format!("{claims}: want accepted, got {}: {page}", p.status))
            }
            Some(words)
                if p.status != 401 || !p.body.contains(words) || b.cookies.contains_key("gatehouse_session") =>
            {
                failed.push(format!(
                    "{claims}: want 401 saying \"{words}\", got {}: {page}",
                    p.status
                ))
            }
            _ => {}
        }
    }
    assert!(failed.is_empty(), "time claims judged wrongly:\n{}", failed.join("\n"));
}

/// An unknown `kid` makes the gateway fetch the JWKS again, but at most once every 5 s:
/// a burst of sign-ins whose tokens all name unknown keys costs the provider at most one
/// JWKS fetch per started 5 s (each is still refused), and once the floor has passed the
/// next unknown key is looked up again.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_keys_refetch_the_jwks_at_most_every_5_s() {
    let s = setup(false, "", "").await;
    let _ = sign_in(&s, "alice", "alice-pw").await;
    let before = s.op.jwks_fetches().await;
    let t = Instant::now();
    for i in 0..6 {
        let mut b = s.gw.browser();
        let cb = to_callback(&s, &mut b, "op", "bob", "bob-pw").await;
        s.op.misbehave("unknown_kid").await;
        let p = visit(&s, &mut b, &cb).await;
        assert_eq!(p.status, 401, "unknown kid {i}: {}", p.body);
        assert!(p.body.contains("key the provider does not publish"), "{}", p.body);
    }
    let window = t.elapsed();
    let fetched = s.op.jwks_fetches().await - before;
    let allowed = 1 + window.as_secs() / 5;
    assert!(
        fetched <= allowed,
        "{fetched} JWKS fetches for 6 unknown keys in {window:?}: at most {allowed} allowed"
    );
    // Once 5 s have passed since the last fetch, an unknown key is looked up again.
    let seen = s.op.jwks_fetches().await;
    let again = gatehouse_tests::cluster::within(Duration::from_secs(20), || async {
        let mut b = s.gw.browser();
        let cb = to_callback(&s, &mut b, "op", "bob", "bob-pw").await;
        s.op.misbehave("unknown_kid").await;
        let p = visit(&s, &mut b, &cb).await;
        assert_eq!(p.status, 401, "{}", p.body);
        s.op.jwks_fetches().await > seen
    })
    .await;
    assert!(again.is_some(), "no JWKS fetch for an unknown key within 20 s");
}
