//! Organizations and their settings.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use portcullis_core::privacy::{GuardrailMode, LoggingLevel};
use portcullis_core::word::UnknownWord;
use portcullis_policy::rbac;
use portcullis_storage::orgs::{self as store, Org, SettingsChange};
use portcullis_storage::{AuditedChange, auth, platform};
use serde::{Deserialize, Serialize};

use super::check_name;
use crate::caller::Principal;
use crate::error::ApiError;
use crate::guard::{OrgCaller, PlatformCaller};
use crate::json::{JsonBody, nullable};
use crate::state::AppState;

#[derive(Debug, Serialize)]
pub struct OrgView {
    org_id: String,
    name: String,
    created_at: DateTime<Utc>,
    settings: SettingsView,
}

#[derive(Debug, Serialize)]
struct SettingsView {
    logging_level: LoggingLevel,
    pii_redaction: bool,
    pii_guardrail: GuardrailMode,
    content_retention_days: i32,
    ledger_retention_days: i32,
    require_mfa: bool,
    session_idle_minutes: i32,
    session_max_hours: i32,
    invite_ttl_days: i32,
    budget_micro_usd: Option<i64>,
    budget_period: Option<String>,
}

impl From<Org> for OrgView {
    fn from(org: Org) -> Self {
        Self {
            org_id: org.org_id.to_string(),
            name: org.name,
            created_at: org.created_at,
            settings: SettingsView {
                logging_level: org.logging_level,
                pii_redaction: org.pii_redaction,
                pii_guardrail: org.pii_guardrail,
                content_retention_days: org.content_retention_days,
                ledger_retention_days: org.ledger_retention_days,
                require_mfa: org.require_mfa,
                session_idle_minutes: org.session_idle_minutes,
                session_max_hours: org.session_max_hours,
                invite_ttl_days: org.invite_ttl_days,
                budget_micro_usd: org.budget_micro_usd,
                budget_period: org.budget_period,
            },
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    name: String,
}

/// `POST /admin/v1/orgs` (master key only).
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<PlatformCaller>,
    JsonBody(body): JsonBody<CreateOrg>,
) -> Result<(StatusCode, Json<OrgView>), ApiError> {
    check_name(&body.name)?;
    let org = store::create_org(
        &state.db,
        &caller.principal.actor(),
        &caller.source,
        body.name.trim(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(org.into())))
}

#[derive(Debug, Serialize)]
pub struct OrgList {
    data: Vec<OrgListItem>,
}

#[derive(Debug, Serialize)]
struct OrgListItem {
    org_id: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
}

/// `GET /admin/v1/orgs`: every org for the master key, the caller's orgs for a person.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<PlatformCaller>,
) -> Result<Json<OrgList>, ApiError> {
    let data = match caller.principal {
        Principal::MasterKey(_) => platform::orgs(&state.db)
            .await?
            .into_iter()
            .map(|org| OrgListItem {
                org_id: org.org_id.to_string(),
                name: org.name,
                role: None,
            })
            .collect(),
        Principal::User { user_id, .. } => auth::memberships(&state.db, user_id)
            .await?
            .into_iter()
            .map(|m| OrgListItem {
                org_id: m.org_id.to_string(),
                name: m.name,
                role: Some(m.role.as_str()),
            })
            .collect(),
    };
    Ok(Json(OrgList { data }))
}

/// `GET /admin/v1/orgs/{org_id}`.
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
) -> Result<Json<OrgView>, ApiError> {
    let mut tx = state.db.begin_tenant(caller.org).await?;
    let org = store::get_org(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(org.into()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    logging_level: Option<String>,
    pii_redaction: Option<bool>,
    pii_guardrail: Option<String>,
    content_retention_days: Option<i32>,
    ledger_retention_days: Option<i32>,
    require_mfa: Option<bool>,
    session_idle_minutes: Option<i32>,
    session_max_hours: Option<i32>,
    invite_ttl_days: Option<i32>,
    #[serde(default, deserialize_with = "nullable")]
    budget_micro_usd: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    budget_period: Option<Option<String>>,
}

/// `PATCH /admin/v1/orgs/{org_id}/settings`. `require_mfa` is the owner's alone.
pub async fn update_settings(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    JsonBody(body): JsonBody<SettingsPatch>,
) -> Result<Json<OrgView>, ApiError> {
    let touched = [
        ("logging_level", body.logging_level.is_some()),
        ("pii_redaction", body.pii_redaction.is_some()),
        ("pii_guardrail", body.pii_guardrail.is_some()),
        (
            "content_retention_days",
            body.content_retention_days.is_some(),
        ),
        (
            "ledger_retention_days",
            body.ledger_retention_days.is_some(),
        ),
        ("require_mfa", body.require_mfa.is_some()),
        ("session_idle_minutes", body.session_idle_minutes.is_some()),
        ("session_max_hours", body.session_max_hours.is_some()),
        ("invite_ttl_days", body.invite_ttl_days.is_some()),
        ("budget_micro_usd", body.budget_micro_usd.is_some()),
        ("budget_period", body.budget_period.is_some()),
    ];
    if !touched.iter().any(|(_, set)| *set) {
        return Err(ApiError::invalid_request("no setting to change"));
    }
    for (setting, _) in touched.iter().filter(|(_, set)| *set) {
        rbac::may_change_setting(caller.role, setting)?;
    }
    let logging_level = one_of::<LoggingLevel>("logging_level", body.logging_level.as_deref())?;
    let pii_guardrail = one_of::<GuardrailMode>("pii_guardrail", body.pii_guardrail.as_deref())?;
    in_range(
        "content_retention_days",
        body.content_retention_days,
        1,
        3650,
    )?;
    in_range(
        "ledger_retention_days",
        body.ledger_retention_days,
        365,
        36500,
    )?;
    in_range("session_idle_minutes", body.session_idle_minutes, 5, 1440)?;
    in_range("session_max_hours", body.session_max_hours, 1, 720)?;
    in_range("invite_ttl_days", body.invite_ttl_days, 1, 90)?;
    super::teams::check_budget(
        body.budget_micro_usd.flatten(),
        body.budget_period.clone().flatten().as_deref(),
    )?;
    let change = SettingsChange {
        logging_level,
        pii_redaction: body.pii_redaction,
        pii_guardrail,
        content_retention_days: body.content_retention_days,
        ledger_retention_days: body.ledger_retention_days,
        require_mfa: body.require_mfa,
        session_idle_minutes: body.session_idle_minutes,
        session_max_hours: body.session_max_hours,
        invite_ttl_days: body.invite_ttl_days,
        budget_micro_usd: body.budget_micro_usd,
        budget_period: body.budget_period,
    };
    let mut tx = caller
        .begin_write(
            &state,
            AuditedChange::new("settings.changed", "org", caller.org),
        )
        .await?;
    let org = store::update_settings(&mut tx, &change).await?;
    tx.commit().await?;
    // Other processes hear of it by notification; this one applies it to its next request.
    state
        .caches
        .apply(&portcullis_storage::dataplane::Change::OrgSettings(
            caller.org,
        ));
    Ok(Json(org.into()))
}

/// The setting's value parsed, if the patch sets it.
fn one_of<W: std::str::FromStr<Err = UnknownWord>>(
    setting: &str,
    value: Option<&str>,
) -> Result<Option<W>, ApiError> {
    value
        .map(|text| {
            text.parse().map_err(|unknown: UnknownWord| {
                ApiError::invalid_request(format!("`{setting}` must be one of {}", unknown.names))
            })
        })
        .transpose()
}

fn in_range(setting: &str, value: Option<i32>, min: i32, max: i32) -> Result<(), ApiError> {
    match value {
        Some(value) if !(min..=max).contains(&value) => Err(ApiError::invalid_request(format!(
            "`{setting}` must be between {min} and {max}"
        ))),
        _ => Ok(()),
    }
}
