//! AV-4 against the real binary, measured from outside: what an anonymous client can make the
//! shared process hold. Peak memory is the process's `VmHWM` in /proc.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Server, command, mock_routes_and_key, setup};

/// The process's peak resident memory, in MiB.
fn peak_mib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap()
        .to_owned();
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av_4_sixty_four_concurrent_bad_logins_keep_the_process_under_128_mib() {
    let setup = setup().await;
    let server = Server::start(command(&setup.test));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let url = server.url("/auth/v1/login");
    let logins: Vec<_> = (0..64)
        .map(|n| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let body = json!({"email": format!("nobody{n}@e2e.example"),
                                  "password": "not anyone's password"});
                client
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();
    for login in logins {
        let status = login.await.unwrap();
        assert!(
            status == 401 || status == 503,
            "a bad login answered {status}"
        );
    }
    let peak = peak_mib(&server);
    assert!(peak < 128, "64 logins took the process to {peak} MiB");
}

/// Sends a request head and nothing of its body; what the server answers within `wait`.
fn head_only(server: &Server, head: &str, wait: Duration) -> (String, Duration) {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    let mut answer = vec![0u8; 4096];
    let read = stream.read(&mut answer).unwrap_or(0);
    (
        String::from_utf8_lossy(&answer[..read]).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av_4_a_keyless_body_is_refused_before_it_is_sent_and_a_stalled_one_is_cut() {
    let setup = setup().await;
    let mut command = command(&setup.test);
    command.env("PORTCULLIS_SERVER__BODY_READ_TIMEOUT_SECS", "1");
    let server = Server::start(command);
    // No key, 16 MB announced, nothing sent: 401 at once, not after reading the body.
    let (answer, took) = head_only(
        &server,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
         content-length: 16000000\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    // With a key, a body that stalls is cut with 408 after the body timeout.
    let client = reqwest::Client::builder().build().unwrap();
    let (_, secret) = mock_routes_and_key(&client, &setup, &server, &[("chat", "mock-1")]).await;
    let (answer, took) = head_only(
        &server,
        &format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nauthorization: Bearer {secret}\r\n\
             content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"model\""
        ),
        Duration::from_secs(5),
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took < Duration::from_secs(3), "cut after {took:?}");
}
