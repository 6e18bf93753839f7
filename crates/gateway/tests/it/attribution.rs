//! AU-1 and AU-2: every mutating admin and auth route, enumerated from the routers' own tables,
//! writes exactly one audit entry under the action this file's table names for it, with every
//! attribution field; the client IP honours X-Forwarded-For from a trusted proxy only, on every
//! route alike. A new route without a row here fails the test.

use axum::http::{Method, StatusCode};
use portcullis_core::OrgId;
use portcullis_core::audit::{ActorKind, ChainedRecord};
use portcullis_gateway::admin::{self, AdminRoute};
use portcullis_storage::audit::{self, EventFilter};
use serde_json::{Value, json};

use crate::support::{
    Call, Env, PASSWORD, TRUSTED_PEER, UNTRUSTED_PEER, Who, enrol, now, prepare, unique,
};

/// Every mutating route and the one action it records (AU-1's list, by route).
const ACTIONS: &[(&str, &str, &str)] = &[
    ("POST", "/admin/v1/orgs", "org.created"),
    (
        "PATCH",
        "/admin/v1/orgs/{org_id}/settings",
        "settings.changed",
    ),
    ("POST", "/admin/v1/orgs/{org_id}/members", "member.invited"),
    (
        "PATCH",
        "/admin/v1/orgs/{org_id}/members/{user_id}",
        "member.role_changed",
    ),
    (
        "DELETE",
        "/admin/v1/orgs/{org_id}/members/{user_id}",
        "member.removed",
    ),
    (
        "DELETE",
        "/admin/v1/orgs/{org_id}/members/{user_id}/sessions",
        "member.sessions_ended",
    ),
    (
        "DELETE",
        "/admin/v1/orgs/{org_id}/invites/{invite_id}",
        "invite.revoked",
    ),
    ("POST", "/admin/v1/orgs/{org_id}/teams", "team.created"),
    (
        "PATCH",
        "/admin/v1/orgs/{org_id}/teams/{team_id}",
        "team.updated",
    ),
    (
        "DELETE",
        "/admin/v1/orgs/{org_id}/teams/{team_id}",
        "team.deleted",
    ),
    ("POST", "/admin/v1/orgs/{org_id}/keys", "key.created"),
    (
        "POST",
        "/admin/v1/orgs/{org_id}/keys/{key_id}/rotate",
        "key.rotated",
    ),
    (
        "DELETE",
        "/admin/v1/orgs/{org_id}/keys/{key_id}",
        "key.revoked",
    ),
    (
        "POST",
        "/admin/v1/orgs/{org_id}/credentials",
        "credential.added",
    ),
    (
        "PUT",
        "/admin/v1/orgs/{org_id}/credentials/{credential_id}",
        "credential.rotated",
    ),
    (
        "DELETE",
        "/admin/v1/orgs/{org_id}/credentials/{credential_id}",
        "credential.removed",
    ),
    (
        "PUT",
        "/admin/v1/orgs/{org_id}/routes/{alias}",
        "route.changed",
    ),
    (
        "DELETE",
        "/admin/v1/orgs/{org_id}/routes/{alias}",
        "route.removed",
    ),
    (
        "POST",
        "/admin/v1/orgs/{org_id}/data-subject-deletions",
        "data_subject.deleted",
    ),
    ("POST", "/admin/v1/orgs/{org_id}/prompts", "prompt.created"),
    (
        "POST",
        "/admin/v1/orgs/{org_id}/prompts/{name}/versions",
        "prompt.version_created",
    ),
    (
        "PUT",
        "/admin/v1/orgs/{org_id}/prompts/{name}/labels/{label}",
        "prompt.label_moved",
    ),
    ("POST", "/auth/v1/login", "login.succeeded"),
    ("POST", "/auth/v1/login/mfa", "login.succeeded"),
    ("POST", "/auth/v1/logout", "session.ended"),
    ("POST", "/auth/v1/mfa/enroll", "mfa.enrollment_started"),
    ("POST", "/auth/v1/mfa/confirm", "mfa.enrolled"),
    ("POST", "/auth/v1/mfa/remove", "mfa.removed"),
    ("POST", "/auth/v1/invites/accept", "invite.accepted"),
    ("POST", "/auth/v1/sessions/revoke", "sessions.revoked"),
];

/// The action `method path` records; a route missing from [`ACTIONS`] fails here.
fn action_of(method: &str, path: &str) -> &'static str {
    ACTIONS
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|(_, _, action)| *action)
        .unwrap_or_else(|| panic!("{method} {path} changes state and is not in ACTIONS"))
}

/// Every mutating auth route with the action it records, and the password login of a person
/// with MFA (its first step, which records a challenge): (method, path, with MFA, action).
fn auth_cases() -> Vec<(&'static str, &'static str, bool, &'static str)> {
    let mut cases: Vec<_> = portcullis_gateway::authn::routes()
        .into_iter()
        .filter(|(method, _)| *method != "GET")
        .map(|(method, path)| (method, path, false, action_of(method, path)))
        .collect();
    cases.push(("POST", "/auth/v1/login", true, "login.mfa_challenged"));
    cases
}

/// A request to an auth route, made ready by a new person of the org (with TOTP on when
/// `mfa`): (session token, body, the person's id when known before the call).
async fn prepare_auth(
    env: &Env,
    path: &str,
    mfa: bool,
) -> (Option<String>, Option<Value>, Option<String>) {
    let email = format!("{}@example.com", unique("au2"));
    if path == "/auth/v1/invites/accept" {
        let invite = env.invite(env.org, &email, "viewer").await;
        return (
            None,
            Some(json!({"invite_token": invite, "password": PASSWORD})),
            None,
        );
    }
    let (user_id, session) = env.add_person(env.org, &email, "viewer").await;
    if mfa {
        enrol(env, &session, &email).await;
    }
    let (token, body) = match path {
        "/auth/v1/login" => (None, Some(json!({"email": email, "password": PASSWORD}))),
        "/auth/v1/login/mfa" => {
            let (totp, _) = enrol(env, &session, &email).await;
            let login = env
                .call(
                    Method::POST,
                    "/auth/v1/login",
                    Who::Nobody,
                    Some(json!({"email": email, "password": PASSWORD})),
                )
                .await;
            let challenge = login.body["mfa_challenge"].as_str().unwrap().to_owned();
            (
                None,
                Some(json!({"mfa_challenge": challenge, "code": totp.code_at(now() + 30)})),
            )
        }
        "/auth/v1/mfa/confirm" => {
            let enrolment = env
                .call_as(Method::POST, "/auth/v1/mfa/enroll", &session, None)
                .await;
            let secret = enrolment.body["secret"].as_str().unwrap();
            let totp = portcullis_core::mfa::Totp::from_base32(secret, &email).unwrap();
            (Some(session), Some(json!({"code": totp.code_at(now())})))
        }
        "/auth/v1/mfa/remove" => {
            let (totp, _) = enrol(env, &session, &email).await;
            (
                Some(session),
                Some(json!({"code": totp.code_at(now() + 30)})),
            )
        }
        _ => (Some(session), None),
    };
    (token, body, Some(user_id))
}

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
    // Every row of the table is a route that exists.
    let auth = portcullis_gateway::authn::routes();
    for (method, path, _) in ACTIONS {
        assert!(
            mutating
                .iter()
                .any(|r| r.method == *method && r.path == *path)
                || auth.contains(&(*method, *path)),
            "ACTIONS names {method} {path}, which is no route"
        );
    }
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
            assert_eq!(
                record.action,
                action_of(route.method, route.path),
                "{context}"
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

/// The auth routes are people's own actions: each records one entry under its name in the
/// person's org, attributed like every admin route.
#[tokio::test]
async fn au_2_every_mutating_auth_route_writes_one_fully_attributed_entry() {
    let env = Env::new().await;
    let cases = auth_cases();
    assert!(cases.len() >= 9, "{cases:?}");
    for (n, (method, route_path, mfa, expected_action)) in cases.into_iter().enumerate() {
        for (peer, expected_ip) in [
            (TRUSTED_PEER, "198.51.100.77"),
            (UNTRUSTED_PEER, "203.0.113.50"),
        ] {
            let (token, body, user_id) = prepare_auth(&env, route_path, mfa).await;
            let request_id = format!("au2-auth-{n}-{}", peer[0]);
            let mut call = Call::new(
                Method::from_bytes(method.as_bytes()).unwrap(),
                route_path,
                token.as_deref(),
                body,
            );
            call.peer = peer;
            call.headers = vec![
                ("x-request-id", request_id.clone()),
                ("user-agent", "au2-agent/1.0".to_owned()),
                ("x-forwarded-for", "198.51.100.77".to_owned()),
            ];
            let started = chrono::Utc::now();
            let response = env.send(call).await;
            let context = format!(
                "{method} {route_path} (MFA {mfa}): {} {}",
                response.status, response.body
            );
            assert!(response.status.is_success(), "{context}");
            let user_id = user_id
                .or_else(|| response.body["user_id"].as_str().map(str::to_owned))
                .expect("the person's id");
            let mine: Vec<ChainedRecord> = entries(&env, env.org)
                .await
                .into_iter()
                .filter(|e| e.record.source.request_id.as_deref() == Some(request_id.as_str()))
                .collect();
            assert_eq!(mine.len(), 1, "exactly one entry: {context}");
            let record = &mine[0].record;
            assert_eq!(record.action, expected_action, "{context}");
            assert_eq!(record.actor.kind, ActorKind::User, "{context}");
            assert_eq!(record.actor.id, user_id, "{context}");
            assert_eq!(
                (record.target_type.as_str(), record.target_id.as_str()),
                ("user", user_id.as_str()),
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

/// Every row of every table, but the columns a refused call may still move (a session's last
/// use, a claimed TOTP step).
async fn state_of(env: &Env) -> Vec<(String, String)> {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(env.test.admin_url())
        .await
        .unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "select relname::text from pg_class
         where relnamespace = 'public'::regnamespace and relkind in ('r', 'p') order by 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut rows = Vec::new();
    for table in tables {
        let digest: String = sqlx::query_scalar(&format!(
            "select md5(coalesce(string_agg(r, '|' order by r), '')) from
                 (select (to_jsonb(t) - array['last_seen_at', 'totp_last_step'])::text r
                  from {table} t) s"
        ))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        rows.push((table, digest));
    }
    rows
}

/// Makes every audit append fail, as a full disk or a broken trigger would, or lets them
/// through again.
async fn audit_store_fails(env: &Env, failing: bool) {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(env.test.admin_url())
        .await
        .unwrap();
    let statements: &[&str] = if failing {
        &[
            "create or replace function au3_refuse() returns trigger language plpgsql
                 as $$ begin raise exception 'the audit store is unavailable'; end $$",
            "create trigger au3_refuse before insert on audit_events
                 for each row execute function au3_refuse()",
        ]
    } else {
        &["drop trigger au3_refuse on audit_events"]
    };
    for statement in statements {
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }
}

/// AU-3: a valid change whose audit entry cannot be written does not commit, on any mutating
/// admin or auth route: the call fails and every table is as it was.
#[tokio::test]
async fn au_3_no_route_commits_a_change_whose_audit_entry_cannot_be_written() {
    let env = Env::new().await;
    let admin_routes: Vec<AdminRoute> = admin::routes()
        .into_iter()
        .filter(AdminRoute::mutating)
        .collect();
    let auth_routes = auth_cases();
    let mut tried = 0;
    for route in &admin_routes {
        let (path, body) = prepare(&env, route, Who::Owner).await;
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        let before = state_of(&env).await;
        audit_store_fails(&env, true).await;
        let response = env
            .call_as(method, &path, env.token(actor_for(route)).unwrap(), body)
            .await;
        audit_store_fails(&env, false).await;
        assert_eq!(
            response.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{} {}: {}",
            route.method,
            route.path,
            response.body
        );
        assert_eq!(
            state_of(&env).await,
            before,
            "{} {} committed without its audit entry",
            route.method,
            route.path
        );
        tried += 1;
    }
    for (method, path, mfa, _) in &auth_routes {
        let (token, body, _) = prepare_auth(&env, path, *mfa).await;
        let before = state_of(&env).await;
        audit_store_fails(&env, true).await;
        let response = env
            .send(Call::new(
                Method::from_bytes(method.as_bytes()).unwrap(),
                path,
                token.as_deref(),
                body,
            ))
            .await;
        audit_store_fails(&env, false).await;
        assert_eq!(
            response.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{method} {path}: {}",
            response.body
        );
        assert_eq!(
            state_of(&env).await,
            before,
            "{method} {path} committed without its audit entry"
        );
        tried += 1;
    }
    assert_eq!(tried, admin_routes.len() + auth_routes.len());
}

/// A person in two orgs: each of their own account's actions is recorded once in each org's
/// chain, attributed to them, and both chains still verify.
#[tokio::test]
async fn au_2_a_person_in_two_orgs_has_each_action_recorded_once_in_each() {
    let env = Env::new().await;
    let other = env
        .call(
            Method::POST,
            "/admin/v1/orgs",
            Who::Master,
            Some(json!({"name": "Second"})),
        )
        .await;
    let other: OrgId = other.body["org_id"].as_str().unwrap().parse().unwrap();
    let email = "both@example.com";
    let (user_id, _) = env.add_person(env.org, email, "member").await;
    let invite = env.invite(other, email, "viewer").await;
    let session = env.login(email).await;
    let joined = env
        .call_as(
            Method::POST,
            "/auth/v1/invites/accept",
            &session,
            Some(json!({"invite_token": invite})),
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.body);
    let steps: [(&str, &str, Option<Value>, &str); 3] = [
        (
            "/auth/v1/login",
            "login.succeeded",
            Some(json!({"email": email, "password": PASSWORD})),
            "",
        ),
        (
            "/auth/v1/mfa/enroll",
            "mfa.enrollment_started",
            None,
            "session",
        ),
        ("/auth/v1/logout", "session.ended", None, "session"),
    ];
    for (n, (path, action, body, auth)) in steps.into_iter().enumerate() {
        let request_id = format!("two-orgs-{n}");
        let mut call = Call::new(
            Method::POST,
            path,
            (auth == "session").then_some(session.as_str()),
            body,
        );
        call.headers = vec![("x-request-id", request_id.clone())];
        let response = env.send(call).await;
        assert!(response.status.is_success(), "{path}: {}", response.body);
        for org in [env.org, other] {
            let mine: Vec<ChainedRecord> = entries(&env, org)
                .await
                .into_iter()
                .filter(|e| e.record.source.request_id.as_deref() == Some(request_id.as_str()))
                .collect();
            assert_eq!(mine.len(), 1, "{path} in {org}");
            assert_eq!(mine[0].record.action, action, "{path} in {org}");
            assert_eq!(mine[0].record.actor.id, user_id, "{path} in {org}");
            assert_eq!(mine[0].record.org_id, org, "{path} in {org}");
        }
    }
    for org in [env.org, other] {
        audit::verify(&env.test.db, org, None).await.unwrap();
    }
}
