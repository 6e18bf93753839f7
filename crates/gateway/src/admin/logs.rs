//! Request logs for admins (RM-1): `/logs` (metadata, filtered by key or end user, paged),
//! `/logs/{request_id}` (with its content, which exists only if the org logged content), and
//! data-subject deletion (RM-5).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use portcullis_storage::AuditedChange;
use portcullis_storage::logs::{self as store, LogEntry, LogFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::page_limit;
use crate::error::ApiError;
use crate::guard::OrgCaller;
use crate::json::JsonBody;
use crate::state::AppState;

/// End-user ids are the client's `user` field: bounded like any identifier.
const MAX_END_USER: usize = 512;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    after: Option<Uuid>,
    limit: Option<i64>,
    key_id: Option<Uuid>,
    end_user: Option<String>,
}

#[derive(Debug, Serialize)]
struct LogView {
    log_id: Uuid,
    created_at: DateTime<Utc>,
    request_id: String,
    key_id: Uuid,
    team_id: Option<Uuid>,
    end_user: Option<String>,
    endpoint: String,
    model: String,
    target: Option<String>,
    stream: bool,
    status: i16,
    error_code: Option<String>,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    cost_micro_usd: Option<i64>,
    latency_ms: i32,
    guardrail: String,
    pii_types: Vec<String>,
    logging_level: String,
    redacted: bool,
}

impl From<LogEntry> for LogView {
    fn from(l: LogEntry) -> Self {
        Self {
            log_id: l.log_id,
            created_at: l.created_at,
            request_id: l.request_id,
            key_id: l.key_id,
            team_id: l.team_id,
            end_user: l.end_user,
            endpoint: l.endpoint,
            model: l.model,
            target: l.target,
            stream: l.stream,
            status: l.status,
            error_code: l.error_code,
            input_tokens: l.input_tokens,
            output_tokens: l.output_tokens,
            cost_micro_usd: l.cost_micro_usd,
            latency_ms: l.latency_ms,
            guardrail: l.guardrail,
            pii_types: l.pii_types,
            logging_level: l.logging_level,
            redacted: l.redacted,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct LogPage {
    logs: Vec<LogView>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<Uuid>,
}

fn end_user(text: &str) -> Result<&str, ApiError> {
    if text.is_empty() || text.len() > MAX_END_USER {
        return Err(ApiError::invalid_request(format!(
            "`end_user` is 1 to {MAX_END_USER} bytes"
        )));
    }
    Ok(text)
}

/// `GET .../logs?after=&limit=&key_id=&end_user=`: oldest first.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Json<LogPage>, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid_request(rejection.body_text()))?;
    let limit = page_limit(query.limit)?;
    let digest = query
        .end_user
        .as_deref()
        .map(end_user)
        .transpose()?
        .map(|user| store::end_user_digest(caller.org, user));
    let filter = LogFilter {
        after: query.after,
        key_id: query.key_id,
        end_user_digest: digest,
        limit,
    };
    let mut tx = state.db.begin_tenant(caller.org).await?;
    let logs = store::list(&mut tx, &filter).await?;
    tx.commit().await?;
    let full = i64::try_from(logs.len()).unwrap_or(i64::MAX) == limit;
    let next_after = full.then(|| logs.last().map(|l| l.log_id)).flatten();
    Ok(Json(LogPage {
        logs: logs.into_iter().map(LogView::from).collect(),
        next_after,
    }))
}

#[derive(Debug, Serialize)]
pub struct LogDetail {
    #[serde(flatten)]
    log: LogView,
    /// Present when the request was logged at level `content`.
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<ContentView>,
}

#[derive(Debug, Serialize)]
struct ContentView {
    /// The request as it left for the provider, as JSON.
    request: Value,
    response: Option<String>,
    truncated: bool,
}

/// `GET .../logs/{request_id}`.
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    Path((_, request_id)): Path<(String, String)>,
) -> Result<Json<LogDetail>, ApiError> {
    let mut tx = state.db.begin_tenant(caller.org).await?;
    let found = store::get(&mut tx, &request_id).await?;
    tx.commit().await?;
    let (log, content) = found.ok_or_else(ApiError::not_found)?;
    Ok(Json(LogDetail {
        log: log.into(),
        content: content.map(|c| ContentView {
            // Cut content is no longer valid JSON: it is then shown as the text it is.
            request: serde_json::from_str(&c.request).unwrap_or(Value::String(c.request)),
            response: c.response,
            truncated: c.truncated,
        }),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectDeletion {
    end_user: String,
}

#[derive(Debug, Serialize)]
pub struct DeletionView {
    deleted: Deleted,
}

#[derive(Debug, Serialize)]
struct Deleted {
    request_logs: u64,
    contents: u64,
}

/// `POST .../data-subject-deletions {end_user}`: removes the end user's request logs and
/// content in this org, and nothing else; audited with a digest of the id, never the id.
pub async fn delete_subject(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    JsonBody(body): JsonBody<SubjectDeletion>,
) -> Result<(StatusCode, Json<DeletionView>), ApiError> {
    let digest = store::end_user_digest(caller.org, end_user(&body.end_user)?);
    let change = AuditedChange::new("data_subject.deleted", "end_user", hex::encode(&digest));
    let mut tx = caller.begin_write(&state, change).await?;
    let deleted = store::delete_subject(&mut tx, &digest).await?;
    tx.commit().await?;
    Ok((
        StatusCode::OK,
        Json(DeletionView {
            deleted: Deleted {
                request_logs: deleted.request_logs,
                contents: deleted.contents,
            },
        }),
    ))
}
