//! Provider status for the admin UI's Providers page, the directory lookup of its LDAP test
//! form, and name suggestions for grants and owners.
//!
//! - [`Health`]: what a provider saw where it already talks to its peer — the last error at
//!   sign-in, re-check or refresh (with when), OIDC discovery and JWKS, SAML metadata loads
//!   and refreshes with the IdP certificate's expiry. Recording is a short mutex write on
//!   paths that already did network IO, so sign-in is not slowed.
//! - [`Authn::probe_providers`]: every configured provider probed at once (LDAP: a fresh
//!   connection and service bind; OIDC: the discovery document; SAML: the IdP's sign-in
//!   endpoint; local: the store), each within [`PROBE_TIMEOUT`]. Only the admin page calls
//!   it — never the proxy path.
//! - [`merge_suggestions`]: the pure merge of names seen at sign-in with names found in
//!   directories, in the spelling grants use (`UserName`/`GroupName`; LDAP users share the
//!   local namespace), each with where it came from.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gatehouse_admin_ui::admin::{LdapLookup, ProviderStatus, SuggestKind, Suggestion};
use gatehouse_config::ProviderKind;
use gatehouse_policy::{GroupName, UserName};

use crate::authn::ldap::LdapFailure;
use crate::authn::session::now;
use crate::authn::{Authn, PasswordProvider};

/// How long the Providers page waits for each provider's probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a suggestion request waits for each directory.
pub const SEARCH_TIMEOUT: Duration = Duration::from_secs(2);
/// Most names one directory search returns.
pub const SEARCH_LIMIT: usize = 20;
/// Most suggestions returned to the browser.
pub const SUGGEST_LIMIT: usize = 20;
/// Longest query (bytes) the suggest endpoint and the LDAP test form accept.
pub const MAX_QUERY: usize = 256;

/// Facts a provider recorded where it talks to its peer.
#[derive(Debug, Clone, Default)]
pub struct HealthFacts {
    /// When (epoch seconds) and what.
    pub last_error: Option<(i64, String)>,
    /// Last sign-in, re-check or refresh that reached the provider.
    pub last_success: Option<i64>,
    /// OIDC: when the discovery document and JWKS were fetched, and how many keys.
    pub discovered_at: Option<i64>,
    pub jwks_keys: Option<usize>,
    /// SAML: when the IdP metadata in use was loaded, its entity id and the expiry of its
    /// signing certificate(s) (the earliest).
    pub metadata_loaded_at: Option<i64>,
    pub idp_entity_id: Option<String>,
    pub cert_expires_at: Option<i64>,
    /// SAML: the last metadata refresh (URL sources): when, and its error if it failed.
    pub last_refresh: Option<(i64, Option<String>)>,
}

/// A provider's [`HealthFacts`], shared between its sign-in paths and the admin page.
#[derive(Debug, Default)]
pub struct Health(Mutex<HealthFacts>);

impl Health {
    /// Changes the facts (a poisoned lock is recovered: these are diagnostics).
    pub fn update(&self, f: impl FnOnce(&mut HealthFacts)) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g);
    }

    /// Records an error seen now.
    pub fn error(&self, what: impl Into<String>) {
        let what = what.into();
        self.update(|h| h.last_error = Some((now(), what)));
    }

    /// Records that the provider answered now.
    pub fn ok(&self) {
        self.update(|h| h.last_success = Some(now()));
    }

    /// A copy of the facts.
    pub fn facts(&self) -> HealthFacts {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A candidate name from one source, not yet normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    /// Display name or other help for choosing (may be empty).
    pub detail: String,
}

/// Merges candidates from several sources (in order of preference) into at most `limit`
/// suggestions matching `query`: names normalised as grants store them (`UserName::new` or
/// `GroupName::new`), empty ones dropped, one entry per name listing every source that has
/// it, names starting with the query first, then names containing it, each group sorted.
/// An empty query matches everything.
pub fn merge_suggestions(
    kind: SuggestKind,
    query: &str,
    sources: &[(String, Vec<Candidate>)],
    limit: usize,
) -> Vec<Suggestion> {
    let norm = |s: &str| match kind {
        SuggestKind::User => UserName::new(s).as_str().to_string(),
        SuggestKind::Group => GroupName::new(s).as_str().to_string(),
    };
    let q = norm(query);
    let mut by_name: BTreeMap<String, Suggestion> = BTreeMap::new();
    for (source, candidates) in sources {
        for c in candidates {
            let name = norm(&c.name);
            if name.is_empty() || !name.contains(&q) {
                continue;
            }
            let e = by_name.entry(name.clone()).or_insert_with(|| Suggestion {
                name,
                detail: String::new(),
                sources: vec![],
            });
            if e.detail.is_empty() {
                e.detail = c.detail.trim().to_string();
            }
            if !e.sources.contains(source) {
                e.sources.push(source.clone());
            }
        }
    }
    let (mut prefix, mut inner): (Vec<Suggestion>, Vec<Suggestion>) =
        by_name.into_values().partition(|s| s.name.starts_with(&q));
    prefix.append(&mut inner);
    prefix.truncate(limit);
    prefix
}

fn kind_word(k: &ProviderKind) -> &'static str {
    match k {
        ProviderKind::Local => "local",
        ProviderKind::Ldap(_) => "ldap",
        ProviderKind::Oidc(_) => "oidc",
        ProviderKind::Saml(_) => "saml",
    }
}

fn when(t: Option<i64>) -> String {
    match t {
        Some(t) => format!("{} UTC ({} ago)", gatehouse_admin_ui::admin::utc(t), ago(now() - t)),
        None => "never".to_string(),
    }
}

/// A duration in the largest whole unit: `42 s`, `5 min`, `3 h`, `2 d`.
pub fn ago(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=119 => format!("{s} s"),
        120..=7_199 => format!("{} min", s / 60),
        7_200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

async fn within<T>(f: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
    }
}

impl Authn {
    /// Every configured provider (the implicit local one when none is), probed concurrently.
    pub async fn probe_providers(&self) -> Vec<ProviderStatus> {
        let config = self.live.peek().config.clone();
        let mut rows: Vec<(String, String, &'static str)> = config
            .providers
            .iter()
            .map(|p| (p.id.clone(), p.label.clone(), kind_word(&p.kind)))
            .collect();
        if rows.is_empty() {
            rows.push(("local".into(), "Local accounts".into(), "local"));
        }
        let probes = rows.into_iter().map(|(id, label, kind)| async move {
            let started = Instant::now();
            let (reachable, facts, health) = self.probe(&id, kind).await;
            ProviderStatus {
                id,
                label,
                kind: kind.to_string(),
                reachable,
                checked_ms: started.elapsed().as_millis() as u64,
                last_error: health
                    .as_ref()
                    .and_then(|h| h.last_error.clone())
                    .map(|(t, e)| (gatehouse_admin_ui::admin::utc(t), e)),
                facts,
            }
        });
        futures_util::future::join_all(probes).await
    }

    /// Probes one provider: whether it answered (or why not), its facts, its recorded health.
    async fn probe(&self, id: &str, kind: &str) -> (Result<(), String>, Vec<(String, String)>, Option<HealthFacts>) {
        match kind {
            "ldap" => {
                let Some(p) = self.ldap_provider(Some(id)) else {
                    return (Err("not loaded".into()), vec![], None);
                };
                let bind = within(async { p.probe().await.map_err(|e| failure_text(&e)) }).await;
                let h = p.health.facts();
                let mut facts = vec![
                    ("Server".to_string(), p.url().to_string()),
                    (
                        "Service account bind".to_string(),
                        match &bind {
                            Ok(()) => format!("ok as {}", p.bind_dn()),
                            Err(e) => format!("failed: {e}"),
                        },
                    ),
                    ("User search base".to_string(), p.user_base().to_string()),
                    ("Group search base".to_string(), p.group_search_base()),
                ];
                facts.push(("Last directory answer".into(), when(h.last_success)));
                (bind, facts, Some(h))
            }
            "oidc" => {
                let Some(p) = self.oidc.iter().find(|p| p.id == id) else {
                    return (Err("not loaded".into()), vec![], None);
                };
                let reach = within(p.probe()).await;
                let h = p.health.facts();
                let facts = vec![
                    ("Issuer".to_string(), p.issuer().to_string()),
                    ("Discovery fetched".to_string(), when(h.discovered_at)),
                    (
                        "Signing keys (JWKS)".to_string(),
                        match h.jwks_keys {
                            Some(n) => format!(
                                "{n} key{}, fetched {}",
                                if n == 1 { "" } else { "s" },
                                when(h.discovered_at)
                            ),
                            None => "not fetched yet".into(),
                        },
                    ),
                    ("Last sign-in or refresh".to_string(), when(h.last_success)),
                ];
                (reach, facts, Some(h))
            }
            "saml" => {
                let Some(p) = self.saml.iter().find(|p| p.id == id) else {
                    return (Err("not loaded".into()), vec![], None);
                };
                let reach = within(p.probe()).await;
                let h = p.health.facts();
                let t = now();
                let mut facts = vec![
                    (
                        "IdP entity id".to_string(),
                        h.idp_entity_id.clone().unwrap_or_else(|| "-".into()),
                    ),
                    ("Metadata source".to_string(), p.metadata_source()),
                    ("Metadata loaded".to_string(), when(h.metadata_loaded_at)),
                    (
                        "Last refresh".to_string(),
                        match &h.last_refresh {
                            None if p.metadata_url().is_none() => "file: read at start".into(),
                            None => "not yet (first refresh after the interval)".into(),
                            Some((at, None)) => format!("ok, {}", when(Some(*at))),
                            Some((at, Some(e))) => {
                                format!("failed {}: {e} (the last good copy stays in use)", when(Some(*at)))
                            }
                        },
                    ),
                ];
                facts.push((
                    "Signing certificate expires".to_string(),
                    match h.cert_expires_at {
                        Some(x) if x <= t => format!("{} UTC — EXPIRED", gatehouse_admin_ui::admin::utc(x)),
                        Some(x) => format!("{} UTC (in {})", gatehouse_admin_ui::admin::utc(x), ago(x - t)),
                        None => "unknown".into(),
                    },
                ));
                facts.push(("Last sign-in".to_string(), when(h.last_success)));
                (reach, facts, Some(h))
            }
            _ => {
                let reach =
                    within(async { self.store.user_count().await.map(|_| ()).map_err(|e| e.to_string()) }).await;
                let facts = vec![("Accounts".to_string(), "in the store (People page)".to_string())];
                (reach, facts, None)
            }
        }
    }

    /// The LDAP provider `id` (the first one when `None`).
    pub fn ldap_provider(&self, id: Option<&str>) -> Option<&std::sync::Arc<crate::authn::ldap::LdapProvider>> {
        self.providers.iter().find_map(|p| match p {
            PasswordProvider::Ldap(l) if id.is_none_or(|id| l.id == id) => Some(l),
            _ => None,
        })
    }

    /// The LDAP providers' ids and labels.
    pub fn ldap_ids(&self) -> Vec<(String, String)> {
        let config = self.live.peek().config.clone();
        self.providers
            .iter()
            .filter_map(|p| match p {
                PasswordProvider::Ldap(l) => Some(l.id.clone()),
                PasswordProvider::Local(_) => None,
            })
            .map(|id| {
                let label = config
                    .providers
                    .iter()
                    .find(|p| p.id == id)
                    .map(|p| p.label.clone())
                    .unwrap_or_else(|| id.clone());
                (id, label)
            })
            .collect()
    }

    /// The LDAP test form's lookup (what `gatehouse ldap test` prints).
    pub async fn lookup_in_directory(&self, provider: Option<&str>, user: &str) -> LdapLookup {
        let Some(p) = self.ldap_provider(provider) else {
            return LdapLookup::Error("no such LDAP provider".into());
        };
        let started = Instant::now();
        let found = tokio::time::timeout(PROBE_TIMEOUT * 3, p.lookup(user)).await;
        let ms = started.elapsed().as_millis() as u64;
        match found {
            Ok(Ok(Some(u))) => LdapLookup::Found {
                provider: p.id.clone(),
                dn: u.dn,
                user_id: u.user_id,
                email: u.email,
                display_name: u.display_name,
                groups: u.groups,
                ms,
            },
            Ok(Ok(None)) => LdapLookup::NotFound {
                provider: p.id.clone(),
                ms,
            },
            Ok(Err(e)) => LdapLookup::Error(failure_text(&e)),
            Err(_) => LdapLookup::Error(format!("no answer within {} s", (PROBE_TIMEOUT * 3).as_secs())),
        }
    }

    /// Names of `kind` matching `q`: people and groups seen at sign-in (local accounts and
    /// sessions), and each LDAP directory searched concurrently.
    pub async fn find_names(&self, kind: SuggestKind, q: &str) -> Vec<Suggestion> {
        let q = q.trim();
        let seen = self.seen_candidates(kind);
        let directories = self.providers.iter().filter_map(|p| match p {
            PasswordProvider::Ldap(l) if !q.is_empty() => Some(l.clone()),
            _ => None,
        });
        let searches = directories.map(|l| async move {
            let found = tokio::time::timeout(SEARCH_TIMEOUT, l.search_names(kind, q, SEARCH_LIMIT)).await;
            let list = match found {
                Ok(Ok(list)) => list,
                Ok(Err(e)) => {
                    tracing::info!(provider = %l.id, error = ?e, "directory search for suggestions failed");
                    vec![]
                }
                Err(_) => {
                    tracing::info!(provider = %l.id, "directory search for suggestions timed out");
                    vec![]
                }
            };
            (format!("directory {}", l.id), list)
        });
        let (seen, found) = futures_util::future::join(seen, futures_util::future::join_all(searches)).await;
        let mut sources = vec![("seen at sign-in".to_string(), seen)];
        sources.extend(found);
        merge_suggestions(kind, q, &sources, SUGGEST_LIMIT)
    }

    /// People (local accounts, then those with sessions) or their groups, as candidates.
    async fn seen_candidates(&self, kind: SuggestKind) -> Vec<Candidate> {
        use gatehouse_admin_ui::admin::AdminGate;
        let Ok(users) = self.users().await else {
            return vec![];
        };
        match kind {
            SuggestKind::User => users
                .into_iter()
                .map(|u| Candidate {
                    name: u.user,
                    detail: u.display_name,
                })
                .collect(),
            SuggestKind::Group => users
                .into_iter()
                .flat_map(|u| u.groups)
                .map(|g| Candidate {
                    name: g,
                    detail: String::new(),
                })
                .collect(),
        }
    }

    /// Up to `limit` names seen at sign-in, for the pages' `<datalist>`s.
    pub async fn seen_name_list(&self, kind: SuggestKind, limit: usize) -> Vec<String> {
        let seen = self.seen_candidates(kind).await;
        merge_suggestions(kind, "", &[(String::new(), seen)], limit)
            .into_iter()
            .map(|s| s.name)
            .collect()
    }
}

/// An LDAP failure in words for the admin pages (never a password: ldap3 errors and our
/// messages carry none).
fn failure_text(e: &LdapFailure) -> String {
    match e {
        LdapFailure::Invalid => "refused".into(),
        LdapFailure::Unavailable(why) => why.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, detail: &str) -> Candidate {
        Candidate {
            name: name.into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn suggestions_are_normalised_merged_and_ranked() {
        let sources = vec![
            (
                "seen at sign-in".to_string(),
                vec![c(" Alice ", ""), c("malice", "M. Alice"), c("bob", "Bob"), c("", "")],
            ),
            (
                "directory corp".to_string(),
                vec![c("ALICE", "Alice Able"), c("alicia", "Alicia"), c("ＡＬＩＣＥ", "")],
            ),
        ];
        let got = merge_suggestions(SuggestKind::User, "AL", &sources, 10);
        let names: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
        // Prefix matches first (sorted), then inner matches; NFKC + lower case folds the
        // full-width spelling into alice; bob and the empty name are dropped.
        assert_eq!(names, ["alice", "alicia", "malice"]);
        assert_eq!(got[0].sources, ["seen at sign-in", "directory corp"]);
        assert_eq!(got[0].detail, "Alice Able", "first non-empty detail");
        assert_eq!(got[1].sources, ["directory corp"]);
        assert_eq!(merge_suggestions(SuggestKind::User, "al", &sources, 2).len(), 2);
        assert_eq!(merge_suggestions(SuggestKind::User, "", &sources, 10).len(), 4);
        assert!(merge_suggestions(SuggestKind::User, "zed", &sources, 10).is_empty());
    }

    #[test]
    fn group_suggestions_fold_case_like_grants() {
        let sources = vec![
            (
                "seen at sign-in".to_string(),
                vec![c("Finance", ""), c("R&D, Europe", "")],
            ),
            ("directory corp".to_string(), vec![c("finance", ""), c(" FinOps ", "")]),
        ];
        let got = merge_suggestions(SuggestKind::Group, "FIN", &sources, 10);
        let names: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["finance", "finops"]);
        assert_eq!(got[0].sources.len(), 2);
        assert_eq!(
            GroupName::new(&got[1].name).as_str(),
            got[1].name,
            "already in grant form"
        );
        let rd = merge_suggestions(SuggestKind::Group, "r&d", &sources, 10);
        assert_eq!(rd[0].name, "r&d, europe");
    }

    #[test]
    fn durations_in_words() {
        assert_eq!(ago(5), "5 s");
        assert_eq!(ago(600), "10 min");
        assert_eq!(ago(3 * 3600), "3 h");
        assert_eq!(ago(3 * 86_400), "3 d");
        assert_eq!(ago(-3), "0 s");
    }
}
