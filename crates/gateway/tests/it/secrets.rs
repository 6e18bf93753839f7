//! AC-5: a secret is shown once. After creation no kind of secret (keys, tokens, provider keys,
//! TOTP seeds, recovery codes) appears in a response, a log line, a span or an audit entry, and
//! the database holds only its hash or its ciphertext.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::http::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::{Env, Who};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn ac_5_secrets_are_shown_once_and_stored_only_as_hashes() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let env = Env::new().await;
    let created = env
        .call(
            Method::POST,
            &env.org_path("/keys"),
            Who::Member,
            Some(json!({"name": "prod"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    let key_id = created.body["key_id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("pcv_"));
    assert_eq!(created.body["last4"], secret[secret.len() - 4..]);

    // Every later answer about the key, including errors that involve the secret itself.
    let mut later = Vec::new();
    later.push(
        env.call(Method::GET, &env.org_path("/keys"), Who::Member, None)
            .await
            .body,
    );
    later.push(
        env.call(
            Method::GET,
            &env.org_path("/audit?limit=1000"),
            Who::Admin,
            None,
        )
        .await
        .body,
    );
    later.push(
        env.call_as(Method::GET, &env.org_path("/keys"), &secret, None)
            .await
            .body,
    );
    later.push(
        env.call_as(Method::GET, "/auth/v1/me", &secret, None)
            .await
            .body,
    );
    let mut tampered = secret.clone();
    tampered.replace_range(10..11, if &secret[10..11] == "A" { "B" } else { "A" });
    later.push(
        env.call_as(Method::GET, &env.org_path("/keys"), &tampered, None)
            .await
            .body,
    );
    let rotated = env
        .call(
            Method::POST,
            &env.org_path(&format!("/keys/{key_id}/rotate")),
            Who::Member,
            None,
        )
        .await;
    let new_secret = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    later.push(
        env.call(Method::GET, &env.org_path("/keys"), Who::Owner, None)
            .await
            .body,
    );
    for body in &later {
        let text = body.to_string();
        assert!(
            !text.contains(&secret),
            "a later response shows the secret: {text}"
        );
        assert!(
            !text.contains(&secret[4..]),
            "a later response shows the secret's body: {text}"
        );
        assert!(
            !text.contains(&new_secret),
            "a later response shows the rotated secret: {text}"
        );
    }

    // The database: hashes only, for keys, the master key and sessions.
    let rows = env.test.dump().await.unwrap();
    for shown_once in [
        &secret,
        &new_secret,
        &env.master,
        &env.owner,
        &env.admin,
        &env.virtual_key,
    ] {
        assert!(
            !rows.contains(&shown_once[4..]),
            "a table holds a secret in clear"
        );
    }
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(env.test.admin_url())
        .await
        .unwrap();
    let stored: Vec<u8> =
        sqlx::query_scalar("select token_hash from virtual_keys where key_id = $1::uuid")
            .bind(&key_id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(stored, Sha256::digest(new_secret.as_bytes()).to_vec());

    // Logs: nothing secret in any line at any level.
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(!logs.is_empty(), "the capture saw no logs at all");
    for shown_once in [
        &secret,
        &new_secret,
        &env.master,
        &env.owner,
        &env.virtual_key,
        &crate::support::PASSWORD.to_owned(),
    ] {
        assert!(
            !logs.contains(shown_once.as_str()),
            "a log line holds a secret"
        );
    }
}

#[tokio::test]
async fn ac_5_a_revoked_or_rotated_out_key_and_an_ended_session_stop_at_once() {
    let env = Env::new().await;
    let logout = env
        .call(Method::POST, "/auth/v1/logout", Who::Viewer, None)
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    let after = env
        .call(Method::GET, &env.org_path("/keys"), Who::Viewer, None)
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(after.body["error"]["code"], "invalid_session");
}

/// Every kind of secret the gateway shows once (virtual, master and provider keys, session,
/// challenge and invitation tokens, the TOTP seed, recovery codes) is searched for in every
/// later answer of every read route, in every audit entry of every org, in every log line and
/// span field of every thread at TRACE, and in clear in the database.
#[tokio::test]
async fn ac_5_no_kind_of_secret_appears_after_it_was_shown() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_writer(move || writer.clone())
        .finish();
    // Global, so that the hashers' and workers' threads are captured too (nextest runs each
    // test in a process of its own).
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber per process");

    let env = Env::new().await;
    let mut secrets: Vec<(&str, String)> = vec![
        ("master key", env.master.clone()),
        ("session", env.owner.clone()),
        ("virtual key", env.virtual_key.clone()),
    ];
    let provider_key = format!("sk-ac5-{}", uuid::Uuid::now_v7().simple());
    let rotated_provider_key = format!("sk-ac5-{}", uuid::Uuid::now_v7().simple());
    let credential = env
        .call(
            Method::POST,
            &env.org_path("/credentials"),
            Who::Owner,
            Some(json!({"name": "openai-ish", "provider": "mock", "api_key": provider_key})),
        )
        .await;
    assert_eq!(
        credential.status,
        StatusCode::CREATED,
        "{}",
        credential.body
    );
    let credential_id = credential.body["credential_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Traffic through the key, answered and failing, before and after the key's rotation.
    let route = env
        .call(
            Method::PUT,
            &env.org_path("/routes/ac5"),
            Who::Owner,
            Some(json!({"targets": [
                {"credential_id": credential_id, "model": "mock-error-500"},
                {"credential_id": credential_id, "model": "mock-1"}]})),
        )
        .await;
    assert_eq!(route.status, StatusCode::OK, "{}", route.body);
    let chat = json!({"model": "ac5", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(env.chat(chat.clone()).await.status, StatusCode::OK);
    let replaced = env
        .call(
            Method::PUT,
            &env.org_path(&format!("/credentials/{credential_id}")),
            Who::Owner,
            Some(
                json!({"name": "openai-ish", "provider": "mock", "api_key": rotated_provider_key}),
            ),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(env.chat(chat).await.status, StatusCode::OK);
    secrets.push(("provider key", provider_key));
    secrets.push(("rotated provider key", rotated_provider_key));

    let invited = env
        .call(
            Method::POST,
            &env.org_path("/members"),
            Who::Owner,
            Some(json!({"email": "ac5@example.com", "role": "member"})),
        )
        .await;
    let invite = invited.body["invite_token"].as_str().unwrap().to_owned();
    secrets.push(("invite token", invite.clone()));
    let accepted = env
        .call(
            Method::POST,
            "/auth/v1/invites/accept",
            Who::Nobody,
            Some(json!({"invite_token": invite, "password": crate::support::PASSWORD})),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);

    let enrolment = env
        .call(Method::POST, "/auth/v1/mfa/enroll", Who::Owner, None)
        .await;
    let seed = enrolment.body["secret"].as_str().unwrap().to_owned();
    let totp = portcullis_core::mfa::Totp::from_base32(&seed, "owner@example.com").unwrap();
    let confirmed = env
        .call(
            Method::POST,
            "/auth/v1/mfa/confirm",
            Who::Owner,
            Some(json!({"code": totp.code_at(crate::support::now())})),
        )
        .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    secrets.push(("TOTP seed", seed.clone()));
    secrets.push(("TOTP seed, lower case", seed.to_lowercase()));
    let codes: Vec<String> = confirmed.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let login = env
        .call(
            Method::POST,
            "/auth/v1/login",
            Who::Nobody,
            Some(json!({"email": "owner@example.com", "password": crate::support::PASSWORD})),
        )
        .await;
    let challenge = login.body["mfa_challenge"].as_str().unwrap().to_owned();
    let second = env
        .call(
            Method::POST,
            "/auth/v1/login/mfa",
            Who::Nobody,
            Some(json!({"mfa_challenge": challenge, "code": codes[0]})),
        )
        .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    let session = second.body["session_token"].as_str().unwrap().to_owned();
    secrets.push(("MFA challenge", challenge));
    secrets.push(("MFA session", session.clone()));
    for code in &codes {
        // The lookup half is stored in clear to find the code; the secret half never is.
        let (_, secret_half) = code.split_once('-').unwrap();
        secrets.push(("recovery code", code.clone()));
        secrets.push(("recovery code's secret", secret_half.to_owned()));
    }

    // Every read route, answered after all of it, and the caller's own profile.
    let mut later = Vec::new();
    for route in portcullis_gateway::admin::routes()
        .into_iter()
        .filter(|r| r.method == "GET")
    {
        let (path, _) = crate::support::prepare(&env, &route, Who::Master).await;
        let answer = env.call_as(Method::GET, &path, &session, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
        later.push(format!("{path}: {}", answer.body));
    }
    later.push(
        env.call_as(Method::GET, "/auth/v1/me", &session, None)
            .await
            .body
            .to_string(),
    );
    env.state.spend.flush().await;
    assert!(
        env.state
            .logs
            .flush(std::time::Duration::from_secs(10))
            .await
    );
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(env.test.admin_url())
        .await
        .unwrap();
    let audit: Vec<String> = sqlx::query_scalar("select t::text from audit_events t")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(audit.len() > 10, "{} audit entries", audit.len());
    let rows = env.test.dump().await.unwrap();
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("request") && logs.contains("upstream"),
        "the capture missed the request path's spans"
    );
    let answers = later.join("\n");
    let audit = audit.join("\n");
    for (kind, secret) in &secrets {
        for (place, text) in [
            ("a later answer", &answers),
            ("an audit entry", &audit),
            ("a log line or span", &logs),
        ] {
            assert!(!text.contains(secret.as_str()), "{place} holds a {kind}");
        }
        // Tokens are stored as hashes, under their prefix: their random part is what counts.
        let random_part = secret.split_once('_').map_or(secret.as_str(), |(_, r)| r);
        assert!(
            !rows.contains(random_part),
            "a table holds a {kind} in clear"
        );
    }
}
