//! Liveness and readiness (AV-3).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::state::AppState;

/// Readiness must answer quickly even when PostgreSQL hangs.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The process can serve: PostgreSQL answers and its migrations match this binary.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match tokio::time::timeout(READY_TIMEOUT, state.db.readiness()).await {
        Ok(Ok(())) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Ok(Err(error)) => {
            tracing::warn!(%error, "not ready");
            not_ready("database unreachable or migrations not current")
        }
        Err(_) => {
            tracing::warn!("not ready: database did not answer in time");
            not_ready("database did not answer in time")
        }
    }
}

fn not_ready(reason: &str) -> (StatusCode, Json<Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "not_ready", "reason": reason})),
    )
}
