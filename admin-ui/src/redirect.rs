//! Where to send someone after sign-in: only same-origin relative paths are honoured.

use percent_encoding::percent_decode_str;

/// Returns `target` if it is a same-origin relative path, else `/`. Refused: anything not
/// starting with exactly one `/` (`//evil`, `/\evil`, `https://evil`), control characters
/// and backslashes, and all of these when hidden behind percent-encoding (decoded up to
/// three times); whitespace; targets longer than 2048 bytes.
pub fn safe_redirect(target: &str) -> String {
    if is_safe(target) {
        target.to_string()
    } else {
        "/".to_string()
    }
}

fn is_safe(target: &str) -> bool {
    if target.len() > 2048 {
        return false;
    }
    // The raw target may hold no whitespace at all (browsers drop tabs and newlines inside
    // URLs, turning `/\t/evil` into `//evil`); decoded forms are checked for the rest.
    if target.chars().any(char::is_whitespace) {
        return false;
    }
    let mut current = target.to_string();
    for _ in 0..3 {
        if !looks_safe(&current) {
            return false;
        }
        let decoded = percent_decode_str(&current).decode_utf8_lossy().into_owned();
        if decoded == current {
            return true;
        }
        current = decoded;
    }
    // Still changing after three rounds: refuse rather than keep guessing.
    false
}

fn looks_safe(s: &str) -> bool {
    let b = s.as_bytes();
    b.first() == Some(&b'/')
        && !matches!(b.get(1), Some(b'/') | Some(b'\\'))
        && !s.chars().any(|c| c.is_control() || c == '\\')
        && !s.starts_with("/.gatehouse/login")
        && !s.starts_with("/.gatehouse/logout")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn open_redirects_fall_back_to_root() {
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example",
            "http:evil.example",
            "javascript:alert(1)",
            "evil.example",
            "",
            "%2F%2Fevil.example",
            "/%2F%2Fevil.example",
            "/%2f%2fevil.example",
            "/%5Cevil.example",
            "/%5cevil.example",
            "%252F%252Fevil.example",
            "/%09/evil.example",
            "/\t/evil.example",
            "/ /evil.example",
            "/.gatehouse/login?rd=/x",
        ] {
            assert_eq!(safe_redirect(bad), "/", "{bad:?}");
        }
        for good in ["/", "/apps/sales/", "/apps/sales/?q=1&r=%20x", "/apps/a%20b/"] {
            assert_eq!(safe_redirect(good), good);
        }
    }

    /// Targets up to 2048 bytes are kept; a longer one (however harmless) is refused, so a
    /// sign-in link cannot carry an unbounded value through every hop.
    #[test]
    fn targets_longer_than_2048_bytes_fall_back_to_root() {
        let longest = format!("/{}", "a".repeat(2047));
        assert_eq!(safe_redirect(&longest), longest);
        let too_long = format!("{longest}a");
        assert_eq!(safe_redirect(&too_long), "/");
        assert_eq!(safe_redirect(&format!("/{}", "a".repeat(4096))), "/");
    }

    proptest! {
        /// Whatever comes in, what goes out is a path on this origin.
        #[test]
        fn output_is_always_same_origin(input in "\\PC{0,30}") {
            let out = safe_redirect(&input);
            prop_assert!(out.starts_with('/'));
            prop_assert!(!out.starts_with("//") && !out.starts_with("/\\"));
            let decoded = percent_decode_str(&out).decode_utf8_lossy().into_owned();
            prop_assert!(!decoded.starts_with("//") && !decoded.starts_with("/\\"));
        }
    }
}
