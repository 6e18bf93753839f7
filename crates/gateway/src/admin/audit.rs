//! Reading the audit trail. No route changes or deletes an entry (AU-3).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use chrono::{DateTime, Utc};
use portcullis_core::audit::ChainedRecord;
use portcullis_storage::StorageError;
use portcullis_storage::audit::{self as store, EventFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::guard::OrgCaller;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    after_seq: Option<i64>,
    limit: Option<i64>,
    action: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct EventView {
    seq: i64,
    event_id: String,
    occurred_at: DateTime<Utc>,
    actor_type: &'static str,
    actor_id: String,
    action: String,
    target_type: String,
    target_id: String,
    client_ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    details: Value,
    prev_hash: String,
    hash: String,
}

impl From<ChainedRecord> for EventView {
    fn from(entry: ChainedRecord) -> Self {
        let record = entry.record;
        Self {
            seq: record.seq,
            event_id: record.id.to_string(),
            occurred_at: record.occurred_at,
            actor_type: record.actor.kind.as_str(),
            actor_id: record.actor.id,
            action: record.action,
            target_type: record.target_type,
            target_id: record.target_id,
            client_ip: record.source.client_ip.map(|ip| ip.to_string()),
            user_agent: record.source.user_agent,
            request_id: record.source.request_id,
            details: record.details,
            prev_hash: entry.prev_hash.to_hex(),
            hash: entry.hash.to_hex(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct EventPage {
    events: Vec<EventView>,
    next_after_seq: i64,
}

/// `GET .../audit?after_seq=&limit=&action=`: entries in chain order.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<EventPage>, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid_request(rejection.body_text()))?;
    let limit = super::page_limit(query.limit)?;
    let after_seq = query.after_seq.unwrap_or(0).max(0);
    let mut tx = state.db.begin_tenant(caller.org).await?;
    let filter = EventFilter {
        after_seq,
        limit,
        action: query.action,
    };
    let events = store::list(&mut tx, &filter).await?;
    tx.commit().await?;
    let next_after_seq = events.last().map_or(after_seq, |e| e.record.seq);
    Ok(Json(EventPage {
        events: events.into_iter().map(EventView::from).collect(),
        next_after_seq,
    }))
}

#[derive(Debug, Serialize)]
pub struct Verification {
    ok: bool,
    events_checked: u64,
    head_seq: Option<i64>,
    head_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `GET .../audit/verify`: walks the org's chain.
pub async fn verify(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
) -> Result<Json<Verification>, ApiError> {
    match store::verify(&state.db, caller.org, None).await {
        Ok(summary) => Ok(Json(Verification {
            ok: true,
            events_checked: summary.events_checked,
            head_seq: summary.head.map(|h| h.seq),
            head_hash: summary.head.map(|h| h.hash.to_hex()),
            error: None,
        })),
        Err(StorageError::AuditChain { cause, .. }) => Ok(Json(Verification {
            ok: false,
            events_checked: 0,
            head_seq: None,
            head_hash: None,
            error: Some(cause.to_string()),
        })),
        Err(other) => Err(other.into()),
    }
}
