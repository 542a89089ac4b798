//! The App Portal's logic, apart from its HTML ([`crate::pages::portal`]): which cards go
//! in which section (a person's favourites first, then every other app, both in the
//! admin-set order), the "recently opened" strip, the tag list, the search and tag filter
//! used when the browser runs no script (the page's script applies the very same rules in
//! the browser: see [`PORTAL_SCRIPT`]), and `POST /.gatehouse/portal/favourite`.
//!
//! A favourite is set with an ordinary form (CSRF token bound to the session, the
//! gateway's own `Origin`), so it works without JavaScript: the answer is a redirect back
//! to the portal. The script sends the same form with `Accept: application/json` and moves
//! the card in place.

use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, StatusCode};
use serde::Deserialize;

use crate::admin::AdminError;
use crate::{PortalApp, RequestInfo, Shared};

/// Most apps in the "Recently opened" strip.
pub const RECENT_SHOWN: usize = 6;

/// How far back "recently opened" looks, in days.
pub const RECENT_DAYS: i64 = 30;

/// The portal's script (filtering by text and tag in the browser, favourites without a
/// reload), served at `/.gatehouse/assets/portal.js`.
pub const PORTAL_SCRIPT: &str = include_str!("assets/portal.js");

/// What the portal remembers of one person: their favourites (slugs, in the order they
/// were marked) and the apps they opened lately (slug, epoch second), latest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortalMemory {
    pub favourites: Vec<String>,
    pub recent: Vec<(String, i64)>,
}

/// The cards of one portal page, each section in the admin-set order.
#[derive(Debug, Default)]
pub struct Arranged<'a> {
    /// The viewer's favourites among the apps they may open.
    pub favourites: Vec<&'a PortalApp>,
    /// Every other app they may open.
    pub others: Vec<&'a PortalApp>,
    /// Apps they opened lately (and may still open), latest first, at most
    /// [`RECENT_SHOWN`]; each also appears in one of the two lists above.
    pub recent: Vec<&'a PortalApp>,
}

/// Splits `apps` (already in portal order) into favourites and the rest, and picks the
/// recently opened ones. Favourites and recents of apps the person can no longer open are
/// simply not shown.
pub fn arrange<'a>(apps: &'a [PortalApp], memory: &PortalMemory) -> Arranged<'a> {
    let (favourites, others) = apps.iter().partition(|a| memory.favourites.contains(&a.slug));
    let recent = memory
        .recent
        .iter()
        .filter_map(|(slug, _)| apps.iter().find(|a| a.slug == *slug))
        .take(RECENT_SHOWN)
        .collect();
    Arranged {
        favourites,
        others,
        recent,
    }
}

/// Whether `app` is shown for the search text `query` and tag `tag` (both may be empty):
/// every word of the query occurs in the app's name, description, tags or owner (ignoring
/// case), and the app carries the tag (ignoring case). The script does the same on the
/// card's `data-search` and `data-tags`.
pub fn matches(app: &PortalApp, query: &str, tag: &str) -> bool {
    let tag = tag.trim();
    if tag.is_empty() && query.trim().is_empty() {
        return true;
    }
    if !tag.is_empty() && !app.tags.iter().any(|t| t.to_lowercase() == tag.to_lowercase()) {
        return false;
    }
    let text = search_text(app);
    query.to_lowercase().split_whitespace().all(|word| text.contains(word))
}

/// The lower-case text a search looks through (the card's `data-search`).
pub fn search_text(app: &PortalApp) -> String {
    let mut s = format!("{} {} {}", app.name, app.description, app.owner);
    for t in &app.tags {
        s.push(' ');
        s.push_str(t);
    }
    s.to_lowercase()
}

/// Every tag of `apps` with how many apps carry it, by name (ignoring case; the first
/// spelling met is shown).
pub fn tag_counts(apps: &[PortalApp]) -> Vec<(String, usize)> {
    let mut seen: std::collections::BTreeMap<String, (String, usize)> = std::collections::BTreeMap::new();
    for t in apps.iter().flat_map(|a| a.tags.iter()) {
        seen.entry(t.to_lowercase()).or_insert_with(|| (t.clone(), 0)).1 += 1;
    }
    seen.into_values().collect()
}

/// What the favourite form sends.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct FavouriteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    app: String,
    /// `1` marks, anything else unmarks.
    #[serde(default)]
    favourite: String,
}

/// The purpose the favourite form's token is bound to.
pub(crate) const TOKEN_PURPOSE: &str = "portal";

/// `POST /.gatehouse/portal/favourite`: marks or unmarks one app the signed-in person may
/// open. A browser is sent back to the portal, at the card; a script asking for JSON gets
/// `{"app": …, "favourite": …}`.
pub(crate) async fn favourite(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    headers: HeaderMap,
    form: Result<Form<FavouriteForm>, FormRejection>,
) -> Response {
    let i = i.map(|e| e.0).unwrap_or_default();
    let json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let fail = |status: StatusCode, title: &str, message: &str| {
        if json {
            let body = serde_json::json!({ "error": message }).to_string();
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        } else {
            crate::error(&gate, status, title, message)
        }
    };
    let Some(v) = i.viewer.clone() else {
        return fail(StatusCode::UNAUTHORIZED, "Sign in first", "Sign in to keep favourites.");
    };
    let f = form.map(|Form(f)| f).unwrap_or_default();
    let expected = i
        .session_id_hash
        .as_deref()
        .map(|h| crate::csrf::bound_token(&gate.csrf_key(), h, TOKEN_PURPOSE));
    if !expected.is_some_and(|e| crate::csrf::same(&e, &f.csrf))
        || !crate::admin::same_origin(&headers, &gate.site().origin)
    {
        return fail(
            StatusCode::FORBIDDEN,
            "This page expired",
            "Reload the App Portal and try again.",
        );
    }
    let on = f.favourite == "1";
    match gate.set_favourite(&v.identity, &f.app, on).await {
        Ok(()) if json => (
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(serde_json::json!({ "app": f.app, "favourite": on })),
        )
            .into_response(),
        // Back to the card (the portal may be long); slugs are plain, anything else goes to the top.
        Ok(()) if f.app.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
            crate::see_other(&format!("/#app-{}", f.app))
        }
        Ok(()) => crate::see_other("/"),
        Err(AdminError::NotFound) => fail(
            StatusCode::NOT_FOUND,
            "No such app",
            "The App Portal lists the apps you can open.",
        ),
        Err(AdminError::Invalid(e)) => fail(
            StatusCode::BAD_REQUEST,
            "Not saved",
            &e.into_iter().map(|(_, m)| m).collect::<Vec<_>>().join("; "),
        ),
        Err(_) => fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not saved",
            "Favourites cannot be saved right now. Try again in a minute.",
        ),
    }
}

pub(crate) async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        PORTAL_SCRIPT,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(slug: &str, tags: &[&str]) -> PortalApp {
        PortalApp {
            slug: slug.into(),
            name: format!("{slug} board"),
            description: format!("numbers of {slug}"),
            href: format!("/apps/{slug}/"),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            thumbnail: None,
            owner: "Data team".into(),
            updated_at: None,
        }
    }

    fn slugs(apps: &[&PortalApp]) -> Vec<String> {
        apps.iter().map(|a| a.slug.clone()).collect()
    }

    #[test]
    fn favourites_come_first_and_keep_the_portal_order() {
        let apps = [app("a", &[]), app("b", &[]), app("c", &[]), app("d", &[])];
        let memory = PortalMemory {
            // Marked in another order, and one app the person can no longer open.
            favourites: vec!["d".into(), "gone".into(), "b".into()],
            recent: vec![("c".into(), 30), ("gone".into(), 20), ("d".into(), 10)],
        };
        let a = arrange(&apps, &memory);
        assert_eq!(slugs(&a.favourites), ["b", "d"]);
        assert_eq!(slugs(&a.others), ["a", "c"]);
        assert_eq!(slugs(&a.recent), ["c", "d"], "latest first, apps not open left out");
        let none = arrange(&apps, &PortalMemory::default());
        assert!(none.favourites.is_empty() && none.recent.is_empty());
        assert_eq!(none.others.len(), 4);
    }

    #[test]
    fn recent_strip_is_capped() {
        let apps: Vec<PortalApp> = (0..10).map(|i| app(&format!("a{i}"), &[])).collect();
        let memory = PortalMemory {
            favourites: vec![],
            recent: (0..10).map(|i| (format!("a{i}"), 100 - i)).collect(),
        };
        assert_eq!(arrange(&apps, &memory).recent.len(), RECENT_SHOWN);
    }

    #[test]
    fn search_and_tag_filter() {
        let sales = app("sales", &["Finance", "dash"]);
        assert!(matches(&sales, "", ""));
        assert!(matches(&sales, "SALES", ""));
        assert!(matches(&sales, "numbers sales", ""), "every word, anywhere");
        assert!(!matches(&sales, "sales hr", ""));
        assert!(matches(&sales, "finance", ""), "tags are searched");
        assert!(matches(&sales, "data team", ""), "the owner is searched");
        assert!(matches(&sales, "", "finance"), "tags ignore case");
        assert!(matches(&sales, "board", "DASH"));
        assert!(!matches(&sales, "", "hr"));
        assert!(!matches(&sales, "", "fin"), "a tag matches whole");
    }

    #[test]
    fn tags_are_counted_once_per_spelling() {
        let apps = [app("a", &["dash", "Finance"]), app("b", &["finance"]), app("c", &[])];
        assert_eq!(tag_counts(&apps), [("dash".to_string(), 1), ("Finance".to_string(), 2)]);
    }
}
