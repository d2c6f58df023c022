//! Building and running mnemo, in the order that makes leaks impossible:
//! config → migrations → the persistence actor (on its own arbiter) → HTTP bind; and on
//! shutdown: stop accepting, let in-flight requests finish (bounded) → close the pool → exit.
//! `main` and the tests build the very same [`Application`].

use std::future::Future;
use std::net::TcpListener;

use std::sync::Arc;

use actix::{Actor, Arbiter};
use actix_web::dev::Server;
use actix_web::middleware::{Logger, from_fn};
use actix_web::{App, HttpServer, web};
use tokio::sync::watch;

use crate::agent::Model;
use crate::auth::Authenticator;
use crate::body_budget::BodyBudget;
use crate::browser::BrowserPolicy;
use crate::config::{Config, redact_url};
use crate::error::{json_error, path_error, query_error};
use crate::metrics::Metrics;
use crate::persistence::{
    Backend, DbPool, Persistence, PersistenceActor, index_store_fields, run_migrations,
};
use crate::routes;
use crate::runs::Runner;

/// A built, bound, not yet serving mnemo.
pub struct Application {
    port: u16,
    server: Server,
    persistence: Persistence,
    runner: Runner,
    arbiter: Arbiter,
    config: Config,
    stop_background: watch::Sender<bool>,
}

impl Application {
    /// Migrates the database, starts the actor and binds the listener (`port` 0 picks one).
    pub async fn build(config: Config) -> Result<Application, String> {
        crate::install_crypto_provider();
        let auth_settings = crate::auth::settings_from(&config)?;
        let browser = BrowserPolicy::from_config(&config, auth_settings.is_some())?;
        let (persistence, arbiter) = open_persistence(&config).await?;
        // written before the first request when the database allows; else as soon as it does
        let system_written = write_system_assistants(&persistence).await;
        let model = Model::from_config(&config)?;
        let runner = Runner::new(
            persistence.clone(),
            model,
            crate::runs::Settings {
                run_timeout: config.run_timeout(),
                lease: config.run_lease(),
                workers: config.run_workers as usize,
                max_attempts: config.run_max_attempts as i32,
                quotas: crate::runs::Quotas {
                    active_runs_per_user: config.max_active_runs_per_user,
                    pending_runs_per_thread: config.max_pending_runs_per_thread,
                    streams_per_user: config.max_streams_per_user,
                },
            },
        );

        let listener = TcpListener::bind((config.host.as_str(), config.port))
            .map_err(|e| format!("while binding {}:{}: {e}", config.host, config.port))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();

        let data = web::Data::new(persistence.clone());
        let runs = web::Data::new(runner.clone());
        let metrics = web::Data::new(Metrics::default());
        let auth = Authenticator::new(auth_settings, persistence.clone());
        let auth_data = web::Data::new(Arc::clone(&auth));
        let browser_data = web::Data::new(browser.clone());
        let max_body = config.max_body_bytes;
        let body_budget = web::Data::new(BodyBudget::new(config.body_budget_bytes, max_body));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(runs.clone())
                .app_data(metrics.clone())
                .app_data(auth_data.clone())
                .app_data(browser_data.clone())
                .app_data(body_budget.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(max_body)
                        .content_type_required(true)
                        .error_handler(json_error),
                )
                .app_data(web::PayloadConfig::default().limit(max_body))
                .app_data(web::QueryConfig::default().error_handler(query_error))
                .app_data(web::PathConfig::default().error_handler(path_error))
                // innermost: only requests the middlewares wrapped after it let through are charged
                .wrap(from_fn(crate::body_budget::charge_bodies))
                .wrap(from_fn(crate::limits::json_body))
                .wrap(from_fn(crate::limits::refuse_nul))
                .wrap(from_fn(crate::auth::authenticate))
                .wrap(from_fn(crate::browser::check_browser))
                .wrap(from_fn(crate::metrics::count))
                .wrap(browser.cors())
                .wrap(Logger::new("%r %s %b %Dms"))
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .workers(
            config
                .workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        )
        .shutdown_timeout(config.shutdown_timeout().as_secs())
        // a stream's small writes go out at once (else Nagle holds each for the client's ACK)
        .on_connect(|conn, _| {
            if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
                let _ = tcp.set_nodelay(true);
            }
        })
        // mnemo handles SIGTERM/SIGINT itself so that the pool closes after the last request
        // notice an SSE client that leaves at once, not after writes fail
        .h1_allow_half_closed(false)
        .disable_signals()
        .listen(listener)
        .map_err(|e| format!("while listening: {e}"))?
        .run();

        let (stop_background, stop_rx) = watch::channel(false);
        auth.spawn_watcher(stop_rx.clone());
        spawn_sweeper(
            persistence.clone(),
            config.store_sweep_interval(),
            stop_rx.clone(),
        );
        // runs left running by a process that is gone are taken back from the first tick, and
        // the queue is looked at then
        if !system_written {
            spawn_system_assistants_writer(persistence.clone(), stop_rx.clone());
        }
        runner.spawn_lease_keeper(stop_rx.clone());
        runner.spawn_executor(stop_rx.clone());
        let waker = runner.clone();
        let wake: crate::persistence::Wake = Box::new(move |notice| waker.notified(notice));
        match Sessions::of(&config)? {
            Sessions::Available => {
                crate::persistence::spawn_listener(config.session_url(), wake, stop_rx)?
            }
            Sessions::Unavailable => {
                log::warn!(
                    "DATABASE_URL says pgbouncer=true and MNEMO_PG_DIRECT_URL is not set: no \
                     session of its own, so mnemo cannot LISTEN. Other processes on this \
                     database (replicas) are not notified of each other's changes; their \
                     runs' ends, cancels and stored events are seen here by polling every \
                     {} ms instead (and by lease renewals). Migrations ran under a \
                     transaction-scoped lock. Set MNEMO_PG_DIRECT_URL to a direct Postgres \
                     URL of the same database to be notified at once.",
                    UNHEARD_POLL.as_millis()
                );
                spawn_unheard_poller(wake, stop_rx);
            }
        }

        Ok(Application {
            port,
            server,
            persistence,
            runner,
            arbiter,
            config,
            stop_background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves, then stops gracefully and closes the pool.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + 'static,
    ) -> std::io::Result<()> {
        let Application {
            port,
            server,
            persistence,
            runner,
            arbiter,
            config,
            stop_background,
        } = self;
        let stats = persistence.pool_stats().await.ok();
        log::info!(
            "mnemo listening on {}:{port} (backend {}, database {}, pool max {}, model {})",
            config.host,
            persistence.backend().name(),
            redact_url(&config.database_url),
            stats.map_or(config.pool_max, |s| s.max_size),
            config.llm,
        );
        let handle = server.handle();
        let grace = config.shutdown_timeout();
        let stopping_runs = runner.clone();
        actix_web::rt::spawn(async move {
            shutdown.await;
            log::info!("shutting down: no new connections, finishing in-flight requests");
            let _ = stop_background.send(true);
            // runs execute on the HTTP workers, and a worker with no request left in flight
            // exits at once, dropping them: they end (marked interrupted, their streams
            // closed) before the workers are told to stop, and before the pool closes
            handle.pause().await;
            stopping_runs.shutdown(grace).await;
            handle.stop(true).await;
        });
        let served = server.await;
        // the HTTP side may be done before the runs are (their clients had left): they end
        // before the pool closes
        runner.shutdown(config.shutdown_timeout()).await;
        match persistence.shutdown(config.shutdown_timeout()).await {
            Ok(r) => log::info!(
                "mnemo stopped: pool closed (connections before {}, after {}, waited {} ms)",
                r.size_before,
                r.size_after,
                r.waited_ms
            ),
            Err(e) => log::warn!("mnemo stopped: closing the pool failed: {e:?}"),
        }
        arbiter.stop();
        let _ = arbiter.join();
        served
    }
}

/// Migrates the database and starts the persistence actor on its own arbiter. The caller
/// closes it with [`Persistence::shutdown`], then stops the arbiter.
pub async fn open_persistence(config: &Config) -> Result<(Persistence, Arbiter), String> {
    let backend = Backend::of_url(&config.database_url)?;
    Sessions::of(config)?;
    let applied = run_migrations(config.session_url())
        .await
        .map_err(|e| format!("while migrating {}: {e}", redact_url(config.session_url())))?;
    if applied > 0 {
        log::info!("applied {applied} migration(s)");
    }
    index_store_fields(config.session_url(), &config.store_indexed_fields).await?;
    let pool = DbPool::build(config).map_err(|e| format!("while building the pool: {e}"))?;
    let arbiter = Arbiter::new();
    let addr =
        PersistenceActor::start_in_arbiter(&arbiter.handle(), move |_| PersistenceActor::new(pool));
    let persistence = Persistence::new(addr, backend).with_page_max_bytes(config.page_max_bytes);
    Ok((persistence, arbiter))
}

/// Whether mnemo has database sessions of its own for what needs one (LISTEN, the migrations'
/// session lock): always, unless `DATABASE_URL` names PgBouncer in transaction mode
/// (`pgbouncer=true`) and no `MNEMO_PG_DIRECT_URL` is given.
enum Sessions {
    Available,
    Unavailable,
}

impl Sessions {
    fn of(config: &Config) -> Result<Sessions, String> {
        let pooled = crate::persistence::behind_pgbouncer(&config.database_url)?;
        if let Some(direct) = &config.pg_direct_url {
            if Backend::of_url(direct)? != Backend::Postgres {
                return Err("MNEMO_PG_DIRECT_URL must be a postgres:// URL".into());
            }
            if crate::persistence::behind_pgbouncer(direct)? {
                return Err(
                    "MNEMO_PG_DIRECT_URL must not say pgbouncer=true: it is the URL of \
                            a direct connection to Postgres"
                        .into(),
                );
            }
            if Backend::of_url(&config.database_url)? != Backend::Postgres {
                return Err("MNEMO_PG_DIRECT_URL is set but DATABASE_URL is not Postgres".into());
            }
            return Ok(Sessions::Available);
        }
        Ok(if pooled {
            Sessions::Unavailable
        } else {
            Sessions::Available
        })
    }
}

/// Without a listener on Postgres (behind PgBouncer with no direct URL), how often everything
/// that waits on other processes looks again.
const UNHEARD_POLL: std::time::Duration = std::time::Duration::from_millis(1000);

/// Stands in for the listener where mnemo cannot LISTEN: every [`UNHEARD_POLL`] it says that
/// notifications may have been missed, so queued runs, `join`s and rejoined streams of runs
/// executed elsewhere, and runs cancelled through another process, look again.
fn spawn_unheard_poller(wake: crate::persistence::Wake, mut stop: watch::Receiver<bool>) {
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(UNHEARD_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => wake(crate::persistence::Notice::Missed),
                _ = stop.changed() => break,
            }
        }
    });
}

/// Writes each graph's system assistant unless it exists; whether that was done.
async fn write_system_assistants(db: &Persistence) -> bool {
    let system = crate::graphs::GRAPHS.iter().map(|g| g.system_assistant());
    match db.ensure_system_assistants(system.collect()).await {
        Ok(()) => true,
        Err(e) => {
            log::warn!("the system assistants could not be written yet: {e:?}");
            false
        }
    }
}

/// Until they are written (or mnemo stops): tries again to write the system assistants, backing
/// off from 100 ms to 5 s.
fn spawn_system_assistants_writer(db: Persistence, mut stop: watch::Receiver<bool>) {
    actix_web::rt::spawn(async move {
        let mut backoff = std::time::Duration::from_millis(100);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            if write_system_assistants(&db).await {
                log::info!("the system assistants are written");
                return;
            }
            backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
        }
    });
}

/// Every `interval` until told to stop: deletes expired store items.
fn spawn_sweeper(db: Persistence, interval: std::time::Duration, mut stop: watch::Receiver<bool>) {
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    match db.sweep_expired().await {
                        Ok(0) => {}
                        Ok(n) => log::info!("store sweeper deleted {n} expired item(s)"),
                        Err(e) => log::warn!("store sweeper: {e:?}"),
                    }
                }
                _ = stop.changed() => break,
            }
        }
    });
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
