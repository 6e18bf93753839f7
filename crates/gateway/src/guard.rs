//! The one guard of the admin plane (AC-1): every admin route is registered with its access
//! rule and goes through here. It authenticates, resolves the caller's membership in the org
//! fresh from the database (no cached roles; an org may have ended the session, AC-6), applies
//! `require_mfa` (AC-4) and the RBAC matrix, hands the handler an [`OrgCaller`] or
//! [`PlatformCaller`], and records a member's refusal, its own or the handler's, as
//! `access.denied`.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use portcullis_core::audit::{Actor, Source};
use portcullis_core::{OrgId, Role};
use portcullis_policy::rbac::{self, Action};
use portcullis_storage::{AuditedChange, WriteTx, members, orgs};

use crate::caller::{Principal, admin_principal, touch};
use crate::denials::{self, Denial};
use crate::error::{ApiError, Refused};
use crate::source::source_of;
use crate::state::AppState;

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAccess {
    /// Platform routes outside any org; `master_only` refuses sessions.
    Platform { master_only: bool },
    /// Org-scoped routes under `/admin/v1/orgs/{org_id}`, by RBAC action.
    Org(Action),
}

/// The caller of an org-scoped route, as the guard established it.
#[derive(Debug, Clone)]
pub struct OrgCaller {
    pub org: OrgId,
    pub role: Role,
    pub principal: Principal,
    pub source: Source,
    /// The org's `require_mfa`, as read with the caller's role.
    pub require_mfa: bool,
}

impl OrgCaller {
    pub fn actor(&self) -> Actor {
        self.principal.actor()
    }

    /// Opens the audited write for this caller's change. A person's membership is read
    /// again inside it and held (`FOR SHARE`) until it commits: a member removed or changed
    /// after the guard let them through cannot still write with the old role.
    pub async fn begin_write(
        &self,
        state: &AppState,
        change: AuditedChange,
    ) -> Result<WriteTx, ApiError> {
        let mut tx = state
            .db
            .begin_write(self.org, &self.actor(), &self.source, change)
            .await?;
        if let Some(user) = self.principal.user_id() {
            match members::lock_role_of(&mut tx, user).await? {
                Some(role) if role == self.role => {}
                Some(_) => {
                    return Err(ApiError::Conflict(
                        "your role in this organization changed: retry".to_owned(),
                    ));
                }
                None => return Err(ApiError::not_found()),
            }
        }
        Ok(tx)
    }
}

/// The caller of a platform route.
#[derive(Debug, Clone)]
pub struct PlatformCaller {
    pub principal: Principal,
    pub source: Source,
}

pub async fn guard(state: AppState, access: RouteAccess, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    match access {
        RouteAccess::Platform { master_only } => {
            match platform(&state, &parts, master_only).await {
                Ok(caller) => {
                    parts.extensions.insert(caller);
                    next.run(Request::from_parts(parts, body)).await
                }
                Err(error) => error.into_response(),
            }
        }
        RouteAccess::Org(action) => {
            let caller = match org_caller(&state, &parts).await {
                Ok(caller) => caller,
                Err(error) => return error.into_response(),
            };
            tracing::Span::current().record("org_id", tracing::field::display(caller.org));
            let route = RouteOf {
                method: parts.method.clone(),
                path: parts.extensions.get::<MatchedPath>().cloned(),
            };
            if let Err(error) = permitted(&caller, action) {
                let response = error.into_response();
                refused(&state, &caller, &route, refusal_of(&response)).await;
                return response;
            }
            parts.extensions.insert(caller.clone());
            let response = next.run(Request::from_parts(parts, body)).await;
            // A handler's own refusal (an owner rule, another person's key) is audited too.
            refused(&state, &caller, &route, refusal_of(&response)).await;
            response
        }
    }
}

/// The matched route: what an `access.denied` entry names (the template, never the raw path).
struct RouteOf {
    method: axum::http::Method,
    path: Option<MatchedPath>,
}

fn refusal_of(response: &Response) -> Option<Refused> {
    response.extensions().get::<Refused>().copied()
}

/// Records a 403 of a member as `access.denied` in the org it was aimed at (bounded per actor).
async fn refused(state: &AppState, caller: &OrgCaller, route: &RouteOf, refusal: Option<Refused>) {
    let Some(refusal) = refusal else {
        return;
    };
    let denial = Denial {
        org: caller.org,
        actor: caller.actor(),
        source: caller.source.clone(),
        route: format!(
            "{} {}",
            route.method,
            route.path.as_ref().map_or("", MatchedPath::as_str)
        ),
        code: refusal.code,
        required: refusal.required,
        role: caller.role.as_str(),
    };
    denials::record(state, denial).await;
}

async fn platform(
    state: &AppState,
    parts: &axum::http::request::Parts,
    master_only: bool,
) -> Result<PlatformCaller, ApiError> {
    let principal = admin_principal(state, &parts.headers).await?;
    if master_only && !matches!(principal, Principal::MasterKey(_)) {
        return Err(ApiError::forbidden(
            "permission_denied",
            "only the master key may do this",
        ));
    }
    touch(state, &principal).await?;
    Ok(PlatformCaller {
        principal,
        source: source_of(parts, &state.trusted_proxies),
    })
}

/// Who calls in the path's org: the master key (acting as an owner), or a member whose
/// session the org has not ended. Anyone else finds no such org (404, never 403: CF-1); an
/// invitation is not a membership.
async fn org_caller(
    state: &AppState,
    parts: &axum::http::request::Parts,
) -> Result<OrgCaller, ApiError> {
    let principal = admin_principal(state, &parts.headers).await?;
    // A malformed org id names no org: the same 404 as another org's id (CF-1).
    let org: OrgId = org_segment(parts.uri.path())
        .and_then(|text| text.parse().ok())
        .ok_or_else(ApiError::not_found)?;
    let mut tx = state.db.begin_tenant(org).await?;
    let access = orgs::access(&mut tx, principal.user_id()).await?;
    tx.commit().await?;
    let access = access.ok_or_else(ApiError::not_found)?;
    let role = match &principal {
        Principal::MasterKey(_) => Role::Owner,
        Principal::User {
            started_at,
            last_seen_at,
            ..
        } => {
            let membership = access.membership.ok_or_else(ApiError::not_found)?;
            let now = Utc::now();
            let ended = membership
                .sessions_valid_after
                .is_some_and(|after| *started_at < after);
            // The org's own limits, here only: its settings end no session elsewhere.
            let idle = *last_seen_at
                <= now - chrono::Duration::minutes(i64::from(access.session_idle_minutes));
            let old =
                *started_at <= now - chrono::Duration::hours(i64::from(access.session_max_hours));
            if ended || idle || old {
                return Err(ApiError::unauthenticated(
                    "invalid_session",
                    "this organization ended the session, or it timed out here: sign in again",
                ));
            }
            membership.role
        }
    };
    touch(state, &principal).await?;
    Ok(OrgCaller {
        org,
        role,
        principal,
        source: source_of(parts, &state.trusted_proxies),
        require_mfa: access.require_mfa,
    })
}

/// The org's MFA rule (AC-4), then the RBAC matrix (AC-1).
fn permitted(caller: &OrgCaller, action: Action) -> Result<(), ApiError> {
    if let Principal::User {
        mfa_verified: false,
        ..
    } = caller.principal
        && rbac::needs_second_factor(caller.role, caller.require_mfa)
    {
        return Err(ApiError::denied(
            "mfa_required",
            "this organization requires owners and admins to sign in with a second factor",
            "second factor",
        ));
    }
    rbac::authorize(action, caller.role)?;
    Ok(())
}

/// The `{org_id}` segment of `/admin/v1/orgs/{org_id}/...`: the path the router matched.
fn org_segment(path: &str) -> Option<String> {
    let mut segments = path.split('/').skip(1);
    match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some("admin"), Some("v1"), Some("orgs"), Some(org)) => Some(org.to_owned()),
        _ => None,
    }
}
