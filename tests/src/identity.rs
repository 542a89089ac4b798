//! Reading what an app was told about its caller, as an app would: the comma-separated group
//! headers (`X-Forwarded-Groups`, `Remote-Groups`: each name with `%` and `,` percent-encoded),
//! `Plotly-User-Data` and the assertion JWT's `groups` (JSON lists).

use base64::Engine as _;

/// Percent-decodes `%XX` escapes (the only ones the gateway writes are `%25` and `%2C`).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).expect("UTF-8 after decoding")
}

/// The group names of a comma-separated groups header: split on `,`, each part decoded.
pub fn split_groups(header: &str) -> Vec<String> {
    if header.is_empty() {
        return vec![];
    }
    header.split(',').map(percent_decode).collect()
}

/// The claims of a JWT (not verified: only for reading what it says).
pub fn claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// Checks that every channel told the app exactly the groups `want` (in the gateway's order),
/// given the echoed request headers (`{"name": ["value", …]}`): `X-Forwarded-Groups`, and
/// `Remote-Groups` / `Plotly-User-Data` when the app has them, and the assertion's `groups`.
pub fn assert_groups(headers: &serde_json::Value, want: &[&str]) {
    let one = |name: &str| headers[name][0].as_str().map(str::to_string);
    let forwarded = one("x-forwarded-groups").expect("X-Forwarded-Groups");
    assert_eq!(split_groups(&forwarded), want, "X-Forwarded-Groups: {forwarded}");
    if let Some(remote) = one("remote-groups") {
        assert_eq!(remote, forwarded, "Remote-Groups and X-Forwarded-Groups agree");
    }
    if let Some(plotly) = one("plotly-user-data") {
        let v: serde_json::Value = serde_json::from_str(&plotly).expect("Plotly-User-Data is JSON");
        assert_eq!(v["groups"], serde_json::json!(want), "Plotly-User-Data: {plotly}");
    }
    let jwt = one("x-gatehouse-assertion").expect("X-Gatehouse-Assertion");
    assert_eq!(claims(&jwt)["groups"], serde_json::json!(want), "assertion groups");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(split_groups("a%2Cb,c%25,d"), ["a,b", "c%", "d"]);
        assert!(split_groups("").is_empty());
        assert_eq!(percent_decode("100%"), "100%");
    }
}
