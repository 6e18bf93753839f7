//! `/auth/v1`: login (with a second step when MFA is on), logout, the caller's profile, TOTP
//! enrolment, and accepting an invitation (AC-4, AC-5).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{MethodRouter, get, post};
use chrono::{DateTime, Utc};
use portcullis_core::audit::{Actor, ActorKind, Source};
use portcullis_core::mfa::{RECOVERY_CODES, RecoveryCode, Totp};
use portcullis_core::token::{Token, TokenKind};
use portcullis_core::{SessionId, UserId, password};
use portcullis_storage::auth::{self, Session, SessionKind};
use portcullis_storage::{AuditedChange, members};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::caller::{Principal, bearer, session_principal};
use crate::error::ApiError;
use crate::json::JsonBody;
use crate::router::AppState;
use crate::source::ClientSource;
use crate::throttle::{PER_ACCOUNT, PER_IP};

const SESSION_HOURS: i64 = 12;
const CHALLENGE_MINUTES: i64 = 5;

fn table() -> [(&'static str, &'static str, MethodRouter<AppState>); 7] {
    [
        ("POST", "/auth/v1/login", post(login)),
        ("POST", "/auth/v1/login/mfa", post(login_mfa)),
        ("POST", "/auth/v1/logout", post(logout)),
        ("GET", "/auth/v1/me", get(me)),
        ("POST", "/auth/v1/mfa/enroll", post(mfa_enroll)),
        ("POST", "/auth/v1/mfa/confirm", post(mfa_confirm)),
        ("POST", "/auth/v1/invites/accept", post(accept_invite)),
    ]
}

/// Every auth route as (method, path): what the tests enumerate.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    table()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect()
}

pub fn router() -> Router<AppState> {
    table()
        .into_iter()
        .fold(Router::new(), |router, (_, path, handler)| {
            router.route(path, handler)
        })
}

fn user_actor(user: UserId) -> Actor {
    Actor {
        kind: ActorKind::User,
        id: user.to_string(),
    }
}

/// Records an event about a person in every org they belong to: a login concerns them all.
async fn record_for_user(
    state: &AppState,
    user: UserId,
    source: &Source,
    action: &'static str,
    details: Value,
) -> Result<(), ApiError> {
    for membership in auth::memberships(&state.db, user).await? {
        let mut tx = state
            .db
            .begin_write(
                membership.org_id,
                &user_actor(user),
                source,
                AuditedChange::new(action, "user", user),
            )
            .await?;
        if let Value::Object(map) = &details {
            for (key, value) in map {
                tx.detail(key, value.clone());
            }
        }
        tx.commit().await?;
    }
    Ok(())
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthenticated("invalid_credentials", "invalid email or password")
}

/// Runs argon2 off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)
}

fn throttled(state: &AppState, keys: &[(&str, crate::throttle::Limit)]) -> Result<(), ApiError> {
    for (key, limit) in keys {
        state
            .throttle
            .check(key, *limit)
            .map_err(|retry_after_secs| ApiError::RateLimited {
                retry_after_secs,
                message: "too many attempts; retry later".to_owned(),
            })?;
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    email: String,
    password: String,
}

#[derive(Debug, Serialize)]
struct SessionView {
    session_token: String,
    expires_at: DateTime<Utc>,
    mfa_verified: bool,
}

#[derive(Debug, Serialize)]
struct ChallengeView {
    mfa_challenge: String,
    expires_at: DateTime<Utc>,
}

async fn new_session(
    state: &AppState,
    user: UserId,
    kind: SessionKind,
    mfa_verified: bool,
) -> Result<(Token, DateTime<Utc>), ApiError> {
    let (token_kind, ttl) = match kind {
        SessionKind::Session => (TokenKind::Session, chrono::Duration::hours(SESSION_HOURS)),
        SessionKind::MfaChallenge => (
            TokenKind::MfaChallenge,
            chrono::Duration::minutes(CHALLENGE_MINUTES),
        ),
    };
    let token = Token::generate(token_kind)?;
    let expires_at = Utc::now() + ttl;
    let session = Session {
        session_id: SessionId::new(),
        user_id: user,
        mfa_verified,
        expires_at,
    };
    auth::start_session(&state.db, kind, &session, &token.hash()).await?;
    Ok((token, expires_at))
}

/// `POST /auth/v1/login`. An unknown email and a wrong password get the same answer after the
/// same argon2 work; every login makes a new token.
async fn login(
    State(state): State<AppState>,
    ClientSource(source): ClientSource,
    JsonBody(body): JsonBody<Login>,
) -> Result<Json<Value>, ApiError> {
    let account_key = format!("acct:{}", body.email.trim().to_lowercase());
    let ip_key = format!(
        "ip:{}",
        source
            .client_ip
            .map_or_else(String::new, |ip| ip.to_string())
    );
    throttled(&state, &[(&account_key, PER_ACCOUNT), (&ip_key, PER_IP)])?;

    let user = auth::user_by_email(&state.db, body.email.trim()).await?;
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let password_ok = blocking(move || match stored {
        Some(hash) => password::verify(&body.password, &hash),
        None => {
            password::verify_nothing(&body.password);
            false
        }
    })
    .await?;

    let user = match user {
        Some(user) if password_ok => user,
        known => {
            state.throttle.fail(&account_key);
            state.throttle.fail(&ip_key);
            match known {
                Some(user) => {
                    let details = json!({"reason": "password"});
                    record_for_user(&state, user.user_id, &source, "login.failed", details).await?;
                }
                None => tracing::info!("login failed for an unknown email"),
            }
            return Err(invalid_credentials());
        }
    };
    state.throttle.clear(&account_key);
    if user.mfa_enabled {
        let (challenge, expires_at) =
            new_session(&state, user.user_id, SessionKind::MfaChallenge, false).await?;
        return Ok(Json(json!(ChallengeView {
            mfa_challenge: challenge.expose().to_owned(),
            expires_at,
        })));
    }
    record_for_user(
        &state,
        user.user_id,
        &source,
        "login.succeeded",
        json!({"mfa": false}),
    )
    .await?;
    let (token, expires_at) =
        new_session(&state, user.user_id, SessionKind::Session, false).await?;
    Ok(Json(json!(SessionView {
        session_token: token.expose().to_owned(),
        expires_at,
        mfa_verified: false,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginMfa {
    mfa_challenge: String,
    code: String,
}

/// Which second factor a person proved.
enum SecondFactor {
    Totp,
    RecoveryCode,
}

/// Checks a TOTP code (each time step once) or a recovery code (each code once).
async fn check_second_factor(
    state: &AppState,
    user: UserId,
    code: &str,
) -> Result<Option<SecondFactor>, ApiError> {
    let profile = auth::profile(&state.db, user)
        .await?
        .ok_or_else(invalid_credentials)?;
    if let Some(sealed) = &profile.totp_ciphertext {
        let secret = state
            .keyring
            .open(sealed, totp_context(user).as_bytes())
            .map_err(ApiError::internal)?;
        let totp = Totp::new(secret, &profile.email).map_err(ApiError::internal)?;
        if let Some(step) = totp.matching_step(code, unix_now()) {
            let step = i64::try_from(step).map_err(ApiError::internal)?;
            return Ok(auth::claim_totp_step(&state.db, user, step)
                .await?
                .then_some(SecondFactor::Totp));
        }
    }
    let Some(recovery) = RecoveryCode::parse(code) else {
        return Ok(None);
    };
    let Some(hash) = auth::recovery_code_hash(&state.db, user, &recovery.lookup).await? else {
        return Ok(None);
    };
    let secret = recovery.secret.clone();
    if !blocking(move || password::verify(&secret, &hash)).await? {
        return Ok(None);
    }
    Ok(auth::spend_recovery_code(&state.db, user, &recovery.lookup)
        .await?
        .then_some(SecondFactor::RecoveryCode))
}

fn totp_context(user: UserId) -> String {
    format!("totp:{user}")
}

fn unix_now() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or(0)
}

/// `POST /auth/v1/login/mfa`: the second step. The challenge ends either way on success.
async fn login_mfa(
    State(state): State<AppState>,
    ClientSource(source): ClientSource,
    JsonBody(body): JsonBody<LoginMfa>,
) -> Result<Json<SessionView>, ApiError> {
    let challenge = Token::parse(body.mfa_challenge.trim())
        .ok()
        .filter(|t| t.kind() == TokenKind::MfaChallenge)
        .ok_or_else(|| {
            ApiError::unauthenticated("invalid_session", "unknown or expired challenge")
        })?;
    let pending = auth::session(&state.db, SessionKind::MfaChallenge, &challenge.hash())
        .await?
        .ok_or_else(|| {
            ApiError::unauthenticated("invalid_session", "unknown or expired challenge")
        })?;
    let user = pending.user_id;
    let mfa_key = format!("mfa:{user}");
    let ip_key = format!(
        "ip:{}",
        source
            .client_ip
            .map_or_else(String::new, |ip| ip.to_string())
    );
    throttled(&state, &[(&mfa_key, PER_ACCOUNT), (&ip_key, PER_IP)])?;

    let Some(factor) = check_second_factor(&state, user, &body.code).await? else {
        state.throttle.fail(&mfa_key);
        state.throttle.fail(&ip_key);
        record_for_user(
            &state,
            user,
            &source,
            "login.failed",
            json!({"reason": "second_factor"}),
        )
        .await?;
        return Err(ApiError::unauthenticated(
            "invalid_mfa_code",
            "invalid code",
        ));
    };
    state.throttle.clear(&mfa_key);
    auth::end_session(&state.db, &challenge.hash()).await?;
    let method = match factor {
        SecondFactor::Totp => "totp",
        SecondFactor::RecoveryCode => "recovery_code",
    };
    record_for_user(
        &state,
        user,
        &source,
        "login.succeeded",
        json!({"mfa": method}),
    )
    .await?;
    let (token, expires_at) = new_session(&state, user, SessionKind::Session, true).await?;
    Ok(Json(SessionView {
        session_token: token.expose().to_owned(),
        expires_at,
        mfa_verified: true,
    }))
}

/// `POST /auth/v1/logout`.
async fn logout(
    State(state): State<AppState>,
    ClientSource(source): ClientSource,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let principal = session_principal(&state, &headers).await?;
    let token = bearer(&headers)?;
    if let Some(user) = principal.user_id() {
        record_for_user(&state, user, &source, "logout", json!({})).await?;
    }
    auth::end_session(&state.db, &token.hash()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize)]
struct MeView {
    user_id: String,
    email: String,
    mfa_enabled: bool,
    mfa_verified: bool,
    memberships: Vec<MembershipView>,
}

#[derive(Debug, Serialize)]
struct MembershipView {
    org_id: String,
    name: String,
    role: &'static str,
}

async fn session_user(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(UserId, SessionId, bool), ApiError> {
    match session_principal(state, headers).await? {
        Principal::User {
            user_id,
            session_id,
            mfa_verified,
        } => Ok((user_id, session_id, mfa_verified)),
        Principal::MasterKey(_) => Err(ApiError::forbidden(
            "wrong_key_kind",
            "this route takes a session token",
        )),
    }
}

/// `GET /auth/v1/me`.
async fn me(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<MeView>, ApiError> {
    let (user, _, mfa_verified) = session_user(&state, &headers).await?;
    let profile = auth::profile(&state.db, user)
        .await?
        .ok_or_else(invalid_credentials)?;
    let memberships = auth::memberships(&state.db, user)
        .await?
        .into_iter()
        .map(|m| MembershipView {
            org_id: m.org_id.to_string(),
            name: m.name,
            role: m.role.as_str(),
        })
        .collect();
    Ok(Json(MeView {
        user_id: user.to_string(),
        email: profile.email,
        mfa_enabled: profile.mfa_enabled,
        mfa_verified,
        memberships,
    }))
}

#[derive(Debug, Serialize)]
struct Enrolment {
    secret: String,
    otpauth_uri: String,
}

/// `POST /auth/v1/mfa/enroll`: a new pending seed, shown once, sealed at rest.
async fn mfa_enroll(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Enrolment>, ApiError> {
    let (user, _, _) = session_user(&state, &headers).await?;
    let profile = auth::profile(&state.db, user)
        .await?
        .ok_or_else(invalid_credentials)?;
    if profile.mfa_enabled {
        return Err(ApiError::Conflict(
            "MFA is already on for this account".to_owned(),
        ));
    }
    let secret = Totp::generate_secret()?;
    let sealed = state
        .keyring
        .seal(&secret, totp_context(user).as_bytes())
        .map_err(ApiError::internal)?;
    let totp = Totp::new(secret, &profile.email).map_err(ApiError::internal)?;
    auth::set_totp_pending(&state.db, user, &sealed).await?;
    Ok(Json(Enrolment {
        secret: totp.secret_base32(),
        otpauth_uri: totp.uri(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Confirm {
    code: String,
}

#[derive(Debug, Serialize)]
struct RecoveryCodes {
    recovery_codes: Vec<String>,
}

/// `POST /auth/v1/mfa/confirm`: a code from the new seed turns MFA on; recovery codes are shown
/// once and stored as argon2id hashes. The session that proved the code counts as verified.
async fn mfa_confirm(
    State(state): State<AppState>,
    ClientSource(source): ClientSource,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Confirm>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let (user, session_id, _) = session_user(&state, &headers).await?;
    let throttle_key = format!("mfa:{user}");
    throttled(&state, &[(&throttle_key, PER_ACCOUNT)])?;
    let profile = auth::profile(&state.db, user)
        .await?
        .ok_or_else(invalid_credentials)?;
    let pending = profile
        .totp_pending_ciphertext
        .ok_or_else(|| ApiError::Conflict("start with /auth/v1/mfa/enroll".to_owned()))?;
    let secret = state
        .keyring
        .open(&pending, totp_context(user).as_bytes())
        .map_err(ApiError::internal)?;
    let totp = Totp::new(secret, &profile.email).map_err(ApiError::internal)?;
    let Some(step) = totp.matching_step(&body.code, unix_now()) else {
        state.throttle.fail(&throttle_key);
        return Err(ApiError::invalid_request(
            "the code does not match; check the device clock",
        ));
    };
    let codes: Vec<RecoveryCode> = (0..RECOVERY_CODES)
        .map(|_| RecoveryCode::generate())
        .collect::<Result<_, _>>()?;
    let secrets: Vec<(String, String)> = codes
        .iter()
        .map(|c| (c.lookup.clone(), c.secret.clone()))
        .collect();
    let hashed = blocking(move || {
        secrets
            .into_iter()
            .map(|(lookup, secret)| password::hash(&secret).map(|hash| (lookup, hash)))
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;
    let step = i64::try_from(step).map_err(ApiError::internal)?;
    if !auth::enable_mfa(&state.db, user, step, &hashed).await? {
        return Err(ApiError::Conflict(
            "MFA is already on for this account".to_owned(),
        ));
    }
    auth::verify_session_mfa(&state.db, session_id).await?;
    record_for_user(
        &state,
        user,
        &source,
        "mfa.enrolled",
        json!({"method": "totp"}),
    )
    .await?;
    Ok(Json(RecoveryCodes {
        recovery_codes: codes.iter().map(RecoveryCode::display).collect(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptInvite {
    invite_token: String,
    password: String,
}

/// `POST /auth/v1/invites/accept`: an invited person sets their password.
async fn accept_invite(
    State(state): State<AppState>,
    ClientSource(source): ClientSource,
    JsonBody(body): JsonBody<AcceptInvite>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || ApiError::NotFound {
        code: "not_found",
        message: "unknown, used or expired invitation".to_owned(),
    };
    let token = Token::parse(body.invite_token.trim())
        .ok()
        .filter(|t| t.kind() == TokenKind::Invite)
        .ok_or_else(not_found)?;
    password::check_new_password(&body.password)
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let invite = auth::invite(&state.db, &token.hash())
        .await?
        .ok_or_else(not_found)?;
    let new_password = body.password;
    let hash = blocking(move || password::hash(&new_password)).await??;
    let mut tx = state
        .db
        .begin_write(
            invite.org_id,
            &user_actor(invite.user_id),
            &source,
            AuditedChange::new("invite.accepted", "user", invite.user_id),
        )
        .await?;
    members::accept_invite(&mut tx, invite.invite_id, invite.user_id, &hash).await?;
    tx.commit().await?;
    Ok(Json(json!({"user_id": invite.user_id.to_string()})))
}
