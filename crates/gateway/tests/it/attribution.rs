//! AU-1 and AU-2: every mutating admin route, enumerated from the router's own table, writes
//! exactly one audit entry with every attribution field; the client IP honours
//! X-Forwarded-For from a trusted proxy only, on every route alike.

use axum::http::{Method, StatusCode};
use portcullis_core::OrgId;
use portcullis_core::audit::{ActorKind, ChainedRecord};
use portcullis_gateway::admin::{self, AdminRoute};
use portcullis_storage::audit::{self, EventFilter};
use serde_json::json;

use crate::support::{Call, Env, TRUSTED_PEER, UNTRUSTED_PEER, Who, prepare};

async fn entries(env: &Env, org: OrgId) -> Vec<ChainedRecord> {
    let mut tx = env.test.db.begin_tenant(org).await.unwrap();
    let filter = EventFilter {
        limit: 1000,
        ..EventFilter::default()
    };
    let entries = audit::list(&mut tx, &filter).await.unwrap();
    tx.commit().await.unwrap();
    entries
}

/// Platform routes act as the master key, org routes as the owner.
fn actor_for(route: &AdminRoute) -> Who {
    if matches!(
        route.access,
        portcullis_gateway::guard::RouteAccess::Platform { .. }
    ) {
        Who::Master
    } else {
        Who::Owner
    }
}

#[tokio::test]
async fn au_2_every_mutating_route_writes_one_fully_attributed_entry() {
    let env = Env::new().await;
    let mutating: Vec<AdminRoute> = admin::routes()
        .into_iter()
        .filter(AdminRoute::mutating)
        .collect();
    assert!(mutating.len() >= 16, "{mutating:?}");
    for (n, route) in mutating.iter().enumerate() {
        for (peer, forwarded, expected_ip) in [
            (TRUSTED_PEER, "198.51.100.77", "198.51.100.77"),
            (UNTRUSTED_PEER, "198.51.100.77", "203.0.113.50"),
        ] {
            let who = actor_for(route);
            let (path, body) = prepare(&env, route, Who::Owner).await;
            let request_id = format!("au2-{n}-{}", peer[0]);
            let mut call = Call::new(
                Method::from_bytes(route.method.as_bytes()).unwrap(),
                &path,
                env.token(who),
                body,
            );
            call.peer = peer;
            call.headers = vec![
                ("x-request-id", request_id.clone()),
                ("user-agent", "au2-agent/1.0".to_owned()),
                ("x-forwarded-for", forwarded.to_owned()),
            ];
            let started = chrono::Utc::now();
            let response = env.send(call).await;
            let context = format!(
                "{} {}: {} {}",
                route.method, route.path, response.status, response.body
            );
            assert!(response.status.is_success(), "{context}");

            // A new org records its creation in its own chain.
            let org = match response.body["org_id"].as_str() {
                Some(id) if route.path == "/admin/v1/orgs" => id.parse().unwrap(),
                _ => env.org,
            };
            let mine: Vec<ChainedRecord> = entries(&env, org)
                .await
                .into_iter()
                .filter(|e| e.record.source.request_id.as_deref() == Some(request_id.as_str()))
                .collect();
            assert_eq!(mine.len(), 1, "exactly one entry: {context}");
            let record = &mine[0].record;
            let expected_actor = if who == Who::Master {
                ActorKind::MasterKey
            } else {
                ActorKind::User
            };
            assert_eq!(record.actor.kind, expected_actor, "{context}");
            if who == Who::Owner {
                assert_eq!(record.actor.id, env.user_ids[&Who::Owner], "{context}");
            }
            assert!(!record.actor.id.is_empty(), "{context}");
            assert!(
                record.action.contains('.'),
                "{context}: action {}",
                record.action
            );
            assert!(
                !record.target_type.is_empty() && !record.target_id.is_empty(),
                "{context}"
            );
            assert_eq!(
                record.source.client_ip.unwrap().to_string(),
                expected_ip,
                "{context}"
            );
            assert_eq!(
                record.source.user_agent.as_deref(),
                Some("au2-agent/1.0"),
                "{context}"
            );
            assert!(
                record.occurred_at >= started - chrono::Duration::seconds(1),
                "{context}"
            );
            assert_eq!(record.org_id, org, "{context}");
        }
    }
}

#[tokio::test]
async fn au_1_admin_actions_are_recorded_under_their_names() {
    let env = Env::new().await;
    let actions: Vec<String> = entries(&env, env.org)
        .await
        .into_iter()
        .map(|e| e.record.action)
        .collect();
    // Bootstrap, then the harness's invitations, acceptances, logins and one key.
    for expected in [
        "org.created",
        "member.added",
        "master_key.created",
        "invite.accepted",
        "login.succeeded",
        "key.created",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} missing from {actions:?}"
        );
    }
    let members = env.org_path("/members");
    let viewer = env.user_ids[&Who::Viewer].clone();
    env.call(
        Method::PATCH,
        &format!("{members}/{viewer}"),
        Who::Owner,
        Some(json!({"role": "member"})),
    )
    .await;
    env.call(
        Method::DELETE,
        &format!("{members}/{viewer}"),
        Who::Owner,
        None,
    )
    .await;
    env.call(
        Method::PATCH,
        &env.org_path("/settings"),
        Who::Owner,
        Some(json!({"logging_level": "content"})),
    )
    .await;
    let key = env
        .call(
            Method::POST,
            &env.org_path("/keys"),
            Who::Owner,
            Some(json!({"name": "k"})),
        )
        .await;
    let key_id = key.body["key_id"].as_str().unwrap();
    env.call(
        Method::POST,
        &env.org_path(&format!("/keys/{key_id}/rotate")),
        Who::Owner,
        None,
    )
    .await;
    env.call(
        Method::DELETE,
        &env.org_path(&format!("/keys/{key_id}")),
        Who::Owner,
        None,
    )
    .await;
    let bad = env
        .call(
            Method::POST,
            "/auth/v1/login",
            Who::Nobody,
            Some(json!({"email": "owner@example.com", "password": "wrong password!"})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    // A failed login is recorded after its answer.
    crate::support::eventually(|| async {
        (!env.audit("login.failed").await.is_empty()).then_some(())
    })
    .await;
    let entries = entries(&env, env.org).await;
    for expected in [
        "member.role_changed",
        "member.removed",
        "settings.changed",
        "key.rotated",
        "key.revoked",
        "login.failed",
    ] {
        assert!(
            entries.iter().any(|e| e.record.action == expected),
            "{expected} missing"
        );
    }
    let settings = entries
        .iter()
        .find(|e| e.record.action == "settings.changed")
        .unwrap();
    assert_eq!(settings.record.details["logging_level"], "content");
    let role = entries
        .iter()
        .find(|e| e.record.action == "member.role_changed")
        .unwrap();
    assert_eq!(
        (
            role.record.details["from"].as_str(),
            role.record.details["to"].as_str()
        ),
        (Some("viewer"), Some("member"))
    );
    // The whole trail still verifies, through the API as well.
    let verified = env
        .call(
            Method::GET,
            &env.org_path("/audit/verify"),
            Who::Admin,
            None,
        )
        .await;
    assert_eq!(verified.body["ok"], true, "{}", verified.body);
    let page = env
        .call(
            Method::GET,
            &(env.org_path("/audit") + "?limit=2&after_seq=1"),
            Who::Admin,
            None,
        )
        .await;
    assert_eq!(page.body["events"].as_array().unwrap().len(), 2);
    assert_eq!(page.body["events"][0]["seq"], 2);
    assert_eq!(page.body["next_after_seq"], 3);
    let filtered = env
        .call(
            Method::GET,
            &(env.org_path("/audit") + "?action=key.revoked"),
            Who::Admin,
            None,
        )
        .await;
    assert_eq!(filtered.body["events"].as_array().unwrap().len(), 1);
}
