//! The sign-in, App Portal and error pages in a real browser: Debian's headless Chromium,
//! driven by Playwright (`tests/browser/ui.mjs`) against `gatehouse demo`. Set up with
//! `tests/peers/browser.sh`; screenshots land in `tests/artifacts/screenshots/`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gatehouse_tests::free_port;

const CHROMIUM: &str = "/usr/bin/chromium";
const ADMIN_PASSWORD: &str = "browser-admin-pw-7Qx";
const VIEWER_PASSWORD: &str = "browser-viewer-pw-3Lm";

/// Stops the demo however the test ends.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        for _ in 0..50 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn browser_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).join("tests/browser")
}

/// Fails (never skips) when the browser suite is not set up.
fn require_setup(dir: &Path) {
    let mut missing = vec![];
    if !Path::new(CHROMIUM).is_file() {
        missing.push(format!("{CHROMIUM} (Debian package chromium)"));
    }
    if !dir.join("node_modules/playwright-core").is_dir() {
        missing.push(format!(
            "{} (npm ci)",
            dir.join("node_modules/playwright-core").display()
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node (Node.js)".to_string());
    }
    assert!(
        missing.is_empty(),
        "the headless-browser suite is not set up; missing: {}.\nRun tests/peers/browser.sh first.",
        missing.join(", ")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn login_portal_and_errors_in_headless_chromium() {
    let browser = browser_dir();
    require_setup(&browser);

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{}", free_port()),
            "--dir",
        ])
        .arg(dir.path())
        .env("GATEHOUSE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("GATEHOUSE_VIEWER_PASSWORD", VIEWER_PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let demo = Demo(child);
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
    .unwrap();
    assert!(banner.contains("Ctrl+C"), "the demo did not start:\n{banner}");

    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if client
            .get(format!("{base}/.gatehouse/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the demo never answered /.gatehouse/healthz");

    // Passwords go through the environment, not argv.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("ui.mjs")
            .arg("--base")
            .arg(&base)
            .current_dir(&browser)
            .env("GATEHOUSE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("GATEHOUSE_VIEWER_PASSWORD", VIEWER_PASSWORD)
            .stdin(Stdio::null())
            .output()
    })
    .await
    .unwrap()
    .expect("run node tests/browser/ui.mjs");
    drop(demo);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tests/browser/ui.mjs failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    println!("{stdout}");
}
