//! Spend in PostgreSQL (AV-2, RM-4): budget leases taken atomically across every limit of a
//! request, settlements written in batches (ledger row, counters, lease, daily usage in one
//! transaction, idempotent by entry id), lease renewal and the housekeeping sweep.

use chrono::{DateTime, NaiveDate, Utc};
use portcullis_core::money::grantable;
use portcullis_core::{KeyId, OrgId};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::Db;
use crate::error::StorageError;
use crate::tenant::TenantTx;

/// Which limit a counter and its leases belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Org,
    Team,
    Key,
    /// Requests per minute of a key.
    KeyRpm,
    /// Tokens per minute of a key.
    KeyTpm,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Org => "org",
            Self::Team => "team",
            Self::Key => "key",
            Self::KeyRpm => "key_rpm",
            Self::KeyTpm => "key_tpm",
        }
    }
}

/// One limit in one period: what a counter row counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Counter {
    pub scope: Scope,
    pub scope_id: Uuid,
    pub period_start: DateTime<Utc>,
}

/// A slice of one limit that a process asks for: at least `needed`, ideally `wanted`, added to
/// its live lease `lease_id` if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub counter: Counter,
    pub lease_id: Option<Uuid>,
    pub needed: i64,
    pub wanted: i64,
}

/// What a process got of one limit. `fresh`: a new lease (none was live for this process and
/// limit), so what it remembered of an old one is void.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub counter: Counter,
    pub lease_id: Uuid,
    pub amount: i64,
    pub fresh: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Take {
    Granted(Vec<Granted>),
    /// This limit has less than `needed` left: nothing was granted on any limit.
    Refused(Counter),
}

/// The cap of a limit as PostgreSQL has it now; `None` when it has none.
async fn cap(conn: &mut PgConnection, counter: &Counter) -> Result<Option<i64>, StorageError> {
    let sql = match counter.scope {
        Scope::Org => "select budget_micro_usd from org_settings where $1::uuid is not null",
        Scope::Team => "select budget_micro_usd from teams where team_id = $1",
        Scope::Key => "select budget_micro_usd from virtual_keys where key_id = $1",
        Scope::KeyRpm => "select rpm_limit::bigint from virtual_keys where key_id = $1",
        Scope::KeyTpm => "select tpm_limit::bigint from virtual_keys where key_id = $1",
    };
    let cap: Option<Option<i64>> = sqlx::query_scalar(sql)
        .bind(counter.scope_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(cap.flatten())
}

/// Leases what every limit of `wants` can give, all or nothing, in one transaction of the org.
/// Limits are locked in a fixed order, so concurrent takes never deadlock.
pub async fn take(
    db: &Db,
    org: OrgId,
    holder: Uuid,
    ttl_ms: i32,
    wants: &[Want],
) -> Result<Take, StorageError> {
    let mut wants = wants.to_vec();
    // The order settlements lock counters in (`order by scope collate "C", ...`).
    wants.sort_by_key(|w| {
        (
            w.counter.scope.as_str(),
            w.counter.scope_id,
            w.counter.period_start,
        )
    });
    let mut attempt = 0;
    loop {
        match try_take(db, org, holder, ttl_ms, &wants).await {
            Err(StorageError::Database(error) | StorageError::Unavailable(error))
                if is_deadlock(&error) && attempt < 3 =>
            {
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Locks are taken in one order everywhere, so this should not happen; if PostgreSQL still
/// picks this transaction as a deadlock victim, the take is simply tried again.
fn is_deadlock(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

async fn try_take(
    db: &Db,
    org: OrgId,
    holder: Uuid,
    ttl_ms: i32,
    wants: &[Want],
) -> Result<Take, StorageError> {
    let mut tx = db.begin_tenant(org).await?;
    let mut granted = Vec::with_capacity(wants.len());
    for want in wants {
        match take_one(&mut tx, holder, ttl_ms, want).await? {
            Some(grant) => granted.push(grant),
            None => return Ok(Take::Refused(want.counter)),
        }
    }
    tx.commit().await?;
    Ok(Take::Granted(granted))
}

async fn take_one(
    tx: &mut TenantTx,
    holder: Uuid,
    ttl_ms: i32,
    want: &Want,
) -> Result<Option<Granted>, StorageError> {
    let c = &want.counter;
    let conn = tx.conn();
    sqlx::query(
        "insert into spend_counters (org_id, scope, scope_id, period_start)
         values (portcullis_current_org(), $1, $2, $3) on conflict do nothing",
    )
    .bind(c.scope.as_str())
    .bind(c.scope_id)
    .bind(c.period_start)
    .execute(&mut *conn)
    .await?;
    // Lock first, then read the leases in a statement of its own: under READ COMMITTED a
    // statement that waited for the lock re-reads the locked row but not a subquery, which
    // would miss a lease granted by the transaction it waited for.
    let spent: i64 = sqlx::query_scalar(
        "select spent from spend_counters
         where org_id = portcullis_current_org() and scope = $1 and scope_id = $2
           and period_start = $3
         for no key update",
    )
    .bind(c.scope.as_str())
    .bind(c.scope_id)
    .bind(c.period_start)
    .fetch_one(&mut *conn)
    .await?;
    let leased: i64 = sqlx::query_scalar(
        "select coalesce(sum(amount), 0)::bigint from spend_leases
         where org_id = portcullis_current_org() and scope = $1 and scope_id = $2
           and period_start = $3 and expires_at > now()",
    )
    .bind(c.scope.as_str())
    .bind(c.scope_id)
    .bind(c.period_start)
    .fetch_one(&mut *conn)
    .await?;
    let amount = match cap(conn, c).await? {
        Some(cap) => match grantable(cap, spent, leased, want.needed, want.wanted) {
            Some(amount) => amount,
            None => return Ok(None),
        },
        // The limit was lifted since the process looked: nothing to hold back.
        None => want.wanted.max(want.needed),
    };
    // One row per process and limit. A live row grows; an expired one (this process stalled
    // past its TTL, and others may hold its amount now) starts over under a new id.
    let (lease_id, fresh): (Uuid, bool) = sqlx::query_as(
        "insert into spend_leases (lease_id, org_id, holder, scope, scope_id, period_start,
                                   amount, expires_at)
         values ($1, portcullis_current_org(), $2, $3, $4, $5, $6,
                 now() + make_interval(secs => $7 / 1000.0))
         on conflict (holder, org_id, scope, scope_id, period_start) do update set
             lease_id = case when spend_leases.expires_at > now() then spend_leases.lease_id
                             else excluded.lease_id end,
             amount = case when spend_leases.expires_at > now()
                           then spend_leases.amount + excluded.amount
                           else excluded.amount end,
             expires_at = excluded.expires_at
         returning lease_id, lease_id = $1",
    )
    .bind(Uuid::now_v7())
    .bind(holder)
    .bind(c.scope.as_str())
    .bind(c.scope_id)
    .bind(c.period_start)
    .bind(amount)
    .bind(ttl_ms)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Some(Granted {
        counter: *c,
        lease_id,
        amount,
        fresh,
    }))
}

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

/// Extends the holder's live leases by `ttl_ms`; returns those still live (an expired lease is
/// never revived: its amount may already be someone else's).
pub async fn renew(db: &Db, holder: Uuid, ttl_ms: i32) -> Result<Vec<Uuid>, StorageError> {
    Ok(
        sqlx::query_scalar("select lease_id from spend_renew_leases($1, $2)")
            .bind(holder)
            .bind(ttl_ms)
            .fetch_all(db.pool())
            .await?,
    )
}

/// Lock ids of the background jobs, one process at a time each.
const SWEEP_LOCK: i64 = 0x7063_7370_656e_6401;

/// Housekeeping if no other process is doing it: removes expired leases and past rate-limit
/// minutes (`spend_sweep()`), and ledger rows past their org's retention (`ledger_expire()`).
/// `None` when another process holds the job.
pub async fn sweep(db: &Db) -> Result<Option<(i32, i64)>, StorageError> {
    let Some(mut tx) = db.begin_job(SWEEP_LOCK).await? else {
        return Ok(None);
    };
    let leases: i32 = sqlx::query_scalar("select spend_sweep()")
        .fetch_one(&mut *tx)
        .await?;
    let ledger: i64 = sqlx::query_scalar("select ledger_expire()")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some((leases, ledger)))
}

/// What a limit has settled and what live leases hold of it, as an operator or test sees it.
pub async fn counter_state(
    tx: &mut TenantTx,
    counter: &Counter,
) -> Result<(i64, i64), StorageError> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "select c.spent,
                coalesce((select sum(l.amount) from spend_leases l
                           where l.org_id = c.org_id and l.scope = c.scope
                             and l.scope_id = c.scope_id and l.period_start = c.period_start
                             and l.expires_at > now()), 0)::bigint
         from spend_counters c
         where c.scope = $1 and c.scope_id = $2 and c.period_start = $3",
    )
    .bind(counter.scope.as_str())
    .bind(counter.scope_id)
    .bind(counter.period_start)
    .fetch_optional(tx.conn())
    .await?;
    Ok(row.unwrap_or((0, 0)))
}

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
