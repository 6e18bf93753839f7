//! RM-2 end to end: with `pii_redaction` on and content logged, requests carrying known PII
//! values (in prompts, the end-user id, answers echoed back, streams, failures) leave none of
//! them anywhere: a dump of every table of the database and the server's own log (at debug
//! level) are searched for each value.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, admin, command, mock_routes_and_key, setup};

/// The values, each of a kind the detector knows.
const VALUES: [&str; 6] = [
    "maria.garcia@example.org",
    "4111 1111 1111 1111",
    "078-05-1120",
    "DE89 3704 0044 0532 0130 00",
    "198.51.100.23",
    "sk-proj-Zk3mQ8vT2xW9pL4nR7sB1cY6",
];

fn prompt() -> String {
    format!(
        "My email is {}, card {}, SSN {}, IBAN {}, from {}; my key is {}.",
        VALUES[0], VALUES[1], VALUES[2], VALUES[3], VALUES[4], VALUES[5]
    )
}

#[tokio::test]
async fn rm_2_with_redaction_on_no_pii_value_persists_in_the_database_or_the_logs() {
    let setup = setup().await;
    let mut command = command(&setup.test);
    command.env("PORTCULLIS_LOG__LEVEL", "debug,sqlx=debug");
    let mut server = Server::start(command);
    let client = reqwest::Client::builder().build().unwrap();
    let post = |path: &'static str, body: Value| {
        admin(&client, &setup, &server, reqwest::Method::POST, path, body)
    };
    let (_, secret) = mock_routes_and_key(
        &client,
        &setup,
        &server,
        &[("echo", "mock-echo"), ("broken", "mock-error-500")],
    )
    .await;
    admin(
        &client,
        &setup,
        &server,
        reqwest::Method::PATCH,
        "/settings",
        json!({"logging_level": "content", "pii_redaction": true}),
    )
    .await;

    // The guardrail is off: the values reach the (echoing) provider and come back in answers.
    let mut echoed = 0;
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": "echo", "user": VALUES[0],
            "messages": [{"role": "user", "content": prompt()}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "echo", "stream": true, "user": VALUES[0],
            "messages": [{"role": "user", "content": prompt()}]}),
        ),
        (
            "/v1/messages",
            json!({"model": "echo", "max_tokens": 100,
            "messages": [{"role": "user", "content": prompt()}]}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "echo", "input": prompt()}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "broken", "user": VALUES[0],
            "messages": [{"role": "user", "content": prompt()}]}),
        ),
    ] {
        let response = client
            .post(server.url(path))
            .bearer_auth(&secret)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        if text.contains(VALUES[0]) {
            echoed += 1;
        }
        assert!(status == 200 || status == 502, "{path}: {status} {text}");
    }
    assert!(
        echoed >= 2,
        "the echo provider answered with the values: the test sees them"
    );

    // The server writes its logs off the request path: wait until all five are in.
    let url = server.url(&format!("/admin/v1/orgs/{}/logs", setup.org));
    let mut logged = Vec::new();
    for _ in 0..100 {
        let page: Value = client
            .get(&url)
            .bearer_auth(&setup.master)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        logged = page["logs"].as_array().unwrap().clone();
        if logged.len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(logged.len(), 5, "{logged:?}");
    assert!(logged.iter().all(|l| l["redacted"] == true));
    assert!(logged.iter().any(|l| l["status"] == 502));

    let before = setup.test.dump().await.unwrap();
    assert!(
        before.contains("[EMAIL_1]") && before.contains("[PAYMENT_CARD_1]"),
        "content was logged, redacted"
    );
    // A data-subject request still finds the subject by the id that was redacted.
    let deletion = post("/data-subject-deletions", json!({"end_user": VALUES[0]})).await;
    assert_eq!(deletion["deleted"]["request_logs"], 3, "{deletion}");

    let after = setup.test.dump().await.unwrap();
    let status = server.stop();
    assert!(status.success());
    let logs = server.log_lines().join("\n");
    assert!(logs.len() > 1000, "the server logged at debug level");
    for value in VALUES {
        let compact = value.replace(' ', "");
        for (name, text) in [
            ("database", &before),
            ("database", &after),
            ("server log", &logs),
        ] {
            assert!(!text.contains(value), "{value} persisted in the {name}");
            assert!(
                !text.contains(&compact),
                "{compact} persisted in the {name}"
            );
        }
    }
}

#[tokio::test]
async fn rm_1_request_logs_queued_at_shutdown_are_written_before_the_process_exits() {
    let setup = setup().await;
    let mut server = Server::start(command(&setup.test));
    let client = reqwest::Client::builder().build().unwrap();
    let (_, secret) = mock_routes_and_key(&client, &setup, &server, &[("chat", "mock-1")]).await;
    const SENT: i64 = 30;
    for _ in 0..SENT {
        let response = client
            .post(server.url("/v1/chat/completions"))
            .bearer_auth(&secret)
            .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // At once, with whatever the writers still hold.
    assert!(server.stop().success());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(setup.test.admin_url())
        .await
        .unwrap();
    let (logs, ledger): (i64, i64) = sqlx::query_as(
        "select (select count(*) from request_logs), (select count(*) from ledger_entries)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((logs, ledger), (SENT, SENT));
}

/// Request logs and their contents, as the administrator counts them.
async fn counts(conn: &mut sqlx::PgConnection) -> (i64, i64) {
    sqlx::query_as(
        "select (select count(*) from request_logs), (select count(*) from request_contents)",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}

/// The retention job itself, in the running binary (not only the function it calls): content
/// past its org's retention goes within the job's interval, and its metadata stays.
#[tokio::test]
async fn rm_3_the_background_job_of_the_binary_removes_content_past_retention() {
    let setup = setup().await;
    let mut command = command(&setup.test);
    command.env("PORTCULLIS_LOGS__RETENTION_INTERVAL_SECS", "1");
    let server = Server::start(command);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let (_, secret) = mock_routes_and_key(&client, &setup, &server, &[("chat", "mock-1")]).await;
    admin(
        &client,
        &setup,
        &server,
        reqwest::Method::PATCH,
        "/settings",
        json!({"logging_level": "content"}),
    )
    .await;
    for _ in 0..2 {
        let response = client
            .post(server.url("/v1/chat/completions"))
            .bearer_auth(&secret)
            .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(setup.test.admin_url())
        .await
        .unwrap();
    // The writer flushes on its own; wait for both rows.
    let mut waited = 0;
    while counts(&mut conn).await != (2, 2) {
        assert!(waited < 100, "the request logs were not written");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    // One of them 40 days old, past the default 30 days.
    sqlx::query(
        "update request_contents set created_at = now() - interval '40 days'
         where log_id = (select log_id from request_contents order by log_id limit 1)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let mut waited = 0;
    while counts(&mut conn).await != (2, 1) {
        assert!(
            waited < 50,
            "the job did not remove the old content within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    drop(server);
}

/// A chat request through `server`: when it was sent and its request id.
async fn chat_logged(client: &reqwest::Client, server: &Server, key: &str) -> (Instant, String) {
    let sent = Instant::now();
    let response = client
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    (sent, id)
}

/// The level a request was logged at, once its log is written (within 10 s).
async fn logged_level(
    client: &reqwest::Client,
    setup: &crate::support::Setup,
    server: &Server,
    request_id: &str,
) -> String {
    let url = server.url(&format!("/admin/v1/orgs/{}/logs/{request_id}", setup.org));
    let started = Instant::now();
    loop {
        let log = client
            .get(&url)
            .bearer_auth(&setup.master)
            .send()
            .await
            .unwrap();
        if log.status() == 200 {
            let log: Value = log.json().await.unwrap();
            return log["logging_level"].as_str().unwrap().to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{request_id} never logged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// RM-1 across processes: B has served the key (its settings cached at `metadata`); the level
/// is switched through A; B's requests are logged at `content` within a second of the
/// change, long before the cache's own expiry.
#[tokio::test]
async fn rm_1_a_level_switched_through_one_process_applies_on_another_that_cached_the_key() {
    let setup = setup().await;
    let (a, b) = (
        Server::start(command(&setup.test)),
        Server::start(command(&setup.test)),
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (_, key) = mock_routes_and_key(&client, &setup, &a, &[("chat", "mock-1")]).await;
    let (_, cached) = chat_logged(&client, &b, &key).await;
    assert_eq!(logged_level(&client, &setup, &a, &cached).await, "metadata");
    admin(
        &client,
        &setup,
        &a,
        reqwest::Method::PATCH,
        "/settings",
        json!({"logging_level": "content"}),
    )
    .await;
    let changed = Instant::now();
    loop {
        let (sent, id) = chat_logged(&client, &b, &key).await;
        if logged_level(&client, &setup, &a, &id).await == "content" {
            break;
        }
        assert!(
            sent.duration_since(changed) < Duration::from_secs(1),
            "B still logged at the old level a second after the change"
        );
    }
}
