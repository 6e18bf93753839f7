//! AC-4: TOTP enrolment and login with codes generated here, `require_mfa`, single-use
//! recovery codes, and throttled, audited failures. Also the login rules of AC-1: the same
//! answer for an unknown email and a wrong password, a new token on every login.

use axum::http::{Method, StatusCode};
use portcullis_core::mfa::Totp;
use serde_json::{Value, json};

use std::time::Duration;

use crate::support::{Call, Env, PASSWORD, TRUSTED_PEER, Who, enrol, now};

/// Enrols the owner; returns their authenticator and recovery codes.
async fn enrol_owner(env: &Env) -> (Totp, Vec<String>) {
    let owner = env.token(Who::Owner).unwrap().to_owned();
    enrol(env, &owner, "owner@example.com").await
}

async fn challenge(env: &Env, email: &str) -> String {
    let login = env
        .call(
            Method::POST,
            "/auth/v1/login",
            Who::Nobody,
            Some(json!({"email": email, "password": PASSWORD})),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    assert!(
        login.body.get("session_token").is_none(),
        "no session before the second factor"
    );
    login.body["mfa_challenge"].as_str().unwrap().to_owned()
}

async fn second_step(env: &Env, challenge: &str, code: &str) -> (StatusCode, Value) {
    let response = env
        .call(
            Method::POST,
            "/auth/v1/login/mfa",
            Who::Nobody,
            Some(json!({"mfa_challenge": challenge, "code": code})),
        )
        .await;
    (response.status, response.body)
}

#[tokio::test]
async fn ac_4_totp_enrolment_then_login_with_a_second_step() {
    let env = Env::new().await;
    let (totp, _) = enrol_owner(&env).await;
    let again = env
        .call(Method::POST, "/auth/v1/mfa/enroll", Who::Owner, None)
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    let first = challenge(&env, "owner@example.com").await;
    // The enrolment used the current step; the next step's code is fresh (one step of drift).
    let code = totp.code_at(now() + 30);
    let (status, body) = second_step(&env, &first, &code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mfa_verified"], true);
    let session = body["session_token"].as_str().unwrap().to_owned();
    let me = env
        .call_as(Method::GET, "/auth/v1/me", &session, None)
        .await;
    assert_eq!(me.body["mfa_enabled"], true);
    assert_eq!(me.body["mfa_verified"], true);

    // A code works once, and a used challenge is gone.
    let second = challenge(&env, "owner@example.com").await;
    let (status, _) = second_step(&env, &second, &code).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a replayed code was accepted"
    );
    let (status, _) = second_step(&env, &first, &totp.code_at(now() + 30)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a used challenge was accepted"
    );
    // A challenge is not a session.
    let refused = env.call_as(Method::GET, "/auth/v1/me", &second, None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["error"]["code"], "wrong_key_kind");
}

#[tokio::test]
async fn ac_4_a_recovery_code_works_once() {
    let env = Env::new().await;
    let (_, codes) = enrol_owner(&env).await;
    let first = challenge(&env, "owner@example.com").await;
    let (status, body) = second_step(&env, &first, &codes[3].to_lowercase()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = challenge(&env, "owner@example.com").await;
    let (status, _) = second_step(&env, &second, &codes[3]).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a recovery code worked twice"
    );
    let (status, _) = second_step(&env, &second, &codes[4]).await;
    assert_eq!(status, StatusCode::OK, "another recovery code still works");
}

#[tokio::test]
async fn ac_4_require_mfa_refuses_owners_and_admins_without_a_second_factor() {
    let env = Env::new().await;
    enrol_owner(&env).await;
    // Only the owner may turn it on; the owner's session proved a second factor at confirm.
    let by_admin = env
        .call(
            Method::PATCH,
            &env.org_path("/settings"),
            Who::Admin,
            Some(json!({"require_mfa": true})),
        )
        .await;
    assert_eq!(by_admin.status, StatusCode::FORBIDDEN);
    let on = env
        .call(
            Method::PATCH,
            &env.org_path("/settings"),
            Who::Owner,
            Some(json!({"require_mfa": true})),
        )
        .await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.body);

    for (path, method, body) in [
        (env.org_path(""), Method::GET, None),
        (
            env.org_path("/teams"),
            Method::POST,
            Some(json!({"name": "blocked"})),
        ),
        (env.org_path("/audit"), Method::GET, None),
    ] {
        let refused = env.call(method, &path, Who::Admin, body).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(refused.body["error"]["code"], "mfa_required");
    }
    // Members and viewers are not privileged; the owner verified; the master key is no person.
    assert_eq!(
        env.call(Method::GET, &env.org_path("/keys"), Who::Member, None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        env.call(Method::GET, &env.org_path("/audit"), Who::Owner, None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        env.call(Method::GET, &env.org_path("/audit"), Who::Master, None)
            .await
            .status,
        StatusCode::OK
    );
    // An admin who logs in with the password alone is refused too (every route, and an owner
    // without MFA: the next test).
    let password_only = env.login("admin@example.com").await;
    let refused = env
        .call_as(Method::GET, &env.org_path(""), &password_only, None)
        .await;
    assert_eq!(refused.body["error"]["code"], "mfa_required");
}

/// Under `require_mfa`, every route of the org refuses an owner and an admin whose session has
/// no second factor: the owner too (the harness's owner enrolled, so a second owner who did
/// not is made), not only on a few routes.
#[tokio::test]
async fn ac_4_under_require_mfa_every_org_route_refuses_an_owner_and_an_admin_without_mfa() {
    let env = Env::new().await;
    enrol_owner(&env).await;
    let (_, unverified_owner) = env
        .add_person(env.org, "second-owner@example.com", "owner")
        .await;
    let on = env
        .call(
            Method::PATCH,
            &env.org_path("/settings"),
            Who::Owner,
            Some(json!({"require_mfa": true})),
        )
        .await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.body);
    let admin = env.token(Who::Admin).unwrap().to_owned();
    let routes: Vec<_> = portcullis_gateway::admin::routes()
        .into_iter()
        .filter(|r| r.path.starts_with("/admin/v1/orgs/{org_id}"))
        .collect();
    assert!(routes.len() >= 18, "{} org routes", routes.len());
    for route in &routes {
        for (who, token) in [("owner", &unverified_owner), ("admin", &admin)] {
            let (path, body) = crate::support::prepare(&env, route, Who::Master).await;
            let method = Method::from_bytes(route.method.as_bytes()).unwrap();
            let refused = env.call_as(method, &path, token, body).await;
            assert_eq!(
                (refused.status, refused.body["error"]["code"].as_str()),
                (StatusCode::FORBIDDEN, Some("mfa_required")),
                "{} {} as an {who} without MFA: {}",
                route.method,
                route.path,
                refused.body
            );
        }
    }
}

#[tokio::test]
async fn ac_4_repeated_failures_are_throttled_and_audited() {
    let env = Env::new().await;
    let wrong = json!({"email": "viewer@example.com", "password": "not the password"});
    for _ in 0..5 {
        let response = env
            .call(
                Method::POST,
                "/auth/v1/login",
                Who::Nobody,
                Some(wrong.clone()),
            )
            .await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    }
    let right = json!({"email": "viewer@example.com", "password": PASSWORD});
    let throttled = env
        .call(Method::POST, "/auth/v1/login", Who::Nobody, Some(right))
        .await;
    assert_eq!(
        throttled.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        throttled.body
    );
    assert_eq!(throttled.body["error"]["code"], "rate_limited");
    assert!(throttled.headers.contains_key("retry-after"));

    // Failures are recorded after their answers: wait for all five.
    let failures = crate::support::eventually(|| async {
        let failures = env.audit("login.failed").await;
        (failures.len() >= 5).then_some(failures)
    })
    .await;
    assert_eq!(failures.len(), 5);
    assert!(
        failures
            .iter()
            .all(|f| f.record.target_id == env.user_ids[&Who::Viewer])
    );
    assert!(
        !failures
            .iter()
            .any(|f| f.record.details.to_string().contains("not the password"))
    );

    // Second factors are throttled as well: enrolment's right code cleared its wrong one, so
    // five wrong codes are answered before the refusals start, and then even a right one is.
    let (totp, _) = enrol_owner(&env).await;
    let pending = challenge(&env, "owner@example.com").await;
    let mut answered = 0;
    loop {
        let (status, body) = second_step(&env, &pending, "123456").await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        answered += 1;
        assert!(answered <= 5, "wrong codes are not throttled");
    }
    assert_eq!(answered, 5);
    let (status, _) = second_step(&env, &pending, &totp.code_at(now() + 30)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn ac_1_login_answers_alike_for_an_unknown_email_and_a_wrong_password_and_rotates_tokens() {
    let env = Env::new().await;
    let unknown = env
        .call(
            Method::POST,
            "/auth/v1/login",
            Who::Nobody,
            Some(json!({"email": "nobody@example.com", "password": "whatever pass"})),
        )
        .await;
    let wrong = env
        .call(
            Method::POST,
            "/auth/v1/login",
            Who::Nobody,
            Some(json!({"email": "member@example.com", "password": "whatever pass"})),
        )
        .await;
    assert_eq!(unknown.status, wrong.status);
    assert_eq!(unknown.body["error"]["code"], wrong.body["error"]["code"]);
    assert_eq!(
        unknown.body["error"]["message"],
        wrong.body["error"]["message"]
    );

    let first = env.login("member@example.com").await;
    let second = env.login("member@example.com").await;
    assert_ne!(first, second, "every login makes a new token");
    for token in [&first, &second] {
        assert_eq!(
            env.call_as(Method::GET, "/auth/v1/me", token, None)
                .await
                .status,
            StatusCode::OK
        );
    }
}

/// 200 attempts at once: only the throttle's limit of them reaches the check.
async fn concurrently(env: &Env, path: &str, bodies: Vec<Value>) -> Vec<StatusCode> {
    let calls = bodies.into_iter().map(|body| async move {
        env.call(Method::POST, path, Who::Nobody, Some(body))
            .await
            .status
    });
    futures_util::future::join_all(calls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ac_4_two_hundred_concurrent_wrong_codes_for_one_challenge_are_at_most_five_checks() {
    let env = Env::new().await;
    enrol_owner(&env).await;
    let pending = challenge(&env, "owner@example.com").await;
    let bodies = (0..200)
        .map(|n| json!({"mfa_challenge": pending, "code": format!("{:06}", 100_000 + n)}))
        .collect();
    let statuses = concurrently(&env, "/auth/v1/login/mfa", bodies).await;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(checked <= 5, "{checked} codes were checked");
    assert_eq!(checked + refused, 200, "{statuses:?}");
    // Each check is a `login.failed` entry: no more than five.
    env.state.finish_background(Duration::from_secs(10)).await;
    let failed = env.audit("login.failed").await;
    assert_eq!(failed.len(), checked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ac_4_two_hundred_concurrent_wrong_passwords_are_at_most_five_checks() {
    let env = Env::new().await;
    let bodies = (0..200)
        .map(|n| json!({"email": "viewer@example.com", "password": format!("wrong guess {n}")}))
        .collect();
    let statuses = concurrently(&env, "/auth/v1/login", bodies).await;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert!(checked <= 5, "{checked} passwords were checked");
    assert_eq!(
        checked
            + statuses
                .iter()
                .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
                .count(),
        200,
        "{statuses:?}"
    );
    env.state.finish_background(Duration::from_secs(10)).await;
    assert_eq!(env.audit("login.failed").await.len(), checked);
}

#[tokio::test]
async fn ac_4_an_over_long_email_is_refused_before_any_work() {
    let env = Env::new().await;
    let email = format!("{}@example.com", "a".repeat(400));
    let response = env
        .call(
            Method::POST,
            "/auth/v1/login",
            Who::Nobody,
            Some(json!({"email": email, "password": "whatever pass"})),
        )
        .await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.body
    );
    assert_eq!(response.body["error"]["code"], "invalid_request");
}

#[tokio::test]
async fn ac_4_a_stranger_cannot_lock_an_account_out_from_elsewhere() {
    let env = Env::new().await;
    // Five wrong passwords for the viewer from the attacker's address (behind the trusted
    // proxy, so X-Forwarded-For names it).
    for _ in 0..6 {
        let mut call = Call::new(
            Method::POST,
            "/auth/v1/login",
            None,
            Some(json!({"email": "viewer@example.com", "password": "not the password"})),
        );
        call.peer = TRUSTED_PEER;
        call.headers = vec![("x-forwarded-for", "198.51.100.66".to_owned())];
        env.send(call).await;
    }
    let mut attacker = Call::new(
        Method::POST,
        "/auth/v1/login",
        None,
        Some(json!({"email": "viewer@example.com", "password": PASSWORD})),
    );
    attacker.peer = TRUSTED_PEER;
    attacker.headers = vec![("x-forwarded-for", "198.51.100.66".to_owned())];
    assert_eq!(
        env.send(attacker).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The owner of the account, from their own address, still signs in.
    let owner = env
        .call(
            Method::POST,
            "/auth/v1/login",
            Who::Nobody,
            Some(json!({"email": "viewer@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.body);
}

async fn remove_mfa(env: &Env, session: &str, code: &str) -> (StatusCode, Value) {
    let response = env
        .call_as(
            Method::POST,
            "/auth/v1/mfa/remove",
            session,
            Some(json!({"code": code})),
        )
        .await;
    (response.status, response.body)
}

/// AU-1's "MFA removed": a person turns their own TOTP off with a current code; a wrong or
/// replayed code changes nothing; afterwards the password alone signs them in, and the
/// removal is in the audit trail.
#[tokio::test]
async fn ac_4_a_person_removes_their_own_totp_with_a_current_code() {
    let env = Env::new().await;
    let member = env.token(Who::Member).unwrap().to_owned();
    let (totp, codes) = enrol(&env, &member, "member@example.com").await;
    let (status, _) = remove_mfa(&env, &member, "000000").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a wrong code removed MFA");
    // The confirmation used the current step: that step's code, or the one before, is a replay
    // (whichever step the clock is in now).
    let (status, _) = remove_mfa(&env, &member, &totp.code_at(now() - 30)).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a replayed code removed MFA"
    );
    // Only the person's own session: not the master key, not a challenge.
    let (status, _) = remove_mfa(&env, &env.master, &totp.code_at(now() + 30)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let pending = challenge(&env, "member@example.com").await;
    let (status, body) = remove_mfa(&env, &pending, &totp.code_at(now() + 30)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("wrong_key_kind")),
        "{body}"
    );
    assert_eq!(
        env.audit("mfa.removal_failed").await.len(),
        2,
        "each wrong or replayed code is recorded"
    );
    let me = env.call_as(Method::GET, "/auth/v1/me", &member, None).await;
    assert_eq!(me.body["mfa_enabled"], true, "nothing changed yet");

    let (status, body) = remove_mfa(&env, &member, &totp.code_at(now() + 30)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mfa_enabled"], false);
    let me = env.call_as(Method::GET, "/auth/v1/me", &member, None).await;
    assert_eq!(
        (
            me.body["mfa_enabled"].as_bool(),
            me.body["mfa_verified"].as_bool()
        ),
        (Some(false), Some(false)),
        "{}",
        me.body
    );
    // The password alone signs in again; the old recovery codes are gone with the seed.
    let login = env
        .call(
            Method::POST,
            "/auth/v1/login",
            Who::Nobody,
            Some(json!({"email": "member@example.com", "password": PASSWORD})),
        )
        .await;
    assert!(login.body["session_token"].is_string(), "{}", login.body);
    let (status, _) = remove_mfa(&env, &member, &codes[0]).await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing left to remove");
    let removed = env.audit("mfa.removed").await;
    assert_eq!(removed.len(), 1);
    // The open challenge ended with the factor it was waiting for.
    let (status, _) = second_step(&env, &pending, &codes[1]).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a challenge outlived the removal"
    );
    assert_eq!(
        removed[0].record.actor.id,
        env.user_ids[&Who::Member].as_str()
    );
    assert_eq!(removed[0].record.details["method"], "totp");
}

/// Under `require_mfa` an owner or an admin cannot drop the factor the org requires of them, by
/// TOTP code or recovery code; a member of the same org can.
#[tokio::test]
async fn ac_4_under_require_mfa_an_owner_or_admin_cannot_remove_their_totp() {
    let env = Env::new().await;
    let (owner_totp, owner_codes) = enrol_owner(&env).await;
    let admin = env.token(Who::Admin).unwrap().to_owned();
    let (admin_totp, admin_codes) = enrol(&env, &admin, "admin@example.com").await;
    let member = env.token(Who::Member).unwrap().to_owned();
    let (member_totp, _) = enrol(&env, &member, "member@example.com").await;
    let on = env
        .call(
            Method::PATCH,
            &env.org_path("/settings"),
            Who::Owner,
            Some(json!({"require_mfa": true})),
        )
        .await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.body);
    for (who, session, totp, codes) in [
        ("owner", env.owner.clone(), &owner_totp, &owner_codes),
        ("admin", admin.clone(), &admin_totp, &admin_codes),
    ] {
        for code in [totp.code_at(now() + 30), codes[0].clone()] {
            let (status, body) = remove_mfa(&env, &session, &code).await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (StatusCode::FORBIDDEN, Some("mfa_required")),
                "the {who} removed the factor the org requires: {body}"
            );
        }
        let me = env
            .call_as(Method::GET, "/auth/v1/me", &session, None)
            .await;
        assert_eq!(me.body["mfa_enabled"], true, "{who}");
    }
    let refusals = env.audit("mfa.removal_failed").await;
    assert_eq!(refusals.len(), 4, "every refusal is recorded");
    assert!(
        refusals
            .iter()
            .all(|e| e.record.details["reason"] == "required")
    );
    let (status, body) = remove_mfa(&env, &member, &member_totp.code_at(now() + 30)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(env.audit("mfa.removed").await.len() == 1);
}

/// A member who removes their TOTP and is then made an admin under `require_mfa` is refused
/// with the session that proved the old factor: removal unverifies every session of theirs.
#[tokio::test]
async fn ac_4_a_session_verified_before_removal_does_not_pass_require_mfa_after_it() {
    let env = Env::new().await;
    enrol_owner(&env).await;
    let email = "climber@example.com";
    let (user_id, password_session) = env.add_person(env.org, email, "member").await;
    let (totp, codes) = enrol(&env, &password_session, email).await;
    // Signed in with both factors on a second device.
    let pending = challenge(&env, email).await;
    let (status, body) = second_step(&env, &pending, &totp.code_at(now() + 30)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let verified = body["session_token"].as_str().unwrap().to_owned();
    // Both sessions proved a second factor: the enrolling one at confirm.
    {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(env.test.admin_url())
            .await
            .unwrap();
        let used: i64 =
            sqlx::query_scalar("select count(*) from sessions where user_id = $1 and mfa_verified")
                .bind(user_id.parse::<uuid::Uuid>().unwrap())
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(used, 2, "the enrolling session and the second device");
    }
    // A recovery code: the next step's code was just used by the second device.
    let (status, body) = remove_mfa(&env, &verified, &codes[0]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let on = env
        .call(
            Method::PATCH,
            &env.org_path("/settings"),
            Who::Owner,
            Some(json!({"require_mfa": true})),
        )
        .await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.body);
    let promoted = env
        .call(
            Method::PATCH,
            &env.org_path(&format!("/members/{user_id}")),
            Who::Owner,
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(promoted.status, StatusCode::OK, "{}", promoted.body);
    // Even a session marked verified after the removal (a second step that committed after
    // it) does not count: verified means verified while MFA is on.
    {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(env.test.admin_url())
            .await
            .unwrap();
        sqlx::query("update sessions set mfa_verified = true where user_id = $1")
            .bind(user_id.parse::<uuid::Uuid>().unwrap())
            .execute(&mut conn)
            .await
            .unwrap();
    }
    for session in [&verified, &password_session] {
        let refused = env
            .call_as(Method::GET, &env.org_path("/teams"), session, None)
            .await;
        assert_eq!(
            (refused.status, refused.body["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("mfa_required")),
            "a session verified by a removed factor passed require_mfa: {}",
            refused.body
        );
    }
}

/// EN-2: a TOTP seed is sealed to its person. Copied onto another person's row (as someone
/// with write access to the table might), it does not open there: the other person's login
/// with the first person's current code fails, where the same ciphertext on its own row works.
#[tokio::test]
async fn en_2_a_totp_seed_moved_to_another_person_does_not_open() {
    let env = Env::new().await;
    let (owner_totp, _) = enrol_owner(&env).await;
    let admin = env.token(Who::Admin).unwrap().to_owned();
    enrol(&env, &admin, "admin@example.com").await;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(env.test.admin_url())
        .await
        .unwrap();
    let moved = sqlx::query(
        "update users set totp_ciphertext =
             (select totp_ciphertext from users where email = 'owner@example.com'),
             totp_last_step = 0
         where email = 'admin@example.com'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(moved.rows_affected(), 1);
    let code = owner_totp.code_at(now() + 30);
    let pending = challenge(&env, "admin@example.com").await;
    let (status, body) = second_step(&env, &pending, &code).await;
    assert_eq!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "a seed opened on another person's row: {body}"
    );
    assert!(body["session_token"].is_null());
    assert!(!body.to_string().contains("totp"), "{body}");
    // The ciphertext itself is sound: on its own row the same code signs the owner in.
    let pending = challenge(&env, "owner@example.com").await;
    let (status, body) = second_step(&env, &pending, &code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
