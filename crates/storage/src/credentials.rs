//! Provider credentials under envelope encryption (EN-2): the org's data key seals each
//! provider key, bound to its org and credential id; the keyring wraps the data keys.

use chrono::{DateTime, Utc};
use portcullis_core::OrgId;
use portcullis_core::audit::{Actor, Source};
use portcullis_core::crypto::{CryptoError, DataKey, Keyring, sealed_version};
use portcullis_core::provider::ProviderKind;
use uuid::Uuid;

use crate::Db;
use crate::error::{StorageError, expect_row};
use crate::tenant::{AuditedChange, TenantTx, WriteTx};

/// A credential as listings show it: never the key, only its last four characters.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Credential {
    pub credential_id: Uuid,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub provider: ProviderKind,
    pub base_url: Option<String>,
    pub last4: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A credential's fields, with the provider key in clear on its way to being sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential<'a> {
    pub name: &'a str,
    pub provider: ProviderKind,
    pub base_url: Option<&'a str>,
    pub api_key: &'a str,
}

const COLUMNS: &str = "credential_id, name, provider, base_url, last4, created_at, updated_at";

fn dek_context(org: OrgId, dek: Uuid) -> String {
    format!("dek:{org}:{dek}")
}

fn credential_context(org: OrgId, credential: Uuid) -> String {
    format!("credential:{org}:{credential}")
}

fn crypto(error: CryptoError) -> StorageError {
    StorageError::Crypto(error)
}

fn last4(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

/// The org's newest data key, created (and wrapped) on first use.
async fn data_key(tx: &mut WriteTx, ring: &Keyring) -> Result<(Uuid, DataKey), StorageError> {
    let org = tx.org();
    let newest: Option<(Uuid, Vec<u8>)> = sqlx::query_as(
        "select dek_id, wrapped_key from org_data_keys where org_id = $1
         order by dek_id desc limit 1",
    )
    .bind(org.as_uuid())
    .fetch_optional(tx.conn())
    .await?;
    if let Some((dek_id, wrapped)) = newest {
        let key =
            DataKey::unwrap(ring, &wrapped, dek_context(org, dek_id).as_bytes()).map_err(crypto)?;
        return Ok((dek_id, key));
    }
    let dek_id = Uuid::now_v7();
    let key = DataKey::generate().map_err(crypto)?;
    let wrapped = key
        .wrap(ring, dek_context(org, dek_id).as_bytes())
        .map_err(crypto)?;
    sqlx::query("insert into org_data_keys (dek_id, org_id, kek_version, wrapped_key) values ($1, $2, $3, $4)")
        .bind(dek_id)
        .bind(org.as_uuid())
        .bind(i64::from(ring.current_version()))
        .bind(&wrapped)
        .execute(tx.conn())
        .await
        .map_err(StorageError::from_write)?;
    Ok((dek_id, key))
}

/// Seals a provider key under the org's data key, bound to the credential, and notes the
/// change's non-secret facts in the audit entry.
async fn seal_credential(
    tx: &mut WriteTx,
    ring: &Keyring,
    credential_id: Uuid,
    new: &NewCredential<'_>,
) -> Result<(Uuid, Vec<u8>, String), StorageError> {
    let org = tx.org();
    let (dek_id, key) = data_key(tx, ring).await?;
    let sealed = key
        .seal(
            new.api_key.as_bytes(),
            credential_context(org, credential_id).as_bytes(),
        )
        .map_err(crypto)?;
    let last4 = last4(new.api_key);
    tx.detail("name", new.name);
    tx.detail("provider", new.provider.name());
    tx.detail("last4", last4.as_str());
    Ok((dek_id, sealed, last4))
}

const NAME_TAKEN: &str = "a credential with this name already exists";

pub async fn create(
    tx: &mut WriteTx,
    ring: &Keyring,
    credential_id: Uuid,
    new: &NewCredential<'_>,
) -> Result<Credential, StorageError> {
    let (dek_id, sealed, last4) = seal_credential(tx, ring, credential_id, new).await?;
    let org = tx.org();
    sqlx::query_as(&format!(
        "insert into provider_credentials
             (credential_id, org_id, name, provider, base_url, dek_id, ciphertext, last4)
         values ($1, $2, $3, $4, $5, $6, $7, $8) returning {COLUMNS}"
    ))
    .bind(credential_id)
    .bind(org.as_uuid())
    .bind(new.name)
    .bind(new.provider.name())
    .bind(new.base_url)
    .bind(dek_id)
    .bind(&sealed)
    .bind(&last4)
    .fetch_one(tx.conn())
    .await
    .map_err(StorageError::on_constraint(
        "uq_provider_credentials_org_name",
        NAME_TAKEN,
    ))
}

/// Replaces every field of a credential, its provider key included (a rotation).
pub async fn replace(
    tx: &mut WriteTx,
    ring: &Keyring,
    credential_id: Uuid,
    new: &NewCredential<'_>,
) -> Result<Credential, StorageError> {
    let (dek_id, sealed, last4) = seal_credential(tx, ring, credential_id, new).await?;
    let org = tx.org();
    sqlx::query_as(&format!(
        "update provider_credentials set name = $3, provider = $4, base_url = $5, dek_id = $6,
             ciphertext = $7, last4 = $8, updated_at = now()
         where org_id = $1 and credential_id = $2 returning {COLUMNS}"
    ))
    .bind(org.as_uuid())
    .bind(credential_id)
    .bind(new.name)
    .bind(new.provider.name())
    .bind(new.base_url)
    .bind(dek_id)
    .bind(&sealed)
    .bind(&last4)
    .fetch_optional(tx.conn())
    .await
    .map_err(StorageError::on_constraint(
        "uq_provider_credentials_org_name",
        NAME_TAKEN,
    ))?
    .ok_or(StorageError::NotFound)
}

pub async fn list(tx: &mut TenantTx) -> Result<Vec<Credential>, StorageError> {
    Ok(sqlx::query_as(&format!(
        "select {COLUMNS} from provider_credentials where org_id = $1 order by credential_id"
    ))
    .bind(tx.org().as_uuid())
    .fetch_all(tx.conn())
    .await?)
}

/// Which of these ids are credentials of the transaction's org.
pub async fn existing(tx: &mut TenantTx, ids: &[Uuid]) -> Result<Vec<Uuid>, StorageError> {
    Ok(sqlx::query_scalar(
        "select credential_id from provider_credentials where org_id = $1 and credential_id = any($2)",
    )
    .bind(tx.org().as_uuid())
    .bind(ids)
    .fetch_all(tx.conn())
    .await?)
}

pub async fn delete(tx: &mut WriteTx, credential_id: Uuid) -> Result<(), StorageError> {
    let org = tx.org();
    let in_use: bool = sqlx::query_scalar(
        "select exists (select 1 from model_routes r, jsonb_array_elements(r.targets) t
                        where r.org_id = $1 and t->>'credential_id' = $2::text)",
    )
    .bind(org.as_uuid())
    .bind(credential_id)
    .fetch_one(tx.conn())
    .await?;
    if in_use {
        return Err(StorageError::Conflict(
            "a route still sends traffic with this credential",
        ));
    }
    let done =
        sqlx::query("delete from provider_credentials where org_id = $1 and credential_id = $2")
            .bind(org.as_uuid())
            .bind(credential_id)
            .execute(tx.conn())
            .await
            .map_err(StorageError::from_write)?;
    expect_row(done)
}

/// The provider key in clear, for a call upstream. Fails if the ciphertext was moved to
/// another record or org, or its data key cannot be unwrapped.
pub async fn reveal(
    tx: &mut TenantTx,
    ring: &Keyring,
    credential_id: Uuid,
) -> Result<String, StorageError> {
    let org = tx.org();
    let row: Option<(Vec<u8>, Uuid, Vec<u8>)> = sqlx::query_as(
        "select c.ciphertext, k.dek_id, k.wrapped_key from provider_credentials c
         join org_data_keys k on k.org_id = c.org_id and k.dek_id = c.dek_id
         where c.org_id = $1 and c.credential_id = $2",
    )
    .bind(org.as_uuid())
    .bind(credential_id)
    .fetch_optional(tx.conn())
    .await?;
    let (sealed, dek_id, wrapped) = row.ok_or(StorageError::NotFound)?;
    let key =
        DataKey::unwrap(ring, &wrapped, dek_context(org, dek_id).as_bytes()).map_err(crypto)?;
    let plain = key
        .open(&sealed, credential_context(org, credential_id).as_bytes())
        .map_err(crypto)?;
    String::from_utf8(plain).map_err(|_| crypto(CryptoError::Unsealable))
}

/// Re-wraps every data key of every org that the keyring's current key did not wrap; the
/// secrets they seal are untouched. Returns how many keys were re-wrapped. Runs online: each
/// org is one short transaction, and old and new keys both open until the old is retired.
pub async fn rewrap_data_keys(db: &Db, ring: &Keyring) -> Result<u64, StorageError> {
    let mut rewrapped = 0;
    let actor = Actor::system("kek-rotate");
    for org in db.platform_org_ids().await? {
        let change = AuditedChange::new("kek.rotated", "org", org);
        let mut tx = db
            .begin_write(org, &actor, &Source::default(), change)
            .await?;
        let keys: Vec<(Uuid, Vec<u8>)> = sqlx::query_as(
            "select dek_id, wrapped_key from org_data_keys where org_id = $1 and kek_version <> $2
             for update",
        )
        .bind(org.as_uuid())
        .bind(i64::from(ring.current_version()))
        .fetch_all(tx.conn())
        .await?;
        if keys.is_empty() {
            // Nothing to re-wrap: the dropped write leaves no entry.
            continue;
        }
        tx.detail("data_keys", keys.len());
        tx.detail("kek_version", ring.current_version());
        for (dek_id, wrapped) in keys {
            let context = dek_context(org, dek_id);
            let key = DataKey::unwrap(ring, &wrapped, context.as_bytes()).map_err(crypto)?;
            let new_wrap = key.wrap(ring, context.as_bytes()).map_err(crypto)?;
            debug_assert_eq!(sealed_version(&new_wrap), Some(ring.current_version()));
            sqlx::query(
                "update org_data_keys set wrapped_key = $3, kek_version = $4, rewrapped_at = now()
                 where org_id = $1 and dek_id = $2",
            )
            .bind(org.as_uuid())
            .bind(dek_id)
            .bind(&new_wrap)
            .bind(i64::from(ring.current_version()))
            .execute(tx.conn())
            .await?;
            rewrapped += 1;
        }
        tx.commit().await?;
    }
    Ok(rewrapped)
}
