//! AC-1: the whole route x role matrix of the admin plane. The expected minimum roles are
//! written here from API.md, independently of the gateway's own table; every route the router
//! declares must appear, and every refused call must leave the database as it was.

use axum::http::{Method, StatusCode};
use portcullis_core::Role;
use portcullis_gateway::admin;
use serde_json::json;

use crate::support::{Env, Who, prepare, snapshot, snapshot_except, unique};

/// Who API.md lets call each route.
#[derive(Debug, Clone, Copy)]
enum Allowed {
    MasterOnly,
    AnyoneAuthenticated,
    AtLeast(Role),
}

fn documented(method: &str, path: &str) -> Allowed {
    let org = path.strip_prefix("/admin/v1/orgs/{org_id}");
    match (method, org) {
        ("POST", None) => Allowed::MasterOnly,
        ("GET", None) => Allowed::AnyoneAuthenticated,
        (
            "GET",
            Some(
                ""
                | "/members"
                | "/teams"
                | "/keys"
                | "/credentials"
                | "/routes"
                | "/usage"
                | "/prompts"
                | "/prompts/{name}/versions",
            ),
        ) => Allowed::AtLeast(Role::Viewer),
        (
            "POST",
            Some("/keys" | "/keys/{key_id}/rotate" | "/prompts" | "/prompts/{name}/versions"),
        )
        | ("DELETE", Some("/keys/{key_id}")) => Allowed::AtLeast(Role::Member),
        ("PATCH", Some("/settings"))
        | ("POST", Some("/members" | "/teams"))
        | ("PATCH" | "DELETE", Some("/members/{user_id}" | "/teams/{team_id}"))
        | ("DELETE", Some("/members/{user_id}/sessions" | "/invites/{invite_id}"))
        | ("GET", Some("/audit" | "/audit/verify" | "/ledger" | "/logs" | "/logs/{request_id}"))
        | ("POST", Some("/data-subject-deletions"))
        | ("PUT", Some("/prompts/{name}/labels/{label}"))
        | ("POST", Some("/credentials"))
        | ("PUT" | "DELETE", Some("/credentials/{credential_id}" | "/routes/{alias}")) => {
            Allowed::AtLeast(Role::Admin)
        }
        _ => panic!(
            "{method} {path} is not in API.md's matrix: add it here with its documented role"
        ),
    }
}

fn expected_allowed(who: Who, allowed: Allowed) -> bool {
    match (who, allowed) {
        (Who::Nobody | Who::VirtualKey, _) => false,
        (Who::Master, _) => true,
        (_, Allowed::MasterOnly) => false,
        (_, Allowed::AnyoneAuthenticated) => true,
        (person, Allowed::AtLeast(min)) => person.role().is_some_and(|role| role >= min),
    }
}

/// The caller's own key where the caller may create one; otherwise the master's.
fn key_creator(who: Who) -> Who {
    if matches!(who, Who::Owner | Who::Admin | Who::Member) {
        who
    } else {
        Who::Master
    }
}

/// What a refused call may change: its `access.denied` entry, and its session's last use.
const UNMOVED: &[&str] = &["audit_events", "sessions"];

/// The org's `access.denied` entries so far.
async fn denials(env: &Env) -> Vec<portcullis_core::audit::ChainedRecord> {
    let mut tx = env.test.db.begin_tenant(env.org).await.unwrap();
    let filter = portcullis_storage::audit::EventFilter {
        action: Some("access.denied".to_owned()),
        limit: 1000,
        ..Default::default()
    };
    let entries = portcullis_storage::audit::list(&mut tx, &filter)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    entries
}

/// Every refusal of a member is audited (AC-1: a denied call changes nothing but the trail
/// that records it, ASVS 16.3.2).
#[tokio::test]
async fn ac_1_every_admin_route_answers_each_role_as_documented() {
    let env = Env::new_with(|state| state.denials_per_window(10_000)).await;
    let routes = admin::routes();
    assert!(
        routes.len() >= 18,
        "the admin table lost routes: {}",
        routes.len()
    );
    for route in &routes {
        let allowed = documented(route.method, route.path);
        for who in Who::ALL {
            let (path, body) = prepare(&env, route, key_creator(who)).await;
            // The trail records the refusal, and the session its last use; nothing else moves.
            let before = snapshot_except(&env.test, UNMOVED).await;
            let denied_before = denials(&env).await.len();
            let method = Method::from_bytes(route.method.as_bytes()).unwrap();
            let response = env.call(method, &path, who, body).await;
            let context = format!(
                "{} {} as {who:?}: {} {}",
                route.method, route.path, response.status, response.body
            );
            if expected_allowed(who, allowed) {
                assert!(response.status.is_success(), "expected success: {context}");
                continue;
            }
            let expected = match who {
                Who::Nobody => (StatusCode::UNAUTHORIZED, "invalid_api_key"),
                Who::VirtualKey => (StatusCode::FORBIDDEN, "wrong_key_kind"),
                _ => (StatusCode::FORBIDDEN, "permission_denied"),
            };
            assert_eq!(response.status, expected.0, "{context}");
            assert_eq!(response.body["error"]["code"], expected.1, "{context}");
            assert_eq!(
                snapshot_except(&env.test, UNMOVED).await,
                before,
                "a refused call changed the database: {context}"
            );
            let denied = denials(&env).await;
            let in_org = matches!(route.access, portcullis_gateway::guard::RouteAccess::Org(_));
            if who.role().is_some() && in_org {
                assert_eq!(denied.len(), denied_before + 1, "{context}");
                let entry = &denied.last().unwrap().record;
                assert_eq!(entry.actor.id, env.user_ids[&who], "{context}");
                assert_eq!(
                    entry.target_id,
                    format!("{} {}", route.method, route.path),
                    "{context}"
                );
                assert_eq!(entry.details["role"], who.role().unwrap().as_str());
                assert!(entry.details["required"].is_string(), "{context}");
                assert_eq!(entry.source.client_ip.unwrap().to_string(), "203.0.113.50");
            } else {
                assert_eq!(denied.len(), denied_before, "{context}");
            }
        }
    }
}

#[tokio::test]
async fn ac_1_a_member_may_not_rotate_or_revoke_another_persons_key() {
    let env = Env::new().await;
    let key = env
        .call(
            Method::POST,
            &env.org_path("/keys"),
            Who::Admin,
            Some(json!({"name": "admins"})),
        )
        .await;
    let key_id = key.body["key_id"].as_str().unwrap();
    let before = snapshot_except(&env.test, UNMOVED).await;
    for (method, suffix) in [
        (Method::POST, format!("/keys/{key_id}/rotate")),
        (Method::DELETE, format!("/keys/{key_id}")),
    ] {
        let response = env
            .call(method, &env.org_path(&suffix), Who::Member, None)
            .await;
        assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.body);
        assert_eq!(response.body["error"]["code"], "permission_denied");
    }
    assert_eq!(snapshot_except(&env.test, UNMOVED).await, before);
    // The handler's own refusals are in the trail, naming what the member lacked.
    let denied = denials(&env).await;
    assert_eq!(denied.len(), 2);
    assert!(
        denied
            .iter()
            .all(|d| d.record.details["required"] == "key owner")
    );
}

#[tokio::test]
async fn ac_1_nobody_grants_above_their_own_role_and_only_owners_touch_admins() {
    let env = Env::new().await;
    let members = env.org_path("/members");
    for role in ["admin", "owner"] {
        let response = env
            .call(
                Method::POST,
                &members,
                Who::Admin,
                Some(json!({"email": unique("x") + "@example.com", "role": role})),
            )
            .await;
        assert_eq!(
            response.status,
            StatusCode::FORBIDDEN,
            "admin granted {role}"
        );
    }
    let owner_id = env.user_ids[&Who::Owner].clone();
    let admin_id = env.user_ids[&Who::Admin].clone();
    for (method, target) in [
        (Method::PATCH, &owner_id),
        (Method::DELETE, &owner_id),
        (Method::PATCH, &admin_id),
    ] {
        let body = (method == Method::PATCH).then(|| json!({"role": "viewer"}));
        let response = env
            .call(method, &format!("{members}/{target}"), Who::Admin, body)
            .await;
        assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.body);
    }
    // The owner may promote the admin.
    let response = env
        .call(
            Method::PATCH,
            &format!("{members}/{admin_id}"),
            Who::Owner,
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
}

#[tokio::test]
async fn ac_1_the_last_owner_cannot_be_demoted_or_removed() {
    let env = Env::new().await;
    let owner = format!("{}/{}", env.org_path("/members"), env.user_ids[&Who::Owner]);
    let demote = env
        .call(
            Method::PATCH,
            &owner,
            Who::Owner,
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(demote.status, StatusCode::CONFLICT, "{}", demote.body);
    let remove = env.call(Method::DELETE, &owner, Who::Master, None).await;
    assert_eq!(remove.status, StatusCode::CONFLICT, "{}", remove.body);
}

#[tokio::test]
async fn ac_1_a_role_change_or_removal_applies_to_the_very_next_request() {
    let env = Env::new().await;
    let member = format!(
        "{}/{}",
        env.org_path("/members"),
        env.user_ids[&Who::Member]
    );
    let keys = env.org_path("/keys");
    let env = &env;
    let create_key = |session: String| {
        let keys = keys.clone();
        async move {
            env.call_as(
                Method::POST,
                &keys,
                &session,
                Some(json!({"name": unique("k")})),
            )
            .await
            .status
        }
    };
    assert_eq!(create_key(env.member.clone()).await, StatusCode::CREATED);
    let demoted = env
        .call(
            Method::PATCH,
            &member,
            Who::Admin,
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(demoted.status, StatusCode::OK);
    // A lowered role ends the session here (AC-6); signed in again, the person is a viewer.
    assert_eq!(
        create_key(env.member.clone()).await,
        StatusCode::UNAUTHORIZED
    );
    let again = env.login("member@example.com").await;
    assert_eq!(create_key(again.clone()).await, StatusCode::FORBIDDEN);
    let removed = env.call(Method::DELETE, &member, Who::Admin, None).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    let after = env
        .call_as(Method::GET, &env.org_path("/keys"), &again, None)
        .await;
    assert_eq!(
        after.status,
        StatusCode::NOT_FOUND,
        "a removed member must not see the org"
    );
}

#[tokio::test]
async fn ac_1_bodies_with_unknown_fields_are_refused() {
    let env = Env::new().await;
    let before = snapshot(&env.test).await;
    for (path, body) in [
        (
            env.org_path("/keys"),
            json!({"name": "k", "owner_user_id": env.user_ids[&Who::Owner]}),
        ),
        (
            env.org_path("/members"),
            json!({"email": "a@example.com", "role": "viewer", "mfa_enabled": true}),
        ),
        (
            env.org_path("/teams"),
            json!({"name": "t", "org_id": uuid::Uuid::now_v7()}),
        ),
    ] {
        let response = env.call(Method::POST, &path, Who::Owner, Some(body)).await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            response.body
        );
        assert_eq!(response.body["error"]["code"], "invalid_request");
    }
    let response = env
        .send({
            let mut call = crate::support::Call::new(
                Method::POST,
                &env.org_path("/teams"),
                Some(&env.owner),
                None,
            );
            call.headers
                .push(("content-type", "application/json".into()));
            call
        })
        .await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.body
    );
    assert_eq!(snapshot(&env.test).await, before);
}

/// A loop of refusals cannot flood the chain: past the bound, refusals are counted and one
/// summary entry says how many.
#[tokio::test]
async fn ac_1_a_loop_of_refusals_writes_a_bounded_trail_with_a_counted_summary() {
    let env = Env::new().await;
    for _ in 0..35 {
        let response = env
            .call(
                Method::POST,
                &env.org_path("/teams"),
                Who::Viewer,
                Some(json!({"name": unique("t")})),
            )
            .await;
        assert_eq!(response.status, StatusCode::FORBIDDEN);
    }
    let full = denials(&env).await;
    assert_eq!(full.len(), 10, "the bound per actor and minute");
    // The summary is written when the window closes, or at shutdown.
    assert!(
        env.state
            .finish_background(std::time::Duration::from_secs(10))
            .await
    );
    let all = denials(&env).await;
    assert_eq!(all.len(), 11);
    let summary = &all.last().unwrap().record;
    assert_eq!(summary.details["summary"], true);
    assert_eq!(summary.details["suppressed"], 25);
    assert_eq!(summary.actor.id, env.user_ids[&Who::Viewer]);
}
