//! Who is calling: the credential of `Authorization: Bearer`, checked for shape before any
//! database work, then for kind (AC-2), then looked up by hash.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use chrono::{DateTime, Utc};
use portcullis_core::audit::{Actor, ActorKind};
use portcullis_core::token::{Token, TokenKind};
use portcullis_core::{KeyId, SessionId, UserId};
use portcullis_storage::auth::{self, SessionKind};

use crate::error::ApiError;
use crate::state::AppState;

/// An authenticated principal of the admin and auth planes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The platform operator: acts on every org as an owner would.
    MasterKey(KeyId),
    /// A person, through a login session.
    User {
        user_id: UserId,
        session_id: SessionId,
        mfa_verified: bool,
        /// When the session began: an org may have ended its person's sessions since, or
        /// hold it to a shorter lifetime.
        started_at: DateTime<Utc>,
        /// When it was last let through, before this request: an org's idle limit.
        last_seen_at: DateTime<Utc>,
    },
}

impl Principal {
    pub fn actor(&self) -> Actor {
        match self {
            Principal::MasterKey(key) => Actor {
                kind: ActorKind::MasterKey,
                id: key.to_string(),
            },
            Principal::User { user_id, .. } => Actor {
                kind: ActorKind::User,
                id: user_id.to_string(),
            },
        }
    }

    pub fn user_id(&self) -> Option<UserId> {
        match self {
            Principal::User { user_id, .. } => Some(*user_id),
            Principal::MasterKey(_) => None,
        }
    }
}

/// The bearer token, parsed; without an `Authorization` header, a browser's session cookie
/// (whose state-changing calls `browser::require_csrf` has already checked). Neither, or a
/// malformed token, is 401.
pub fn bearer(headers: &HeaderMap) -> Result<Token, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        let cookie = crate::browser::session(headers)
            .ok_or_else(|| ApiError::unauthenticated("invalid_api_key", "missing credential"))?;
        return Token::parse(cookie.trim())
            .map_err(|_| ApiError::unauthenticated("invalid_session", "malformed session cookie"));
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthenticated("invalid_api_key", "malformed credential"))?;
    let text = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| {
            ApiError::unauthenticated("invalid_api_key", "expected a Bearer credential")
        })?;
    Token::parse(text.trim())
        .map_err(|_| ApiError::unauthenticated("invalid_api_key", "malformed credential"))
}

fn wrong_kind(given: TokenKind, expected: &str) -> ApiError {
    let message = match given {
        TokenKind::Virtual => {
            format!("this route takes {expected}; virtual keys are for the data plane only")
        }
        _ => format!("this route takes {expected}"),
    };
    ApiError::forbidden("wrong_key_kind", message)
}

/// A master key or a live session: what the admin plane accepts.
pub async fn admin_principal(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let token = bearer(headers)?;
    match token.kind() {
        TokenKind::Master => master(state, &token).await,
        TokenKind::Session => session(state, &token).await,
        other => Err(wrong_kind(other, "a session token or the master key")),
    }
}

/// A live session only: what the auth routes of a person accept. The use is recorded.
pub async fn session_principal(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    let token = bearer(headers)?;
    let principal = match token.kind() {
        TokenKind::Session => session(state, &token).await?,
        other => return Err(wrong_kind(other, "a session token")),
    };
    touch(state, &principal).await?;
    Ok(principal)
}

/// Records that a session was let through: its idle time starts again. Called once every
/// check of the request passed, so that a refused request is no use.
pub async fn touch(state: &AppState, principal: &Principal) -> Result<(), ApiError> {
    if let Principal::User { session_id, .. } = principal {
        auth::touch_session(&state.db, *session_id).await?;
    }
    Ok(())
}

async fn master(state: &AppState, token: &Token) -> Result<Principal, ApiError> {
    auth::master_key(&state.db, &token.hash())
        .await?
        .map(Principal::MasterKey)
        .ok_or_else(|| {
            ApiError::unauthenticated("invalid_api_key", "unknown or revoked master key")
        })
}

async fn session(state: &AppState, token: &Token) -> Result<Principal, ApiError> {
    let live = auth::session(&state.db, SessionKind::Session, &token.hash())
        .await?
        .ok_or_else(|| ApiError::unauthenticated("invalid_session", "session expired or ended"))?;
    Ok(Principal::User {
        user_id: live.session.user_id,
        session_id: live.session.session_id,
        mfa_verified: live.session.mfa_verified,
        started_at: live.started_at,
        last_seen_at: live.last_seen_at,
    })
}
