//! `gatehouse demo`: a gateway on loopback with the sample app behind it, configured by a
//! file the demo writes so a newcomer can read and edit it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use gatehouse_policy::{GroupName, UserName};
use gatehouse_store::Actor;

use crate::GatewayError;

/// The demo's configuration text, with the sample app on `whoami_port`.
pub fn demo_config(listen: SocketAddr, metrics: SocketAddr, whoami_port: u16) -> String {
    format!(
        r#"# Written by `gatehouse demo`. Start a gateway with this file: gatehouse serve --config gatehouse.toml
[server]
listen = "{listen}"
metrics_listen = "{metrics}"
shutdown_grace_period = "5s"

[store]
url = "sqlite://gatehouse.db"

[branding]
name = "Gatehouse demo"

[[providers]]
id = "local"
kind = "local"
label = "Gatehouse account"

# Three apps served by the same sample app, with different access rules.
[[apps]]
slug = "whoami"
name = "Who am I"
description = "Shows exactly what an app behind Gatehouse receives"
upstreams = ["127.0.0.1:{whoami_port}"]
access = "authenticated"
headers = {{ remote_headers = true, plotly_user_data = true }}
tags = ["tools", "demo"]
owner = "Platform team"
portal_order = 1

[[apps]]
slug = "public"
name = "Public page"
description = "Open to everyone, signed in or not"
upstreams = ["127.0.0.1:{whoami_port}"]
access = "public"
tags = ["demo"]
thumbnail = "/apps/public/card.svg"
owner = "Platform team"
portal_order = 2

[[apps]]
slug = "admins-only"
name = "Admins only"
description = "Restricted: only administrators may open it"
upstreams = ["127.0.0.1:{whoami_port}"]
access = "restricted"
tags = ["admin"]
portal_order = 3
"#
    )
}

/// Prepares the demo folder: starts the sample app on a free loopback port (in a thread of
/// its own) and writes `gatehouse.toml`. Returns the config file's path.
pub fn prepare(listen: SocketAddr, metrics: Option<SocketAddr>, dir: &Path) -> Result<PathBuf, GatewayError> {
    std::fs::create_dir_all(dir).map_err(|e| GatewayError::Io(format!("{}: {e}", dir.display())))?;
    let std_listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| GatewayError::Io(format!("sample app: {e}")))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| GatewayError::Io(e.to_string()))?;
    let port = std_listener
        .local_addr()
        .map_err(|e| GatewayError::Io(e.to_string()))?
        .port();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return tracing::error!(error = %e, "sample app runtime"),
        };
        rt.block_on(async move {
            match tokio::net::TcpListener::from_std(std_listener) {
                Ok(l) => {
                    if let Err(e) = crate::whoami::serve(l).await {
                        tracing::error!(error = %e, "sample app stopped");
                    }
                }
                Err(e) => tracing::error!(error = %e, "sample app listener"),
            }
        });
    });
    let metrics = metrics.unwrap_or_else(|| SocketAddr::new(listen.ip(), listen.port().checked_add(1).unwrap_or(9090)));
    let path = dir.join("gatehouse.toml");
    std::fs::write(&path, demo_config(listen, metrics, port))
        .map_err(|e| GatewayError::Io(format!("{}: {e}", path.display())))?;
    Ok(path)
}

/// A demo account: its name and, when it was just created or reset, its password.
#[derive(Debug)]
pub struct Account {
    pub username: &'static str,
    pub password: Option<String>,
}

/// A random password of 16 letters and digits.
pub fn generate_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..16).map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char).collect()
}

/// Creates the demo's `admin` and `viewer` accounts if missing. Passwords come from
/// `GATEHOUSE_ADMIN_PASSWORD` / `GATEHOUSE_VIEWER_PASSWORD` (also applied to existing
/// accounts), else are generated for new accounts and returned to be printed once.
pub async fn ensure_accounts(
    store: &gatehouse_store::Store,
    admin_pw: Option<String>,
    viewer_pw: Option<String>,
) -> Result<Vec<Account>, GatewayError> {
    let mut out = vec![];
    let accounts = [
        ("admin", true, admin_pw, "admins", "Demo Admin"),
        ("viewer", false, viewer_pw, "staff", "Demo Viewer"),
    ];
    for (username, admin, from_env, group, display) in accounts {
        let name = UserName::new(username);
        let exists = store.user(&name).await?.is_some();
        let password = match (&from_env, exists) {
            (Some(p), _) => Some(p.clone()),
            (None, false) => Some(generate_password()),
            (None, true) => None,
        };
        if let Some(pw) = &password {
            let hash = crate::authn::local::hash_password(pw)?;
            if exists {
                store.set_password_hash(&name, &hash, &Actor::cli()).await?;
            } else {
                store
                    .create_user(
                        &gatehouse_store::NewUser {
                            username: name,
                            password_hash: Some(hash),
                            email: Some(format!("{username}@demo.gatehouse.test")),
                            display_name: Some(display.to_string()),
                            admin,
                            groups: vec![GroupName::new(group)],
                        },
                        &Actor::cli(),
                    )
                    .await?;
            }
        }
        let shown = if from_env.is_some() { None } else { password };
        out.push(Account {
            username,
            password: shown,
        });
    }
    Ok(out)
}

/// What the demo prints once it is ready.
pub fn banner(public_url: &str, metrics: Option<SocketAddr>, config: &Path, accounts: &[Account]) -> String {
    let metrics = metrics
        .map(|m| format!("  Metrics:        http://{m}/metrics\n"))
        .unwrap_or_default();
    let mut acc = String::new();
    for a in accounts {
        let pw = match &a.password {
            Some(p) => format!("password {p}   (shown once)"),
            None => "password unchanged (set GATEHOUSE_ADMIN_PASSWORD / GATEHOUSE_VIEWER_PASSWORD, \
                     or run gatehouse user set-password)"
                .to_string(),
        };
        acc.push_str(&format!("  {:<15} {pw}\n", format!("{}:", a.username)));
    }
    format!(
        "\nGatehouse demo is running.\n\n\
         \x20 App Portal:     {public_url}/\n\
         \x20 Sign in:        {public_url}/.gatehouse/login\n\
         \x20 Apps:           {public_url}/apps/whoami/ (signed in), {public_url}/apps/public/ (everyone), \
         {public_url}/apps/admins-only/ (admins)\n\
         \x20 Health:         {public_url}/.gatehouse/healthz\n\
         {metrics}\
         \x20 Configuration:  {}\n\n\
         Accounts:\n{acc}\nPress Ctrl+C to stop.\n",
        config.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_config_is_valid() {
        let text = demo_config(
            "127.0.0.1:8000".parse().unwrap(),
            "127.0.0.1:8001".parse().unwrap(),
            4567,
        );
        let c = gatehouse_config::Config::from_toml(&text, Path::new("."), &gatehouse_config::ProcessEnv).unwrap();
        assert_eq!(c.apps[0].upstreams[0].port, 4567);
        assert_eq!(c.apps[0].path, "/apps/whoami/");
        assert_eq!(c.apps.len(), 3);
    }
}
