//! Virtual keys: the credentials of data-plane traffic. Only their SHA-256 and last four
//! characters are stored (AC-5).

use chrono::{DateTime, Utc};
use portcullis_core::token::TokenHash;
use portcullis_core::{KeyId, TeamId, UserId};
use uuid::Uuid;

use crate::error::{StorageError, expect_row};
use crate::tenant::{TenantTx, WriteTx};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct VirtualKey {
    #[sqlx(try_from = "Uuid")]
    pub key_id: KeyId,
    pub name: String,
    pub last4: String,
    pub team_id: Option<Uuid>,
    pub owner_user_id: Option<Uuid>,
    pub models: Option<Vec<String>>,
    pub budget_micro_usd: Option<i64>,
    pub budget_period: Option<String>,
    pub rpm_limit: Option<i32>,
    pub tpm_limit: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A new key's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewKey {
    pub name: String,
    pub team_id: Option<TeamId>,
    pub owner: Option<UserId>,
    pub models: Option<Vec<String>>,
    pub budget_micro_usd: Option<i64>,
    pub budget_period: Option<String>,
    pub rpm_limit: Option<i32>,
    pub tpm_limit: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
}

const KEY_COLUMNS: &str = "key_id, name, last4, team_id, owner_user_id, models, budget_micro_usd,
    budget_period, rpm_limit, tpm_limit, expires_at, created_at, rotated_at, revoked_at";

/// Creates a key in the write's org. A team of another org is `NotFound`.
pub async fn create(
    tx: &mut WriteTx,
    key_id: KeyId,
    key: &NewKey,
    token: &TokenHash,
    last4: &str,
) -> Result<VirtualKey, StorageError> {
    let org = tx.org();
    tx.detail("name", key.name.as_str());
    tx.detail("last4", last4);
    if let Some(team) = key.team_id {
        tx.detail("team_id", team.to_string());
    }
    sqlx::query_as(&format!(
        "insert into virtual_keys (key_id, org_id, team_id, owner_user_id, name, token_hash, last4,
             models, budget_micro_usd, budget_period, rpm_limit, tpm_limit, expires_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         returning {KEY_COLUMNS}"
    ))
    .bind(key_id.as_uuid())
    .bind(org.as_uuid())
    .bind(key.team_id.map(Uuid::from))
    .bind(key.owner.map(Uuid::from))
    .bind(&key.name)
    .bind(token.0.as_slice())
    .bind(last4)
    .bind(&key.models)
    .bind(key.budget_micro_usd)
    .bind(&key.budget_period)
    .bind(key.rpm_limit)
    .bind(key.tpm_limit)
    .bind(key.expires_at)
    .fetch_one(tx.conn())
    .await
    .map_err(StorageError::on_foreign_key("fk_virtual_keys_team"))
}

pub async fn list(tx: &mut TenantTx) -> Result<Vec<VirtualKey>, StorageError> {
    Ok(sqlx::query_as(&format!(
        "select {KEY_COLUMNS} from virtual_keys where org_id = $1 order by key_id"
    ))
    .bind(tx.org().as_uuid())
    .fetch_all(tx.conn())
    .await?)
}

pub async fn get(tx: &mut TenantTx, key: KeyId) -> Result<VirtualKey, StorageError> {
    sqlx::query_as(&format!(
        "select {KEY_COLUMNS} from virtual_keys where org_id = $1 and key_id = $2"
    ))
    .bind(tx.org().as_uuid())
    .bind(key.as_uuid())
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StorageError::NotFound)
}

/// Replaces a live key's secret: the old one stops at once.
pub async fn rotate(
    tx: &mut WriteTx,
    key: KeyId,
    token: &TokenHash,
    last4: &str,
) -> Result<VirtualKey, StorageError> {
    let org = tx.org();
    tx.detail("last4", last4);
    sqlx::query_as(&format!(
        "update virtual_keys set token_hash = $3, last4 = $4, rotated_at = now()
         where org_id = $1 and key_id = $2 and revoked_at is null
         returning {KEY_COLUMNS}"
    ))
    .bind(org.as_uuid())
    .bind(key.as_uuid())
    .bind(token.0.as_slice())
    .bind(last4)
    .fetch_optional(tx.conn())
    .await
    .map_err(StorageError::from_write)?
    .ok_or(StorageError::NotFound)
}

/// Revokes a live key; a revoked or unknown key is `NotFound`.
pub async fn revoke(tx: &mut WriteTx, key: KeyId) -> Result<(), StorageError> {
    let org = tx.org();
    let done = sqlx::query(
        "update virtual_keys set revoked_at = now()
         where org_id = $1 and key_id = $2 and revoked_at is null",
    )
    .bind(org.as_uuid())
    .bind(key.as_uuid())
    .execute(tx.conn())
    .await
    .map_err(StorageError::from_write)?;
    expect_row(done)
}
