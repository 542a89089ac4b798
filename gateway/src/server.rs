//! Assembling and running the pingora server from a [`Config`]: the proxy listener (plain or
//! TLS), the HTTP→HTTPS redirect listener, the metrics listener, the [`Reloader`] that keeps
//! the live snapshot current (store change feed, `SIGHUP`, periodic full reload, health
//! loops), and a graceful shutdown that lets in-flight requests finish.

use std::path::PathBuf;
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

use gatehouse_admin_ui::Site;
use gatehouse_config::Store as StoreConfig;
use gatehouse_store::{Actor, AppRecord, AuditEvent, Change, GrantRecord, Grantee, Store};

use crate::authn::local::RateLimit;
use crate::authn::session::Sessions;
use crate::authn::Authn;
use crate::gatekeeper::Gatekeeper;
use crate::identity::{KeyRing, Keys};
use crate::metrics::{Metrics, MetricsApp};
use crate::proxy::{health_changed, Gateway, State};
use crate::snapshot::{Live, Snapshot};
use crate::upstream::{check_loop, Pool};
use crate::GatewayError;

/// How long a store call waits for a connection before it fails as unavailable. Short, so
/// that while the database is down a sign-in gets its error page within seconds instead
/// of hanging (sqlx keeps retrying a refused connection until this passes).
pub const STORE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens the configured store (creating a SQLite file and running migrations as needed).
pub async fn open_store(config: &Config) -> Result<Store, GatewayError> {
    let options = gatehouse_store::StoreOptions {
        acquire_timeout: STORE_ACQUIRE_TIMEOUT,
        ..Default::default()
    };
    Ok(match &config.store {
        StoreConfig::Sqlite { path } => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| GatewayError::Io(format!("{}: {e}", dir.display())))?;
            }
            Store::open_sqlite_with(path, &options).await?
        }
        StoreConfig::Postgres { url } => Store::open_postgres_with(url.expose(), &options).await?,
    })
}

/// Builds the shared state of the proxy from a validated config: opens the store, creates
/// the first admin if asked, loads signing keys, and compiles the first snapshot.
pub async fn build_state(config: Config, admin_password: Option<&str>) -> Result<Arc<State>, GatewayError> {
    let store = Arc::new(open_store(&config).await?);
    crate::authn::bootstrap_admin(&store, admin_password).await?;
    crate::authn::local::warm_up();
    crate::authn::local::release_memory();
    let keys = Arc::new(KeyRing::new(Keys::load(&store, &config.server.public_url).await?));
    let providers = crate::authn::password_providers(&config)?;
    let oidc = crate::authn::oidc_providers(&config, &store);
    let saml = crate::authn::saml_providers(&config, &store)?;
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
            config.session.store_outage_grace,
        )
        .with_recheck(recheck)
        .with_local_providers(
            providers
                .iter()
                .filter_map(|p| match p {
                    crate::authn::PasswordProvider::Local(id) => Some(id.clone()),
                    _ => None,
                })
                .collect(),
        ),
    );
    let metrics = Metrics::new().map_err(|e| GatewayError::Metrics(e.to_string()))?;
    let usage = Arc::new(crate::usage::Recorder::new(&config.usage).map_err(|e| GatewayError::Metrics(e.to_string()))?);
    usage
        .register(&metrics.registry)
        .map_err(|e| GatewayError::Metrics(e.to_string()))?;
    let config = Arc::new(config);
    let first = Snapshot::compile_with_grants(
        config.clone(),
        &store.apps().await?,
        &store.grants().await?,
        crate::authn::session::now(),
        None,
    );
    for app in &first.apps {
        for m in &app.pool.members {
            if m.addr().is_none() {
                tracing::warn!(app = %app.app.slug, upstream = %m.upstream.address, "cannot resolve upstream; will retry");
            }
        }
    }
    let live = Arc::new(Live::new(first));
    let session_cookie = config.session.cookie_name.clone();
    let tls = config.server.tls.is_some();
    let branding = Arc::new(gatehouse_admin_ui::BrandingCell::new(
        crate::branding::saved(&store)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| config.branding.clone()),
    ));
    let site = Site {
        branding: branding.clone(),
        session_cookie: session_cookie.clone(),
        csrf_cookie: format!("{session_cookie}_csrf"),
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
        origin: config.server.public_url.trim_end_matches('/').to_string(),
    };
    let gateway_cookies = site.gateway_cookies();
    let authn = Authn {
        site,
        store: store.clone(),
        sessions: sessions.clone(),
        limits: RateLimit::new(store.clone(), Duration::from_secs(15 * 60), 10, 50),
        providers,
        oidc,
        saml: saml.clone(),
        public_url: config.server.public_url.clone(),
        keys: keys.clone(),
        live: live.clone(),
        usage: usage.clone(),
    };
    Ok(Arc::new(State {
        gatekeeper: Gatekeeper {
            live: live.clone(),
            sessions: sessions.clone(),
        },
        live,
        web: gatehouse_admin_ui::router(Arc::new(authn)),
        metrics,
        sessions,
        keys,
        store,
        saml,
        session_cookie,
        gateway_cookies,
        branding,
        tls,
        in_flight: Arc::new(AtomicUsize::new(0)),
        usage,
        draining: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        signin_starts: crate::limits::StartLimiter::new(config.server.limits.signin_starts_per_client),
        streams: Arc::new(crate::streams::Streams::new()),
    }))
}

/// How often everything is re-read from the store even without a change notification: the
/// safety net for notifications that were missed.
/// Cheap when nothing changed (two small reads; nothing is recompiled), and it is how a
/// change made by another process on SQLite (which has no notifications) arrives.
pub const FULL_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Keeps the live state current: recompiles the snapshot when the store's apps or the
/// config file change, drops cached sessions the store revoked, reloads signing keys, and
/// runs the active health checks of every pool in use.
pub struct Reloader {
    state: Arc<State>,
    /// The file `SIGHUP` re-reads; `None`: no file (the demo), reload re-reads the store only.
    config_path: Option<PathBuf>,
    /// One rebuild at a time, so snapshots are published in the order they were compiled;
    /// holds the store records the current snapshot was compiled from.
    rebuilding: tokio::sync::Mutex<(Vec<AppRecord>, Vec<GrantRecord>)>,
    /// Pools whose health loop runs (weak: a pool no snapshot uses ends its loop).
    watched: std::sync::Mutex<Vec<std::sync::Weak<Pool>>>,
    /// The main listener's certificate, re-read on `SIGHUP` and when its files change.
    tls: Option<Arc<crate::tls::Certificates>>,
}

impl Reloader {
    pub fn new(state: Arc<State>, config_path: Option<PathBuf>) -> Reloader {
        Reloader {
            state,
            config_path,
            rebuilding: tokio::sync::Mutex::new((Vec::new(), Vec::new())),
            watched: std::sync::Mutex::new(Vec::new()),
            tls: None,
        }
    }

    /// Also re-reads this certificate on `SIGHUP` and watches its files.
    pub fn with_tls(mut self, certificates: Option<Arc<crate::tls::Certificates>>) -> Reloader {
        self.tls = certificates;
        self
    }

    /// Recompiles the snapshot from `config` (default: the current one) and the store's
    /// apps, and publishes it — unless neither changed. On a store error the current
    /// snapshot stays.
    pub async fn rebuild(&self, config: Option<Arc<Config>>) -> Result<(), GatewayError> {
        self.rebuild_at(config, false).await
    }

    /// [`Reloader::rebuild`]; `force` recompiles even when nothing in the store changed
    /// (a grant expired: time moved, not the data).
    async fn rebuild_at(&self, config: Option<Arc<Config>>, force: bool) -> Result<(), GatewayError> {
        let mut last = self.rebuilding.lock().await;
        let records = self.state.store.apps().await?;
        let grants = self.state.store.grants().await?;
        let previous = self.state.live.load();
        if config.is_none() && !force && last.0 == records && last.1 == grants {
            return Ok(());
        }
        *last = (records.clone(), grants.clone());
        let config = config.unwrap_or_else(|| previous.config.clone());
        let now = crate::authn::session::now();
        let next = tokio::task::spawn_blocking(move || {
            Snapshot::compile_with_grants(config, &records, &grants, now, Some(&previous))
        })
        .await
        .map_err(|e| GatewayError::Io(format!("compiling the snapshot: {e}")))?;
        let published = self.state.live.publish(next);
        self.watch_pools(&published);
        tracing::debug!(apps = published.apps.len(), "snapshot published");
        Ok(())
    }

    /// Writes one `grant.expire` audit row per grant that expired at `at`, whichever replica
    /// gets there first (the store's first-sighting record decides).
    async fn audit_expired(&self, at: i64) {
        let Ok(grants) = self.state.store.grants().await else {
            return;
        };
        for g in grants.iter().filter(|g| g.expires_at == Some(at)) {
            let (kind, name) = match &g.grantee {
                Grantee::User(u) => ("user", u.as_str()),
                Grantee::Group(gr) => ("group", gr.as_str()),
            };
            let target = format!("{}/{kind}:{name}", g.app);
            let key = format!("grant-expired:{target}@{at}");
            let now = crate::authn::session::now();
            if self
                .state
                .store
                .first_sighting(&key, now + 7 * 86_400, now)
                .await
                .unwrap_or(false)
            {
                let mut e = AuditEvent::new(&Actor::gateway(), "grant.expire", &target);
                e.detail = serde_json::json!({ "expired_at": at, "granted_by": g.created_by });
                if let Err(err) = self.state.store.audit(&e).await {
                    tracing::warn!(error = %err, "could not audit an expired grant");
                }
            }
        }
    }

    /// Starts the health loop of every pool in `snap` that has none yet.
    fn watch_pools(&self, snap: &Snapshot) {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        watched.retain(|w| w.strong_count() > 0);
        for app in &snap.apps {
            if watched.iter().any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&app.pool))) {
                continue;
            }
            let pool = Arc::downgrade(&app.pool);
            watched.push(pool.clone());
            for m in &app.pool.members {
                self.state
                    .metrics
                    .upstream_healthy
                    .with_label_values(&[app.app.slug.as_str(), m.upstream.address.as_str()])
                    .set(i64::from(m.is_healthy()));
            }
            let (metrics, slug) = (self.state.metrics.clone(), app.app.slug.clone());
            tokio::spawn(check_loop(pool, move |p, i, t| {
                health_changed(&metrics, &slug, p, i, t)
            }));
        }
    }

    /// Re-reads the config file (`SIGHUP`, `gatehouse reload`). A valid file is swapped in
    /// for everything a snapshot holds; settings that need a restart are named in the log.
    /// An invalid one is refused with every problem logged, and the running config stays.
    pub async fn reload_config(&self) -> Result<(), GatewayError> {
        let Some(path) = &self.config_path else {
            tracing::info!("no config file to re-read; reloading from the store");
            return self.full_reload().await;
        };
        let loaded = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || Config::load(&path))
                .await
                .map_err(|e| GatewayError::Io(format!("reading the config: {e}")))?
        };
        let next = match loaded {
            Ok(c) => c,
            Err(e) => {
                let text = e.to_string();
                tracing::error!(config = %path.display(), problems = %text.trim_end(), "config reload refused; the running configuration stays");
                return Err(GatewayError::Io(format!("{}: {}", path.display(), text.trim_end())));
            }
        };
        let current = self.state.live.load().config.clone();
        let restart = needs_restart(&current, &next);
        if !restart.is_empty() {
            tracing::warn!(settings = %restart.join(", "), "changed settings take effect only after a restart");
        }
        self.rebuild(Some(Arc::new(next))).await?;
        self.load_branding().await?;
        tracing::info!(config = %path.display(), apps = self.state.live.peek().apps.len(), "configuration reloaded");
        Ok(())
    }

    /// Everything again: apps, sessions' cache, signing keys.
    pub async fn full_reload(&self) -> Result<(), GatewayError> {
        self.state.sessions.forget_all();
        self.refresh().await
    }

    /// Re-reads apps and signing keys; swaps only what changed (the periodic safety net;
    /// cached sessions already expire within the session cache's time to live).
    pub async fn refresh(&self) -> Result<(), GatewayError> {
        self.state.keys.reload(&self.state.store).await?;
        self.load_branding().await?;
        self.rebuild(None).await
    }

    /// Puts the branding in force into the pages: the admin UI's saved one, else the
    /// config file's. On a store error what is shown stays.
    async fn load_branding(&self) -> Result<(), GatewayError> {
        let saved = crate::branding::saved(&self.state.store).await?;
        let next = saved.unwrap_or_else(|| self.state.live.peek().config.branding.clone());
        if *self.state.branding.get() != next {
            tracing::info!(name = %next.name, accent = %next.accent, "branding changed");
            self.state.branding.set(next);
        }
        Ok(())
    }

    /// Applies one change from the store's feed.
    pub async fn apply(&self, change: Change) {
        let result = match change {
            Change::App { .. } => self.rebuild(None).await,
            Change::Session { id_hash } => {
                self.state.sessions.forget(&id_hash).await;
                Ok(())
            }
            Change::User { username } => {
                self.state.sessions.forget_user(&username).await;
                Ok(())
            }
            Change::SigningKeys => self.state.keys.reload(&self.state.store).await,
            Change::Settings => self.load_branding().await,
            Change::Resync => self.full_reload().await,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not apply a store change; the periodic reload will retry");
        }
    }

    /// Runs until shutdown: health loops, the change feed, the periodic full reload, and
    /// `SIGHUP`.
    async fn run(&self) {
        self.watch_pools(&self.state.live.load());
        let mut feed = self.state.store.subscribe();
        let mut every = tokio::time::interval(FULL_RELOAD_INTERVAL);
        every.tick().await;
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut asked = self.state.live.serve_rebuilds();
        loop {
            let expiry = self.state.live.peek().next_expiry;
            let expired = async move {
                match expiry {
                    Some(t) => {
                        let wait = (t - crate::authn::session::now()).max(0) as u64;
                        tokio::time::sleep(Duration::from_secs(wait)).await;
                        // Expiry is exclusive of its second: wait for it to pass.
                        while crate::authn::session::now() < t {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = expired => {
                    if let Err(e) = self.rebuild_at(None, true).await {
                        tracing::warn!(error = %e, "rebuild at a grant's expiry failed; retrying with the periodic reload");
                    }
                    self.audit_expired(expiry.unwrap_or(0)).await;
                }
                Some(ack) = asked.recv() => {
                    if let Err(e) = self.rebuild(None).await {
                        tracing::warn!(error = %e, "rebuild after a local change failed; the periodic reload will retry");
                    }
                    let _ = ack.send(());
                }
                change = feed.recv() => match change {
                    Ok(c) => self.apply(c).await,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "change feed lagged; reloading everything");
                        self.apply(Change::Resync).await;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        tracing::error!("change feed closed; relying on the periodic reload");
                        feed = self.state.store.subscribe();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
                _ = every.tick() => {
                    if let Err(e) = self.refresh().await {
                        tracing::warn!(error = %e, "periodic reload failed; keeping the current state");
                    }
                }
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    if let Some(certs) = self.tls.clone() {
                        let _ = tokio::task::spawn_blocking(move || certs.reload()).await;
                    }
                    let _ = self.reload_config().await;
                }
            }
            // Whatever was applied may have ended some open stream's access.
            self.state.streams.changed();
        }
    }
}

/// The settings of `next` that differ from `current` and cannot change while running.
pub fn needs_restart(current: &Config, next: &Config) -> Vec<&'static str> {
    let (a, b) = (&current.server, &next.server);
    let mut out = vec![];
    let mut check = |name, differs: bool| {
        if differs {
            out.push(name);
        }
    };
    check("server.listen", a.listen != b.listen);
    check("server.public_url", a.public_url != b.public_url);
    check("server.metrics_listen", a.metrics_listen != b.metrics_listen);
    check("server.tls", format!("{:?}", a.tls) != format!("{:?}", b.tls));
    check(
        "server.http_redirect_listen",
        a.http_redirect_listen != b.http_redirect_listen,
    );
    check("server.threads", a.threads != b.threads);
    check("store", format!("{:?}", current.store) != format!("{:?}", next.store));
    check(
        "session",
        format!("{:?}", current.session) != format!("{:?}", next.session),
    );
    check(
        "providers",
        format!("{:?}", current.providers) != format!("{:?}", next.providers),
    );
    check("usage", current.usage != next.usage);
    out
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

/// Background work: the reloader (change feed, health loops, SIGHUP), the sweep of expired
/// sessions, giving back idle argon2 working memory, and IdP metadata refresh.
struct Background(Arc<Reloader>);

#[async_trait]
impl BackgroundService for Background {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let st = self.0.state.clone();
        let reloader = self.0.clone();
        let sweep = async {
            let mut tick = tokio::time::interval(Duration::from_secs(600));
            loop {
                tick.tick().await;
                st.sessions.sweep().await;
                match st.store.sweep_expired(crate::authn::session::now()).await {
                    Ok(n) if n > 0 => tracing::debug!(removed = n, "expired sign-in state removed"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "could not remove expired sign-in state"),
                }
            }
        };
        let idle_memory = async {
            let mut tick = tokio::time::interval(Duration::from_secs(15));
            loop {
                tick.tick().await;
                crate::authn::local::release_idle_memory();
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
        // An empty set (no SAML URL metadata) must not end the others.
        let metadata = async {
            metadata.await;
            std::future::pending::<()>().await
        };
        let certificates = async {
            match reloader.tls.clone() {
                Some(c) => c.watch().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = reloader.run() => {}
            _ = certificates => {}
            _ = st.streams.watch(&st.gatekeeper) => {}
            _ = metadata => {}
            _ = sweep => {}
            _ = idle_memory => {}
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

/// Sends `SIGQUIT` to the running gateway `pid` as soon as pingora (in
/// [`Server::bootstrap`], which runs next and waits up to about 6 s) listens on `sock` for the
/// sockets. A stale socket file is removed first, so that its presence means "listening".
fn ask_for_sockets(pid: u32, sock: &std::path::Path) -> Result<(), GatewayError> {
    let alive = std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    if !alive {
        return Err(GatewayError::Io(format!(
            "no running gateway with process id {pid} to upgrade"
        )));
    }
    match std::fs::remove_file(sock) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(GatewayError::Io(format!("{}: {e}", sock.display()))),
    }
    let sock = sock.to_path_buf();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !sock.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::info!(pid, socket = %sock.display(), "asking the running gateway for its listening sockets (SIGQUIT)");
        let sent = std::process::Command::new("kill")
            .args(["-QUIT", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !sent {
            tracing::error!(pid, "could not signal the running gateway");
        }
    });
    Ok(())
}

/// Pingora sleeps the whole grace period even when nothing is in flight; this watcher ends
/// the process as soon as the last in-flight request finished (or the period is over),
/// after `last` (the final usage flush).
/// From the moment the listeners are handed to a successor (or shutdown begins),
/// `draining` is set: responses then close their connection.
fn exit_when_drained(
    server: &Server,
    in_flight: Arc<AtomicUsize>,
    draining: Arc<std::sync::atomic::AtomicBool>,
    grace: Duration,
    last: impl FnOnce() + Send + 'static,
) {
    let mut phases = server.watch_execution_phase();
    std::thread::spawn(move || {
        loop {
            match phases.blocking_recv() {
                Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                Ok(ExecutionPhase::GracefulUpgradeTransferringFds) => {
                    tracing::info!(
                        "SIGQUIT: handing the listening sockets to the new process, then finishing in-flight requests"
                    );
                    draining.store(true, Ordering::SeqCst);
                }
                Ok(ExecutionPhase::GracefulTerminate | ExecutionPhase::GracefulUpgradeCloseTimeout) => {
                    draining.store(true, Ordering::SeqCst);
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            }
        }
        draining.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + grace;
        while in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::info!(left = in_flight.load(Ordering::SeqCst), "drained; exiting");
        last();
        std::process::exit(0);
    });
}

/// Starts every service of `config` and blocks until shutdown. Returns only on error.
pub fn run(config: Config, config_path: Option<PathBuf>, admin_password: Option<String>) -> Result<(), GatewayError> {
    run_with(config, config_path, admin_password, None)
}

/// [`run`], taking over the listening sockets of the running gateway `old_pid` (which must
/// use the same `server.upgrade_socket`): once this process is ready to serve (store open,
/// snapshot compiled), it asks the old one with `SIGQUIT` for its sockets; the old one
/// hands them over, keeps serving for a few seconds with `Connection: close` on every
/// response, then finishes its in-flight requests and exits. No connection is refused
/// meanwhile: the kernel queues new ones on the shared sockets.
pub fn run_upgrade(
    config: Config,
    config_path: Option<PathBuf>,
    admin_password: Option<String>,
    old_pid: u32,
) -> Result<(), GatewayError> {
    run_with(config, config_path, admin_password, Some(old_pid))
}

fn run_with(
    config: Config,
    config_path: Option<PathBuf>,
    admin_password: Option<String>,
    upgrade_from: Option<u32>,
) -> Result<(), GatewayError> {
    let upgrade_sock = config.server.upgrade_socket.clone();
    let conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.shutdown_grace_period.as_secs().max(1)),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: 256,
        work_stealing: true,
        upgrade_sock: upgrade_sock.to_string_lossy().into_owned(),
        ..ServerConf::default()
    };
    let opt = upgrade_from.map(|_| pingora::server::configuration::Opt {
        upgrade: true,
        ..Default::default()
    });
    let mut server = Server::new_with_opt_and_conf(opt, conf);

    let listen = config.server.listen.to_string();
    let metrics_listen = config.server.metrics_listen;
    let redirect_listen = config.server.http_redirect_listen;
    let public_url = config.server.public_url.clone();
    let grace = config.server.shutdown_grace_period;
    let tls = config.server.tls.clone();
    // Pingora retries a busy address forever; say so plainly and stop instead. (When
    // upgrading, the old process holds them and hands them over.)
    for addr in std::iter::once(config.server.listen)
        .chain(metrics_listen)
        .chain(redirect_listen)
        .filter(|_| upgrade_from.is_none())
    {
        std::net::TcpListener::bind(addr).map_err(|e| GatewayError::Io(format!("cannot listen on {addr}: {e}")))?;
    }
    // From here on SIGHUP means "reload", never the default "terminate": the handler stays
    // installed for the life of the process, even before the reloader listens.
    block_on(async { tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map(drop) })?
        .map_err(|e| GatewayError::Io(format!("cannot handle SIGHUP: {e}")))?;
    let state = block_on(build_state(config, admin_password.as_deref()))??;
    // Ready to serve: now take the listening sockets over (or, without an upgrade, just
    // mark the bootstrap done).
    if let Some(pid) = upgrade_from {
        ask_for_sockets(pid, &upgrade_sock)?;
    }
    server.bootstrap();

    // Clients that take longer than `server.limits.header_timeout` to send their headers are
    // cut off (pingora's own read timeout is per read, which a byte a second never hits).
    let header_timeout = state.live.peek().config.server.limits.header_timeout;
    let mut proxy = Service::new(
        "gatehouse".to_string(),
        crate::limits::HeaderTimeout::new(
            pingora::proxy::http_proxy(&server.configuration, Gateway(state.clone())),
            header_timeout,
        ),
    );
    let certificates = match &tls {
        Some(t) => {
            let certs = crate::tls::Certificates::load(&t.cert, &t.key)?;
            proxy.add_tls_with_settings(&listen, None, certs.settings()?);
            Some(certs)
        }
        None => {
            proxy.add_tcp(&listen);
            None
        }
    };
    server.add_service(proxy);

    if let Some(addr) = metrics_listen {
        let mut svc = Service::new("metrics".to_string(), MetricsApp(state.metrics.clone()));
        // A scrape every few seconds needs no thread per CPU (each idle thread holds a stack
        // and the allocator's per-thread pages).
        svc.threads = Some(1);
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
        svc.threads = Some(1);
        svc.add_tcp(&addr.to_string());
        server.add_service(svc);
    }
    let reloader = Arc::new(Reloader::new(state.clone(), config_path).with_tls(certificates));
    server.add_service(background_service("live state", Background(reloader)));
    let flusher = Arc::new(crate::usage::Flusher::new(
        state.usage.clone(),
        state.store.clone(),
        &state.live.peek().config.usage,
    ));
    server.add_service(background_service("usage", crate::usage::FlushService(flusher.clone())));

    tracing::info!(%listen, %public_url, apps = state.live.peek().apps.len(), "gatehouse listening");
    exit_when_drained(
        &server,
        state.in_flight.clone(),
        state.draining.clone(),
        grace,
        move || {
            // Visits counted since the last flush; the store's pool lives on the startup runtime.
            let flushed = block_on(async { tokio::time::timeout(Duration::from_secs(5), flusher.flush()).await });
            match flushed {
                Ok(Ok(Ok(n))) => tracing::info!(keys = n, "usage counts written"),
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "usage counts lost at shutdown: the store failed"),
                _ => tracing::warn!("usage counts lost at shutdown: the store did not answer in 5 s"),
            }
        },
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainOnSignal),
    });
    Ok(())
}
