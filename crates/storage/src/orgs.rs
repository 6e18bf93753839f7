//! Organizations and their settings.

use chrono::{DateTime, Utc};
use portcullis_core::audit::{Actor, Source};
use portcullis_core::privacy::{GuardrailMode, LoggingLevel};
use portcullis_core::{OrgId, Role, UserId};
use uuid::Uuid;

use crate::Db;
use crate::error::StorageError;
use crate::tenant::{AuditedChange, TenantTx, WriteTx};

/// An organization with its settings.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Org {
    #[sqlx(try_from = "Uuid")]
    pub org_id: OrgId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    #[sqlx(try_from = "String")]
    pub logging_level: LoggingLevel,
    pub pii_redaction: bool,
    #[sqlx(try_from = "String")]
    pub pii_guardrail: GuardrailMode,
    pub content_retention_days: i32,
    pub ledger_retention_days: i32,
    pub require_mfa: bool,
    /// A session unused this long is ended (AC-6).
    pub session_idle_minutes: i32,
    /// A session older than this is ended, however busy.
    pub session_max_hours: i32,
    /// How long an invitation stays open.
    pub invite_ttl_days: i32,
    /// The org's budget in micro-dollars, for all time or per calendar month.
    pub budget_micro_usd: Option<i64>,
    pub budget_period: Option<String>,
}

/// Creates an org with default settings; its first audit entry records the creation.
pub async fn create_org(
    db: &Db,
    actor: &Actor,
    source: &Source,
    name: &str,
) -> Result<Org, StorageError> {
    let org_id = OrgId::new();
    let mut tx = db
        .begin_write(
            org_id,
            actor,
            source,
            AuditedChange::new("org.created", "org", org_id),
        )
        .await?;
    insert_org(&mut tx, name).await?;
    let org = get_org(tx.tenant()).await?;
    tx.commit().await?;
    Ok(org)
}

/// Inserts the write's org with default settings.
pub(crate) async fn insert_org(tx: &mut WriteTx, name: &str) -> Result<(), StorageError> {
    let org_id = tx.org();
    tx.detail("name", name);
    sqlx::query("insert into organizations (org_id, name) values ($1, $2)")
        .bind(org_id.as_uuid())
        .bind(name)
        .execute(tx.conn())
        .await
        .map_err(StorageError::from_write)?;
    sqlx::query("insert into org_settings (org_id) values ($1)")
        .bind(org_id.as_uuid())
        .execute(tx.conn())
        .await
        .map_err(StorageError::from_write)?;
    Ok(())
}

/// The transaction's org.
pub async fn get_org(tx: &mut TenantTx) -> Result<Org, StorageError> {
    sqlx::query_as(
        "select o.org_id, o.name, o.created_at, s.logging_level, s.pii_redaction,
                s.pii_guardrail, s.content_retention_days, s.ledger_retention_days, s.require_mfa,
                s.session_idle_minutes, s.session_max_hours, s.invite_ttl_days,
                s.budget_micro_usd, s.budget_period
         from organizations o join org_settings s using (org_id)
         where o.org_id = $1",
    )
    .bind(tx.org().as_uuid())
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StorageError::NotFound)
}

/// Changes to an org's settings; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsChange {
    pub logging_level: Option<LoggingLevel>,
    pub pii_redaction: Option<bool>,
    pub pii_guardrail: Option<GuardrailMode>,
    pub content_retention_days: Option<i32>,
    pub ledger_retention_days: Option<i32>,
    pub require_mfa: Option<bool>,
    pub session_idle_minutes: Option<i32>,
    pub session_max_hours: Option<i32>,
    pub invite_ttl_days: Option<i32>,
    /// `Some(None)` removes the budget.
    pub budget_micro_usd: Option<Option<i64>>,
    pub budget_period: Option<Option<String>>,
}

/// Applies the change; the audit entry lists every setting it sets (values are not secret).
pub async fn update_settings(
    tx: &mut WriteTx,
    change: &SettingsChange,
) -> Result<Org, StorageError> {
    let org = tx.org();
    if let Some(v) = change.logging_level {
        tx.detail("logging_level", v.name());
    }
    if let Some(v) = change.pii_redaction {
        tx.detail("pii_redaction", v);
    }
    if let Some(v) = change.pii_guardrail {
        tx.detail("pii_guardrail", v.name());
    }
    if let Some(v) = change.content_retention_days {
        tx.detail("content_retention_days", v);
    }
    if let Some(v) = change.ledger_retention_days {
        tx.detail("ledger_retention_days", v);
    }
    if let Some(v) = change.require_mfa {
        tx.detail("require_mfa", v);
    }
    if let Some(v) = change.session_idle_minutes {
        tx.detail("session_idle_minutes", v);
    }
    if let Some(v) = change.session_max_hours {
        tx.detail("session_max_hours", v);
    }
    if let Some(v) = change.invite_ttl_days {
        tx.detail("invite_ttl_days", v);
    }
    if let Some(v) = change.budget_micro_usd {
        tx.detail("budget_micro_usd", v);
    }
    if let Some(v) = &change.budget_period {
        tx.detail("budget_period", v.clone());
    }
    sqlx::query(
        "update org_settings set
             logging_level = coalesce($2, logging_level),
             pii_redaction = coalesce($3, pii_redaction),
             pii_guardrail = coalesce($4, pii_guardrail),
             content_retention_days = coalesce($5, content_retention_days),
             ledger_retention_days = coalesce($6, ledger_retention_days),
             require_mfa = coalesce($7, require_mfa),
             budget_micro_usd = case when $8 then $9 else budget_micro_usd end,
             budget_period = case when $10 then $11 else budget_period end,
             session_idle_minutes = coalesce($12, session_idle_minutes),
             session_max_hours = coalesce($13, session_max_hours),
             invite_ttl_days = coalesce($14, invite_ttl_days),
             updated_at = now()
         where org_id = $1",
    )
    .bind(org.as_uuid())
    .bind(change.logging_level.map(LoggingLevel::name))
    .bind(change.pii_redaction)
    .bind(change.pii_guardrail.map(GuardrailMode::name))
    .bind(change.content_retention_days)
    .bind(change.ledger_retention_days)
    .bind(change.require_mfa)
    .bind(change.budget_micro_usd.is_some())
    .bind(change.budget_micro_usd.flatten())
    .bind(change.budget_period.is_some())
    .bind(change.budget_period.clone().flatten())
    .bind(change.session_idle_minutes)
    .bind(change.session_max_hours)
    .bind(change.invite_ttl_days)
    .execute(tx.conn())
    .await
    .map_err(StorageError::from_write)?;
    get_org(tx.tenant()).await
}

/// What the admin guard needs of an org for one caller, read fresh on every request (no
/// cached roles): whether the org exists here, its MFA rule, and the person's membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub require_mfa: bool,
    /// The org's session limits, in minutes idle and hours in all.
    pub session_idle_minutes: i32,
    pub session_max_hours: i32,
    /// `None`: not a member (an invitation is not a membership).
    pub membership: Option<MembershipAccess>,
}

/// A person's membership as the guard checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MembershipAccess {
    pub role: Role,
    /// Sessions begun before this are refused in this org (ended by an admin, or a lowered
    /// role).
    pub sessions_valid_after: Option<DateTime<Utc>>,
}

type AccessRow = (bool, i32, i32, Option<String>, Option<DateTime<Utc>>);

/// `None` when the org does not exist (or is not visible: the same thing).
pub async fn access(
    tx: &mut TenantTx,
    user: Option<UserId>,
) -> Result<Option<Access>, StorageError> {
    let row: Option<AccessRow> = sqlx::query_as(
        "select s.require_mfa, s.session_idle_minutes, s.session_max_hours, m.role,
                m.sessions_valid_after
         from org_settings s
         left join memberships m on m.org_id = s.org_id and m.user_id = $2
         where s.org_id = $1",
    )
    .bind(tx.org().as_uuid())
    .bind(user.map(uuid::Uuid::from))
    .fetch_optional(tx.conn())
    .await?;
    row.map(
        |(require_mfa, idle, max_hours, role, sessions_valid_after)| {
            let membership = role
                .map(|r| r.parse::<Role>())
                .transpose()
                .map_err(|_| StorageError::Invalid("role".into()))?
                .map(|role| MembershipAccess {
                    role,
                    sessions_valid_after,
                });
            Ok(Access {
                require_mfa,
                session_idle_minutes: idle,
                session_max_hours: max_hours,
                membership,
            })
        },
    )
    .transpose()
}
