//! Request logs (RM-1): one metadata row per data-plane request, and its content (prompt and
//! completion) in a table of its own, only at logging level `content`. Written in batches by
//! the gateway's log writer; read by admins; content removed by retention (RM-3); both removed
//! per end user on a data-subject request (RM-5).

use chrono::{DateTime, Utc};
use portcullis_core::{KeyId, OrgId};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::Db;
use crate::error::StorageError;
use crate::tenant::{TenantTx, WriteTx};

/// One request, as the writer records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLog {
    pub log_id: Uuid,
    pub org_id: OrgId,
    pub created_at: DateTime<Utc>,
    pub request_id: String,
    pub key_id: KeyId,
    pub team_id: Option<Uuid>,
    /// As it will be stored: redacted already where the org redacts.
    pub end_user: Option<String>,
    pub end_user_digest: Option<Vec<u8>>,
    pub endpoint: &'static str,
    pub model: String,
    pub target: Option<String>,
    pub stream: bool,
    pub status: i16,
    pub error_code: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost_micro_usd: Option<i64>,
    pub latency_ms: i32,
    pub guardrail: &'static str,
    pub pii_types: Vec<String>,
    pub logging_level: &'static str,
    pub redacted: bool,
    /// Present at logging level `content` only.
    pub content: Option<NewContent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContent {
    pub request: String,
    pub response: Option<String>,
    pub truncated: bool,
}

/// How an end user is found: SHA-256 of the org and the id, so that a subject can be found and
/// deleted even where the stored id is redacted.
pub fn end_user_digest(org: OrgId, end_user: &str) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(b"portcullis end user\0");
    hash.update(org.as_uuid().as_bytes());
    hash.update(end_user.as_bytes());
    hash.finalize().to_vec()
}

/// Writes a batch in one transaction, org by org; a row already written (a retried batch) is
/// skipped. Returns how many rows were new.
pub async fn write(db: &Db, batch: &[NewLog]) -> Result<u64, StorageError> {
    let mut orgs: Vec<OrgId> = batch.iter().map(|l| l.org_id).collect();
    orgs.sort_unstable();
    orgs.dedup();
    let mut tx = db.pool().begin().await?;
    let mut inserted = 0;
    for org in orgs {
        sqlx::query("select set_config('portcullis.org_id', $1, true)")
            .bind(org.to_string())
            .execute(&mut *tx)
            .await?;
        let rows: Vec<&NewLog> = batch.iter().filter(|l| l.org_id == org).collect();
        inserted += write_org(&mut tx, &rows).await?;
    }
    tx.commit().await?;
    Ok(inserted)
}

async fn write_org(conn: &mut PgConnection, rows: &[&NewLog]) -> Result<u64, StorageError> {
    let pii_types: Vec<String> = rows.iter().map(|l| l.pii_types.join(",")).collect();
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        "insert into request_logs (log_id, org_id, created_at, request_id, key_id, team_id,
                                   end_user, end_user_digest, endpoint, model, target, stream,
                                   status, error_code, input_tokens, output_tokens,
                                   cost_micro_usd, latency_ms, guardrail, pii_types,
                                   logging_level, redacted)
         select t.log_id, portcullis_current_org(), t.created_at, t.request_id, t.key_id,
                t.team_id, t.end_user, t.end_user_digest, t.endpoint, t.model, t.target,
                t.stream, t.status, t.error_code, t.input_tokens, t.output_tokens,
                t.cost_micro_usd, t.latency_ms, t.guardrail,
                coalesce(string_to_array(nullif(t.pii_types, ''), ','), '{}'),
                t.logging_level, t.redacted
         from unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::uuid[], $5::uuid[],
                     $6::text[], $7::bytea[], $8::text[], $9::text[], $10::text[], $11::bool[],
                     $12::int2[], $13::text[], $14::int8[], $15::int8[], $16::int8[],
                     $17::int4[], $18::text[], $19::text[], $20::text[], $21::bool[])
           as t(log_id, created_at, request_id, key_id, team_id, end_user, end_user_digest,
                endpoint, model, target, stream, status, error_code, input_tokens,
                output_tokens, cost_micro_usd, latency_ms, guardrail, pii_types,
                logging_level, redacted)
         on conflict (log_id) do nothing
         returning log_id",
    )
    .bind(rows.iter().map(|l| l.log_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|l| l.created_at).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|l| l.request_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|l| *l.key_id.as_uuid()).collect::<Vec<_>>())
    .bind(rows.iter().map(|l| l.team_id).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|l| l.end_user.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|l| l.end_user_digest.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|l| l.endpoint).collect::<Vec<_>>())
    .bind(rows.iter().map(|l| l.model.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|l| l.target.as_deref()).collect::<Vec<_>>())
    .bind(rows.iter().map(|l| l.stream).collect::<Vec<_>>())
    .bind(rows.iter().map(|l| l.status).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|l| l.error_code.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|l| l.input_tokens).collect::<Vec<_>>())
    .bind(rows.iter().map(|l| l.output_tokens).collect::<Vec<_>>())
    .bind(rows.iter().map(|l| l.cost_micro_usd).collect::<Vec<_>>())
    .bind(rows.iter().map(|l| l.latency_ms).collect::<Vec<_>>())
    .bind(rows.iter().map(|l| l.guardrail).collect::<Vec<_>>())
    .bind(&pii_types)
    .bind(rows.iter().map(|l| l.logging_level).collect::<Vec<_>>())
    .bind(rows.iter().map(|l| l.redacted).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    let contents: Vec<(&NewLog, &NewContent)> = rows
        .iter()
        .filter(|l| inserted.contains(&l.log_id))
        .filter_map(|l| l.content.as_ref().map(|c| (*l, c)))
        .collect();
    if !contents.is_empty() {
        sqlx::query(
            "insert into request_contents (log_id, org_id, created_at, request, response,
                                           truncated)
             select t.log_id, portcullis_current_org(), t.created_at, t.request, t.response,
                    t.truncated
             from unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::bool[])
               as t(log_id, created_at, request, response, truncated)",
        )
        .bind(contents.iter().map(|(l, _)| l.log_id).collect::<Vec<_>>())
        .bind(
            contents
                .iter()
                .map(|(l, _)| l.created_at)
                .collect::<Vec<_>>(),
        )
        .bind(
            contents
                .iter()
                .map(|(_, c)| c.request.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            contents
                .iter()
                .map(|(_, c)| c.response.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            contents
                .iter()
                .map(|(_, c)| c.truncated)
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(inserted.len() as u64)
}

/// A request log as admins read it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LogEntry {
    pub log_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub request_id: String,
    pub key_id: Uuid,
    pub team_id: Option<Uuid>,
    pub end_user: Option<String>,
    pub endpoint: String,
    pub model: String,
    pub target: Option<String>,
    pub stream: bool,
    pub status: i16,
    pub error_code: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost_micro_usd: Option<i64>,
    pub latency_ms: i32,
    pub guardrail: String,
    pub pii_types: Vec<String>,
    pub logging_level: String,
    pub redacted: bool,
}

const LOG_COLUMNS: &str = "l.log_id, l.created_at, l.request_id, l.key_id, l.team_id, \
     l.end_user, l.endpoint, l.model, l.target, l.stream, l.status, l.error_code, \
     l.input_tokens, l.output_tokens, l.cost_micro_usd, l.latency_ms, l.guardrail, \
     l.pii_types, l.logging_level, l.redacted";

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub after: Option<Uuid>,
    pub key_id: Option<Uuid>,
    pub end_user_digest: Option<Vec<u8>>,
    pub limit: i64,
}

/// The org's request logs, oldest first, after a cursor.
pub async fn list(tx: &mut TenantTx, filter: &LogFilter) -> Result<Vec<LogEntry>, StorageError> {
    Ok(sqlx::query_as(&format!(
        "select {LOG_COLUMNS} from request_logs l
         where ($1::uuid is null or l.log_id > $1)
           and ($2::uuid is null or l.key_id = $2)
           and ($3::bytea is null or l.end_user_digest = $3)
         order by l.log_id limit $4"
    ))
    .bind(filter.after)
    .bind(filter.key_id)
    .bind(filter.end_user_digest.as_deref())
    .bind(filter.limit)
    .fetch_all(tx.conn())
    .await?)
}

/// A log with its content (if any), by request id (the latest if a client reused one).
pub async fn get(
    tx: &mut TenantTx,
    request_id: &str,
) -> Result<Option<(LogEntry, Option<NewContent>)>, StorageError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        log: LogEntry,
        request: Option<String>,
        response: Option<String>,
        truncated: Option<bool>,
    }
    let row: Option<Row> = sqlx::query_as(&format!(
        "select {LOG_COLUMNS}, c.request, c.response, c.truncated
         from request_logs l left join request_contents c on c.log_id = l.log_id
         where l.request_id = $1
         order by l.log_id desc limit 1"
    ))
    .bind(request_id)
    .fetch_optional(tx.conn())
    .await?;
    Ok(row.map(|r| {
        let content = r.request.map(|request| NewContent {
            request,
            response: r.response,
            truncated: r.truncated.unwrap_or(false),
        });
        (r.log, content)
    }))
}

/// What a data-subject deletion removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub request_logs: u64,
    pub contents: u64,
}

/// RM-5: removes one end user's request logs and their content in the write's org, and nothing
/// else (the ledger and daily usage hold no end user). The audit entry records the digest and
/// the counts, never the id.
pub async fn delete_subject(tx: &mut WriteTx, digest: &[u8]) -> Result<Deleted, StorageError> {
    let contents = sqlx::query(
        "delete from request_contents c using request_logs l
         where l.log_id = c.log_id and l.end_user_digest = $1",
    )
    .bind(digest)
    .execute(tx.conn())
    .await?
    .rows_affected();
    let request_logs = sqlx::query("delete from request_logs where end_user_digest = $1")
        .bind(digest)
        .execute(tx.conn())
        .await?
        .rows_affected();
    tx.detail("end_user_digest", hex::encode(digest));
    tx.detail("request_logs", request_logs);
    tx.detail("contents", contents);
    Ok(Deleted {
        request_logs,
        contents,
    })
}

/// Retention runs in one process at a time across the fleet.
const RETENTION_LOCK: i64 = 0x7063_6c6f_6773_0001;

/// RM-3: removes content past each org's retention, if no other process is doing so now.
/// Returns how many content rows went, or `None` when another process holds the job.
pub async fn expire_content(db: &Db) -> Result<Option<i64>, StorageError> {
    let Some(mut tx) = db.begin_job(RETENTION_LOCK).await? else {
        return Ok(None);
    };
    let removed: i64 = sqlx::query_scalar("select content_expire()")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(removed))
}
