//! The file's shape, as serde reads it. Every table refuses unknown keys. Values whose syntax
//! needs checking (addresses, durations, URLs, secrets) stay strings here and are checked in
//! `validate`, so that one run reports every problem with its path.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub metrics_listen: Option<String>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    pub tls: Option<Tls>,
    pub http_redirect_listen: Option<String>,
    pub app_domain: Option<String>,
    pub threads: Option<i64>,
    pub shutdown_grace_period: Option<String>,
    pub upgrade_socket: Option<String>,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub health_check: HealthCheck,
    #[serde(default)]
    pub limits: Limits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub header_timeout: Option<String>,
    pub signin_starts_per_client: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    pub connect: Option<String>,
    pub read: Option<String>,
    pub write: Option<String>,
    pub idle: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub unhealthy_after: Option<i64>,
    pub healthy_after: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    pub url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    pub idle_timeout: Option<String>,
    pub absolute_timeout: Option<String>,
    pub cookie_name: Option<String>,
    pub store_outage_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branding {
    pub name: Option<String>,
    pub accent: Option<String>,
    pub logo_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    pub enabled: Option<bool>,
    pub flush_seconds: Option<i64>,
    pub max_keys: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Provider {
    Local {
        id: String,
        label: Option<String>,
    },
    Ldap {
        id: String,
        label: Option<String>,
        url: String,
        #[serde(default)]
        starttls: bool,
        ca_file: Option<String>,
        #[serde(default)]
        insecure_skip_verify: bool,
        directory: Option<String>,
        bind_dn: String,
        bind_password: String,
        user_base: String,
        user_filter: Option<String>,
        #[serde(default)]
        attributes: LdapAttributes,
        #[serde(default)]
        groups: LdapGroups,
        connect_timeout: Option<String>,
        operation_timeout: Option<String>,
        recheck_interval: Option<String>,
    },
    Oidc {
        id: String,
        label: Option<String>,
        issuer: String,
        client_id: String,
        client_secret: Option<String>,
        #[serde(default)]
        scopes: Vec<String>,
        user_claim: Option<String>,
        groups_claim: Option<String>,
        #[serde(default)]
        allowed_email_domains: Vec<String>,
        require_verified_email: Option<bool>,
        #[serde(default)]
        required_groups: Vec<String>,
        refresh_interval: Option<String>,
        user_namespace: Option<String>,
    },
    Saml {
        id: String,
        label: Option<String>,
        idp_metadata: String,
        entity_id: Option<String>,
        sp_cert: Option<String>,
        sp_key: Option<String>,
        user_attribute: Option<String>,
        email_attribute: Option<String>,
        name_attribute: Option<String>,
        groups_attribute: Option<String>,
        #[serde(default)]
        group_map: BTreeMap<String, String>,
        #[serde(default)]
        allow_idp_initiated: bool,
        #[serde(default)]
        allowed_signature_algorithms: Vec<String>,
        metadata_refresh: Option<String>,
        user_namespace: Option<String>,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapAttributes {
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub display_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapGroups {
    pub strategy: Option<String>,
    pub base: Option<String>,
    pub filter: Option<String>,
    #[serde(default)]
    pub nested: bool,
    pub max_depth: Option<i64>,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    pub slug: String,
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub upstreams: Vec<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    #[serde(default)]
    pub strip_prefix: bool,
    pub access: Option<String>,
    #[serde(default)]
    pub allow_groups: Vec<String>,
    #[serde(default)]
    pub allow_users: Vec<String>,
    #[serde(default)]
    pub headers: AppHeaders,
    pub health_check: Option<HealthCheck>,
    pub timeouts: Option<Timeouts>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub thumbnail: Option<String>,
    pub portal_order: Option<i64>,
    pub owner: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppHeaders {
    #[serde(default)]
    pub remote_headers: bool,
    #[serde(default)]
    pub plotly_user_data: bool,
    #[serde(default)]
    pub dash_token: bool,
    pub groups_sent: Option<String>,
}

#[cfg(test)]
mod tests {
    //! The configuration reference (docs/configuration.md) must name every key the file
    //! accepts: the field names are read from serde's own list for each raw struct.

    use std::cell::RefCell;

    use serde::de::{self, Deserializer, Visitor};

    use super::*;

    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Stop
        }
    }

    thread_local!(static FIELDS: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) });

    struct Grab;
    impl<'de> Deserializer<'de> for Grab {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            FIELDS.with(|f| f.borrow_mut().extend_from_slice(fields));
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    fn fields<T: for<'de> Deserialize<'de>>() -> Vec<&'static str> {
        FIELDS.with(|f| f.borrow_mut().clear());
        let _ = T::deserialize(Grab);
        FIELDS.with(|f| f.borrow().clone())
    }

    /// The keys of every `[[providers]]` kind. The enum is internally tagged (serde reads it
    /// through `deserialize_any`), so its field lists come from `deny_unknown_fields`' own
    /// refusal, which names every expected field.
    fn provider_fields() -> Vec<String> {
        let mut out = vec!["kind".to_string()];
        for kind in ["local", "ldap", "oidc", "saml"] {
            let err = toml::from_str::<Provider>(&format!("kind = \"{kind}\"\nzz_not_a_key = 1\n"))
                .expect_err("an unknown key is refused")
                .to_string();
            let expected = err
                .split_once(", expected ")
                .unwrap_or_else(|| panic!("{kind}: {err}"))
                .1;
            out.extend(expected.split('`').skip(1).step_by(2).map(str::to_string));
        }
        out
    }

    #[test]
    fn reference_documents_every_key() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md"))
            .expect("docs/configuration.md");
        let mut all = vec![];
        all.extend(fields::<Server>());
        all.extend(fields::<Tls>());
        all.extend(fields::<Timeouts>());
        all.extend(fields::<HealthCheck>());
        all.extend(fields::<Limits>());
        all.extend(fields::<Store>());
        all.extend(fields::<Session>());
        all.extend(fields::<Branding>());
        all.extend(fields::<App>());
        all.extend(fields::<AppHeaders>());
        all.extend(fields::<LdapAttributes>());
        all.extend(fields::<LdapGroups>());
        all.extend(fields::<Usage>());
        let providers = provider_fields();
        assert!(
            ["bind_dn", "client_id", "idp_metadata", "allow_idp_initiated"]
                .iter()
                .all(|f| providers.contains(&f.to_string())),
            "provider field discovery broke: {providers:?}"
        );
        let providers: Vec<&str> = providers.iter().map(String::as_str).collect();
        all.extend(providers);
        assert!(all.len() > 40, "field discovery broke: {all:?}");
        let missing: Vec<_> = all.iter().filter(|f| !doc.contains(&format!("`{f}`"))).collect();
        assert!(missing.is_empty(), "docs/configuration.md lacks {missing:?}");
    }
}
