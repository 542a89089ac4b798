//! Page rendering: one layout, escaped text everywhere.

use gatehouse_config::Branding;
use html_escape::encode_double_quoted_attribute as attr;
use html_escape::encode_text as esc;

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

/// The App Portal: a card per app the viewer may open, a search box, sign in/out.
pub fn portal(
    site: &Site,
    viewer: Option<&Viewer>,
    apps: &[PortalApp],
    requests: &[crate::admin::RequestRow],
    csrf: &str,
) -> String {
    let cards: String = apps
        .iter()
        .map(|a| {
            format!(
                r#"<li class="app" data-search="{search}"><a class="app-link" href="{href}"><span class="app-mark tone-{tone}" aria-hidden="true">{initial}</span><span class="app-text"><span class="app-name">{name}</span><span class="app-desc">{desc}</span></span></a></li>"#,
                search = attr(&format!("{} {}", a.name, a.description).to_lowercase()),
                href = attr(&a.href),
                tone = tone(&a.href),
                initial = esc(&initial_of(&a.name, '?')),
                name = esc(&a.name),
                desc = esc(&a.description),
            )
        })
        .collect();
    let heading = if viewer.is_some() { "Your apps" } else { "Apps" };
    let empty = if apps.is_empty() {
        if viewer.is_some() {
            r#"<p class="empty">No apps are open to you yet. Ask an administrator for access.</p>"#
        } else {
            r#"<p class="empty">No apps are open without signing in. <a href="/.gatehouse/login">Sign in</a> to see yours.</p>"#
        }
    } else {
        ""
    };
    let lead = match (viewer.is_some(), apps.len()) {
        (_, 0) => String::new(),
        (false, _) => r#"<p class="lead">Sign in to see every app you can open.</p>"#.to_string(),
        (true, 1) => r#"<p class="lead">1 app you can open.</p>"#.to_string(),
        (true, n) => format!(r#"<p class="lead">{n} apps you can open.</p>"#),
    };
    let body = format!(
        r#"<div class="portal-head"><div class="portal-title"><h1>{heading}</h1>{lead}</div>
<label class="search"><span class="visually-hidden">Search apps</span><input id="app-search" type="search" placeholder="Search apps" autocomplete="off"{disabled}></label></div>
<ul class="apps" id="apps">{cards}</ul>
{empty}
<p class="empty" id="no-match" hidden>No app matches your search.</p>
{requests}
<script>
(function () {{
  var input = document.getElementById('app-search');
  var items = Array.prototype.slice.call(document.querySelectorAll('#apps .app'));
  var none = document.getElementById('no-match');
  input.addEventListener('input', function () {{
    var q = input.value.trim().toLowerCase(), shown = 0;
    items.forEach(function (li) {{
      var hit = li.getAttribute('data-search').indexOf(q) !== -1;
      li.hidden = !hit; if (hit) shown++;
    }});
    none.hidden = shown !== 0 || items.length === 0;
  }});
}})();
</script>"#,
        disabled = if apps.is_empty() { " disabled" } else { "" },
        requests = my_requests(requests),
    );
    layout_with_nav(&site.branding.get(), heading, &body, false, &nav(viewer, csrf))
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
