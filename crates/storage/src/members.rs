//! People in an org: memberships, invitations and roles (AC-6). A membership exists only once a
//! person accepted an invitation; until then the org holds the invitation alone, which names
//! an email and nothing of any account.

use chrono::{DateTime, Utc};
use portcullis_core::token::TokenHash;
use portcullis_core::{KeyId, Role, UserId};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{StorageError, expect_row};
use crate::tenant::{AuditedChange, TenantTx, WriteTx};

/// An active member of the org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: UserId,
    pub email: String,
    pub role: Role,
    pub mfa_enabled: bool,
    pub created_at: DateTime<Utc>,
}

/// An open invitation: offered, not yet accepted, revoked or expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub invite_id: Uuid,
    pub email: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

type MemberRow = (Uuid, String, String, bool, DateTime<Utc>);

const MEMBER_SELECT: &str = "select m.user_id, u.email, m.role, u.mfa_enabled, m.created_at
    from memberships m join users u using (user_id)";

fn parse_role(role: &str) -> Result<Role, StorageError> {
    role.parse()
        .map_err(|_| StorageError::Invalid("role".into()))
}

fn member(row: MemberRow) -> Result<Member, StorageError> {
    let (user_id, email, role, mfa_enabled, created_at) = row;
    Ok(Member {
        user_id: UserId::from_uuid(user_id),
        email,
        role: parse_role(&role)?,
        mfa_enabled,
        created_at,
    })
}

pub async fn list(tx: &mut TenantTx) -> Result<Vec<Member>, StorageError> {
    let rows: Vec<MemberRow> = sqlx::query_as(&format!(
        "{MEMBER_SELECT} where m.org_id = $1 order by m.created_at, m.user_id"
    ))
    .bind(tx.org().as_uuid())
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter().map(member).collect()
}

pub async fn get(tx: &mut TenantTx, user: UserId) -> Result<Member, StorageError> {
    let row: Option<MemberRow> = sqlx::query_as(&format!(
        "{MEMBER_SELECT} where m.org_id = $1 and m.user_id = $2"
    ))
    .bind(tx.org().as_uuid())
    .bind(user.as_uuid())
    .fetch_optional(tx.conn())
    .await?;
    row.map(member).transpose()?.ok_or(StorageError::NotFound)
}

type InvitationRow = (Uuid, String, String, DateTime<Utc>, DateTime<Utc>);

fn invitation_from(row: InvitationRow) -> Result<Invitation, StorageError> {
    let (invite_id, email, role, created_at, expires_at) = row;
    Ok(Invitation {
        invite_id,
        email,
        role: parse_role(&role)?,
        created_at,
        expires_at,
    })
}

/// The org's open invitations, oldest first.
pub async fn invitations(tx: &mut TenantTx) -> Result<Vec<Invitation>, StorageError> {
    let rows: Vec<InvitationRow> = sqlx::query_as(
        "select invite_id, email, role, created_at, expires_at from invites
         where org_id = $1 and accepted_at is null and revoked_at is null and expires_at > now()
         order by created_at, invite_id",
    )
    .bind(tx.org().as_uuid())
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter().map(invitation_from).collect()
}

/// One open invitation of the org.
pub async fn invitation(tx: &mut TenantTx, invite_id: Uuid) -> Result<Invitation, StorageError> {
    let row: Option<InvitationRow> = sqlx::query_as(
        "select invite_id, email, role, created_at, expires_at from invites
         where org_id = $1 and invite_id = $2 and accepted_at is null and revoked_at is null
           and expires_at > now()",
    )
    .bind(tx.org().as_uuid())
    .bind(invite_id)
    .fetch_optional(tx.conn())
    .await?;
    row.map(invitation_from)
        .transpose()?
        .ok_or(StorageError::NotFound)
}

/// The org's owners, locked until the write commits, so that two concurrent demotions cannot
/// leave it without one.
pub async fn lock_owners(tx: &mut WriteTx) -> Result<usize, StorageError> {
    let org = tx.org();
    let owners: Vec<Uuid> = sqlx::query_scalar(
        "select user_id from memberships where org_id = $1 and role = 'owner' for update",
    )
    .bind(org.as_uuid())
    .fetch_all(tx.conn())
    .await?;
    Ok(owners.len())
}

/// The org's open invitation for `email`, if any: what inviting it again would replace.
pub async fn open_invitation_for(
    tx: &mut TenantTx,
    email: &str,
) -> Result<Option<Invitation>, StorageError> {
    let row: Option<InvitationRow> = sqlx::query_as(
        "select invite_id, email, role, created_at, expires_at from invites
         where org_id = $1 and lower(email) = lower($2) and accepted_at is null
           and revoked_at is null",
    )
    .bind(tx.org().as_uuid())
    .bind(email)
    .fetch_optional(tx.conn())
    .await?;
    row.map(invitation_from).transpose()
}

/// What a new invitation offers, and who offers it.
#[derive(Debug, Clone, Copy)]
pub struct NewInvitation<'a> {
    pub invite_id: Uuid,
    pub email: &'a str,
    pub role: Role,
    /// `None`: the master key.
    pub invited_by: Option<UserId>,
    pub token: &'a TokenHash,
    pub expires_at: DateTime<Utc>,
}

/// Invites an email to the write's org: an open invitation that grants nothing until
/// accepted. An open invitation for the same email is revoked first (inviting again issues a
/// new token); an active member's email is a conflict. Whether the email has an account
/// anywhere is neither read nor told.
pub async fn invite(tx: &mut WriteTx, new: NewInvitation<'_>) -> Result<Invitation, StorageError> {
    let NewInvitation {
        invite_id,
        email,
        role,
        invited_by,
        token,
        expires_at,
    } = new;
    let org = tx.org();
    // Users are visible only through a membership of this org: this sees its members alone.
    let member: Option<i32> = sqlx::query_scalar(
        "select 1 from memberships m join users u using (user_id)
         where m.org_id = $1 and lower(u.email) = lower($2)",
    )
    .bind(org.as_uuid())
    .bind(email)
    .fetch_optional(tx.conn())
    .await?;
    if member.is_some() {
        return Err(StorageError::Conflict(
            "already a member of this organization",
        ));
    }
    let replaced: Vec<Uuid> = sqlx::query_scalar(
        "update invites set revoked_at = now()
         where org_id = $1 and lower(email) = lower($2) and accepted_at is null
           and revoked_at is null
         returning invite_id",
    )
    .bind(org.as_uuid())
    .bind(email)
    .fetch_all(tx.conn())
    .await
    .map_err(StorageError::from_write)?;
    tx.detail("email", email);
    tx.detail("role", role.as_str());
    tx.detail("expires_at", expires_at.to_rfc3339());
    if let Some(old) = replaced.first() {
        tx.detail("replaces", old.to_string());
    }
    let row: InvitationRow = sqlx::query_as(
        "insert into invites (invite_id, org_id, email, role, token_hash, expires_at,
                              invited_by_user)
         values ($1, $2, $3, $4, $5, $6, $7)
         returning invite_id, email, role, created_at, expires_at",
    )
    .bind(invite_id)
    .bind(org.as_uuid())
    .bind(email)
    .bind(role.as_str())
    .bind(token.0.as_slice())
    .bind(expires_at)
    .bind(invited_by.map(Uuid::from))
    .fetch_one(tx.conn())
    .await
    .map_err(StorageError::on_constraint(
        "uq_invites_open_email",
        "an invitation for this email is being made",
    ))?;
    invitation_from(row)
}

/// Revokes an open invitation; an unknown, accepted or revoked one is `NotFound`.
pub async fn revoke_invite(tx: &mut WriteTx, invite_id: Uuid) -> Result<(), StorageError> {
    let org = tx.org();
    let email: Option<String> = sqlx::query_scalar(
        "update invites set revoked_at = now()
         where org_id = $1 and invite_id = $2 and accepted_at is null and revoked_at is null
         returning email",
    )
    .bind(org.as_uuid())
    .bind(invite_id)
    .fetch_optional(tx.conn())
    .await
    .map_err(StorageError::from_write)?;
    let email = email.ok_or(StorageError::NotFound)?;
    tx.detail("email", email);
    Ok(())
}

/// Marks the open invitation accepted by `user`; `NotFound` if it was accepted, revoked or
/// expired meanwhile (a second accept of the same token loses here).
async fn claim_invite(tx: &mut WriteTx, invite_id: Uuid, user: UserId) -> Result<(), StorageError> {
    let org = tx.org();
    let done = sqlx::query(
        "update invites set accepted_at = now(), accepted_user_id = $3
         where org_id = $1 and invite_id = $2 and accepted_at is null and revoked_at is null
           and expires_at > now()",
    )
    .bind(org.as_uuid())
    .bind(invite_id)
    .bind(user.as_uuid())
    .execute(tx.conn())
    .await
    .map_err(StorageError::from_write)?;
    expect_row(done)
}

/// A new membership. Sessions of the person begun before `sessions_from` are refused in the
/// org from the start: one an earlier membership ended does not come back with a new one.
async fn insert_membership(
    tx: &mut WriteTx,
    user: UserId,
    role: Role,
    sessions_from: DateTime<Utc>,
) -> Result<(), StorageError> {
    let org = tx.org();
    tx.detail("role", role.as_str());
    sqlx::query(
        "insert into memberships (org_id, user_id, role, sessions_valid_after)
         values ($1, $2, $3, $4)",
    )
    .bind(org.as_uuid())
    .bind(user.as_uuid())
    .bind(role.as_str())
    .bind(sessions_from)
    .execute(tx.conn())
    .await
    .map_err(StorageError::on_constraint(
        "memberships_pkey",
        "already a member of this organization",
    ))?;
    Ok(())
}

/// What an accepted invitation offered.
#[derive(Debug, Clone, Copy)]
pub struct Offer<'a> {
    pub invite_id: Uuid,
    pub email: &'a str,
    pub role: Role,
}

/// A new person accepts: their account is made with this password, then their membership.
/// An email that already has an account is a conflict: its owner accepts from their own
/// session, and a token never sets an existing account's password.
pub async fn accept_as_new_person(
    tx: &mut WriteTx,
    offer: Offer<'_>,
    user: UserId,
    password_hash: &str,
) -> Result<(), StorageError> {
    sqlx::query("insert into users (user_id, email, password_hash) values ($1, $2, $3)")
        .bind(user.as_uuid())
        .bind(offer.email)
        .bind(password_hash)
        .execute(tx.conn())
        .await
        .map_err(StorageError::on_constraint(
            "uq_users_email",
            "this email has an account: sign in, then accept the invitation from that session",
        ))?;
    claim_invite(tx, offer.invite_id, user).await?;
    tx.detail("invite_id", offer.invite_id.to_string());
    tx.detail("new_account", true);
    insert_membership(tx, user, offer.role, Utc::now()).await
}

/// A person with an account accepts from their own session, which began at `session_start`:
/// that session and later ones act in the org, none from before.
pub async fn accept_as_existing_person(
    tx: &mut WriteTx,
    offer: Offer<'_>,
    user: UserId,
    session_start: DateTime<Utc>,
) -> Result<(), StorageError> {
    claim_invite(tx, offer.invite_id, user).await?;
    tx.detail("invite_id", offer.invite_id.to_string());
    tx.detail("new_account", false);
    insert_membership(tx, user, offer.role, session_start).await
}

/// The role `user` holds in the transaction's org, if a member.
pub async fn role_of(tx: &mut TenantTx, user: UserId) -> Result<Option<Role>, StorageError> {
    let role: Option<String> =
        sqlx::query_scalar("select role from memberships where org_id = $1 and user_id = $2")
            .bind(tx.org().as_uuid())
            .bind(user.as_uuid())
            .fetch_optional(tx.conn())
            .await?;
    role.map(|r| parse_role(&r)).transpose()
}

/// The role `user` holds, locked against change until the write commits: a write by a member
/// whose membership changes meanwhile waits for it, or finds it gone.
pub async fn lock_role_of(tx: &mut WriteTx, user: UserId) -> Result<Option<Role>, StorageError> {
    let org = tx.org();
    let role: Option<String> = sqlx::query_scalar(
        "select role from memberships where org_id = $1 and user_id = $2 for share",
    )
    .bind(org.as_uuid())
    .bind(user.as_uuid())
    .fetch_optional(tx.conn())
    .await?;
    role.map(|r| parse_role(&r)).transpose()
}

/// Revokes the open invitations `inviter` made that offer one of `roles` (each its own
/// `invite.revoked` entry): an invitation is only as good as its inviter's right to grant it.
pub async fn revoke_invitations_by(
    tx: &mut WriteTx,
    inviter: UserId,
    roles: &[Role],
) -> Result<(), StorageError> {
    if roles.is_empty() {
        return Ok(());
    }
    let org = tx.org();
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    let revoked: Vec<(Uuid, String)> = sqlx::query_as(
        "update invites set revoked_at = now()
         where org_id = $1 and invited_by_user = $2 and role = any($3)
           and accepted_at is null and revoked_at is null
         returning invite_id, email",
    )
    .bind(org.as_uuid())
    .bind(inviter.as_uuid())
    .bind(&names)
    .fetch_all(tx.conn())
    .await
    .map_err(StorageError::from_write)?;
    for (invite_id, email) in revoked {
        let mut details = Map::new();
        details.insert("email".into(), Value::from(email));
        details.insert("reason".into(), Value::from("inviter_changed"));
        tx.record_also(
            AuditedChange::new("invite.revoked", "invite", invite_id),
            details,
        );
    }
    Ok(())
}

/// Why a person's keys were revoked with a membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeysEnded {
    MemberRemoved,
    RoleLowered,
}

impl KeysEnded {
    fn reason(self) -> &'static str {
        match self {
            KeysEnded::MemberRemoved => "member_removed",
            KeysEnded::RoleLowered => "role_lowered",
        }
    }
}

/// Revokes every live key `user` owns in the write's org, each recorded as its own
/// `key.revoked` entry with the reason, in the same transaction.
async fn revoke_keys_of(
    tx: &mut WriteTx,
    user: UserId,
    why: KeysEnded,
) -> Result<Vec<KeyId>, StorageError> {
    let org = tx.org();
    let revoked: Vec<Uuid> = sqlx::query_scalar(
        "update virtual_keys set revoked_at = now()
         where org_id = $1 and owner_user_id = $2 and revoked_at is null
         returning key_id",
    )
    .bind(org.as_uuid())
    .bind(user.as_uuid())
    .fetch_all(tx.conn())
    .await
    .map_err(StorageError::from_write)?;
    for key in &revoked {
        let mut details = Map::new();
        details.insert("reason".into(), Value::from(why.reason()));
        details.insert("owner_user_id".into(), Value::from(user.to_string()));
        tx.record_also(AuditedChange::new("key.revoked", "key", key), details);
    }
    tx.detail("revoked_keys", revoked.len());
    Ok(revoked.into_iter().map(KeyId::from_uuid).collect())
}

/// Changes a member's role. Lowered below what a key needs (a viewer holds none), their keys
/// are revoked; lowered at all, their sessions end in this org: they sign in again to act
/// with the new role.
pub async fn set_role(
    tx: &mut WriteTx,
    user: UserId,
    from: Role,
    to: Role,
) -> Result<(), StorageError> {
    let org = tx.org();
    tx.detail("from", from.as_str());
    tx.detail("to", to.as_str());
    let lowered = to < from;
    let done = sqlx::query(
        "update memberships
         set role = $3, updated_at = now(),
             sessions_valid_after = case when $4 then now() else sessions_valid_after end
         where org_id = $1 and user_id = $2",
    )
    .bind(org.as_uuid())
    .bind(user.as_uuid())
    .bind(to.as_str())
    .bind(lowered)
    .execute(tx.conn())
    .await
    .map_err(StorageError::from_write)?;
    expect_row(done)?;
    if lowered {
        tx.detail("sessions_ended", true);
    }
    if !to.at_least(Role::Member) {
        revoke_keys_of(tx, user, KeysEnded::RoleLowered).await?;
    }
    Ok(())
}

/// Removes a member: their membership, the keys they own in the org (each revocation
/// recorded with its reason) and so every session's access here.
pub async fn remove(tx: &mut WriteTx, user: UserId, role: Role) -> Result<(), StorageError> {
    let org = tx.org();
    tx.detail("role", role.as_str());
    revoke_keys_of(tx, user, KeysEnded::MemberRemoved).await?;
    let done = sqlx::query("delete from memberships where org_id = $1 and user_id = $2")
        .bind(org.as_uuid())
        .bind(user.as_uuid())
        .execute(tx.conn())
        .await
        .map_err(StorageError::from_write)?;
    expect_row(done)
}

/// Ends a member's sessions in this org: those begun before now are refused here (their other
/// orgs are not this org's to end).
pub async fn end_sessions(tx: &mut WriteTx, user: UserId) -> Result<(), StorageError> {
    let org = tx.org();
    let done = sqlx::query(
        "update memberships set sessions_valid_after = now(), updated_at = now()
         where org_id = $1 and user_id = $2",
    )
    .bind(org.as_uuid())
    .bind(user.as_uuid())
    .execute(tx.conn())
    .await
    .map_err(StorageError::from_write)?;
    expect_row(done)
}
