//! `/metrics`: Prometheus (OpenMetrics text) counters of this process. Labels are low
//! cardinality (never an org, key or prompt).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::logs::LogMetrics;
use crate::router::AppState;

/// Every metric of the process, registered once at start.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Read from the spend writer at each scrape.
    ledger_queue: Gauge,
    ledger_failed_batches: Gauge,
}

impl Metrics {
    pub fn new(logs: &LogMetrics) -> Self {
        let mut registry = Registry::default();
        logs.register(&mut registry);
        let ledger_queue = Gauge::default();
        let ledger_failed_batches = Gauge::default();
        registry.register(
            "portcullis_ledger_queue_depth",
            "Settlements waiting for the ledger writer (never dropped)",
            ledger_queue.clone(),
        );
        registry.register(
            "portcullis_ledger_failed_batches",
            "Ledger batches that PostgreSQL could not take (retried until written)",
            ledger_failed_batches.clone(),
        );
        Self {
            registry,
            ledger_queue,
            ledger_failed_batches,
        }
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let spend = state.spend.writer_stats();
    let metrics = &state.metrics;
    metrics
        .ledger_queue
        .set(i64::try_from(spend.queued).unwrap_or(i64::MAX));
    metrics
        .ledger_failed_batches
        .set(i64::try_from(spend.failed_batches).unwrap_or(i64::MAX));
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &metrics.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
