//! Virtual keys: the secret is returned once, at creation or rotation; afterwards only its
//! last four characters (AC-5).

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use portcullis_core::token::{Token, TokenKind};
use portcullis_core::{KeyId, TeamId};
use portcullis_policy::rbac;
use portcullis_storage::AuditedChange;
use portcullis_storage::keys::{self as store, NewKey, VirtualKey};
use serde::{Deserialize, Serialize};

use super::teams::check_budget;
use super::{check_name, parse_id};
use crate::error::ApiError;
use crate::guard::OrgCaller;
use crate::json::JsonBody;
use crate::state::AppState;

#[derive(Debug, Serialize)]
pub struct KeyView {
    key_id: String,
    name: String,
    last4: String,
    team_id: Option<String>,
    owner_user_id: Option<String>,
    models: Option<Vec<String>>,
    budget_micro_usd: Option<i64>,
    budget_period: Option<String>,
    rpm_limit: Option<i32>,
    tpm_limit: Option<i32>,
    expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    rotated_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    /// Only in the answer to create and rotate.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl From<VirtualKey> for KeyView {
    fn from(key: VirtualKey) -> Self {
        Self {
            key_id: key.key_id.to_string(),
            name: key.name,
            last4: key.last4,
            team_id: key.team_id.map(|id| id.to_string()),
            owner_user_id: key.owner_user_id.map(|id| id.to_string()),
            models: key.models,
            budget_micro_usd: key.budget_micro_usd,
            budget_period: key.budget_period,
            rpm_limit: key.rpm_limit,
            tpm_limit: key.tpm_limit,
            expires_at: key.expires_at,
            created_at: key.created_at,
            rotated_at: key.rotated_at,
            revoked_at: key.revoked_at,
            secret: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct KeyList {
    data: Vec<KeyView>,
}

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
) -> Result<Json<KeyList>, ApiError> {
    let mut tx = state.db.begin_tenant(caller.org).await?;
    let keys = store::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(KeyList {
        data: keys.into_iter().map(KeyView::from).collect(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    name: String,
    team_id: Option<String>,
    models: Option<Vec<String>>,
    budget_micro_usd: Option<i64>,
    budget_period: Option<String>,
    rpm_limit: Option<i32>,
    tpm_limit: Option<i32>,
    expires_at: Option<DateTime<Utc>>,
}

/// `POST .../keys`: the caller owns the key it creates.
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    JsonBody(body): JsonBody<CreateKey>,
) -> Result<(StatusCode, Json<KeyView>), ApiError> {
    check_name(&body.name)?;
    check_budget(body.budget_micro_usd, body.budget_period.as_deref())?;
    if body.rpm_limit.is_some_and(|l| l <= 0) || body.tpm_limit.is_some_and(|l| l <= 0) {
        return Err(ApiError::invalid_request(
            "`rpm_limit` and `tpm_limit` must be positive",
        ));
    }
    if body.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(ApiError::invalid_request(
            "`expires_at` must be in the future",
        ));
    }
    if let Some(models) = &body.models
        && models.iter().any(|m| m.is_empty() || m.len() > 200)
    {
        return Err(ApiError::invalid_request(
            "`models` entries must be 1 to 200 characters",
        ));
    }
    // A team id that does not parse names no team: 404 like another org's team.
    let team_id = body
        .team_id
        .as_deref()
        .map(parse_id::<TeamId>)
        .transpose()?;
    let key_id = KeyId::new();
    let token = Token::generate(TokenKind::Virtual)?;
    let key = NewKey {
        name: body.name.trim().to_owned(),
        team_id,
        owner: caller.principal.user_id(),
        models: body.models,
        budget_micro_usd: body.budget_micro_usd,
        budget_period: body.budget_period,
        rpm_limit: body.rpm_limit,
        tpm_limit: body.tpm_limit,
        expires_at: body.expires_at,
    };
    let mut tx = caller
        .begin_write(&state, AuditedChange::new("key.created", "key", key_id))
        .await?;
    let created = store::create(&mut tx, key_id, &key, &token.hash(), &token.last4()).await?;
    tx.commit().await?;
    let mut view = KeyView::from(created);
    view.secret = Some(token.expose().to_owned());
    Ok((StatusCode::CREATED, Json(view)))
}

/// Loads the key and asks the policy whether this caller may manage it.
async fn manageable(state: &AppState, caller: &OrgCaller, key_id: KeyId) -> Result<(), ApiError> {
    let mut tx = state.db.begin_tenant(caller.org).await?;
    let key = store::get(&mut tx, key_id).await?;
    tx.commit().await?;
    let own = caller
        .principal
        .user_id()
        .is_some_and(|user| key.owner_user_id == Some(user.into()));
    rbac::may_manage_key(caller.role, own)?;
    Ok(())
}

/// `POST .../keys/{key_id}/rotate`: a new secret, once; the old one stops at once.
pub async fn rotate(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    Path((_, key_id)): Path<(String, String)>,
) -> Result<Json<KeyView>, ApiError> {
    let key_id: KeyId = parse_id(&key_id)?;
    manageable(&state, &caller, key_id).await?;
    let token = Token::generate(TokenKind::Virtual)?;
    let mut tx = caller
        .begin_write(&state, AuditedChange::new("key.rotated", "key", key_id))
        .await?;
    let rotated = store::rotate(&mut tx, key_id, &token.hash(), &token.last4()).await?;
    tx.commit().await?;
    let mut view = KeyView::from(rotated);
    view.secret = Some(token.expose().to_owned());
    Ok(Json(view))
}

/// `DELETE .../keys/{key_id}`: revokes.
pub async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    Path((_, key_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let key_id: KeyId = parse_id(&key_id)?;
    manageable(&state, &caller, key_id).await?;
    let mut tx = caller
        .begin_write(&state, AuditedChange::new("key.revoked", "key", key_id))
        .await?;
    store::revoke(&mut tx, key_id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
