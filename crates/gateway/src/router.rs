//! The application router and its shared state.

use axum::Router;
use axum::middleware;
use axum::routing::get;
use portcullis_storage::Db;

use crate::error::ApiError;
use crate::{health, request_id};

/// What every handler may reach. Cloned per request, so it holds only cheap handles.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: Db,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(middleware::from_fn(request_id::layer))
}
