//! AC-6 and CF-1: joining an org takes the person's consent (an invitation of one org opens
//! nothing in another, and the add answer says nothing of the person's account), access ends
//! with membership (keys and sessions, on every replica), and sessions time out.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use portcullis_gateway::admin;
use portcullis_gateway::dataplane::Caches;
use portcullis_gateway::guard::RouteAccess;
use serde_json::{Value, json};

use crate::support::{Env, PASSWORD, Replica, Who, body_for, unique, within};

fn keys_of(body: &Value) -> BTreeSet<String> {
    body.as_object().unwrap().keys().cloned().collect()
}

/// An org made by the master key: its id.
async fn new_org(env: &Env) -> portcullis_core::OrgId {
    let created = env
        .call(
            Method::POST,
            "/admin/v1/orgs",
            Who::Master,
            Some(json!({"name": unique("org")})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    created.body["org_id"].as_str().unwrap().parse().unwrap()
}

async fn add(env: &Env, org: portcullis_core::OrgId, email: &str, role: &str) -> Value {
    let added = env
        .call(
            Method::POST,
            &format!("/admin/v1/orgs/{org}/members"),
            Who::Master,
            Some(json!({"email": email, "role": role})),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    added.body
}

#[tokio::test]
async fn cf_1_an_invite_from_one_org_opens_nothing_in_another() {
    let env = Env::new().await;
    // Org A's admin invites a new email and, holding the token, sets the password: the
    // account is theirs.
    let org_a = new_org(&env).await;
    let victim = unique("victim") + "@example.com";
    let a_token = add(&env, org_a, &victim, "viewer").await["invite_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let accepted = env
        .call(
            Method::POST,
            "/auth/v1/invites/accept",
            Who::Nobody,
            Some(json!({"invite_token": a_token, "password": PASSWORD})),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);

    // Org B adds the same email, and a new one: the answers have the same shape, and say
    // nothing of an account.
    let org_b = new_org(&env).await;
    let existing = add(&env, org_b, &victim, "admin").await;
    let fresh = add(&env, org_b, &(unique("fresh") + "@example.com"), "admin").await;
    assert_eq!(keys_of(&existing), keys_of(&fresh));
    for field in ["user_id", "invited", "mfa_enabled", "password", "account"] {
        assert!(existing.get(field).is_none(), "the answer tells {field}");
    }
    assert_eq!(existing["status"], "pending");

    // The attacker's session opens nothing of B: 404 on every org route of B.
    let session = env.login(&victim).await;
    for route in admin::routes()
        .into_iter()
        .filter(|r| matches!(r.access, RouteAccess::Org(_)))
    {
        let path = route
            .path
            .replace("{org_id}", &org_b.to_string())
            .replace("{user_id}", &uuid::Uuid::now_v7().to_string())
            .replace("{team_id}", &uuid::Uuid::now_v7().to_string())
            .replace("{key_id}", &uuid::Uuid::now_v7().to_string())
            .replace("{credential_id}", &uuid::Uuid::now_v7().to_string())
            .replace("{invite_id}", existing["invite_id"].as_str().unwrap())
            .replace("{alias}", "chat")
            .replace("{name}", "prompt")
            .replace("{label}", "production")
            .replace("{request_id}", "req");
        assert!(!path.contains('{'), "{path}: a parameter left unfilled");
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        let response = env
            .call_as(method, &path, &session, body_for(route.method, route.path))
            .await;
        assert_eq!(
            response.status,
            StatusCode::NOT_FOUND,
            "{} {path}: {}",
            route.method,
            response.body
        );
    }
    let orgs = env
        .call_as(Method::GET, "/admin/v1/orgs", &session, None)
        .await;
    assert!(!orgs.body.to_string().contains(&org_b.to_string()));

    // B's token never sets the existing account's password.
    let b_token = existing["invite_token"].as_str().unwrap();
    let takeover = env
        .call(
            Method::POST,
            "/auth/v1/invites/accept",
            Who::Nobody,
            Some(json!({"invite_token": b_token, "password": "another passphrase!"})),
        )
        .await;
    assert_eq!(takeover.status, StatusCode::CONFLICT, "{}", takeover.body);
    // Another account's session holding B's token gets nothing either.
    let accepted = env
        .call(
            Method::POST,
            "/auth/v1/invites/accept",
            Who::Viewer,
            Some(json!({"invite_token": b_token})),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::NOT_FOUND, "{}", accepted.body);

    // Logins while the membership is pending leave no trace in B.
    env.login(&victim).await;
    let wrong = env
        .call(
            Method::POST,
            "/auth/v1/login",
            Who::Nobody,
            Some(json!({"email": victim, "password": "not the passphrase"})),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    crate::support::eventually(|| async {
        (!env.audit_in(org_a, "login.failed").await.is_empty()).then_some(())
    })
    .await;
    for action in ["login.succeeded", "login.failed"] {
        assert!(
            env.audit_in(org_b, action).await.is_empty(),
            "{action} reached an org the person never joined"
        );
    }

    // `/me` lists B's invitation apart from the memberships.
    let me = env
        .call_as(Method::GET, "/auth/v1/me", &session, None)
        .await;
    let memberships = me.body["memberships"].to_string();
    assert!(!memberships.contains(&org_b.to_string()));
    assert_eq!(me.body["invitations"][0]["org_id"], org_b.to_string());
    assert_eq!(me.body["invitations"][0]["role"], "admin");

    // The person joins B by accepting B's token from their own session.
    let joined = env
        .call_as(
            Method::POST,
            "/auth/v1/invites/accept",
            &session,
            Some(json!({"invite_token": b_token})),
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.body);
    let org = env
        .call_as(
            Method::GET,
            &format!("/admin/v1/orgs/{org_b}"),
            &session,
            None,
        )
        .await;
    assert_eq!(org.status, StatusCode::OK, "{}", org.body);
    assert_eq!(env.audit_in(org_b, "invite.accepted").await.len(), 1);
    // The token is spent.
    let again = env
        .call_as(
            Method::POST,
            "/auth/v1/invites/accept",
            &session,
            Some(json!({"invite_token": b_token})),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn ac_6_invitations_are_listed_revoked_expired_and_audited() {
    let env = Env::new().await;
    let email = unique("guest") + "@example.com";
    let added = add(&env, env.org, &email, "member").await;
    let listed = env
        .call(Method::GET, &env.org_path("/members"), Who::Admin, None)
        .await;
    let entries = listed.body["data"].as_array().unwrap();
    let pending: Vec<&Value> = entries
        .iter()
        .filter(|m| m["status"] == "pending")
        .collect();
    assert_eq!(pending.len(), 1, "{}", listed.body);
    assert_eq!(pending[0]["email"], email);
    assert!(
        pending[0].get("invite_token").is_none(),
        "the token is shown once"
    );
    assert!(entries.iter().any(|m| m["status"] == "active"));

    // Inviting again replaces the open invitation: the first token stops working.
    let again = add(&env, env.org, &email, "member").await;
    let first = env
        .call(
            Method::POST,
            "/auth/v1/invites/accept",
            Who::Nobody,
            Some(json!({"invite_token": added["invite_token"], "password": PASSWORD})),
        )
        .await;
    assert_eq!(first.status, StatusCode::NOT_FOUND, "{}", first.body);

    // An admin revokes it: the second token stops too, and both steps are in the trail.
    let revoke = env
        .call(
            Method::DELETE,
            &env.org_path(&format!(
                "/invites/{}",
                again["invite_id"].as_str().unwrap()
            )),
            Who::Admin,
            None,
        )
        .await;
    assert_eq!(revoke.status, StatusCode::NO_CONTENT, "{}", revoke.body);
    let second = env
        .call(
            Method::POST,
            "/auth/v1/invites/accept",
            Who::Nobody,
            Some(json!({"invite_token": again["invite_token"], "password": PASSWORD})),
        )
        .await;
    assert_eq!(second.status, StatusCode::NOT_FOUND);
    let invited = env.audit("member.invited").await;
    let mine: Vec<_> = invited
        .iter()
        .filter(|e| e.record.details["email"] == email.as_str())
        .collect();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[1].record.details["replaces"], added["invite_id"]);
    assert_eq!(env.audit("invite.revoked").await.len(), 1);

    // An invitation past the org's TTL opens nothing.
    let settings = env
        .call(
            Method::PATCH,
            &env.org_path("/settings"),
            Who::Admin,
            Some(json!({"invite_ttl_days": 1})),
        )
        .await;
    assert_eq!(settings.status, StatusCode::OK, "{}", settings.body);
    let late = add(&env, env.org, &(unique("late") + "@example.com"), "viewer").await;
    assert!(
        late["expires_at"].as_str().unwrap()
            < (chrono::Utc::now() + chrono::Duration::hours(25))
                .to_rfc3339()
                .as_str()
    );
    env.test
        .as_superuser(&format!(
            "update invites set expires_at = now() - interval '1 second' where invite_id = '{}'",
            late["invite_id"].as_str().unwrap()
        ))
        .await
        .unwrap();
    let expired = env
        .call(
            Method::POST,
            "/auth/v1/invites/accept",
            Who::Nobody,
            Some(json!({"invite_token": late["invite_token"], "password": PASSWORD})),
        )
        .await;
    assert_eq!(expired.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn ac_6_a_removed_members_key_is_refused_on_another_replica_within_a_second() {
    let env = Env::new().await;
    env.mock_route("chat", &["mock-1"]).await;
    let replica = Replica::start(&env, Caches::default()).await;
    // The member's own key, and one the master key made (no owner): cached on the replica.
    let own = env
        .call(
            Method::POST,
            &env.org_path("/keys"),
            Who::Member,
            Some(json!({"name": "own"})),
        )
        .await;
    assert_eq!(own.status, StatusCode::CREATED, "{}", own.body);
    let own_secret = own.body["secret"].as_str().unwrap().to_owned();
    let (_, unowned_secret) = env.virtual_key(None).await;
    assert_eq!(replica.models_status(&own_secret).await, StatusCode::OK);
    assert_eq!(replica.models_status(&unowned_secret).await, StatusCode::OK);

    let removed = env
        .call(
            Method::DELETE,
            &env.org_path(&format!("/members/{}", env.user_ids[&Who::Member])),
            Who::Admin,
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
    within(Duration::from_secs(1), StatusCode::UNAUTHORIZED, || {
        replica.models_status(&own_secret)
    })
    .await;
    assert_eq!(replica.models_status(&unowned_secret).await, StatusCode::OK);
    // The revocation is in the trail, with its reason, and the key is listed as revoked.
    let revoked = env.audit("key.revoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(
        revoked[0].record.target_id,
        own.body["key_id"].as_str().unwrap()
    );
    assert_eq!(revoked[0].record.details["reason"], "member_removed");
    // The member's session finds no such org.
    let after = env
        .call(Method::GET, &env.org_path(""), Who::Member, None)
        .await;
    assert_eq!(after.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn ac_6_a_member_demoted_to_viewer_loses_their_keys_and_sessions_here() {
    let env = Env::new().await;
    env.mock_route("chat", &["mock-1"]).await;
    let replica = Replica::start(&env, Caches::default()).await;
    let own = env
        .call(
            Method::POST,
            &env.org_path("/keys"),
            Who::Member,
            Some(json!({"name": "own"})),
        )
        .await;
    let secret = own.body["secret"].as_str().unwrap().to_owned();
    assert_eq!(replica.models_status(&secret).await, StatusCode::OK);
    // Admin to member: a lower role, keys kept (a member may hold keys), sessions ended.
    let admin_key = env
        .call(
            Method::POST,
            &env.org_path("/keys"),
            Who::Admin,
            Some(json!({"name": "admins"})),
        )
        .await;
    let admin_secret = admin_key.body["secret"].as_str().unwrap().to_owned();
    let demoted = env
        .call(
            Method::PATCH,
            &env.org_path(&format!("/members/{}", env.user_ids[&Who::Admin])),
            Who::Owner,
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(demoted.status, StatusCode::OK, "{}", demoted.body);
    let old_session = env
        .call(Method::GET, &env.org_path(""), Who::Admin, None)
        .await;
    assert_eq!(old_session.status, StatusCode::UNAUTHORIZED);
    assert_eq!(old_session.body["error"]["code"], "invalid_session");
    assert_eq!(replica.models_status(&admin_secret).await, StatusCode::OK);

    // Member to viewer: below what a key needs, so the keys end, on the replica too.
    let demoted = env
        .call(
            Method::PATCH,
            &env.org_path(&format!("/members/{}", env.user_ids[&Who::Member])),
            Who::Admin,
            Some(json!({"role": "viewer"})),
        )
        .await;
    // The admin's own session ended with their demotion: the owner acts.
    assert_eq!(demoted.status, StatusCode::UNAUTHORIZED);
    let demoted = env
        .call(
            Method::PATCH,
            &env.org_path(&format!("/members/{}", env.user_ids[&Who::Member])),
            Who::Owner,
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(demoted.status, StatusCode::OK, "{}", demoted.body);
    within(Duration::from_secs(1), StatusCode::UNAUTHORIZED, || {
        replica.models_status(&secret)
    })
    .await;
    let revoked = env.audit("key.revoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].record.details["reason"], "role_lowered");
    // A fresh session acts as a viewer.
    let session = env.login("member@example.com").await;
    let keys = env
        .call_as(Method::GET, &env.org_path("/keys"), &session, None)
        .await;
    assert_eq!(keys.status, StatusCode::OK);
    let create = env
        .call_as(
            Method::POST,
            &env.org_path("/keys"),
            &session,
            Some(json!({"name": "again"})),
        )
        .await;
    assert_eq!(create.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn ac_6_sessions_end_by_an_admin_by_the_person_and_by_timeout() {
    let env = Env::new().await;
    // An admin ends a member's sessions in the org; the person signs in again.
    let ended = env
        .call(
            Method::DELETE,
            &env.org_path(&format!("/members/{}/sessions", env.user_ids[&Who::Member])),
            Who::Admin,
            None,
        )
        .await;
    assert_eq!(ended.status, StatusCode::NO_CONTENT, "{}", ended.body);
    let old = env
        .call(Method::GET, &env.org_path(""), Who::Member, None)
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let fresh = env.login("member@example.com").await;
    let new = env
        .call_as(Method::GET, &env.org_path(""), &fresh, None)
        .await;
    assert_eq!(new.status, StatusCode::OK);
    assert_eq!(env.audit("member.sessions_ended").await.len(), 1);
    // An admin may not end an owner's sessions.
    let owner = env
        .call(
            Method::DELETE,
            &env.org_path(&format!("/members/{}/sessions", env.user_ids[&Who::Owner])),
            Who::Admin,
            None,
        )
        .await;
    assert_eq!(owner.status, StatusCode::FORBIDDEN);

    // The person signs out everywhere: every session of theirs ends.
    let second = env.login("member@example.com").await;
    let revoked = env
        .call_as(Method::POST, "/auth/v1/sessions/revoke", &fresh, None)
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    // The harness's first session (ended in this org only), and the two since.
    assert_eq!(revoked.body["ended"], 3);
    for token in [&fresh, &second] {
        let me = env.call_as(Method::GET, "/auth/v1/me", token, None).await;
        assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(env.audit("sessions.revoked").await.len(), 1);

    // Idle: a session unused past the org's idle minutes is ended, and stays ended when the
    // setting is raised again.
    let settings = env
        .call(
            Method::PATCH,
            &env.org_path("/settings"),
            Who::Owner,
            Some(json!({"session_idle_minutes": 5, "session_max_hours": 2})),
        )
        .await;
    assert_eq!(settings.status, StatusCode::OK, "{}", settings.body);
    let idle = env.login("viewer@example.com").await;
    let ok = env.call_as(Method::GET, "/auth/v1/me", &idle, None).await;
    assert_eq!(ok.status, StatusCode::OK);
    env.test
        .as_superuser(
            "update sessions set last_seen_at = now() - interval '6 minutes' where revoked_at is null",
        )
        .await
        .unwrap();
    let timed_out = env.call_as(Method::GET, "/auth/v1/me", &idle, None).await;
    assert_eq!(timed_out.status, StatusCode::UNAUTHORIZED);
    let raised = env
        .call(
            Method::PATCH,
            &env.org_path("/settings"),
            Who::Master,
            Some(json!({"session_idle_minutes": 60})),
        )
        .await;
    assert_eq!(raised.status, StatusCode::OK);
    let still = env.call_as(Method::GET, "/auth/v1/me", &idle, None).await;
    assert_eq!(
        still.status,
        StatusCode::UNAUTHORIZED,
        "a timed-out session came back"
    );

    // Absolute: a session older than the org's lifetime is ended however busy; the login
    // answer already says when.
    let login = env
        .call(
            Method::POST,
            "/auth/v1/login",
            Who::Nobody,
            Some(json!({"email": "viewer@example.com", "password": PASSWORD})),
        )
        .await;
    let expires: chrono::DateTime<chrono::Utc> =
        login.body["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(expires <= chrono::Utc::now() + chrono::Duration::hours(2));
    let busy = login.body["session_token"].as_str().unwrap().to_owned();
    env.test
        .as_superuser(
            "update sessions set created_at = now() - interval '3 hours', last_seen_at = now() \
             where revoked_at is null",
        )
        .await
        .unwrap();
    let old = env.call_as(Method::GET, "/auth/v1/me", &busy, None).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn ac_6_an_invitation_ends_with_its_inviters_right_to_grant_it() {
    let env = &Env::new().await;
    // The admin invites a viewer and a member; only an owner may grant admin, so an admin's
    // invitation can never be for more.
    let invite = |role: &'static str| async move {
        let added = env
            .call(
                Method::POST,
                &env.org_path("/members"),
                Who::Admin,
                Some(json!({"email": unique(role) + "@example.com", "role": role})),
            )
            .await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
        added.body["invite_token"].as_str().unwrap().to_owned()
    };
    let kept = invite("viewer").await;
    let lost = invite("member").await;
    // An admin may not replace an owner's pending invitation to owner by inviting again.
    let email = unique("future-owner") + "@example.com";
    add(env, env.org, &email, "owner").await;
    let replaced = env
        .call(
            Method::POST,
            &env.org_path("/members"),
            Who::Admin,
            Some(json!({"email": email, "role": "viewer"})),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::FORBIDDEN, "{}", replaced.body);

    // The admin is removed: their open invitations go with them.
    let removed = env
        .call(
            Method::DELETE,
            &env.org_path(&format!("/members/{}", env.user_ids[&Who::Admin])),
            Who::Owner,
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
    for token in [&kept, &lost] {
        let accepted = env
            .call(
                Method::POST,
                "/auth/v1/invites/accept",
                Who::Nobody,
                Some(json!({"invite_token": token, "password": PASSWORD})),
            )
            .await;
        assert_eq!(accepted.status, StatusCode::NOT_FOUND, "{}", accepted.body);
    }
    let revoked = env.audit("invite.revoked").await;
    assert_eq!(revoked.len(), 2);
    assert!(
        revoked
            .iter()
            .all(|e| e.record.details["reason"] == "inviter_changed")
    );
}

#[tokio::test]
async fn ac_6_one_orgs_session_limits_end_no_session_in_another() {
    let env = Env::new().await;
    let other = new_org(&env).await;
    // The member of the harness org also joins another org, from their own session.
    let token = add(&env, other, "member@example.com", "viewer").await["invite_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let joined = env
        .call(
            Method::POST,
            "/auth/v1/invites/accept",
            Who::Member,
            Some(json!({"invite_token": token})),
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.body);
    // The other org holds sessions to one hour; the session is older than that.
    let strict = env
        .call(
            Method::PATCH,
            &format!("/admin/v1/orgs/{other}/settings"),
            Who::Master,
            Some(json!({"session_max_hours": 1})),
        )
        .await;
    assert_eq!(strict.status, StatusCode::OK, "{}", strict.body);
    env.test
        .as_superuser(&format!(
            "update sessions set created_at = now() - interval '2 hours'
             where user_id = '{0}' and revoked_at is null;
             update memberships set sessions_valid_after = now() - interval '3 hours'
             where user_id = '{0}'",
            env.user_ids[&Who::Member]
        ))
        .await
        .unwrap();
    let there = env
        .call(
            Method::GET,
            &format!("/admin/v1/orgs/{other}"),
            Who::Member,
            None,
        )
        .await;
    assert_eq!(there.status, StatusCode::UNAUTHORIZED, "{}", there.body);
    // In the harness org (12 hours) and outside any org, the session goes on.
    let here = env
        .call(Method::GET, &env.org_path(""), Who::Member, None)
        .await;
    assert_eq!(here.status, StatusCode::OK, "{}", here.body);
    let me = env
        .call(Method::GET, "/auth/v1/me", Who::Member, None)
        .await;
    assert_eq!(me.status, StatusCode::OK);
}

#[tokio::test]
async fn ac_6_a_session_an_org_ended_does_not_return_with_a_new_membership() {
    let env = Env::new().await;
    let member = env.user_ids[&Who::Member].clone();
    let ended = env
        .call(
            Method::DELETE,
            &env.org_path(&format!("/members/{member}/sessions")),
            Who::Admin,
            None,
        )
        .await;
    assert_eq!(ended.status, StatusCode::NO_CONTENT);
    // The old session (a thief's, say) is kept alive outside the org; the person is removed
    // and invited again, and accepts from a fresh session.
    assert_eq!(
        env.call(Method::GET, "/auth/v1/me", Who::Member, None)
            .await
            .status,
        StatusCode::OK
    );
    let removed = env
        .call(
            Method::DELETE,
            &env.org_path(&format!("/members/{member}")),
            Who::Admin,
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    let token = add(&env, env.org, "member@example.com", "member").await["invite_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let fresh = env.login("member@example.com").await;
    let joined = env
        .call_as(
            Method::POST,
            "/auth/v1/invites/accept",
            &fresh,
            Some(json!({"invite_token": token})),
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.body);
    let old = env
        .call(Method::GET, &env.org_path(""), Who::Member, None)
        .await;
    assert_eq!(
        old.status,
        StatusCode::UNAUTHORIZED,
        "the ended session came back"
    );
    let new = env
        .call_as(Method::GET, &env.org_path(""), &fresh, None)
        .await;
    assert_eq!(new.status, StatusCode::OK);
}
