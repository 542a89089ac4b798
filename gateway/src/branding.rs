//! The branding in force: what an administrator saved on the Branding page (the store's
//! `branding` setting), else the config file's `[branding]`. Both pass the same checks
//! (`gatehouse_config::check_branding`); a stored value that no longer passes (edited
//! outside Gatehouse) is logged and ignored, so the pages fall back to the file's.

use gatehouse_config::Branding;
use gatehouse_store::Store;
use serde_json::{json, Value};

/// The store setting holding the admin UI's branding.
pub const SETTING: &str = "branding";

/// A branding as the store keeps it.
pub fn to_json(b: &Branding) -> Value {
    json!({ "name": b.name, "accent": b.accent, "logo_url": b.logo_url })
}

/// A stored branding, checked again; `None` if it does not pass.
pub fn from_json(v: &Value) -> Option<Branding> {
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    gatehouse_config::check_branding(text("name"), text("accent"), text("logo_url")).ok()
}

/// The branding saved in the admin UI, if any and valid. A store error is passed up: the
/// caller keeps what it shows now rather than flipping back to the file's.
pub async fn saved(store: &Store) -> Result<Option<Branding>, gatehouse_store::StoreError> {
    Ok(match store.setting(SETTING).await? {
        None => None,
        Some(v) => {
            let b = from_json(&v);
            if b.is_none() {
                tracing::warn!(value = %v, "the saved branding does not pass the checks; using the config file's");
            }
            b
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_recheck() {
        let b = gatehouse_config::check_branding("Acme", "#123456", "/logo.svg").unwrap();
        let back = from_json(&to_json(&b)).unwrap();
        assert_eq!((back.name, back.accent, back.logo_url), (b.name, b.accent, b.logo_url));
        assert!(from_json(&json!({"name": "Acme", "accent": "#ffff00"})).is_none());
        assert!(from_json(&json!("nonsense")).is_none());
    }
}
