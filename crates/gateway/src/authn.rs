//! `/auth/v1`: login (with a second step when MFA is on), logout, the caller's profile, TOTP
//! enrolment and removal, accepting an invitation, and signing out everywhere (AC-4, AC-5,
//! AC-6). Every route that changes state records one audit entry in each of the person's orgs
//! (AU-1, AU-2).

use std::net::IpAddr;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use chrono::{DateTime, Utc};
use portcullis_core::audit::{Actor, ActorKind, Source};
use portcullis_core::mfa::{RECOVERY_CODES, RecoveryCode, Totp};
use portcullis_core::token::{Token, TokenKind};
use portcullis_core::{SessionId, UserId, password};
use portcullis_policy::rbac;
use portcullis_storage::auth::{self, Session, SessionKind};
use portcullis_storage::{AuditedChange, PersonTx, members};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::caller::{Principal, bearer, session_principal};
use crate::error::ApiError;
use crate::json::JsonBody;
use crate::source::ClientSource;
use crate::state::AppState;
use crate::throttle::{Attempt, Subject};

/// The longest session any org allows; each org's `session_max_hours` may shorten it.
const SESSION_MAX_HOURS: i64 = 720;
const CHALLENGE_MINUTES: i64 = 5;
/// The longest email address (RFC 5321's path limit); longer is refused before any work.
pub const MAX_EMAIL_BYTES: usize = 320;

fn table() -> [(&'static str, &'static str, MethodRouter<AppState>); 10] {
    [
        ("POST", "/auth/v1/login", post(login)),
        ("POST", "/auth/v1/login/mfa", post(login_mfa)),
        ("POST", "/auth/v1/logout", post(logout)),
        ("GET", "/auth/v1/me", get(me)),
        ("POST", "/auth/v1/mfa/enroll", post(mfa_enroll)),
        ("POST", "/auth/v1/mfa/confirm", post(mfa_confirm)),
        ("POST", "/auth/v1/mfa/remove", post(mfa_remove)),
        ("POST", "/auth/v1/invites/accept", post(accept_invite)),
        ("POST", "/auth/v1/sessions/revoke", post(revoke_sessions)),
        ("GET", "/auth/v1/sessions", get(own_sessions)),
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
/// An org where they are only invited is not one of them.
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

/// Records a failure after the answer, off the request path: a known email must not answer
/// later than an unknown one because its failure is written (the timing would tell which
/// emails have accounts). Shutdown waits for these writes.
fn record_failure_later(state: &AppState, user: UserId, source: Source, details: Value) {
    let state_for_task = state.clone();
    state.background.spawn(async move {
        let state = state_for_task;
        if let Err(error) = record_for_user(&state, user, &source, "login.failed", details).await {
            tracing::warn!(error = %error, "could not record a failed login");
        }
    });
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthenticated("invalid_credentials", "invalid email or password")
}

/// Runs argon2 on the hashers (AV-4): a few at once whatever the number of logins.
async fn hashing<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    state.hashers.run(work).await
}

/// Counts one attempt in each of `subjects` before its work (AC-4): refused with 429 when any
/// is used up.
fn throttled<'a>(state: &'a AppState, subjects: &[Subject<'_>]) -> Result<Attempt<'a>, ApiError> {
    state
        .throttle
        .acquire(subjects)
        .map_err(|retry_after_secs| ApiError::RateLimited {
            retry_after_secs,
            message: "too many attempts; retry later".to_owned(),
        })
}

/// The buckets a password attempt for `email` from `address` is counted in.
fn password_subjects(email: &str, address: Option<IpAddr>) -> [Subject<'_>; 4] {
    [
        Subject::AccountAt {
            what: "password",
            name: email,
            address,
        },
        Subject::Account {
            what: "password",
            name: email,
        },
        Subject::Address(address),
        Subject::Network(address),
    ]
}

/// The buckets of a second-factor attempt: a person's codes, from anywhere (whoever reaches
/// this step has their password), and the client address.
fn second_factor_subjects(user: &str, address: Option<IpAddr>) -> [Subject<'_>; 3] {
    [
        Subject::SecondFactor(user),
        Subject::Address(address),
        Subject::Network(address),
    ]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    email: String,
    password: String,
}

#[derive(Debug, Serialize)]
struct SessionView {
    #[serde(skip_serializing_if = "Option::is_none")]
    session_token: Option<String>,
    expires_at: DateTime<Utc>,
    mfa_verified: bool,
}

#[derive(Debug, Serialize)]
struct ChallengeView {
    mfa_challenge: String,
    expires_at: DateTime<Utc>,
}

async fn new_session(
    tx: &mut PersonTx,
    kind: SessionKind,
    mfa_verified: bool,
) -> Result<(Token, DateTime<Utc>), ApiError> {
    let (token_kind, ttl) = match kind {
        SessionKind::Session => {
            // The strictest org's lifetime; `auth_session` holds every use to it after.
            let (_, max_hours) = auth::session_limits(tx).await?;
            (
                TokenKind::Session,
                chrono::Duration::hours(i64::from(max_hours).min(SESSION_MAX_HOURS)),
            )
        }
        SessionKind::MfaChallenge => (
            TokenKind::MfaChallenge,
            chrono::Duration::minutes(CHALLENGE_MINUTES),
        ),
    };
    let token = Token::generate(token_kind)?;
    let expires_at = Utc::now() + ttl;
    let session = Session {
        session_id: SessionId::new(),
        user_id: tx.user(),
        mfa_verified,
        expires_at,
    };
    auth::start_session(tx, kind, &session, &token.hash()).await?;
    Ok((token, expires_at))
}

/// `POST /auth/v1/login`. An unknown email and a wrong password get the same answer after the
/// same work, in the same time (a known email's failure is recorded after the answer); every
/// login makes a new token.
async fn login(
    State(state): State<AppState>,
    ClientSource(source): ClientSource,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Login>,
) -> Result<Response, ApiError> {
    let email = body.email.trim();
    if email.is_empty() || email.len() > MAX_EMAIL_BYTES {
        return Err(ApiError::invalid_request(format!(
            "`email` is 1 to {MAX_EMAIL_BYTES} bytes"
        )));
    }
    let attempt = throttled(&state, &password_subjects(email, source.client_ip))?;

    let user = auth::user_by_email(&state.db, email).await?;
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let password_ok = hashing(&state, move || match stored {
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
            // The attempt stays counted.
            drop(attempt);
            match known {
                Some(user) => {
                    record_failure_later(
                        &state,
                        user.user_id,
                        source,
                        json!({"reason": "password"}),
                    );
                }
                None => tracing::info!("login failed for an unknown email"),
            }
            return Err(invalid_credentials());
        }
    };
    attempt.succeeded();
    if user.mfa_enabled {
        let mut tx = state
            .db
            .begin_person(user.user_id, &source, "login.mfa_challenged")
            .await?;
        let (challenge, expires_at) =
            new_session(&mut tx, SessionKind::MfaChallenge, false).await?;
        tx.commit().await?;
        return Ok(Json(json!(ChallengeView {
            mfa_challenge: challenge.expose().to_owned(),
            expires_at,
        }))
        .into_response());
    }
    let mut tx = state
        .db
        .begin_person(user.user_id, &source, "login.succeeded")
        .await?;
    tx.detail("mfa", false);
    let (token, expires_at) = new_session(&mut tx, SessionKind::Session, false).await?;
    tx.commit().await?;
    Ok(session_answer(&headers, &token, expires_at, false))
}

/// A new session's answer: its token in the body, or, when the client asked for cookies
/// (`x-portcullis-session: cookie`, the console), in an HttpOnly cookie beside its CSRF
/// token, and not in the body, so that no script of the page ever holds it.
fn session_answer(
    headers: &HeaderMap,
    token: &Token,
    expires_at: DateTime<Utc>,
    mfa_verified: bool,
) -> Response {
    let cookie = crate::browser::wants_cookie(headers);
    let view = SessionView {
        session_token: (!cookie).then(|| token.expose().to_owned()),
        expires_at,
        mfa_verified,
    };
    let mut response = Json(view).into_response();
    if cookie {
        crate::browser::issue(response.headers_mut(), token.expose());
    }
    response
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

impl SecondFactor {
    fn name(&self) -> &'static str {
        match self {
            SecondFactor::Totp => "totp",
            SecondFactor::RecoveryCode => "recovery_code",
        }
    }
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
    if !hashing(state, move || password::verify(&secret, &hash)).await? {
        return Ok(None);
    }
    Ok(auth::spend_recovery_code(&state.db, user, &recovery.lookup)
        .await?
        .then_some(SecondFactor::RecoveryCode))
}

/// Checks `code` as the person's second factor, counted in their throttles (AC-4); a wrong one
/// is recorded as `failed` in each of their orgs.
async fn proven_factor(
    state: &AppState,
    user: UserId,
    source: &Source,
    code: &str,
    failed: &'static str,
) -> Result<Option<SecondFactor>, ApiError> {
    let user_name = user.to_string();
    let attempt = throttled(state, &second_factor_subjects(&user_name, source.client_ip))?;
    let Some(factor) = check_second_factor(state, user, code).await? else {
        drop(attempt);
        record_for_user(
            state,
            user,
            source,
            failed,
            json!({"reason": "second_factor"}),
        )
        .await?;
        return Ok(None);
    };
    attempt.succeeded();
    Ok(Some(factor))
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
    headers: HeaderMap,
    JsonBody(body): JsonBody<LoginMfa>,
) -> Result<Response, ApiError> {
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
    let user = pending.session.user_id;
    let Some(factor) = proven_factor(&state, user, &source, &body.code, "login.failed").await?
    else {
        return Err(ApiError::unauthenticated(
            "invalid_mfa_code",
            "invalid code",
        ));
    };
    let mut tx = state
        .db
        .begin_person(user, &source, "login.succeeded")
        .await?;
    tx.detail("mfa", factor.name());
    // A challenge is spent once: a second success with the same challenge loses here.
    if !auth::end_session(&mut tx, &challenge.hash()).await? {
        return Err(ApiError::unauthenticated(
            "invalid_session",
            "unknown or expired challenge",
        ));
    }
    let (token, expires_at) = new_session(&mut tx, SessionKind::Session, true).await?;
    tx.commit().await?;
    Ok(session_answer(&headers, &token, expires_at, true))
}

/// `POST /auth/v1/logout`.
async fn logout(
    State(state): State<AppState>,
    ClientSource(source): ClientSource,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ended = end_this_session(&state, &source, &headers).await;
    let mut response = match ended {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    };
    // A browser's session: its cookies go with it, whether or not it had ended already.
    if !headers.contains_key(axum::http::header::AUTHORIZATION) {
        crate::browser::clear(response.headers_mut());
    }
    Ok(response)
}

async fn end_this_session(
    state: &AppState,
    source: &Source,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let (user, _, _) = session_user(state, headers).await?;
    let token = bearer(headers)?;
    let mut tx = state.db.begin_person(user, source, "session.ended").await?;
    // Ended once: a second logout (or a sign-out everywhere first) records nothing more.
    if auth::end_session(&mut tx, &token.hash()).await? {
        tx.commit().await?;
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct MeView {
    user_id: String,
    email: String,
    mfa_enabled: bool,
    mfa_verified: bool,
    /// The orgs the person belongs to.
    memberships: Vec<MembershipView>,
    /// Open invitations addressed to the person's email: nothing until accepted.
    invitations: Vec<InvitationView>,
}

#[derive(Debug, Serialize)]
struct InvitationView {
    invite_id: String,
    org_id: String,
    name: String,
    role: &'static str,
    expires_at: DateTime<Utc>,
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
            ..
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
    let invitations = auth::invitations_for(&state.db, user)
        .await?
        .into_iter()
        .map(|i| InvitationView {
            invite_id: i.invite_id.to_string(),
            org_id: i.org_id.to_string(),
            name: i.org_name,
            role: i.role.as_str(),
            expires_at: i.expires_at,
        })
        .collect();
    Ok(Json(MeView {
        user_id: user.to_string(),
        email: profile.email,
        mfa_enabled: profile.mfa_enabled,
        mfa_verified,
        memberships,
        invitations,
    }))
}

#[derive(Debug, Serialize)]
struct Enrolment {
    secret: String,
    otpauth_uri: String,
    /// The URI as a QR code (SVG), for an authenticator app's camera: as secret as the rest.
    qr_svg: String,
}

/// `uri` as a QR code drawn in SVG.
fn qr_svg(uri: &str) -> Result<String, ApiError> {
    let code = qrcode::QrCode::new(uri.as_bytes()).map_err(ApiError::internal)?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build())
}

/// `POST /auth/v1/mfa/enroll`: a new pending seed, shown once, sealed at rest.
async fn mfa_enroll(
    State(state): State<AppState>,
    ClientSource(source): ClientSource,
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
    let mut tx = state
        .db
        .begin_person(user, &source, "mfa.enrollment_started")
        .await?;
    tx.detail("method", "totp");
    auth::set_totp_pending(&mut tx, &sealed).await?;
    tx.commit().await?;
    let otpauth_uri = totp.uri();
    Ok(Json(Enrolment {
        secret: totp.secret_base32(),
        qr_svg: qr_svg(&otpauth_uri)?,
        otpauth_uri,
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
    let user_name = user.to_string();
    let attempt = throttled(
        &state,
        &second_factor_subjects(&user_name, source.client_ip),
    )?;
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
        drop(attempt);
        return Err(ApiError::invalid_request(
            "the code does not match; check the device clock",
        ));
    };
    attempt.succeeded();
    let codes: Vec<RecoveryCode> = (0..RECOVERY_CODES)
        .map(|_| RecoveryCode::generate())
        .collect::<Result<_, _>>()?;
    let secrets: Vec<(String, String)> = codes
        .iter()
        .map(|c| (c.lookup.clone(), c.secret.clone()))
        .collect();
    let hashed = hashing(&state, move || {
        secrets
            .into_iter()
            .map(|(lookup, secret)| password::hash(&secret).map(|hash| (lookup, hash)))
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;
    let step = i64::try_from(step).map_err(ApiError::internal)?;
    let mut tx = state.db.begin_person(user, &source, "mfa.enrolled").await?;
    tx.detail("method", "totp");
    if !auth::enable_mfa(&mut tx, step, &hashed).await? {
        return Err(ApiError::Conflict(
            "MFA is already on for this account".to_owned(),
        ));
    }
    auth::verify_session_mfa(&mut tx, session_id).await?;
    tx.commit().await?;
    Ok(Json(RecoveryCodes {
        recovery_codes: codes.iter().map(RecoveryCode::display).collect(),
    }))
}

/// `POST /auth/v1/mfa/remove` `{code}`: the caller turns their own TOTP off with a current
/// code or a recovery code. Refused while an org of theirs needs a second factor of them
/// (AC-4); afterwards no session of theirs counts as verified.
async fn mfa_remove(
    State(state): State<AppState>,
    ClientSource(source): ClientSource,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Confirm>,
) -> Result<Json<Value>, ApiError> {
    let (user, _, _) = session_user(&state, &headers).await?;
    let profile = auth::profile(&state.db, user)
        .await?
        .ok_or_else(invalid_credentials)?;
    if !profile.mfa_enabled {
        return Err(ApiError::Conflict(
            "MFA is not on for this account".to_owned(),
        ));
    }
    let Some(factor) =
        proven_factor(&state, user, &source, &body.code, "mfa.removal_failed").await?
    else {
        return Err(ApiError::invalid_request(
            "the code does not match; send a current code or an unused recovery code",
        ));
    };
    let mut tx = state.db.begin_person(user, &source, "mfa.removed").await?;
    // Read with the rows locked: a promotion or `require_mfa` turned on meanwhile waits.
    let rules = auth::mfa_rules(&mut tx).await?;
    if rules
        .iter()
        .any(|rule| rbac::needs_second_factor(rule.role, rule.require_mfa))
    {
        drop(tx);
        record_for_user(
            &state,
            user,
            &source,
            "mfa.removal_failed",
            json!({"reason": "required"}),
        )
        .await?;
        return Err(ApiError::denied(
            "mfa_required",
            "an organization you belong to requires owners and admins to keep a second factor",
            "second factor",
        ));
    }
    tx.detail("method", factor.name());
    if !auth::remove_mfa(&mut tx).await? {
        return Err(ApiError::Conflict(
            "MFA is not on for this account".to_owned(),
        ));
    }
    tx.commit().await?;
    Ok(Json(json!({"mfa_enabled": false})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptInvite {
    invite_token: String,
    /// A new person's password; a person with an account signs in and sends none.
    password: Option<String>,
}

/// `POST /auth/v1/invites/accept` (AC-6). A new person sends the token and a password, and
/// their account is made; a person who has an account sends the token from their own
/// session, which must be the invited email's. A token never sets or resets an existing
/// account's password.
async fn accept_invite(
    State(state): State<AppState>,
    ClientSource(source): ClientSource,
    headers: HeaderMap,
    JsonBody(body): JsonBody<AcceptInvite>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || ApiError::NotFound {
        code: "not_found",
        message: "unknown, used, revoked or expired invitation".to_owned(),
    };
    let signed_in = headers.contains_key(axum::http::header::AUTHORIZATION)
        || crate::browser::session(&headers).is_some();
    let session = if signed_in {
        match session_principal(&state, &headers).await? {
            Principal::User {
                user_id,
                started_at,
                ..
            } => Some((user_id, started_at)),
            Principal::MasterKey(_) => {
                return Err(ApiError::forbidden(
                    "wrong_key_kind",
                    "this route takes a session token",
                ));
            }
        }
    } else {
        None
    };
    let token = Token::parse(body.invite_token.trim())
        .ok()
        .filter(|t| t.kind() == TokenKind::Invite)
        .ok_or_else(not_found)?;
    let new_password = match (session, body.password) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_request(
                "signed in, accept without a password: a token never sets an account's password",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid_request(
                "`password` is required to accept as a new person; if you have an account, \
                 sign in and accept from that session",
            ));
        }
        (None, Some(password)) => {
            password::check_new_password(&password)
                .map_err(|e| ApiError::invalid_request(e.to_string()))?;
            Some(password)
        }
        (Some(_), None) => None,
    };
    let invite = auth::invite(&state.db, &token.hash())
        .await?
        .ok_or_else(not_found)?;
    let offer = members::Offer {
        invite_id: invite.invite_id,
        email: &invite.email,
        role: invite.role,
    };
    let (user, session_start) = match session {
        Some((user, started_at)) => {
            // The invitation is for an email: another account holding the token gets nothing.
            let profile = auth::profile(&state.db, user)
                .await?
                .ok_or_else(invalid_credentials)?;
            if profile.email.to_lowercase() != invite.email.to_lowercase() {
                return Err(not_found());
            }
            (user, Some(started_at))
        }
        None => (UserId::new(), None),
    };
    let hash = match new_password {
        Some(password) => Some(hashing(&state, move || password::hash(&password)).await??),
        None => None,
    };
    let mut tx = state
        .db
        .begin_write(
            invite.org_id,
            &user_actor(user),
            &source,
            AuditedChange::new("invite.accepted", "user", user),
        )
        .await?;
    // An invitation is only as good as its inviter's right to grant the role, now.
    if let Some(inviter) = invite.invited_by {
        let still = members::role_of(tx.tenant(), inviter).await?;
        if still.is_none_or(|role| rbac::may_grant(role, invite.role).is_err()) {
            return Err(not_found());
        }
    }
    match (&hash, session_start) {
        (Some(hash), _) => members::accept_as_new_person(&mut tx, offer, user, hash).await?,
        (None, Some(started_at)) => {
            members::accept_as_existing_person(&mut tx, offer, user, started_at).await?;
        }
        (None, None) => return Err(ApiError::invalid_request("`password` is required")),
    }
    tx.commit().await?;
    Ok(Json(json!({
        "user_id": user.to_string(),
        "org_id": invite.org_id.to_string(),
        "role": invite.role.as_str(),
    })))
}

#[derive(Debug, Serialize)]
struct OwnSessionView {
    session_id: String,
    created_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    mfa_verified: bool,
    /// The session this request came with.
    current: bool,
}

/// `GET /auth/v1/sessions`: the caller's own live sessions (when each began and was last
/// used), the current one marked; never a token.
async fn own_sessions(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (user, current, _) = session_user(&state, &headers).await?;
    let sessions = auth::own_sessions(&state.db, user).await?;
    let data: Vec<OwnSessionView> = sessions
        .into_iter()
        .map(|s| OwnSessionView {
            current: s.session_id == *current.as_uuid(),
            session_id: s.session_id.to_string(),
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            expires_at: s.expires_at,
            mfa_verified: s.mfa_verified,
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

/// `POST /auth/v1/sessions/revoke`: the caller's own "sign out everywhere", this session too.
async fn revoke_sessions(
    State(state): State<AppState>,
    ClientSource(source): ClientSource,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (user, _, _) = session_user(&state, &headers).await?;
    let mut tx = state
        .db
        .begin_person(user, &source, "sessions.revoked")
        .await?;
    let ended = auth::end_user_sessions(&mut tx).await?;
    tx.detail("ended", ended);
    tx.commit().await?;
    let mut response = Json(json!({"ended": ended})).into_response();
    // This browser's session ended with the others: its cookies go too.
    if !headers.contains_key(axum::http::header::AUTHORIZATION) {
        crate::browser::clear(response.headers_mut());
    }
    Ok(response)
}
