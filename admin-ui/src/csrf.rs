//! CSRF protection for every form. Sign-in and sign-out: a random value in a
//! `SameSite=Strict`, `HttpOnly` cookie, and in the form a keyed hash of it
//! ([`form_token`]: HMAC-SHA256 under a secret every replica shares). A page from another
//! site can neither read the cookie nor set it; an app behind the gateway (same site) may
//! manage to set it, but cannot compute the field that goes with its value, so a planted
//! pair is refused. Admin forms: tokens bound to the session, keyed by the same secret
//! ([`bound_token`]).

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

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = sha2::Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    sha2::Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The form field that goes with the CSRF cookie value `cookie`: HMAC-SHA256 under `key`
/// (the replicas' shared secret), 43 characters base64url. Without the key, nobody can
/// pair a cookie value they chose with its field.
pub fn form_token(key: &[u8], cookie: &str) -> String {
    let mac = hmac_sha256(key, &[b"gatehouse-form\0".as_slice(), cookie.as_bytes()].concat());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac)
}

/// Whether the form's field is the one for the cookie's value under `key` (constant time).
pub fn verify(key: &[u8], cookie: Option<&str>, form: &str) -> bool {
    match cookie {
        Some(c) if well_formed(c) && !key.is_empty() => form_token(key, c).as_bytes().ct_eq(form.as_bytes()).into(),
        _ => false,
    }
}

/// A token bound to a session: HMAC-SHA256 under `key` (the replicas' shared secret, as for
/// [`form_token`]) of `purpose` and the session's store key (itself the hash of a secret
/// cookie), so only a page served to that session can carry it, and neither a planted
/// cookie nor knowledge of the store key proves anything. 43 characters, base64url; empty
/// (matching nothing) without a key.
pub fn bound_token(key: &[u8], session_id_hash: &str, purpose: &str) -> String {
    if key.is_empty() {
        return String::new();
    }
    let message = [
        b"gatehouse-csrf\0",
        purpose.as_bytes(),
        b"\0",
        session_id_hash.as_bytes(),
    ]
    .concat();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hmac_sha256(key, &message))
}

/// Whether `form` is `expected` (constant time; empty never matches).
pub fn same(expected: &str, form: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(form.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_is_the_keyed_hash_of_the_cookie() {
        let key = [7u8; 32];
        let t = new_token();
        assert!(well_formed(&t));
        let field = form_token(&key, &t);
        assert_eq!(field.len(), 43);
        assert!(verify(&key, Some(&t), &field));
        // Issue 11, defect 7: the double-submit pair (cookie = field) is refused.
        assert!(!verify(&key, Some(&t), &t));
        assert!(!verify(&key, Some(&t), &form_token(&key, &new_token())));
        assert!(!verify(&[8u8; 32], Some(&t), &field), "another key");
        assert!(!verify(&[], Some(&t), &form_token(&[], &t)), "no key, no token");
        assert!(!verify(&key, None, &field));
        assert!(!verify(&key, Some(""), ""));
        assert!(!verify(&key, Some("short"), &form_token(&key, "short")));
    }

    /// Only the shape [`new_token`] issues passes: 22 characters of the URL-safe base64
    /// alphabet (`-` and `_` included), nothing else.
    #[test]
    fn only_issued_token_shapes_are_well_formed() {
        assert!(well_formed("abcdefghijABCDEFGHIJ09"));
        assert!(well_formed("-_-_-_-_-_-_-_-_-_-_-_"));
        assert!(well_formed("ab-cd_efghABCDEFGHIJ09"));
        for bad in [
            "abcdefghijABCDEFGHIJ0",   // 21
            "abcdefghijABCDEFGHIJ012", // 23
            "abcdefghijABCDEFGHIJ+/",  // standard base64
            "abcdefghijABCDEFGHIJ0=",
            "abcdefghijABCDEFGHIJ0.",
            "abcdefghijABCDEFGHIJ0 ",
            "abcdefghijABCDEFGHIJ0;",
            "abcdefghijABCDEFGHIJé",
        ] {
            assert!(!well_formed(bad), "{bad:?}");
        }
    }

    /// A session-bound token matches only the session, purpose and key it was made for.
    #[test]
    fn bound_tokens_match_only_their_session_purpose_and_key() {
        let key = [7u8; 32];
        let (alice, bob) = ("ab".repeat(32), "cd".repeat(32));
        let token = bound_token(&key, &alice, "admin");
        assert_eq!(token.len(), 43);
        assert!(same(&token, &bound_token(&key, &alice, "admin")));
        assert!(!same(&token, &bound_token(&key, &bob, "admin")), "another session");
        assert!(!same(&token, &bound_token(&key, &alice, "request")), "another purpose");
        assert!(!same(&token, &bound_token(&[8u8; 32], &alice, "admin")), "another key");
        assert!(!same(&token, &token[..42]), "a prefix");
        assert!(!same(&token, ""));
        // Purpose and session are kept apart: moving text across the separator changes it.
        assert_ne!(bound_token(&key, "x", "ab"), bound_token(&key, "bx", "a"));
        // Without a key there is no token, and the empty token matches nothing.
        assert_eq!(bound_token(&[], &alice, "admin"), "");
        assert!(!same("", ""));
        assert!(!same(
            &bound_token(&[], &alice, "admin"),
            &bound_token(&[], &alice, "admin")
        ));
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test cases 1 and 2.
        let hex = |b: [u8; 32]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Case 6: a key longer than the block is hashed first.
        assert_eq!(
            hex(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        // A key of exactly the block size is used as it is, not hashed (checked against
        // Python's `hmac`).
        assert_eq!(
            hex(hmac_sha256(&[0xaa; 64], b"Test With Exactly Block-Size Key")),
            "57645416f7f978f2a1906f8756cadd39e184751c494d7b650f43da944762cb6d"
        );
    }
}
