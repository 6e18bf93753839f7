//! `portcullis serve`: check the database role, bind, serve, drain on a signal.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use portcullis_gateway::tls::Tls;
use portcullis_gateway::{AppState, ServeOptions};
use portcullis_storage::{Db, DbOptions, StorageError};
use tokio::net::TcpListener;

use crate::config::Config;

pub async fn run(config: Config) -> anyhow::Result<()> {
    run_with(config, |_| ()).await
}

/// Serves, calling `on_listening` with the bound address once the listener is up.
pub async fn run_with(config: Config, on_listening: impl FnOnce(SocketAddr)) -> anyhow::Result<()> {
    let options = DbOptions {
        url: config.database.url()?.clone(),
        max_connections: config.database.max_connections,
        acquire_timeout: config.database.acquire_timeout,
        tls_mode: config.database.tls_mode.clone(),
        tls_ca_file: config.database.tls_ca_file.clone(),
    };
    let keyring = config.secrets.keyring()?;
    let tls = match (&config.server.tls, config.server.plaintext) {
        (Some(files), _) => Some(Tls::load(files.clone())?),
        (None, true) => None,
        (None, false) => anyhow::bail!(
            "no TLS certificate: set server.tls_cert_file and server.tls_key_file, or \
             server.plaintext = true if a TLS-terminating proxy is in front"
        ),
    };
    let db = Db::connect_lazy(&options)?;
    check_role(&db, config.database.startup_timeout).await?;
    crate::canary::check(&db, &keyring).await?;
    match db.uses_tls().await {
        Ok(true) => tracing::info!("database connections are encrypted"),
        Ok(false) => tracing::warn!(
            "database connections are not encrypted: set database.tls_mode = \"verify-full\" \
             unless PostgreSQL is on this host"
        ),
        Err(error) => {
            tracing::warn!(%error, "cannot tell whether database connections are encrypted")
        }
    }

    // Bound before the state is built: the state's egress rules must name this process's own
    // addresses (a port of 0 is chosen here). Nothing is accepted until `serve` below.
    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    let metrics_listener = match config.server.metrics_listen {
        Some(metrics_addr) => {
            Some(TcpListener::bind(metrics_addr).await.with_context(|| {
                format!("cannot listen on {metrics_addr} (server.metrics_listen)")
            })?)
        }
        None => None,
    };
    let mut egress = config.providers.egress.clone();
    if egress.destinations.allow_link_local {
        tracing::warn!(
            "providers.allow_link_local: provider keys may be sent to link-local addresses"
        );
    }
    if !egress.destinations.allow_private.is_empty() {
        let ranges: Vec<String> = egress
            .destinations
            .allow_private
            .iter()
            .map(ToString::to_string)
            .collect();
        tracing::info!(
            ranges = %ranges.join(", "),
            "providers.allow_private_networks: provider base URLs may name these ranges"
        );
    }
    // The gateway is never its own upstream.
    egress.destinations.own.push(addr);
    if let Some(metrics) = &metrics_listener {
        egress.destinations.own.push(metrics.local_addr()?);
    }
    tracing::info!(version = %config.spend.prices.version, "price table loaded");
    let state = AppState::builder(db.clone(), keyring, config.spend.clone())
        .trusted_proxies(config.server.trusted_proxies.clone())
        .log_options(config.logs.clone())
        .throttle_limits(config.throttle)
        .egress(egress)
        .serving_tls(tls.is_some())
        .body_read_timeout(config.server.body_read_timeout)
        .metrics_elsewhere(metrics_listener.is_some())
        .console(config.server.console)
        .build()
        .context("building the gateway's state")?;
    let background = state.background.clone();
    match &tls {
        Some(tls) => {
            tls.spawn_reload(&background, config.server.tls_reload);
            tracing::info!(%addr, "serving TLS (HTTP/2 and HTTP/1.1)");
        }
        None => tracing::warn!(
            %addr,
            "serving plaintext HTTP (server.plaintext): a TLS-terminating proxy must be in front"
        ),
    }
    if let Some(listener) = metrics_listener {
        tracing::info!(addr = %listener.local_addr()?, "metrics listening");
        let metrics_state = state.clone();
        background.spawn_loop(async move {
            if let Err(error) = portcullis_gateway::serve_metrics(listener, metrics_state).await {
                tracing::warn!(%error, "the metrics listener stopped");
            }
        });
    }
    portcullis_gateway::dataplane::spawn_change_listener(&state);
    portcullis_gateway::logs::spawn_retention(
        &background,
        db.clone(),
        config.logs.retention_interval,
    );
    let spend = std::sync::Arc::clone(&state.spend);
    let logs = state.logs.clone();
    let serving = ServeOptions {
        grace: config.server.shutdown_grace,
        tls,
        header_read_timeout: config.server.header_read_timeout,
        max_connections: config.server.max_connections,
        http2_max_streams: config.server.http2_max_streams,
        max_header_bytes: config.server.max_header_bytes,
    };
    tracing::info!(%addr, "listening");
    on_listening(addr);
    portcullis_gateway::serve(listener, state, shutdown_signal(), serving)
        .await
        .context("server failed")?;
    // The writers get one more grace period in all, not one each: an orchestrator's kill
    // timeout is about twice the grace period.
    let deadline = tokio::time::Instant::now() + config.server.shutdown_grace;
    let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
    // Settled requests reach the ledger, and this process's leases go back, before it exits.
    if tokio::time::timeout_at(deadline, spend.close())
        .await
        .is_err()
    {
        tracing::error!(
            pending = spend.writer_stats().queued,
            "the ledger writer did not finish within the shutdown grace period"
        );
    }
    if !logs.flush(left()).await {
        tracing::error!("the request-log writer did not finish within the shutdown grace period");
    }
    // Then the loops stop, the writers end, and audit entries written after their answer
    // (failed logins, refusal summaries) are waited for.
    if !background.finish(left()).await {
        tracing::error!("background work did not finish within the shutdown grace period");
    }
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Refuses to serve as a role that would make row-level security decorative (AC-3). Waits
/// for PostgreSQL up to the start-up timeout, so that gateway and database can start together.
async fn check_role(db: &Db, timeout: Duration) -> anyhow::Result<()> {
    let started = tokio::time::Instant::now();
    loop {
        match db.ensure_safe_role().await {
            Ok(check) => {
                tracing::info!(role = %check.role, "database role checked: no RLS bypass");
                return Ok(());
            }
            Err(StorageError::Unavailable(error)) if started.elapsed() < timeout => {
                tracing::warn!(%error, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error).context("database start-up check failed"),
        }
    }
}

async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
