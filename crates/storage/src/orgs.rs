//! Organizations and their settings.

use chrono::{DateTime, Utc};
use portcullis_core::OrgId;
use portcullis_core::audit::{Actor, Source};
use uuid::Uuid;

use crate::Db;
use crate::error::StorageError;
use crate::tenant::{AuditedChange, TenantTx};

/// An organization with its settings.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Org {
    #[sqlx(try_from = "Uuid")]
    pub org_id: OrgId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub logging_level: String,
    pub pii_redaction: bool,
    pub pii_guardrail: String,
    pub content_retention_days: i32,
    pub ledger_retention_days: i32,
    pub require_mfa: bool,
}

/// Creates an org with default settings; its first audit entry records the creation.
pub async fn create_org(
    db: &Db,
    actor: &Actor,
    source: &Source,
    name: &str,
) -> Result<Org, StorageError> {
    let org_id = OrgId::new();
    let mut tx = db
        .begin_write(
            org_id,
            actor,
            source,
            AuditedChange::new("org.created", "org", org_id),
        )
        .await?;
    sqlx::query("insert into organizations (org_id, name) values ($1, $2)")
        .bind(org_id.as_uuid())
        .bind(name)
        .execute(tx.conn())
        .await
        .map_err(StorageError::from_write)?;
    sqlx::query("insert into org_settings (org_id) values ($1)")
        .bind(org_id.as_uuid())
        .execute(tx.conn())
        .await
        .map_err(StorageError::from_write)?;
    tx.detail("name", name);
    let org = get_org(tx.tenant()).await?;
    tx.commit().await?;
    Ok(org)
}

/// The transaction's org.
pub async fn get_org(tx: &mut TenantTx) -> Result<Org, StorageError> {
    sqlx::query_as(
        "select o.org_id, o.name, o.created_at, s.logging_level, s.pii_redaction,
                s.pii_guardrail, s.content_retention_days, s.ledger_retention_days, s.require_mfa
         from organizations o join org_settings s using (org_id)
         where o.org_id = $1",
    )
    .bind(tx.org().as_uuid())
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StorageError::NotFound)
}
