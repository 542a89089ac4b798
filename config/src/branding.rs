//! Branding rules shared by `[branding]` and the admin UI's branding page: a product name,
//! an optional logo, and an accent colour that white text on it — and it as link text on
//! white — stay readable (WCAG 2 contrast ≥ 4.5:1).

use crate::Branding;

/// Least contrast of the accent against white accepted (WCAG AA for normal text).
pub const MIN_CONTRAST: f64 = 4.5;
/// Longest product name, characters.
pub const MAX_NAME_CHARS: usize = 60;
/// Longest logo URL, bytes.
pub const MAX_LOGO_URL: usize = 2048;

/// Checks a branding as typed; `Err` lists each bad field (`name`, `accent`, `logo_url`)
/// with a message saying what to do. `logo_url` may be empty (no logo).
pub fn check_branding(name: &str, accent: &str, logo_url: &str) -> Result<Branding, Vec<(&'static str, String)>> {
    let (name, accent, logo_url) = (name.trim(), accent.trim().to_ascii_lowercase(), logo_url.trim());
    let mut problems = Vec::new();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        problems.push((
            "name",
            format!("give a name of 1 to {MAX_NAME_CHARS} characters, without control characters"),
        ));
    }
    match rgb(&accent) {
        None => problems.push(("accent", format!("{accent:?} is not a #rrggbb colour (e.g. #0b6bcb)"))),
        Some(c) => {
            let ratio = contrast(c, (255, 255, 255));
            if ratio < MIN_CONTRAST {
                problems.push((
                    "accent",
                    format!(
                        "{accent} has a contrast of {ratio:.1}:1 with white text; it needs at least \
                         {MIN_CONTRAST}:1 to stay readable — choose a darker colour"
                    ),
                ));
            }
        }
    }
    if !logo_url.is_empty() && !logo_url_ok(logo_url) {
        problems.push((
            "logo_url",
            "give an https:// address or a path on this gateway starting with / (e.g. \
             https://intranet.example.com/logo.svg)"
                .to_string(),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Branding {
        name: name.to_string(),
        accent,
        logo_url: (!logo_url.is_empty()).then(|| logo_url.to_string()),
    })
}

/// Whether `url` may be shown as an image on the gateway's pages (the logo, app
/// thumbnails): an `https://` URL or a path on this gateway, without quotes, spaces or
/// angle brackets, at most [`MAX_LOGO_URL`] bytes.
pub(crate) fn logo_url_ok(url: &str) -> bool {
    let allowed = |c: char| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '<' | '>' | '\\' | '`');
    let shape = match url.strip_prefix("https://") {
        Some(rest) => rest.split('/').next().is_some_and(|host| !host.is_empty()),
        None => url.starts_with('/') && !url.starts_with("//"),
    };
    url.len() <= MAX_LOGO_URL && url.chars().all(allowed) && shape
}

/// `#rrggbb` → (r, g, b).
fn rgb(hex: &str) -> Option<(u8, u8, u8)> {
    let h = hex.strip_prefix('#')?;
    if h.len() != 6 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).ok();
    Some((byte(0)?, byte(2)?, byte(4)?))
}

/// WCAG 2 relative luminance.
fn luminance((r, g, b): (u8, u8, u8)) -> f64 {
    let lin = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.039_28 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
}

/// WCAG 2 contrast ratio of two colours, 1 to 21.
pub fn contrast(a: (u8, u8, u8), b: (u8, u8, u8)) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contrast_matches_wcag() {
        assert!((contrast((0, 0, 0), (255, 255, 255)) - 21.0).abs() < 1e-9);
        assert!((contrast((255, 255, 255), (255, 255, 255)) - 1.0).abs() < 1e-9);
        // #777777 on white is the classic 4.48:1 that just fails AA.
        let grey = contrast((0x77, 0x77, 0x77), (255, 255, 255));
        assert!(grey > 4.4 && grey < MIN_CONTRAST, "{grey}");
    }

    #[test]
    fn brandings() {
        let ok = check_branding(" Acme apps ", "#0B6BCB", "https://cdn.example.com/logo.svg").unwrap();
        assert_eq!(ok.name, "Acme apps");
        assert_eq!(ok.accent, "#0b6bcb");
        assert_eq!(ok.logo_url.as_deref(), Some("https://cdn.example.com/logo.svg"));
        assert_eq!(check_branding("Acme", "#1f7a4d", "").unwrap().logo_url, None);
        assert!(check_branding("Acme", "#123456", "/.gatehouse/assets/logo.svg").is_ok());
        let fields = |r: Result<Branding, Vec<(&'static str, String)>>| -> Vec<&'static str> {
            r.unwrap_err().into_iter().map(|(f, _)| f).collect()
        };
        assert_eq!(
            fields(check_branding("Acme", "#ffff00", "")),
            ["accent"],
            "yellow on white"
        );
        assert_eq!(fields(check_branding("Acme", "#777777", "")), ["accent"]);
        assert_eq!(fields(check_branding("Acme", "blue", "")), ["accent"]);
        assert_eq!(fields(check_branding("Acme", "#12345g", "")), ["accent"]);
        assert_eq!(fields(check_branding("", "#0b6bcb", "")), ["name"]);
        assert_eq!(fields(check_branding(&"x".repeat(61), "#0b6bcb", "")), ["name"]);
        assert_eq!(fields(check_branding("a\u{7}b", "#0b6bcb", "")), ["name"]);
        for bad in [
            "javascript:alert(1)",
            "http://plain.example.com/logo.png",
            "//evil.example.com/x.png",
            "https://",
            "https://x/\"onerror=alert(1)",
            "/logo.png x",
            "data:image/svg+xml,<svg>",
        ] {
            assert_eq!(fields(check_branding("Acme", "#0b6bcb", bad)), ["logo_url"], "{bad}");
        }
        let long = format!("https://x/{}", "a".repeat(MAX_LOGO_URL));
        assert_eq!(fields(check_branding("Acme", "#0b6bcb", &long)), ["logo_url"]);
    }
}
