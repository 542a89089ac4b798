//! `gatehouse demo`: a gateway on loopback with the sample app behind it, configured by a
//! file the demo writes so a newcomer can read and edit it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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

[[apps]]
slug = "whoami"
name = "Who am I"
description = "Shows exactly what an app behind Gatehouse receives"
upstreams = ["127.0.0.1:{whoami_port}"]
access = "public"
"#
    )
}

/// Prepares the demo folder: starts the sample app on a free loopback port (in a thread of
/// its own) and writes `gatehouse.toml`. Returns the config file's path.
pub fn prepare(
    listen: SocketAddr,
    metrics: Option<SocketAddr>,
    dir: &Path,
) -> Result<PathBuf, GatewayError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| GatewayError::Io(format!("{}: {e}", dir.display())))?;
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| GatewayError::Io(format!("sample app: {e}")))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| GatewayError::Io(e.to_string()))?;
    let port = std_listener
        .local_addr()
        .map_err(|e| GatewayError::Io(e.to_string()))?
        .port();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
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
    let metrics = metrics.unwrap_or_else(|| {
        SocketAddr::new(listen.ip(), listen.port().checked_add(1).unwrap_or(9090))
    });
    let path = dir.join("gatehouse.toml");
    std::fs::write(&path, demo_config(listen, metrics, port))
        .map_err(|e| GatewayError::Io(format!("{}: {e}", path.display())))?;
    Ok(path)
}

/// What the demo prints once it is ready.
pub fn banner(public_url: &str, metrics: Option<SocketAddr>, config: &Path) -> String {
    let metrics = metrics
        .map(|m| format!("  Metrics:        http://{m}/metrics\n"))
        .unwrap_or_default();
    format!(
        "\nGatehouse demo is running.\n\n  App Portal:     {public_url}/\n  Sample app:     {public_url}/apps/whoami/\n  Health:         {public_url}/.gatehouse/healthz\n{metrics}  Configuration:  {}\n\nPress Ctrl+C to stop.\n",
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
        let c = gatehouse_config::Config::from_toml(
            &text,
            Path::new("."),
            &gatehouse_config::ProcessEnv,
        )
        .unwrap();
        assert_eq!(c.apps[0].upstreams[0].port, 4567);
        assert_eq!(c.apps[0].path, "/apps/whoami/");
    }
}
