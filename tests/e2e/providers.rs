//! The Providers page, its LDAP test form and the name suggestions behind grant fields,
//! against a real slapd (tests/peers/ldap/): status probed on load (reachable, then
//! unreachable with the error once slapd stops), the lookup of `gatehouse ldap test` as a
//! guarded form, and suggestions that find directory people and groups who never signed in
//! — granting such a name lets exactly that person in at first sign-in.

use std::time::Duration;

use gatehouse_tests::cluster::within;
use gatehouse_tests::ldap::Slapd;
use gatehouse_tests::oidc::{Client, OpenIdProvider};
use gatehouse_tests::saml::{sp_metadata, SamlIdp};
use gatehouse_tests::{reserve_port, Backend, Browser, Gateway, Page};

use crate::gatehouse;

const PW: &str = "correct horse battery staple";

fn providers(slapd: &Slapd) -> String {
    format!(
        r#"[[providers]]
id = "local"
kind = "local"
label = "Local accounts"

[[providers]]
id = "corp"
kind = "ldap"
label = "Corporate directory"
url = "{url}"
bind_dn = "{bind_dn}"
bind_password = "{bind_pw}"
user_base = "{base}"
user_filter = "(&(objectClass=inetOrgPerson)(uid={{username}}))"
connect_timeout = "1s"
operation_timeout = "2s"
groups = {{ strategy = "member_of", nested = true }}
"#,
        url = slapd.url,
        bind_dn = slapd.bind_dn,
        bind_pw = slapd.bind_password,
        base = slapd.base,
    )
}

async fn start(slapd: &Slapd, backend: &Backend, extra: &str, port: Option<u16>) -> Gateway {
    let mut b = gatehouse()
        .raw(&providers(slapd))
        .raw(extra)
        .app("pub", &[backend.addr], "access = \"public\"")
        .user("root", PW, true, &[])
        .user("olga", PW, false, &["data"]);
    if let Some(p) = port {
        b = b.listen_port(p);
    }
    b.start().await
}

async fn signed_in(gw: &Gateway, user: &str, pw: &str) -> Browser {
    let mut b = gw.browser();
    assert_eq!(b.login(user, pw, None).await.status, 303, "{user} signs in");
    b
}

/// Posts `form` the way a browser on this gateway's page would (its Origin).
async fn post(b: &mut Browser, path: &str, form: &[(&str, &str)]) -> Page {
    let origin = b.origin();
    b.post_form_with(path, form, &[("origin", origin.as_str())]).await
}

/// Creates a restricted store app `slug` owned by `owner` (may be empty).
async fn create_app(root: &mut Browser, backend: &Backend, slug: &str, owner: &str) {
    let token = root
        .get("/.gatehouse/admin/apps/new")
        .await
        .input_value("csrf")
        .expect("token");
    let up = backend.addr.to_string();
    let p = post(
        root,
        "/.gatehouse/admin/apps/new",
        &[
            ("csrf", &token),
            ("version", "0"),
            ("slug", slug),
            ("name", slug),
            ("upstreams", &up),
            ("access", "restricted"),
            ("allow_groups", ""),
            ("allow_users", ""),
            ("owner_users", owner),
            ("portal_visible", "1"),
        ],
    )
    .await;
    assert_eq!(p.status, 303, "create {slug}: {}", p.body);
}

/// Posts the LDAP test form for `user` (provider corp) with `token`.
async fn ldap_test(b: &mut Browser, token: &str, user: &str) -> Page {
    post(
        b,
        "/.gatehouse/admin/providers/ldap-test",
        &[("csrf", token), ("provider", "corp"), ("user", user)],
    )
    .await
}

/// The card of provider `id` on the Providers page.
fn card<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!("data-provider=\"{id}\""))
        .unwrap_or_else(|| panic!("no card for {id}:\n{page}"));
    let end = page[start..]
        .find("</section>")
        .map(|e| start + e)
        .unwrap_or(page.len());
    &page[start..end]
}

fn names(p: &Page) -> Vec<String> {
    p.json()["suggestions"]
        .as_array()
        .unwrap_or_else(|| panic!("no suggestions: {}", p.body))
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

fn sources_of(p: &Page, name: &str) -> Vec<String> {
    p.json()["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} not suggested: {}", p.body))["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn providers_page_shows_status_and_the_ldap_test_form_looks_people_up() {
    let slapd = Slapd::start().await;
    let backend = Backend::start("app").await;
    let gw = start(&slapd, &backend, "", None).await;
    let mut root = signed_in(&gw, "root", PW).await;

    let page = root.get("/.gatehouse/admin/providers").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page
        .body
        .contains(r#"href="/.gatehouse/admin/providers" aria-current="page""#));
    let corp = card(&page.body, "corp");
    assert!(corp.contains(r#"data-status="reachable""#), "{corp}");
    assert!(
        corp.contains(&slapd.url) && corp.contains("ok as cn=gatehouse,ou=services"),
        "{corp}"
    );
    assert!(
        corp.contains("User search base</dt><dd>dc=example,dc=org"),
        "search base: {corp}"
    );
    assert!(card(&page.body, "local").contains(r#"data-status="reachable""#));
    assert!(!page.body.contains("service-pw"), "no secret on the page");

    // The test form: a directory user with their groups (nested ones too).
    let token = page.input_value("csrf").expect("token");
    let found = ldap_test(&mut root, &token, "alice").await;
    assert_eq!(found.status, 200, "{}", found.body);
    assert!(found.body.contains(r#"data-found="yes""#), "{}", found.body);
    assert!(found.body.contains("uid=alice,ou=people,dc=example,dc=org"));
    assert!(found.body.contains("alice@example.org") && found.body.contains("Alice Able"));
    for g in ["<li>finance</li>", "<li>staff</li>", "<li>R&amp;D, Europe</li>"] {
        assert!(found.body.contains(g), "{g} missing: {}", found.body);
    }
    let nested = ldap_test(&mut root, &token, "nested").await;
    assert!(nested.body.contains("<li>outer</li>"), "nested groups resolved");

    for unknown in ["nobody", "*", "al*", "alice)(uid=*"] {
        let p = ldap_test(&mut root, &token, unknown).await;
        assert_eq!(p.status, 200);
        assert!(
            p.body.contains(r#"data-found="no""#) && p.body.contains("Not found"),
            "{unknown:?} must not match anyone: {}",
            p.body
        );
        assert!(p.body.contains("user_filter"), "says what to check");
    }
    let long = "a".repeat(300);
    let p = post(
        &mut root,
        "/.gatehouse/admin/providers/ldap-test",
        &[("csrf", &token), ("provider", "corp"), ("user", &long)],
    )
    .await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains("ldap-user-error") && p.body.contains("at most 256 bytes"));

    // Guards: no token, a wrong token, another Origin.
    let p = post(
        &mut root,
        "/.gatehouse/admin/providers/ldap-test",
        &[("provider", "corp"), ("user", "alice")],
    )
    .await;
    assert_eq!(p.status, 403);
    assert!(!p.body.contains("uid=alice"));
    let p = post(
        &mut root,
        "/.gatehouse/admin/providers/ldap-test",
        &[("csrf", "forged"), ("user", "alice")],
    )
    .await;
    assert_eq!(p.status, 403);
    let p = root
        .post_form_with(
            "/.gatehouse/admin/providers/ldap-test",
            &[("csrf", &token), ("user", "alice")],
            &[("origin", "http://evil.example")],
        )
        .await;
    assert_eq!(p.status, 403);
    assert!(!p.body.contains("uid=alice"));

    // A non-administrator: 403 for the page, the form and the suggest endpoint.
    let mut olga = signed_in(&gw, "olga", PW).await;
    let p = olga.get("/.gatehouse/admin/providers").await;
    assert_eq!(p.status, 403);
    assert!(!p.body.contains(&slapd.url));
    let p = post(
        &mut olga,
        "/.gatehouse/admin/providers/ldap-test",
        &[("csrf", &token), ("user", "alice")],
    )
    .await;
    assert_eq!(p.status, 403);
    assert!(!p.body.contains("uid=alice"));
    let p = olga.get_json("/.gatehouse/admin/suggest?kind=user&q=ali").await;
    assert_eq!(p.status, 403);
    assert!(!p.body.contains("alice"));
    assert_eq!(
        gw.browser()
            .get_json("/.gatehouse/admin/suggest?kind=user&q=ali")
            .await
            .status,
        401,
        "nobody signed in"
    );

    // The directory goes away: the page says so, with the error, and so does the form.
    slapd.stop();
    let down = root.get("/.gatehouse/admin/providers").await;
    let corp = card(&down.body, "corp");
    assert!(corp.contains(r#"data-status="unreachable""#), "{corp}");
    assert!(
        corp.contains("field-error") && corp.contains("Service account bind</dt><dd>failed"),
        "{corp}"
    );
    // A sign-in attempt meets the outage: it is the provider's last error.
    let p = gw.browser().login("alice", "alice-pw", None).await;
    assert_eq!(p.status, 503, "{}", p.body);
    let down = root.get("/.gatehouse/admin/providers").await;
    let corp = card(&down.body, "corp");
    assert!(corp.contains(r#"class="last-error""#), "{corp}");
    let p = ldap_test(&mut root, &token, "alice").await;
    assert!(
        p.body.contains(r#"data-found="error""#) && p.body.contains("server URL"),
        "{}",
        p.body
    );
    slapd.start_again();
    let back = within(Duration::from_secs(5), || {
        let mut r = root.clone();
        async move {
            let p = r.get("/.gatehouse/admin/providers").await;
            card(&p.body, "corp").contains(r#"data-status="reachable""#)
        }
    })
    .await;
    assert!(back.is_some(), "reachable again once slapd is back");
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_people_who_never_signed_in_are_suggested_and_granted() {
    let slapd = Slapd::start().await;
    let backend = Backend::start("app").await;
    let gw = start(&slapd, &backend, "", None).await;
    let mut root = signed_in(&gw, "root", PW).await;
    create_app(&mut root, &backend, "reports", "olga").await;
    create_app(&mut root, &backend, "ledger", "").await;

    // The grant field offers suggestions: a datalist without script, the combobox with it.
    let app_page = root.get("/.gatehouse/admin/apps/reports").await;
    assert!(
        app_page.body.contains(r#"list="grant-names""#) && app_page.body.contains(r#"<datalist id="grant-names">"#)
    );
    assert!(app_page.body.contains(r#"data-suggest-app="reports""#));
    assert!(
        app_page.body.contains(r#"<option value="olga" label="person">"#),
        "seen names pre-filled"
    );
    assert!(!app_page.body.contains(r#"value="alice""#), "alice never signed in");
    let js = gw.browser().get("/.gatehouse/assets/suggest.js").await;
    assert_eq!(js.status, 200);
    assert!(js.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));

    // alice has never signed in: the directory knows her, by a prefix of her user id.
    let p = root.get_json("/.gatehouse/admin/suggest?kind=user&q=Ali").await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(names(&p), ["alice"], "{}", p.body);
    assert_eq!(sources_of(&p, "alice"), ["directory corp"]);
    assert_eq!(p.json()["suggestions"][0]["detail"], "Alice Able");
    // Filter metacharacters are escaped: nobody matches them.
    for q in ["*", "*)(uid=*", "a*e"] {
        let p = root
            .get_json(&format!(
                "/.gatehouse/admin/suggest?kind=user&q={}",
                gatehouse_tests::browser::urlencode(q)
            ))
            .await;
        assert_eq!(p.status, 200);
        assert!(names(&p).is_empty(), "{q:?}: {}", p.body);
    }
    // Groups from the directory, in the spelling grants use; searches are size-limited.
    let p = root.get_json("/.gatehouse/admin/suggest?kind=group&q=FIN").await;
    assert_eq!(names(&p), ["finance"]);
    let p = root.get_json("/.gatehouse/admin/suggest?kind=group&q=r%26d").await;
    assert_eq!(names(&p), ["r&d, europe"]);
    let p = root.get_json("/.gatehouse/admin/suggest?kind=group&q=bulk-").await;
    let n = names(&p).len();
    assert!((1..=20).contains(&n), "{n} suggestions");
    // Bad input: a clear 400 naming the field.
    let p = root.get_json("/.gatehouse/admin/suggest?kind=app&q=x").await;
    assert_eq!((p.status, p.json()["field"].as_str()), (400, Some("kind")));
    let p = root
        .get_json(&format!("/.gatehouse/admin/suggest?kind=user&q={}", "a".repeat(300)))
        .await;
    assert_eq!((p.status, p.json()["field"].as_str()), (400, Some("q")));

    // An owner may ask for their app, not for another (nor without naming one).
    let mut olga = signed_in(&gw, "olga", PW).await;
    let p = olga
        .get_json("/.gatehouse/admin/suggest?kind=user&q=ali&app=reports")
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(names(&p), ["alice"]);
    for path in [
        "/.gatehouse/admin/suggest?kind=user&q=ali&app=ledger",
        "/.gatehouse/admin/suggest?kind=user&q=ali&app=nosuch",
        "/.gatehouse/admin/suggest?kind=user&q=ali",
    ] {
        let p = olga.get_json(path).await;
        assert_eq!(p.status, 403, "{path}");
        assert!(!p.body.contains("alice"), "{path}");
    }

    // Grant the suggested names: alice on reports (as a person), finance on ledger.
    let token = app_page.input_value("csrf").expect("token");
    let p = post(
        &mut root,
        "/.gatehouse/admin/apps/reports/grants",
        &[("csrf", &token), ("kind", "user"), ("name", "alice")],
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let p = post(
        &mut root,
        "/.gatehouse/admin/apps/ledger/grants",
        &[("csrf", &token), ("kind", "group"), ("name", "finance")],
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.body);

    // alice's first sign-in: she opens both; bob (staff, not finance) opens neither.
    let alice = signed_in(&gw, "alice", "alice-pw").await;
    let opened = within(Duration::from_secs(2), || {
        let mut a = alice.clone();
        async move { a.get("/apps/reports/").await.status == 200 }
    })
    .await;
    assert!(opened.is_some(), "alice opens the app granted to her name");
    assert_eq!(alice.clone().get("/apps/ledger/").await.status, 200, "group grant");
    let mut bob = signed_in(&gw, "bob", "bob-pw").await;
    assert_eq!(bob.get("/apps/reports/").await.status, 403);
    assert_eq!(bob.get("/apps/ledger/").await.status, 403);

    // Now she has signed in: both sources know her, merged into one suggestion.
    let p = root.get_json("/.gatehouse/admin/suggest?kind=user&q=al").await;
    assert_eq!(names(&p), ["alice"]);
    assert_eq!(sources_of(&p, "alice"), ["seen at sign-in", "directory corp"]);

    // A requester in 2,001 groups: the approver names one of them in a field that suggests
    // exactly their groups, instead of picking from a list of 2,001.
    let mut many = signed_in(&gw, "many", "many-pw").await;
    let page = many.get("/apps/ledger/").await;
    assert_eq!(page.status, 403);
    let many_token = page.input_value("csrf").expect("request token");
    let p = post(
        &mut many,
        "/.gatehouse/request-access",
        &[("csrf", &many_token), ("app", "ledger"), ("reason", "")],
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let requests = root.get("/.gatehouse/admin/requests").await;
    assert!(requests.body.contains(r#"name="grant_group""#), "{}", requests.body);
    assert!(requests.body.contains(r#"<option value="bulk-0007">"#));
    assert!(
        !requests.body.contains(r#"value="group:bulk-0007""#),
        "not 2,001 options"
    );
    let decide = |group: &'static str| {
        vec![
            ("csrf", token.clone()),
            ("app", "ledger".to_string()),
            ("user", "many".to_string()),
            ("decision", "approve".to_string()),
            ("grant_to", "group".to_string()),
            ("grant_group", group.to_string()),
        ]
    };
    let form = decide("finance");
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let p = post(&mut root, "/.gatehouse/admin/requests", &form).await;
    assert_eq!(p.status, 400, "not one of their groups: {}", p.body);
    let form = decide("Bulk-0007");
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let p = post(&mut root, "/.gatehouse/admin/requests", &form).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let opened = within(Duration::from_secs(2), || {
        let mut m = many.clone();
        async move { m.get("/apps/ledger/").await.status == 200 }
    })
    .await;
    assert!(opened.is_some(), "the group grant lets the requester in");
    assert_eq!(bob.get("/apps/ledger/").await.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oidc_provider_shows_its_issuer_discovery_and_keys() {
    let slapd = Slapd::start().await;
    let backend = Backend::start("app").await;
    let port = reserve_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut op = OpenIdProvider::start(
        &[Client::new(
            "gatehouse",
            "gatehouse-secret",
            &format!("{base}/.gatehouse/oidc/op/callback"),
            &format!("{base}/.gatehouse/login?signed_out=1"),
        )],
        false,
    )
    .await;
    let block = format!(
        "[[providers]]\nid = \"op\"\nkind = \"oidc\"\nlabel = \"Company SSO\"\nissuer = \"{}\"\nclient_id = \"gatehouse\"\nclient_secret = \"gatehouse-secret\"\n",
        op.issuer
    );
    let gw = start(&slapd, &backend, &block, Some(port)).await;
    let mut root = signed_in(&gw, "root", PW).await;
    let seen = within(Duration::from_secs(10), || {
        let mut r = root.clone();
        async move {
            let p = r.get("/.gatehouse/admin/providers").await;
            let c = card(&p.body, "op").to_string();
            c.contains(r#"data-status="reachable""#) && c.contains("Signing keys (JWKS)</dt><dd>1 key")
                || c.contains("keys, fetched")
        }
    })
    .await;
    let p = root.get("/.gatehouse/admin/providers").await;
    let shown = card(&p.body, "op").to_string();
    assert!(
        seen.is_some(),
        "the OIDC provider is shown reachable with its keys: {shown}"
    );
    assert!(shown.contains(&op.issuer), "{shown}");
    assert!(shown.contains("Discovery fetched</dt><dd>20"), "{shown}");
    assert!(!shown.contains("gatehouse-secret"), "no client secret");
    op.stop();
    let p = root.get("/.gatehouse/admin/providers").await;
    let c = card(&p.body, "op");
    assert!(c.contains(r#"data-status="unreachable""#), "{c}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saml_provider_shows_its_idp_metadata_refresh_and_certificate() {
    let slapd = Slapd::start().await;
    let backend = Backend::start("app").await;
    let port = reserve_port();
    let base = format!("http://127.0.0.1:{port}");
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
    let block = format!(
        "[[providers]]\nid = \"idp\"\nkind = \"saml\"\nlabel = \"Company SSO\"\nidp_metadata = \"{}\"\nuser_attribute = \"uid\"\nmetadata_refresh = \"1s\"\n",
        idp.metadata_url
    );
    let gw = start(&slapd, &backend, &block, Some(port)).await;
    let mut root = signed_in(&gw, "root", PW).await;
    // The certificate the IdP signs with, and its expiry as openssl reads it.
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-enddate", "-dateopt", "iso_8601", "-in"])
        .arg(&idp.cert_pem_file)
        .output()
        .unwrap();
    let end = String::from_utf8_lossy(&out.stdout).to_string();
    let end_date = end
        .trim()
        .trim_start_matches("notAfter=")
        .get(..10)
        .unwrap_or("?")
        .to_string();
    let refreshed = within(Duration::from_secs(10), || {
        let mut r = root.clone();
        async move {
            let p = r.get("/.gatehouse/admin/providers").await;
            card(&p.body, "idp").contains("Last refresh</dt><dd>ok")
        }
    })
    .await;
    let p = root.get("/.gatehouse/admin/providers").await;
    let c = card(&p.body, "idp").to_string();
    assert!(refreshed.is_some(), "the metadata refresh succeeded: {c}");
    assert!(c.contains(r#"data-status="reachable""#), "{c}");
    assert!(c.contains(&format!("IdP entity id</dt><dd>{}", idp.entity_id)), "{c}");
    assert!(c.contains(&idp.metadata_url), "metadata source: {c}");
    assert!(
        c.contains(&format!("Signing certificate expires</dt><dd>{end_date}")),
        "expiry {end_date} ({end}): {c}"
    );
    // The IdP goes away: unreachable, and the refresh failure is shown.
    idp.stop();
    let failed = within(Duration::from_secs(10), || {
        let mut r = root.clone();
        async move {
            let p = r.get("/.gatehouse/admin/providers").await;
            let c = card(&p.body, "idp");
            c.contains(r#"data-status="unreachable""#) && c.contains("Last refresh</dt><dd>failed")
        }
    })
    .await;
    let p = root.get("/.gatehouse/admin/providers").await;
    assert!(failed.is_some(), "{}", card(&p.body, "idp"));
}
