//! The `gatehouse` command: parse the command line, load the configuration, start the
//! server. Everything else lives in the library.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use gatehouse_config::{Config, ConfigError, ProviderKind};

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
    /// Run only the sample app ("whoami"), which echoes what it receives.
    Whoami {
        #[arg(long, default_value = "127.0.0.1:8050")]
        listen: SocketAddr,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GATEHOUSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
    // Fail closed: a provider this build cannot run yet must not be silently ignored.
    if let Some(p) = config
        .providers
        .iter()
        .find(|p| !matches!(p.kind, ProviderKind::Local))
    {
        anyhow::bail!(
            "provider {:?}: kind {:?} is not supported by this build yet; remove it to start",
            p.id,
            p.kind.name()
        );
    }
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::CheckConfig { files } => return check_config(&files),
        Command::Serve { config } => {
            load(&config).and_then(|c| Ok(gatehouse_gateway::server::run(c)?))
        }
        Command::Demo {
            listen,
            dir,
            metrics_listen,
        } => (|| {
            let path = gatehouse_gateway::demo::prepare(listen, metrics_listen, &dir)?;
            let config = load(&path)?;
            println!(
                "{}",
                gatehouse_gateway::demo::banner(
                    &config.server.public_url,
                    config.server.metrics_listen,
                    &path
                )
            );
            Ok(gatehouse_gateway::server::run(config)?)
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
