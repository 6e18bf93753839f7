//! What the data plane reads: a virtual key by hash, a route resolved into its targets with
//! their provider keys opened, and the notifications that keep caches of both honest.

use chrono::{DateTime, Utc};
use portcullis_core::crypto::Keyring;
use portcullis_core::money::Period;
use portcullis_core::privacy::{GuardrailMode, LoggingLevel};
use portcullis_core::provider::ProviderKind;
use portcullis_core::token::TokenHash;
use portcullis_core::{KeyId, OrgId};
use serde_json::Value;
use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::Db;
use crate::credentials;
use crate::error::StorageError;
use crate::tenant::TenantTx;

/// A live virtual key, as the data plane authorises with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveKey {
    pub key_id: KeyId,
    pub org_id: OrgId,
    pub team_id: Option<Uuid>,
    /// `None`: every alias of the org.
    pub models: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub limits: Limits,
    pub privacy: Privacy,
}

/// The org's logging and guardrail settings, as the data plane applies them (read with the
/// key, dropped from caches when they change).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Privacy {
    pub logging_level: LoggingLevel,
    pub pii_redaction: bool,
    pub pii_guardrail: GuardrailMode,
}

/// A budget: a cap in micro-dollars and its period (`Total` or `Monthly`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub micro_usd: i64,
    pub period: Period,
}

/// The caps that apply to a key's requests, read with the key (and dropped from caches when
/// the key, its team or its org changes them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub key: Option<Budget>,
    pub team: Option<Budget>,
    pub org: Option<Budget>,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
}

impl Limits {
    pub fn any_budget(&self) -> bool {
        self.key.is_some() || self.team.is_some() || self.org.is_some()
    }
}

fn budget(micro_usd: Option<i64>, period: Option<String>) -> Option<Budget> {
    Some(Budget {
        micro_usd: micro_usd?,
        // The columns' checks allow `total` and `monthly` only; none is `total`.
        period: period
            .as_deref()
            .and_then(Period::parse)
            .unwrap_or(Period::Total),
    })
}

/// Through `auth_virtual_key()`: a key's org is not known before it is found.
pub async fn live_key(db: &Db, token: &TokenHash) -> Result<Option<LiveKey>, StorageError> {
    let row: Option<KeyRow> = sqlx::query_as(
        "select key_id, org_id, team_id, models, expires_at, key_budget, key_period, rpm_limit,
                tpm_limit, team_budget, team_period, org_budget, org_period, logging_level,
                pii_redaction, pii_guardrail
         from auth_virtual_key($1)",
    )
    .bind(token.0.as_slice())
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| LiveKey {
        key_id: KeyId::from_uuid(r.key_id),
        org_id: OrgId::from_uuid(r.org_id),
        team_id: r.team_id,
        models: r.models,
        expires_at: r.expires_at,
        limits: Limits {
            key: budget(r.key_budget, r.key_period),
            team: budget(r.team_budget, r.team_period),
            org: budget(r.org_budget, r.org_period),
            rpm: r.rpm_limit.map(i64::from),
            tpm: r.tpm_limit.map(i64::from),
        },
        privacy: Privacy {
            // The columns' checks allow only these names; null is a new org's default.
            logging_level: r
                .logging_level
                .as_deref()
                .and_then(LoggingLevel::parse)
                .unwrap_or_default(),
            pii_redaction: r.pii_redaction.unwrap_or(false),
            // A name no release wrote fails closed: the strictest mode.
            pii_guardrail: r
                .pii_guardrail
                .as_deref()
                .map_or_else(GuardrailMode::default, |mode| {
                    GuardrailMode::parse(mode).unwrap_or(GuardrailMode::Block)
                }),
        },
    }))
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    key_id: Uuid,
    org_id: Uuid,
    team_id: Option<Uuid>,
    models: Option<Vec<String>>,
    expires_at: Option<DateTime<Utc>>,
    key_budget: Option<i64>,
    key_period: Option<String>,
    rpm_limit: Option<i32>,
    tpm_limit: Option<i32>,
    team_budget: Option<i64>,
    team_period: Option<String>,
    org_budget: Option<i64>,
    org_period: Option<String>,
    logging_level: Option<String>,
    pii_redaction: Option<bool>,
    pii_guardrail: Option<String>,
}

/// One target of a resolved route, its provider key in clear (kept in memory only).
#[derive(Clone, PartialEq, Eq)]
pub struct ResolvedTarget {
    pub credential_id: Uuid,
    pub credential_name: String,
    pub provider: ProviderKind,
    pub base_url: Option<String>,
    pub api_key: String,
    pub model: String,
    /// Set when the route spreads its first attempt by weight.
    pub weight: Option<u32>,
    /// The target's own price, else its route's; `None` leaves it to the price table.
    pub price: Option<TargetPrice>,
    /// Its route serves it without a price (`unpriced: true`).
    pub unpriced: bool,
}

/// Micro-dollars per million tokens, as a route or target sets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetPrice {
    pub input: i64,
    pub output: i64,
    pub cached_input: Option<i64>,
}

/// A target as the route names it: credential, model, weight and any price of its own.
struct TargetRef {
    credential_id: Uuid,
    model: String,
    weight: Option<u32>,
    price: Option<TargetPrice>,
    unpriced: bool,
}

/// A price needs both sides; a half-set price is no price (the table or a refusal decides).
fn price_of(input: Option<i64>, output: Option<i64>, cached: Option<i64>) -> Option<TargetPrice> {
    Some(TargetPrice {
        input: input?,
        output: output?,
        cached_input: cached,
    })
}

fn target_refs(route: &crate::model_routes::ModelRoute) -> Vec<TargetRef> {
    let route_price = price_of(
        route.input_micro_usd_per_mtok,
        route.output_micro_usd_per_mtok,
        route.cached_input_micro_usd_per_mtok,
    );
    let field = |t: &Value, name: &str| t.get(name).and_then(Value::as_i64);
    route
        .targets
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some(TargetRef {
                credential_id: t.get("credential_id")?.as_str()?.parse().ok()?,
                model: t.get("model")?.as_str()?.to_owned(),
                weight: t
                    .get("weight")
                    .and_then(Value::as_u64)
                    .and_then(|w| u32::try_from(w).ok()),
                price: price_of(
                    field(t, "input_micro_usd_per_mtok"),
                    field(t, "output_micro_usd_per_mtok"),
                    field(t, "cached_input_micro_usd_per_mtok"),
                )
                .or(route_price),
                unpriced: route.unpriced,
            })
        })
        .collect()
}

impl std::fmt::Debug for ResolvedTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedTarget")
            .field("credential", &self.credential_name)
            .field("provider", &self.provider)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// A route with its fallback routes, flattened: `primary` first (ordered per request by
/// weight), then each fallback route's targets in chain order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRoute {
    pub alias: String,
    pub primary: Vec<ResolvedTarget>,
    pub fallback: Vec<ResolvedTarget>,
    pub timeout_ms: Option<i32>,
    pub max_output_tokens: Option<i32>,
    pub max_choices: Option<i32>,
    pub file_part_tokens: Option<i32>,
    pub stream_idle_ms: Option<i32>,
    pub stream_max_ms: Option<i32>,
}

/// Resolves `alias` in the transaction's org; `None` if there is no such route.
pub async fn resolve_route(
    tx: &mut TenantTx,
    ring: &Keyring,
    alias: &str,
) -> Result<Option<ResolvedRoute>, StorageError> {
    let routes = crate::model_routes::list(tx).await?;
    let Some(route) = routes.iter().find(|r| r.alias == alias) else {
        return Ok(None);
    };
    let creds = credentials::list(tx).await?;
    let primary_refs = target_refs(route);
    // Fallback routes in chain order, each once (the admin API refuses cycles anyway).
    let mut fallback_refs = Vec::new();
    let mut seen = vec![route.alias.clone()];
    let mut queue: std::collections::VecDeque<String> = route.fallback.iter().cloned().collect();
    while let Some(next) = queue.pop_front() {
        if seen.contains(&next) {
            continue;
        }
        seen.push(next.clone());
        if let Some(fallback) = routes.iter().find(|r| r.alias == next) {
            fallback_refs.extend(target_refs(fallback));
            queue.extend(fallback.fallback.iter().cloned());
        }
    }
    let primary = open_targets(tx, ring, &creds, &primary_refs).await?;
    let fallback = open_targets(tx, ring, &creds, &fallback_refs).await?;
    Ok(Some(ResolvedRoute {
        alias: route.alias.clone(),
        primary,
        fallback,
        timeout_ms: route.timeout_ms,
        max_output_tokens: route.max_output_tokens,
        max_choices: route.max_choices,
        file_part_tokens: route.file_part_tokens,
        stream_idle_ms: route.stream_idle_ms,
        stream_max_ms: route.stream_max_ms,
    }))
}

/// Opens the provider key of each referenced credential; a reference to a credential that is
/// gone is skipped.
async fn open_targets(
    tx: &mut TenantTx,
    ring: &Keyring,
    creds: &[credentials::Credential],
    refs: &[TargetRef],
) -> Result<Vec<ResolvedTarget>, StorageError> {
    let mut targets = Vec::with_capacity(refs.len());
    for target in refs {
        let id = target.credential_id;
        let Some(credential) = creds.iter().find(|c| c.credential_id == id) else {
            continue;
        };
        targets.push(ResolvedTarget {
            credential_id: id,
            credential_name: credential.name.clone(),
            provider: credential.provider,
            base_url: credential.base_url.clone(),
            api_key: credentials::reveal(tx, ring, id).await?,
            model: target.model.clone(),
            weight: target.weight,
            price: target.price,
            unpriced: target.unpriced,
        });
    }
    Ok(targets)
}

/// The route aliases of the transaction's org.
pub async fn aliases(tx: &mut TenantTx) -> Result<Vec<String>, StorageError> {
    Ok(crate::model_routes::list(tx)
        .await?
        .into_iter()
        .map(|r| r.alias)
        .collect())
}

/// A change another process made: drop what the cache holds for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A virtual key with this token hash changed (revoked, rotated, edited).
    Key(TokenHash),
    /// Routes or credentials of this org changed.
    Routes(OrgId),
    /// A team or org budget, or the org's logging or guardrail settings, changed: its keys
    /// carry stale limits and settings (channel `portcullis_budgets`, named before settings
    /// joined it).
    OrgSettings(OrgId),
    /// The listener reconnected: anything may have changed meanwhile.
    Unknown,
}

/// Notifications of changes, over a dedicated connection.
#[derive(Debug)]
pub struct Changes {
    listener: PgListener,
}

impl Changes {
    pub async fn listen(db: &Db) -> Result<Self, StorageError> {
        let mut listener = PgListener::connect_with(db.pool()).await?;
        listener
            .listen_all(["portcullis_keys", "portcullis_routes", "portcullis_budgets"])
            .await?;
        Ok(Self { listener })
    }

    /// The next change. A dropped connection is re-established by sqlx; that gap is reported
    /// as `Unknown` so that callers drop everything.
    pub async fn next(&mut self) -> Result<Change, StorageError> {
        match self.listener.try_recv().await? {
            None => Ok(Change::Unknown),
            Some(notification) => Ok(parse_change(notification.channel(), notification.payload())),
        }
    }
}

fn parse_change(channel: &str, payload: &str) -> Change {
    match channel {
        "portcullis_keys" => {
            let mut hash = [0u8; 32];
            match hex::decode_to_slice(payload, &mut hash) {
                Ok(()) => Change::Key(TokenHash(hash)),
                Err(_) => Change::Unknown,
            }
        }
        "portcullis_routes" => payload.parse().map_or(Change::Unknown, Change::Routes),
        "portcullis_budgets" => payload.parse().map_or(Change::Unknown, Change::OrgSettings),
        _ => Change::Unknown,
    }
}
