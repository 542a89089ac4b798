//! Assembling and running the pingora server from a [`Config`]: the proxy listener (plain or
//! TLS), the HTTP→HTTPS redirect listener, the metrics listener, active health checks, and
//! a graceful shutdown that lets in-flight requests finish.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gatehouse_config::Config;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::server::configuration::ServerConf;
use pingora::server::{ExecutionPhase, RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use gatehouse_admin_ui::{PortalApp, Site};
use gatehouse_config::{Access, App, AppHeaders, GroupsSent, Store as StoreConfig, Upstream};
use gatehouse_store::{AppRecord, Store};

use crate::authn::local::RateLimit;
use crate::authn::session::Sessions;
use crate::authn::Authn;
use crate::identity::Keys;
use crate::metrics::{Metrics, MetricsApp};
use crate::proxy::{app_policy, Gateway, State};
use crate::route::Router;
use crate::upstream::{check_loop, Pool};
use crate::GatewayError;

/// Opens the configured store (creating a SQLite file and running migrations as needed).
pub async fn open_store(config: &Config) -> Result<Store, GatewayError> {
    Ok(match &config.store {
        StoreConfig::Sqlite { path } => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| GatewayError::Io(format!("{}: {e}", dir.display())))?;
            }
            Store::open_sqlite(path).await?
        }
        StoreConfig::Postgres { url } => Store::open_postgres(url.expose()).await?,
    })
}

/// Apps defined in the store (admin UI) join the config's apps; a slug defined in the
/// config wins.
fn merge_store_apps(config: &mut Config, records: Vec<AppRecord>) {
    for r in records {
        if config.apps.iter().any(|a| a.slug == r.slug) {
            tracing::warn!(app = %r.slug, "app defined in both config and store; using the config's");
            continue;
        }
        let access = match r.access.as_str() {
            "public" => Access::Public,
            "authenticated" => Access::Authenticated,
            _ => Access::Restricted,
        };
        let upstreams: Vec<Upstream> = r.upstreams.iter().filter_map(|u| parse_upstream(u)).collect();
        if upstreams.is_empty() {
            tracing::warn!(app = %r.slug, "app from the store has no usable upstream; skipped");
            continue;
        }
        config.apps.push(App {
            path: format!("/apps/{}/", r.slug),
            slug: r.slug,
            name: r.name,
            description: r.description,
            upstreams,
            host: None,
            strip_prefix: false,
            access,
            allow_groups: r.allow_groups.iter().map(ToString::to_string).collect(),
            allow_users: r.allow_users.iter().map(ToString::to_string).collect(),
            headers: AppHeaders {
                remote_headers: false,
                plotly_user_data: false,
                groups_sent: GroupsSent::All,
            },
            health_check: config.server.health_check.clone(),
            timeouts: config.server.timeouts,
        });
    }
}

fn parse_upstream(u: &str) -> Option<Upstream> {
    let text = format!("[[apps]]\nslug = \"x\"\nupstreams = [{}]", toml_string(u));
    Config::from_toml(&text, std::path::Path::new("."), &gatehouse_config::ProcessEnv)
        .ok()
        .and_then(|c| c.apps.into_iter().next())
        .and_then(|a| a.upstreams.into_iter().next())
}

fn toml_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Builds the shared state of the proxy from a validated config: opens the store, creates
/// the first admin if asked, loads signing keys, and prepares routing and pools.
pub async fn build_state(mut config: Config, admin_password: Option<&str>) -> Result<Arc<State>, GatewayError> {
    let store = Arc::new(open_store(&config).await?);
    crate::authn::bootstrap_admin(&store, admin_password).await?;
    let _ = tokio::task::spawn_blocking(crate::authn::local::warm_up).await;
    merge_store_apps(&mut config, store.apps().await?);
    let keys = Arc::new(Keys::load(&store, &config.server.public_url).await?);
    let providers = crate::authn::password_providers(&config)?;
    let oidc = crate::authn::oidc_providers(&config);
    let saml = crate::authn::saml_providers(&config)?;
    for p in &oidc {
        // Discovery is tried now and retried on demand: a provider that is down does not
        // stop the gateway.
        let p = p.clone();
        tokio::spawn(async move { p.warm_up().await });
    }
    let recheck = Arc::new(crate::authn::Rechecker::new(&config, &providers, &oidc, store.clone()));
    let sessions = Arc::new(
        Sessions::new(
            store.clone(),
            config.session.idle_timeout,
            config.session.absolute_timeout,
            SESSION_CACHE_TTL,
        )
        .with_recheck(recheck),
    );
    let metrics = Metrics::new().map_err(|e| GatewayError::Metrics(e.to_string()))?;
    let router = Router::new(&config.apps, config.server.app_domain.as_deref());
    let policies: Vec<_> = config.apps.iter().map(app_policy).collect();
    let pools: Vec<Arc<Pool>> = config
        .apps
        .iter()
        .map(|a| Arc::new(Pool::new(&a.upstreams, a.health_check.clone())))
        .collect();
    for (app, pool) in config.apps.iter().zip(&pools) {
        for m in &pool.members {
            if m.addr().is_none() {
                tracing::warn!(app = %app.slug, upstream = %m.upstream.address, "cannot resolve upstream; will retry");
            }
            metrics
                .upstream_healthy
                .with_label_values(&[app.slug.as_str(), m.upstream.address.as_str()])
                .set(i64::from(m.is_healthy()));
        }
    }
    let session_cookie = config.session.cookie_name.clone();
    let csrf_cookie = format!("{session_cookie}_csrf");
    let tls = config.server.tls.is_some();
    let authn = Authn {
        site: Site {
            branding: config.branding.clone(),
            session_cookie: session_cookie.clone(),
            csrf_cookie: csrf_cookie.clone(),
            secure: tls,
            session_max_age: config.session.absolute_timeout.as_secs(),
            password_form: !providers.is_empty(),
            sso: config
                .providers
                .iter()
                .filter_map(|p| {
                    let href = match p.kind {
                        gatehouse_config::ProviderKind::Oidc(_) => format!("/.gatehouse/oidc/{}/start", p.id),
                        gatehouse_config::ProviderKind::Saml(_) => format!("/.gatehouse/saml/{}/start", p.id),
                        _ => return None,
                    };
                    Some(gatehouse_admin_ui::pages::SsoButton {
                        label: p.label.clone(),
                        href,
                    })
                })
                .collect(),
            login_cookie: format!("{session_cookie}_login"),
        },
        store: store.clone(),
        sessions: sessions.clone(),
        limits: RateLimit::new(Duration::from_secs(15 * 60), 10, 50),
        providers,
        oidc,
        saml: saml.clone(),
        public_url: config.server.public_url.clone(),
        keys: keys.clone(),
        apps: config
            .apps
            .iter()
            .zip(&policies)
            .map(|(a, p)| {
                let href = match &a.host {
                    Some(h) => format!("{}://{h}{}", if tls { "https" } else { "http" }, a.path),
                    None => a.path.clone(),
                };
                (
                    p.clone(),
                    PortalApp {
                        name: a.name.clone(),
                        description: a.description.clone(),
                        href,
                    },
                )
            })
            .collect(),
    };
    Ok(Arc::new(State {
        tls,
        router,
        policies,
        pools,
        web: gatehouse_admin_ui::router(Arc::new(authn)),
        metrics,
        sessions,
        keys,
        saml,
        cookie_names: [session_cookie, csrf_cookie],
        in_flight: Arc::new(AtomicUsize::new(0)),
        config,
    }))
}

/// How long a cached session may go unchecked against the store (another replica's
/// revocation is seen within this time; this replica's at once).
pub const SESSION_CACHE_TTL: Duration = Duration::from_secs(5);

/// Startup work (store, keys) runs here; kept for the life of the process because pooled
/// connections made during startup belong to this runtime.
static STARTUP: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// Runs `f` to completion on the process-long startup runtime.
pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, GatewayError> {
    let rt = match STARTUP.get() {
        Some(rt) => rt,
        None => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("gatehouse-startup")
                .enable_all()
                .build()
                .map_err(|e| GatewayError::Io(format!("runtime: {e}")))?;
            STARTUP.get_or_init(|| rt)
        }
    };
    Ok(rt.block_on(f))
}

/// Active health checks of every app's upstreams, and the sweep of expired sessions.
struct HealthChecks(Arc<State>);

#[async_trait]
impl BackgroundService for HealthChecks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let st = self.0.clone();
        let loops = st.pools.iter().enumerate().map(|(app, pool)| {
            let st = st.clone();
            check_loop(pool.clone(), move |i, t| st.health_changed(app, i, t))
        });
        let sweep = async {
            let mut tick = tokio::time::interval(Duration::from_secs(600));
            loop {
                tick.tick().await;
                st.sessions.sweep().await;
            }
        };
        let metadata = futures_util::future::join_all(st.saml.iter().filter_map(|p| {
            let (url, every) = p.metadata_url()?;
            let (p, url) = (p.clone(), url.to_string());
            Some(async move {
                let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    match p.refresh_metadata().await {
                        Ok(()) => tracing::debug!(provider = %p.id, %url, "IdP metadata refreshed"),
                        Err(e) => tracing::warn!(provider = %p.id, %url, error = %e, "could not refresh IdP metadata; keeping the last good copy"),
                    }
                }
            })
        }));
        // The loops run until shutdown; an empty set (no apps, no SAML URL metadata) must
        // not end the others, so each set is followed by waiting forever.
        let forever = std::future::pending::<()>;
        let loops = async {
            futures_util::future::join_all(loops).await;
            forever().await
        };
        let metadata = async {
            metadata.await;
            forever().await
        };
        tokio::select! {
            _ = loops => {}
            _ = metadata => {}
            _ = sweep => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The plain-HTTP listener when TLS is on: every request is redirected to `public_url`.
struct RedirectToHttps {
    public_url: String,
}

#[async_trait]
impl ServeHttp for RedirectToHttps {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let pq = session
            .req_header()
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        // public_url has a host, so whatever the path, the target stays on our origin.
        let location = format!("{}{}", self.public_url, pq);
        Response::builder()
            .status(308)
            .header(http::header::LOCATION, location)
            .header(http::header::CONTENT_LENGTH, 0)
            .body(Vec::new())
            .unwrap_or_default()
    }
}

/// SIGTERM and SIGINT both drain gracefully (pingora's default makes SIGINT immediate);
/// SIGQUIT keeps pingora's graceful upgrade.
struct DrainOnSignal;

#[async_trait]
impl ShutdownSignalWatch for DrainOnSignal {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: finishing in-flight requests"); ShutdownSignal::GracefulTerminate }
            _ = int.recv() => { tracing::info!("SIGINT: finishing in-flight requests"); ShutdownSignal::GracefulTerminate }
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
        }
    }
}

/// Pingora sleeps the whole grace period even when nothing is in flight; this watcher ends
/// the process as soon as the last in-flight request finished (or the period is over).
fn exit_when_drained(server: &Server, in_flight: Arc<AtomicUsize>, grace: Duration) {
    let mut phases = server.watch_execution_phase();
    std::thread::spawn(move || {
        loop {
            match phases.blocking_recv() {
                Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            }
        }
        let deadline = Instant::now() + grace;
        while in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::info!(left = in_flight.load(Ordering::SeqCst), "drained; exiting");
        std::process::exit(0);
    });
}

/// Starts every service of `config` and blocks until shutdown. Returns only on error.
pub fn run(config: Config, admin_password: Option<String>) -> Result<(), GatewayError> {
    let conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.shutdown_grace_period.as_secs().max(1)),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: 256,
        work_stealing: true,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let listen = config.server.listen.to_string();
    let metrics_listen = config.server.metrics_listen;
    let redirect_listen = config.server.http_redirect_listen;
    let public_url = config.server.public_url.clone();
    let grace = config.server.shutdown_grace_period;
    let tls = config.server.tls.clone();
    // Pingora retries a busy address forever; say so plainly and stop instead.
    for addr in std::iter::once(config.server.listen)
        .chain(metrics_listen)
        .chain(redirect_listen)
    {
        std::net::TcpListener::bind(addr).map_err(|e| GatewayError::Io(format!("cannot listen on {addr}: {e}")))?;
    }
    let state = block_on(build_state(config, admin_password.as_deref()))??;

    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, Gateway(state.clone()));
    match &tls {
        Some(t) => {
            let (cert, key) = (t.cert.to_string_lossy(), t.key.to_string_lossy());
            proxy
                .add_tls(&listen, &cert, &key)
                .map_err(|e| GatewayError::Tls(format!("{}: {e}", t.cert.display())))?;
        }
        None => proxy.add_tcp(&listen),
    }
    server.add_service(proxy);

    if let Some(addr) = metrics_listen {
        let mut svc = Service::new("metrics".to_string(), MetricsApp(state.metrics.clone()));
        svc.add_tcp(&addr.to_string());
        server.add_service(svc);
    }
    if let Some(addr) = redirect_listen {
        let mut svc = Service::new(
            "https redirect".to_string(),
            RedirectToHttps {
                public_url: public_url.clone(),
            },
        );
        svc.add_tcp(&addr.to_string());
        server.add_service(svc);
    }
    server.add_service(background_service("health checks", HealthChecks(state.clone())));

    tracing::info!(%listen, %public_url, apps = state.config.apps.len(), "gatehouse listening");
    exit_when_drained(&server, state.in_flight.clone(), grace);
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainOnSignal),
    });
    Ok(())
}
