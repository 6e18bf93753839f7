//! Model routes: `PUT .../routes/{alias}` with ordered targets, fallback aliases and prices.
//! Targets must name this org's credentials, and fallback chains must end (no cycles).

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use portcullis_storage::AuditedChange;
use portcullis_storage::credentials;
use portcullis_storage::model_routes::{self as store, ModelRoute};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::ApiError;
use crate::guard::OrgCaller;
use crate::json::JsonBody;
use crate::state::AppState;

const MAX_TARGETS: usize = 16;
const MAX_FALLBACK: usize = 8;

#[derive(Debug, Serialize)]
pub struct RouteView {
    alias: String,
    targets: Value,
    fallback: Vec<String>,
    timeout_ms: Option<i32>,
    input_micro_usd_per_mtok: Option<i64>,
    output_micro_usd_per_mtok: Option<i64>,
    cached_input_micro_usd_per_mtok: Option<i64>,
    max_output_tokens: Option<i32>,
    unpriced: bool,
    max_choices: Option<i32>,
    file_part_tokens: Option<i32>,
    stream_idle_ms: Option<i32>,
    stream_max_ms: Option<i32>,
    updated_at: DateTime<Utc>,
}

impl From<ModelRoute> for RouteView {
    fn from(r: ModelRoute) -> Self {
        Self {
            alias: r.alias,
            targets: r.targets,
            fallback: r.fallback,
            timeout_ms: r.timeout_ms,
            input_micro_usd_per_mtok: r.input_micro_usd_per_mtok,
            output_micro_usd_per_mtok: r.output_micro_usd_per_mtok,
            cached_input_micro_usd_per_mtok: r.cached_input_micro_usd_per_mtok,
            max_output_tokens: r.max_output_tokens,
            unpriced: r.unpriced,
            max_choices: r.max_choices,
            file_part_tokens: r.file_part_tokens,
            stream_idle_ms: r.stream_idle_ms,
            stream_max_ms: r.stream_max_ms,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RouteList {
    data: Vec<RouteView>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Target {
    credential_id: Uuid,
    model: String,
    /// Without weights, targets are tried in order; with them, the first attempt is spread by
    /// weight and the rest follow in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight: Option<u32>,
    /// A target's own price wins over its route's and the price table's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_micro_usd_per_mtok: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_micro_usd_per_mtok: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cached_input_micro_usd_per_mtok: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteBody {
    targets: Vec<Target>,
    #[serde(default)]
    fallback: Vec<String>,
    timeout_ms: Option<i32>,
    input_micro_usd_per_mtok: Option<i64>,
    output_micro_usd_per_mtok: Option<i64>,
    cached_input_micro_usd_per_mtok: Option<i64>,
    /// The most output tokens a request may ask for (a larger bound is lowered to it), and the
    /// bound sent when it asks none.
    max_output_tokens: Option<i32>,
    /// Serve targets that have no price, recording them as unpriced. Off, they are refused.
    #[serde(default)]
    unpriced: bool,
    /// Most choices (`n`) a request may ask for (8 when unset).
    max_choices: Option<i32>,
    /// Accept file parts, each counted as this many prompt tokens at most.
    file_part_tokens: Option<i32>,
    /// A stream's longest quiet between pieces (60 s when unset), and its longest life (10
    /// minutes when unset).
    stream_idle_ms: Option<i32>,
    stream_max_ms: Option<i32>,
}

/// A price is both sides or neither (a half price could not be charged); never negative.
fn check_price(
    input: Option<i64>,
    output: Option<i64>,
    cached: Option<i64>,
) -> Result<(), ApiError> {
    if input.is_some() != output.is_some() || (cached.is_some() && input.is_none()) {
        return Err(ApiError::invalid_request(
            "a price sets `input_micro_usd_per_mtok` and `output_micro_usd_per_mtok` together",
        ));
    }
    if [input, output, cached].iter().flatten().any(|p| *p < 0) {
        return Err(ApiError::invalid_request("prices must not be negative"));
    }
    Ok(())
}

/// Aliases are what clients put in `model`: printable, no spaces or slashes.
fn check_alias(alias: &str) -> Result<(), ApiError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@');
    if alias.is_empty() || alias.len() > 200 || !alias.chars().all(plain) {
        return Err(ApiError::invalid_request(
            "an alias is 1 to 200 of A-Z a-z 0-9 . _ - : @",
        ));
    }
    Ok(())
}

impl RouteBody {
    fn check(&self) -> Result<(), ApiError> {
        if self.targets.is_empty() || self.targets.len() > MAX_TARGETS {
            return Err(ApiError::invalid_request(format!(
                "`targets` holds 1 to {MAX_TARGETS} targets"
            )));
        }
        for target in &self.targets {
            if target.model.is_empty() || target.model.len() > 200 {
                return Err(ApiError::invalid_request(
                    "a target's `model` is 1 to 200 characters",
                ));
            }
            if target.weight.is_some_and(|w| !(1..=1000).contains(&w)) {
                return Err(ApiError::invalid_request(
                    "a target's `weight` is 1 to 1000",
                ));
            }
            check_price(
                target.input_micro_usd_per_mtok,
                target.output_micro_usd_per_mtok,
                target.cached_input_micro_usd_per_mtok,
            )?;
        }
        if self.fallback.len() > MAX_FALLBACK {
            return Err(ApiError::invalid_request(format!(
                "`fallback` holds at most {MAX_FALLBACK} aliases"
            )));
        }
        if self
            .timeout_ms
            .is_some_and(|t| !(100..=600_000).contains(&t))
        {
            return Err(ApiError::invalid_request("`timeout_ms` is 100 to 600000"));
        }
        if self
            .max_output_tokens
            .is_some_and(|t| !(1..=10_000_000).contains(&t))
        {
            return Err(ApiError::invalid_request(
                "`max_output_tokens` is 1 to 10000000",
            ));
        }
        let ranges = [
            ("max_choices", self.max_choices, 1, 128),
            ("file_part_tokens", self.file_part_tokens, 1, 10_000_000),
            ("stream_idle_ms", self.stream_idle_ms, 1_000, 3_600_000),
            ("stream_max_ms", self.stream_max_ms, 1_000, 86_400_000),
        ];
        for (field, value, min, max) in ranges {
            if value.is_some_and(|v| !(min..=max).contains(&v)) {
                return Err(ApiError::invalid_request(format!(
                    "`{field}` is {min} to {max}"
                )));
            }
        }
        check_price(
            self.input_micro_usd_per_mtok,
            self.output_micro_usd_per_mtok,
            self.cached_input_micro_usd_per_mtok,
        )
    }
}

/// Whether following fallbacks from `start` can come back to it.
fn has_cycle(graph: &HashMap<String, Vec<String>>, start: &str) -> bool {
    let mut stack: Vec<&str> = graph
        .get(start)
        .map(|f| f.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let mut seen = HashSet::new();
    while let Some(alias) = stack.pop() {
        if alias == start {
            return true;
        }
        if seen.insert(alias) {
            stack.extend(graph.get(alias).into_iter().flatten().map(String::as_str));
        }
    }
    false
}

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
) -> Result<Json<RouteList>, ApiError> {
    let mut tx = state.db.begin_tenant(caller.org).await?;
    let routes = store::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(RouteList {
        data: routes.into_iter().map(RouteView::from).collect(),
    }))
}

pub async fn put(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    Path((_, alias)): Path<(String, String)>,
    JsonBody(body): JsonBody<RouteBody>,
) -> Result<Json<RouteView>, ApiError> {
    check_alias(&alias)?;
    body.check()?;
    let mut tx = caller
        .begin_write(&state, AuditedChange::new("route.changed", "route", &alias))
        .await?;
    // Every target's credential belongs to this org: another org's is as absent as none.
    let wanted: Vec<Uuid> = body.targets.iter().map(|t| t.credential_id).collect();
    let found = credentials::existing(tx.tenant(), &wanted).await?;
    if let Some(missing) = wanted.iter().find(|id| !found.contains(id)) {
        return Err(ApiError::NotFound {
            code: "not_found",
            message: format!("no credential {missing}"),
        });
    }
    let mut graph: HashMap<String, Vec<String>> = store::list(tx.tenant())
        .await?
        .into_iter()
        .map(|r| (r.alias, r.fallback))
        .collect();
    for fallback in &body.fallback {
        if fallback != &alias && !graph.contains_key(fallback) {
            return Err(ApiError::invalid_request(format!(
                "fallback `{fallback}` is not a route"
            )));
        }
    }
    graph.insert(alias.clone(), body.fallback.clone());
    if has_cycle(&graph, &alias) {
        return Err(ApiError::invalid_request(
            "the fallback chain comes back to this route",
        ));
    }
    let route = ModelRoute {
        alias,
        targets: serde_json::to_value(&body.targets).map_err(ApiError::internal)?,
        fallback: body.fallback,
        timeout_ms: body.timeout_ms,
        input_micro_usd_per_mtok: body.input_micro_usd_per_mtok,
        output_micro_usd_per_mtok: body.output_micro_usd_per_mtok,
        cached_input_micro_usd_per_mtok: body.cached_input_micro_usd_per_mtok,
        max_output_tokens: body.max_output_tokens,
        unpriced: body.unpriced,
        max_choices: body.max_choices,
        file_part_tokens: body.file_part_tokens,
        stream_idle_ms: body.stream_idle_ms,
        stream_max_ms: body.stream_max_ms,
        updated_at: Utc::now(),
    };
    let stored = store::put(&mut tx, &route).await?;
    tx.commit().await?;
    super::routes_changed(&state, caller.org);
    Ok(Json(stored.into()))
}

pub async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    Path((_, alias)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut tx = caller
        .begin_write(&state, AuditedChange::new("route.removed", "route", &alias))
        .await?;
    store::delete(&mut tx, &alias).await?;
    tx.commit().await?;
    super::routes_changed(&state, caller.org);
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_cycles_are_found() {
        let graph: HashMap<String, Vec<String>> = [
            ("a".to_owned(), vec!["b".to_owned()]),
            ("b".to_owned(), vec!["c".to_owned()]),
            ("c".to_owned(), vec![]),
        ]
        .into();
        assert!(!has_cycle(&graph, "a"));
        let mut looped = graph.clone();
        looped.insert("c".to_owned(), vec!["a".to_owned()]);
        assert!(has_cycle(&looped, "a"));
        let mut own = graph;
        own.insert("a".to_owned(), vec!["a".to_owned()]);
        assert!(has_cycle(&own, "a"));
    }
}
