//! Environment overrides (`GATEHOUSE_SERVER__LISTEN=…`) and secret references
//! (`env:NAME`, `file:/path`).

use std::path::Path;

use crate::{Environment, Problem, Secret};

/// Prefix of override variables; `__` separates the levels of the path.
pub const OVERRIDE_PREFIX: &str = "GATEHOUSE_";
const SECTIONS: &[&str] = &["server", "store", "session", "branding"];

/// Applies `GATEHOUSE_<SECTION>__<KEY>[__<KEY>]` variables to the parsed file. Variables
/// without `__` (such as `GATEHOUSE_ADMIN_PASSWORD`) are not overrides and are ignored.
/// A value replaces one of the same type: an integer setting takes an integer, a boolean
/// `true`/`false`, anything else a string.
pub fn apply_overrides(table: &mut toml::Table, env: &dyn Environment, problems: &mut Vec<Problem>) {
    for (name, value) in env.vars_with_prefix(OVERRIDE_PREFIX) {
        let rest = &name[OVERRIDE_PREFIX.len()..];
        if !rest.contains("__") {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if !SECTIONS.contains(&path[0].as_str()) || path.iter().any(String::is_empty) {
            problems.push(Problem {
                path: name.clone(),
                message: format!("is not a setting that can be overridden ({})", path.join(".")),
                hint: Some(format!(
                    "overrides look like GATEHOUSE_SERVER__LISTEN; sections: {}",
                    SECTIONS.join(", ")
                )),
            });
            continue;
        }
        if let Err(message) = set_path(table, &path, &value) {
            problems.push(Problem {
                path: name.clone(),
                message,
                hint: None,
            });
        }
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: &str) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty path")?;
    let mut cur = table;
    for key in parents {
        let entry = cur
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| format!("{key} is not a table in the file, cannot override inside it"))?;
    }
    let new = match cur.get(last) {
        Some(toml::Value::Integer(_)) => {
            toml::Value::Integer(value.parse().map_err(|_| format!("{value:?} is not an integer"))?)
        }
        Some(toml::Value::Boolean(_)) => {
            toml::Value::Boolean(value.parse().map_err(|_| format!("{value:?} is not true or false"))?)
        }
        Some(toml::Value::String(_)) => toml::Value::String(value.to_string()),
        Some(_) => return Err("only scalar settings can be overridden".to_string()),
        None => {
            if let Ok(i) = value.parse::<i64>() {
                toml::Value::Integer(i)
            } else if let Ok(b) = value.parse::<bool>() {
                toml::Value::Boolean(b)
            } else {
                toml::Value::String(value.to_string())
            }
        }
    };
    cur.insert(last.clone(), new);
    Ok(())
}

/// Largest `file:` secret read: keys and passwords are small, and a path such as
/// `/dev/zero` or a named pipe must not make the check read for ever.
pub const MAX_SECRET_FILE: u64 = 1024 * 1024;

/// The text of a secret file, at most [`MAX_SECRET_FILE`] bytes.
fn read_secret_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_SECRET_FILE + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SECRET_FILE {
        return Err(std::io::Error::other(format!(
            "larger than {} KiB",
            MAX_SECRET_FILE / 1024
        )));
    }
    Ok(text)
}

/// Resolves a secret written as `env:NAME`, `file:/path` (one trailing newline removed) or
/// a literal. On failure pushes a problem at `at` and returns `None`.
pub fn resolve_secret(
    value: &str,
    at: &str,
    base_dir: &Path,
    env: &dyn Environment,
    problems: &mut Vec<Problem>,
) -> Option<Secret> {
    if let Some(name) = value.strip_prefix("env:") {
        match env.var(name) {
            Some(v) if !v.is_empty() => Some(Secret::new(v)),
            _ => {
                problems.push(Problem {
                    path: at.to_string(),
                    message: format!("environment variable {name} is not set"),
                    hint: Some(format!("export {name}=… before starting, or use file:/path")),
                });
                None
            }
        }
    } else if let Some(file) = value.strip_prefix("file:") {
        let path = base_dir.join(file);
        match read_secret_file(&path) {
            Ok(text) => {
                let text = text.strip_suffix('\n').unwrap_or(&text);
                let text = text.strip_suffix('\r').unwrap_or(text);
                Some(Secret::new(text))
            }
            Err(e) => {
                problems.push(Problem {
                    path: at.to_string(),
                    message: format!("cannot read secret file {}: {e}", path.display()),
                    hint: None,
                });
                None
            }
        }
    } else {
        Some(Secret::new(value))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn overrides_keep_the_type_of_the_value_they_replace() {
        let mut t: toml::Table = toml::from_str("[server]\nthreads = 2\nlisten = \"1.2.3.4:5\"").unwrap();
        let mut problems = vec![];
        let e = env(&[
            ("GATEHOUSE_SERVER__THREADS", "8"),
            ("GATEHOUSE_SERVER__LISTEN", "127.0.0.1:9"),
            ("GATEHOUSE_SESSION__IDLE_TIMEOUT", "1h"),
            ("GATEHOUSE_ADMIN_PASSWORD", "not an override"),
        ]);
        apply_overrides(&mut t, &e, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(t["server"]["threads"].as_integer(), Some(8));
        assert_eq!(t["server"]["listen"].as_str(), Some("127.0.0.1:9"));
        assert_eq!(t["session"]["idle_timeout"].as_str(), Some("1h"));
    }

    #[test]
    fn bad_overrides_are_reported_by_variable_name() {
        let mut t: toml::Table = toml::from_str("[server]\nthreads = 2").unwrap();
        let mut problems = vec![];
        let e = env(&[("GATEHOUSE_SERVER__THREADS", "many"), ("GATEHOUSE_APPS__0__SLUG", "x")]);
        apply_overrides(&mut t, &e, &mut problems);
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["GATEHOUSE_APPS__0__SLUG", "GATEHOUSE_SERVER__THREADS"]);
    }

    #[test]
    fn secrets_resolve_from_env_file_and_literal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let e = env(&[("PW", "from-env")]);
        let mut problems = vec![];
        let got =
            |v: &str, p: &mut Vec<Problem>| resolve_secret(v, "x", dir.path(), &e, p).map(|s| s.expose().to_string());
        assert_eq!(got("env:PW", &mut problems).as_deref(), Some("from-env"));
        assert_eq!(got("file:pw", &mut problems).as_deref(), Some("s3cret"));
        assert_eq!(got("plain", &mut problems).as_deref(), Some("plain"));
        assert!(problems.is_empty());
        assert_eq!(got("env:MISSING", &mut problems), None);
        assert_eq!(got("file:missing", &mut problems), None);
        assert_eq!(problems.len(), 2);
        assert!(problems[0].message.contains("MISSING"));
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
    }
}
