//! Members and invitations. The owner rules of API.md are asked of `policy::rbac`.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use portcullis_core::token::{Token, TokenKind};
use portcullis_core::{Role, UserId};
use portcullis_policy::rbac;
use portcullis_storage::members::{self as store, Member};
use portcullis_storage::{AuditedChange, auth};
use serde::{Deserialize, Serialize};

use super::parse_id;
use crate::error::ApiError;
use crate::guard::OrgCaller;
use crate::json::JsonBody;
use crate::router::AppState;

#[derive(Debug, Serialize)]
pub struct MemberView {
    user_id: String,
    email: String,
    role: Role,
    mfa_enabled: bool,
    invited: bool,
    created_at: DateTime<Utc>,
    /// Shown once, when an unknown email is invited.
    #[serde(skip_serializing_if = "Option::is_none")]
    invite_token: Option<String>,
}

impl From<Member> for MemberView {
    fn from(member: Member) -> Self {
        Self {
            user_id: member.user_id.to_string(),
            email: member.email,
            role: member.role,
            mfa_enabled: member.mfa_enabled,
            invited: member.invited,
            created_at: member.created_at,
            invite_token: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct MemberList {
    data: Vec<MemberView>,
}

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
) -> Result<Json<MemberList>, ApiError> {
    let mut tx = state.db.begin_tenant(caller.org).await?;
    let members = store::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(MemberList {
        data: members.into_iter().map(MemberView::from).collect(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    email: String,
    role: Role,
}

/// How long an invitation stays open.
const INVITE_DAYS: i64 = 7;

/// `POST .../members`: adds a known person, or invites an unknown email.
pub async fn add(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    JsonBody(body): JsonBody<AddMember>,
) -> Result<(StatusCode, Json<MemberView>), ApiError> {
    let email = body.email.trim();
    if email.len() < 3
        || email.len() > 320
        || !email.contains('@')
        || email.contains(char::is_whitespace)
    {
        return Err(ApiError::invalid_request("`email` is not an email address"));
    }
    rbac::may_grant(caller.role, body.role)?;
    let existing = auth::user_by_email(&state.db, email).await?;
    let user_id = existing
        .as_ref()
        .map_or_else(UserId::new, |user| user.user_id);
    let mut tx = caller
        .begin_write(&state, AuditedChange::new("member.added", "user", user_id))
        .await?;
    let invite = match existing {
        Some(_) => {
            store::add(&mut tx, user_id, body.role).await?;
            None
        }
        None => {
            let token = Token::generate(TokenKind::Invite)?;
            let expires_at = Utc::now() + chrono::Duration::days(INVITE_DAYS);
            store::invite(
                &mut tx,
                user_id,
                email,
                body.role,
                &token.hash(),
                expires_at,
            )
            .await?;
            Some(token)
        }
    };
    let member = store::get(tx.tenant(), user_id).await?;
    tx.commit().await?;
    let mut view = MemberView::from(member);
    view.invite_token = invite.map(|token| token.expose().to_owned());
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    role: Role,
}

/// `PATCH .../members/{user_id}`: takes effect on the person's very next request, since the
/// guard reads roles fresh.
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    Path((_, user_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<UpdateMember>,
) -> Result<Json<MemberView>, ApiError> {
    let user_id: UserId = parse_id(&user_id)?;
    let mut tx = caller
        .begin_write(
            &state,
            AuditedChange::new("member.role_changed", "user", user_id),
        )
        .await?;
    let owners = store::lock_owners(&mut tx).await?;
    let current = store::get(tx.tenant(), user_id).await?;
    rbac::may_change_member(caller.role, current.role, Some(body.role), owners)?;
    store::set_role(&mut tx, user_id, current.role, body.role).await?;
    let member = store::get(tx.tenant(), user_id).await?;
    tx.commit().await?;
    Ok(Json(member.into()))
}

/// `DELETE .../members/{user_id}`.
pub async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    Path((_, user_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let user_id: UserId = parse_id(&user_id)?;
    let mut tx = caller
        .begin_write(
            &state,
            AuditedChange::new("member.removed", "user", user_id),
        )
        .await?;
    let owners = store::lock_owners(&mut tx).await?;
    let current = store::get(tx.tenant(), user_id).await?;
    rbac::may_change_member(caller.role, current.role, None, owners)?;
    store::remove(&mut tx, user_id, current.role).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
