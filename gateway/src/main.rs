//! The `gatehouse` command: parse the command line, load the configuration, start the
//! server. Everything else lives in the library.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use gatehouse_config::{Config, ConfigError};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Authentication and access gateway for internal web apps"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Zero-downtime upgrade: take over the listening sockets of the running gateway
        /// with this process id (same `server.upgrade_socket`), which then finishes its
        /// in-flight requests and exits.
        #[arg(long, value_name = "PID")]
        upgrade_from: Option<u32>,
    },
    /// Validate a configuration file and, if it is valid, tell the running gateway (PID) to
    /// re-read it (SIGHUP). An invalid file is reported and nothing is sent.
    Reload {
        /// Configuration file (TOML) the gateway was started with.
        #[arg(long, short)]
        config: PathBuf,
        /// Process id of the running gateway.
        #[arg(long)]
        pid: u32,
    },
    /// Validate configuration files; prints every problem, exits 1 if any.
    CheckConfig {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run a demo on loopback: the gateway with the sample app behind it.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: SocketAddr,
        /// Folder for the demo's config and database.
        #[arg(long, default_value = "gatehouse-demo")]
        dir: PathBuf,
        /// Metrics listener. Default: the port after --listen.
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
    },
    /// Manage local accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage the keys that sign assertions for apps.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Directory tools.
    Ldap {
        #[command(subcommand)]
        command: LdapCommand,
    },
    /// Run only the sample app ("whoami"), which echoes what it receives.
    Whoami {
        #[arg(long, default_value = "127.0.0.1:8050")]
        listen: SocketAddr,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a local account; the password is read from a prompt, or from stdin when it
    /// is not a terminal (never from a flag).
    Add {
        name: String,
        #[arg(long, short)]
        config: PathBuf,
        /// Make the account an administrator.
        #[arg(long)]
        admin: bool,
        /// Add to a group (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        #[arg(long)]
        email: Option<String>,
    },
    /// Set the password of a local account (prompt or stdin); ends its sessions.
    SetPassword {
        name: String,
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum LdapCommand {
    /// Show what the gateway would see for a user (DN, attributes, groups, time taken),
    /// without a password and without creating a session.
    Test {
        username: String,
        #[arg(long, short)]
        config: PathBuf,
        /// Which LDAP provider (default: the first).
        #[arg(long)]
        provider: Option<String>,
    },
}

fn ldap_test(username: &str, config: &std::path::Path, provider: Option<&str>) -> anyhow::Result<()> {
    use gatehouse_gateway::authn::{password_providers, PasswordProvider};
    let config = load(config)?;
    let ldap = password_providers(&config)?
        .into_iter()
        .filter_map(|p| match p {
            PasswordProvider::Ldap(l) => Some(l),
            PasswordProvider::Local(_) => None,
        })
        .find(|l| provider.is_none_or(|id| l.id == id))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no LDAP provider{} in the configuration",
                provider.map(|p| format!(" {p:?}")).unwrap_or_default()
            )
        })?;
    let started = std::time::Instant::now();
    let found = gatehouse_gateway::server::block_on(ldap.lookup(username))?;
    let took = started.elapsed();
    match found {
        Ok(Some(u)) => {
            println!("provider:      {}", ldap.id);
            println!("dn:            {}", u.dn);
            println!("user id:       {}", u.user_id);
            println!("email:         {}", u.email.as_deref().unwrap_or("-"));
            println!("display name:  {}", u.display_name.as_deref().unwrap_or("-"));
            println!("groups ({}):", u.groups.len());
            for g in &u.groups {
                println!("  {g}");
            }
            println!("time taken:    {} ms", took.as_millis());
            Ok(())
        }
        Ok(None) => anyhow::bail!(
            "no single directory entry matches {username:?} (none or several; {} ms)",
            took.as_millis()
        ),
        Err(e) => anyhow::bail!("directory unavailable: {e:?} ({} ms)", took.as_millis()),
    }
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Retire the signing key and create a new one. The old key stays in the JWKS until
    /// its tokens have expired; running gateways pick the new key up at restart.
    Rotate {
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// Reads a password: from a prompt (twice) on a terminal, else one line of stdin.
fn read_password() -> anyhow::Result<String> {
    use std::io::IsTerminal;
    let pw = if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password("Password: ")?;
        let b = rpassword::prompt_password("Again: ")?;
        anyhow::ensure!(a == b, "the passwords differ");
        a
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    anyhow::ensure!(pw.chars().count() >= 8, "the password must have at least 8 characters");
    Ok(pw)
}

fn user_command(cmd: UserCommand) -> anyhow::Result<()> {
    use gatehouse_gateway::authn::local::hash_password;
    use gatehouse_gateway::server::{block_on, open_store};
    use gatehouse_policy::{GroupName, UserName};
    use gatehouse_store::{Actor, NewUser, StoreError};
    match cmd {
        UserCommand::Add {
            name,
            config,
            admin,
            groups,
            email,
        } => {
            let config = load(&config)?;
            let hash = hash_password(&read_password()?)?;
            block_on(async {
                let store = open_store(&config).await?;
                store
                    .create_user(
                        &NewUser {
                            username: UserName::new(&name),
                            password_hash: Some(hash),
                            email,
                            display_name: None,
                            admin,
                            groups: groups.iter().map(|g| GroupName::new(g)).collect(),
                        },
                        &Actor::cli(),
                    )
                    .await?;
                anyhow::Ok(())
            })??;
            println!("created user {name}{}", if admin { " (administrator)" } else { "" });
        }
        UserCommand::SetPassword { name, config } => {
            let config = load(&config)?;
            let hash = hash_password(&read_password()?)?;
            block_on(async {
                let store = open_store(&config).await?;
                let user = UserName::new(&name);
                match store.set_password_hash(&user, &hash, &Actor::cli()).await {
                    Err(StoreError::NotFound { .. }) => anyhow::bail!("no local user {name:?}"),
                    other => other?,
                }
                let n = store.delete_user_sessions(&user, &Actor::cli()).await?;
                println!("password changed; {n} session(s) ended");
                anyhow::Ok(())
            })??;
        }
    }
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GATEHOUSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: log files and collectors get plain lines (half the bytes
    // of the access log, and no escape codes to strip).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(ConfigError::Invalid(problems)) => anyhow::bail!("{}: {problems}", path.display()),
        Err(e) => return Err(e.into()),
    };
    Ok(config)
}

fn check_config(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for f in files {
        match Config::load(f) {
            Ok(c) => println!(
                "{}: ok ({} apps, {} providers)",
                f.display(),
                c.apps.len(),
                c.providers.len()
            ),
            Err(ConfigError::Invalid(p)) => {
                failed = true;
                print!("{}: {p}", f.display());
            }
            Err(e) => {
                failed = true;
                println!("{}: {e}", f.display());
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// mimalloc settings for a long-running gateway. mimalloc reads its options from the
/// environment as the process starts, before `main`, so [`with_allocator_settings`] starts the
/// program again with them (an operator's own values win).
///
/// - `ALLOW_THP=0`: mimalloc asks for transparent huge pages on its whole arena by default,
///   so every touched 2 MiB became resident at once: the demo idled at 42 MiB of anonymous
///   memory instead of 23, with no measurable CPU gain per request (BENCHMARKS.md).
/// - `ARENA_MAX_OBJECT_SIZE=4096` (KiB): blocks over 4 MiB (argon2's 19 MiB working memory,
///   nothing on the request path) are mapped from the system on their own and unmapped when
///   freed, instead of staying resident in the arena until later allocator activity purges
///   them (an idle gateway never gets there): once `authn::local` releases its unused
///   working memory, the memory is the system's again.
///
/// Purging itself stays mimalloc's default (a second's delay): purging at once cost ~30 %
/// CPU per request (BENCHMARKS.md, "The allocator settings cost CPU per request").
const ALLOCATOR_ENV: [(&str, &str); 2] = [("MIMALLOC_ALLOW_THP", "0"), ("MIMALLOC_ARENA_MAX_OBJECT_SIZE", "4096")];

/// For the long-running commands (`serve`, `demo`): replaces this process (same PID, same
/// arguments) with the program started with [`ALLOCATOR_ENV`] set, unless it is set already.
/// Returns only if that is not possible, with a warning; the gateway then runs with
/// mimalloc's defaults.
fn with_allocator_settings() {
    use std::os::unix::process::CommandExt;
    if ALLOCATOR_ENV.iter().all(|(k, _)| std::env::var_os(k).is_some()) {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let mut args = std::env::args_os();
    let mut again = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        again.arg0(arg0);
    }
    again.args(args);
    for (k, v) in ALLOCATOR_ENV {
        if std::env::var_os(k).is_none() {
            again.env(k, v);
        }
    }
    let e = again.exec();
    eprintln!("warning: could not restart with the allocator's settings ({e}); running with its defaults");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve { .. } | Command::Demo { .. }) {
        with_allocator_settings();
    }
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::CheckConfig { files } => return check_config(&files),
        Command::Reload { config, pid } => load(&config).and_then(|_| {
            let status = std::process::Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status()?;
            anyhow::ensure!(status.success(), "could not signal process {pid}");
            println!("{}: valid; gateway {pid} told to reload it", config.display());
            Ok(())
        }),
        Command::Serve { config, upgrade_from } => load(&config).and_then(|c| {
            let path = Some(config.clone());
            let admin = env("GATEHOUSE_ADMIN_PASSWORD");
            match upgrade_from {
                Some(pid) => gatehouse_gateway::server::run_upgrade(c, path, admin, pid)?,
                None => gatehouse_gateway::server::run(c, path, admin)?,
            }
            Ok(())
        }),
        Command::Demo {
            listen,
            dir,
            metrics_listen,
        } => (|| {
            use gatehouse_gateway::{demo, server};
            let path = demo::prepare(listen, metrics_listen, &dir)?;
            let config = load(&path)?;
            let accounts = server::block_on(async {
                let store = server::open_store(&config).await?;
                let a = demo::ensure_accounts(
                    &store,
                    env("GATEHOUSE_ADMIN_PASSWORD"),
                    env("GATEHOUSE_VIEWER_PASSWORD"),
                )
                .await?;
                store.close().await;
                anyhow::Ok(a)
            })??;
            let banner = demo::banner(
                &config.server.public_url,
                config.server.metrics_listen,
                &path,
                &accounts,
            );
            // A closed stdout (the demo piped into `head`) must not stop the gateway.
            let mut out = std::io::stdout().lock();
            let _ = std::io::Write::write_all(&mut out, banner.as_bytes());
            let _ = std::io::Write::flush(&mut out);
            Ok(server::run(config, Some(path), None)?)
        })(),
        Command::User { command } => user_command(command),
        Command::Ldap {
            command:
                LdapCommand::Test {
                    username,
                    config,
                    provider,
                },
        } => ldap_test(&username, &config, provider.as_deref()),
        Command::Keys {
            command: KeysCommand::Rotate { config },
        } => (|| {
            let config = load(&config)?;
            let kid = gatehouse_gateway::server::block_on(async {
                let store = gatehouse_gateway::server::open_store(&config).await?;
                anyhow::Ok(gatehouse_gateway::identity::rotate(&store, &gatehouse_store::Actor::cli()).await?)
            })??;
            println!("new signing key {kid}; restart the gateways to use it");
            Ok(())
        })(),
        Command::Whoami { listen } => (|| {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let l = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("bind {listen}"))?;
                println!("whoami listening on http://{listen}/");
                gatehouse_gateway::whoami::serve(l).await?;
                anyhow::Ok(())
            })
        })(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e:#}");
            ExitCode::FAILURE
        }
    }
}
