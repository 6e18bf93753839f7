//! Look-ups that happen before an org is known: credentials by hash, a person by email, a
//! person's own profile and second factor. Each goes through one of the SECURITY DEFINER
//! functions of `migrations/20261126000002_access_control.sql`, documented in
//! docs/ARCHITECTURE.md; the runtime role has no direct access to these rows.

use chrono::{DateTime, Utc};
use portcullis_core::crypto::{Keyring, sealed_version};
use portcullis_core::token::TokenHash;
use portcullis_core::{KeyId, OrgId, Role, SessionId, UserId};
use uuid::Uuid;

use crate::error::StorageError;
use crate::{Db, PersonTx};

/// What a login needs to know of a person.
#[derive(Debug, Clone)]
pub struct LoginUser {
    pub user_id: UserId,
    /// `None` for an invited person who has not set a password yet.
    pub password_hash: Option<String>,
    pub mfa_enabled: bool,
}

pub async fn user_by_email(db: &Db, email: &str) -> Result<Option<LoginUser>, StorageError> {
    let row: Option<(Uuid, Option<String>, bool)> =
        sqlx::query_as("select user_id, password_hash, mfa_enabled from auth_user_by_email($1)")
            .bind(email)
            .fetch_optional(db.pool())
            .await?;
    Ok(row.map(|(user_id, password_hash, mfa_enabled)| LoginUser {
        user_id: UserId::from_uuid(user_id),
        password_hash,
        mfa_enabled,
    }))
}

/// A person's own profile and second-factor state.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Profile {
    pub email: String,
    pub mfa_enabled: bool,
    pub totp_ciphertext: Option<Vec<u8>>,
    pub totp_pending_ciphertext: Option<Vec<u8>>,
    pub totp_last_step: i64,
}

pub async fn profile(db: &Db, user: UserId) -> Result<Option<Profile>, StorageError> {
    Ok(sqlx::query_as(
        "select email, mfa_enabled, totp_ciphertext, totp_pending_ciphertext, totp_last_step
         from auth_user($1)",
    )
    .bind(user.as_uuid())
    .fetch_optional(db.pool())
    .await?)
}

/// One of a person's orgs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub org_id: OrgId,
    pub name: String,
    pub role: Role,
}

pub async fn memberships(db: &Db, user: UserId) -> Result<Vec<Membership>, StorageError> {
    let rows: Vec<(Uuid, String, String)> =
        sqlx::query_as("select org_id, name, role from auth_user_memberships($1)")
            .bind(user.as_uuid())
            .fetch_all(db.pool())
            .await?;
    rows.into_iter()
        .map(|(org_id, name, role)| {
            Ok(Membership {
                org_id: OrgId::from_uuid(org_id),
                name,
                role: role
                    .parse()
                    .map_err(|_| StorageError::Invalid("role".into()))?,
            })
        })
        .collect()
}

/// A person's role in one of their orgs, with that org's `require_mfa`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MfaRule {
    pub org_id: OrgId,
    pub role: Role,
    pub require_mfa: bool,
}

/// The person's roles and their orgs' `require_mfa`, locked until `tx` ends.
pub async fn mfa_rules(tx: &mut PersonTx) -> Result<Vec<MfaRule>, StorageError> {
    let rows: Vec<(Uuid, String, bool)> =
        sqlx::query_as("select org_id, role, require_mfa from auth_user_mfa_rules($1)")
            .bind(tx.user().as_uuid())
            .fetch_all(tx.conn())
            .await?;
    rows.into_iter()
        .map(|(org_id, role, require_mfa)| {
            Ok(MfaRule {
                org_id: OrgId::from_uuid(org_id),
                role: role
                    .parse()
                    .map_err(|_| StorageError::Invalid("role".into()))?,
                require_mfa,
            })
        })
        .collect()
}

/// A login session, or the short-lived challenge between password and second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Session,
    MfaChallenge,
}

impl SessionKind {
    fn as_str(self) -> &'static str {
        match self {
            SessionKind::Session => "session",
            SessionKind::MfaChallenge => "mfa_challenge",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub mfa_verified: bool,
    pub expires_at: DateTime<Utc>,
}

/// A live session as found: what it was started as, when, and when it was last let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveSession {
    pub session: Session,
    pub started_at: DateTime<Utc>,
    /// Before this use: an org checks its own idle limit against it.
    pub last_seen_at: DateTime<Utc>,
}

pub async fn start_session(
    tx: &mut PersonTx,
    kind: SessionKind,
    session: &Session,
    token: &TokenHash,
) -> Result<(), StorageError> {
    sqlx::query("select auth_start_session($1, $2, $3, $4, $5, $6)")
        .bind(session.session_id.as_uuid())
        .bind(session.user_id.as_uuid())
        .bind(token.0.as_slice())
        .bind(kind.as_str())
        .bind(session.mfa_verified)
        .bind(session.expires_at)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// (session id, user id, MFA verified, expires at, started at, last seen at).
type SessionRow = (
    Uuid,
    Uuid,
    bool,
    DateTime<Utc>,
    DateTime<Utc>,
    DateTime<Utc>,
);

/// A live session or challenge of this kind: not ended, not expired, and (a session) within
/// the most permissive idle and absolute limits of its person's orgs, which `auth_session`
/// checks on every use, ending a session found past them. The use is not recorded here: see
/// [`touch_session`].
pub async fn session(
    db: &Db,
    kind: SessionKind,
    token: &TokenHash,
) -> Result<Option<LiveSession>, StorageError> {
    let row: Option<SessionRow> = sqlx::query_as(
        "select session_id, user_id, mfa_verified, expires_at, created_at, last_seen_at
         from auth_session($1, $2)",
    )
    .bind(token.0.as_slice())
    .bind(kind.as_str())
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(
        |(session_id, user_id, mfa_verified, expires_at, started_at, last_seen_at)| LiveSession {
            session: Session {
                session_id: SessionId::from_uuid(session_id),
                user_id: UserId::from_uuid(user_id),
                mfa_verified,
                expires_at,
            },
            started_at,
            last_seen_at,
        },
    ))
}

/// Records a use of a session that was let through.
pub async fn touch_session(db: &Db, session: SessionId) -> Result<(), StorageError> {
    sqlx::query("select auth_touch_session($1)")
        .bind(session.as_uuid())
        .execute(db.pool())
        .await?;
    Ok(())
}

/// The most permissive session limits over a person's orgs: (idle minutes, absolute hours).
/// The strictest idle and absolute session limits of the person's orgs (minutes, hours).
pub async fn session_limits(tx: &mut PersonTx) -> Result<(i32, i32), StorageError> {
    Ok(
        sqlx::query_as("select idle_minutes, max_hours from auth_session_limits($1)")
            .bind(tx.user().as_uuid())
            .fetch_one(tx.conn())
            .await?,
    )
}

/// One of a person's live sessions, as their profile lists it: never its token.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OwnSession {
    pub session_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub mfa_verified: bool,
}

/// The person's live sessions, newest first.
pub async fn own_sessions(db: &Db, user: UserId) -> Result<Vec<OwnSession>, StorageError> {
    Ok(sqlx::query_as(
        "select session_id, created_at, last_seen_at, expires_at, mfa_verified
         from auth_user_sessions($1)",
    )
    .bind(user.as_uuid())
    .fetch_all(db.pool())
    .await?)
}

/// Ends every live session of a person; how many ended.
pub async fn end_user_sessions(tx: &mut PersonTx) -> Result<i32, StorageError> {
    Ok(sqlx::query_scalar("select auth_end_user_sessions($1)")
        .bind(tx.user().as_uuid())
        .fetch_one(tx.conn())
        .await?)
}

/// Ends a session or challenge; false if it was not live.
pub async fn end_session(tx: &mut PersonTx, token: &TokenHash) -> Result<bool, StorageError> {
    let ended: Option<bool> = sqlx::query_scalar("select auth_end_session($1)")
        .bind(token.0.as_slice())
        .fetch_one(tx.conn())
        .await?;
    Ok(ended.unwrap_or(false))
}

pub async fn verify_session_mfa(tx: &mut PersonTx, session: SessionId) -> Result<(), StorageError> {
    sqlx::query("select auth_verify_session_mfa($1)")
        .bind(session.as_uuid())
        .execute(tx.conn())
        .await?;
    Ok(())
}

pub async fn set_totp_pending(tx: &mut PersonTx, sealed: &[u8]) -> Result<(), StorageError> {
    sqlx::query("select auth_set_totp_pending($1, $2)")
        .bind(tx.user().as_uuid())
        .bind(sealed)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Turns the pending seed on, with its first step used and these recovery codes (lookup,
/// argon2id hash). False if there was nothing pending or MFA was already on.
pub async fn enable_mfa(
    tx: &mut PersonTx,
    step: i64,
    codes: &[(String, String)],
) -> Result<bool, StorageError> {
    let (lookups, hashes): (Vec<&str>, Vec<&str>) =
        codes.iter().map(|(l, h)| (l.as_str(), h.as_str())).unzip();
    let enabled: bool = sqlx::query_scalar("select auth_enable_mfa($1, $2, $3, $4)")
        .bind(tx.user().as_uuid())
        .bind(step)
        .bind(&lookups)
        .bind(&hashes)
        .fetch_one(tx.conn())
        .await?;
    Ok(enabled)
}

/// Turns MFA off: seed and recovery codes gone, no session of the person verified any more.
/// False if MFA was not on.
pub async fn remove_mfa(tx: &mut PersonTx) -> Result<bool, StorageError> {
    Ok(sqlx::query_scalar("select auth_remove_mfa($1)")
        .bind(tx.user().as_uuid())
        .fetch_one(tx.conn())
        .await?)
}

/// Claims a TOTP step; false if it (or a later one) was used already: a replayed code.
pub async fn claim_totp_step(db: &Db, user: UserId, step: i64) -> Result<bool, StorageError> {
    let claimed: Option<bool> = sqlx::query_scalar("select auth_claim_totp_step($1, $2)")
        .bind(user.as_uuid())
        .bind(step)
        .fetch_one(db.pool())
        .await?;
    Ok(claimed.unwrap_or(false))
}

pub async fn recovery_code_hash(
    db: &Db,
    user: UserId,
    lookup: &str,
) -> Result<Option<String>, StorageError> {
    Ok(sqlx::query_scalar("select auth_recovery_code_hash($1, $2)")
        .bind(user.as_uuid())
        .bind(lookup)
        .fetch_one(db.pool())
        .await?)
}

/// Marks a recovery code used; false if it was used already (a race lost).
pub async fn spend_recovery_code(
    db: &Db,
    user: UserId,
    lookup: &str,
) -> Result<bool, StorageError> {
    let spent: Option<bool> = sqlx::query_scalar("select auth_spend_recovery_code($1, $2)")
        .bind(user.as_uuid())
        .bind(lookup)
        .fetch_one(db.pool())
        .await?;
    Ok(spent.unwrap_or(false))
}

/// A live master key by its hash.
pub async fn master_key(db: &Db, token: &TokenHash) -> Result<Option<KeyId>, StorageError> {
    let key: Option<Uuid> = sqlx::query_scalar("select auth_master_key($1)")
        .bind(token.0.as_slice())
        .fetch_one(db.pool())
        .await?;
    Ok(key.map(KeyId::from_uuid))
}

/// An open invitation, found by its token before its org is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub invite_id: Uuid,
    pub org_id: OrgId,
    pub email: String,
    pub role: Role,
    /// Who invited (`None`: the master key).
    pub invited_by: Option<UserId>,
}

pub async fn invite(db: &Db, token: &TokenHash) -> Result<Option<Invite>, StorageError> {
    let row: Option<(Uuid, Uuid, String, String, Option<Uuid>)> = sqlx::query_as(
        "select invite_id, org_id, email, role, invited_by_user from auth_invite($1)",
    )
    .bind(token.0.as_slice())
    .fetch_optional(db.pool())
    .await?;
    row.map(|(invite_id, org_id, email, role, invited_by)| {
        Ok(Invite {
            invite_id,
            org_id: OrgId::from_uuid(org_id),
            email,
            role: role
                .parse()
                .map_err(|_| StorageError::Invalid("role".into()))?,
            invited_by: invited_by.map(UserId::from_uuid),
        })
    })
    .transpose()
}

/// An open invitation addressed to a person's email, as `/auth/v1/me` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressedInvitation {
    pub invite_id: Uuid,
    pub org_id: OrgId,
    pub org_name: String,
    pub role: Role,
    pub expires_at: DateTime<Utc>,
}

pub async fn invitations_for(
    db: &Db,
    user: UserId,
) -> Result<Vec<AddressedInvitation>, StorageError> {
    let rows: Vec<(Uuid, Uuid, String, String, DateTime<Utc>)> = sqlx::query_as(
        "select invite_id, org_id, name, role, expires_at from auth_user_invitations($1)",
    )
    .bind(user.as_uuid())
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|(invite_id, org_id, org_name, role, expires_at)| {
            Ok(AddressedInvitation {
                invite_id,
                org_id: OrgId::from_uuid(org_id),
                org_name,
                role: role
                    .parse()
                    .map_err(|_| StorageError::Invalid("role".into()))?,
                expires_at,
            })
        })
        .collect()
}

/// A person's sealed TOTP seeds: (user id, active, pending).
type SealedSeeds = (Uuid, Option<Vec<u8>>, Option<Vec<u8>>);

/// Re-seals every TOTP seed that the keyring's current key did not seal (key-encryption-key
/// rotation). A seed changed meanwhile (a new enrolment) is left for the next run. Returns how
/// many people's seeds were re-sealed.
pub async fn reseal_totp_seeds(db: &Db, ring: &Keyring) -> Result<u64, StorageError> {
    let rows: Vec<SealedSeeds> =
        sqlx::query_as("select user_id, totp_ciphertext, totp_pending_ciphertext from platform_sealed_totp_seeds()")
            .fetch_all(db.pool())
            .await?;
    let current = ring.current_version();
    let mut resealed = 0;
    for (user_id, active, pending) in rows {
        let context = format!("totp:{user_id}");
        let reseal = |sealed: &Option<Vec<u8>>| -> Result<Option<Vec<u8>>, StorageError> {
            match sealed {
                Some(bytes) if sealed_version(bytes) != Some(current) => {
                    let plain = ring
                        .open(bytes, context.as_bytes())
                        .map_err(StorageError::Crypto)?;
                    ring.seal(&plain, context.as_bytes())
                        .map(Some)
                        .map_err(StorageError::Crypto)
                }
                other => Ok(other.clone()),
            }
        };
        let (new_active, new_pending) = (reseal(&active)?, reseal(&pending)?);
        if new_active == active && new_pending == pending {
            continue;
        }
        let swapped: Option<bool> =
            sqlx::query_scalar("select platform_reseal_totp($1, $2, $3, $4, $5)")
                .bind(user_id)
                .bind(&active)
                .bind(&new_active)
                .bind(&pending)
                .bind(&new_pending)
                .fetch_one(db.pool())
                .await?;
        if swapped.unwrap_or(false) {
            resealed += 1;
        }
    }
    Ok(resealed)
}
