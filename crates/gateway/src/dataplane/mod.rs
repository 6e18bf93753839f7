//! The data plane of API.md, authenticated by virtual key: `/v1/chat/completions` (stream or
//! not), `/v1/embeddings`, `/v1/messages` (Anthropic's format) with its `count_tokens`,
//! `/v1/responses` (OpenAI's Responses format), `/v1/completions` (legacy), `/v1/models`, and
//! an envelope 404 for endpoints not served yet.

mod answer;
mod cache;
mod chat;
mod funnel;
pub mod head;
mod key;
pub mod plan;
mod prompt;

use axum::Router;
use axum::routing::{MethodRouter, get, post};

pub use cache::{Caches, spawn_change_listener};

use crate::error::ApiError;
use crate::state::AppState;

/// Every endpoint that carries a prompt to a provider. Each reaches the provider only through
/// `funnel::serve_alias`, past the guardrail, the bounds and the reservation, and into the
/// request log; tests iterate this list.
fn served() -> [(&'static str, MethodRouter<AppState>); 5] {
    [
        ("/v1/chat/completions", post(chat::completions)),
        ("/v1/embeddings", post(chat::embeddings)),
        ("/v1/messages", post(chat::messages)),
        ("/v1/responses", post(chat::responses)),
        ("/v1/completions", post(chat::completions_legacy)),
    ]
}

/// The paths of `served()`.
pub fn prompt_routes() -> Vec<&'static str> {
    served().into_iter().map(|(path, _)| path).collect()
}

/// Endpoints that OpenAI clients call which this gateway does not serve yet: an envelope 404
/// that says so, rather than a bare one.
pub const NOT_YET: [&str; 6] = [
    "/v1/images/generations",
    "/v1/audio/speech",
    "/v1/audio/transcriptions",
    "/v1/moderations",
    "/v1/files",
    "/v1/batches",
];

pub fn router() -> Router<AppState> {
    // A count is no completion: it asks a provider only to count (after the guardrail, under
    // the rate limit, into the request log), so it is served apart from the funnel.
    let mut router = Router::new()
        .route("/v1/models", get(chat::models))
        .route("/v1/messages/count_tokens", post(chat::count_tokens));
    for (path, handler) in served() {
        router = router.route(path, handler);
    }
    for path in NOT_YET {
        router = router.route(path, axum::routing::any(unsupported));
    }
    // The handlers read their bodies themselves, after the key (`chat::keyed_body`).
    router
}

async fn unsupported() -> ApiError {
    ApiError::NotFound {
        code: "unsupported_endpoint",
        message: "this endpoint is not served by this gateway yet".to_owned(),
    }
}
