//! [`StoreError`], how sqlx errors map onto it, and the URL helpers that keep database
//! passwords out of every message.

use std::fmt;

/// The one error type of this crate. Each variant says what kind of failure it is, so a
/// caller can answer "try again later" ([`StoreError::Unavailable`]) differently from
/// "that name is taken" ([`StoreError::Conflict`]); the underlying sqlx error, when there
/// is one, is kept as the [`source`](std::error::Error::source).
///
/// Messages never carry a database password: URLs are shown redacted, and a driver error
/// raised while connecting is replaced by a scrubbed copy if it quotes the password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row with that key exists already: a user name (compared case-insensitively), a
    /// session id, a signing key id. `what` names it, e.g. `user "alice"`.
    #[error("{what} already exists")]
    Conflict {
        what: String,
        /// The database's unique-violation error; `None` when the store found the clash
        /// itself (e.g. `INSERT … ON CONFLICT DO NOTHING` inserted nothing).
        #[source]
        source: Option<sqlx::Error>,
    },
    /// The database cannot be reached right now: connection refused or lost, TLS failure,
    /// no free connection within the acquire timeout, or the store was closed. Worth
    /// retrying later; nothing was changed.
    #[error("database unavailable while {context}: {source}")]
    Unavailable {
        /// What the store was doing, e.g. `reading session`.
        context: String,
        #[source]
        source: sqlx::Error,
    },
    /// A checked save found the row changed since the caller read it (someone else saved
    /// meanwhile); nothing was written. `what` names it, e.g. `app "sales"`.
    #[error("{what} was changed meanwhile")]
    Changed { what: String },
    /// The row an update names does not exist. `what` names it, e.g. `user "bob"`.
    #[error("{what} not found")]
    NotFound { what: String },
    /// The embedded migrations could not be applied (e.g. the database was migrated by a
    /// newer Gatehouse, or a migration was edited after it ran).
    #[error("database migration failed: {0}")]
    Migration(#[source] sqlx::migrate::MigrateError),
    /// The store URL or path is not one Gatehouse can open (shown with its password
    /// redacted).
    #[error("bad store URL: {0}")]
    BadUrl(String),
    /// A value the store will not save (empty user name, empty app slug, …).
    #[error("invalid value: {0}")]
    Invalid(String),
    /// The database refused or failed a statement for another reason (constraint other
    /// than uniqueness, unexpected column contents, a file that is not a database, …).
    #[error("database error while {context}: {source}")]
    Database {
        /// What the store was doing, e.g. `saving app`.
        context: String,
        #[source]
        source: sqlx::Error,
    },
}

impl StoreError {
    /// True for [`StoreError::Unavailable`]: the database could not be reached, and the
    /// same call may well succeed later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// Classifies a sqlx error raised while `context` (a gerund phrase: `reading user`).
pub(crate) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| classify(context.to_owned(), e)
}

/// Like [`db`], but a unique violation is a [`StoreError::Conflict`] on `what`.
pub(crate) fn db_unique(
    context: &'static str,
    what: impl FnOnce() -> String,
) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict {
            what: what(),
            source: Some(e),
        },
        _ => classify(context.to_owned(), e),
    }
}

/// Errors of reaching the database rather than of the statement are "unavailable": the
/// pool's, the socket's, TLS's, and `Protocol` — what a driver reports when the other end
/// hung up or answered garbage, e.g. a proxy (HAProxy, PgBouncer) that accepts a connection
/// for a server that is down and closes it at once. None of them can have applied half a
/// change: a transaction whose connection broke is rolled back.
pub(crate) fn classify(context: String, e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => StoreError::Unavailable { context, source: e },
        sqlx::Error::Database(ref d) if d.code().is_some_and(|c| unavailable_code(&c)) => {
            StoreError::Unavailable { context, source: e }
        }
        _ => StoreError::Database { context, source: e },
    }
}

/// Database error codes that mean "cannot work right now, try later; nothing was
/// changed": PostgreSQL's connection exceptions (`08…`) and operator intervention
/// (`57P01` admin shutdown, `57P02` crash shutdown, `57P03` cannot connect now — a server
/// being stopped or restarted), and SQLite's `SQLITE_FULL` (13: the disk or the database's
/// size limit is full; the statement's transaction was rolled back).
pub(crate) fn unavailable_code(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "13")
}

/// A column that does not hold what the store wrote there.
pub(crate) fn bad_column(column: &str, e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Database {
        context: format!("reading column {column}"),
        source: sqlx::Error::ColumnDecode {
            index: column.to_owned(),
            source: Box::new(e),
        },
    }
}

/// A driver error raised while connecting to `url`, as a [`StoreError`] whose text and
/// source chain cannot reveal the URL's password.
pub(crate) fn connect_error(context: String, e: sqlx::Error, url: &str) -> StoreError {
    let text = chain_text(&e);
    let e = if scrub(&text, url) == text {
        e
    } else {
        sqlx::Error::Configuration(Box::new(Scrubbed(scrub(&text, url))))
    };
    classify(context, e)
}

/// The message of `e` and of every error in its source chain.
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

/// A driver message with the password taken out; stands in for the original error.
#[derive(Debug)]
struct Scrubbed(String);

impl fmt::Display for Scrubbed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Scrubbed {}

/// The password in a URL's user-info (`scheme://user:password@host/…`), if any.
fn url_password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// `url` with its password, if any, replaced by `***`: fit for logs and error messages.
pub(crate) fn redact_url(url: &str) -> String {
    match url_password(url) {
        Some(password) => {
            let start = url.find("://").map_or(0, |i| i + 3);
            let at = start + url[start..].find(password).unwrap_or(0);
            format!("{}***{}", &url[..at], &url[at + password.len()..])
        }
        None => url.to_owned(),
    }
}

/// `message` with every copy of `url`'s password (raw or percent-decoded) replaced.
pub(crate) fn scrub(message: &str, url: &str) -> String {
    let Some(password) = url_password(url) else {
        return message.to_owned();
    };
    let mut out = message.replace(password, "***");
    if let Some(decoded) = percent_decode(password) {
        if !decoded.is_empty() {
            out = out.replace(&decoded, "***");
        }
    }
    out
}

pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Two hex digits: `u8::from_str_radix` alone would also take `+1`.
            let hex = text
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything in a path but unreserved characters and `/`, so that sqlx
/// reads back exactly this file name (`?`, `#`, `%` and spaces included).
pub(crate) fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
