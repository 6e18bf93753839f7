//! EN-1 end to end: the listener serves TLS (HTTP/2 and HTTP/1.1) with a certificate made in
//! the test, refuses plaintext, reloads a changed certificate without a restart and sends HSTS;
//! and the gateway refuses a provider whose certificate it does not trust.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::support::{Server, admin, command, setup};

struct Pair {
    cert: String,
    key: String,
}

fn certificate() -> Pair {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    Pair {
        cert: made.cert.pem(),
        key: made.key_pair.serialize_pem(),
    }
}

fn write(dir: &Path, pair: &Pair) {
    std::fs::write(dir.join("cert.pem"), &pair.cert).unwrap();
    std::fs::write(dir.join("key.pem"), &pair.key).unwrap();
}

/// A client that trusts only `pair`, and reaches `localhost` at the server.
fn client(server: &Server, pair: &Pair, http1_only: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pair.cert.as_bytes()).unwrap())
        .resolve("localhost", server.addr)
        .timeout(Duration::from_secs(5));
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

fn https(server: &Server, path: &str) -> String {
    format!("https://localhost:{}{path}", server.addr.port())
}

#[tokio::test]
async fn en_1_tls_end_to_end_plaintext_refused_certificate_reloaded_untrusted_provider_refused() {
    let setup = setup().await;
    let dir = std::env::temp_dir().join(format!("portcullis-tls-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let first = certificate();
    write(&dir, &first);
    let mut tls_command = command(&setup.test);
    tls_command
        .env("PORTCULLIS_SERVER__PLAINTEXT", "false")
        .env("PORTCULLIS_SERVER__TLS_CERT_FILE", dir.join("cert.pem"))
        .env("PORTCULLIS_SERVER__TLS_KEY_FILE", dir.join("key.pem"))
        .env("PORTCULLIS_SERVER__TLS_RELOAD_SECS", "1");
    let tls_server = Server::start(tls_command);

    // HTTP/2 by ALPN, and HTTP/1.1 for a client that only speaks it.
    let h2 = client(&tls_server, &first, false)
        .get(https(&tls_server, "/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(h2.status(), 200);
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
    let h1 = client(&tls_server, &first, true)
        .get(https(&tls_server, "/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (h1.status().as_u16(), h1.version()),
        (200, reqwest::Version::HTTP_11)
    );
    // Auth and admin answers tell browsers to stay on TLS.
    let me = client(&tls_server, &first, false)
        .get(https(&tls_server, "/auth/v1/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
    assert!(
        me.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );

    // Plaintext to the TLS port gets no answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!(
            "http://127.0.0.1:{}/healthz",
            tls_server.addr.port()
        ))
        .send()
        .await;
    assert!(plain.is_err(), "plaintext was served: {plain:?}");
    // A client that does not trust the certificate refuses the server.
    let stranger = reqwest::Client::builder()
        .resolve("localhost", tls_server.addr)
        .build()
        .unwrap()
        .get(https(&tls_server, "/healthz"))
        .send()
        .await;
    assert!(stranger.is_err());

    // A new certificate on disk is served to new connections without a restart.
    let second = certificate();
    write(&dir, &second);
    let mut reloaded = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if client(&tls_server, &second, false)
            .get(https(&tls_server, "/healthz"))
            .send()
            .await
            .is_ok()
        {
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "the new certificate was not served within 10 s");
    assert!(
        client(&tls_server, &first, false)
            .get(https(&tls_server, "/healthz"))
            .send()
            .await
            .is_err(),
        "the old certificate is still served"
    );

    // A provider whose certificate the gateway does not trust (this TLS listener, self-signed)
    // is refused: the request fails over to nothing, and the provider key never leaves.
    let plain_server = Server::start(command(&setup.test));
    let http = reqwest::Client::builder().build().unwrap();
    let credential = admin(
        &http,
        &setup,
        &plain_server,
        reqwest::Method::POST,
        "/credentials",
        json!({"name": "self-signed", "provider": "openai_compatible", "api_key": "sk-untrusted-0123456789",
               "base_url": format!("https://127.0.0.1:{}/v1", tls_server.addr.port())}),
    )
    .await;
    admin(
        &http,
        &setup,
        &plain_server,
        reqwest::Method::PUT,
        "/routes/untrusted",
        json!({"targets": [{"credential_id": credential["credential_id"], "model": "m"}],
               "unpriced": true}),
    )
    .await;
    let key = admin(
        &http,
        &setup,
        &plain_server,
        reqwest::Method::POST,
        "/keys",
        json!({"name": "traffic"}),
    )
    .await;
    let response = http
        .post(plain_server.url("/v1/chat/completions"))
        .bearer_auth(key["secret"].as_str().unwrap())
        .json(&json!({"model": "untrusted", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "upstream_unavailable");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without a certificate and without `server.plaintext` said, `serve` does not start: a
/// deployment cannot fall back to plaintext by forgetting its certificate.
#[tokio::test]
async fn en_1_serve_refuses_to_start_without_tls_or_plaintext_said() {
    let setup = setup().await;
    let mut bare = command(&setup.test);
    bare.env_remove("PORTCULLIS_SERVER__PLAINTEXT");
    let (status, stderr) = crate::support::serve_exits(bare);
    assert!(!status.success());
    assert!(stderr.contains("no TLS certificate"), "{stderr}");
    assert!(!stderr.contains("\"listening\""), "{stderr}");
}
