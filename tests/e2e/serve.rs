//! `portcullis serve` as a user runs it: migrate, serve, probe, stop.

use portcullis_testkit::TestDb;

use crate::support::{Server, command, run};

#[tokio::test]
async fn av_3_migrate_then_serve_answers_readyz_and_stops_on_sigterm() {
    let test = TestDb::new().await.unwrap();
    // Migrating an already migrated database is a no-op that succeeds.
    let migrated = run(command(&test).arg("migrate"));
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );

    let mut server = Server::start(command(&test));
    let client = reqwest::Client::builder().build().unwrap();
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(ready.headers().contains_key("x-request-id"));
    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let missing = client
        .get(server.url("/admin/v1/nothing"))
        .header("x-request-id", "e2e-1")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["x-request-id"], "e2e-1");
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], "e2e-1");

    let log = server.log_lines().to_vec();
    assert!(
        log.iter().any(|l| l.contains("plaintext")),
        "no plaintext warning in {log:?}"
    );
    assert!(
        !log.iter().any(|l| l.contains(test.runtime_url())),
        "the database URL was logged"
    );
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn ac_3_serve_refuses_a_superuser_database_role() {
    let test = TestDb::new().await.unwrap();
    let output = run(command(&test)
        .env("PORTCULLIS_DATABASE__URL", test.admin_url())
        .arg("serve"));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is a superuser"), "{stderr}");
}

#[tokio::test]
async fn a_missing_or_bad_setting_is_named_before_anything_starts() {
    let test = TestDb::new().await.unwrap();
    let output = run(command(&test)
        .env_remove("PORTCULLIS_DATABASE__URL")
        .arg("serve"));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PORTCULLIS_DATABASE__URL"), "{stderr}");

    let output = run(command(&test)
        .env("PORTCULLIS_SERVER__LISTEN", "nowhere")
        .arg("serve"));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("server.listen"), "{stderr}");

    let output = run(command(&test)
        .env("PORTCULLIS_SERVER__LISTNE", "x")
        .arg("serve"));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("listne"), "{stderr}");
}

#[tokio::test]
async fn av_3_metrics_can_live_on_a_listener_of_their_own() {
    let test = TestDb::new().await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = command(&test);
    command.env(
        "PORTCULLIS_SERVER__METRICS_LISTEN",
        format!("127.0.0.1:{port}"),
    );
    let server = Server::start(command);
    let client = reqwest::Client::builder().build().unwrap();
    let main = client.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(main.status(), 404, "metrics stay off the public listener");
    let mut scraped = None;
    for _ in 0..50 {
        if let Ok(response) = client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
        {
            scraped = Some(response.text().await.unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let text = scraped.expect("the metrics listener answers");
    assert!(text.contains("portcullis_http_requests"), "{text}");
}

/// AU-2 through the binary's own listener and configuration: the audit trail records the
/// connecting address, and the `X-Forwarded-For` address only when the peer is one of
/// `server.trusted_proxies`.
#[tokio::test]
async fn au_2_client_ip_in_the_audit_trail_follows_the_configured_trusted_proxies() {
    let setup = crate::support::setup().await;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    for (trusted, expected) in [
        (None, "127.0.0.1"),
        (Some("[\"127.0.0.0/8\"]"), "198.51.100.23"),
    ] {
        let mut command = crate::support::command(&setup.test);
        if let Some(trusted) = trusted {
            command.env("PORTCULLIS_SERVER__TRUSTED_PROXIES", trusted);
        }
        let server = crate::support::Server::start(command);
        let request_id = format!("au2-e2e-{}", trusted.is_some());
        let created = client
            .post(server.url(&format!("/admin/v1/orgs/{}/teams", setup.org)))
            .bearer_auth(&setup.master)
            .header("x-request-id", &request_id)
            .header("x-forwarded-for", "198.51.100.23")
            .header("user-agent", "au2-e2e/1.0")
            .json(&serde_json::json!({"name": request_id}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
        let trail: serde_json::Value = client
            .get(server.url(&format!(
                "/admin/v1/orgs/{}/audit?action=team.created&limit=1000",
                setup.org
            )))
            .bearer_auth(&setup.master)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let events = trail["events"].as_array().unwrap();
        let entry = events
            .iter()
            .find(|e| e["request_id"] == request_id.as_str())
            .unwrap_or_else(|| panic!("no entry for {request_id}: {trail}"));
        assert_eq!(
            (entry["client_ip"].as_str(), entry["user_agent"].as_str()),
            (Some(expected), Some("au2-e2e/1.0")),
            "trusted proxies {trusted:?}: {entry}"
        );
        server.terminate();
    }
}

/// AV-3: the binary's own OTLP exporter (not an in-memory one) sends the request path's spans
/// to a collector: the root `request` span with the request's id and org, and the spans of
/// the data plane, in OTLP/HTTP protobuf; no virtual key among them. The collector here
/// stores what it is sent; the spans are flushed when the process stops. (Two worker threads:
/// waiting for the exit blocks one, and the collector must answer meanwhile.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av_3_the_binary_exports_request_spans_over_otlp() {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<(String, bytes::Bytes)>>> = Arc::default();
    let collector = {
        let received = Arc::clone(&received);
        axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
                let received = Arc::clone(&received);
                async move {
                    let kind = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    received.lock().unwrap().push((kind, body));
                    axum::http::StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, collector).await.unwrap() });

    let setup = crate::support::setup().await;
    let mut command = crate::support::command(&setup.test);
    command.env("PORTCULLIS_LOG__OTLP_ENDPOINT", &endpoint);
    let server = crate::support::Server::start(command);
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let (_, secret) =
        crate::support::mock_routes_and_key(&client, &setup, &server, &[("chat", "mock-1")]).await;
    let response = client
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .header("x-request-id", "otlp-e2e-request")
        .json(
            &serde_json::json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The exporter's batch goes out at the latest when the process stops.
    assert!(server.terminate().success());

    let received = received.lock().unwrap();
    assert!(!received.is_empty(), "the collector received nothing");
    assert!(
        received
            .iter()
            .all(|(kind, _)| kind == "application/x-protobuf"),
        "{:?}",
        received.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    // Protobuf keeps strings as their bytes: names and values are found as written.
    let all: Vec<u8> = received.iter().flat_map(|(_, b)| b.to_vec()).collect();
    let has = |text: &str| all.windows(text.len()).any(|w| w == text.as_bytes());
    for expected in [
        "portcullis",
        "request",
        "otlp-e2e-request",
        setup.org.as_str(),
        "auth",
        "budget.reserve",
        "upstream",
        "budget.settle",
    ] {
        assert!(has(expected), "no {expected:?} in the exported spans");
    }
    assert!(
        !has(&secret) && !has(&secret[4..]),
        "a virtual key was exported"
    );
}
