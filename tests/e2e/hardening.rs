//! The HTTP surface against hostile or broken clients, on the real binary: a slow client is cut
//! off, an oversized head refused, duplicate JSON keys and deep nesting refused with the
//! envelope, a crafted Host header or absolute URI never changes the route or its guard, and
//! a request in flight at SIGTERM still gets its answer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, command, mock_routes_and_key, setup};

/// Writes `raw` and reads until the server closes or answers; what it answered.
fn raw_exchange(server: &Server, raw: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.write_all(raw).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av_4_hostile_clients_get_4xx_or_are_cut_off_and_shutdown_drains() {
    let setup = setup().await;
    let mut command = command(&setup.test);
    command.env("PORTCULLIS_SERVER__HEADER_READ_TIMEOUT_SECS", "1");
    let mut server = Server::start(command);
    let client = reqwest::Client::builder().build().unwrap();

    // A client that never finishes its head is cut off after the header-read timeout.
    let started = Instant::now();
    let answer = raw_exchange(
        &server,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
        Duration::from_secs(5),
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "slow client held for {:?}",
        started.elapsed()
    );
    assert!(!answer.contains("200 OK"), "{answer}");

    // An oversized head is refused with a 4xx.
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let answer = raw_exchange(&server, big.as_bytes(), Duration::from_secs(5));
    assert!(
        answer.starts_with("HTTP/1.1 4"),
        "{}",
        &answer[..answer.len().min(200)]
    );

    // An absolute URI or a crafted Host never changes the route or its guard.
    for raw in [
        format!(
            "GET http://evil.example/admin/v1/orgs/{}/audit HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
            setup.org
        ),
        format!(
            "GET /admin/v1/orgs/{}/audit HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Host: admin.internal\r\nConnection: close\r\n\r\n",
            setup.org
        ),
    ] {
        let answer = raw_exchange(&server, raw.as_bytes(), Duration::from_secs(5));
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(answer.contains("\"invalid_api_key\""), "{answer}");
    }

    // Duplicate keys and deep nesting: 400 in the envelope, on both planes.
    let (_, secret) = mock_routes_and_key(
        &client,
        &setup,
        &server,
        &[("chat", "mock-1"), ("slow", "mock-slow-1500")],
    )
    .await;
    let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    for (path, token, body) in [
        (
            "/v1/chat/completions",
            secret.as_str(),
            r#"{"model": "chat", "model": "other", "messages": []}"#.to_owned(),
        ),
        (
            "/v1/chat/completions",
            secret.as_str(),
            format!(
                r#"{{"model": "chat", "messages": [{{"role": "user", "content": "x"}}], "x": {deep}}}"#
            ),
        ),
        (
            "/admin/v1/orgs/ORG/keys",
            setup.master.as_str(),
            r#"{"name": "a", "name": "b"}"#.to_owned(),
        ),
    ] {
        let path = path.replace("ORG", &setup.org);
        let response = client
            .post(server.url(&path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_json", "{path}: {body}");
    }

    // A request in flight at SIGTERM still gets its answer; then the process exits.
    let slow = {
        let client = client.clone();
        let url = server.url("/v1/chat/completions");
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(secret)
                .json(&json!({"model": "slow", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = tokio::task::spawn_blocking(move || {
        let status = server.stop();
        (status, server)
    });
    assert_eq!(
        slow.await.unwrap().unwrap(),
        200,
        "the request in flight was cut"
    );
    let (status, _server) = stopped.await.unwrap();
    assert!(status.success());
}
