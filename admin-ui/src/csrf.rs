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

/// A token bound to a session: derived from the session's store key (itself the hash of a
/// secret cookie) and `purpose`, so only a page served to that session can carry it, and a
/// cookie planted by someone else proves nothing. 43 characters, base64url.
pub fn bound_token(session_id_hash: &str, purpose: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::new()
        .chain_update(b"gatehouse-csrf\0")
        .chain_update(purpose.as_bytes())
        .chain_update(b"\0")
        .chain_update(session_id_hash.as_bytes())
        .finalize();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
}

/// Whether `form` is `expected` (constant time; empty never matches).
pub fn same(expected: &str, form: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(form.as_bytes()))
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
