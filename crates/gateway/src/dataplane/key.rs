//! The virtual key of a data-plane request: `Authorization: Bearer pcv_...`, or `x-api-key`
//! as Anthropic's clients send it. Shape and checksum are checked before any database work;
//! any other kind of credential is 403 `wrong_key_kind` (AC-2).

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use chrono::Utc;
use portcullis_core::token::{Token, TokenKind};
use portcullis_storage::dataplane::{self, LiveKey};
use tracing::Instrument;

use crate::error::ApiError;
use crate::state::AppState;

fn credential(headers: &HeaderMap) -> Result<&str, ApiError> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    bearer
        .or(api_key)
        .map(str::trim)
        .ok_or_else(|| ApiError::unauthenticated("invalid_api_key", "missing API key"))
}

/// Authenticates in its own `auth` span, and records the key's org on it and on the request's
/// span.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<LiveKey, ApiError> {
    let span = tracing::info_span!("auth", org_id = tracing::field::Empty);
    let key = find(state, headers).instrument(span.clone()).await?;
    let org = tracing::field::display(key.org_id);
    span.record("org_id", &org);
    tracing::Span::current().record("org_id", &org);
    Ok(key)
}

async fn find(state: &AppState, headers: &HeaderMap) -> Result<LiveKey, ApiError> {
    let token = Token::parse(credential(headers)?)
        .map_err(|_| ApiError::unauthenticated("invalid_api_key", "malformed API key"))?;
    if token.kind() != TokenKind::Virtual {
        return Err(ApiError::forbidden(
            "wrong_key_kind",
            "the data plane takes virtual keys only; master keys and sessions administer",
        ));
    }
    let hash = token.hash();
    let key = match state.caches.key(&hash) {
        Some(key) => key,
        None => {
            let fill = state.caches.fill_started();
            let key = dataplane::live_key(&state.db, &hash)
                .await?
                .ok_or_else(|| {
                    ApiError::unauthenticated("invalid_api_key", "unknown or revoked API key")
                })?;
            state.caches.before_insert().await;
            state.caches.put_key(&hash, key.clone(), fill);
            key
        }
    };
    if key.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(ApiError::unauthenticated(
            "key_expired",
            "this API key has expired",
        ));
    }
    Ok(key)
}
