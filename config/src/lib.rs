//! Gatehouse configuration: a TOML file, overridden by `GATEHOUSE_<SECTION>__<KEY>` environment
//! variables, with secrets written as `env:NAME` or `file:/path`, turned into a validated
//! [`Config`]. Loading never stops at the first mistake: every problem is collected with its
//! path (`apps[1].upstreams[0]`) and a hint, and reported together.
//!
//! This crate reads files (the config and `file:` secrets) and nothing else.
#![forbid(unsafe_code)]

mod branding;
mod env;
mod raw;
mod types;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use branding::{check_branding, contrast, MIN_CONTRAST};
pub use types::*;
pub use validate::validate_app;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file itself could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration; every problem is listed.
    #[error("{0}")]
    Invalid(Problems),
}

/// Every problem found in one configuration, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

/// One problem: where (`apps[1].upstreams[0]`), what, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.path, self.message)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{n} problem{} in the configuration:", if n == 1 { "" } else { "s" })?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// Where `env:` references and `GATEHOUSE_*` overrides are looked up. The process
/// environment in production; a map in tests.
pub trait Environment {
    /// The value of variable `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
    /// Every `(name, value)` pair whose name starts with `prefix`.
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let mut v: Vec<_> = std::env::vars().filter(|(k, _)| k.starts_with(prefix)).collect();
        v.sort();
        v
    }
}

impl<S: std::hash::BuildHasher> Environment for std::collections::HashMap<String, String, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort();
        v
    }
}

impl Config {
    /// Reads and validates the file at `path` with the process environment. Relative paths
    /// inside the file (TLS files, `file:` secrets, SQLite database) are taken relative to
    /// the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, &ProcessEnv)
    }

    /// Like [`Config::load`], with an explicit environment.
    pub fn load_with_env(path: &Path, env: &dyn Environment) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut config = Self::from_toml(&text, &base, env).map_err(ConfigError::Invalid)?;
        config.modified = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok());
        Ok(config)
    }

    /// Parses and validates configuration text. `base_dir` anchors relative paths.
    pub fn from_toml(text: &str, base_dir: &Path, env: &dyn Environment) -> Result<Config, Problems> {
        validate::from_toml(text, base_dir, env)
    }
}
