//! Teams.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use portcullis_core::TeamId;
use portcullis_storage::AuditedChange;
use portcullis_storage::teams::{self as store, NewTeam, Team, TeamChange};
use serde::{Deserialize, Serialize};

use super::{check_name, parse_id};
use crate::error::ApiError;
use crate::guard::OrgCaller;
use crate::json::{JsonBody, nullable};
use crate::state::AppState;

#[derive(Debug, Serialize)]
pub struct TeamView {
    team_id: String,
    name: String,
    budget_micro_usd: Option<i64>,
    budget_period: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<Team> for TeamView {
    fn from(team: Team) -> Self {
        Self {
            team_id: team.team_id.to_string(),
            name: team.name,
            budget_micro_usd: team.budget_micro_usd,
            budget_period: team.budget_period,
            created_at: team.created_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct TeamList {
    data: Vec<TeamView>,
}

pub(crate) fn check_budget(budget: Option<i64>, period: Option<&str>) -> Result<(), ApiError> {
    if budget.is_some_and(|b| b < 0) {
        return Err(ApiError::invalid_request(
            "`budget_micro_usd` must not be negative",
        ));
    }
    if period.is_some_and(|p| p != "total" && p != "monthly") {
        return Err(ApiError::invalid_request(
            "`budget_period` must be `total` or `monthly`",
        ));
    }
    Ok(())
}

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
) -> Result<Json<TeamList>, ApiError> {
    let mut tx = state.db.begin_tenant(caller.org).await?;
    let teams = store::list_teams(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(TeamList {
        data: teams.into_iter().map(TeamView::from).collect(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    name: String,
    budget_micro_usd: Option<i64>,
    budget_period: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    JsonBody(body): JsonBody<CreateTeam>,
) -> Result<(StatusCode, Json<TeamView>), ApiError> {
    check_name(&body.name)?;
    check_budget(body.budget_micro_usd, body.budget_period.as_deref())?;
    let team_id = TeamId::new();
    let mut tx = caller
        .begin_write(&state, AuditedChange::new("team.created", "team", team_id))
        .await?;
    let team = NewTeam {
        name: body.name.trim().to_owned(),
        budget_micro_usd: body.budget_micro_usd,
        budget_period: body.budget_period,
    };
    let team = store::create_team(&mut tx, team_id, &team).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(team.into())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTeam {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    budget_micro_usd: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    budget_period: Option<Option<String>>,
}

pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    Path((_, team_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<UpdateTeam>,
) -> Result<Json<TeamView>, ApiError> {
    let team_id: TeamId = parse_id(&team_id)?;
    if let Some(name) = &body.name {
        check_name(name)?;
    }
    check_budget(
        body.budget_micro_usd.flatten(),
        body.budget_period.clone().flatten().as_deref(),
    )?;
    let mut tx = caller
        .begin_write(&state, AuditedChange::new("team.updated", "team", team_id))
        .await?;
    let change = TeamChange {
        name: body.name.map(|n| n.trim().to_owned()),
        budget_micro_usd: body.budget_micro_usd,
        budget_period: body.budget_period,
    };
    let team = store::update_team(&mut tx, team_id, &change).await?;
    tx.commit().await?;
    Ok(Json(team.into()))
}

pub async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    Path((_, team_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let team_id: TeamId = parse_id(&team_id)?;
    let mut tx = caller
        .begin_write(&state, AuditedChange::new("team.deleted", "team", team_id))
        .await?;
    store::delete_team(&mut tx, team_id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
