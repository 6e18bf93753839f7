//! The application router.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::get;

use crate::error::ApiError;
use crate::state::AppState;
use crate::{
    admin, authn, browser, console, dataplane, headers, health, metrics, openapi, request_id,
};

/// Admin and auth bodies are small documents; prompts go to the data plane.
const ADMIN_MAX_BODY: usize = 64 * 1024;

/// `/metrics` alone, for an operator's listener (`server.metrics_listen`).
pub(crate) fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::metrics))
        .with_state(state)
}

pub fn router(state: AppState) -> Router {
    let people = authn::router()
        .merge(admin::router(&state))
        .route("/admin/v1/openapi.json", get(openapi::openapi))
        .layer(DefaultBodyLimit::max(ADMIN_MAX_BODY))
        // Before any handler: a cookie session's write without its CSRF token does nothing.
        .layer(middleware::from_fn(browser::require_csrf));
    let mut main = Router::new();
    if !state.metrics_elsewhere {
        main = main.route("/metrics", get(metrics::metrics));
    }
    if state.console {
        main = main.merge(console::router());
    }
    main.route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(people)
        .merge(dataplane::router())
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state.clone())
        // Every answer, the fallbacks' 404 and 405 included (static values: cheap).
        .layer(middleware::map_response_with_state(
            state.clone(),
            headers::security,
        ))
        .layer(middleware::from_fn_with_state(state, metrics::track))
        .layer(middleware::from_fn(request_id::layer))
}
