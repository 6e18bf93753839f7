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

/// Routes `gpt-4o-mini` to an OpenAI-compatible credential `name` at `base_url`.
async fn route_to(
    client: &reqwest::Client,
    setup: &crate::support::Setup,
    server: &Server,
    name: &str,
    api_key: &str,
    base_url: &str,
) {
    let admin = |method, path: &'static str, body| {
        crate::support::admin(client, setup, server, method, path, body)
    };
    let credential = admin(
        reqwest::Method::POST,
        "/credentials",
        json!({"name": name, "provider": "openai_compatible", "api_key": api_key,
               "base_url": base_url}),
    )
    .await;
    admin(
        reqwest::Method::PUT,
        "/routes/gpt-4o-mini",
        json!({"targets": [{"credential_id": credential["credential_id"], "model": "gpt-4o-mini"}]}),
    )
    .await;
}

/// An OpenAI-compatible upstream that answers every chat with "ok".
async fn plain_upstream() -> std::net::SocketAddr {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|| async {
            axum::Json(json!({"id": "x", "object": "chat.completion", "created": 0,
                "model": "gpt-4o-mini",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av_4_proxy_variables_in_the_environment_do_not_decide_where_provider_keys_go() {
    let setup = setup().await;
    let upstream = plain_upstream().await;
    // Whoever can set the process's environment points every proxy variable at a listener
    // that would see the provider key; it must never be reached.
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let proxy = format!("http://{}", trap.local_addr().unwrap());
    let mut command = command(&setup.test);
    for name in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        command.env(name, &proxy);
    }
    command.env_remove("NO_PROXY").env_remove("no_proxy");
    let server = Server::start(command);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let admin = |method, path: &'static str, body| {
        crate::support::admin(&client, &setup, &server, method, path, body)
    };
    route_to(
        &client,
        &setup,
        &server,
        "plain",
        "sk-plain-0123",
        &format!("http://{upstream}/v1"),
    )
    .await;
    let key = admin(reqwest::Method::POST, "/keys", json!({"name": "plain"})).await;
    let answer = client
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(key["secret"].as_str().unwrap())
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    assert!(
        trap.accept().is_err(),
        "the proxy from the environment was reached"
    );
}

/// A TCP forwarder on loopback in front of `to`, as a load balancer in front of a gateway.
async fn forwarder(to: std::net::SocketAddr) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av_4_a_base_url_pointing_back_at_the_gateway_ends_within_a_second() {
    let setup = setup().await;
    let server = Server::start(command(&setup.test));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let admin = |method, path: &'static str, body| {
        crate::support::admin(&client, &setup, &server, method, path, body)
    };
    let key = admin(reqwest::Method::POST, "/keys", json!({"name": "looped"})).await;
    let secret = key["secret"].as_str().unwrap().to_owned();
    let credentials = server.url(&format!("/admin/v1/orgs/{}/credentials", setup.org));
    // The gateway's own listener is never an upstream, however it is written, even with
    // loopback allowed.
    for base_url in [
        server.url("/v1"),
        format!("http://localhost:{}/v1", server.addr.port()),
        format!("http://0.0.0.0:{}/v1", server.addr.port()),
    ] {
        let refused = client
            .post(&credentials)
            .bearer_auth(&setup.master)
            .json(
                &json!({"name": "self", "provider": "openai_compatible", "api_key": secret,
                          "base_url": base_url}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400, "{base_url}");
        let body: serde_json::Value = refused.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("points at this gateway"),
            "{base_url}: {message}"
        );
    }
    // Through something in front of it (a load balancer), the org's own key sent back to the
    // gateway itself: the hop header ends the loop.
    let front = forwarder(server.addr).await;
    route_to(
        &client,
        &setup,
        &server,
        "self",
        &secret,
        &format!("http://{front}/v1"),
    )
    .await;
    let started = Instant::now();
    let answer = client
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    let status = answer.status().as_u16();
    assert!(status == 502 || status == 508, "the loop answered {status}");
    assert!(took < Duration::from_secs(1), "the loop ran for {took:?}");
    // A request that says it went through too many gateways is refused at once, keyless too.
    let refused = client
        .post(server.url("/v1/chat/completions"))
        .header("x-portcullis-hops", "3")
        .json(&json!({"model": "gpt-4o-mini", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 508);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "loop_detected");
}

/// Provider keys go to loopback and private networks only where the operator said so: refused
/// when the credential is saved, and again when it is called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av_4_a_loopback_base_url_is_refused_without_the_allowlist_and_accepted_with_it() {
    let setup = setup().await;
    let upstream = plain_upstream().await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut closed = command(&setup.test);
    closed.env_remove("PORTCULLIS_PROVIDERS__ALLOW_PRIVATE_NETWORKS");
    let server = Server::start(closed);
    let credentials = server.url(&format!("/admin/v1/orgs/{}/credentials", setup.org));
    for base_url in [
        format!("http://{upstream}/v1"),
        format!("http://localhost:{}/v1", upstream.port()),
        "http://10.1.2.3/v1".to_owned(),
        "http://[fd00::1]/v1".to_owned(),
        "http://100.64.0.1/v1".to_owned(),
    ] {
        let refused = client
            .post(&credentials)
            .bearer_auth(&setup.master)
            .json(&json!({"name": "local", "provider": "openai_compatible",
                          "api_key": "sk-local-0123", "base_url": base_url}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400, "{base_url}");
        let body: serde_json::Value = refused.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("providers.allow_private_networks"),
            "{message}"
        );
    }
    drop(server);

    // Allowed: saved and served.
    let server = Server::start(command(&setup.test));
    let admin = |method, path: &'static str, body| {
        crate::support::admin(&client, &setup, &server, method, path, body)
    };
    route_to(
        &client,
        &setup,
        &server,
        "local",
        "sk-local-0123",
        &format!("http://{upstream}/v1"),
    )
    .await;
    let key = admin(reqwest::Method::POST, "/keys", json!({"name": "local"})).await;
    let secret = key["secret"].as_str().unwrap().to_owned();
    let chat = |client: reqwest::Client, url: String, secret: String| async move {
        client
            .post(url)
            .bearer_auth(secret)
            .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap()
    };
    let served = chat(
        client.clone(),
        server.url("/v1/chat/completions"),
        secret.clone(),
    )
    .await;
    assert_eq!(served.status(), 200);
    drop(server);

    // The allowlist taken away: the stored credential is refused when it is called.
    let mut closed = command(&setup.test);
    closed.env_remove("PORTCULLIS_PROVIDERS__ALLOW_PRIVATE_NETWORKS");
    let server = Server::start(closed);
    let refused = chat(client.clone(), server.url("/v1/chat/completions"), secret).await;
    assert_eq!(refused.status(), 502);
}

/// The template that took the process to 1,454 MiB: refused when it is written, and refused
/// when a version written before the rule is rendered, with the process under 128 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av_4_a_template_that_grows_a_string_without_bound_is_refused_and_costs_no_memory() {
    const ATTACK: &str =
        "{% set a = 'x' * 100000000 %}{% set b = a ~ a ~ a ~ a ~ a %}{{ b | length }}";
    let setup = setup().await;
    let server = Server::start(command(&setup.test));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let (_, secret) =
        mock_routes_and_key(&client, &setup, &server, &[("gpt-4o-mini", "gpt-4o-mini")]).await;
    let prompts = server.url(&format!("/admin/v1/orgs/{}/prompts", setup.org));
    let refused = client
        .post(&prompts)
        .bearer_auth(&setup.master)
        .json(&json!({"name": "grow", "messages": [{"role": "system", "content": ATTACK}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: serde_json::Value = refused.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("not allowed in a prompt"), "{message}");

    // A version stored before the rule (versions are never rewritten) is refused at render.
    // Written as the database's administrator would have: the gateway cannot write it now.
    crate::support::admin(
        &client,
        &setup,
        &server,
        reqwest::Method::POST,
        "/prompts",
        json!({"name": "old", "messages": [{"role": "system", "content": "hello"}]}),
    )
    .await;
    sqlx::query(
        "insert into prompt_versions (org_id, prompt_id, version, messages) \
         select org_id, prompt_id, 2, $1 from prompts where name = 'old'",
    )
    .bind(json!([{"role": "system", "content": ATTACK}]))
    .execute(
        &mut <sqlx::PgConnection as sqlx::Connection>::connect(setup.test.admin_url())
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let answer = client
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(
            &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                      "prompt": {"name": "old", "version": 2}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400, "{}", answer.text().await.unwrap());
    let peak = peak_mib(&server);
    assert!(peak < 128, "peak {peak} MiB");
}

/// An upstream that answers 1 GiB, without a length: as JSON, and as one endless event.
async fn flooding_upstream() -> std::net::SocketAddr {
    async fn flood(body: bytes::Bytes) -> axum::response::Response {
        let streamed =
            serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|b| b["stream"] == true);
        let (head, content_type) = if streamed {
            (
                "data: {\"choices\":[{\"delta\":{\"content\":\"",
                "text/event-stream",
            )
        } else {
            (
                "{\"choices\":[{\"message\":{\"content\":\"",
                "application/json",
            )
        };
        let piece = bytes::Bytes::from(vec![b'x'; 1 << 20]);
        let pieces = futures_util::stream::iter(
            std::iter::once(bytes::Bytes::from_static(head.as_bytes()))
                .chain(std::iter::repeat_n(piece, 1024))
                .map(Ok::<_, std::io::Error>),
        );
        axum::response::Response::builder()
            .header("content-type", content_type)
            .body(axum::body::Body::from_stream(pieces))
            .unwrap()
    }
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(flood));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// 1 GiB from the upstream, streamed or not, is 502 and the process stays under 128 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av_4_a_one_gib_upstream_answer_is_502_and_the_process_stays_under_128_mib() {
    let setup = setup().await;
    let upstream = flooding_upstream().await;
    let server = Server::start(command(&setup.test));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let admin = |method, path: &'static str, body| {
        crate::support::admin(&client, &setup, &server, method, path, body)
    };
    route_to(
        &client,
        &setup,
        &server,
        "flood",
        "sk-flood-0123",
        &format!("http://{upstream}/v1"),
    )
    .await;
    let key = admin(reqwest::Method::POST, "/keys", json!({"name": "flood"})).await;
    let secret = key["secret"].as_str().unwrap();
    for stream in [false, true] {
        let answer = client
            .post(server.url("/v1/chat/completions"))
            .bearer_auth(secret)
            .json(&json!({"model": "gpt-4o-mini", "stream": stream,
                          "messages": [{"role": "user", "content": "hi"}]}))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 502, "stream {stream}");
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "upstream_error", "stream {stream}");
    }
    let peak = peak_mib(&server);
    assert!(peak < 128, "peak {peak} MiB");
}

/// A replica started with the wrong key-encryption key answered `/readyz` 200 and wrapped new
/// orgs' data keys that no correct replica could open: now it does not start. After `kek
/// rotate`, the retired key is no longer needed to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av_4_serve_refuses_to_start_with_a_keyring_that_does_not_open_the_canary() {
    const WRONG: &str = "d3Jvbmcgd3Jvbmcgd3Jvbmcgd3Jvbmcgd3Jvbmc0MjE=";
    const NEXT: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
    // The harness's key, which bootstrapped the database and so sealed its canary.
    const FIRST: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let setup = setup().await;
    let mut wrong = command(&setup.test);
    wrong.env("PORTCULLIS_SECRETS__KEK", WRONG);
    let (status, stderr) = crate::support::serve_exits(wrong);
    assert!(!status.success());
    assert!(
        stderr.contains("does not open this database's canary"),
        "{stderr}"
    );
    assert!(!stderr.contains("\"listening\""), "{stderr}");
    assert!(
        !stderr.contains(WRONG) && !stderr.contains(FIRST),
        "a key reached the log"
    );

    let rotated = crate::support::run(
        command(&setup.test)
            .env("PORTCULLIS_SECRETS__KEK", NEXT)
            .env("PORTCULLIS_SECRETS__KEK_VERSION", "2")
            .env("PORTCULLIS_SECRETS__PREVIOUS_KEKS", format!("1:{FIRST}"))
            .args(["kek", "rotate"]),
    );
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let mut next = command(&setup.test);
    next.env("PORTCULLIS_SECRETS__KEK", NEXT)
        .env("PORTCULLIS_SECRETS__KEK_VERSION", "2");
    let server = Server::start(next);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    drop(server);
    // A wrong key under version 2, the right one as version 1: version 2's canary says no.
    let mut half = command(&setup.test);
    half.env("PORTCULLIS_SECRETS__KEK", WRONG)
        .env("PORTCULLIS_SECRETS__KEK_VERSION", "2")
        .env("PORTCULLIS_SECRETS__PREVIOUS_KEKS", format!("1:{FIRST}"));
    let (status, stderr) = crate::support::serve_exits(half);
    assert!(!status.success());
    assert!(stderr.contains("canary for key version 2"), "{stderr}");
}

/// Connections past `server.max_connections` wait until one ends: the process does not take
/// on buffers and a task for every connection a client opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av_4_connections_past_the_limit_wait_for_a_slot() {
    let setup = setup().await;
    let mut limited = command(&setup.test);
    limited
        .env("PORTCULLIS_SERVER__MAX_CONNECTIONS", "2")
        .env("PORTCULLIS_SERVER__HEADER_READ_TIMEOUT_SECS", "1");
    let server = Server::start(limited);
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    let ask = |wait: Duration| {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream.set_read_timeout(Some(wait)).unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    };
    // Both slots are held by connections that send nothing: a third is not served.
    let waiting = ask(Duration::from_millis(700));
    assert!(waiting.is_empty(), "served past the limit: {waiting}");
    drop(held);
    let served = ask(Duration::from_secs(5));
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    // Connections that never send a request (or 23 bytes of an HTTP/2 preface, which has no
    // timeout of its own) are closed after the handshake and head times: slots come back.
    let mut silent: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    silent[1]
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n")
        .unwrap();
    let started = Instant::now();
    for stream in &mut silent {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "held for {:?}",
        started.elapsed()
    );
    let served = ask(Duration::from_secs(5));
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
}
