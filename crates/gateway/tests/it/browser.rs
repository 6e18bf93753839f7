//! Browser sessions (the console): the session in an HttpOnly, SameSite=Strict cookie, and a
//! CSRF token every state-changing call must carry. Tried as a page of another site would:
//! a write that rides on the cookie alone, or with a token of another session, does nothing.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Call, Env, PASSWORD, Who, snapshot};

/// A browser's sign-in: its cookies as a `Cookie` header, and its CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

async fn sign_in(env: &Env, email: &str) -> Browser {
    let mut call = Call::new(
        Method::POST,
        "/auth/v1/login",
        None,
        Some(json!({"email": email, "password": PASSWORD})),
    );
    call.headers
        .push(("x-portcullis-session", "cookie".to_owned()));
    let login = env.send(call).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    assert!(
        login.body.get("session_token").is_none(),
        "a cookie session's token reached the page: {}",
        login.body
    );
    let cookies: Vec<String> = login
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Host-portcullis_session="))
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
        assert!(session.contains(attribute), "{session}");
    }
    let pair = |c: &String| c.split(';').next().unwrap().to_owned();
    let csrf = cookies
        .iter()
        .find(|c| c.starts_with("__Host-portcullis_csrf="))
        .unwrap();
    Browser {
        cookie: cookies.iter().map(pair).collect::<Vec<_>>().join("; "),
        csrf: pair(csrf)
            .trim_start_matches("__Host-portcullis_csrf=")
            .to_owned(),
    }
}

fn from_browser(
    browser: &Browser,
    method: Method,
    path: &str,
    body: Option<Value>,
    csrf: Option<&str>,
) -> Call<'static> {
    let mut call = Call::new(method, path, None, body);
    call.headers.push(("cookie", browser.cookie.clone()));
    if let Some(csrf) = csrf {
        call.headers.push(("x-csrf-token", csrf.to_owned()));
    }
    call
}

#[tokio::test]
async fn ac_1_a_cookie_session_writes_only_with_its_own_csrf_token() {
    let env = Env::new().await;
    let owner = sign_in(&env, "owner@example.com").await;
    let teams = env.org_path("/teams");
    // Reads ride on the cookie.
    let read = env
        .send(from_browser(&owner, Method::GET, &teams, None, None))
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    let me = env
        .send(from_browser(&owner, Method::GET, "/auth/v1/me", None, None))
        .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);

    // A write without the token, or with another session's, changes nothing.
    let other = sign_in(&env, "owner@example.com").await;
    let before = snapshot(&env.test).await;
    for csrf in [None, Some("0".repeat(64)), Some(other.csrf.clone())] {
        let body = Some(json!({"name": "forged"}));
        let forged = env
            .send(from_browser(
                &owner,
                Method::POST,
                &teams,
                body,
                csrf.as_deref(),
            ))
            .await;
        assert_eq!(
            forged.status,
            StatusCode::FORBIDDEN,
            "{csrf:?}: {}",
            forged.body
        );
        assert_eq!(forged.body["error"]["code"], "csrf_failed");
        let logout = env
            .send(from_browser(
                &owner,
                Method::POST,
                "/auth/v1/logout",
                None,
                csrf.as_deref(),
            ))
            .await;
        assert_eq!(
            logout.status,
            StatusCode::FORBIDDEN,
            "a forged logout: {}",
            logout.body
        );
    }
    assert_eq!(
        before,
        snapshot(&env.test).await,
        "a forged write changed something"
    );

    // With its own token the write goes through, attributed to the person.
    let made = env
        .send(from_browser(
            &owner,
            Method::POST,
            &teams,
            Some(json!({"name": "made in a browser"})),
            Some(&owner.csrf),
        ))
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let entries = env.audit("team.created").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].record.actor.kind,
        portcullis_core::audit::ActorKind::User
    );

    // A bearer session needs no token: no browser sends it by itself.
    let bearer = env
        .call(
            Method::POST,
            &teams,
            Who::Owner,
            Some(json!({"name": "by bearer"})),
        )
        .await;
    assert_eq!(bearer.status, StatusCode::CREATED, "{}", bearer.body);

    // Signing out ends the session and clears both cookies.
    let out = env
        .send(from_browser(
            &owner,
            Method::POST,
            "/auth/v1/logout",
            None,
            Some(&owner.csrf),
        ))
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
    let cleared: Vec<&str> = out
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(cleared.len(), 2, "{cleared:?}");
    assert!(
        cleared.iter().all(|c| c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    let after = env
        .send(from_browser(&owner, Method::GET, &teams, None, None))
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{}", after.body);
}

/// Every state-changing admin and auth route, called with the cookie alone (as a page of
/// another site would make the browser call it), is refused before its handler runs.
#[tokio::test]
async fn ac_1_no_write_route_takes_a_cookie_without_its_csrf_token() {
    let env = Env::new().await;
    let owner = sign_in(&env, "owner@example.com").await;
    let mut writes: Vec<(String, String)> = portcullis_gateway::admin::routes()
        .iter()
        .filter(|r| r.mutating())
        .map(|r| {
            (
                r.method.to_owned(),
                r.path.replace("{org_id}", &env.org.to_string()),
            )
        })
        .collect();
    writes.extend(
        portcullis_gateway::authn::routes()
            .into_iter()
            .filter(|(method, _)| *method != "GET")
            .map(|(method, path)| (method.to_owned(), path.to_owned())),
    );
    assert!(writes.len() >= 25, "{}", writes.len());
    let before = snapshot(&env.test).await;
    for (method, path) in &writes {
        let call = from_browser(
            &owner,
            Method::from_bytes(method.as_bytes()).unwrap(),
            path,
            Some(json!({})),
            None,
        );
        let refused = env.send(call).await;
        assert_eq!(
            (refused.status, refused.body["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("csrf_failed")),
            "{method} {path}: {}",
            refused.body
        );
    }
    assert_eq!(before, snapshot(&env.test).await);
}

/// Two cookies of the session's name (one planted beside the real one) are no session.
#[tokio::test]
async fn ac_1_a_planted_second_session_cookie_is_no_session() {
    let env = Env::new().await;
    let owner = sign_in(&env, "owner@example.com").await;
    let other = sign_in(&env, "owner@example.com").await;
    let planted = Browser {
        cookie: format!("{}; {}", other.cookie, owner.cookie),
        csrf: owner.csrf.clone(),
    };
    let read = env
        .send(from_browser(
            &planted,
            Method::GET,
            "/auth/v1/me",
            None,
            None,
        ))
        .await;
    assert_eq!(read.status, StatusCode::UNAUTHORIZED, "{}", read.body);
}

/// The second step of an MFA sign-in in cookie mode keeps the token out of the body too.
#[tokio::test]
async fn ac_4_an_mfa_sign_in_in_cookie_mode_puts_the_session_in_cookies_only() {
    let env = Env::new().await;
    let bearer = env.login("owner@example.com").await;
    let (totp, _) = crate::support::enrol(&env, &bearer, "owner@example.com").await;
    let login = env
        .call(
            Method::POST,
            "/auth/v1/login",
            Who::Nobody,
            Some(json!({"email": "owner@example.com", "password": PASSWORD})),
        )
        .await;
    let challenge = login.body["mfa_challenge"].as_str().unwrap().to_owned();
    // The enrolment used this step's code: the next one.
    let code = totp.code_at(crate::support::now() + 30);
    let mut call = Call::new(
        Method::POST,
        "/auth/v1/login/mfa",
        None,
        Some(json!({"mfa_challenge": challenge, "code": code})),
    );
    call.headers
        .push(("x-portcullis-session", "cookie".to_owned()));
    let verified = env.send(call).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.body);
    assert!(
        verified.body.get("session_token").is_none(),
        "{}",
        verified.body
    );
    assert_eq!(verified.body["mfa_verified"], true);
    let cookies = verified.headers.get_all("set-cookie").iter().count();
    assert_eq!(cookies, 2);
}

#[tokio::test]
async fn en_3_session_cookies_are_secure_when_serving_tls() {
    let env = Env::new_with(|state| state.serving_tls(true)).await;
    let mut call = Call::new(
        Method::POST,
        "/auth/v1/login",
        None,
        Some(json!({"email": "owner@example.com", "password": PASSWORD})),
    );
    call.headers
        .push(("x-portcullis-session", "cookie".to_owned()));
    let login = env.send(call).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let cookies: Vec<&str> = login
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(cookies.len(), 2);
    assert!(cookies.iter().all(|c| c.contains("Secure")), "{cookies:?}");
}

/// AC-6: a person lists their own live sessions (the current one marked), never a token, and
/// never another person's; after signing out everywhere none is left.
#[tokio::test]
async fn ac_6_a_person_lists_only_their_own_live_sessions() {
    let env = Env::new().await;
    let first = env.login("owner@example.com").await;
    let second = env.login("owner@example.com").await;
    let list = |token: String| {
        let env = &env;
        async move {
            env.call_as(Method::GET, "/auth/v1/sessions", &token, None)
                .await
        }
    };
    let mine = list(second.clone()).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
    let text = mine.body.to_string();
    assert!(!text.contains("pcs_") && !text.contains(&second), "{text}");
    let sessions = mine.body["data"].as_array().unwrap();
    assert!(sessions.len() >= 2, "{text}");
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let ids: Vec<&str> = sessions
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    let theirs = list(env.token(Who::Admin).unwrap().to_owned()).await;
    assert_eq!(theirs.status, StatusCode::OK, "{}", theirs.body);
    for session in theirs.body["data"].as_array().unwrap() {
        assert!(
            !ids.contains(&session["session_id"].as_str().unwrap()),
            "{}",
            theirs.body
        );
    }
    let out = env
        .call_as(
            Method::POST,
            "/auth/v1/sessions/revoke",
            &first,
            Some(json!({})),
        )
        .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.body);
    let after = list(second).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{}", after.body);
}
