//! The one guard of the admin plane (AC-1): every admin route is registered with its access
//! rule and goes through here. It authenticates, resolves the caller's role in the org fresh
//! from the database (no cached roles), applies `require_mfa` (AC-4) and the RBAC matrix, and
//! hands the handler an [`OrgCaller`] or [`PlatformCaller`].

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use portcullis_core::audit::{Actor, Source};
use portcullis_core::{OrgId, Role};
use portcullis_policy::rbac::{self, Action};
use portcullis_storage::{AuditedChange, WriteTx, orgs};

use crate::caller::{Principal, admin_principal};
use crate::error::ApiError;
use crate::router::AppState;
use crate::source::source_of;

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
}

impl OrgCaller {
    pub fn actor(&self) -> Actor {
        self.principal.actor()
    }

    /// Opens the audited write for this caller's change.
    pub async fn begin_write(
        &self,
        state: &AppState,
        change: AuditedChange,
    ) -> Result<WriteTx, ApiError> {
        Ok(state
            .db
            .begin_write(self.org, &self.actor(), &self.source, change)
            .await?)
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
    let outcome = match access {
        RouteAccess::Platform { master_only } => platform(&state, &parts, master_only)
            .await
            .map(|caller| parts.extensions.insert(caller))
            .map(drop),
        RouteAccess::Org(action) => {
            let org_param = org_segment(parts.uri.path());
            match org(&state, &parts, org_param, action).await {
                Ok(caller) => {
                    tracing::Span::current().record("org_id", tracing::field::display(caller.org));
                    parts.extensions.insert(caller);
                    Ok(())
                }
                Err(error) => Err(error),
            }
        }
    };
    match outcome {
        Ok(()) => next.run(Request::from_parts(parts, body)).await,
        Err(error) => error.into_response(),
    }
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
    Ok(PlatformCaller {
        principal,
        source: source_of(parts, &state.trusted_proxies),
    })
}

async fn org(
    state: &AppState,
    parts: &axum::http::request::Parts,
    org_param: Option<String>,
    action: Action,
) -> Result<OrgCaller, ApiError> {
    let principal = admin_principal(state, &parts.headers).await?;
    // A malformed org id names no org: the same 404 as another org's id (CF-1).
    let org: OrgId = org_param
        .and_then(|text| text.parse().ok())
        .ok_or_else(ApiError::not_found)?;
    let mut tx = state.db.begin_tenant(org).await?;
    let access = orgs::access(&mut tx, principal.user_id()).await?;
    tx.commit().await?;
    let access = access.ok_or_else(ApiError::not_found)?;
    let role = match &principal {
        Principal::MasterKey(_) => Role::Owner,
        // Not a member: the org does not exist for this person (never 403, CF-1).
        Principal::User { .. } => access.role.ok_or_else(ApiError::not_found)?,
    };
    if let Principal::User {
        mfa_verified: false,
        ..
    } = principal
        && access.require_mfa
        && role.at_least(Role::Admin)
    {
        return Err(ApiError::forbidden(
            "mfa_required",
            "this organization requires owners and admins to sign in with a second factor",
        ));
    }
    rbac::authorize(action, role)?;
    Ok(OrgCaller {
        org,
        role,
        principal,
        source: source_of(parts, &state.trusted_proxies),
    })
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
