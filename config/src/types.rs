//! The validated configuration. Every value here has been checked; code that receives a
//! [`Config`] never re-validates.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: Server,
    pub store: Store,
    pub session: Session,
    pub branding: Branding,
    pub providers: Vec<Provider>,
    pub apps: Vec<App>,
    pub usage: Usage,
    /// When the file was last modified (epoch seconds), as read by [`Config::load`]; `None`
    /// for text parsed by [`Config::from_toml`]. The App Portal shows it as the file apps'
    /// "updated" date.
    pub modified: Option<i64>,
}

/// `[server]`: listeners, TLS, trusted proxies, timeouts.
#[derive(Debug, Clone)]
pub struct Server {
    /// Main listener. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// The URL people use to reach the gateway (scheme, host, optional port; no path).
    /// Default: derived from `listen` and whether TLS is on.
    pub public_url: String,
    /// Prometheus `/metrics` listener; none when unset.
    pub metrics_listen: Option<SocketAddr>,
    /// Peers whose `X-Forwarded-*` headers are believed. Default: none.
    pub trusted_proxies: Vec<IpNet>,
    /// TLS termination on `listen` when set.
    pub tls: Option<Tls>,
    /// A plain-HTTP listener that only redirects to `public_url` (only with TLS).
    pub http_redirect_listen: Option<SocketAddr>,
    /// Host routing: `<slug>.<app_domain>` reaches app `<slug>`.
    pub app_domain: Option<String>,
    /// Worker threads of the proxy. Default: number of CPUs.
    pub threads: usize,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT. Default 30 s.
    pub shutdown_grace_period: Duration,
    /// The unix socket through which a running gateway hands its listening sockets to its
    /// successor (`gatehouse serve --upgrade`). Default `gatehouse-upgrade.sock` in the
    /// configuration file's folder.
    pub upgrade_socket: std::path::PathBuf,
    pub timeouts: Timeouts,
    pub health_check: HealthCheck,
    pub limits: Limits,
}

/// Limits on what clients of the main listener may make the gateway hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a client may take to send a request's headers, from its first byte (from
    /// the connection's start for the first request). Default 20 s.
    pub header_timeout: Duration,
    /// Single sign-on starts (`/.gatehouse/{oidc,saml}/<id>/start`) one client address (an
    /// IPv6 /64) may make per 10 minutes; further ones get 429. Default 100.
    pub signin_starts_per_client: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(20),
            signin_starts_per_client: 100,
        }
    }
}

/// Certificate and key files (PEM).
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Upstream timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP (and TLS) connect. Default 5 s.
    pub connect: Duration,
    /// Waiting for upstream data once connected. Default 60 s (SSE and WebSockets keep
    /// themselves alive with traffic; raise it for long silent requests).
    pub read: Duration,
    /// Writing to the upstream. Default 60 s.
    pub write: Duration,
    /// Idle upstream keep-alive connections are closed after this. Default 60 s.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(60),
            write: Duration::from_secs(60),
            idle: Duration::from_secs(60),
        }
    }
}

/// Active health checks of upstreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// HTTP path to GET (2xx/3xx = healthy); TCP connect only when `None`. Default `None`.
    pub path: Option<String>,
    /// Default 5 s.
    pub interval: Duration,
    /// Default 2 s.
    pub timeout: Duration,
    /// Consecutive failures (active or passive) before an upstream is taken out. Default 1.
    pub unhealthy_after: u32,
    /// Consecutive successful checks before it is used again. Default 1.
    pub healthy_after: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: None,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            unhealthy_after: 1,
            healthy_after: 1,
        }
    }
}

/// `[store]`.
#[derive(Debug, Clone)]
pub enum Store {
    /// A SQLite file, created on first start.
    Sqlite { path: PathBuf },
    /// A PostgreSQL URL (may carry a password, hence a secret).
    Postgres { url: Secret },
}

/// `[session]`.
#[derive(Debug, Clone)]
pub struct Session {
    /// Default 8 h.
    pub idle_timeout: Duration,
    /// Default 7 days.
    pub absolute_timeout: Duration,
    /// Default `gatehouse_session` (`__Host-gatehouse_session` under TLS).
    pub cookie_name: String,
    /// While the store cannot be reached, a session this process has seen is honoured for
    /// up to this long after the store last confirmed it (timeouts still apply). Zero: a
    /// session the store cannot confirm is not honoured. Default 5 minutes.
    pub store_outage_grace: Duration,
}

/// `[usage]`: counting visits per app for the admin UI's usage pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// Count visits at all. Default true.
    pub enabled: bool,
    /// How often each gateway adds its counts to the store. Default 5 s (1–3600 s).
    pub flush_interval: Duration,
    /// Most distinct (app, person, day) counts held between two flushes; visits of further
    /// ones are dropped and counted (`gatehouse_usage_dropped_total`). Default 10,000
    /// (100–1,000,000).
    pub max_keys: u32,
}

impl Default for Usage {
    fn default() -> Self {
        Usage {
            enabled: true,
            flush_interval: Duration::from_secs(5),
            max_keys: 10_000,
        }
    }
}

/// `[branding]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branding {
    /// Default "Gatehouse".
    pub name: String,
    /// A `#rrggbb` colour (lower case) with at least 4.5:1 contrast against white. Default
    /// `#0b6bcb`.
    pub accent: String,
    /// A logo shown beside the name: an `https://` URL or a path on the gateway.
    pub logo_url: Option<String>,
}

/// A value that must not be printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself. Call only where it is used, never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One `[[providers]]` entry.
#[derive(Debug, Clone)]
pub struct Provider {
    /// Unique id, used in URLs (`/.gatehouse/oidc/<id>/callback`).
    pub id: String,
    /// Button or form label on the login page. Default: the id.
    pub label: String,
    pub kind: ProviderKind,
}

#[derive(Debug, Clone)]
pub enum ProviderKind {
    Local,
    Ldap(Box<Ldap>),
    Oidc(Box<Oidc>),
    Saml(Box<Saml>),
}

impl ProviderKind {
    pub fn name(&self) -> &'static str {
        match self {
            ProviderKind::Local => "local",
            ProviderKind::Ldap(_) => "ldap",
            ProviderKind::Oidc(_) => "oidc",
            ProviderKind::Saml(_) => "saml",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directory {
    OpenLdap,
    ActiveDirectory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupStrategy {
    MemberOf,
    Search,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupName {
    Cn,
    Dn,
}

#[derive(Debug, Clone)]
pub struct Ldap {
    /// `ldap://` or `ldaps://` URL.
    pub url: String,
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    pub directory: Directory,
    pub bind_dn: String,
    pub bind_password: Secret,
    pub user_base: String,
    /// Contains `{username}`, replaced by the RFC 4515-escaped typed name.
    pub user_filter: String,
    pub attr_user_id: String,
    pub attr_email: String,
    pub attr_display_name: String,
    pub group_strategy: GroupStrategy,
    pub group_base: Option<String>,
    pub group_filter: String,
    pub nested_groups: bool,
    pub max_depth: u32,
    pub group_name: GroupName,
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
    pub recheck_interval: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Oidc {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub scopes: Vec<String>,
    pub user_claim: String,
    pub groups_claim: String,
    pub allowed_email_domains: Vec<String>,
    /// With `allowed_email_domains`, refuse an email whose `email_verified` claim is present
    /// and not true. Default true.
    pub require_verified_email: bool,
    pub required_groups: Vec<String>,
    pub refresh_interval: Option<Duration>,
    /// Whose names this provider's users have. Default [`UserNamespace::Own`].
    pub user_namespace: UserNamespace,
}

#[derive(Debug, Clone)]
pub enum MetadataSource {
    File(PathBuf),
    Url(String),
}

#[derive(Debug, Clone)]
pub struct Saml {
    pub idp_metadata: MetadataSource,
    pub entity_id: Option<String>,
    pub sp_cert: Option<PathBuf>,
    pub sp_key: Option<Secret>,
    /// `None`: the NameID is the user id.
    pub user_attribute: Option<String>,
    pub email_attribute: String,
    pub name_attribute: String,
    pub groups_attribute: String,
    pub group_map: BTreeMap<String, String>,
    pub allow_idp_initiated: bool,
    pub allowed_signature_algorithms: Vec<String>,
    /// How often IdP metadata given by URL is fetched again. Default 1 h.
    pub metadata_refresh: std::time::Duration,
    /// Whose names this provider's users have. Default [`UserNamespace::Own`].
    pub user_namespace: UserNamespace,
}

/// Whether an identity provider's user names are the local accounts' names.
///
/// Local accounts and LDAP directories share one namespace: `carol` is the same person
/// whichever of them signs her in. An external OpenID Connect or SAML provider names people
/// in its own namespace unless configured otherwise: its `carol` becomes `<provider id>:carol`
/// in sessions, policies (`allow_users`), grants and the headers apps receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserNamespace {
    /// Names are qualified with the provider id (`okta:carol`).
    #[default]
    Own,
    /// Names are the same people as local accounts and LDAP users of that name.
    Shared,
}

/// Who may open an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not.
    Public,
    /// Anyone signed in.
    Authenticated,
    /// Admins, plus the allow-listed groups and users.
    Restricted,
}

/// Which of a person's groups an app is told (`headers.groups_sent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupsSent {
    /// The default (`"auto"`): every group while the identity headers stay within the budget
    /// that common app servers accept (see the gateway's `identity::Budget`), else only the
    /// groups the app's policy names.
    Auto,
    /// Every group, however large the headers grow.
    All,
    /// Only the groups the app's policy names.
    Referenced,
}

impl GroupsSent {
    /// The word the config file and the admin UI use for it.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupsSent::Auto => "auto",
            GroupsSent::All => "all",
            GroupsSent::Referenced => "referenced",
        }
    }
}

/// Per-app identity header options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppHeaders {
    pub remote_headers: bool,
    pub plotly_user_data: bool,
    /// Add a `kcIdToken` cookie (base64 of a JWT signed with the assertion keys, `aud`
    /// `dash`) to the upstream request, for `dash_enterprise_auth` in token mode
    /// (`DASH_JWKS_URL`). Default false.
    pub dash_token: bool,
    pub groups_sent: GroupsSent,
}

/// An upstream address: resolved host and port, plain HTTP or TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `host:port` as written.
    pub address: String,
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

/// An app defined outside the file (the store, the admin UI), in the terms of an `[[apps]]`
/// entry; [`crate::validate_app`] turns it into an [`App`] by the same rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppDefinition {
    pub slug: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub upstreams: Vec<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub strip_prefix: bool,
    /// `public`, `authenticated` or `restricted` (default).
    pub access: Option<String>,
    pub allow_groups: Vec<String>,
    pub allow_users: Vec<String>,
    pub remote_headers: bool,
    pub plotly_user_data: bool,
    pub dash_token: bool,
    /// `auto` (default), `all` or `referenced`.
    pub groups_sent: Option<String>,
    /// Portal card labels, as typed (checked and de-duplicated by validation).
    pub tags: Vec<String>,
    /// An `https://` URL or a path on the gateway.
    pub thumbnail: Option<String>,
    pub portal_order: i64,
}

/// One `[[apps]]` entry.
#[derive(Debug, Clone)]
pub struct App {
    /// Lower-case letters, digits and `-`; unique.
    pub slug: String,
    pub name: String,
    pub description: String,
    pub upstreams: Vec<Upstream>,
    /// Path prefix, starting and ending with `/`. Default `/apps/<slug>/`, or `/` for an app
    /// routed by `host`.
    pub path: String,
    /// Exact host (lower-case, no port) this app is served on, if routed by host.
    pub host: Option<String>,
    /// Remove `path` before forwarding (the upstream sees `/…`). Default false.
    pub strip_prefix: bool,
    pub access: Access,
    pub allow_groups: Vec<String>,
    pub allow_users: Vec<String>,
    pub headers: AppHeaders,
    pub health_check: HealthCheck,
    pub timeouts: Timeouts,
    /// Labels on the App Portal card, which people filter by: at most [`MAX_TAGS`], each
    /// 1 to [`MAX_TAG_CHARS`] characters as typed, repeats (ignoring case) removed.
    pub tags: Vec<String>,
    /// The card's picture: an `https://` URL or a path on this gateway (`/…`), the only
    /// images the pages' `img-src` allows. Default none (a coloured initial).
    pub thumbnail: Option<String>,
    /// Position on the App Portal: lower first (default 0; ties keep file order, then
    /// store apps by slug).
    pub portal_order: i64,
    /// Who runs the app, in words, shown on its card (file apps; store apps show their
    /// owners). Default none.
    pub owner: Option<String>,
}

/// Most tags on one app.
pub const MAX_TAGS: usize = 10;
/// Longest tag, characters.
pub const MAX_TAG_CHARS: usize = 32;
/// Largest `portal_order` either way.
pub const MAX_PORTAL_ORDER: i64 = 1_000_000;
/// Longest `owner` text, characters.
pub const MAX_OWNER_CHARS: usize = 100;
