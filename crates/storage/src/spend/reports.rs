//! What the ledger and the daily usage show: `/ledger` and `/usage`.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::error::StorageError;
use crate::tenant::TenantTx;

/// One ledger row, as `/ledger` shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LedgerEntry {
    pub entry_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub request_id: String,
    pub team_id: Option<Uuid>,
    pub key_id: Uuid,
    pub model: String,
    pub target: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_micro_usd: i64,
    pub priced: bool,
    pub estimated: bool,
}

/// Ledger rows of the org in `[from, to)`, oldest first, after the entry `after` (a cursor).
pub async fn ledger(
    tx: &mut TenantTx,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<LedgerEntry>, StorageError> {
    Ok(sqlx::query_as(
        "select entry_id, occurred_at, request_id, team_id, key_id, model, target, input_tokens,
                output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens,
                cost_micro_usd, priced, estimated
         from ledger_entries
         where occurred_at >= $1 and occurred_at < $2
           and ($3::uuid is null or (occurred_at, entry_id) >
                (select occurred_at, entry_id from ledger_entries where entry_id = $3))
         order by occurred_at, entry_id
         limit $4",
    )
    .bind(from)
    .bind(to)
    .bind(after)
    .bind(limit)
    .fetch_all(tx.conn())
    .await?)
}

/// What `/usage` groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grouping {
    pub day: bool,
    pub model: bool,
    pub key: bool,
    pub team: bool,
}

/// One group of daily usage; a field is `None` when the grouping leaves it out.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageRow {
    pub day: Option<NaiveDate>,
    pub model: Option<String>,
    pub key_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_micro_usd: i64,
}

/// Daily usage of the org for days in `[from, to]`, summed by `grouping`.
pub async fn usage(
    tx: &mut TenantTx,
    from: NaiveDate,
    to: NaiveDate,
    grouping: Grouping,
) -> Result<Vec<UsageRow>, StorageError> {
    // Each grouping column is either itself or NULL: the statement stays fixed text.
    Ok(sqlx::query_as(
        "select case when $3 then day end as day,
                case when $4 then model end as model,
                case when $5 then key_id end as key_id,
                case when $6 then team_id end as team_id,
                sum(requests)::bigint as requests, sum(input_tokens)::bigint as input_tokens,
                sum(output_tokens)::bigint as output_tokens,
                sum(cost_micro_usd)::bigint as cost_micro_usd
         from usage_daily
         where day >= $1 and day <= $2
         group by 1, 2, 3, 4
         order by 1 nulls first, 2 nulls first, 3 nulls first, 4 nulls first",
    )
    .bind(from)
    .bind(to)
    .bind(grouping.day)
    .bind(grouping.model)
    .bind(grouping.key)
    .bind(grouping.team)
    .fetch_all(tx.conn())
    .await?)
}
