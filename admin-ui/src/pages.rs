//! Page rendering: one layout, escaped text everywhere.

use gatehouse_config::Branding;
use html_escape::encode_text as esc;

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
<title>{title} · {name}</title>
<link rel="stylesheet" href="/.gatehouse/assets/gatehouse.css">
<style>:root {{ --accent: {accent}; }}</style>
</head>
<body>
<header class="bar"><a class="brand" href="/"><span class="mark" aria-hidden="true">{initial}</span>{name}</a></header>
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
        initial = esc(&initial),
        cls = if narrow { r#" class="narrow""# } else { "" },
    )
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
