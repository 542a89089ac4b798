//! LDAP / Active Directory sign-in with `ldap3`: service bind → search the user with an
//! RFC 4515-escaped filter (exactly one entry) → bind as that entry with the typed
//! password (never an empty one) → groups from `memberOf` or a group search, optionally
//! nested (per-level searches with a cycle guard and a depth limit, or AD's
//! `LDAP_MATCHING_RULE_IN_CHAIN`). Service connections are pooled; every operation has a
//! timeout; a directory that is down gives `Unavailable`, never a hang. For the admin UI:
//! a probe (fresh connection + service bind), size-limited name searches with escaped
//! filters for suggestions, and the provider's [`Health`](crate::providers::Health).

use std::collections::{BTreeSet, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gatehouse_admin_ui::admin::SuggestKind;
use gatehouse_config::{Directory, GroupName, GroupStrategy, Ldap as LdapConfig};
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{ldap_escape, Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchOptions};

use crate::providers::Candidate;

use super::session::NewIdentity;
use crate::GatewayError;

/// How a sign-in attempt against the directory ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LdapFailure {
    /// Unknown user, wrong or empty password, several matching entries, locked account.
    Invalid,
    /// The directory could not be reached or did not answer in time.
    Unavailable(String),
}

/// What the directory says about a user.
#[derive(Debug, Clone)]
pub struct DirectoryUser {
    pub dn: String,
    pub user_id: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub groups: Vec<String>,
}

/// Largest number of group DNs per `(|(member=…)…)` filter when walking nested groups. Only
/// `member` is followed for nesting (groupOfNames, AD groups): directories index it, so a
/// level costs a few indexed searches even for 2,000 groups (57 ms here; with an unindexed
/// `uniqueMember` term in the filter it took ~900 ms).
const FILTER_CHUNK: usize = 250;
/// Page size for group searches.
const PAGE: i32 = 500;
/// Idle service connections kept.
const POOL_MAX: usize = 8;

/// One configured LDAP provider.
pub struct LdapProvider {
    pub id: String,
    cfg: LdapConfig,
    connector: Option<native_tls::TlsConnector>,
    idle: Mutex<Vec<Ldap>>,
    /// Last error and last answer, for the admin UI's Providers page.
    pub health: crate::providers::Health,
}

impl std::fmt::Debug for LdapProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapProvider")
            .field("id", &self.id)
            .field("url", &self.cfg.url)
            .finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> LdapFailure {
    LdapFailure::Unavailable(e.to_string())
}

/// The first RDN's value of a DN, unescaped: `cn=R&D\, Europe,ou=groups` → `R&D, Europe`.
/// An escape is `\` and two hex digits (a byte) or `\` and the character itself; a dangling
/// `\` at the end of a malformed DN is dropped. (Slice patterns, no index arithmetic: nothing
/// to step past the end or backwards.)
pub fn first_rdn_value(dn: &str) -> String {
    let mut out = Vec::new();
    let mut in_value = false;
    let mut rest = dn.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        let byte = match b {
            b'\\' => match rest {
                [h, l, after @ ..] if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                    rest = after;
                    hex_value(*h) * 16 + hex_value(*l)
                }
                [c, after @ ..] => {
                    rest = after;
                    *c
                }
                [] => break,
            },
            b'=' if !in_value => {
                in_value = true;
                continue;
            }
            b',' | b'+' => break,
            _ => b,
        };
        if in_value {
            out.push(byte);
        }
    }
    String::from_utf8_lossy(&out).trim().to_string()
}

/// The value of one hex digit (`0` for anything else; callers check first).
fn hex_value(d: u8) -> u8 {
    char::from(d)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
        .unwrap_or(0)
}

/// Groups as the gateway names them (`group_name`: the first RDN's value, or the whole DN),
/// without empty names (a DN such as `dc=x` has no value to name a group by).
fn names_of_groups(dns: BTreeSet<String>, by: &GroupName) -> Vec<String> {
    dns.into_iter()
        .map(|dn| match by {
            GroupName::Cn => first_rdn_value(&dn),
            GroupName::Dn => dn,
        })
        .filter(|g| !g.is_empty())
        .collect()
}

/// The default group base: the trailing `dc=` components of the user base
/// (`ou=people,dc=example,dc=org` → `dc=example,dc=org`), or the user base itself.
pub fn domain_root(user_base: &str) -> String {
    let mut dn = user_base.trim().to_string();
    // Each step drops one RDN, so there are at most as many steps as bytes.
    for _ in 0..=user_base.len() {
        if dn.is_empty() || dn.to_ascii_lowercase().starts_with("dc=") {
            break;
        }
        dn = parent_dn(&dn);
    }
    if dn.is_empty() {
        user_base.to_string()
    } else {
        dn
    }
}

/// The parent of a DN (everything after the first unescaped comma).
pub fn parent_dn(dn: &str) -> String {
    let mut rest = dn.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        match (b, tail) {
            (b'\\', [_, after @ ..]) => rest = after,
            (b',', _) => return dn[dn.len() - tail.len()..].trim().to_string(),
            _ => rest = tail,
        }
    }
    String::new()
}

impl LdapProvider {
    /// Builds the provider; reads the CA file. Warns (at every start) when certificate
    /// checks are switched off.
    pub fn new(id: &str, cfg: &LdapConfig) -> Result<LdapProvider, GatewayError> {
        let tls = cfg.url.starts_with("ldaps://") || cfg.starttls;
        let connector = if tls {
            let mut b = native_tls::TlsConnector::builder();
            if let Some(ca) = &cfg.ca_file {
                let pem = std::fs::read(ca)
                    .map_err(|e| GatewayError::Io(format!("provider {id}: CA file {}: {e}", ca.display())))?;
                let cert = native_tls::Certificate::from_pem(&pem)
                    .map_err(|e| GatewayError::Io(format!("provider {id}: CA file {}: {e}", ca.display())))?;
                b.add_root_certificate(cert);
            }
            if cfg.insecure_skip_verify {
                tracing::warn!(
                    provider = id,
                    "insecure_skip_verify is on: the directory's certificate is NOT checked"
                );
                b.danger_accept_invalid_certs(true)
                    .danger_accept_invalid_hostnames(true);
            }
            Some(
                b.build()
                    .map_err(|e| GatewayError::Io(format!("provider {id}: TLS: {e}")))?,
            )
        } else {
            None
        };
        Ok(LdapProvider {
            id: id.to_string(),
            cfg: cfg.clone(),
            connector,
            idle: Mutex::new(Vec::new()),
            health: crate::providers::Health::default(),
        })
    }

    /// Opens a connection (TLS as configured); not yet bound.
    async fn connect(&self) -> Result<Ldap, LdapFailure> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.cfg.connect_timeout)
            .set_starttls(self.cfg.starttls);
        if let Some(c) = &self.connector {
            settings = settings.set_connector(c.clone());
        }
        let fut = LdapConnAsync::with_settings(settings, &self.cfg.url);
        let (conn, ldap) = tokio::time::timeout(self.cfg.connect_timeout + Duration::from_secs(1), fut)
            .await
            .map_err(|_| unavailable("connect timed out"))?
            .map_err(unavailable)?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection ended");
            }
        });
        Ok(ldap)
    }

    fn op(&self, ldap: &mut Ldap) {
        ldap.with_timeout(self.cfg.operation_timeout);
    }

    /// A connection bound as the service account, from the pool or new.
    async fn service(&self) -> Result<Ldap, LdapFailure> {
        loop {
            let pooled = self.idle.lock().map(|mut v| v.pop()).unwrap_or(None);
            match pooled {
                Some(mut l) => {
                    if !l.is_closed() {
                        return Ok(l);
                    }
                }
                None => break,
            }
        }
        let mut l = self.connect().await?;
        self.op(&mut l);
        let res = l
            .simple_bind(&self.cfg.bind_dn, self.cfg.bind_password.expose())
            .await
            .map_err(unavailable)?;
        if res.rc != 0 {
            // A wrong service password is a configuration problem, not the user's.
            return Err(unavailable(format!(
                "service bind refused (code {}): check bind_dn and bind_password",
                res.rc
            )));
        }
        Ok(l)
    }

    fn give_back(&self, l: Ldap) {
        if let Ok(mut v) = self.idle.lock() {
            if v.len() < POOL_MAX {
                v.push(l);
            }
        }
    }

    /// Runs `f` on a service connection; retries once on a fresh connection when a pooled
    /// one turns out to be dead (the directory restarted).
    async fn with_service<T, F>(&self, f: F) -> Result<T, LdapFailure>
    where
        F: for<'a> Fn(&'a Self, &'a mut Ldap) -> futures_util::future::BoxFuture<'a, Result<T, LdapFailure>>,
    {
        for attempt in 0..2 {
            let mut l = self.service().await?;
            match f(self, &mut l).await {
                Ok(t) => {
                    self.give_back(l);
                    return Ok(t);
                }
                Err(LdapFailure::Unavailable(e)) if attempt == 0 => {
                    tracing::debug!(error = %e, "LDAP operation failed; retrying on a new connection");
                    self.idle.lock().map(|mut v| v.clear()).ok();
                }
                Err(e) => return Err(e),
            }
        }
        Err(unavailable("directory unavailable"))
    }

    async fn search(
        &self,
        l: &mut Ldap,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: Vec<String>,
    ) -> Result<Vec<SearchEntry>, LdapFailure> {
        self.op(l);
        let adapters: Vec<Box<dyn Adapter<_, _>>> =
            vec![Box::new(EntriesOnly::new()), Box::new(PagedResults::new(PAGE))];
        let mut stream = l
            .streaming_search_with(adapters, base, scope, filter, attrs)
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        let deadline = Instant::now() + self.cfg.operation_timeout;
        loop {
            let next = tokio::time::timeout_at(deadline.into(), stream.next())
                .await
                .map_err(|_| unavailable("search timed out"))?;
            match next.map_err(unavailable)? {
                Some(raw) => {
                    // ldap3 panics on malformed BER; a directory must not crash the gateway.
                    match std::panic::catch_unwind(AssertUnwindSafe(|| SearchEntry::construct(raw))) {
                        Ok(e) => out.push(e),
                        Err(_) => return Err(unavailable("malformed entry from the directory")),
                    }
                }
                None => break,
            }
        }
        let res = stream.finish().await;
        // 32 (no such object) is an empty answer, not an outage.
        if res.rc != 0 && res.rc != 32 {
            return Err(unavailable(format!("search failed (code {}: {})", res.rc, res.text)));
        }
        Ok(out)
    }

    fn attr(e: &SearchEntry, name: &str) -> Option<String> {
        e.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.first().cloned())
    }

    fn attr_all(e: &SearchEntry, name: &str) -> Vec<String> {
        e.attrs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.clone())
            .collect()
    }

    fn group_base(&self) -> String {
        self.cfg
            .group_base
            .clone()
            .unwrap_or_else(|| domain_root(&self.cfg.user_base))
    }

    /// Finds the user's single entry. `None` when zero or several entries match.
    async fn find_user(&self, l: &mut Ldap, username: &str) -> Result<Option<SearchEntry>, LdapFailure> {
        let filter = self.cfg.user_filter.replace("{username}", &ldap_escape(username));
        let attrs = vec![
            self.cfg.attr_user_id.clone(),
            self.cfg.attr_email.clone(),
            self.cfg.attr_display_name.clone(),
            "memberOf".to_string(),
        ];
        let mut found = self
            .search(l, &self.cfg.user_base, Scope::Subtree, &filter, attrs)
            .await?;
        match found.len() {
            1 => Ok(found.pop()),
            0 => {
                tracing::info!(provider = %self.id, user = %username, "no directory entry matches");
                Ok(None)
            }
            n => {
                tracing::warn!(provider = %self.id, user = %username, matches = n, "several directory entries match; refusing");
                Ok(None)
            }
        }
    }

    /// The groups of the user entry, as DNs, with nesting resolved if configured.
    async fn group_dns(
        &self,
        l: &mut Ldap,
        user: &SearchEntry,
        username: &str,
    ) -> Result<BTreeSet<String>, LdapFailure> {
        let base = self.group_base();
        let ad_chain = self.cfg.nested_groups && self.cfg.directory == Directory::ActiveDirectory;
        let mut direct: BTreeSet<String> = match (self.cfg.group_strategy, ad_chain) {
            (_, true) => {
                let filter = format!("(member:1.2.840.113556.1.4.1941:={})", ldap_escape(&user.dn));
                let found = self
                    .search(l, &base, Scope::Subtree, &filter, vec!["1.1".into()])
                    .await?;
                return Ok(found.into_iter().map(|e| e.dn).collect());
            }
            (GroupStrategy::MemberOf, false) => Self::attr_all(user, "memberOf").into_iter().collect(),
            (GroupStrategy::Search, false) => {
                let filter = self
                    .cfg
                    .group_filter
                    .replace("{dn}", &ldap_escape(&user.dn))
                    .replace("{username}", &ldap_escape(username));
                let found = self
                    .search(l, &base, Scope::Subtree, &filter, vec!["1.1".into()])
                    .await?;
                found.into_iter().map(|e| e.dn).collect()
            }
        };
        if !self.cfg.nested_groups {
            return Ok(direct);
        }
        // Walk up one level at a time: groups whose `member` is one of the frontier groups.
        let mut seen: HashSet<String> = direct.iter().map(|d| d.to_lowercase()).collect();
        let mut frontier: Vec<String> = direct.iter().cloned().collect();
        for _depth in 0..self.cfg.max_depth {
            if frontier.is_empty() {
                break;
            }
            let mut next = Vec::new();
            for chunk in frontier.chunks(FILTER_CHUNK) {
                let ors: String = chunk.iter().map(|dn| format!("(member={})", ldap_escape(dn))).collect();
                let filter = format!("(|{ors})");
                for e in self
                    .search(l, &base, Scope::Subtree, &filter, vec!["1.1".into()])
                    .await?
                {
                    if seen.insert(e.dn.to_lowercase()) {
                        next.push(e.dn.clone());
                        direct.insert(e.dn);
                    }
                }
            }
            frontier = next;
        }
        Ok(direct)
    }

    fn group_names(&self, dns: BTreeSet<String>) -> Vec<String> {
        names_of_groups(dns, &self.cfg.group_name)
    }

    async fn describe(&self, l: &mut Ldap, entry: &SearchEntry, username: &str) -> Result<DirectoryUser, LdapFailure> {
        let groups = self.group_names(self.group_dns(l, entry, username).await?);
        Ok(DirectoryUser {
            dn: entry.dn.clone(),
            user_id: Self::attr(entry, &self.cfg.attr_user_id).unwrap_or_else(|| username.to_string()),
            email: Self::attr(entry, &self.cfg.attr_email),
            display_name: Self::attr(entry, &self.cfg.attr_display_name),
            groups,
        })
    }

    /// What the gateway would see for `username` (no password, no session): for
    /// `gatehouse ldap test` and for periodic re-checks. `Ok(None)`: no single entry.
    pub async fn lookup(&self, username: &str) -> Result<Option<DirectoryUser>, LdapFailure> {
        let r = self.lookup_entry(username).await;
        self.note(&r);
        r
    }

    /// Records the outcome of an operation that reached (or failed to reach) the directory.
    fn note<T>(&self, r: &Result<T, LdapFailure>) {
        match r {
            Err(LdapFailure::Unavailable(e)) => self.health.error(e.clone()),
            _ => self.health.ok(),
        }
    }

    async fn lookup_entry(&self, username: &str) -> Result<Option<DirectoryUser>, LdapFailure> {
        let username = username.trim().to_string();
        self.with_service(move |me, l| {
            let username = username.clone();
            Box::pin(async move {
                match me.find_user(l, &username).await? {
                    Some(e) => Ok(Some(me.describe(l, &e, &username).await?)),
                    None => Ok(None),
                }
            })
        })
        .await
    }

    /// Checks `username` and `password` against the directory.
    pub async fn authenticate(&self, username: &str, password: &str) -> Result<NewIdentity, LdapFailure> {
        let r = self.authenticate_entry(username, password).await;
        self.note(&r);
        r
    }

    async fn authenticate_entry(&self, username: &str, password: &str) -> Result<NewIdentity, LdapFailure> {
        let username = username.trim();
        // An empty password would make a simple bind "unauthenticated" and succeed.
        if password.is_empty() || username.is_empty() || username.len() > 256 {
            return Err(LdapFailure::Invalid);
        }
        let entry = {
            let u = username.to_string();
            self.with_service(move |me, l| {
                let u = u.clone();
                Box::pin(async move { me.find_user(l, &u).await })
            })
            .await?
        };
        let Some(entry) = entry else {
            return Err(LdapFailure::Invalid);
        };
        // Bind as the user on a connection of its own, so pooled connections stay bound as
        // the service account.
        let mut user_conn = self.connect().await?;
        self.op(&mut user_conn);
        let res = user_conn.simple_bind(&entry.dn, password).await.map_err(unavailable)?;
        let _ = user_conn.unbind().await;
        match res.rc {
            0 => {}
            49 | 53 => {
                tracing::info!(provider = %self.id, dn = %entry.dn, code = res.rc, "directory refused the password");
                return Err(LdapFailure::Invalid);
            }
            rc => return Err(unavailable(format!("user bind failed (code {rc}: {})", res.text))),
        }
        let u = username.to_string();
        let user = self
            .with_service(move |me, l| {
                let (u, entry) = (u.clone(), entry.clone());
                Box::pin(async move { me.describe(l, &entry, &u).await })
            })
            .await?;
        Ok(NewIdentity {
            username: user.user_id,
            email: user.email,
            display_name: user.display_name,
            groups: user.groups,
            admin: false,
            provider: self.id.clone(),
        })
    }
}

impl LdapProvider {
    /// The configured server URL.
    pub fn url(&self) -> &str {
        &self.cfg.url
    }

    /// The service account's DN (its password is never shown).
    pub fn bind_dn(&self) -> &str {
        &self.cfg.bind_dn
    }

    pub fn user_base(&self) -> &str {
        &self.cfg.user_base
    }

    /// Where groups are searched (the configured base or the user base's domain).
    pub fn group_search_base(&self) -> String {
        self.group_base()
    }

    /// Opens a fresh connection and binds as the service account (not from the pool, so a
    /// directory that went away is seen as such); for the Providers page.
    pub async fn probe(&self) -> Result<(), LdapFailure> {
        let mut l = self.connect().await?;
        self.op(&mut l);
        let res = l
            .simple_bind(&self.cfg.bind_dn, self.cfg.bind_password.expose())
            .await
            .map_err(unavailable)?;
        let _ = l.unbind().await;
        if res.rc != 0 {
            return Err(unavailable(format!(
                "service bind refused (code {}): check bind_dn and bind_password",
                res.rc
            )));
        }
        Ok(())
    }

    /// The search filter for suggestions of `kind` matching `q` (RFC 4515-escaped): people by
    /// a prefix of the user-id attribute or a substring of the display name, within the
    /// configured user filter; groups by a substring of their `cn`.
    pub fn suggestion_filter(&self, kind: SuggestKind, q: &str) -> String {
        let q = ldap_escape(q);
        match kind {
            SuggestKind::User => format!(
                "(&{}(|({}={q}*)({}=*{q}*)))",
                self.cfg.user_filter.replace("{username}", "*"),
                self.cfg.attr_user_id,
                self.cfg.attr_display_name,
            ),
            SuggestKind::Group => format!(
                "(&(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup)(objectClass=group))(cn=*{q}*))"
            ),
        }
    }

    /// Up to `limit` names of `kind` matching `q` in the directory, as the gateway would name
    /// them at sign-in (the user-id attribute; a group's `cn` or DN as configured), with a
    /// display name for people. Size- and time-limited; an empty `q` finds nothing.
    pub async fn search_names(&self, kind: SuggestKind, q: &str, limit: usize) -> Result<Vec<Candidate>, LdapFailure> {
        let q = q.trim();
        if q.is_empty() || q.len() > crate::providers::MAX_QUERY {
            return Ok(vec![]);
        }
        let filter = self.suggestion_filter(kind, q);
        let (base, attrs) = match kind {
            SuggestKind::User => (
                self.cfg.user_base.clone(),
                vec![self.cfg.attr_user_id.clone(), self.cfg.attr_display_name.clone()],
            ),
            SuggestKind::Group => (self.group_base(), vec!["cn".to_string()]),
        };
        let entries = self
            .with_service(move |me, l| {
                let (base, filter, attrs) = (base.clone(), filter.clone(), attrs.clone());
                Box::pin(async move { me.limited_search(l, &base, &filter, attrs, limit).await })
            })
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|e| match kind {
                SuggestKind::User => Some(Candidate {
                    name: Self::attr(&e, &self.cfg.attr_user_id)?,
                    detail: Self::attr(&e, &self.cfg.attr_display_name).unwrap_or_default(),
                }),
                SuggestKind::Group => Some(Candidate {
                    name: match self.cfg.group_name {
                        GroupName::Cn => first_rdn_value(&e.dn),
                        GroupName::Dn => e.dn.clone(),
                    },
                    detail: String::new(),
                }),
            })
            .collect())
    }

    /// A search answering at most `limit` entries (a size-limit answer is not an error).
    async fn limited_search(
        &self,
        l: &mut Ldap,
        base: &str,
        filter: &str,
        attrs: Vec<String>,
        limit: usize,
    ) -> Result<Vec<SearchEntry>, LdapFailure> {
        self.op(l);
        let size = i32::try_from(limit).unwrap_or(i32::MAX);
        let search =
            l.with_search_options(SearchOptions::new().sizelimit(size))
                .search(base, Scope::Subtree, filter, attrs);
        let ldap3::SearchResult(raw, res) = tokio::time::timeout(self.cfg.operation_timeout, search)
            .await
            .map_err(|_| unavailable("search timed out"))?
            .map_err(unavailable)?;
        // 4: size limit exceeded (we asked for it); 32: no such object (an empty answer).
        if !matches!(res.rc, 0 | 4 | 32) {
            return Err(unavailable(format!("search failed (code {}: {})", res.rc, res.text)));
        }
        let mut out = Vec::new();
        for r in raw.into_iter().take(limit) {
            match std::panic::catch_unwind(AssertUnwindSafe(|| SearchEntry::construct(r))) {
                Ok(e) => out.push(e),
                Err(_) => return Err(unavailable("malformed entry from the directory")),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdn_values_are_unescaped() {
        assert_eq!(first_rdn_value("cn=finance,ou=groups,dc=example,dc=org"), "finance");
        assert_eq!(
            first_rdn_value("cn=R&D\\, Europe,ou=groups,dc=example,dc=org"),
            "R&D, Europe"
        );
        assert_eq!(first_rdn_value("CN=Domain Users,CN=Users,DC=corp"), "Domain Users");
        assert_eq!(first_rdn_value("cn=a\\2Cb,dc=x"), "a,b");
        assert_eq!(first_rdn_value("cn=multi+uid=x,dc=y"), "multi");
        assert_eq!(first_rdn_value(""), "");
        assert_eq!(first_rdn_value("garbage"), "");
        assert_eq!(first_rdn_value("cn=trailing\\"), "trailing");
        // An escaped character that is not a hex pair is taken as it is.
        assert_eq!(first_rdn_value("cn=a\\+1b,dc=x"), "a+1b");
        assert_eq!(first_rdn_value("cn=a\\=b\\\\c,dc=x"), "a=b\\c");
        assert_eq!(first_rdn_value("cn=x\\2"), "x2", "half a hex pair at the end");
        // Hex pairs are bytes: UTF-8 written as escapes comes out as text.
        assert_eq!(first_rdn_value("cn=caf\\C3\\A9,dc=x"), "caf\u{e9}");
        // Only the first RDN, whatever the type's case; `=` in a value is text.
        assert_eq!(first_rdn_value("UID=eve=admin,dc=x"), "eve=admin");
        assert_eq!(first_rdn_value("cn= padded ,dc=x"), "padded");
    }

    #[test]
    fn group_base_defaults_to_the_domain() {
        assert_eq!(domain_root("ou=people,dc=example,dc=org"), "dc=example,dc=org");
        assert_eq!(domain_root("dc=example,dc=org"), "dc=example,dc=org");
        assert_eq!(domain_root("CN=Users,DC=corp,DC=example"), "DC=corp,DC=example");
        assert_eq!(domain_root("o=acme"), "o=acme");
    }

    #[test]
    fn group_names_by_cn_or_dn_never_empty() {
        let dns: BTreeSet<String> = ["cn=R&D\\, Europe,ou=g,dc=x", "cn=,dc=x", "cn=ops,ou=g,dc=x"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(
            names_of_groups(dns.clone(), &GroupName::Cn),
            ["R&D, Europe", "ops"],
            "no empty name"
        );
        assert_eq!(names_of_groups(dns, &GroupName::Dn).len(), 3);
        assert!(names_of_groups(BTreeSet::from([String::new()]), &GroupName::Dn).is_empty());
        assert_eq!(domain_root(""), "");
        assert_eq!(domain_root("ou=a,ou=b"), "ou=a,ou=b", "no dc=: the base itself");
    }

    #[test]
    fn parents() {
        assert_eq!(parent_dn("ou=people,dc=example,dc=org"), "dc=example,dc=org");
        assert_eq!(parent_dn("cn=a\\,b,ou=x"), "ou=x");
        assert_eq!(parent_dn("dc=org"), "");
        assert_eq!(
            parent_dn("cn=a\\\\,ou=x"),
            "ou=x",
            "an escaped backslash does not escape the comma"
        );
        assert_eq!(parent_dn("cn=a, ou=x "), "ou=x");
        assert_eq!(parent_dn("cn=a\\"), "");
    }

    #[test]
    fn filter_values_are_escaped() {
        assert_eq!(ldap_escape("admin)(uid=*"), "admin\\29\\28uid=\\2a");
        assert_eq!(ldap_escape("o'b(r)i*e\\n"), "o'b\\28r\\29i\\2ae\\5cn");
    }
}
