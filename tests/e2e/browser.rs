//! The sign-in, App Portal and error pages in a real browser: Debian's headless Chromium,
//! driven by Playwright (`tests/browser/ui.mjs`) against `gatehouse demo`. Set up with
//! `tests/peers/browser.sh`; screenshots land in `tests/artifacts/screenshots/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CHROMIUM: &str = "/usr/bin/chromium";
const ADMIN_PASSWORD: &str = "browser-admin-pw-7Qx";
const VIEWER_PASSWORD: &str = "browser-viewer-pw-3Lm";

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

    let demo = gatehouse_tests::demo::Demo::start(
        Path::new(env!("CARGO_BIN_EXE_gatehouse")),
        &[
            ("GATEHOUSE_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("GATEHOUSE_VIEWER_PASSWORD", VIEWER_PASSWORD),
        ],
        &[],
    )
    .await;
    let base = demo.base.clone();

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
