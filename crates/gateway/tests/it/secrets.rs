//! AC-5: a secret is shown once. After creation a key's secret never appears in a response, a
//! log line or an audit entry, and the database holds only its hash; the same holds for the
//! master key and session tokens.

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
