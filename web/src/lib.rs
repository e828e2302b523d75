//! voxtap web UI and JSON API over the call index (`index.sqlite`) and the
//! call folders of a data directory.
//!
//! Security model (see docs/web.md and docs/security.md): every route but
//! `/login`, `/healthz` and the stylesheet needs a session cookie or a
//! bearer token, both throttled against guessing (`throttle`), and a role
//! (`config::Role`, checked in `gate`); state changing forms carry a
//! per-session CSRF token (`csrf`); every file served is resolved inside
//! the data directory (`files`); every access to a call's media is written
//! to the audit log (`audit`) before it is served.

mod admin;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod charts;
pub mod config;
mod correlate;
mod correlate_s3;
mod csrf;
pub mod dashboards;
mod downloads;
mod export;
pub mod files;
mod gate;
mod handlers;
mod hosts;
pub mod hub;
mod import;
mod jobs;
mod ladder;
mod legs_view;
mod live_view;
mod media_view;
mod pages;
mod quality;
pub mod saved;
mod signalling_view;
pub mod status_history;
pub mod status_view;
mod text;
pub mod throttle;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Redirect, Response};
use axum::routing::{get, post};
use voxtap_engine::index::{INDEX_FILE, Index, IndexError};

pub use config::{Config, Role};
pub use export::CSV_HEADER;
pub use handlers::parse_time;
pub use signalling_view::exposition as signalling_exposition;

pub const SESSION_COOKIE: &str = "voxtap_session";

/// Options of `voxtap serve`.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub data: PathBuf,
    pub listen: Option<SocketAddr>,
    pub config: Config,
    pub insecure_no_auth: bool,
}

/// Who is asking, put into each request by the auth layer.
#[derive(Clone, Debug)]
pub struct Identity {
    pub user: String,
    /// The token forms must carry; None for bearer-token clients, which a
    /// browser cannot be tricked into sending.
    pub csrf: Option<String>,
    pub remote: String,
    pub role: Role,
    /// This server is a hub (pages show the sensor column and the Sensors
    /// page).
    pub hub: bool,
}

impl Identity {
    /// Whether a state-changing request carries the right CSRF token.
    pub fn csrf_ok(&self, token: Option<&str>) -> bool {
        match &self.csrf {
            None => true,
            Some(want) => token.is_some_and(|t| auth::eq_const(t, want)),
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub requests_4xx: AtomicU64,
    pub requests_5xx: AtomicU64,
    pub downloads: AtomicU64,
    pub login_failures: AtomicU64,
    pub imports: AtomicU64,
}

/// A few SQLite connections reused across requests (WAL lets them read
/// while another writes).
pub struct Db {
    path: PathBuf,
    pool: Mutex<Vec<Index>>,
}

impl Db {
    fn open(path: &Path) -> Result<Db, IndexError> {
        let first = Index::open(path)?;
        Ok(Db {
            path: path.to_path_buf(),
            pool: Mutex::new(vec![first]),
        })
    }

    /// Store the configured trunk groups in the index (reclassifying its
    /// calls and rebuilding the dashboards' rollups when they changed).
    fn set_trunks(&self, trunks: &[config::TrunkConfig]) -> Result<(), IndexError> {
        let rules: Vec<_> = trunks.iter().map(config::TrunkConfig::rule).collect();
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        match pool.first_mut() {
            Some(idx) => idx.set_trunks(&rules).map(drop),
            None => Index::open(&self.path)?.set_trunks(&rules).map(drop),
        }
    }

    /// Run `f` on a pooled connection off the async threads.
    pub async fn run<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Index) -> Result<R, IndexError> + Send + 'static,
    ) -> Result<R, IndexError> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let taken = db.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut idx = match taken {
                Some(i) => i,
                None => Index::open(&db.path)?,
            };
            let r = f(&mut idx);
            let mut pool = db.pool.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < 8 {
                pool.push(idx);
            }
            r
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }
}

pub struct AppState {
    /// Canonical data directory: every served path must start with it.
    pub data: PathBuf,
    pub db: Arc<Db>,
    pub users: HashMap<String, config::UserConfig>,
    pub no_auth: Option<String>,
    pub secure_cookies: bool,
    pub sessions: auth::Sessions,
    pub metrics: Metrics,
    pub jobs: jobs::Jobs,
    pub started: Instant,
    /// Verified against when the user name is unknown, so a wrong name
    /// costs as long as a wrong password and timing does not tell names.
    dummy_hash: String,
    store_usage: Mutex<Option<(Instant, u64)>>,
    /// rpcapd hosts for the hosts page (`[remote] hosts`).
    pub hosts_file: Option<PathBuf>,
    remote: hosts::RemoteRuns,
    /// `[s3_sessions]`: the rolling store in S3 to correlate with.
    pub s3_sessions: Option<config::S3SessionsConfig>,
    /// `[central]`: the hub searching the fleet's central index.
    pub hub: Option<Arc<hub::Hub>>,
    /// Failed logins and bearer tokens per user name and address.
    pub throttle: throttle::Throttle,
    pub audit: audit::AuditLog,
    /// argon2 verifications done (logins and bearer tokens): each attempt
    /// that is checked costs exactly one, whoever it names.
    password_checks: AtomicU64,
    /// The bound address, for the Host check without login.
    listen: OnceLock<SocketAddr>,
    filters: hosts::FilterCompiler,
    /// Alert rules, their state and history, the notification sinks.
    pub alerts: Arc<alerts::Alerts>,
    /// Each user's named saved searches (`searches.sqlite`).
    pub saved: saved::SavedSearches,
}

pub type Shared = Arc<AppState>;

impl AppState {
    pub fn new(opts: &ServeOptions) -> Result<Shared> {
        opts.config
            .check(Path::new("the web config"))
            .context("checking the web config")?;
        if opts.config.users.is_empty() && !opts.insecure_no_auth {
            bail!(
                "no users configured: refusing to serve recordings without a login. \
                 Add [[users]] with a password hash from `voxtap hash-password` to the \
                 config file (--config), or pass --insecure-no-auth to run without login \
                 (anyone who can reach the port can then read and download every call)"
            );
        }
        std::fs::create_dir_all(&opts.data)
            .with_context(|| format!("creating data directory {}", opts.data.display()))?;
        let data = opts
            .data
            .canonicalize()
            .with_context(|| format!("data directory {}", opts.data.display()))?;
        let db = Db::open(&data.join(INDEX_FILE)).context("opening the call index")?;
        db.set_trunks(&opts.config.trunks)
            .context("storing [[trunks]] in the call index")?;
        let users = opts
            .config
            .users
            .iter()
            .map(|u| (u.name.clone(), u.clone()))
            .collect();
        let hub = match &opts.config.central {
            Some(c) => Some(Arc::new(hub::Hub::new(c).context("[central]")?)),
            None => None,
        };
        for u in opts.config.users.iter().filter(|u| u.role.is_none()) {
            tracing::warn!(
                user = %u.name,
                "no role in the config: a viewer (search and look only); set role = \"listener\", \"operator\" or \"admin\" for more"
            );
        }
        let sessions = auth::Sessions::open(
            &data.join(auth::SESSIONS_FILE),
            opts.config.session_lifetime(),
        )
        .context("opening the session store")?;
        let audit = audit::AuditLog::open(&data).context("opening the audit log")?;
        let saved = saved::SavedSearches::open(&data).context("opening searches.sqlite")?;
        let alerts = alerts::Alerts::open(&data, &opts.config.alerts, &opts.config.alerting)
            .context("opening alerts.sqlite")?;
        Ok(Arc::new(AppState {
            data,
            db: Arc::new(db),
            users,
            no_auth: opts.insecure_no_auth.then(auth::random_token),
            secure_cookies: opts.config.server.tls_cert.is_some(),
            sessions,
            metrics: Metrics::default(),
            jobs: jobs::Jobs::new(opts.config.import.concurrent.unwrap_or(2)),
            started: Instant::now(),
            dummy_hash: auth::hash_password(&auth::random_token())?,
            store_usage: Mutex::new(None),
            hosts_file: opts.config.remote.hosts.clone(),
            remote: hosts::RemoteRuns::new(&opts.config.remote),
            s3_sessions: opts.config.s3_sessions.clone(),
            hub,
            throttle: throttle::Throttle::new(throttle::Policy::from_config(&opts.config.login)),
            audit,
            password_checks: AtomicU64::new(0),
            listen: OnceLock::new(),
            filters: hosts::FilterCompiler::new(&opts.config.remote),
            alerts: Arc::new(alerts),
            saved,
        }))
    }

    fn verify(&self, hash: &str, password: &str) -> bool {
        self.password_checks.fetch_add(1, Ordering::Relaxed);
        auth::verify_password(hash, password)
    }

    /// argon2 verifications done so far (the throttle's tests count them).
    pub fn password_checks(&self) -> u64 {
        self.password_checks.load(Ordering::Relaxed)
    }

    /// Check a user name and password (argon2; always one verification,
    /// against a dummy hash for an unknown name).
    pub fn check_login(&self, user: &str, password: &str) -> bool {
        match self.users.get(user) {
            Some(u) => self.verify(&u.password_hash, password),
            None => {
                self.verify(&self.dummy_hash, password);
                false
            }
        }
    }

    /// `NAME:TOKEN` to the user it authenticates. Always one verification,
    /// against a dummy hash when the name is unknown, has no token, or the
    /// colon is missing, so the time taken does not tell which names exist.
    fn check_bearer(&self, token: &str) -> Option<String> {
        let (name, secret) = token.split_once(':').unwrap_or(("", token));
        let hash = self
            .users
            .get(name)
            .and_then(|u| u.api_token_hash.as_deref());
        let ok = self.verify(hash.unwrap_or(&self.dummy_hash), secret);
        (ok && hash.is_some()).then(|| name.to_string())
    }

    /// The credential fingerprint a session of `u` must carry.
    pub fn fingerprint(&self, u: &config::UserConfig) -> String {
        auth::credential_fingerprint(&u.password_hash, u.api_token_hash.as_deref())
    }

    pub fn cookie(&self, name: &str, value: &str, path: &str, max_age: Option<u64>) -> String {
        let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict");
        if let Some(a) = max_age {
            c.push_str(&format!("; Max-Age={a}"));
        }
        if self.secure_cookies {
            c.push_str("; Secure");
        }
        c
    }

    /// Bytes under the data directory, recounted at most once a minute.
    pub fn store_usage(&self) -> u64 {
        let mut cached = self.store_usage.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, bytes)) = *cached
            && at.elapsed() < Duration::from_secs(60)
        {
            return bytes;
        }
        let bytes = dir_size(&self.data);
        *cached = Some((Instant::now(), bytes));
        bytes
    }
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            // symlink_metadata: do not follow links out of the store.
            if let Ok(m) = e.path().symlink_metadata() {
                if m.is_dir() {
                    stack.push(e.path());
                } else {
                    total += m.len();
                }
            }
        }
    }
    total
}

pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Headers every response gets: no framing, no sniffing, no caching of
/// recordings in shared caches.
async fn hardening(req: Request, next: Next) -> Response {
    const HEADERS: [(&str, &str); 4] = [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        (
            "content-security-policy",
            "default-src 'self'; media-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
        ("referrer-policy", "same-origin"),
    ];
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (name, value) in HEADERS {
        h.insert(name, HeaderValue::from_static(value));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The whole application, for `serve` and for tests (`oneshot`). Routes
/// are grouped by the role they need; the gate in front of all of them
/// lets only `gate::is_public` paths through without a login.
pub fn router(st: Shared) -> Router {
    use handlers as h;
    let public = Router::new()
        .route("/login", get(h::login_page).post(h::login_post))
        .route("/healthz", get(h::healthz))
        .route("/static/style.css", get(h::style))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        // The sensors' tunnels: their own login (HMAC), not a user's.
        .route(
            voxtap_sensor::central::protocol::PATH,
            get(hub::tunnel::connect),
        );
    let viewer = Router::new()
        .route("/", get(|| async { Redirect::to("/calls") }))
        .route("/logout", post(h::logout))
        .route("/logout/everywhere", post(h::logout_everywhere))
        .route("/calls", get(h::calls_page))
        .route("/calls/rows", get(h::calls_rows))
        .route("/calls/export/{name}", get(export::export))
        .route("/calls/saved", post(saved::save))
        .route("/calls/saved/delete", post(saved::delete))
        .route("/api/saved", get(saved::api_list))
        .route("/dashboards", get(dashboards::page))
        .route("/dashboards/calls", get(dashboards::drill))
        .route("/api/dashboard", get(dashboards::api))
        .route("/calls/{id}", get(h::call_page))
        .route("/calls/{id}/sip/{n}", get(h::sip_message))
        // Which downloads need `listener` depends on the kind: checked there.
        .route("/calls/{id}/download/{kind}", get(downloads::download))
        .route("/sensor", get(h::sensor_page))
        .route("/live", get(live_view::page))
        .route("/live/events", get(live_view::events))
        .route("/live/calls/{call_id}", get(live_view::call_page))
        .route("/api/live", get(live_view::api))
        .route("/sensor/status", get(h::sensor_status))
        .route("/api/calls", get(h::api_calls))
        .route("/api/calls/{id}", get(h::api_call))
        .route("/api/calls/{id}/timeline", get(quality::api_timeline))
        .route("/metrics", get(signalling_view::metrics))
        .route("/registrations", get(signalling_view::page))
        .route("/api/registrations", get(signalling_view::api))
        .route("/media", get(media_view::page))
        .route("/alerts", get(alerts::views::page))
        .route("/api/alerts", get(alerts::views::api))
        .route("/sensors", get(hub::sensors::page))
        .route("/api/sensors", get(hub::sensors::api))
        .route("/static/app.js", get(h::script));
    let listener = Router::new()
        .route("/calls/{id}/files/{name}", get(downloads::call_file))
        .route("/calls/{id}/waveform/{name}", get(quality::waveform))
        .route("/media/{id}/files/{name}", get(media_view::file))
        .route("/calls/{id}/correlated/{name}", get(downloads::correlated));
    let operator = Router::new()
        .route(
            "/import",
            get(import::import_page)
                .post(import::import_post)
                // Captures are big; the default 2 MB limit is for forms.
                .layer(DefaultBodyLimit::max(4 << 30)),
        )
        .route("/import/{job}", get(import::job_page))
        .route("/api/import/{job}", get(import::api_job))
        .route("/hosts", get(hosts::hosts_page))
        .route("/hosts/start", post(hosts::start))
        .route("/hosts/stop", post(hosts::stop))
        .route("/api/remote", get(hosts::remote_status))
        .route(
            "/hosts/runs/{run}/sip",
            // The SIP pcap: refused past its limit while it arrives; the
            // body limit only has to let it through.
            post(correlate::add_sip).layer(DefaultBodyLimit::max(
                usize::try_from(st.remote.max_sip_upload())
                    .unwrap_or(usize::MAX)
                    .saturating_add(1 << 20),
            )),
        )
        .route(
            "/hosts/runs/{run}/correlations/{job}",
            get(correlate::correlation_page),
        )
        .route(
            "/hosts/s3/sip",
            post(correlate_s3::add_sip).layer(DefaultBodyLimit::max(
                usize::try_from(st.remote.max_sip_upload())
                    .unwrap_or(usize::MAX)
                    .saturating_add(1 << 20),
            )),
        )
        .route(
            "/hosts/s3/correlations/{job}",
            get(correlate_s3::correlation_page),
        )
        .route("/static/hosts.js", get(hosts::hosts_script));
    let admin = Router::new()
        .route("/admin/users", get(admin::users_page))
        .route("/admin/unlock", post(admin::unlock))
        .route("/admin/logout", post(admin::logout_user))
        .route("/admin/audit", get(admin::audit_page))
        .route("/api/audit", get(admin::api_audit))
        .route("/api/throttle", get(admin::api_throttle))
        .route(
            "/admin/alerts",
            get(alerts::views::admin_page).post(alerts::views::save),
        )
        .route("/admin/alerts/delete", post(alerts::views::delete));
    let needs = |r: Router<Shared>, role: Role| {
        r.route_layer(middleware::from_fn_with_state(role, gate::require_role))
    };
    public
        .merge(needs(viewer, Role::Viewer))
        .merge(needs(listener, Role::Listener))
        .merge(needs(operator, Role::Operator))
        .merge(needs(admin, Role::Admin))
        .layer(middleware::from_fn_with_state(st.clone(), gate::gate))
        .layer(middleware::from_fn(hardening))
        .with_state(st)
}

/// A server listening on its socket; `addr` is the bound address (port 0
/// picks a free one).
pub struct Running {
    pub addr: SocketAddr,
    pub state: Shared,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Bind and start serving in the background.
pub async fn start(opts: ServeOptions) -> Result<Running> {
    let st = AppState::new(&opts)?;
    match &st.hub {
        Some(h) => {
            h.start_maintenance().await?;
            // A hub's alerts watch the fleet, not its own (empty) index.
            st.alerts.spawn_hub(h.clone());
        }
        None => st.alerts.spawn(st.db.clone(), st.data.clone()),
    }
    let listen = opts
        .listen
        .or(opts.config.server.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let app = router(st.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let std_listener =
        std::net::TcpListener::bind(listen).with_context(|| format!("listening on {listen}"))?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let _ = st.listen.set(addr);
    let task = match (&opts.config.server.tls_cert, &opts.config.server.tls_key) {
        (Some(cert), Some(key)) => {
            // ring as the one crypto provider; a second install is harmless.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .with_context(|| {
                    format!(
                        "loading TLS cert {} / key {}",
                        cert.display(),
                        key.display()
                    )
                })?;
            let server = axum_server::from_tcp_rustls(std_listener, tls)?;
            tracing::info!(%addr, data = %st.data.display(), "serving HTTPS");
            tokio::spawn(async move { server.serve(app).await })
        }
        _ => {
            let listener = tokio::net::TcpListener::from_std(std_listener)?;
            if !addr.ip().is_loopback() {
                tracing::warn!(%addr, "serving plain HTTP on a non-loopback address: passwords and recordings cross the network in clear; configure tls_cert/tls_key");
            }
            tracing::info!(%addr, data = %st.data.display(), "serving HTTP");
            tokio::spawn(async move { axum::serve(listener, app).await })
        }
    };
    if st.no_auth.is_some() {
        tracing::warn!(
            "--insecure-no-auth: no login; anyone who reaches {addr} can read and download every call"
        );
    }
    Ok(Running {
        addr,
        state: st,
        task,
    })
}

/// `voxtap serve`: run until Ctrl-C.
pub async fn serve(opts: ServeOptions) -> Result<()> {
    let running = start(opts).await?;
    println!("voxtap web UI on {}", running.addr);
    tokio::select! {
        r = running.task => r.context("server task")?.context("server")?,
        _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
    }
    Ok(())
}
