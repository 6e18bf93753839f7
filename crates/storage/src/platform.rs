//! Platform operations, across orgs: the org listing of the master key, the one-time
//! bootstrap of the first org, its owner and the master key, and the keyring's canary.

use chrono::{DateTime, Utc};
use portcullis_core::audit::{Actor, Source};
use portcullis_core::token::TokenHash;
use portcullis_core::{KeyId, OrgId, Role, UserId};
use serde_json::Map;
use uuid::Uuid;

use crate::Db;
use crate::error::StorageError;
use crate::orgs;
use crate::tenant::AuditedChange;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgSummary {
    pub org_id: OrgId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// Every org (through `platform_orgs()`): for the master key only.
pub async fn orgs(db: &Db) -> Result<Vec<OrgSummary>, StorageError> {
    let rows: Vec<(Uuid, String, DateTime<Utc>)> =
        sqlx::query_as("select org_id, name, created_at from platform_orgs()")
            .fetch_all(db.pool())
            .await?;
    Ok(rows
        .into_iter()
        .map(|(org_id, name, created_at)| OrgSummary {
            org_id: OrgId::from_uuid(org_id),
            name,
            created_at,
        })
        .collect())
}

/// What `portcullis bootstrap` creates.
#[derive(Debug)]
pub struct Bootstrap<'a> {
    pub org_name: &'a str,
    pub owner_email: &'a str,
    pub owner_password_hash: &'a str,
    pub master_key_id: KeyId,
    pub master_key_hash: TokenHash,
    pub master_key_last4: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bootstrapped {
    pub org_id: OrgId,
    pub owner_id: UserId,
}

/// Creates the first org, its owner and the master key in one transaction with their audit
/// entries. Refuses (`Conflict`) once a master key exists.
pub async fn bootstrap(db: &Db, request: &Bootstrap<'_>) -> Result<Bootstrapped, StorageError> {
    let org_id = OrgId::new();
    let owner_id = UserId::new();
    let actor = Actor::system("bootstrap");
    let mut tx = db
        .begin_write(
            org_id,
            &actor,
            &Source::default(),
            AuditedChange::new("org.created", "org", org_id),
        )
        .await?;
    orgs::insert_org(&mut tx, request.org_name).await?;
    sqlx::query("insert into users (user_id, email, password_hash) values ($1, $2, $3)")
        .bind(owner_id.as_uuid())
        .bind(request.owner_email)
        .bind(request.owner_password_hash)
        .execute(tx.conn())
        .await
        .map_err(StorageError::on_constraint(
            "uq_users_email",
            "a user with this email exists",
        ))?;
    sqlx::query("insert into memberships (org_id, user_id, role) values ($1, $2, $3)")
        .bind(org_id.as_uuid())
        .bind(owner_id.as_uuid())
        .bind(Role::Owner.as_str())
        .execute(tx.conn())
        .await
        .map_err(StorageError::from_write)?;
    let created: bool = sqlx::query_scalar("select platform_create_first_master_key($1, $2, $3)")
        .bind(request.master_key_id.as_uuid())
        .bind(request.master_key_hash.0.as_slice())
        .bind(request.master_key_last4)
        .fetch_one(tx.conn())
        .await?;
    if !created {
        return Err(StorageError::Conflict(
            "this database is already bootstrapped",
        ));
    }
    let mut member = Map::new();
    member.insert("role".into(), Role::Owner.as_str().into());
    tx.record_also(AuditedChange::new("member.added", "user", owner_id), member);
    let mut key = Map::new();
    key.insert("last4".into(), request.master_key_last4.into());
    tx.record_also(
        AuditedChange::new("master_key.created", "master_key", request.master_key_id),
        key,
    );
    tx.commit().await?;
    Ok(Bootstrapped { org_id, owner_id })
}

/// Revokes every live master key and stores a new one, and records `master_key.rotated` in
/// every org's audit trail, all in one transaction: through the administrative URL (an
/// operator's act, like `migrate`), the master keys as the owner role, the audit entries as
/// the runtime role under each org's row-level security. Returns how many keys were revoked.
pub async fn rotate_master_key(
    admin_url: &secrecy::SecretString,
    key_id: KeyId,
    hash: &TokenHash,
    last4: &str,
    actor: &Actor,
) -> Result<u64, StorageError> {
    use secrecy::ExposeSecret;
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin_url.expose_secret()).await?;
    let mut tx = conn.begin().await?;
    sqlx::query("set local role portcullis_owner")
        .execute(&mut *tx)
        .await?;
    let revoked = sqlx::query("update master_keys set revoked_at = now() where revoked_at is null")
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query("insert into master_keys (key_id, token_hash, last4) values ($1, $2, $3)")
        .bind(key_id.as_uuid())
        .bind(hash.0.as_slice())
        .bind(last4)
        .execute(&mut *tx)
        .await?;
    let orgs: Vec<Uuid> = sqlx::query_scalar("select org_id from platform_orgs()")
        .fetch_all(&mut *tx)
        .await?;
    sqlx::query("set local role portcullis_runtime")
        .execute(&mut *tx)
        .await?;
    let change = AuditedChange::new("master_key.rotated", "master_key", key_id);
    for org in orgs {
        let org = OrgId::from_uuid(org);
        sqlx::query("select set_config('portcullis.org_id', $1, true)")
            .bind(org.to_string())
            .execute(&mut *tx)
            .await?;
        let details = serde_json::json!({"revoked": revoked, "last4": last4});
        crate::audit::append(&mut tx, org, actor, &Source::default(), &change, details).await?;
    }
    tx.commit().await?;
    Ok(revoked)
}

/// The keyring's canaries (through `platform_keyring_canaries`): `sealed` is stored as
/// `version`'s canary when that version has none; every canary is returned, by version.
pub async fn keyring_canaries(
    db: &Db,
    version: u32,
    sealed: &[u8],
) -> Result<Vec<(u32, Vec<u8>)>, StorageError> {
    let rows: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("select kek_version, sealed from platform_keyring_canaries($1, $2)")
            .bind(i64::from(version))
            .bind(sealed)
            .fetch_all(db.pool())
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(v, sealed)| Some((u32::try_from(v).ok()?, sealed)))
        .collect())
}
