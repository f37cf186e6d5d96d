//! The segstream server: the `segstream.v1.Segstream` gRPC service over one embedded
//! engine, with the standard health service and reflection, an optional bearer token and
//! TLS, request size limits, a wall-clock ticker that applies time-driven changes within
//! a bounded delay, and Prometheus metrics over HTTP.

pub mod auth;
pub mod convert;
pub mod metrics;
pub mod service;
pub mod shared;
pub mod subscribe;
#[cfg(test)]
mod test_support;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use segstream_engine::{ChangeLogRetention, ClockMode, Engine, EngineOptions};
use segstream_proto::v1::segstream_server::SegstreamServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::auth::BearerAuth;
use crate::service::SegstreamService;
use crate::shared::Shared;

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub clock: ClockMode,
    /// gRPC address (port 0 picks a free port; [`serve`] reports the real one).
    pub addr: SocketAddr,
    /// Prometheus endpoint address; `None` serves no metrics.
    pub metrics_addr: Option<SocketAddr>,
    /// When set, calls must carry `authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Serve TLS with this certificate chain and private key (PEM files).
    pub tls: Option<TlsFiles>,
    /// Largest request accepted, in bytes.
    pub max_request_bytes: usize,
    /// With the wall clock: the least time between two catch-ups of the clock (timers due
    /// close together fire in one step), so a time-driven change is applied at most this
    /// long after its instant. The clock is caught up when a timer comes due, not polled.
    pub timer_delay: Duration,
    /// Group commit (default): concurrent calls share one journal sync. Off: every step
    /// syncs on its own.
    pub group_commit: bool,
    /// How much of each segment's change log is kept (unlimited by default); a
    /// subscriber resuming from a dropped change is told to resnapshot.
    pub change_log_retention: ChangeLogRetention,
    /// How long an ingest's idempotency key is remembered: a retry within it is applied
    /// once; keys older than it are dropped, so they do not accumulate.
    pub idempotency_window: Duration,
    /// How often events past their stream's retention are deleted and the change logs
    /// trimmed to `change_log_retention`.
    pub retention_interval: Duration,
    /// Bytes of hot operator state kept in memory in front of RocksDB.
    pub state_cache_bytes: usize,
    /// How often state held in memory is checkpointed to RocksDB.
    pub checkpoint_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ServerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            clock: ClockMode::Wall,
            addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            token: None,
            tls: None,
            max_request_bytes: 16 * 1024 * 1024,
            timer_delay: Duration::from_millis(5),
            group_commit: true,
            change_log_retention: ChangeLogRetention::default(),
            idempotency_window: Duration::from_secs(24 * 3600),
            retention_interval: Duration::from_secs(1),
            state_cache_bytes: segstream_engine::DEFAULT_STATE_CACHE_BYTES,
            checkpoint_interval: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Engine(#[from] segstream_types::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(String),
}

/// Where a started server listens.
#[derive(Debug, Clone, Copy)]
pub struct Listening {
    pub grpc: SocketAddr,
    pub metrics: Option<SocketAddr>,
}

/// Opens the data directory and serves until `shutdown` completes; `on_listening` is
/// told the real addresses once both listeners are bound.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(Listening),
) -> Result<(), ServerError> {
    let engine = Engine::open(
        EngineOptions::new(&config.data_dir)
            .with_clock(config.clock)
            .with_group_commit(config.group_commit)
            .with_state_cache_bytes(config.state_cache_bytes)
            .with_checkpoint_interval(config.checkpoint_interval),
    )?;
    let shared = Shared::new(engine);

    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServerError::Bind { addr: config.addr, source })?;
    let grpc = listener.local_addr().map_err(|source| ServerError::Bind { addr: config.addr, source })?;
    let mut metrics = None;
    let mut background = Vec::new();
    if let Some(addr) = config.metrics_addr {
        let listener = TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
        metrics = Some(listener.local_addr().map_err(|source| ServerError::Bind { addr, source })?);
        background.push(tokio::spawn(metrics::serve_metrics(listener, Arc::clone(&shared.metrics))));
    }
    if config.clock == ClockMode::Wall {
        background.push(tokio::spawn(tick_wall_clock(Arc::clone(&shared), config.timer_delay)));
    }
    background.push(tokio::spawn(apply_retention(
        Arc::clone(&shared),
        config.change_log_retention,
        config.idempotency_window,
        config.retention_interval,
    )));

    let service = SegstreamServer::new(SegstreamService::new(Arc::clone(&shared)))
        .max_decoding_message_size(config.max_request_bytes);
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<SegstreamServer<SegstreamService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(segstream_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;

    let mut builder = Server::builder();
    if let Some(tls) = &config.tls {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| ServerError::ReadFile { path: path.clone(), source })
        };
        let identity = Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
        builder = builder.tls_config(ServerTlsConfig::new().identity(identity))?;
    }
    let auth = BearerAuth::new(config.token.as_deref());
    let router = builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(tonic::service::interceptor::InterceptedService::new(service, auth));
    on_listening(Listening { grpc, metrics });
    // No Nagle: a change or an acknowledgement is one small write that must leave at once,
    // not wait for the peer's (delayed, up to 40 ms) ACK of the previous one.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let result = router.serve_with_incoming_shutdown(incoming, shutdown).await;
    for task in background {
        task.abort();
    }
    // A clean shutdown checkpoints, so the next start replays nothing.
    if let Err(e) = shared.read().await.checkpoint() {
        eprintln!("segstream: the checkpoint at shutdown failed (the journal keeps every step): {e}");
    }
    result?;
    Ok(())
}

/// Every `interval`: deletes the events retained streams have let go of, the
/// idempotency keys older than their window, and what the change-log retention no longer
/// keeps. Unsynced like any step: what a crash loses is simply done again.
async fn apply_retention(
    shared: Arc<Shared>,
    change_logs: ChangeLogRetention,
    idempotency_window: Duration,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let mut step = shared.step().await;
        // With the manual clock this is the only ticker: checkpoints of an idle engine.
        step.checkpoint_if_due();
        if let Err(e) = step.drop_expired_events() {
            eprintln!("segstream: deleting events past their stream's retention failed (will retry): {e}");
        }
        if let Err(e) = step.expire_idempotency_keys(idempotency_window) {
            eprintln!("segstream: dropping old idempotency keys failed (will retry): {e}");
        }
        if change_logs.is_unlimited() {
            continue;
        }
        if let Err(e) = step.trim_change_logs(&change_logs) {
            eprintln!("segstream: trimming the change logs failed (will retry): {e}");
        }
    }
}

/// With the wall clock, applies time-driven changes as they come due, so members leave
/// windows on time with no event arriving. The ticker sleeps until the next timer is due,
/// until a step sets an earlier one (`Shared::ticker_wake`), or for at most a second (an
/// idle engine still checkpoints on time): an idle server wakes once a second, not once
/// per `delay`. `delay` is the least time between two catch-ups, so timers due close
/// together fire in one step; a change is applied at most that long after its instant,
/// plus the step's own time.
async fn tick_wall_clock(shared: Arc<Shared>, delay: Duration) {
    const IDLE: Duration = Duration::from_secs(1);
    loop {
        let started = tokio::time::Instant::now();
        let mut step = shared.step().await;
        if let Err(e) = step.catch_up_with_wall_clock() {
            eprintln!("segstream: applying time-driven changes failed (will retry): {e}");
        }
        // An idle engine still writes what it holds in memory to RocksDB on time.
        step.checkpoint_if_due();
        let due = step.next_timer_due().unwrap_or_else(|e| {
            eprintln!("segstream: finding the next time-driven change failed (will retry): {e}");
            None
        });
        shared.ticker_sleeps_until(due);
        drop(step);
        if let Err(e) = shared.commit().await {
            eprintln!("segstream: syncing time-driven changes failed (will retry): {e}");
        }
        let until_due = due.map(|at| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
            Duration::from_nanos(u64::try_from(at.nanos().saturating_sub(now)).unwrap_or(0))
        });
        let wake =
            (started + delay).max(tokio::time::Instant::now() + until_due.map_or(IDLE, |d| d.min(IDLE)));
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = shared.ticker_wake.notified() => tokio::time::sleep_until(started + delay).await,
        }
    }
}
