//! Raw file → validated [`Config`], collecting every problem with its path.

use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::env::{apply_overrides, resolve_secret};
use crate::{raw, types::*, Environment, Problem, Problems};

/// Paths under which apps can never be mounted: the gateway's own endpoints.
pub const RESERVED_PREFIXES: &[&str] = &["/.gatehouse/", "/.well-known/gatehouse/"];

struct Ctx<'a> {
    base: &'a Path,
    env: &'a dyn Environment,
    problems: Vec<Problem>,
}

impl Ctx<'_> {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>, hint: Option<&str>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
            hint: hint.map(str::to_string),
        });
    }

    fn section<T: DeserializeOwned + Default>(&mut self, table: &mut toml::Table, key: &str) -> T {
        match table.remove(key) {
            None => T::default(),
            Some(v) => self.deserialize(v, key).unwrap_or_default(),
        }
    }

    fn deserialize<T: DeserializeOwned>(&mut self, value: toml::Value, at: &str) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(t) => Some(t),
            Err(e) => {
                let inner = e.path().to_string();
                let path = if inner == "." || inner.is_empty() {
                    at.to_string()
                } else {
                    format!("{at}.{inner}")
                };
                let message = e.into_inner().to_string();
                self.problem(path, message.trim().to_string(), None);
                None
            }
        }
    }

    fn user_namespace(&mut self, v: Option<&str>, at: &str) -> UserNamespace {
        match v {
            None | Some("own") => UserNamespace::Own,
            Some("shared") => UserNamespace::Shared,
            Some(o) => {
                self.problem(
                    at.to_string(),
                    format!("unknown user namespace {o:?}"),
                    Some("own or shared"),
                );
                UserNamespace::Own
            }
        }
    }

    fn duration(&mut self, v: Option<&str>, at: &str, default: Duration) -> Duration {
        let Some(v) = v else { return default };
        match humantime::parse_duration(v) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.problem(at, "must be longer than zero", None);
                default
            }
            Err(_) => {
                self.problem(
                    at,
                    format!("{v:?} is not a duration"),
                    Some("write e.g. 500ms, 30s, 15m, 8h, 7d"),
                );
                default
            }
        }
    }

    fn listen_addr(&mut self, v: &str, at: &str) -> Option<SocketAddr> {
        let v2 = v.strip_prefix("localhost:").map(|p| format!("127.0.0.1:{p}"));
        match v2.as_deref().unwrap_or(v).parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.problem(
                    at,
                    format!("{v:?} is not an ip:port address"),
                    Some("e.g. 0.0.0.0:8080 or 127.0.0.1:9090"),
                );
                None
            }
        }
    }

    fn path_buf(&self, v: &str) -> std::path::PathBuf {
        self.base.join(v)
    }

    fn existing_file(&mut self, v: &str, at: &str) -> std::path::PathBuf {
        let p = self.path_buf(v);
        if !p.is_file() {
            self.problem(at, format!("file {} does not exist", p.display()), None);
        }
        p
    }

    fn count(&mut self, v: Option<i64>, at: &str, range: std::ops::RangeInclusive<i64>, default: u32) -> u32 {
        match v {
            None => default,
            Some(n) if range.contains(&n) => n as u32,
            Some(n) => {
                self.problem(
                    at,
                    format!("{n} is out of range {}..={}", range.start(), range.end()),
                    None,
                );
                default
            }
        }
    }
}

pub fn from_toml(text: &str, base: &Path, env: &dyn Environment) -> Result<Config, Problems> {
    let mut table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            return Err(Problems(vec![Problem {
                path: String::new(),
                message: format!("not valid TOML: {}", e.to_string().trim()),
                hint: Some("check quoting and brackets near the line shown".to_string()),
            }]))
        }
    };
    let mut cx = Ctx {
        base,
        env,
        problems: Vec::new(),
    };
    apply_overrides(&mut table, env, &mut cx.problems);

    let raw_server: raw::Server = cx.section(&mut table, "server");
    let raw_store: raw::Store = cx.section(&mut table, "store");
    let raw_session: raw::Session = cx.section(&mut table, "session");
    let raw_branding: raw::Branding = cx.section(&mut table, "branding");
    let raw_providers = array_of::<raw::Provider>(&mut cx, &mut table, "providers");
    let raw_apps = array_of::<raw::App>(&mut cx, &mut table, "apps");
    let raw_usage: raw::Usage = cx.section(&mut table, "usage");
    for key in table.keys() {
        cx.problem(
            key.clone(),
            "unknown section",
            Some("known sections: server, store, session, branding, providers, apps, usage"),
        );
    }

    let server = server(&mut cx, raw_server);
    let store = store(&mut cx, raw_store);
    let session = session(&mut cx, raw_session, server.tls.is_some());
    let branding = branding(&mut cx, raw_branding);
    let providers = providers(&mut cx, raw_providers);
    let apps = apps(&mut cx, raw_apps, &server);
    let usage = usage(&mut cx, raw_usage);

    if cx.problems.is_empty() {
        Ok(Config {
            server,
            store,
            session,
            branding,
            providers,
            apps,
            usage,
            modified: None,
        })
    } else {
        Err(Problems(cx.problems))
    }
}

/// Deserialises each element of an array of tables on its own, so that one bad entry does
/// not hide the problems of the others. Entries that fail are `None` (kept for indices).
fn array_of<T: DeserializeOwned>(cx: &mut Ctx, table: &mut toml::Table, key: &str) -> Vec<(String, T)> {
    match table.remove(key) {
        None => vec![],
        Some(toml::Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let at = format!("{key}[{i}]");
                cx.deserialize(v, &at).map(|t| (at, t))
            })
            .collect(),
        Some(_) => {
            cx.problem(
                key,
                "must be an array of tables",
                Some(&format!("write [[{key}]] before each entry")),
            );
            vec![]
        }
    }
}

fn server(cx: &mut Ctx, r: raw::Server) -> Server {
    let listen = r
        .listen
        .as_deref()
        .and_then(|v| cx.listen_addr(v, "server.listen"))
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let metrics_listen = r
        .metrics_listen
        .as_deref()
        .and_then(|v| cx.listen_addr(v, "server.metrics_listen"));
    let http_redirect_listen = r
        .http_redirect_listen
        .as_deref()
        .and_then(|v| cx.listen_addr(v, "server.http_redirect_listen"));
    let tls = r.tls.map(|t| Tls {
        cert: cx.existing_file(&t.cert, "server.tls.cert"),
        key: cx.existing_file(&t.key, "server.tls.key"),
    });
    if http_redirect_listen.is_some() && tls.is_none() {
        cx.problem(
            "server.http_redirect_listen",
            "only makes sense with server.tls",
            Some("remove it, or configure server.tls = { cert = …, key = … }"),
        );
    }
    let mut trusted_proxies = vec![];
    for (i, p) in r.trusted_proxies.iter().enumerate() {
        let parsed = p
            .parse::<ipnet::IpNet>()
            .or_else(|_| p.parse::<IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(n) => trusted_proxies.push(n),
            Err(_) => cx.problem(
                format!("server.trusted_proxies[{i}]"),
                format!("{p:?} is not an IP address or CIDR range"),
                Some("e.g. 10.0.0.5 or 10.0.0.0/8"),
            ),
        }
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public_url = match r.public_url {
        Some(u) => public_url(cx, &u).unwrap_or_default(),
        None => {
            let host = if listen.ip().is_unspecified() {
                "localhost".to_string()
            } else {
                listen.to_string()
            };
            let host = if listen.ip().is_unspecified() {
                format!("{host}:{}", listen.port())
            } else {
                host
            };
            format!("{scheme}://{host}")
        }
    };
    let app_domain = r.app_domain.map(|d| {
        let d = d.trim_start_matches('.').to_ascii_lowercase();
        if !is_hostname(&d) {
            cx.problem(
                "server.app_domain",
                format!("{d:?} is not a domain name"),
                Some("e.g. apps.example.com"),
            );
        }
        d
    });
    let default_threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let threads = cx.count(r.threads, "server.threads", 1..=1024, default_threads as u32) as usize;
    let shutdown_grace_period = cx.duration(
        r.shutdown_grace_period.as_deref(),
        "server.shutdown_grace_period",
        Duration::from_secs(30),
    );
    let upgrade_socket = cx.path_buf(r.upgrade_socket.as_deref().unwrap_or("gatehouse-upgrade.sock"));
    // sockaddr_un holds at most 107 bytes of path.
    if upgrade_socket.as_os_str().len() > 107 {
        cx.problem(
            "server.upgrade_socket",
            format!(
                "{} is longer than a unix socket path may be (107 bytes)",
                upgrade_socket.display()
            ),
            Some("e.g. /run/gatehouse/upgrade.sock"),
        );
    }
    let timeouts = timeouts(cx, &r.timeouts, "server.timeouts", Timeouts::default());
    let health_check = health_check(cx, &r.health_check, "server.health_check", &HealthCheck::default());
    let limits = limits(cx, &r.limits);
    Server {
        listen,
        public_url,
        metrics_listen,
        trusted_proxies,
        tls,
        http_redirect_listen,
        app_domain,
        threads,
        shutdown_grace_period,
        upgrade_socket,
        timeouts,
        health_check,
        limits,
    }
}

fn limits(cx: &mut Ctx, r: &raw::Limits) -> Limits {
    let d = Limits::default();
    let header_timeout = cx.duration(
        r.header_timeout.as_deref(),
        "server.limits.header_timeout",
        d.header_timeout,
    );
    Limits {
        header_timeout,
        signin_starts_per_client: cx.count(
            r.signin_starts_per_client,
            "server.limits.signin_starts_per_client",
            1..=1_000_000,
            d.signin_starts_per_client,
        ),
    }
}

fn public_url(cx: &mut Ctx, u: &str) -> Option<String> {
    let trimmed = u.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(hostport) if !hostport.is_empty() && !hostport.contains(['/', '?', '#', '@', ' ']) => {
            Some(trimmed.to_string())
        }
        _ => {
            cx.problem(
                "server.public_url",
                format!("{u:?} is not a scheme://host[:port] URL"),
                Some("e.g. https://apps.example.com; no path"),
            );
            None
        }
    }
}

fn timeouts(cx: &mut Ctx, r: &raw::Timeouts, at: &str, d: Timeouts) -> Timeouts {
    Timeouts {
        connect: cx.duration(r.connect.as_deref(), &format!("{at}.connect"), d.connect),
        read: cx.duration(r.read.as_deref(), &format!("{at}.read"), d.read),
        write: cx.duration(r.write.as_deref(), &format!("{at}.write"), d.write),
        idle: cx.duration(r.idle.as_deref(), &format!("{at}.idle"), d.idle),
    }
}

fn health_check(cx: &mut Ctx, r: &raw::HealthCheck, at: &str, d: &HealthCheck) -> HealthCheck {
    let path = match &r.path {
        Some(p) if !p.starts_with('/') || p.contains(char::is_whitespace) => {
            cx.problem(
                format!("{at}.path"),
                format!("{p:?} is not an absolute path"),
                Some("e.g. /healthz"),
            );
            None
        }
        Some(p) => Some(p.clone()),
        None => d.path.clone(),
    };
    HealthCheck {
        path,
        interval: cx.duration(r.interval.as_deref(), &format!("{at}.interval"), d.interval),
        timeout: cx.duration(r.timeout.as_deref(), &format!("{at}.timeout"), d.timeout),
        unhealthy_after: cx.count(
            r.unhealthy_after,
            &format!("{at}.unhealthy_after"),
            1..=100,
            d.unhealthy_after,
        ),
        healthy_after: cx.count(
            r.healthy_after,
            &format!("{at}.healthy_after"),
            1..=100,
            d.healthy_after,
        ),
    }
}

fn store(cx: &mut Ctx, r: raw::Store) -> Store {
    let Some(url) = r.url else {
        return Store::Sqlite {
            path: cx.path_buf("gatehouse.db"),
        };
    };
    let Some(url) = resolve_secret(&url, "store.url", cx.base, cx.env, &mut cx.problems) else {
        return Store::Sqlite {
            path: cx.path_buf("gatehouse.db"),
        };
    };
    let u = url.expose();
    if u.starts_with("postgres://") || u.starts_with("postgresql://") {
        Store::Postgres { url }
    } else if let Some(p) = u.strip_prefix("sqlite://").or_else(|| u.strip_prefix("sqlite:")) {
        let p = p.split('?').next().unwrap_or_default();
        if p.is_empty() {
            cx.problem(
                "store.url",
                "the SQLite URL names no file",
                Some("e.g. sqlite:///var/lib/gatehouse/gatehouse.db"),
            );
        }
        Store::Sqlite { path: cx.path_buf(p) }
    } else {
        // Never echo the value: it may carry a password.
        cx.problem(
            "store.url",
            "is neither a sqlite: nor a postgres:// URL",
            Some("sqlite:///var/lib/gatehouse/gatehouse.db or postgres://user@host/db"),
        );
        Store::Sqlite {
            path: cx.path_buf("gatehouse.db"),
        }
    }
}

fn session(cx: &mut Ctx, r: raw::Session, tls: bool) -> Session {
    let idle_timeout = cx.duration(
        r.idle_timeout.as_deref(),
        "session.idle_timeout",
        Duration::from_secs(8 * 3600),
    );
    let absolute_timeout = cx.duration(
        r.absolute_timeout.as_deref(),
        "session.absolute_timeout",
        Duration::from_secs(7 * 86400),
    );
    if idle_timeout > absolute_timeout {
        cx.problem("session.idle_timeout", "is longer than session.absolute_timeout", None);
    }
    let base = r.cookie_name.unwrap_or_else(|| "gatehouse_session".to_string());
    if base.is_empty() || !base.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        cx.problem(
            "session.cookie_name",
            format!("{base:?} is not a valid cookie name"),
            Some("letters, digits, _ and -"),
        );
    }
    let cookie_name = if tls { format!("__Host-{base}") } else { base };
    let store_outage_grace = cx.duration(
        r.store_outage_grace.as_deref(),
        "session.store_outage_grace",
        Duration::from_secs(5 * 60),
    );
    Session {
        idle_timeout,
        absolute_timeout,
        cookie_name,
        store_outage_grace,
    }
}

fn usage(cx: &mut Ctx, r: raw::Usage) -> Usage {
    let d = Usage::default();
    let flush = cx.count(r.flush_seconds, "usage.flush_seconds", 1..=3600, 5);
    Usage {
        enabled: r.enabled.unwrap_or(d.enabled),
        flush_interval: Duration::from_secs(u64::from(flush)),
        max_keys: cx.count(r.max_keys, "usage.max_keys", 100..=1_000_000, d.max_keys),
    }
}

fn branding(cx: &mut Ctx, r: raw::Branding) -> Branding {
    let name = r.name.unwrap_or_else(|| "Gatehouse".to_string());
    let accent = r.accent.unwrap_or_else(|| "#0b6bcb".to_string());
    let logo_url = r.logo_url.unwrap_or_default();
    match crate::check_branding(&name, &accent, &logo_url) {
        Ok(b) => b,
        Err(problems) => {
            for (field, message) in problems {
                cx.problem(format!("branding.{field}"), message, None);
            }
            Branding {
                name,
                accent,
                logo_url: None,
            }
        }
    }
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn providers(cx: &mut Ctx, raws: Vec<(String, raw::Provider)>) -> Vec<Provider> {
    let mut seen = HashSet::new();
    let mut out = vec![];
    let mut locals = 0;
    for (at, r) in raws {
        let (id, label) = match &r {
            raw::Provider::Local { id, label }
            | raw::Provider::Ldap { id, label, .. }
            | raw::Provider::Oidc { id, label, .. }
            | raw::Provider::Saml { id, label, .. } => (id.clone(), label.clone()),
        };
        if !is_ident(&id) {
            cx.problem(
                format!("{at}.id"),
                format!("{id:?} is not a valid id"),
                Some("lower-case letters, digits and -"),
            );
        } else if !seen.insert(id.clone()) {
            cx.problem(format!("{at}.id"), format!("provider {id:?} is defined twice"), None);
        }
        let kind = match r {
            raw::Provider::Local { .. } => {
                locals += 1;
                if locals > 1 {
                    cx.problem(format!("{at}.kind"), "only one local provider can exist", None);
                }
                ProviderKind::Local
            }
            raw::Provider::Ldap {
                url,
                starttls,
                ca_file,
                insecure_skip_verify,
                directory,
                bind_dn,
                bind_password,
                user_base,
                user_filter,
                attributes,
                groups,
                connect_timeout,
                operation_timeout,
                recheck_interval,
                ..
            } => {
                if !(url.starts_with("ldap://") || url.starts_with("ldaps://")) {
                    cx.problem(
                        format!("{at}.url"),
                        format!("{url:?} is not an ldap:// or ldaps:// URL"),
                        None,
                    );
                }
                if starttls && url.starts_with("ldaps://") {
                    cx.problem(
                        format!("{at}.starttls"),
                        "cannot be combined with an ldaps:// URL",
                        Some("use ldap:// with starttls = true, or ldaps:// alone"),
                    );
                }
                let directory = match directory.as_deref() {
                    None | Some("openldap") => Directory::OpenLdap,
                    Some("active_directory") => Directory::ActiveDirectory,
                    Some(o) => {
                        cx.problem(
                            format!("{at}.directory"),
                            format!("unknown directory {o:?}"),
                            Some("openldap or active_directory"),
                        );
                        Directory::OpenLdap
                    }
                };
                let ad = directory == Directory::ActiveDirectory;
                let bind_password = resolve_secret(
                    &bind_password,
                    &format!("{at}.bind_password"),
                    cx.base,
                    cx.env,
                    &mut cx.problems,
                )
                .unwrap_or_else(|| Secret::new(""));
                let user_filter = user_filter.unwrap_or_else(|| {
                    if ad {
                        "(sAMAccountName={username})"
                    } else {
                        "(uid={username})"
                    }
                    .to_string()
                });
                if !user_filter.contains("{username}") {
                    cx.problem(
                        format!("{at}.user_filter"),
                        "must contain {username}",
                        Some("e.g. (uid={username})"),
                    );
                }
                let group_strategy = match groups.strategy.as_deref() {
                    None | Some("member_of") => GroupStrategy::MemberOf,
                    Some("search") => GroupStrategy::Search,
                    Some(o) => {
                        cx.problem(
                            format!("{at}.groups.strategy"),
                            format!("unknown strategy {o:?}"),
                            Some("member_of or search"),
                        );
                        GroupStrategy::MemberOf
                    }
                };
                let group_name = match groups.name.as_deref() {
                    None | Some("cn") => GroupName::Cn,
                    Some("dn") => GroupName::Dn,
                    Some(o) => {
                        cx.problem(
                            format!("{at}.groups.name"),
                            format!("unknown group naming {o:?}"),
                            Some("cn or dn"),
                        );
                        GroupName::Cn
                    }
                };
                let ca_file = ca_file.map(|f| cx.existing_file(&f, &format!("{at}.ca_file")));
                ProviderKind::Ldap(Box::new(Ldap {
                    url,
                    starttls,
                    ca_file,
                    insecure_skip_verify,
                    directory,
                    bind_dn,
                    bind_password,
                    user_base,
                    user_filter,
                    attr_user_id: attributes
                        .user_id
                        .unwrap_or_else(|| if ad { "sAMAccountName" } else { "uid" }.into()),
                    attr_email: attributes.email.unwrap_or_else(|| "mail".into()),
                    attr_display_name: attributes
                        .display_name
                        .unwrap_or_else(|| if ad { "displayName" } else { "cn" }.into()),
                    group_strategy,
                    group_base: groups.base,
                    group_filter: groups
                        .filter
                        .unwrap_or_else(|| "(|(member={dn})(uniqueMember={dn})(memberUid={username}))".into()),
                    nested_groups: groups.nested,
                    max_depth: cx.count(groups.max_depth, &format!("{at}.groups.max_depth"), 1..=64, 10),
                    group_name,
                    connect_timeout: cx.duration(
                        connect_timeout.as_deref(),
                        &format!("{at}.connect_timeout"),
                        Duration::from_secs(5),
                    ),
                    operation_timeout: cx.duration(
                        operation_timeout.as_deref(),
                        &format!("{at}.operation_timeout"),
                        Duration::from_secs(10),
                    ),
                    recheck_interval: recheck_interval
                        .map(|v| cx.duration(Some(&v), &format!("{at}.recheck_interval"), Duration::ZERO)),
                }))
            }
            raw::Provider::Oidc {
                issuer,
                client_id,
                client_secret,
                scopes,
                user_claim,
                groups_claim,
                allowed_email_domains,
                require_verified_email,
                required_groups,
                refresh_interval,
                user_namespace,
                ..
            } => {
                if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
                    cx.problem(
                        format!("{at}.issuer"),
                        format!("{issuer:?} is not an http(s) URL"),
                        Some("the issuer as the provider publishes it, e.g. https://login.example.com"),
                    );
                }
                if client_id.is_empty() {
                    cx.problem(format!("{at}.client_id"), "must not be empty", None);
                }
                let client_secret = client_secret.and_then(|s| {
                    resolve_secret(&s, &format!("{at}.client_secret"), cx.base, cx.env, &mut cx.problems)
                });
                let scopes = if scopes.is_empty() {
                    vec!["openid".into(), "profile".into(), "email".into()]
                } else {
                    scopes
                };
                ProviderKind::Oidc(Box::new(Oidc {
                    issuer,
                    client_id,
                    client_secret,
                    scopes,
                    user_claim: user_claim.unwrap_or_else(|| "preferred_username".into()),
                    groups_claim: groups_claim.unwrap_or_else(|| "groups".into()),
                    allowed_email_domains,
                    require_verified_email: require_verified_email.unwrap_or(true),
                    required_groups,
                    refresh_interval: refresh_interval
                        .map(|v| cx.duration(Some(&v), &format!("{at}.refresh_interval"), Duration::ZERO)),
                    user_namespace: cx.user_namespace(user_namespace.as_deref(), &format!("{at}.user_namespace")),
                }))
            }
            raw::Provider::Saml {
                idp_metadata,
                entity_id,
                sp_cert,
                sp_key,
                user_attribute,
                email_attribute,
                name_attribute,
                groups_attribute,
                group_map,
                allow_idp_initiated,
                allowed_signature_algorithms,
                metadata_refresh,
                user_namespace,
                ..
            } => {
                let idp_metadata = if idp_metadata.starts_with("https://") || idp_metadata.starts_with("http://") {
                    MetadataSource::Url(idp_metadata)
                } else {
                    MetadataSource::File(cx.existing_file(&idp_metadata, &format!("{at}.idp_metadata")))
                };
                if sp_cert.is_some() != sp_key.is_some() {
                    cx.problem(format!("{at}.sp_cert"), "sp_cert and sp_key go together", None);
                }
                let sp_cert = sp_cert.map(|c| cx.existing_file(&c, &format!("{at}.sp_cert")));
                let sp_key =
                    sp_key.and_then(|k| resolve_secret(&k, &format!("{at}.sp_key"), cx.base, cx.env, &mut cx.problems));
                let allowed_signature_algorithms = if allowed_signature_algorithms.is_empty() {
                    vec![
                        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256".into(),
                        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256".into(),
                    ]
                } else {
                    allowed_signature_algorithms
                };
                ProviderKind::Saml(Box::new(Saml {
                    idp_metadata,
                    entity_id,
                    sp_cert,
                    sp_key,
                    user_attribute,
                    email_attribute: email_attribute.unwrap_or_else(|| "email".into()),
                    name_attribute: name_attribute.unwrap_or_else(|| "displayName".into()),
                    groups_attribute: groups_attribute.unwrap_or_else(|| "groups".into()),
                    group_map,
                    allow_idp_initiated,
                    allowed_signature_algorithms,
                    metadata_refresh: cx.duration(
                        metadata_refresh.as_deref(),
                        &format!("{at}.metadata_refresh"),
                        Duration::from_secs(3600),
                    ),
                    user_namespace: cx.user_namespace(user_namespace.as_deref(), &format!("{at}.user_namespace")),
                }))
            }
        };
        out.push(Provider {
            label: label.unwrap_or_else(|| id.clone()),
            id,
            kind,
        });
    }
    out
}

/// Checks an app path prefix: `/`-delimited, plain characters only, no dot segments, so the
/// prefix can be compared with canonical request paths byte for byte.
fn prefix_problem(p: &str) -> Option<&'static str> {
    if !p.starts_with('/') || !p.ends_with('/') {
        return Some("must start and end with /");
    }
    if RESERVED_PREFIXES.iter().any(|r| p.to_ascii_lowercase().starts_with(r)) {
        return Some("is reserved for the gateway's own endpoints");
    }
    let inner = p.trim_matches('/');
    if p.len() > 1 {
        for seg in inner.split('/') {
            if seg.is_empty() || seg == "." || seg == ".." {
                return Some("must not contain empty, . or .. segments");
            }
            if !seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
                return Some("may only contain letters, digits, -, ., _, ~ and /");
            }
        }
    }
    None
}

fn upstream(cx: &mut Ctx, v: &str, at: &str) -> Option<Upstream> {
    let (tls, rest) = if let Some(r) = v.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = v.strip_prefix("http://") {
        (false, r)
    } else {
        (false, v)
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let parsed = if let Ok(sa) = rest.parse::<SocketAddr>() {
        Some((sa.ip().to_string(), sa.port()))
    } else {
        rest.rsplit_once(':').and_then(|(h, p)| {
            let port = p.parse::<u16>().ok().filter(|p| *p != 0)?;
            is_hostname(h).then(|| (h.to_ascii_lowercase(), port))
        })
    };
    match parsed {
        Some((host, port)) => Some(Upstream {
            address: format!("{host}:{port}"),
            host,
            port,
            tls,
        }),
        None => {
            cx.problem(
                at,
                format!("{v:?} is not host:port"),
                Some("e.g. 10.0.3.7:8050, app.internal:80 or https://app.internal:8443"),
            );
            None
        }
    }
}

fn apps(cx: &mut Ctx, raws: Vec<(String, raw::App)>, server: &Server) -> Vec<App> {
    let mut slugs = HashSet::new();
    let mut routes: BTreeSet<(Option<String>, String)> = BTreeSet::new();
    let mut out = vec![];
    for (at, r) in raws {
        if is_ident(&r.slug) && !slugs.insert(r.slug.clone()) {
            cx.problem(format!("{at}.slug"), format!("app {:?} is defined twice", r.slug), None);
        }
        let app = app(cx, &at, r, server);
        if !routes.insert((app.host.clone(), app.path.clone())) {
            cx.problem(
                format!("{at}.path"),
                format!(
                    "another app is already routed at {}{}",
                    app.host.as_deref().unwrap_or(""),
                    app.path
                ),
                None,
            );
        }
        out.push(app);
    }
    out
}

/// One app entry, validated on its own (slug and route clashes are the caller's).
fn app(cx: &mut Ctx, at: &str, r: raw::App, server: &Server) -> App {
    if !is_ident(&r.slug) {
        cx.problem(
            format!("{at}.slug"),
            format!("{:?} is not a valid slug", r.slug),
            Some("lower-case letters, digits and -, at most 63"),
        );
    }
    if r.upstreams.is_empty() {
        cx.problem(
            format!("{at}.upstreams"),
            "an app needs at least one upstream",
            Some("upstreams = [\"10.0.3.7:8050\"]"),
        );
    }
    let upstreams: Vec<Upstream> = r
        .upstreams
        .iter()
        .enumerate()
        .filter_map(|(i, u)| upstream(cx, u, &format!("{at}.upstreams[{i}]")))
        .collect();
    let host = r.host.map(|h| {
        let h = h.to_ascii_lowercase();
        if !is_hostname(&h) {
            cx.problem(
                format!("{at}.host"),
                format!("{h:?} is not a host name"),
                Some("e.g. grafana.example.com, without scheme or port"),
            );
        }
        h
    });
    let explicit = r.path.is_some();
    let path = r.path.unwrap_or_else(|| {
        if host.is_some() {
            "/".into()
        } else {
            format!("/apps/{}/", r.slug)
        }
    });
    let reportable = explicit || is_ident(&r.slug);
    if let Some(why) = prefix_problem(&path).filter(|_| reportable) {
        cx.problem(
            format!("{at}.path"),
            format!("{path:?} {why}"),
            Some("e.g. /apps/sales/"),
        );
    }
    if path == "/" && host.is_none() && server.app_domain.is_none() {
        cx.problem(
            format!("{at}.path"),
            "\"/\" would hide the App Portal",
            Some("route this app by host = … or give it a prefix"),
        );
    }
    let access = match r.access.as_deref() {
        None | Some("restricted") => Access::Restricted,
        Some("authenticated") => Access::Authenticated,
        Some("public") => Access::Public,
        Some(o) => {
            cx.problem(
                format!("{at}.access"),
                format!("unknown access {o:?}"),
                Some("public, authenticated or restricted"),
            );
            Access::Restricted
        }
    };
    if access != Access::Restricted && !(r.allow_groups.is_empty() && r.allow_users.is_empty()) {
        cx.problem(
            format!("{at}.allow_groups"),
            "allow lists only apply to access = \"restricted\"",
            Some("remove them or set access = \"restricted\""),
        );
    }
    let groups_sent = match r.headers.groups_sent.as_deref() {
        None | Some("auto") => GroupsSent::Auto,
        Some("all") => GroupsSent::All,
        Some("referenced") => GroupsSent::Referenced,
        Some(o) => {
            cx.problem(
                format!("{at}.headers.groups_sent"),
                format!("unknown value {o:?}"),
                Some("auto, all or referenced"),
            );
            GroupsSent::Auto
        }
    };
    let health_check = match &r.health_check {
        Some(h) => health_check(cx, h, &format!("{at}.health_check"), &server.health_check),
        None => server.health_check.clone(),
    };
    let timeouts = match &r.timeouts {
        Some(t) => timeouts(cx, t, &format!("{at}.timeouts"), server.timeouts),
        None => server.timeouts,
    };
    App {
        name: r.name.unwrap_or_else(|| r.slug.clone()),
        description: r.description.unwrap_or_default(),
        slug: r.slug,
        upstreams,
        path,
        host,
        strip_prefix: r.strip_prefix,
        access,
        allow_groups: r.allow_groups,
        allow_users: r.allow_users,
        headers: AppHeaders {
            remote_headers: r.headers.remote_headers,
            plotly_user_data: r.headers.plotly_user_data,
            dash_token: r.headers.dash_token,
            groups_sent,
        },
        health_check,
        timeouts,
        tags: tags(cx, at, r.tags),
        thumbnail: r.thumbnail.map(|t| t.trim().to_string()).filter(|t| {
            let ok = crate::branding::logo_url_ok(t);
            if !ok {
                cx.problem(
                    format!("{at}.thumbnail"),
                    format!("{t:?} is not an https:// address or a path on this gateway"),
                    Some("e.g. https://intranet.example.com/sales.png or /apps/sales/assets/card.png"),
                );
            }
            ok
        }),
        portal_order: match r.portal_order {
            Some(n) if n.abs() > MAX_PORTAL_ORDER => {
                cx.problem(
                    format!("{at}.portal_order"),
                    format!("{n} is outside -{MAX_PORTAL_ORDER}..{MAX_PORTAL_ORDER}"),
                    Some("e.g. portal_order = 10 (lower comes first)"),
                );
                0
            }
            n => n.unwrap_or(0),
        },
        owner: r.owner.map(|o| o.trim().to_string()).filter(|o| {
            let ok = o.chars().count() <= MAX_OWNER_CHARS && !o.chars().any(char::is_control);
            if !ok {
                cx.problem(
                    format!("{at}.owner"),
                    format!("at most {MAX_OWNER_CHARS} characters, without control characters"),
                    Some("e.g. owner = \"Data team\""),
                );
            }
            ok && !o.is_empty()
        }),
    }
}

/// An app's tags: trimmed, each 1 to [`MAX_TAG_CHARS`] characters without `,` or control
/// characters, at most [`MAX_TAGS`], repeats (ignoring case) dropped.
fn tags(cx: &mut Ctx, at: &str, typed: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, t) in typed.iter().enumerate() {
        let t = t.trim();
        if t.is_empty() || t.chars().count() > MAX_TAG_CHARS || t.chars().any(|c| c.is_control() || c == ',') {
            cx.problem(
                format!("{at}.tags[{i}]"),
                format!("{t:?} is not a tag: 1 to {MAX_TAG_CHARS} characters, without commas"),
                Some("e.g. tags = [\"finance\", \"dash\"]"),
            );
        } else if seen.insert(t.to_lowercase()) {
            out.push(t.to_string());
        }
    }
    if out.len() > MAX_TAGS {
        cx.problem(
            format!("{at}.tags"),
            format!("{} tags; at most {MAX_TAGS}", out.len()),
            None,
        );
    }
    out
}

/// Validates an app defined outside the file (in the store, by the admin UI) exactly as an
/// `[[apps]]` entry of a file with these `server` settings. `at` names it in problems, e.g.
/// `store.apps["sales"]`. Clashes with other apps are the caller's to check.
pub fn validate_app(def: AppDefinition, at: &str, server: &Server) -> Result<App, Problems> {
    let env = std::collections::HashMap::<String, String>::new();
    let mut cx = Ctx {
        base: Path::new("."),
        env: &env,
        problems: Vec::new(),
    };
    let r = raw::App {
        slug: def.slug,
        name: def.name,
        description: def.description,
        upstreams: def.upstreams,
        path: def.path,
        host: def.host,
        strip_prefix: def.strip_prefix,
        access: def.access,
        allow_groups: def.allow_groups,
        allow_users: def.allow_users,
        headers: raw::AppHeaders {
            remote_headers: def.remote_headers,
            plotly_user_data: def.plotly_user_data,
            dash_token: def.dash_token,
            groups_sent: def.groups_sent,
        },
        health_check: None,
        timeouts: None,
        tags: def.tags,
        thumbnail: def.thumbnail,
        portal_order: Some(def.portal_order),
        owner: None,
    };
    let app = app(&mut cx, at, r, server);
    if cx.problems.is_empty() {
        Ok(app)
    } else {
        Err(Problems(cx.problems))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(text: &str) -> Result<Config, Problems> {
        from_toml(text, Path::new("/nonexistent"), &HashMap::<String, String>::new())
    }

    fn paths(text: &str) -> Vec<String> {
        load(text).unwrap_err().0.into_iter().map(|p| p.path).collect()
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = load("").unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.server.public_url, "http://127.0.0.1:8080");
        assert_eq!(c.session.idle_timeout, Duration::from_secs(8 * 3600));
        assert_eq!(c.session.cookie_name, "gatehouse_session");
        assert!(c.apps.is_empty());
    }

    #[test]
    fn branding_is_checked_for_contrast_and_logo() {
        let c = load("[branding]\nname = \"Acme\"\naccent = \"#1F7A4D\"\nlogo_url = \"/logo.svg\"").unwrap();
        assert_eq!(c.branding.accent, "#1f7a4d");
        assert_eq!(c.branding.logo_url.as_deref(), Some("/logo.svg"));
        assert_eq!(
            paths("[branding]\naccent = \"#ffff00\"\nlogo_url = \"javascript:alert(1)\""),
            ["branding.accent", "branding.logo_url"]
        );
        let text = load("[branding]\naccent = \"#ffff00\"").unwrap_err().to_string();
        assert!(text.contains("contrast") && text.contains("darker"), "{text}");
    }

    #[test]
    fn groups_sent_defaults_to_auto() {
        let app = |headers: &str| {
            let toml = format!("[[apps]]\nslug = \"a\"\nupstreams = [\"127.0.0.1:1\"]\n{headers}");
            load(&toml).map(|c| c.apps[0].headers.groups_sent)
        };
        assert_eq!(app("").unwrap(), GroupsSent::Auto);
        for g in [GroupsSent::Auto, GroupsSent::All, GroupsSent::Referenced] {
            assert_eq!(
                app(&format!("headers = {{ groups_sent = {:?} }}", g.as_str())).unwrap(),
                g
            );
        }
        let text = app("headers = { groups_sent = \"everything\" }")
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("apps[0].headers.groups_sent") && text.contains("auto, all or referenced"),
            "{text}"
        );
    }

    #[test]
    fn portal_fields_of_an_app() {
        let app = |extra: &str| format!("[[apps]]\nslug = \"sales\"\nupstreams = [\"127.0.0.1:9\"]\n{extra}\n");
        let c = load(&app(
            "tags = [\" Finance \", \"dash\", \"FINANCE\"]\nthumbnail = \"https://cdn.example.com/s.png\"\nportal_order = -5\nowner = \" Data team \"",
        ))
        .unwrap();
        let a = &c.apps[0];
        assert_eq!(a.tags, ["Finance", "dash"], "trimmed, repeats ignoring case dropped");
        assert_eq!(a.thumbnail.as_deref(), Some("https://cdn.example.com/s.png"));
        assert_eq!((a.portal_order, a.owner.as_deref()), (-5, Some("Data team")));
        let plain = load(&app("")).unwrap();
        assert_eq!(
            (
                plain.apps[0].tags.len(),
                &plain.apps[0].thumbnail,
                plain.apps[0].portal_order
            ),
            (0, &None, 0)
        );
        assert_eq!(
            load(&app("thumbnail = \"/apps/sales/card.png\"")).unwrap().apps[0]
                .thumbnail
                .as_deref(),
            Some("/apps/sales/card.png")
        );
        for bad in [
            "http://cdn.example.com/s.png",
            "javascript:alert(1)",
            "//evil.example/x.png",
            "/a b.png",
        ] {
            assert_eq!(
                paths(&app(&format!("thumbnail = {bad:?}"))),
                ["apps[0].thumbnail"],
                "{bad}"
            );
        }
        assert_eq!(
            paths(&app("tags = [\"\", \"a,b\"]")),
            ["apps[0].tags[0]", "apps[0].tags[1]"]
        );
        let many: Vec<String> = (0..11).map(|i| format!("\"t{i}\"")).collect();
        assert_eq!(paths(&app(&format!("tags = [{}]", many.join(",")))), ["apps[0].tags"]);
        assert_eq!(paths(&app("portal_order = 1000001")), ["apps[0].portal_order"]);
        assert_eq!(
            paths(&app(&format!("owner = {:?}", "x".repeat(101)))),
            ["apps[0].owner"]
        );
    }

    #[test]
    fn usage_section() {
        assert_eq!(load("").unwrap().usage, Usage::default());
        let c = load("[usage]\nenabled = false\nflush_seconds = 2\nmax_keys = 500\n").unwrap();
        assert_eq!(
            c.usage,
            Usage {
                enabled: false,
                flush_interval: Duration::from_secs(2),
                max_keys: 500
            }
        );
        assert_eq!(
            paths("[usage]\nflush_seconds = 0\nmax_keys = 5\n"),
            ["usage.flush_seconds", "usage.max_keys"]
        );
        assert_eq!(paths("[usage]\nevery = 1\n"), ["usage.every"]);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let got = paths(
            r#"
            [server]
            listen = "nope"
            listn = "x"
            [session]
            idle_timeout = "8 hours please"
            [[apps]]
            slug = "ok"
            upstreams = ["127.0.0.1:1"]
            [[apps]]
            slug = "Bad Slug"
            upstreams = ["localhost:80a", "10.0.0.1:80"]
            access = "everyone"
            [[apps]]
            slug = "ok"
            upstreams = []
            colour = "red"
            [surprise]
            "#,
        );
        assert_eq!(
            got,
            [
                "server.listn",
                "apps[2].colour",
                "surprise",
                "session.idle_timeout",
                "apps[1].slug",
                "apps[1].upstreams[0]",
                "apps[1].access",
            ]
        );
    }

    #[test]
    fn upstream_problem_names_value_and_hint() {
        let e = load("[[apps]]\nslug='a'\nupstreams=['10.0.0.1:1','localhost:80a']").unwrap_err();
        let line = e.0[0].to_string();
        assert!(
            line.starts_with("apps[0].upstreams[1]: \"localhost:80a\" is not host:port (hint: "),
            "{line}"
        );
    }

    #[test]
    fn routes_default_and_conflict() {
        let c = load("[[apps]]\nslug='sales'\nupstreams=['a.internal:80']\n[[apps]]\nslug='g'\nhost='G.example.com'\nupstreams=['https://g:443']").unwrap();
        assert_eq!(c.apps[0].path, "/apps/sales/");
        assert_eq!(c.apps[1].path, "/");
        assert_eq!(c.apps[1].host.as_deref(), Some("g.example.com"));
        assert!(c.apps[1].upstreams[0].tls);
        let dup = paths(
            "[[apps]]\nslug='a'\npath='/x/'\nupstreams=['h:1']\n[[apps]]\nslug='b'\npath='/x/'\nupstreams=['h:1']",
        );
        assert_eq!(dup, ["apps[1].path"]);
    }

    #[test]
    fn reserved_and_unclean_prefixes_are_refused() {
        for p in [
            "/.gatehouse/x/",
            "/.GATEHOUSE/",
            "/a/../b/",
            "/a//b/",
            "/a%2f/",
            "/a;b/",
            "/noslash",
            "/.well-known/gatehouse/",
        ] {
            let got = paths(&format!("[[apps]]\nslug='a'\npath='{p}'\nupstreams=['h:1']"));
            assert_eq!(got, ["apps[0].path"], "{p}");
        }
    }

    #[test]
    fn allow_lists_need_restricted_access() {
        assert_eq!(
            paths("[[apps]]\nslug='a'\naccess='public'\nallow_groups=['x']\nupstreams=['h:1']"),
            ["apps[0].allow_groups"]
        );
        let c = load("[[apps]]\nslug='a'\nupstreams=['h:1']").unwrap();
        assert_eq!(c.apps[0].access, Access::Restricted, "deny by default");
    }

    #[test]
    fn tls_switches_cookie_prefix_and_public_url() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.pem"), "x").unwrap();
        std::fs::write(dir.path().join("k.pem"), "x").unwrap();
        let c = from_toml(
            "[server]\nlisten='0.0.0.0:8443'\ntls={cert='c.pem',key='k.pem'}",
            dir.path(),
            &HashMap::<String, String>::new(),
        )
        .unwrap();
        assert_eq!(c.session.cookie_name, "__Host-gatehouse_session");
        assert_eq!(c.server.public_url, "https://localhost:8443");
        assert_eq!(
            paths("[server]\ntls={cert='c.pem',key='k.pem'}"),
            ["server.tls.cert", "server.tls.key"]
        );
    }

    #[test]
    fn env_overrides_apply_before_validation() {
        let env: HashMap<String, String> =
            [("GATEHOUSE_SERVER__LISTEN".to_string(), "127.0.0.1:9999".to_string())].into();
        let c = from_toml("[server]\nlisten='127.0.0.1:1'", Path::new("."), &env).unwrap();
        assert_eq!(c.server.listen.port(), 9999);
        let env: HashMap<String, String> = [("GATEHOUSE_SERVER__LISTEN".to_string(), "bogus".to_string())].into();
        let e = from_toml("", Path::new("."), &env).unwrap_err();
        assert_eq!(e.0[0].path, "server.listen");
    }

    #[test]
    fn store_urls() {
        let c = load("[store]\nurl='sqlite:///var/lib/g.db'").unwrap();
        assert!(matches!(c.store, Store::Sqlite { ref path } if path == Path::new("/var/lib/g.db")));
        let c = load("[store]\nurl='postgres://u:pw@h/db'").unwrap();
        assert!(matches!(c.store, Store::Postgres { .. }));
        let e = load("[store]\nurl='mysql://u:hunter2@h/db'").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "secrets never echoed");
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let e = load("[server\nlisten=1").unwrap_err();
        assert!(e.0[0].message.contains("line 1"), "{}", e.0[0].message);
    }

    #[test]
    fn provider_kinds_parse() {
        let env: HashMap<String, String> = [("PW".to_string(), "x".to_string())].into();
        let c = from_toml(
            r#"
            [[providers]]
            id = "local"
            kind = "local"
            [[providers]]
            id = "corp"
            kind = "ldap"
            url = "ldaps://ldap.example.org"
            bind_dn = "cn=svc"
            bind_password = "env:PW"
            user_base = "ou=people"
            [[providers]]
            id = "okta"
            kind = "oidc"
            issuer = "https://example.okta.com"
            client_id = "abc"
            [[providers]]
            id = "google"
            kind = "oidc"
            issuer = "https://accounts.google.com"
            client_id = "def"
            allowed_email_domains = ["example.org"]
            require_verified_email = false
            user_namespace = "shared"
            "#,
            Path::new("."),
            &env,
        )
        .unwrap();
        assert_eq!(c.providers.len(), 4);
        assert!(matches!(&c.providers[1].kind, ProviderKind::Ldap(l) if l.user_filter == "(uid={username})"));
        assert!(
            matches!(&c.providers[2].kind, ProviderKind::Oidc(o) if o.require_verified_email),
            "verified emails are required by default"
        );
        assert!(matches!(&c.providers[3].kind, ProviderKind::Oidc(o) if !o.require_verified_email));
        assert!(
            matches!(&c.providers[2].kind, ProviderKind::Oidc(o) if o.user_namespace == UserNamespace::Own),
            "an external provider has its own namespace by default"
        );
        assert!(matches!(&c.providers[3].kind, ProviderKind::Oidc(o) if o.user_namespace == UserNamespace::Shared));
        let got =
            paths("[[providers]]\nid='o'\nkind='oidc'\nissuer='https://x'\nclient_id='c'\nuser_namespace='global'");
        assert_eq!(got, ["providers[0].user_namespace"]);
        let got = paths("[[providers]]\nid='x'\nkind='kerberos'");
        assert_eq!(got, ["providers[0].kind"]);
    }
}
