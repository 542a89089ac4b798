//! `gatehouse check-config`: every example passes; a broken config lists all its problems.

use std::path::Path;
use std::process::Command;

fn examples_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples")
}

/// `export NAME=value` lines of config/examples/check-env.sh, the dummy secrets the
/// examples reference.
fn example_env() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(examples_dir().join("check-env.sh")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches(|c| c == '"' || c == '\'').to_string()))
        .collect()
}

#[test]
fn every_example_config_passes_check_config() {
    let mut files: Vec<_> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    for want in ["demo", "single-team", "ldap", "oidc", "saml", "replicas-postgres"] {
        assert!(
            files.iter().any(|f| f.file_stem().is_some_and(|s| s == want)),
            "missing example {want}.toml"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("check-config")
        .args(&files)
        .envs(example_env())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(stdout.matches(": ok (").count(), files.len(), "{stdout}");
}

#[test]
fn broken_config_lists_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("broken.toml");
    std::fs::write(
        &f,
        r#"
[server]
listen = "0.0.0.0:80a"
trusted_proxies = ["10.0.0.0/33"]
[session]
idle_timeout = "forever"
[[apps]]
slug = "ok"
upstreams = ["127.0.0.1:1"]
[[apps]]
slug = "sales"
upstreams = ["localhost:80a"]
access = "everyone"
colour = "blue"
[[apps]]
slug = "ops"
path = "/.gatehouse/ops/"
upstreams = ["10.0.0.1:80"]
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("check-config")
        .arg(&f)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for want in [
        "server.listen: \"0.0.0.0:80a\" is not an ip:port address",
        "server.trusted_proxies[0]",
        "session.idle_timeout: \"forever\" is not a duration",
        "apps[1].colour",
        "apps[2].path: \"/.gatehouse/ops/\" is reserved",
        "hint:",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    // apps[1] failed to parse (unknown key), so its other fields are not judged; the
    // summary counts every problem found.
    assert!(stdout.contains("5 problems"), "{stdout}");

    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("server.listen"),
        "serve refuses a broken config"
    );
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check-config", "/nonexistent/gatehouse.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cannot read /nonexistent/gatehouse.toml"));
}
