//! The branding page: product name, logo and accent colour of every page (portal, sign-in,
//! error and admin pages), saved in the store on top of the config file's `[branding]`,
//! with the accent's contrast checked (and previewed) before anything is saved.

use super::*;

/// What the branding form sends. `reset` (the second button) goes back to the file's.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BrandingInput {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub accent: String,
    #[serde(default)]
    pub logo_url: String,
    pub reset: Option<String>,
    #[serde(default)]
    pub csrf: String,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct BrandingNotice {
    saved: Option<String>,
}

/// The form with `input` in it; `errors` next to their fields.
fn branding_form(view: &BrandingView, input: &BrandingInput, token: &str, errors: &[(String, String)]) -> String {
    let swatch = gatehouse_config::check_branding("x", &input.accent, "")
        .ok()
        .map(|b| {
            let rgb = |i: usize| u8::from_str_radix(&b.accent[i..i + 2], 16).unwrap_or(0);
            let ratio = gatehouse_config::contrast((rgb(1), rgb(3), rgb(5)), (255, 255, 255));
            format!(
                r#"<p class="swatch"><span class="swatch-chip" style="background:{accent}">Aa</span> White text on {accent}: contrast {ratio:.1}:1 (at least {min}:1 needed)</p>"#,
                accent = esc(&b.accent),
                min = gatehouse_config::MIN_CONTRAST,
            )
        })
        .unwrap_or_default();
    let source = if view.saved {
        "Saved in the admin UI; it takes precedence over the config file's <code>[branding]</code>."
    } else {
        "From the config file's <code>[branding]</code>."
    };
    let reset = if view.saved {
        r#"<button class="button secondary" type="submit" name="reset" value="1">Use the config file's</button>"#
    } else {
        ""
    };
    format!(
        r#"<p class="hint">{source}</p>
<form method="post" action="/.gatehouse/admin/branding" class="stack admin-form" novalidate>
<input type="hidden" name="csrf" value="{token}">
<label for="name">Product name</label><p class="hint" id="name-hint">Shown in every page's header and title; up to 60 characters.</p>
<input id="name" name="name" type="text" value="{name}" maxlength="60" required aria-describedby="name-hint"{n_inv}>{n_err}
<label for="accent">Accent colour</label><p class="hint" id="accent-hint">Buttons (white text on it) and links (it on white); <code>#rrggbb</code> with a contrast of at least 4.5:1 against white.</p>
<input id="accent" name="accent" type="text" value="{accent}" maxlength="7" spellcheck="false" aria-describedby="accent-hint"{a_inv}>{a_err}
{swatch}
<label for="logo_url">Logo address</label><p class="hint" id="logo-hint">Optional: an <code>https://</code> address or a path on this gateway; empty shows the name's first letter.</p>
<input id="logo_url" name="logo_url" type="text" value="{logo}" spellcheck="false" aria-describedby="logo-hint"{l_inv}>{l_err}
<div class="actions"><button class="button" type="submit">Save branding</button>{reset}</div>
</form>"#,
        token = attr(token),
        name = attr(&input.name),
        accent = attr(&input.accent),
        logo = attr(&input.logo_url),
        n_inv = described_by(errors, "name"),
        n_err = field_error(errors, "name"),
        a_inv = described_by(errors, "accent"),
        a_err = field_error(errors, "accent"),
        l_inv = described_by(errors, "logo_url"),
        l_err = field_error(errors, "logo_url"),
    )
}

pub(super) async fn branding_page(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    Query(n): Query<BrandingNotice>,
) -> Response {
    let i = info(i);
    let v = match admin(&gate, &i, "/.gatehouse/admin/branding") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let view = gate.branding_view().await;
    let input = BrandingInput {
        name: view.current.name.clone(),
        accent: view.current.accent.clone(),
        logo_url: view.current.logo_url.clone().unwrap_or_default(),
        ..BrandingInput::default()
    };
    let notice = if n.saved.is_some() {
        r#"<div class="alert ok" role="status">Branding saved: every page shows it now, on every replica.</div>"#
    } else {
        ""
    };
    let body = format!(
        r#"<div class="admin-head"><h1>Branding</h1></div>{notice}{form}"#,
        form = branding_form(&view, &input, &token_of(&gate, &i), &[])
    );
    page(&gate, &v, "Branding", "branding", &body)
}

pub(super) async fn save_branding(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    headers: HeaderMap,
    form: Result<Form<BrandingInput>, FormRejection>,
) -> Response {
    let i = info(i);
    let token = form.as_ref().map(|f| f.csrf.clone()).unwrap_or_default();
    let v = match admin_post(&gate, &i, &headers, &token, "/.gatehouse/admin/branding") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Ok(Form(input)) = form else {
        return crate::error(
            &gate,
            StatusCode::BAD_REQUEST,
            "The form could not be read",
            "Reload the page and try again.",
        );
    };
    let wanted = if input.reset.is_some() { None } else { Some(&input) };
    match gate.save_branding(&v, i.client, wanted).await {
        Ok(()) => crate::see_other("/.gatehouse/admin/branding?saved=1"),
        Err(AdminError::Invalid(errors)) => {
            let view = gate.branding_view().await;
            let body = format!(
                r#"<div class="admin-head"><h1>Branding</h1></div><div class="alert error" role="alert">Nothing was saved: correct the fields marked below.</div>{form}"#,
                form = branding_form(&view, &input, &token, &errors)
            );
            let mut res = page(&gate, &v, "Branding", "branding", &body);
            *res.status_mut() = StatusCode::BAD_REQUEST;
            res
        }
        Err(e) => crate::error(
            &gate,
            StatusCode::SERVICE_UNAVAILABLE,
            "Branding not saved",
            &format!("{e:?}. Try again in a moment."),
        ),
    }
}
