//! Leases: a process takes a slice of every limit of a request at once, renews what it holds
//! and gives back what it left idle; the housekeeping sweep removes what expired.

use portcullis_core::OrgId;
use portcullis_core::money::grantable;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::Db;
use crate::error::StorageError;
use crate::tenant::TenantTx;

use super::{Counter, Scope};

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
