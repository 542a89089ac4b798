//! CSRF protection for every form: a random token in a `SameSite=Strict`, `HttpOnly`
//! cookie (double submit); each form carries the same token in a hidden field. A page
//! from another site can neither read the cookie nor set it.

use base64::Engine;
use rand::RngCore;
use subtle::ConstantTimeEq;

/// A fresh random token (128 bits, base64url).
pub fn new_token() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Whether a cookie value can be a token we issued.
pub fn well_formed(t: &str) -> bool {
    t.len() == 22 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether the form's token matches the cookie's (constant time).
pub fn verify(cookie: Option<&str>, form: &str) -> bool {
    match cookie {
        Some(c) if well_formed(c) => c.as_bytes().ct_eq(form.as_bytes()).into(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_themselves() {
        let t = new_token();
        assert!(well_formed(&t));
        assert!(verify(Some(&t), &t));
        assert!(!verify(Some(&t), &new_token()));
        assert!(!verify(None, &t));
        assert!(!verify(Some(""), ""));
        assert!(!verify(Some("short"), "short"));
    }
}
