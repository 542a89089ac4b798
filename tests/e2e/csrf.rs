//! The sign-in and sign-out forms' CSRF token (issue 11, defect 7): the hidden field is a
//! keyed hash of the browser's CSRF cookie under a secret every replica shares, so a
//! cookie and field pair that someone else chose — an app on the same site can set
//! cookies for the gateway's domain — is refused; the browser's own pair still works.

use gatehouse_tests::{Backend, Browser};

use crate::gatehouse;

const PW: &str = "correct horse battery staple";

/// A cookie value of the shape the gateway issues, chosen by an attacker.
const PLANTED: &str = "AAAAAAAAAAAAAAAAAAAAAA";

fn plant(b: &mut Browser) {
    b.cookies.insert("gatehouse_session_csrf".into(), PLANTED.into());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_planted_cookie_and_field_pair_is_refused_and_the_browsers_own_works() {
    let backend = Backend::start("app").await;
    let gw = gatehouse()
        .user("bob", PW, false, &[])
        .app("any", &[backend.addr], "access = \"authenticated\"")
        .start()
        .await;

    // Sign-in: the planted cookie with the same value in the field.
    let mut b = gw.browser();
    plant(&mut b);
    let p = b
        .post_form(
            "/.gatehouse/login",
            &[
                ("username", "bob"),
                ("password", PW),
                ("csrf", PLANTED),
                ("rd", "/apps/any/"),
            ],
        )
        .await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(!b.cookies.contains_key("gatehouse_session"));
    // The page served to a browser carrying a planted cookie does not echo the cookie.
    let page = b.get("/.gatehouse/login").await;
    let field = page.input_value("csrf").unwrap();
    assert_ne!(field, PLANTED);

    // A normal browser: page, then form.
    let mut ok = gw.browser();
    let p = ok.login("bob", PW, Some("/apps/any/")).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(ok.get("/apps/any/").await.status, 200);

    // Sign-out: a planted pair cannot sign bob out; his own form can.
    let mut forced = ok.clone();
    plant(&mut forced);
    let p = forced.post_form("/.gatehouse/logout", &[("csrf", PLANTED)]).await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert_eq!(ok.get("/apps/any/").await.status, 200);
    let field = ok.get("/.gatehouse/logout").await.input_value("csrf").unwrap();
    let p = ok.post_form("/.gatehouse/logout", &[("csrf", &field)]).await;
    assert_eq!(p.status, 303, "{}", p.body);
}
