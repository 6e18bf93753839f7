//! Members and invitations (AC-6). Adding an email always makes an invitation: the answer is
//! the same whether or not the email has an account, and the person joins only by accepting.
//! The owner rules of API.md are asked of `policy::rbac`.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use portcullis_core::token::{Token, TokenKind};
use portcullis_core::{Role, UserId};
use portcullis_policy::rbac;
use portcullis_storage::AuditedChange;
use portcullis_storage::members::{self as store, Invitation, Member};
use portcullis_storage::orgs;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::parse_id;
use crate::authn::MAX_EMAIL_BYTES;
use crate::error::ApiError;
use crate::guard::OrgCaller;
use crate::json::JsonBody;
use crate::state::AppState;

/// An entry of `GET .../members`: an active member, or an open invitation.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum MemberView {
    Active {
        user_id: String,
        email: String,
        role: Role,
        mfa_enabled: bool,
        created_at: DateTime<Utc>,
    },
    Pending(InvitationView),
}

/// An invitation. Names the email it was sent to, never anything of an account.
#[derive(Debug, Serialize)]
pub struct InvitationView {
    invite_id: String,
    email: String,
    role: Role,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    /// Shown once, in the answer that made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    invite_token: Option<String>,
}

impl From<Member> for MemberView {
    fn from(member: Member) -> Self {
        Self::Active {
            user_id: member.user_id.to_string(),
            email: member.email,
            role: member.role,
            mfa_enabled: member.mfa_enabled,
            created_at: member.created_at,
        }
    }
}

impl From<Invitation> for InvitationView {
    fn from(invitation: Invitation) -> Self {
        Self {
            invite_id: invitation.invite_id.to_string(),
            email: invitation.email,
            role: invitation.role,
            created_at: invitation.created_at,
            expires_at: invitation.expires_at,
            invite_token: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct MemberList {
    data: Vec<MemberView>,
}

/// `GET .../members`: active members, then open invitations (`status` tells them apart).
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
) -> Result<Json<MemberList>, ApiError> {
    let mut tx = state.db.begin_tenant(caller.org).await?;
    let members = store::list(&mut tx).await?;
    let invitations = store::invitations(&mut tx).await?;
    tx.commit().await?;
    let data = members
        .into_iter()
        .map(MemberView::from)
        .chain(
            invitations
                .into_iter()
                .map(|i| MemberView::Pending(i.into())),
        )
        .collect();
    Ok(Json(MemberList { data }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    email: String,
    role: Role,
}

/// `POST .../members`: invites the email. The invitation's token is shown once; whether the
/// email has an account anywhere is neither read nor told.
pub async fn add(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    JsonBody(body): JsonBody<AddMember>,
) -> Result<(StatusCode, Json<MemberView>), ApiError> {
    let email = body.email.trim();
    if email.len() < 3
        || email.len() > MAX_EMAIL_BYTES
        || !email.contains('@')
        || email.contains(char::is_whitespace)
    {
        return Err(ApiError::invalid_request("`email` is not an email address"));
    }
    rbac::may_grant(caller.role, body.role)?;
    let invite_id = Uuid::now_v7();
    let token = Token::generate(TokenKind::Invite)?;
    let mut tx = caller
        .begin_write(
            &state,
            AuditedChange::new("member.invited", "invite", invite_id),
        )
        .await?;
    // Inviting again replaces the open invitation: only someone who may grant its role.
    if let Some(open) = store::open_invitation_for(tx.tenant(), email).await? {
        rbac::may_grant(caller.role, open.role)?;
    }
    let ttl_days = orgs::get_org(tx.tenant()).await?.invite_ttl_days;
    let token_hash = token.hash();
    let new = store::NewInvitation {
        invite_id,
        email,
        role: body.role,
        invited_by: caller.principal.user_id(),
        token: &token_hash,
        expires_at: Utc::now() + chrono::Duration::days(i64::from(ttl_days)),
    };
    let invitation = store::invite(&mut tx, new).await?;
    tx.commit().await?;
    let mut view = InvitationView::from(invitation);
    view.invite_token = Some(token.expose().to_owned());
    Ok((StatusCode::CREATED, Json(MemberView::Pending(view))))
}

/// `DELETE .../invites/{invite_id}`: the token stops opening anything. Only an owner revokes an
/// invitation to owner or admin, as only an owner grants those.
pub async fn revoke_invite(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    Path((_, invite_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let invite_id: Uuid = parse_id(&invite_id)?;
    let mut tx = caller
        .begin_write(
            &state,
            AuditedChange::new("invite.revoked", "invite", invite_id),
        )
        .await?;
    let invitation = store::invitation(tx.tenant(), invite_id).await?;
    rbac::may_grant(caller.role, invitation.role)?;
    store::revoke_invite(&mut tx, invite_id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    role: Role,
}

/// `PATCH .../members/{user_id}`: takes effect on the person's very next request, since the
/// guard reads roles fresh. A lowered role ends the person's sessions here, and a role below
/// member revokes the keys they own (AC-6).
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
    // The invitations they made that their new role could not make end with it.
    let beyond: Vec<Role> = Role::ALL
        .into_iter()
        .filter(|r| rbac::may_grant(body.role, *r).is_err())
        .collect();
    store::revoke_invitations_by(&mut tx, user_id, &beyond).await?;
    let member = store::get(tx.tenant(), user_id).await?;
    tx.commit().await?;
    Ok(Json(member.into()))
}

/// `DELETE .../members/{user_id}`: the membership, the keys the person owns here (each
/// revocation audited with its reason), and with them every session's access to this org.
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
    store::revoke_invitations_by(&mut tx, user_id, &Role::ALL).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE .../members/{user_id}/sessions`: the person's sessions stop working in this org (they
/// sign in again); their other orgs are not this org's to end. Owner rules as for a change.
pub async fn end_sessions(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    Path((_, user_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let user_id: UserId = parse_id(&user_id)?;
    let mut tx = caller
        .begin_write(
            &state,
            AuditedChange::new("member.sessions_ended", "user", user_id),
        )
        .await?;
    let owners = store::lock_owners(&mut tx).await?;
    let current = store::get(tx.tenant(), user_id).await?;
    rbac::may_change_member(caller.role, current.role, Some(current.role), owners)?;
    store::end_sessions(&mut tx, user_id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
