//! Model routes: an alias of an org mapped to its ordered targets and fallback aliases.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::{StorageError, expect_row};
use crate::tenant::{TenantTx, WriteTx};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ModelRoute {
    pub alias: String,
    /// `[{credential_id, model, weight}]`, checked by the gateway before it is stored.
    pub targets: Value,
    pub fallback: Vec<String>,
    pub timeout_ms: Option<i32>,
    pub input_micro_usd_per_mtok: Option<i64>,
    pub output_micro_usd_per_mtok: Option<i64>,
    pub cached_input_micro_usd_per_mtok: Option<i64>,
    /// The most output tokens a request may ask for, and what it is sent when it asks none.
    pub max_output_tokens: Option<i32>,
    /// A target without a price is served (recorded as unpriced) rather than refused.
    pub unpriced: bool,
    /// Most choices (`n`) a request may ask for.
    pub max_choices: Option<i32>,
    /// The worst case of one file part in tokens; file parts are refused without it.
    pub file_part_tokens: Option<i32>,
    /// A stream's longest quiet between pieces, and its longest life, in milliseconds.
    pub stream_idle_ms: Option<i32>,
    pub stream_max_ms: Option<i32>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "alias, targets, fallback, timeout_ms, input_micro_usd_per_mtok,
    output_micro_usd_per_mtok, cached_input_micro_usd_per_mtok, max_output_tokens, unpriced,
    max_choices, file_part_tokens, stream_idle_ms, stream_max_ms, updated_at";

pub async fn list(tx: &mut TenantTx) -> Result<Vec<ModelRoute>, StorageError> {
    Ok(sqlx::query_as(&format!(
        "select {COLUMNS} from model_routes where org_id = $1 order by alias"
    ))
    .bind(tx.org().as_uuid())
    .fetch_all(tx.conn())
    .await?)
}

/// Creates or replaces the route of `route.alias`.
pub async fn put(tx: &mut WriteTx, route: &ModelRoute) -> Result<ModelRoute, StorageError> {
    let org = tx.org();
    tx.detail("targets", route.targets.clone());
    tx.detail("fallback", route.fallback.clone());
    // Every setting that changes what a request may cost is in the entry.
    tx.detail("unpriced", route.unpriced);
    tx.detail("max_output_tokens", route.max_output_tokens);
    tx.detail("max_choices", route.max_choices);
    tx.detail("file_part_tokens", route.file_part_tokens);
    tx.detail("input_micro_usd_per_mtok", route.input_micro_usd_per_mtok);
    tx.detail("output_micro_usd_per_mtok", route.output_micro_usd_per_mtok);
    tx.detail(
        "cached_input_micro_usd_per_mtok",
        route.cached_input_micro_usd_per_mtok,
    );
    sqlx::query_as(&format!(
        "insert into model_routes (org_id, alias, targets, fallback, timeout_ms,
             input_micro_usd_per_mtok, output_micro_usd_per_mtok,
             cached_input_micro_usd_per_mtok, max_output_tokens, unpriced, max_choices,
             file_part_tokens, stream_idle_ms, stream_max_ms)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         on conflict (org_id, alias) do update set targets = excluded.targets,
             fallback = excluded.fallback, timeout_ms = excluded.timeout_ms,
             input_micro_usd_per_mtok = excluded.input_micro_usd_per_mtok,
             output_micro_usd_per_mtok = excluded.output_micro_usd_per_mtok,
             cached_input_micro_usd_per_mtok = excluded.cached_input_micro_usd_per_mtok,
             max_output_tokens = excluded.max_output_tokens, unpriced = excluded.unpriced,
             max_choices = excluded.max_choices, file_part_tokens = excluded.file_part_tokens,
             stream_idle_ms = excluded.stream_idle_ms, stream_max_ms = excluded.stream_max_ms,
             updated_at = now()
         returning {COLUMNS}"
    ))
    .bind(org.as_uuid())
    .bind(&route.alias)
    .bind(&route.targets)
    .bind(&route.fallback)
    .bind(route.timeout_ms)
    .bind(route.input_micro_usd_per_mtok)
    .bind(route.output_micro_usd_per_mtok)
    .bind(route.cached_input_micro_usd_per_mtok)
    .bind(route.max_output_tokens)
    .bind(route.unpriced)
    .bind(route.max_choices)
    .bind(route.file_part_tokens)
    .bind(route.stream_idle_ms)
    .bind(route.stream_max_ms)
    .fetch_one(tx.conn())
    .await
    .map_err(StorageError::from_write)
}

/// Deletes a route that no other route falls back to.
pub async fn delete(tx: &mut WriteTx, alias: &str) -> Result<(), StorageError> {
    let org = tx.org();
    let needed: bool = sqlx::query_scalar(
        "select exists (select 1 from model_routes where org_id = $1 and $2 = any(fallback))",
    )
    .bind(org.as_uuid())
    .bind(alias)
    .fetch_one(tx.conn())
    .await?;
    if needed {
        return Err(StorageError::Conflict(
            "another route falls back to this one",
        ));
    }
    let done = sqlx::query("delete from model_routes where org_id = $1 and alias = $2")
        .bind(org.as_uuid())
        .bind(alias)
        .execute(tx.conn())
        .await
        .map_err(StorageError::from_write)?;
    expect_row(done)
}
