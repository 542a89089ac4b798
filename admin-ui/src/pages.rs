//! Page rendering: one layout, escaped text everywhere.

use gatehouse_config::Branding;
use html_escape::encode_double_quoted_attribute as attr;
use html_escape::encode_text as esc;

use crate::portal::PortalMemory;
use crate::{PortalApp, Site, Viewer};

/// A single-sign-on button on the login page.
#[derive(Debug, Clone)]
pub struct SsoButton {
    pub label: String,
    /// Where the flow starts, e.g. `/.gatehouse/oidc/okta/start`.
    pub href: String,
}

/// What an error page says: the status line, a title, what happened in plain words, and
/// what to do next (a link).
#[derive(Debug, Clone)]
pub struct ErrorText<'a> {
    pub status: u16,
    pub title: &'a str,
    pub message: &'a str,
    /// A link to offer: (label, href).
    pub action: Option<(&'a str, &'a str)>,
}

/// Wraps `body` in the shared layout: header with the brand, main column, footer.
pub fn layout(brand: &Branding, title: &str, body: &str, narrow: bool) -> String {
    layout_with_nav(brand, title, body, narrow, "")
}

/// The layout with `nav` (trusted HTML) on the right of the header bar.
pub fn layout_with_nav(brand: &Branding, title: &str, body: &str, narrow: bool, nav: &str) -> String {
    let initial = brand
        .name
        .chars()
        .next()
        .unwrap_or('G')
        .to_uppercase()
        .collect::<String>();
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{title} · {name}</title>
<link rel="icon" href="{icon}">
<link rel="stylesheet" href="/.gatehouse/assets/gatehouse.css">
<style>:root {{ --accent: {accent}; }}</style>
</head>
<body>
<header class="bar"><a class="brand" href="/">{mark}<span class="brand-name">{name}</span></a>{nav}</header>
<main{cls}>
{body}
</main>
<footer>Protected by Gatehouse</footer>
</body>
</html>
"#,
        title = esc(title),
        name = esc(&brand.name),
        accent = esc(&brand.accent),
        mark = match &brand.logo_url {
            Some(url) => format!(
                r#"<img class="logo" src="{}" alt="" width="32" height="32">"#,
                attr(url)
            ),
            None => format!(r#"<span class="mark" aria-hidden="true">{}</span>"#, esc(&initial)),
        },
        icon = attr(&favicon(&initial, &brand.accent)),
        cls = if narrow { r#" class="narrow""# } else { "" },
    )
}

/// The brand mark as an SVG `data:` URL, so browsers need not ask for `/favicon.ico`.
fn favicon(initial: &str, accent: &str) -> String {
    let svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'><rect width='32' height='32' rx='8' fill='{}'/><text x='16' y='22.5' font-family='system-ui,sans-serif' font-size='19' font-weight='700' fill='white' text-anchor='middle'>{}</text></svg>",
        esc(accent),
        esc(initial),
    );
    format!(
        "data:image/svg+xml,{}",
        percent_encoding::utf8_percent_encode(&svg, percent_encoding::NON_ALPHANUMERIC)
    )
}

/// The first letter or digit of `s`, upper-cased, or `fallback`.
fn initial_of(s: &str, fallback: char) -> String {
    s.chars()
        .find(|c| c.is_alphanumeric())
        .unwrap_or(fallback)
        .to_uppercase()
        .collect()
}

/// A stable colour (one of six) for an app's mark, so cards are told apart at a glance.
fn tone(key: &str) -> u32 {
    key.bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % 6
}

/// What the login page shows.
#[derive(Debug)]
pub struct LoginForm<'a> {
    pub rd: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    pub notice: Option<&'a str>,
}

/// The sign-in page: a username/password form (when enabled).
pub fn login(site: &Site, f: &LoginForm<'_>) -> String {
    let alert = match (f.error, f.notice) {
        (Some(e), _) => format!(r#"<div class="alert error" role="alert">{}</div>"#, esc(e)),
        (None, Some(n)) => format!(r#"<div class="alert" role="status">{}</div>"#, esc(n)),
        _ => String::new(),
    };
    let form = if site.password_form {
        format!(
            r#"<form method="post" action="/.gatehouse/login" class="stack">
<input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="rd" value="{rd}">
<label for="username">User name</label>
<input id="username" name="username" type="text" autocomplete="username" autocapitalize="none" spellcheck="false" required value="{user}"{focus_user}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required{focus_pw}>
<button class="button wide" type="submit">Sign in</button>
</form>"#,
            csrf = attr(f.csrf),
            rd = attr(f.rd),
            user = attr(f.username),
            focus_user = if f.username.is_empty() { " autofocus" } else { "" },
            focus_pw = if f.username.is_empty() { "" } else { " autofocus" },
        )
    } else if site.sso.is_empty() {
        r#"<p class="muted">No sign-in method is configured on this gateway.</p>"#.to_string()
    } else {
        String::new()
    };
    let sso: String = site
        .sso
        .iter()
        .map(|b| {
            let href = format!(
                "{}?rd={}",
                b.href,
                percent_encoding::utf8_percent_encode(f.rd, percent_encoding::NON_ALPHANUMERIC)
            );
            format!(
                r#"<a class="button secondary wide sso" href="{}">Sign in with {}</a>"#,
                attr(&href),
                esc(&b.label)
            )
        })
        .collect();
    let sso = match (sso.is_empty(), site.password_form) {
        (true, _) => String::new(),
        (false, true) => format!(
            r#"<div class="divider" role="separator"><span>or</span></div><div class="stack sso-list">{sso}</div>"#
        ),
        (false, false) => format!(r#"<div class="stack sso-list">{sso}</div>"#),
    };
    let body = format!(
        r#"<section class="card">
<h1>Sign in to {name}</h1>
{lead}
{alert}
{form}
{sso}
</section>"#,
        name = esc(&site.branding.get().name),
        lead = if site.password_form {
            r#"<p class="lead">Use your account to open your apps.</p>"#
        } else {
            ""
        },
    );
    layout(&site.branding.get(), "Sign in", &body, true)
}

/// The name to show for `v`: the display name, else the user name.
fn display(v: &Viewer) -> &str {
    v.display_name.as_deref().unwrap_or(v.identity.user.as_str())
}

fn nav(viewer: Option<&Viewer>, csrf: &str) -> String {
    match viewer {
        Some(v) => format!(
            r#"<nav class="who"><span class="user" title="Signed in as {user}"><span class="avatar" aria-hidden="true">{initial}</span><span class="user-name">{name}</span></span>
<form method="post" action="/.gatehouse/logout"><input type="hidden" name="csrf" value="{csrf}"><button class="button secondary" type="submit">Sign out</button></form></nav>"#,
            user = attr(v.identity.user.as_str()),
            initial = esc(&initial_of(display(v), '?')),
            name = esc(display(v)),
            csrf = attr(csrf),
        ),
        None => r#"<nav class="who"><a class="button" href="/.gatehouse/login">Sign in</a></nav>"#.to_string(),
    }
}

/// What one App Portal page shows.
#[derive(Debug)]
pub struct PortalPage<'a> {
    pub viewer: Option<&'a Viewer>,
    /// The apps the viewer may open, in portal order.
    pub apps: &'a [PortalApp],
    pub memory: &'a PortalMemory,
    /// The search text and tag of the address (`?q=…&tag=…`): applied on the server too,
    /// so filtering works without JavaScript.
    pub query: &'a str,
    pub tag: &'a str,
    pub requests: &'a [crate::admin::RequestRow],
    /// The sign-out form's token.
    pub csrf: &'a str,
    /// The favourite forms' token (signed in only).
    pub favourite_token: Option<&'a str>,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `2026-03-01` and `1 Mar 2026` for epoch second `t` (UTC).
fn day_words(t: i64) -> (String, String) {
    let iso = crate::admin::utc(t)[..10].to_string();
    let (y, m, d) = (&iso[..4], &iso[5..7], &iso[8..10]);
    let month = m
        .parse::<usize>()
        .ok()
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .copied()
        .unwrap_or(m);
    let words = format!("{} {month} {y}", d.trim_start_matches('0'));
    (iso, words)
}

/// The small square with the app's initial (no thumbnail, and the recent strip).
fn mark(a: &PortalApp, class: &str) -> String {
    format!(
        r#"<span class="app-mark {class}tone-{tone}" aria-hidden="true">{initial}</span>"#,
        tone = tone(&a.slug),
        initial = esc(&initial_of(&a.name, '?')),
    )
}

/// One card: the link (thumbnail or mark, name, description), its tags (links that
/// filter), owner and last update, and for a signed-in person the favourite toggle.
fn card(out: &mut String, a: &PortalApp, pos: usize, favourite: bool, hidden: bool, token: Option<&str>) {
    use std::fmt::Write;
    let picture = match &a.thumbnail {
        Some(src) => format!(
            r#"<img class="app-thumb" src="{}" alt="" loading="lazy" decoding="async" width="320" height="180">"#,
            attr(src)
        ),
        None => mark(a, ""),
    };
    let tags: String = a
        .tags
        .iter()
        .map(|t| {
            format!(
                r#"<li><a class="tag" href="/?tag={}">{}</a></li>"#,
                attr(&percent_encoding::utf8_percent_encode(t, percent_encoding::NON_ALPHANUMERIC).to_string()),
                esc(t)
            )
        })
        .collect();
    let mut facts = Vec::new();
    if !a.owner.is_empty() {
        facts.push(format!(r#"<span class="app-owner">Owner: {}</span>"#, esc(&a.owner)));
    }
    if let Some(t) = a.updated_at.filter(|t| *t > 0) {
        let (iso, words) = day_words(t);
        facts.push(format!(r#"<span>Updated <time datetime="{iso}">{words}</time></span>"#));
    }
    let fav = match token {
        Some(token) => format!(
            r#"<form class="fav" method="post" action="/.gatehouse/portal/favourite"><input type="hidden" name="csrf" value="{token}"><input type="hidden" name="app" value="{slug}"><input type="hidden" name="favourite" value="{next}"><button class="fav-button" type="submit" aria-pressed="{pressed}" aria-label="{label} {name}" title="{label}"><span aria-hidden="true">{star}</span></button></form>"#,
            token = attr(token),
            slug = attr(&a.slug),
            next = if favourite { "0" } else { "1" },
            pressed = favourite,
            label = if favourite {
                "Remove from favourites:"
            } else {
                "Add to favourites:"
            },
            name = attr(&a.name),
            star = if favourite { "\u{2605}" } else { "\u{2606}" },
        ),
        None => String::new(),
    };
    let _ = write!(
        out,
        r#"<li class="app{thumb_cls}" id="app-{slug}" data-slug="{slug}" data-pos="{pos}" data-search="{search}" data-tags="{data_tags}"{hidden}><a class="app-link" href="{href}">{picture}<span class="app-text"><span class="app-name">{name}</span><span class="app-desc">{desc}</span></span></a><div class="app-meta">{tag_list}{facts}</div>{fav}</li>"#,
        thumb_cls = if a.thumbnail.is_some() { " has-thumb" } else { "" },
        slug = attr(&a.slug),
        search = attr(&crate::portal::search_text(a)),
        data_tags = attr(&a.tags.iter().map(|t| t.to_lowercase()).collect::<Vec<_>>().join("\n")),
        hidden = if hidden { " hidden" } else { "" },
        href = attr(&a.href),
        name = esc(&a.name),
        desc = esc(&a.description),
        tag_list = if tags.is_empty() {
            String::new()
        } else {
            format!(r#"<ul class="tags" aria-label="Tags">{tags}</ul>"#)
        },
        facts = if facts.is_empty() {
            String::new()
        } else {
            format!(
                r#"<p class="app-facts">{}</p>"#,
                facts.join(r#"<span aria-hidden="true"> · </span>"#)
            )
        },
    );
}

/// What an empty portal says: why there is nothing, and what to do.
fn empty_portal(viewer: Option<&Viewer>) -> String {
    match viewer {
        None => r#"<div class="empty"><p><strong>No apps are open without signing in.</strong></p><p><a class="button" href="/.gatehouse/login">Sign in</a> to see the apps you can open.</p></div>"#.to_string(),
        Some(v) if v.identity.admin => r#"<div class="empty"><p><strong>No apps yet.</strong></p><p>Add the first one in the <a href="/.gatehouse/admin/apps/new">admin pages</a>, or as an <code>[[apps]]</code> entry in the config file. Everyone who may open an app will find it here.</p></div>"#.to_string(),
        Some(_) => r#"<div class="empty"><p><strong>No apps are open to you yet.</strong></p><p>Apps appear here as soon as an administrator gives you access. If you were sent a link to an app, open it: its page lets you ask for access.</p></div>"#.to_string(),
    }
}

/// The App Portal: the apps the viewer may open as cards — their favourites first, a strip
/// of the apps they opened recently, then every other app in the admin-set order — with a
/// search box and tag filter (in the browser, and through `?q=`/`?tag=` without script),
/// and sign in/out.
pub fn portal(site: &Site, p: &PortalPage<'_>) -> String {
    let arranged = crate::portal::arrange(p.apps, p.memory);
    let filtering = !p.query.trim().is_empty() || !p.tag.trim().is_empty();
    // Each card's place in portal order, and whether the filter keeps it: computed once.
    let places: std::collections::HashMap<&str, (usize, bool)> = p
        .apps
        .iter()
        .enumerate()
        .map(|(i, a)| (a.slug.as_str(), (i, crate::portal::matches(a, p.query, p.tag))))
        .collect();
    let shown = |a: &PortalApp| places.get(a.slug.as_str()).is_some_and(|(_, s)| *s);
    let pos = |a: &PortalApp| places.get(a.slug.as_str()).map_or(0, |(i, _)| *i);
    let mut favourites = String::with_capacity(arranged.favourites.len() * 700);
    for a in &arranged.favourites {
        card(&mut favourites, a, pos(a), true, !shown(a), p.favourite_token);
    }
    let mut others = String::with_capacity(arranged.others.len() * 700);
    for a in &arranged.others {
        card(&mut others, a, pos(a), false, !shown(a), p.favourite_token);
    }
    let matching = p.apps.iter().filter(|a| shown(a)).count();
    let heading = if p.viewer.is_some() { "Your apps" } else { "Apps" };
    let lead = match (p.viewer.is_some(), p.apps.len()) {
        (_, 0) => String::new(),
        (false, _) => r#"<p class="lead">Sign in to see every app you can open.</p>"#.to_string(),
        (true, 1) => r#"<p class="lead">1 app you can open.</p>"#.to_string(),
        (true, n) => format!(r#"<p class="lead">{n} apps you can open.</p>"#),
    };
    let tags = crate::portal::tag_counts(p.apps);
    let tag_filter = if tags.is_empty() {
        String::new()
    } else {
        let current = p.tag.trim().to_lowercase();
        let link = |href: String, label: &str, count: Option<usize>, active: bool, tag: &str| {
            format!(
                r#"<li><a class="chip" href="{href}" data-tag="{tag}"{current}>{label}{count}</a></li>"#,
                href = attr(&href),
                tag = attr(tag),
                current = if active { r#" aria-current="true""# } else { "" },
                label = esc(label),
                count = count
                    .map(|n| format!(r#" <span class="count">{n}</span>"#))
                    .unwrap_or_default(),
            )
        };
        let mut chips = link("/".into(), "All", None, current.is_empty(), "");
        for (t, n) in &tags {
            let href = format!(
                "/?tag={}",
                percent_encoding::utf8_percent_encode(t, percent_encoding::NON_ALPHANUMERIC)
            );
            chips.push_str(&link(href, t, Some(*n), current == t.to_lowercase(), &t.to_lowercase()));
        }
        format!(r#"<nav class="tag-filter" aria-label="Filter by tag"><ul>{chips}</ul></nav>"#)
    };
    let recent = if arranged.recent.is_empty() || p.viewer.is_none() {
        String::new()
    } else {
        let items: String = arranged
            .recent
            .iter()
            .map(|a| {
                format!(
                    r#"<li><a href="{href}">{mark}<span>{name}</span></a></li>"#,
                    href = attr(&a.href),
                    mark = mark(a, "small "),
                    name = esc(&a.name),
                )
            })
            .collect();
        format!(
            r#"<section class="recent" id="recent" aria-labelledby="recent-h"{hidden}><h2 id="recent-h">Recently opened</h2><ul class="recent-list">{items}</ul></section>"#,
            hidden = if filtering { " hidden" } else { "" },
        )
    };
    let signed_in = p.viewer.is_some();
    let body = format!(
        r#"<div class="portal-head"><div class="portal-title"><h1>{heading}</h1>{lead}</div>
<form class="search" role="search" method="get" action="/"><label for="app-search" class="visually-hidden">Search apps</label><input id="app-search" name="q" type="search" placeholder="Search apps" autocomplete="off" value="{q}" aria-keyshortcuts="/"{disabled}>{tag_field}</form></div>
{tag_filter}
{recent}
<p class="visually-hidden" id="filter-status" role="status" aria-live="polite">{status}</p>
<section class="portal-section" id="favourites-section" aria-labelledby="favourites-h"{fav_hidden}><h2 id="favourites-h">Favourites</h2><ul class="apps" id="favourites">{favourites}</ul></section>
<section class="portal-section" id="others-section" aria-labelledby="others-h"{others_hidden}>{others_h}<ul class="apps" id="apps">{others}</ul></section>
{empty}
<div class="empty" id="no-match"{no_match_hidden}><p>No app matches your search.</p><p><a href="/" id="clear-filter">Show all apps</a></p></div>
{requests}
<script src="/.gatehouse/assets/portal.js" defer></script>"#,
        q = attr(p.query),
        disabled = if p.apps.is_empty() { " disabled" } else { "" },
        tag_field = if p.tag.trim().is_empty() {
            String::new()
        } else {
            format!(r#"<input type="hidden" name="tag" value="{}">"#, attr(p.tag.trim()))
        },
        status = if filtering {
            format!("{matching} of {} apps shown", p.apps.len())
        } else {
            String::new()
        },
        fav_hidden = if !signed_in
            || arranged.favourites.is_empty()
            || (filtering && !arranged.favourites.iter().any(|a| shown(a)))
        {
            " hidden"
        } else {
            ""
        },
        others_hidden = if arranged.others.is_empty() || (filtering && !arranged.others.iter().any(|a| shown(a))) {
            " hidden"
        } else {
            ""
        },
        others_h = if signed_in && !arranged.favourites.is_empty() {
            r#"<h2 id="others-h">All apps</h2>"#
        } else {
            r#"<h2 id="others-h" class="visually-hidden">All apps</h2>"#
        },
        empty = if p.apps.is_empty() {
            empty_portal(p.viewer)
        } else {
            String::new()
        },
        no_match_hidden = if p.apps.is_empty() || matching > 0 {
            " hidden"
        } else {
            ""
        },
        requests = my_requests(p.requests),
    );
    layout_with_nav(&site.branding.get(), heading, &body, false, &nav(p.viewer, p.csrf))
}

/// "Your access requests" on the portal: where each request stands (approved ones are
/// already among the apps).
fn my_requests(requests: &[crate::admin::RequestRow]) -> String {
    let items: String = requests
        .iter()
        .filter(|r| r.status != "approved")
        .map(|r| {
            let state = match (r.status.as_str(), &r.decided_by) {
                ("declined", Some(by)) => format!("declined by {by}"),
                ("declined", None) => "declined".to_string(),
                _ => "waiting for an administrator".to_string(),
            };
            format!(r#"<li><strong>{}</strong> — {}</li>"#, esc(&r.app_name), esc(&state))
        })
        .collect();
    if items.is_empty() {
        String::new()
    } else {
        format!(r#"<section class="my-requests"><h2>Your access requests</h2><ul>{items}</ul></section>"#)
    }
}

/// The sign-out confirmation page (sign-out itself is a POST with a CSRF token).
pub fn logout(site: &Site, viewer: Option<&Viewer>, csrf: &str) -> String {
    let body = match viewer {
        Some(v) => format!(
            r#"<section class="card"><h1>Sign out</h1><p>You are signed in as <strong>{name}</strong>.</p>
<form method="post" action="/.gatehouse/logout"><input type="hidden" name="csrf" value="{csrf}">
<div class="actions"><button class="button" type="submit" autofocus>Sign out</button><a class="button secondary" href="/">Back to the App Portal</a></div></form></section>"#,
            name = esc(v.identity.user.as_str()),
            csrf = attr(csrf),
        ),
        None => r#"<section class="card"><h1>You are signed out</h1><div class="actions"><a class="button" href="/.gatehouse/login">Sign in</a></div></section>"#.to_string(),
    };
    layout(&site.branding.get(), "Sign out", &body, true)
}

/// A full HTML error page.
pub fn error_page(brand: &Branding, e: &ErrorText<'_>) -> String {
    let action = e
        .action
        .map(|(label, href)| {
            format!(
                r#"<div class="actions"><a class="button" href="{}">{}</a></div>"#,
                html_escape::encode_double_quoted_attribute(href),
                esc(label)
            )
        })
        .unwrap_or_default();
    let body = format!(
        r#"<section class="card error" role="alert">
<div class="status">Error {status}</div>
<h1>{title}</h1>
<p>{message}</p>
{action}
</section>"#,
        status = e.status,
        title = esc(e.title),
        message = esc(e.message),
    );
    layout(brand, e.title, &body, true)
}

/// The "Request access" part of a 403 page.
#[derive(Debug, Clone)]
pub struct RequestBox<'a> {
    /// The app's slug, sent back with the request.
    pub app: &'a str,
    /// The session-bound token for the form.
    pub token: &'a str,
    /// Where the person's earlier request stands: `pending` or `declined` (by whom).
    pub status: Option<(&'a str, Option<&'a str>)>,
}

/// A 403 page for an app, with a way to ask for access when `request` is given.
pub fn forbidden_page(brand: &Branding, e: &ErrorText<'_>, request: Option<&RequestBox<'_>>) -> String {
    let Some(r) = request else {
        return error_page(brand, e);
    };
    let state = match r.status {
        Some(("pending", _)) => r#"<div class="alert" role="status">Your request for access is waiting for an administrator. You can update your reason below.</div>"#.to_string(),
        Some(("declined", by)) => format!(
            r#"<div class="alert error" role="status">Your last request was declined{}. You can ask again with a reason.</div>"#,
            by.map(|b| format!(" by {}", esc(b))).unwrap_or_default()
        ),
        _ => String::new(),
    };
    let body = format!(
        r#"<section class="card error" role="alert">
<div class="status">Error {status}</div>
<h1>{title}</h1>
<p>{message}</p>
{state}
<form method="post" action="/.gatehouse/request-access" class="stack request-access">
<input type="hidden" name="csrf" value="{token}">
<input type="hidden" name="app" value="{app}">
<label for="reason">Why do you need it? (optional)</label>
<textarea id="reason" name="reason" rows="3" maxlength="1000"></textarea>
<div class="actions"><button class="button" type="submit">{button}</button><a class="button secondary" href="/">Go to the App Portal</a></div>
</form>
</section>"#,
        status = e.status,
        title = esc(e.title),
        message = esc(e.message),
        token = html_escape::encode_double_quoted_attribute(r.token),
        app = html_escape::encode_double_quoted_attribute(r.app),
        button = if r.status.is_some() {
            "Ask again"
        } else {
            "Request access"
        },
    );
    layout(brand, e.title, &body, true)
}

/// The same error as JSON, for API clients: `{"status":…,"error":…,"message":…}`.
pub fn error_json(e: &ErrorText<'_>) -> String {
    serde_json::json!({ "status": e.status, "error": e.title, "message": e.message }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brand() -> Branding {
        Branding {
            name: "Acme <Apps>".into(),
            accent: "#0b6bcb".into(),
            logo_url: None,
        }
    }

    #[test]
    fn error_page_escapes_everything() {
        let html = error_page(
            &brand(),
            &ErrorText {
                status: 404,
                title: "No app at <script>",
                message: "Nothing is served at /x\"<b>",
                action: Some(("Go to the portal", "/\"onmouseover=x")),
            },
        );
        assert!(html.contains("Error 404"));
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<b>"));
        assert!(html.contains("Acme &lt;Apps&gt;"));
        assert!(!html.contains("\"onmouseover"));
    }

    fn site() -> Site {
        Site {
            branding: std::sync::Arc::new(crate::BrandingCell::new(brand())),
            session_cookie: "s".into(),
            csrf_cookie: "c".into(),
            secure: false,
            session_max_age: 60,
            password_form: true,
            sso: vec![],
            login_cookie: "l".into(),
            origin: "http://gw".into(),
        }
    }

    fn card(slug: &str, tags: &[&str]) -> PortalApp {
        PortalApp {
            slug: slug.into(),
            name: format!("{slug} <b>"),
            description: String::new(),
            href: format!("/apps/{slug}/"),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            thumbnail: (slug == "a").then(|| "https://cdn.example.com/a.png".to_string()),
            owner: "Data team".into(),
            updated_at: Some(1_772_323_200), // 2026-03-01
        }
    }

    fn viewer() -> Viewer {
        Viewer {
            identity: gatehouse_policy::Identity {
                user: gatehouse_policy::UserName::new("alice"),
                groups: Default::default(),
                admin: false,
            },
            display_name: None,
            token: None,
        }
    }

    #[test]
    fn portal_cards_sections_and_filter_without_script() {
        let apps = [card("a", &["Finance"]), card("b", &["dash"]), card("c", &[])];
        let memory = PortalMemory {
            favourites: vec!["c".into()],
            recent: vec![("b".into(), 5)],
        };
        let v = viewer();
        let page = |query: &str, tag: &str, who: Option<&Viewer>| {
            portal(
                &site(),
                &PortalPage {
                    viewer: who,
                    apps: &apps,
                    memory: &memory,
                    query,
                    tag,
                    requests: &[],
                    csrf: "t",
                    favourite_token: who.map(|_| "fav-token"),
                },
            )
        };
        let html = page("", "", Some(&v));
        assert!(!html.contains("a <b>"), "names are escaped");
        let (fav, others) = (
            html.find(r#"id="favourites""#).unwrap(),
            html.find(r#"id="apps""#).unwrap(),
        );
        let pos = |slug: &str| html.find(&format!(r#"id="app-{slug}""#)).unwrap();
        assert!(
            fav < pos("c") && pos("c") < others,
            "the favourite is in its own section first"
        );
        assert!(others < pos("a") && pos("a") < pos("b"), "the rest in portal order");
        assert!(html.contains(r#"aria-pressed="true" aria-label="Remove from favourites: c &lt;b&gt;""#));
        assert!(html.contains(r#"<img class="app-thumb" src="https://cdn.example.com/a.png""#));
        assert!(html.contains(r#"Updated <time datetime="2026-03-01">1 Mar 2026</time>"#));
        assert!(html.contains("Owner: Data team"));
        assert!(html.contains(r#"<h2 id="recent-h">Recently opened</h2>"#));
        assert!(html.contains(r#"href="/?tag=Finance""#));
        // Without script: ?tag= hides the other cards (and the recent strip) on the server.
        let html = page("", "finance", Some(&v));
        assert!(html.contains(r#"id="app-b" data-slug="b" data-pos="1""#));
        let hidden = |html: &str, slug: &str| {
            let start = html.find(&format!(r#"id="app-{slug}""#)).unwrap();
            html[start..start + html[start..].find('>').unwrap()].contains(" hidden")
        };
        assert!(!hidden(&html, "a") && hidden(&html, "b") && hidden(&html, "c"));
        assert!(html.contains(r#"id="recent" aria-labelledby="recent-h" hidden"#));
        assert!(html.contains(
            r#"<p class="visually-hidden" id="filter-status" role="status" aria-live="polite">1 of 3 apps shown</p>"#
        ));
        let html = page("nothing like it", "", Some(&v));
        assert!(
            html.contains(r#"<div class="empty" id="no-match">"#),
            "no match says so"
        );
        // Nobody signed in: no favourite forms.
        let html = page("", "", None);
        assert!(!html.contains("/.gatehouse/portal/favourite") && !html.contains("Recently opened"));
    }

    #[test]
    fn an_empty_portal_says_what_to_do() {
        let v = viewer();
        let memory = PortalMemory::default();
        let page = |who: Option<&Viewer>| {
            portal(
                &site(),
                &PortalPage {
                    viewer: who,
                    apps: &[],
                    memory: &memory,
                    query: "",
                    tag: "",
                    requests: &[],
                    csrf: "t",
                    favourite_token: None,
                },
            )
        };
        assert!(page(Some(&v)).contains("as soon as an administrator gives you access"));
        assert!(page(None).contains("No apps are open without signing in"));
        let mut admin = viewer();
        admin.identity.admin = true;
        assert!(page(Some(&admin)).contains(r#"href="/.gatehouse/admin/apps/new""#));
    }

    #[test]
    fn error_json_is_json() {
        let j = error_json(&ErrorText {
            status: 503,
            title: "t",
            message: "m",
            action: None,
        });
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["status"], 503);
    }
}
