//! Teams: groups of keys inside an org, each with an optional budget.

use chrono::{DateTime, Utc};
use portcullis_core::TeamId;
use uuid::Uuid;

use crate::error::{StorageError, expect_row};
use crate::tenant::{TenantTx, WriteTx};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Team {
    #[sqlx(try_from = "Uuid")]
    pub team_id: TeamId,
    pub name: String,
    pub budget_micro_usd: Option<i64>,
    pub budget_period: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A new team's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTeam {
    pub name: String,
    pub budget_micro_usd: Option<i64>,
    pub budget_period: Option<String>,
}

const TEAM_COLUMNS: &str = "team_id, name, budget_micro_usd, budget_period, created_at";

/// Creates a team in the write's org. The write's audit target should be `team_id`.
pub async fn create_team(
    tx: &mut WriteTx,
    team_id: TeamId,
    team: &NewTeam,
) -> Result<Team, StorageError> {
    let org = tx.org();
    tx.detail("name", team.name.as_str());
    if let Some(budget) = team.budget_micro_usd {
        tx.detail("budget_micro_usd", budget);
    }
    sqlx::query_as(&format!(
        "insert into teams (team_id, org_id, name, budget_micro_usd, budget_period)
         values ($1, $2, $3, $4, $5) returning {TEAM_COLUMNS}"
    ))
    .bind(team_id.as_uuid())
    .bind(org.as_uuid())
    .bind(&team.name)
    .bind(team.budget_micro_usd)
    .bind(&team.budget_period)
    .fetch_one(tx.conn())
    .await
    .map_err(StorageError::on_constraint(
        "uq_teams_org_name",
        "a team with this name already exists",
    ))
}

/// The org's teams, oldest first.
pub async fn list_teams(tx: &mut TenantTx) -> Result<Vec<Team>, StorageError> {
    Ok(sqlx::query_as(&format!(
        "select {TEAM_COLUMNS} from teams where org_id = $1 order by team_id"
    ))
    .bind(tx.org().as_uuid())
    .fetch_all(tx.conn())
    .await?)
}

/// A team's changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TeamChange {
    pub name: Option<String>,
    /// `Some(None)` clears the budget.
    pub budget_micro_usd: Option<Option<i64>>,
    pub budget_period: Option<Option<String>>,
}

pub async fn update_team(
    tx: &mut WriteTx,
    team_id: TeamId,
    change: &TeamChange,
) -> Result<Team, StorageError> {
    let org = tx.org();
    if let Some(name) = &change.name {
        tx.detail("name", name.as_str());
    }
    if let Some(budget) = change.budget_micro_usd {
        tx.detail("budget_micro_usd", budget);
    }
    sqlx::query_as(&format!(
        "update teams set
             name = coalesce($3, name),
             budget_micro_usd = case when $4 then $5 else budget_micro_usd end,
             budget_period = case when $6 then $7 else budget_period end,
             updated_at = now()
         where org_id = $1 and team_id = $2
         returning {TEAM_COLUMNS}"
    ))
    .bind(org.as_uuid())
    .bind(team_id.as_uuid())
    .bind(&change.name)
    .bind(change.budget_micro_usd.is_some())
    .bind(change.budget_micro_usd.flatten())
    .bind(change.budget_period.is_some())
    .bind(change.budget_period.clone().flatten())
    .fetch_optional(tx.conn())
    .await
    .map_err(StorageError::on_constraint(
        "uq_teams_org_name",
        "a team with this name already exists",
    ))?
    .ok_or(StorageError::NotFound)
}

/// Deletes a team that no key references.
pub async fn delete_team(tx: &mut WriteTx, team_id: TeamId) -> Result<(), StorageError> {
    let org = tx.org();
    let done = sqlx::query("delete from teams where org_id = $1 and team_id = $2")
        .bind(org.as_uuid())
        .bind(team_id.as_uuid())
        .execute(tx.conn())
        .await
        .map_err(StorageError::on_constraint(
            "fk_virtual_keys_team",
            "the team still has keys",
        ))?;
    expect_row(done)
}
