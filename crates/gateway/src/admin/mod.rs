//! The admin plane of API.md. Every route is declared once in [`routes`] with its access rule;
//! the router is built from that table only, so no admin route can skip the guard, and tests
//! enumerate the same table.

mod audit;
mod credentials;
mod keys;
mod logs;
mod members;
mod model_routes;
mod orgs;
mod prompts;
mod spend;
mod teams;

use axum::Router;
use axum::middleware;
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use portcullis_policy::rbac::Action;

use crate::error::ApiError;
use crate::guard::{RouteAccess, guard};
use crate::state::AppState;

/// One admin route: what the tests enumerate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminRoute {
    pub method: &'static str,
    pub path: &'static str,
    pub access: RouteAccess,
}

impl AdminRoute {
    /// Whether the route changes state, and so must write exactly one audit entry (AU-2).
    pub fn mutating(&self) -> bool {
        self.method != "GET"
    }
}

/// A path under the org prefix, as a `'static` literal.
macro_rules! org_path {
    () => {
        "/admin/v1/orgs/{org_id}"
    };
    ($suffix:literal) => {
        concat!("/admin/v1/orgs/{org_id}", $suffix)
    };
}

fn table() -> Vec<(AdminRoute, MethodRouter<AppState>)> {
    use Action::*;
    let platform = |master_only| RouteAccess::Platform { master_only };
    let org = RouteAccess::Org;
    macro_rules! route {
        ($method:literal, $path:expr, $access:expr, $handler:expr) => {
            (
                AdminRoute {
                    method: $method,
                    path: $path,
                    access: $access,
                },
                match $method {
                    "GET" => get($handler),
                    "POST" => post($handler),
                    "PATCH" => patch($handler),
                    "PUT" => put($handler),
                    _ => delete($handler),
                },
            )
        };
    }
    vec![
        route!("POST", "/admin/v1/orgs", platform(true), orgs::create),
        route!("GET", "/admin/v1/orgs", platform(false), orgs::list),
        route!("GET", org_path!(), org(OrgRead), orgs::get),
        route!(
            "PATCH",
            org_path!("/settings"),
            org(SettingsUpdate),
            orgs::update_settings
        ),
        route!(
            "GET",
            org_path!("/members"),
            org(MembersRead),
            members::list
        ),
        route!("POST", org_path!("/members"), org(MembersAdd), members::add),
        route!(
            "PATCH",
            org_path!("/members/{user_id}"),
            org(MembersUpdate),
            members::update
        ),
        route!(
            "DELETE",
            org_path!("/members/{user_id}"),
            org(MembersRemove),
            members::remove
        ),
        route!(
            "DELETE",
            org_path!("/members/{user_id}/sessions"),
            org(MembersEndSessions),
            members::end_sessions
        ),
        route!(
            "DELETE",
            org_path!("/invites/{invite_id}"),
            org(InvitesRevoke),
            members::revoke_invite
        ),
        route!("GET", org_path!("/teams"), org(TeamsRead), teams::list),
        route!("POST", org_path!("/teams"), org(TeamsCreate), teams::create),
        route!(
            "PATCH",
            org_path!("/teams/{team_id}"),
            org(TeamsUpdate),
            teams::update
        ),
        route!(
            "DELETE",
            org_path!("/teams/{team_id}"),
            org(TeamsDelete),
            teams::remove
        ),
        route!("GET", org_path!("/keys"), org(KeysRead), keys::list),
        route!("POST", org_path!("/keys"), org(KeysCreate), keys::create),
        route!(
            "POST",
            org_path!("/keys/{key_id}/rotate"),
            org(KeysRotate),
            keys::rotate
        ),
        route!(
            "DELETE",
            org_path!("/keys/{key_id}"),
            org(KeysRevoke),
            keys::revoke
        ),
        route!(
            "GET",
            org_path!("/credentials"),
            org(CredentialsRead),
            credentials::list
        ),
        route!(
            "POST",
            org_path!("/credentials"),
            org(CredentialsManage),
            credentials::create
        ),
        route!(
            "PUT",
            org_path!("/credentials/{credential_id}"),
            org(CredentialsManage),
            credentials::replace
        ),
        route!(
            "DELETE",
            org_path!("/credentials/{credential_id}"),
            org(CredentialsManage),
            credentials::remove
        ),
        route!(
            "GET",
            org_path!("/routes"),
            org(RoutesRead),
            model_routes::list
        ),
        route!(
            "PUT",
            org_path!("/routes/{alias}"),
            org(RoutesManage),
            model_routes::put
        ),
        route!(
            "DELETE",
            org_path!("/routes/{alias}"),
            org(RoutesManage),
            model_routes::remove
        ),
        route!("GET", org_path!("/audit"), org(AuditRead), audit::list),
        route!(
            "GET",
            org_path!("/audit/verify"),
            org(AuditRead),
            audit::verify
        ),
        route!("GET", org_path!("/usage"), org(UsageRead), spend::usage),
        route!("GET", org_path!("/ledger"), org(LedgerRead), spend::ledger),
        route!("GET", org_path!("/logs"), org(LogsRead), logs::list),
        route!(
            "GET",
            org_path!("/logs/{request_id}"),
            org(LogsRead),
            logs::get
        ),
        route!(
            "POST",
            org_path!("/data-subject-deletions"),
            org(SubjectDelete),
            logs::delete_subject
        ),
        route!(
            "GET",
            org_path!("/prompts"),
            org(PromptsRead),
            prompts::list
        ),
        route!(
            "POST",
            org_path!("/prompts"),
            org(PromptsWrite),
            prompts::create
        ),
        route!(
            "GET",
            org_path!("/prompts/{name}/versions"),
            org(PromptsRead),
            prompts::versions
        ),
        route!(
            "POST",
            org_path!("/prompts/{name}/versions"),
            org(PromptsWrite),
            prompts::add_version
        ),
        route!(
            "PUT",
            org_path!("/prompts/{name}/labels/{label}"),
            org(PromptsDeploy),
            prompts::move_label
        ),
    ]
}

/// A name or label of the API (prompts): 1 to 64 letters, digits, `.`, `_` or `-`.
pub(crate) fn plain_name(field: &str, name: &str) -> Result<(), ApiError> {
    let ok = name
        .as_bytes()
        .first()
        .is_some_and(u8::is_ascii_alphanumeric)
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_request(format!(
            "`{field}` is 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit"
        )))
    }
}

/// A page size: `limit`, else 100; at most 1000.
fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    const DEFAULT_LIMIT: i64 = 100;
    const MAX_LIMIT: i64 = 1000;
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_request(format!(
            "`limit` must be 1 to {MAX_LIMIT}"
        )));
    }
    Ok(limit)
}

/// Every admin route with its access rule, in declaration order.
pub fn routes() -> Vec<AdminRoute> {
    table().into_iter().map(|(route, _)| route).collect()
}

/// The admin router: each route wrapped in the guard with its own access rule.
pub fn router(state: &AppState) -> Router<AppState> {
    table()
        .into_iter()
        .fold(Router::new(), |router, (route, handler)| {
            let access = route.access;
            let guarded = handler.route_layer(middleware::from_fn_with_state(
                state.clone(),
                move |axum::extract::State(state): axum::extract::State<AppState>,
                      request: axum::extract::Request,
                      next: middleware::Next| guard(state, access, request, next),
            ));
            router.route(route.path, guarded)
        })
}

/// This process drops its plans of the org's routes at once; the others hear of the change by
/// notification.
pub(crate) fn routes_changed(state: &AppState, org: portcullis_core::OrgId) {
    state
        .caches
        .apply(&portcullis_storage::dataplane::Change::Routes(org));
}

/// Parses an id from a path segment; a malformed id is a 404 like an absent one.
pub(crate) fn parse_id<T: std::str::FromStr>(text: &str) -> Result<T, ApiError> {
    text.parse().map_err(|_| ApiError::not_found())
}

/// Validates a display name.
pub(crate) fn check_name(name: &str) -> Result<(), ApiError> {
    let length = name.chars().count();
    if name.trim().is_empty() || length > 200 {
        return Err(ApiError::invalid_request(
            "`name` must be 1 to 200 characters",
        ));
    }
    Ok(())
}
