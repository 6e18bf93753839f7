//! The data plane of API.md, authenticated by virtual key: `/v1/chat/completions` (stream or
//! not), `/v1/embeddings`, `/v1/messages` (Anthropic's format), `/v1/responses` (OpenAI's
//! Responses format), `/v1/models`, and an envelope 404 for endpoints not served yet.

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
use crate::router::AppState;

/// Endpoints that OpenAI and Anthropic clients call which this gateway does not serve yet.
const NOT_YET: [&str; 2] = ["/v1/completions", "/v1/messages/count_tokens"];

/// Every endpoint that carries a prompt to a provider. Each reaches the provider only through
/// `funnel::serve_alias`, past the guardrail, the bounds and the reservation, and into the
/// request log; tests iterate this list.
fn served() -> [(&'static str, MethodRouter<AppState>); 4] {
    [
        ("/v1/chat/completions", post(chat::completions)),
        ("/v1/embeddings", post(chat::embeddings)),
        ("/v1/messages", post(chat::messages)),
        ("/v1/responses", post(chat::responses)),
    ]
}

/// The paths of `served()`.
pub fn prompt_routes() -> Vec<&'static str> {
    served().into_iter().map(|(path, _)| path).collect()
}

pub fn router() -> Router<AppState> {
    let mut router = Router::new().route("/v1/models", get(chat::models));
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
