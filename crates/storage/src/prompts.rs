//! Prompts (CM-2): named, with immutable numbered versions and labels that point at one. Writes
//! take a `WriteTx`, so each is audited in its own transaction.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::error::StorageError;
use crate::tenant::{TenantTx, WriteTx};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Prompt {
    pub prompt_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// `{label: version}`.
    pub labels: Value,
    pub latest_version: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PromptVersion {
    pub version: i32,
    /// `[{role, content}]`.
    pub messages: Value,
    pub created_at: DateTime<Utc>,
}

const PROMPT_COLUMNS: &str = "p.prompt_id, p.name, p.created_at,
     coalesce((select jsonb_object_agg(l.label, l.version) from prompt_labels l
               where l.prompt_id = p.prompt_id), '{}'::jsonb) as labels,
     (select max(v.version) from prompt_versions v where v.prompt_id = p.prompt_id)
         as latest_version";

/// Creates a prompt with its first version. The write's target should be the prompt's id.
pub async fn create(
    tx: &mut WriteTx,
    prompt_id: Uuid,
    name: &str,
    messages: &Value,
) -> Result<(), StorageError> {
    let org = tx.org();
    tx.detail("name", name);
    sqlx::query("insert into prompts (prompt_id, org_id, name) values ($1, $2, $3)")
        .bind(prompt_id)
        .bind(org.as_uuid())
        .bind(name)
        .execute(tx.conn())
        .await
        .map_err(StorageError::on_constraint(
            "uq_prompts_org_name",
            "a prompt with this name exists",
        ))?;
    sqlx::query(
        "insert into prompt_versions (org_id, prompt_id, version, messages) values ($1, $2, 1, $3)",
    )
    .bind(org.as_uuid())
    .bind(prompt_id)
    .bind(messages)
    .execute(tx.conn())
    .await
    .map_err(StorageError::from_write)?;
    tx.detail("version", 1);
    Ok(())
}

/// The prompt's id by name, in the transaction's org.
pub async fn id_of(tx: &mut TenantTx, name: &str) -> Result<Uuid, StorageError> {
    let id: Option<Uuid> = sqlx::query_scalar("select prompt_id from prompts where name = $1")
        .bind(name)
        .fetch_optional(tx.conn())
        .await?;
    id.ok_or(StorageError::NotFound)
}

/// Adds the next version. Two adds racing for one number: the second is a conflict (the
/// primary key holds), to be retried.
pub async fn add_version(
    tx: &mut WriteTx,
    prompt_id: Uuid,
    messages: &Value,
) -> Result<i32, StorageError> {
    let org = tx.org();
    let next: Option<i32> = sqlx::query_scalar(
        "select coalesce((select max(version) from prompt_versions where prompt_id = p.prompt_id), 0) + 1
         from prompts p where p.prompt_id = $1",
    )
    .bind(prompt_id)
    .fetch_optional(tx.conn())
    .await?;
    let version = next.ok_or(StorageError::NotFound)?;
    sqlx::query(
        "insert into prompt_versions (org_id, prompt_id, version, messages) values ($1, $2, $3, $4)",
    )
    .bind(org.as_uuid())
    .bind(prompt_id)
    .bind(version)
    .bind(messages)
    .execute(tx.conn())
    .await
    .map_err(StorageError::on_constraint(
        "prompt_versions_pkey",
        "another version was added at the same moment: retry",
    ))?;
    tx.detail("version", version);
    Ok(version)
}

/// Points `label` at `version` (creating the label if new); returns the version it pointed at
/// before. An unknown version is `NotFound`.
pub async fn move_label(
    tx: &mut WriteTx,
    prompt_id: Uuid,
    label: &str,
    version: i32,
) -> Result<Option<i32>, StorageError> {
    let org = tx.org();
    let exists: Option<i32> = sqlx::query_scalar(
        "select version from prompt_versions where prompt_id = $1 and version = $2",
    )
    .bind(prompt_id)
    .bind(version)
    .fetch_optional(tx.conn())
    .await?;
    if exists.is_none() {
        return Err(StorageError::NotFound);
    }
    let previous: Option<i32> = sqlx::query_scalar(
        "select version from prompt_labels where prompt_id = $1 and label = $2 for update",
    )
    .bind(prompt_id)
    .bind(label)
    .fetch_optional(tx.conn())
    .await?;
    sqlx::query(
        "insert into prompt_labels (org_id, prompt_id, label, version) values ($1, $2, $3, $4)
         on conflict (prompt_id, label) do update set version = excluded.version, updated_at = now()",
    )
    .bind(org.as_uuid())
    .bind(prompt_id)
    .bind(label)
    .bind(version)
    .execute(tx.conn())
    .await
    .map_err(StorageError::from_write)?;
    tx.detail("label", label);
    tx.detail("version", version);
    if let Some(previous) = previous {
        tx.detail("previous_version", previous);
    }
    Ok(previous)
}

pub async fn list(tx: &mut TenantTx) -> Result<Vec<Prompt>, StorageError> {
    Ok(sqlx::query_as(&format!(
        "select {PROMPT_COLUMNS} from prompts p order by p.name"
    ))
    .fetch_all(tx.conn())
    .await?)
}

pub async fn versions(
    tx: &mut TenantTx,
    prompt_id: Uuid,
) -> Result<Vec<PromptVersion>, StorageError> {
    Ok(sqlx::query_as(
        "select version, messages, created_at from prompt_versions where prompt_id = $1
         order by version",
    )
    .bind(prompt_id)
    .fetch_all(tx.conn())
    .await?)
}

/// Which version a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    Label(String),
    Version(i32),
}

/// The version a request resolves to: by label or number. `None` if the prompt, label or
/// version does not exist.
pub async fn resolve(
    tx: &mut TenantTx,
    name: &str,
    pick: &Pick,
) -> Result<Option<(i32, Value)>, StorageError> {
    let row: Option<(i32, Value)> = match pick {
        Pick::Label(label) => {
            sqlx::query_as(
                "select v.version, v.messages from prompts p
                 join prompt_labels l on l.prompt_id = p.prompt_id and l.label = $2
                 join prompt_versions v on v.prompt_id = p.prompt_id and v.version = l.version
                 where p.name = $1",
            )
            .bind(name)
            .bind(label)
            .fetch_optional(tx.conn())
            .await?
        }
        Pick::Version(version) => {
            sqlx::query_as(
                "select v.version, v.messages from prompts p
                 join prompt_versions v on v.prompt_id = p.prompt_id and v.version = $2
                 where p.name = $1",
            )
            .bind(name)
            .bind(version)
            .fetch_optional(tx.conn())
            .await?
        }
    };
    Ok(row)
}
