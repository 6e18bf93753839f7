//! Settlements: each request's ledger row and what it charges to each limit, written in
//! batches, idempotent by entry id.

use chrono::{DateTime, Utc};
use portcullis_core::{KeyId, OrgId};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::Db;
use crate::error::StorageError;

use super::Counter;

/// What one settled request charges to one limit, and the lease it spent from (none when the
/// limit has no cap and nothing was leased).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    pub counter: Counter,
    pub lease_id: Option<Uuid>,
    pub amount: i64,
}

/// A settled request: its ledger row and what it charges to each limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub entry_id: Uuid,
    pub org_id: OrgId,
    pub occurred_at: DateTime<Utc>,
    pub request_id: String,
    pub team_id: Option<Uuid>,
    pub key_id: KeyId,
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
    pub charges: Vec<Charge>,
}

/// Part of a lease a process gives back unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Returned {
    pub org_id: OrgId,
    pub lease_id: Uuid,
    pub amount: i64,
}

/// Writes settlements and returns leases in one transaction: per org, the ledger rows (a row
/// already there is skipped with its charges, so a retried batch counts nothing twice), then
/// counters, leases and daily usage from the rows actually inserted; then the returned parts
/// of leases. Returns how many ledger rows were new.
pub async fn settle(
    db: &Db,
    batch: &[Settlement],
    returned: &[Returned],
) -> Result<u64, StorageError> {
    let mut orgs: Vec<OrgId> = batch
        .iter()
        .map(|s| s.org_id)
        .chain(returned.iter().map(|r| r.org_id))
        .collect();
    orgs.sort_unstable();
    orgs.dedup();
    let mut tx = db.pool().begin().await?;
    let mut inserted = 0;
    for org in orgs {
        sqlx::query("select set_config('portcullis.org_id', $1, true)")
            .bind(org.to_string())
            .execute(&mut *tx)
            .await?;
        let rows: Vec<&Settlement> = batch.iter().filter(|s| s.org_id == org).collect();
        if !rows.is_empty() {
            inserted += settle_org(&mut tx, &rows).await?;
        }
        let parts: Vec<&Returned> = returned.iter().filter(|r| r.org_id == org).collect();
        if !parts.is_empty() {
            // Less, not gone: the process may have been granted more since it gave this back.
            sqlx::query(
                "update spend_leases l set amount = greatest(l.amount - r.amount, 0)
                 from unnest($1::uuid[], $2::bigint[]) as r(lease_id, amount)
                 where l.lease_id = r.lease_id",
            )
            .bind(parts.iter().map(|r| r.lease_id).collect::<Vec<_>>())
            .bind(parts.iter().map(|r| r.amount).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(inserted)
}

async fn settle_org(conn: &mut PgConnection, rows: &[&Settlement]) -> Result<u64, StorageError> {
    let column = |f: fn(&Settlement) -> i64| rows.iter().map(|s| f(s)).collect::<Vec<i64>>();
    let charges: Vec<(Uuid, &Charge)> = rows
        .iter()
        .flat_map(|s| s.charges.iter().map(|c| (s.entry_id, c)))
        .collect();
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        "with input as (
             select * from unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::uuid[],
                                  $5::uuid[], $6::text[], $7::text[], $8::bigint[], $9::bigint[],
                                  $10::bigint[], $11::bigint[], $12::bool[], $13::bool[],
                                  $20::bigint[], $21::bigint[])
               as t(entry_id, occurred_at, request_id, team_id, key_id, model, target,
                    input_tokens, output_tokens, cached_input_tokens, cost_micro_usd, priced,
                    estimated, cache_write_tokens, reasoning_tokens)
         ), inserted as (
             insert into ledger_entries (entry_id, org_id, occurred_at, request_id, team_id,
                                         key_id, model, target, input_tokens, output_tokens,
                                         cached_input_tokens, cost_micro_usd, priced, estimated,
                                         cache_write_tokens, reasoning_tokens)
             select entry_id, portcullis_current_org(), occurred_at, request_id, team_id, key_id,
                    model, target, input_tokens, output_tokens, cached_input_tokens,
                    cost_micro_usd, priced, estimated, cache_write_tokens, reasoning_tokens
             from input
             on conflict (entry_id) do nothing
             returning *
         ), charges as (
             select * from unnest($14::uuid[], $15::text[], $16::uuid[], $17::timestamptz[],
                                  $18::uuid[], $19::bigint[])
               as c(entry_id, scope, scope_id, period_start, lease_id, amount)
             where c.entry_id in (select entry_id from inserted)
         ), counted as (
             insert into spend_counters (org_id, scope, scope_id, period_start, spent)
             select portcullis_current_org(), scope, scope_id, period_start, sum(amount)
             from charges group by scope, scope_id, period_start
             order by scope collate \"C\", scope_id, period_start
             on conflict (org_id, scope, scope_id, period_start)
             do update set spent = spend_counters.spent + excluded.spent
         ), daily as (
             insert into usage_daily (org_id, day, key_id, model, team_id, requests,
                                      input_tokens, output_tokens, cost_micro_usd)
             select portcullis_current_org(), (occurred_at at time zone 'UTC')::date, key_id,
                    model, max(team_id::text)::uuid, count(*), sum(input_tokens),
                    sum(output_tokens), sum(cost_micro_usd)
             from inserted group by 2, key_id, model
             order by 2, key_id, model
             on conflict (org_id, day, key_id, model) do update set
                 requests = usage_daily.requests + excluded.requests,
                 input_tokens = usage_daily.input_tokens + excluded.input_tokens,
                 output_tokens = usage_daily.output_tokens + excluded.output_tokens,
                 cost_micro_usd = usage_daily.cost_micro_usd + excluded.cost_micro_usd
         )
         select entry_id from inserted",
    )
    .bind(rows.iter().map(|s| s.entry_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|s| s.occurred_at).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|s| s.request_id.clone())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|s| s.team_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|s| s.key_id.as_uuid()).collect::<Vec<_>>())
    .bind(rows.iter().map(|s| s.model.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|s| s.target.clone()).collect::<Vec<_>>())
    .bind(column(|s| s.input_tokens))
    .bind(column(|s| s.output_tokens))
    .bind(column(|s| s.cached_input_tokens))
    .bind(column(|s| s.cost_micro_usd))
    .bind(rows.iter().map(|s| s.priced).collect::<Vec<_>>())
    .bind(rows.iter().map(|s| s.estimated).collect::<Vec<_>>())
    .bind(charges.iter().map(|(e, _)| *e).collect::<Vec<_>>())
    .bind(
        charges
            .iter()
            .map(|(_, c)| c.counter.scope.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        charges
            .iter()
            .map(|(_, c)| c.counter.scope_id)
            .collect::<Vec<_>>(),
    )
    .bind(
        charges
            .iter()
            .map(|(_, c)| c.counter.period_start)
            .collect::<Vec<_>>(),
    )
    .bind(charges.iter().map(|(_, c)| c.lease_id).collect::<Vec<_>>())
    .bind(charges.iter().map(|(_, c)| c.amount).collect::<Vec<_>>())
    .bind(column(|s| s.cache_write_tokens))
    .bind(column(|s| s.reasoning_tokens))
    .fetch_all(&mut *conn)
    .await?;
    // After the counters, as `take` does: one lock order, no deadlock. Only the charges of
    // rows inserted now draw on their lease.
    let drawn: Vec<(Uuid, i64)> = charges
        .iter()
        .filter(|(entry, _)| inserted.contains(entry))
        .filter_map(|(_, c)| Some((c.lease_id?, c.amount)))
        .collect();
    if !drawn.is_empty() {
        sqlx::query(
            "update spend_leases l set amount = greatest(l.amount - d.total, 0)
             from (select lease_id, sum(amount)::bigint as total
                   from unnest($1::uuid[], $2::bigint[]) as t(lease_id, amount)
                   group by lease_id) d
             where l.lease_id = d.lease_id",
        )
        .bind(drawn.iter().map(|(l, _)| *l).collect::<Vec<_>>())
        .bind(drawn.iter().map(|(_, a)| *a).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(inserted.len() as u64)
}
