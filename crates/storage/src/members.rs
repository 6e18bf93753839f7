//! People in an org: memberships, invitations and roles.

use chrono::{DateTime, Utc};
use portcullis_core::token::TokenHash;
use portcullis_core::{Role, UserId};
use uuid::Uuid;

use crate::error::{StorageError, expect_row};
use crate::tenant::{TenantTx, WriteTx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: UserId,
    pub email: String,
    pub role: Role,
    pub mfa_enabled: bool,
    /// Invited and not yet accepted (no password set).
    pub invited: bool,
    pub created_at: DateTime<Utc>,
}

type MemberRow = (Uuid, String, String, bool, bool, DateTime<Utc>);

const MEMBER_SELECT: &str = "select m.user_id, u.email, m.role, u.mfa_enabled,
        u.password_hash is null, m.created_at
    from memberships m join users u using (user_id)";

fn member(row: MemberRow) -> Result<Member, StorageError> {
    let (user_id, email, role, mfa_enabled, invited, created_at) = row;
    Ok(Member {
        user_id: UserId::from_uuid(user_id),
        email,
        role: role
            .parse()
            .map_err(|_| StorageError::Invalid("role".into()))?,
        mfa_enabled,
        invited,
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

/// Adds an existing person to the write's org.
pub async fn add(tx: &mut WriteTx, user: UserId, role: Role) -> Result<(), StorageError> {
    let org = tx.org();
    tx.detail("role", role.as_str());
    sqlx::query("insert into memberships (org_id, user_id, role) values ($1, $2, $3)")
        .bind(org.as_uuid())
        .bind(user.as_uuid())
        .bind(role.as_str())
        .execute(tx.conn())
        .await
        .map_err(StorageError::on_constraint(
            "memberships_pkey",
            "already a member",
        ))?;
    Ok(())
}

/// Creates an invited person (no password yet) with a membership and an invitation.
pub async fn invite(
    tx: &mut WriteTx,
    user: UserId,
    email: &str,
    role: Role,
    token: &TokenHash,
    expires_at: DateTime<Utc>,
) -> Result<(), StorageError> {
    let org = tx.org();
    sqlx::query("insert into users (user_id, email) values ($1, $2)")
        .bind(user.as_uuid())
        .bind(email)
        .execute(tx.conn())
        .await
        .map_err(StorageError::on_constraint(
            "uq_users_email",
            "a user with this email exists",
        ))?;
    add(tx, user, role).await?;
    tx.detail("invited", true);
    sqlx::query(
        "insert into invites (invite_id, org_id, user_id, token_hash, expires_at)
         values ($1, $2, $3, $4, $5)",
    )
    .bind(Uuid::now_v7())
    .bind(org.as_uuid())
    .bind(user.as_uuid())
    .bind(token.0.as_slice())
    .bind(expires_at)
    .execute(tx.conn())
    .await
    .map_err(StorageError::from_write)?;
    Ok(())
}

pub async fn set_role(
    tx: &mut WriteTx,
    user: UserId,
    from: Role,
    to: Role,
) -> Result<(), StorageError> {
    let org = tx.org();
    tx.detail("from", from.as_str());
    tx.detail("to", to.as_str());
    let done = sqlx::query(
        "update memberships set role = $3, updated_at = now() where org_id = $1 and user_id = $2",
    )
    .bind(org.as_uuid())
    .bind(user.as_uuid())
    .bind(to.as_str())
    .execute(tx.conn())
    .await
    .map_err(StorageError::from_write)?;
    expect_row(done)
}

pub async fn remove(tx: &mut WriteTx, user: UserId, role: Role) -> Result<(), StorageError> {
    let org = tx.org();
    tx.detail("role", role.as_str());
    let done = sqlx::query("delete from memberships where org_id = $1 and user_id = $2")
        .bind(org.as_uuid())
        .bind(user.as_uuid())
        .execute(tx.conn())
        .await
        .map_err(StorageError::from_write)?;
    expect_row(done)
}

/// Sets an invited person's first password and closes the invitation.
pub async fn accept_invite(
    tx: &mut WriteTx,
    invite_id: Uuid,
    user: UserId,
    password_hash: &str,
) -> Result<(), StorageError> {
    let accepted = sqlx::query(
        "update invites set accepted_at = now() where invite_id = $1 and accepted_at is null",
    )
    .bind(invite_id)
    .execute(tx.conn())
    .await
    .map_err(StorageError::from_write)?;
    let set = sqlx::query(
        "update users set password_hash = $2, updated_at = now()
         where user_id = $1 and password_hash is null",
    )
    .bind(user.as_uuid())
    .bind(password_hash)
    .execute(tx.conn())
    .await
    .map_err(StorageError::from_write)?;
    if accepted.rows_affected() == 0 || set.rows_affected() == 0 {
        return Err(StorageError::NotFound);
    }
    Ok(())
}
