//! `gatehouse demo` as the README's newcomer runs it: started on free loopback ports, its
//! banner read, ready once `/.gatehouse/healthz` answers. Stopped (SIGTERM) when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::free_port;

/// A running demo.
#[derive(Debug)]
pub struct Demo {
    child: Child,
    pub port: u16,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// What the demo printed up to "Press Ctrl+C to stop."
    pub banner: String,
    /// The demo's folder (config and SQLite database).
    pub dir: tempfile::TempDir,
}

impl Demo {
    /// The demo process's id (the same after it started itself again with its allocator
    /// settings).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `bin demo` with `env` set and `unset` removed from its environment.
    pub async fn start(bin: &Path, env: &[(&str, &str)], unset: &[&str]) -> Demo {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args(["demo", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--dir")
            .arg(dir.path())
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for k in unset {
            cmd.env_remove(k);
        }
        let mut child = cmd.spawn().expect("start gatehouse demo");
        let stdout = child.stdout.take().expect("stdout");
        let banner = tokio::task::spawn_blocking(move || {
            let mut text = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
                if line.contains("Ctrl+C") {
                    break;
                }
            }
            text
        })
        .await
        .expect("banner");
        let base = format!("http://127.0.0.1:{port}");
        let demo = Demo {
            child,
            port,
            base,
            banner,
            dir,
        };
        assert!(
            demo.banner.contains("Ctrl+C"),
            "the demo did not start:\n{}",
            demo.banner
        );
        let client = reqwest::Client::new();
        for _ in 0..100 {
            let ok = client.get(format!("{}/.gatehouse/healthz", demo.base)).send().await;
            if ok.is_ok_and(|r| r.status().is_success()) {
                return demo;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the demo never answered /.gatehouse/healthz");
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
