//! Fixtures for Gatehouse's benchmarks: configurations with many apps and identities with
//! many groups, built the way the gateway builds them at start. The criterion micro-benches
//! live in `benches/hot_path.rs`; the wrk load harness (Gatehouse vs nginx in one run) is
//! `load/run.sh`. Results and how to reproduce them: `BENCHMARKS.md` at the repository root.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::path::Path;

use gatehouse_config::{Config, Problems, ProcessEnv};
use gatehouse_policy::{GroupName, Identity, UserName};

/// Configuration text with `apps` path-routed apps `app-000`, `app-001`, … at
/// `/apps/<slug>/`, each restricted to its own group `team-<n>` plus `all-staff`.
pub fn apps_toml(apps: usize) -> String {
    let mut text = String::from("[server]\nlisten = \"127.0.0.1:18080\"\nthreads = 2\n");
    for i in 0..apps {
        // Writing to a String cannot fail.
        let _ = write!(
            text,
            "\n[[apps]]\nslug = \"app-{i:03}\"\nupstreams = [\"127.0.0.1:{port}\"]\n\
             access = \"restricted\"\nallow_groups = [\"team-{i}\", \"all-staff\"]\n",
            port = 20000 + i % 1000,
        );
    }
    text
}

/// Configuration text with `apps` restricted apps `app-0000`, … whose allow-lists hold
/// `grants_per_app` entries between them (half groups `grant-<app>-<k>`, half users
/// `user-<app>-<k>`): 1,000 apps × 10 is the "10,000 grants" of the performance targets.
pub fn granted_apps_toml(apps: usize, grants_per_app: usize) -> String {
    let mut text = String::from("[server]\nlisten = \"127.0.0.1:18080\"\nthreads = 2\n");
    for i in 0..apps {
        let groups: Vec<String> = (0..grants_per_app.div_ceil(2))
            .map(|k| format!("\"grant-{i}-{k}\""))
            .collect();
        let users: Vec<String> = (0..grants_per_app / 2).map(|k| format!("\"user-{i}-{k}\"")).collect();
        let _ = write!(
            text,
            "\n[[apps]]\nslug = \"app-{i:04}\"\nupstreams = [\"127.0.0.1:{port}\"]\n\
             access = \"restricted\"\nallow_groups = [{groups}]\nallow_users = [{users}]\n",
            port = 20000 + i % 1000,
            groups = groups.join(", "),
            users = users.join(", "),
        );
    }
    text
}

/// The validated configuration of [`apps_toml`]`(apps)`.
pub fn apps_config(apps: usize) -> Result<Config, Problems> {
    Config::from_toml(&apps_toml(apps), Path::new("."), &ProcessEnv)
}

/// A non-admin identity in `groups` groups named `dir-group-0000`, … (as a large directory
/// would return them), plus the `extra` groups given.
pub fn identity_in_groups(user: &str, groups: usize, extra: &[&str]) -> Identity {
    Identity {
        user: UserName::new(user),
        groups: (0..groups)
            .map(|i| GroupName::new(&format!("dir-group-{i:04}")))
            .chain(extra.iter().map(|g| GroupName::new(g)))
            .collect(),
        admin: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_are_valid() {
        let c = apps_config(500).expect("valid config");
        assert_eq!(c.apps.len(), 500);
        assert_eq!(c.apps[499].path, "/apps/app-499/");
        let who = identity_in_groups("alice", 2000, &["team-7"]);
        assert_eq!(who.groups.len(), 2001);
        let c = Config::from_toml(&granted_apps_toml(3, 10), Path::new("."), &ProcessEnv).expect("valid config");
        assert_eq!(c.apps[2].allow_groups.len() + c.apps[2].allow_users.len(), 10);
    }
}
