//! Real data-app frameworks as upstreams: Dash, Streamlit, Shiny for Python and Jupyter
//! Server, each running a script of `tests/dataapps/` with the Python of the virtualenv that
//! `tests/peers/dataapps.sh` installs, on a free loopback port, under the path prefix the
//! gateway routes to it (no prefix stripping: each framework is told its prefix). Also the
//! bare Python app servers gunicorn and uvicorn with default settings, serving
//! `echo_groups.py` (answers on every path with the identity it was told).
//!
//! Every framework app appends what reached it (path or event, and its headers) to a "seen"
//! log, so a test can tell whether a request got to the app and with which identity headers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// Which framework a [`DataApp`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    /// `dash_app.py`: Dash with `requests_pathname_prefix`/`routes_pathname_prefix`.
    Dash,
    /// `streamlit_app.py`: `streamlit run --server.baseUrlPath`.
    Streamlit,
    /// `shiny_app.py`: a Shiny app mounted under the prefix (ASGI `root_path`).
    Shiny,
    /// `jupyter server --ServerApp.base_url` with `gatehouse_identity.GatehouseIdentityProvider`.
    Jupyter,
    /// `gunicorn echo_groups:wsgi`, default settings (8190-byte header lines).
    Gunicorn,
    /// `uvicorn echo_groups:asgi`, default settings.
    Uvicorn,
}

/// The virtualenv's python: `GATEHOUSE_DATAAPPS_PYTHON`, else
/// `${GATEHOUSE_DATAAPPS_VENV:-$HOME/.cache/gatehouse/venv-dataapps}/bin/python`.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("GATEHOUSE_DATAAPPS_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = std::env::var("GATEHOUSE_DATAAPPS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/gatehouse/venv-dataapps")
        });
    venv.join("bin/python")
}

/// `tests/dataapps/`.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dataapps")
}

/// A running app. Its process group (the server and, for Jupyter, its kernels) is stopped
/// when dropped.
#[derive(Debug)]
pub struct DataApp {
    pub addr: SocketAddr,
    /// The path prefix it serves, like `/apps/dash/`.
    pub prefix: String,
    child: Child,
    seen_log: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl DataApp {
    /// Starts `framework` under `prefix` (`/apps/<slug>/`) and waits (60 s at most) until it
    /// answers. Fails, never skips, when the virtualenv is missing.
    pub async fn start(framework: Framework, prefix: &str) -> DataApp {
        Self::start_with(framework, prefix, &[]).await
    }

    /// [`DataApp::start`] with environment variables for the app (`DASH_JWKS_URL`, …).
    pub async fn start_with(framework: Framework, prefix: &str, env: &[(&str, &str)]) -> DataApp {
        let py = python();
        assert!(
            py.is_file(),
            "the data-app suite is not set up: {} is missing.\nRun tests/peers/dataapps.sh first.",
            py.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let scripts = scripts_dir();
        let seen_log = dir.path().join("seen.jsonl");
        let log = dir.path().join("app.log");
        let mut cmd = Command::new(&py);
        cmd.current_dir(&scripts)
            .env("GATEHOUSE_SEEN_LOG", &seen_log)
            .env("PYTHONPATH", &scripts)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .envs(env.iter().copied());
        let p = port.to_string();
        match framework {
            Framework::Dash => {
                cmd.args(["dash_app.py", &p, prefix]);
            }
            Framework::Shiny => {
                cmd.args(["shiny_app.py", &p, prefix]);
            }
            Framework::Streamlit => {
                cmd.args(["-m", "streamlit", "run", "streamlit_app.py", "--server.port", &p])
                    .args(["--server.address", "127.0.0.1"])
                    .args(["--server.baseUrlPath", prefix.trim_matches('/')])
                    .args(["--server.headless", "true", "--browser.gatherUsageStats", "false"])
                    .args(["--server.fileWatcherType", "none"])
                    .args([
                        "--server.trustedUserHeaders",
                        r#"{"X-Forwarded-User": "name", "X-Forwarded-Email": "email"}"#,
                    ])
                    .env("HOME", dir.path());
            }
            Framework::Jupyter => {
                let root = dir.path().join("notebooks");
                std::fs::create_dir_all(&root).expect("notebook dir");
                cmd.args(["-m", "jupyter_server", "--allow-root", "--no-browser"])
                    .args(["--ip", "127.0.0.1", "--port", &p, "--ServerApp.port_retries=0"])
                    .arg(format!("--ServerApp.base_url={prefix}"))
                    .arg("--ServerApp.identity_provider_class=gatehouse_identity.GatehouseIdentityProvider")
                    .arg(format!("--ServerApp.root_dir={}", root.display()))
                    .env("JUPYTER_RUNTIME_DIR", dir.path().join("runtime"))
                    .env("JUPYTER_CONFIG_DIR", dir.path().join("config"));
            }
            Framework::Gunicorn => {
                cmd.args(["-m", "gunicorn", "-b", &format!("127.0.0.1:{p}"), "echo_groups:wsgi"]);
            }
            Framework::Uvicorn => {
                cmd.args(["-m", "uvicorn", "--host", "127.0.0.1", "--port", &p, "echo_groups:asgi"]);
            }
        }
        let out = std::fs::File::create(&log).expect("app log");
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", py.display()));
        let mut app = DataApp {
            addr,
            prefix: prefix.to_string(),
            child,
            seen_log,
            log,
            _dir: dir,
        };
        app.wait_ready(framework).await;
        app
    }

    async fn wait_ready(&mut self, framework: Framework) {
        // A path that answers 200 once the app is serving (Jupyter's needs a user: the
        // header the gateway would set, sent directly).
        let (path, user) = match framework {
            Framework::Dash | Framework::Shiny | Framework::Gunicorn | Framework::Uvicorn => ("", false),
            Framework::Streamlit => ("_stcore/health", false),
            Framework::Jupyter => ("api/me", true),
        };
        let url = format!("http://{}{}{path}", self.addr, self.prefix);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{framework:?} app exited ({status}) before it was ready; log:\n{}",
                    self.log()
                );
            }
            let mut req = client.get(&url);
            if user {
                req = req.header("X-Forwarded-User", "readiness-probe");
            }
            if let Ok(r) = req.send().await {
                if r.status() == 200 {
                    // The probe is not a visitor: start the seen log afresh.
                    let _ = std::fs::remove_file(&self.seen_log);
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{framework:?} app did not answer within 60 s; log:\n{}", self.log());
    }

    /// Everything that reached the app, one JSON object per request, script run or session:
    /// `{"where": …, "headers": {lower-case name: value}, …}`.
    pub fn seen(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.seen_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The app's own output.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for DataApp {
    fn drop(&mut self) {
        // The whole process group: Jupyter's kernels are children of the server.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", "--", &group])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}
