//! Path canonicalisation and app routing. One canonical path is computed per request and
//! used for routing, for policy, and as the path forwarded upstream, so an app never sees a
//! path that could name a different app than the one whose policy was checked.

use std::fmt;

use std::collections::HashMap;

use gatehouse_config::App;

/// Why a request path was refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not starting with `/` (or empty).
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    BadEncoding,
    /// `%2f`, `%5c`, `%00`, a raw `\` or a control character: could mean different paths to
    /// different servers.
    AmbiguousCharacter,
    /// `..` above the root, or a dot segment hidden behind `;` (`..;`).
    EscapesRoot,
    /// `%25` followed by the escape of `.`, `/`, `\`, `%` or a control character
    /// (`%252e`): a server that decodes twice would see another path.
    DoubleEncoded,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "the request path does not start with /",
            PathError::BadEncoding => "the request path has a malformed %-escape",
            PathError::AmbiguousCharacter => {
                "the request path contains an encoded slash, backslash or control character"
            }
            PathError::EscapesRoot => "the request path climbs above the root with ..",
            PathError::DoubleEncoded => "the request path has a double-encoded dot, slash, backslash or percent sign",
        })
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Canonicalises the path of a request target (no query):
/// - `%XX` of unreserved characters is decoded (`%2e` → `.`), other escapes are kept with
///   upper-case hex; `%2f`, `%5c`, `%00` and control characters are refused;
/// - empty segments (`//`) and `.` segments are removed, `..` removes the previous segment
///   and is refused at the root, as are `..;x` / `.;x` (servlet containers read them as dots);
/// - a trailing `/` is kept.
///
/// Returns the canonical path, which starts with `/`.
pub fn canonicalize(path: &str) -> Result<String, PathError> {
    let raw = path.as_bytes();
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_plain(raw) {
        return Ok(path.to_string());
    }
    canonicalize_escaped(path)
}

/// Whether a path is already canonical in the common, simple way: no escape, backslash,
/// space or control character, no empty segment but a trailing one, and no segment that
/// starts with a dot (which covers `.`, `..` and `..;x`). Such a path is its own canonical
/// form; anything else takes the full decoding in [`canonicalize_escaped`]. One pass, no
/// allocation: most requests' paths are like this.
fn is_plain(raw: &[u8]) -> bool {
    let mut prev = 0u8;
    for &b in raw {
        if b == b'%' || b == b'\\' || b <= b' ' || b == 0x7f || (prev == b'/' && (b == b'/' || b == b'.')) {
            return false;
        }
        prev = b;
    }
    true
}

/// [`canonicalize`] without the fast path: decode, check, resolve dot segments, rebuild.
fn canonicalize_escaped(path: &str) -> Result<String, PathError> {
    let raw = path.as_bytes();
    // Decode pass: bytes of the path with unreserved escapes decoded.
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        match b {
            b'%' => {
                let (h, l) = match (
                    raw.get(i + 1).copied().and_then(hex),
                    raw.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(h), Some(l)) => (h, l),
                    _ => return Err(PathError::BadEncoding),
                };
                let c = h * 16 + l;
                if c == b'/' || c == b'\\' || c < 0x20 || c == 0x7f {
                    return Err(PathError::AmbiguousCharacter);
                }

                if is_unreserved(c) {
                    decoded.push(c);
                } else {
                    decoded.extend_from_slice(format!("%{c:02X}").as_bytes());
                }
                i += 3;
            }
            b'\\' => return Err(PathError::AmbiguousCharacter),
            c if c < 0x20 || c == 0x7f || c == b' ' => return Err(PathError::AmbiguousCharacter),
            c => {
                decoded.push(c);
                i += 1;
            }
        }
    }
    // What an upstream that decodes once more would read: `%25` then an escape of a dot,
    // slash, backslash, percent or control character. Checked on the decoded bytes, so
    // `%25%32%65` (which decodes to `%252e`) is caught too.
    for w in decoded.windows(5) {
        if w.starts_with(b"%25") {
            if let (Some(h), Some(l)) = (hex(w[3]), hex(w[4])) {
                let inner = h * 16 + l;
                if matches!(inner, b'.' | b'/' | b'\\' | b'%') || inner < 0x20 || inner == 0x7f {
                    return Err(PathError::DoubleEncoded);
                }
            }
        }
    }
    // The input was a &str and we only replaced ASCII escapes by ASCII, so this holds.
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::BadEncoding)?;
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = decoded.ends_with('/');
    for seg in decoded.split('/') {
        let bare = seg.split(';').next().unwrap_or("");
        match (seg, bare) {
            ("", _) => {}
            (".", _) => trailing_slash = true,
            ("..", _) => {
                if segments.pop().is_none() {
                    return Err(PathError::EscapesRoot);
                }
                trailing_slash = true;
            }
            (_, "." | "..") => return Err(PathError::EscapesRoot),
            _ => {
                segments.push(seg);
                trailing_slash = decoded.ends_with('/');
            }
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Why a request's host was refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// No `Host` header and no absolute-form target.
    Missing,
    /// Not a host name (RFC 3986 reg-name of letters, digits, `-`, `.`, `_`, `~`), an IPv4
    /// address or a bracketed IPv6 literal, with an optional numeric port.
    Malformed,
    /// Several `Host` headers, or an absolute-form target naming another host than `Host`.
    Conflicting,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostError::Missing => "the request names no host (Host header)",
            HostError::Malformed => "the request's Host is not a host name with an optional numeric port",
            HostError::Conflicting => "the request names two different hosts",
        })
    }
}

/// Parses a `Host` value (or an absolute-form target's authority) strictly: a reg-name
/// (`[A-Za-z0-9._~-]`, not empty), or an IPv6 literal in brackets, then optionally `:` and a
/// port of 1–5 digits up to 65535. Returns the host lower-cased, without port or a
/// trailing dot — the name routing uses. Anything else is refused rather than guessed at,
/// so that routing and the upstream can never read one value as two hosts.
pub fn parse_host(value: &str) -> Result<String, HostError> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (literal, after) = rest.split_once(']').ok_or(HostError::Malformed)?;
        // An IPv6 address (RFC 3986 IP-literal without IPvFuture), not just its characters:
        // `[.]` or `[1]` named no address and normalised to a name (found by fuzzing).
        if !literal.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            || literal.parse::<std::net::Ipv6Addr>().is_err()
        {
            return Err(HostError::Malformed);
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(HostError::Malformed)?),
        };
        (&value[..literal.len() + 2], port)
    } else {
        match value.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (value, None),
        }
    };
    if let Some(p) = port {
        let ok = !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| n <= 65535);
        if !ok {
            return Err(HostError::Malformed);
        }
    }
    if !host.starts_with('[') && !is_dns_name(host.strip_suffix('.').unwrap_or(host)) {
        return Err(HostError::Malformed);
    }
    Ok(normalize_host(host))
}

/// Whether `name` is dot-separated labels, none empty, of letters, digits, `-`, `_` and `~`
/// (one pass over the bytes: it runs on every request).
fn is_dns_name(name: &str) -> bool {
    let mut label = 0usize;
    for b in name.bytes() {
        if b == b'.' {
            if label == 0 {
                return false;
            }
            label = 0;
        } else if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            label += 1;
        } else {
            return false;
        }
    }
    label > 0
}

/// The host of `value` for routing: lower-case, without a trailing dot, without brackets
/// around an IPv6 literal. `value` carries no port (see [`parse_host`]).
fn normalize_host(host: &str) -> String {
    let h = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// The host routing uses for a request: the absolute-form target's authority if any (which
/// must then agree with `Host`), else the one `Host` header. Every value is parsed with
/// [`parse_host`].
pub fn request_host(host: Option<&str>, repeated: bool, target_authority: Option<&str>) -> Result<String, HostError> {
    if repeated {
        return Err(HostError::Conflicting);
    }
    let from_header = host.map(parse_host).transpose()?;
    match (target_authority.map(parse_host).transpose()?, from_header) {
        (Some(a), Some(h)) if a != h => Err(HostError::Conflicting),
        (Some(a), _) => Ok(a),
        (None, Some(h)) => Ok(h),
        (None, None) => Err(HostError::Missing),
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch {
    /// App number `app` (index into the config's apps); the path to forward upstream.
    App { app: usize, upstream_path: String },
    /// The path names an app's prefix without its trailing `/`: redirect to add it.
    AddSlash { app: usize, location: String },
}

#[derive(Debug)]
struct Entry {
    host: Option<String>,
    prefix: String,
    strip: bool,
    app: usize,
}

/// Routing table built once from the config's apps.
#[derive(Debug, Default)]
pub struct Router {
    /// Sorted: host-specific entries first, then longer prefixes first.
    entries: Vec<Entry>,
    /// Path-only routes: prefix → entry. A lookup tries the path's own `/`-prefixes, longest
    /// first, so it costs a few hash lookups however many apps there are.
    by_prefix: HashMap<String, usize>,
    /// Host routes: host → prefix → entry.
    by_host: HashMap<String, HashMap<String, usize>>,
    /// `<slug>.<app_domain>` → app, when host routing by slug is on.
    app_domain: Option<String>,
    slugs: Vec<String>,
}

impl Router {
    pub fn new(apps: &[App], app_domain: Option<&str>) -> Router {
        let mut entries: Vec<Entry> = apps
            .iter()
            .enumerate()
            .map(|(i, a)| Entry {
                host: a.host.clone(),
                prefix: a.path.clone(),
                strip: a.strip_prefix,
                app: i,
            })
            .collect();
        entries.sort_by(|a, b| {
            b.host
                .is_some()
                .cmp(&a.host.is_some())
                .then(b.prefix.len().cmp(&a.prefix.len()))
        });
        let mut by_prefix = HashMap::new();
        let mut by_host: HashMap<String, HashMap<String, usize>> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            // The first entry in sorted order wins a clash, as in a linear scan.
            match &e.host {
                Some(h) => by_host
                    .entry(h.clone())
                    .or_default()
                    .entry(e.prefix.clone())
                    .or_insert(i),
                None => by_prefix.entry(e.prefix.clone()).or_insert(i),
            };
        }
        Router {
            entries,
            by_prefix,
            by_host,
            app_domain: app_domain.map(|d| format!(".{d}")),
            slugs: apps.iter().map(|a| a.slug.clone()).collect(),
        }
    }

    /// Routes a canonical path on `host` (normalised). Host-specific routes win over
    /// path-only ones; among those, the longest prefix wins. `<slug>.<app_domain>` serves
    /// app `<slug>` at `/`. `None`: no app here.
    pub fn resolve(&self, host: &str, path: &str) -> Option<RouteMatch> {
        let tables = self
            .by_host
            .get(host)
            .into_iter()
            .chain(std::iter::once(&self.by_prefix));
        for table in tables {
            if let Some(m) = self.lookup(table, path) {
                return Some(m);
            }
        }
        self.by_app_domain(host, path)
    }

    /// The longest route of `table` for `path`: its prefix plus `/` first (a redirect that
    /// adds the slash), then each `/`-prefix of the path from the longest.
    fn lookup(&self, table: &HashMap<String, usize>, path: &str) -> Option<RouteMatch> {
        if path.len() > 1 && !path.ends_with('/') {
            let mut with_slash = String::with_capacity(path.len() + 1);
            with_slash.push_str(path);
            with_slash.push('/');
            if let Some(&i) = table.get(with_slash.as_str()) {
                let e = &self.entries[i];
                return Some(RouteMatch::AddSlash {
                    app: e.app,
                    location: e.prefix.clone(),
                });
            }
        }
        for (slash, _) in path.rmatch_indices('/') {
            let end = slash + 1;
            if let Some(&i) = table.get(&path[..end]) {
                let e = &self.entries[i];
                let rest = &path[end..];
                let upstream_path = if e.strip { format!("/{rest}") } else { path.to_string() };
                return Some(RouteMatch::App {
                    app: e.app,
                    upstream_path,
                });
            }
        }
        None
    }

    fn by_app_domain(&self, host: &str, path: &str) -> Option<RouteMatch> {
        if let Some(domain) = &self.app_domain {
            if let Some(slug) = host.strip_suffix(domain.as_str()) {
                if let Some(app) = self.slugs.iter().position(|s| s == slug) {
                    return Some(RouteMatch::App {
                        app,
                        upstream_path: path.to_string(),
                    });
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use gatehouse_config::{Config, ProcessEnv};
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn canonical_forms() {
        let ok = [
            ("/", "/"),
            ("/apps/a/", "/apps/a/"),
            ("/apps/a", "/apps/a"),
            ("//apps///a//b", "/apps/a/b"),
            ("/apps/a/./b/", "/apps/a/b/"),
            ("/apps/a/../b/", "/apps/b/"),
            ("/apps/public/../secret/", "/apps/secret/"),
            ("/apps/public/%2e%2e/secret/", "/apps/secret/"),
            ("/apps/public/%2E%2e/secret/", "/apps/secret/"),
            ("/apps/a/..", "/apps/"),
            ("/apps/a/.", "/apps/a/"),
            ("/apps/%61/", "/apps/a/"),
            ("/apps/a/%7e", "/apps/a/~"),
            ("/apps/a/b%20c", "/apps/a/b%20c"),
            ("/apps/a/%3f", "/apps/a/%3F"),
            ("/apps/secret;x/", "/apps/secret;x/"),
            ("/apps/a/f;jsessionid=1", "/apps/a/f;jsessionid=1"),
            ("/apps/a!b", "/apps/a!b"),
            // Double-encoded characters other than dot, slash, backslash, percent and control
            // characters read the same to a server that decodes twice.
            ("/apps/a%2520b", "/apps/a%2520b"),
            ("/apps/a%2541", "/apps/a%2541"),
        ];
        for (input, want) in ok {
            assert_eq!(canonicalize(input).as_deref(), Ok(want), "{input}");
        }
        let bad = [
            ("", PathError::NotAbsolute),
            ("apps", PathError::NotAbsolute),
            ("/apps/public%2f..%2fsecret/", PathError::AmbiguousCharacter),
            ("/apps/a%5c..%5csecret", PathError::AmbiguousCharacter),
            ("/apps/a\\..\\b", PathError::AmbiguousCharacter),
            ("/apps/a%00", PathError::AmbiguousCharacter),
            ("/apps/a b", PathError::AmbiguousCharacter),
            ("/apps/a\tb", PathError::AmbiguousCharacter),
            ("/apps/a\u{1f}", PathError::AmbiguousCharacter),
            ("/apps/a\0", PathError::AmbiguousCharacter),
            ("/apps/a\u{7f}", PathError::AmbiguousCharacter),
            ("/apps/a%zz", PathError::BadEncoding),
            ("/apps/a%2", PathError::BadEncoding),
            ("/apps/public/%252e%252e/admins-only/", PathError::DoubleEncoded),
            ("/apps/public/%252E%252E/x", PathError::DoubleEncoded),
            ("/apps/a%252fb", PathError::DoubleEncoded),
            ("/apps/a%255cb", PathError::DoubleEncoded),
            ("/apps/a%25252e", PathError::DoubleEncoded),
            ("/apps/a%2500", PathError::DoubleEncoded),
            ("/apps/a%251f", PathError::DoubleEncoded),
            ("/apps/a%257F", PathError::DoubleEncoded),
            ("/apps/a%25%32%65%25%32%65/x", PathError::DoubleEncoded),
            ("/..", PathError::EscapesRoot),
            ("/apps/../../etc", PathError::EscapesRoot),
            ("/apps/public/..;/secret/", PathError::EscapesRoot),
            ("/apps/public/.;x/", PathError::EscapesRoot),
        ];
        for (input, want) in bad {
            assert_eq!(canonicalize(input), Err(want), "{input}");
        }
    }

    /// Which paths take the shortcut (a path wrongly sent the long way gives the same answer,
    /// only slower: the property test below cannot tell, this table can).
    #[test]
    fn plain_paths_are_recognised() {
        for plain in ["/", "/apps/app/", "/apps/app/index.html", "/a.b/c-d_e~f;g=h", "/x/"] {
            assert!(is_plain(plain.as_bytes()), "{plain}");
        }
        for not in [
            "/a%2e", "/a\\b", "/a b", "/a\tb", "/a\x7f", "/a\x00", "//a", "/a//b", "/.", "/a/.x", "/a/..",
        ] {
            assert!(!is_plain(not.as_bytes()), "{not:?}");
        }
        // A dot inside a segment, or a slash after one, is plain.
        assert!(is_plain(b"/a./b.c/"));
        assert!(is_plain(b"/!"), "the byte after the space");
    }

    proptest! {
        /// The fast path for plain paths answers exactly what the full decoding answers.
        #[test]
        fn the_plain_path_shortcut_changes_no_answer(input in "/[a-zA-Z0-9./%2eE5fF;\\\\ _~-]{0,24}") {
            prop_assert_eq!(canonicalize(&input), canonicalize_escaped(&input));
        }

        /// Canonical paths are fixed points, start with `/`, and carry no dot segments or
        /// empty segments — so routing them again cannot change the answer.
        #[test]
        fn canonical_is_idempotent_and_clean(input in "/[a-z./%2eE5fF;]{0,24}") {
            if let Ok(c) = canonicalize(&input) {
                prop_assert!(c.starts_with('/'));
                let again = canonicalize(&c);
                prop_assert_eq!(again.as_deref(), Ok(c.as_str()));
                let inner = c.trim_matches('/');
                if !inner.is_empty() {
                    for seg in inner.split('/') {
                        prop_assert!(!seg.is_empty() && seg != "." && seg != "..");
                    }
                }
            }
        }

        /// No input panics.
        #[test]
        fn never_panics(input in "\\PC{0,40}") {
            let _ = canonicalize(&input);
            let _ = parse_host(&input);
        }

        /// A Host that parses names exactly one host: the same one whatever is appended
        /// after a `:` that is not a port, and every accepted value re-parses to itself.
        #[test]
        fn accepted_hosts_are_unambiguous(input in "[a-zA-Z0-9.:\\[\\]@_~% -]{0,24}") {
            if let Ok(h) = parse_host(&input) {
                prop_assert!(!h.contains(':') || input.starts_with('['), "port left in {h:?}");
                prop_assert!(!h.contains(['@', ' ', '%']));
                let again = if h.contains(':') { format!("[{h}]") } else { h.clone() };
                prop_assert_eq!(parse_host(&again), Ok(h.clone()));
                if let Some((_, port)) = input.rsplit_once(':').filter(|_| !input.ends_with(']')) {
                    prop_assert!(port.bytes().all(|b| b.is_ascii_digit()), "port {port:?} of {input:?}");
                }
            }
        }

        /// No accepted path changes meaning when a server decodes it once more.
        #[test]
        fn accepted_paths_survive_a_second_decode(input in "/[a-z./%25ef0-9]{0,32}") {
            if let Ok(p) = canonicalize(&input) {
                let once = percent_encoding::percent_decode_str(&p).decode_utf8_lossy().into_owned();
                let twice = percent_encoding::percent_decode_str(&once).decode_utf8_lossy().into_owned();
                for seg in twice.split('/') {
                    prop_assert!(seg != "." && seg != "..", "{input:?} -> {p:?} -> {twice:?}");
                }
                prop_assert!(!twice.contains('\\'));
            }
        }
    }

    fn router(toml: &str) -> Router {
        let c = Config::from_toml(toml, std::path::Path::new("."), &ProcessEnv).unwrap();
        Router::new(&c.apps, c.server.app_domain.as_deref())
    }

    fn app_of(r: &Router, host: &str, path: &str) -> Option<(usize, String)> {
        match r.resolve(host, path)? {
            RouteMatch::App { app, upstream_path } => Some((app, upstream_path)),
            RouteMatch::AddSlash { .. } => None,
        }
    }

    #[test]
    fn longest_prefix_and_hosts() {
        let r = router(
            r#"
            [server]
            app_domain = "apps.example.com"
            [[apps]]
            slug = "a"
            upstreams = ["h:1"]
            [[apps]]
            slug = "ab"
            path = "/apps/a/b/"
            strip_prefix = true
            upstreams = ["h:1"]
            [[apps]]
            slug = "graf"
            host = "grafana.example.com"
            upstreams = ["h:1"]
            "#,
        );
        assert_eq!(app_of(&r, "x", "/apps/a/c"), Some((0, "/apps/a/c".into())));
        assert_eq!(app_of(&r, "x", "/apps/a/b/c"), Some((1, "/c".into())));
        assert_eq!(app_of(&r, "x", "/apps/a/b/"), Some((1, "/".into())));
        assert_eq!(
            app_of(&r, "grafana.example.com", "/apps/a/x"),
            Some((2, "/apps/a/x".into()))
        );
        assert_eq!(app_of(&r, "ab.apps.example.com", "/q"), Some((1, "/q".into())));
        assert_eq!(app_of(&r, "x", "/apps/c/"), None);
        assert_eq!(app_of(&r, "x", "/"), None);
        assert_eq!(app_of(&r, "x", "/apps/A/"), None, "routes are case-sensitive");
        assert_eq!(app_of(&r, "nope.apps.example.com", "/"), None);
        assert_eq!(
            r.resolve("x", "/apps/a"),
            Some(RouteMatch::AddSlash {
                app: 0,
                location: "/apps/a/".into()
            })
        );
    }

    /// The reference: a scan of the sorted entries, as the router worked before its index.
    fn linear(r: &Router, host: &str, path: &str) -> Option<RouteMatch> {
        for e in &r.entries {
            if e.host.as_deref().is_some_and(|h| h != host) {
                continue;
            }
            if let Some(rest) = path.strip_prefix(e.prefix.as_str()) {
                let upstream_path = if e.strip { format!("/{rest}") } else { path.to_string() };
                return Some(RouteMatch::App {
                    app: e.app,
                    upstream_path,
                });
            }
            if e.prefix.len() > 1 && path.len() + 1 == e.prefix.len() && e.prefix.starts_with(path) {
                return Some(RouteMatch::AddSlash {
                    app: e.app,
                    location: e.prefix.clone(),
                });
            }
        }
        r.by_app_domain(host, path)
    }

    proptest! {
        /// The indexed router answers exactly what a scan of all routes answers.
        #[test]
        fn index_agrees_with_a_scan(
            apps in proptest::collection::vec(("(/|/[ab]/|/[ab]/[ab]/|/[ab]/[ab]/[ab]/)", proptest::option::of("h[12]"), any::<bool>()), 1..8),
            host in "h[123]",
            path in "/([ab]/){0,4}[ab]?",
        ) {
            let mut toml = String::from("[server]\napp_domain = \"d.test\"\n");
            for (i, (prefix, h, strip)) in apps.iter().enumerate() {
                toml.push_str(&format!("[[apps]]\nslug = \"s{i}\"\nupstreams = [\"h:1\"]\npath = \"{prefix}\"\nstrip_prefix = {strip}\n"));
                if let Some(h) = h {
                    toml.push_str(&format!("host = \"{h}\"\n"));
                }
            }
            let Ok(c) = Config::from_toml(&toml, std::path::Path::new("."), &ProcessEnv) else {
                return Ok(()); // clashing routes: refused by validation
            };
            let r = Router::new(&c.apps, c.server.app_domain.as_deref());
            prop_assert_eq!(r.resolve(&host, &path), linear(&r, &host, &path));
        }
    }

    #[test]
    fn hosts_parse_strictly() {
        let ok = [
            ("Example.COM:8080", "example.com"),
            ("example.com.", "example.com"),
            ("[::1]:80", "::1"),
            ("[::1]", "::1"),
            ("127.0.0.1", "127.0.0.1"),
            ("app_1.internal:65535", "app_1.internal"),
            ("[::ffff:192.0.2.1]:443", "::ffff:192.0.2.1"),
        ];
        for (input, want) in ok {
            assert_eq!(parse_host(input).as_deref(), Ok(want), "{input}");
        }
        let bad = [
            "secret.test:abc",
            "secret.test:",
            "secret.test:65536",
            "secret.test:1:2",
            "secret.test x",
            "user@secret.test",
            "secret%2etest",
            "",
            ".",
            ":80",
            "[::1",
            "[::1]x",
            "[zz::1]",
            "[.]",
            "[1]",
            "[]",
            "[1:2]",
            "a/b",
            "a\\b",
            "..",
            "a..b",
            ".a",
            "a..",
            "a.b..",
            "a.-b.c~d.:1x",
        ];
        for input in bad {
            assert_eq!(parse_host(input), Err(HostError::Malformed), "{input:?}");
        }
        assert_eq!(request_host(None, false, None), Err(HostError::Missing));
        assert_eq!(request_host(Some("a"), true, None), Err(HostError::Conflicting));
        assert_eq!(request_host(Some("a"), false, Some("b")), Err(HostError::Conflicting));
        assert_eq!(request_host(Some("a:1"), false, Some("A")).as_deref(), Ok("a"));
    }
}
