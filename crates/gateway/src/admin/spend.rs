//! What an org spent: `/usage` (daily aggregates, viewer) and `/ledger` (one financial record
//! per settled request, admin). Both read; nothing here changes a record (RM-4).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use portcullis_storage::spend::{self as store, Grouping, LedgerEntry, UsageRow};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;
use crate::guard::OrgCaller;
use crate::state::AppState;

/// Longest span one `/usage` call may cover.
const MAX_USAGE_DAYS: i64 = 3660;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    from: Option<String>,
    to: Option<String>,
    group_by: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct UsageView {
    from: NaiveDate,
    to: NaiveDate,
    group_by: Vec<&'static str>,
    data: Vec<UsageLine>,
}

#[derive(Debug, Serialize)]
struct UsageLine {
    #[serde(skip_serializing_if = "Option::is_none")]
    day: Option<NaiveDate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    team_id: Option<Uuid>,
    requests: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost_micro_usd: i64,
}

impl From<UsageRow> for UsageLine {
    fn from(row: UsageRow) -> Self {
        Self {
            day: row.day,
            model: row.model,
            key_id: row.key_id,
            team_id: row.team_id,
            requests: row.requests,
            input_tokens: row.input_tokens,
            output_tokens: row.output_tokens,
            cost_micro_usd: row.cost_micro_usd,
        }
    }
}

/// A date (`2026-11-26`) or an RFC 3339 time, whose UTC date counts.
fn parse_day(field: &str, text: &str) -> Result<NaiveDate, ApiError> {
    text.parse::<NaiveDate>()
        .or_else(|_| text.parse::<DateTime<Utc>>().map(|t| t.date_naive()))
        .map_err(|_| {
            ApiError::invalid_request(format!(
                "`{field}` is a date (2026-11-26) or an RFC 3339 time"
            ))
        })
}

fn parse_time(field: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    text.parse::<DateTime<Utc>>()
        .or_else(|_| {
            text.parse::<NaiveDate>()
                .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        })
        .map_err(|_| ApiError::invalid_request(format!("`{field}` is an RFC 3339 time or a date")))
}

fn grouping(text: Option<&str>) -> Result<(Grouping, Vec<&'static str>), ApiError> {
    let mut grouping = Grouping {
        day: false,
        model: false,
        key: false,
        team: false,
    };
    let mut names = Vec::new();
    for part in text
        .unwrap_or("day")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (flag, name) = match part {
            "day" => (&mut grouping.day, "day"),
            "model" => (&mut grouping.model, "model"),
            "key" => (&mut grouping.key, "key"),
            "team" => (&mut grouping.team, "team"),
            other => {
                return Err(ApiError::invalid_request(format!(
                    "`group_by` takes day, model, key and team, not `{other}`"
                )));
            }
        };
        if !*flag {
            *flag = true;
            names.push(name);
        }
    }
    Ok((grouping, names))
}

/// `GET .../usage?from=&to=&group_by=day,model,key,team`: days in `[from, to]` (UTC), by
/// default the last 30, grouped by day unless told otherwise.
pub async fn usage(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<UsageView>, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid_request(rejection.body_text()))?;
    let today = Utc::now().date_naive();
    let to = query
        .to
        .as_deref()
        .map(|t| parse_day("to", t))
        .transpose()?
        .unwrap_or(today);
    let from = query
        .from
        .as_deref()
        .map(|t| parse_day("from", t))
        .transpose()?
        .unwrap_or(to - Duration::days(29));
    if from > to || (to - from).num_days() > MAX_USAGE_DAYS {
        return Err(ApiError::invalid_request(format!(
            "`from` comes before `to`, at most {MAX_USAGE_DAYS} days apart"
        )));
    }
    let (grouping, group_by) = grouping(query.group_by.as_deref())?;
    let mut tx = state.db.begin_tenant(caller.org).await?;
    let rows = store::usage(&mut tx, from, to, grouping).await?;
    tx.commit().await?;
    Ok(Json(UsageView {
        from,
        to,
        group_by,
        data: rows.into_iter().map(UsageLine::from).collect(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    from: Option<String>,
    to: Option<String>,
    after: Option<Uuid>,
    limit: Option<i64>,
}

#[derive(Debug, Serialize)]
struct LedgerView {
    entry_id: Uuid,
    occurred_at: DateTime<Utc>,
    request_id: String,
    team_id: Option<Uuid>,
    key_id: Uuid,
    model: String,
    target: String,
    input_tokens: i64,
    output_tokens: i64,
    cached_input_tokens: i64,
    cache_write_tokens: i64,
    reasoning_tokens: i64,
    cost_micro_usd: i64,
    priced: bool,
    estimated: bool,
}

impl From<LedgerEntry> for LedgerView {
    fn from(e: LedgerEntry) -> Self {
        Self {
            entry_id: e.entry_id,
            occurred_at: e.occurred_at,
            request_id: e.request_id,
            team_id: e.team_id,
            key_id: e.key_id,
            model: e.model,
            target: e.target,
            input_tokens: e.input_tokens,
            output_tokens: e.output_tokens,
            cached_input_tokens: e.cached_input_tokens,
            cache_write_tokens: e.cache_write_tokens,
            reasoning_tokens: e.reasoning_tokens,
            cost_micro_usd: e.cost_micro_usd,
            priced: e.priced,
            estimated: e.estimated,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct LedgerPage {
    entries: Vec<LedgerView>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<Uuid>,
}

/// `GET .../ledger?from=&to=&after=&limit=`: entries with `from <= occurred_at < to`, oldest
/// first; by default the last 30 days.
pub async fn ledger(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    query: Result<Query<LedgerQuery>, QueryRejection>,
) -> Result<Json<LedgerPage>, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid_request(rejection.body_text()))?;
    let limit = super::page_limit(query.limit)?;
    let to = query
        .to
        .as_deref()
        .map(|t| parse_time("to", t))
        .transpose()?
        .unwrap_or_else(|| Utc::now() + Duration::seconds(1));
    let from = query
        .from
        .as_deref()
        .map(|t| parse_time("from", t))
        .transpose()?
        .unwrap_or(to - Duration::days(30));
    if from > to {
        return Err(ApiError::invalid_request("`from` comes before `to`"));
    }
    let mut tx = state.db.begin_tenant(caller.org).await?;
    let entries = store::ledger(&mut tx, from, to, query.after, limit).await?;
    tx.commit().await?;
    let full = i64::try_from(entries.len()).unwrap_or(i64::MAX) == limit;
    let next_after = full.then(|| entries.last().map(|e| e.entry_id)).flatten();
    Ok(Json(LedgerPage {
        entries: entries.into_iter().map(LedgerView::from).collect(),
        next_after,
    }))
}
