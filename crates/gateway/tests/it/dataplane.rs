//! The data plane: virtual-key authentication (AC-2), chat completions through routes with
//! fallback (AV-1), streaming, model allowlists, and cache invalidation across processes.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use portcullis_gateway::{AppState, dataplane};
use serde_json::{Value, json};

use crate::support::{Call, Env, Who};

const DATA_PLANE: [(&str, &str); 3] = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/embeddings"),
    ("GET", "/v1/models"),
];

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hello"}], "stream": stream,
           "stream_options": {"include_usage": true}})
}

#[tokio::test]
async fn ac_2_only_virtual_keys_carry_traffic() {
    let env = Env::new().await;
    env.mock_route("chat", &["mock-1"]).await;
    // Every prompt route the data plane serves, and the model list; a route added later is
    // in `prompt_routes()` and so in this test.
    let mut routes: Vec<(Method, &str)> = portcullis_gateway::dataplane::prompt_routes()
        .into_iter()
        .map(|path| (Method::POST, path))
        .collect();
    routes.push((Method::GET, "/v1/models"));
    assert!(routes.len() > DATA_PLANE.len(), "{routes:?}");
    for (method, path) in routes {
        let body = match path {
            "/v1/embeddings" => Some(json!({"model": "chat", "input": "hello"})),
            "/v1/messages" => Some(json!({"model": "chat", "max_tokens": 16,
                                          "messages": [{"role": "user", "content": "hi"}]})),
            "/v1/responses" => Some(json!({"model": "chat", "input": "hi"})),
            "/v1/completions" => Some(json!({"model": "chat", "prompt": "hi"})),
            _ => (method == Method::POST).then(|| chat("chat", false)),
        };
        // A master key and sessions never carry traffic, as a bearer token or as `x-api-key`.
        for who in [Who::Master, Who::Owner, Who::Admin] {
            let token = env.token(who).unwrap().to_owned();
            let bearer = env.call(method.clone(), path, who, body.clone()).await;
            let mut call = Call::new(method.clone(), path, None, body.clone());
            call.headers.push(("x-api-key", token));
            let header = env.send(call).await;
            for (how, response) in [("bearer", bearer), ("x-api-key", header)] {
                assert_eq!(
                    (response.status, response.body["error"]["code"].as_str()),
                    (StatusCode::FORBIDDEN, Some("wrong_key_kind")),
                    "{path} as {who:?} by {how}: {}",
                    response.body
                );
            }
        }
        let none = env
            .call(method.clone(), path, Who::Nobody, body.clone())
            .await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED);
        let malformed = env
            .call_as(method.clone(), path, "pcv_not-a-real-key", body.clone())
            .await;
        assert_eq!(malformed.body["error"]["code"], "invalid_api_key");
        let ok = env.call(method, path, Who::VirtualKey, body).await;
        assert_eq!(ok.status, StatusCode::OK, "{path}: {}", ok.body);
    }
}

#[tokio::test]
async fn chat_completions_are_served_through_the_route() {
    let env = Env::new().await;
    env.mock_route("chat", &["mock-1"]).await;
    let response = env
        .call(
            Method::POST,
            "/v1/chat/completions",
            Who::VirtualKey,
            Some(chat("chat", false)),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.body["object"], "chat.completion");
    assert!(
        response.body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("mock")
    );
    assert!(
        response.headers["x-portcullis-target"]
            .to_str()
            .unwrap()
            .ends_with(":mock-1")
    );
    assert_eq!(response.headers["x-portcullis-attempts"], "1");
    assert!(response.headers.contains_key("x-request-id"));

    let anthropic_style = env
        .send({
            let mut call = crate::support::Call::new(
                Method::POST,
                "/v1/chat/completions",
                None,
                Some(chat("chat", false)),
            );
            call.headers.push(("x-api-key", env.virtual_key.clone()));
            call
        })
        .await;
    assert_eq!(anthropic_style.status, StatusCode::OK);
}

#[tokio::test]
async fn streams_end_with_done_and_carry_usage_when_asked() {
    let env = Env::new().await;
    env.mock_route("chat", &["mock-1"]).await;
    let app = env.app(crate::support::UNTRUSTED_PEER);
    let request = axum::http::Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {}", env.virtual_key))
        .header("content-type", "application/json")
        // Clients ask for JSON even when they stream: the body decides.
        .header("accept", "application/json")
        .body(axum::body::Body::from(chat("chat", true).to_string()))
        .unwrap();
    let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(text.contains("\"usage\":{"), "{text}");
}

#[tokio::test]
async fn av_1_a_failing_target_falls_back_and_total_failure_is_an_upstream_error() {
    let env = Env::new().await;
    env.mock_route("flaky", &["mock-error-500", "mock-1"]).await;
    let response = env
        .call(
            Method::POST,
            "/v1/chat/completions",
            Who::VirtualKey,
            Some(chat("flaky", false)),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.headers["x-portcullis-attempts"], "2");
    assert!(
        response.headers["x-portcullis-target"]
            .to_str()
            .unwrap()
            .ends_with(":mock-1")
    );

    env.mock_route("down", &["mock-refuse"]).await;
    let response = env
        .call(
            Method::POST,
            "/v1/chat/completions",
            Who::VirtualKey,
            Some(chat("down", false)),
        )
        .await;
    assert_eq!(
        response.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        response.body
    );
    assert_eq!(response.body["error"]["code"], "upstream_unavailable");
    assert!(response.headers.contains_key("retry-after"));

    env.mock_route("broken", &["mock-error-502"]).await;
    let response = env
        .call(
            Method::POST,
            "/v1/chat/completions",
            Who::VirtualKey,
            Some(chat("broken", false)),
        )
        .await;
    assert_eq!(response.status, StatusCode::BAD_GATEWAY);
    assert_eq!(response.body["error"]["code"], "upstream_error");
}

#[tokio::test]
async fn av_1_fallback_routes_serve_when_the_primary_route_fails() {
    let env = Env::new().await;
    env.mock_route("backup", &["mock-1"]).await;
    let credential = env.add_credential().await;
    let body = json!({"targets": [{"credential_id": credential, "model": "mock-error-503"}], "fallback": ["backup"]});
    let put = env
        .call(
            Method::PUT,
            &env.org_path("/routes/primary"),
            Who::Master,
            Some(body),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    let response = env
        .call(
            Method::POST,
            "/v1/chat/completions",
            Who::VirtualKey,
            Some(chat("primary", false)),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.headers["x-portcullis-attempts"], "2");
}

#[tokio::test]
async fn models_are_listed_and_allowlists_enforced() {
    let env = Env::new().await;
    env.mock_route("chat", &["mock-1"]).await;
    env.mock_route("secret-model", &["mock-1"]).await;
    let (_, limited) = env.virtual_key(Some(&["chat"])).await;
    let listed = env.call_as(Method::GET, "/v1/models", &limited, None).await;
    assert_eq!(listed.body["object"], "list");
    let ids: Vec<&str> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["chat"]);
    let refused = env
        .call_as(
            Method::POST,
            "/v1/chat/completions",
            &limited,
            Some(chat("secret-model", false)),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["error"]["code"], "model_not_allowed");
    let unknown = env
        .call(
            Method::POST,
            "/v1/chat/completions",
            Who::VirtualKey,
            Some(chat("nope", false)),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn client_mistakes_are_4xx_in_the_envelope() {
    let env = Env::new().await;
    env.mock_route("chat", &["mock-1"]).await;
    for (body, code) in [
        (json!({"messages": []}), "invalid_request"),
        (json!({"model": "chat"}), "invalid_request"),
        (json!("just a string"), "invalid_json"),
    ] {
        let response = env
            .call(
                Method::POST,
                "/v1/chat/completions",
                Who::VirtualKey,
                Some(body),
            )
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST);
        assert_eq!(response.body["error"]["code"], code);
    }
    for path in portcullis_gateway::dataplane::NOT_YET {
        let response = env
            .call(Method::POST, path, Who::VirtualKey, Some(json!({})))
            .await;
        assert_eq!(response.status, StatusCode::NOT_FOUND);
        assert_eq!(response.body["error"]["code"], "unsupported_endpoint");
    }
}

#[tokio::test]
async fn ac_2_an_expired_key_is_refused() {
    let env = Env::new().await;
    env.mock_route("chat", &["mock-1"]).await;
    let soon = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let key = env
        .call(
            Method::POST,
            &env.org_path("/keys"),
            Who::Master,
            Some(json!({"name": "short", "expires_at": soon})),
        )
        .await;
    let secret = key.body["secret"].as_str().unwrap().to_owned();
    let first = env.call_as(Method::GET, "/v1/models", &secret, None).await;
    assert_eq!(first.status, StatusCode::OK);
    // Refused from its expiry on: polled, and never before the time it was given.
    crate::support::within(Duration::from_secs(3), StatusCode::UNAUTHORIZED, || async {
        env.call_as(Method::GET, "/v1/models", &secret, None)
            .await
            .status
    })
    .await;
    assert!(chrono::Utc::now() >= soon, "refused before its expiry");
    let later = env.call_as(Method::GET, "/v1/models", &secret, None).await;
    assert_eq!(later.body["error"]["code"], "key_expired");
}

#[tokio::test]
async fn ac_2_a_key_revoked_or_rotated_through_one_process_is_refused_by_another_within_a_second() {
    let env = Env::new().await;
    env.mock_route("chat", &["mock-1"]).await;
    // A second gateway process on the same database, with its own caches and listener.
    let other = AppState::builder(
        env.test.db.clone(),
        portcullis_core::crypto::Keyring::generate().unwrap(),
        crate::support::spend_options(),
    )
    .build()
    .unwrap();
    dataplane::spawn_change_listener(&other);
    // Listening: its first change heard (the drop of everything on connect).
    crate::support::eventually(|| {
        let listening = other.caches.changes_heard() > 0;
        async move { listening.then_some(()) }
    })
    .await;
    let call_other = |secret: String| {
        let app = portcullis_gateway::router(other.clone());
        async move {
            let request = axum::http::Request::get("/v1/models")
                .header("authorization", format!("Bearer {secret}"))
                .body(axum::body::Body::empty())
                .unwrap();
            tower::ServiceExt::oneshot(app, request)
                .await
                .unwrap()
                .status()
        }
    };
    for change in ["revoke", "rotate"] {
        let (key_id, secret) = env.virtual_key(None).await;
        assert_eq!(
            call_other(secret.clone()).await,
            StatusCode::OK,
            "cached on the other process"
        );
        let path = env.org_path(&format!("/keys/{key_id}"));
        let response = if change == "revoke" {
            env.call(Method::DELETE, &path, Who::Owner, None).await
        } else {
            env.call(Method::POST, &format!("{path}/rotate"), Who::Owner, None)
                .await
        };
        assert!(response.status.is_success());
        let started = Instant::now();
        loop {
            if call_other(secret.clone()).await == StatusCode::UNAUTHORIZED {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{change}: still accepted after 1 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    other.background.stop();
}

#[tokio::test]
async fn embeddings_come_as_floats_or_base64() {
    let env = Env::new().await;
    env.mock_route("embed", &["mock-embed"]).await;
    let floats = env
        .call(
            Method::POST,
            "/v1/embeddings",
            Who::VirtualKey,
            Some(json!({"model": "embed", "input": ["a", "b"]})),
        )
        .await;
    assert_eq!(floats.status, StatusCode::OK, "{}", floats.body);
    assert_eq!(floats.body["data"].as_array().unwrap().len(), 2);
    assert!(floats.body["data"][0]["embedding"].is_array());
    let packed = env
        .call(
            Method::POST,
            "/v1/embeddings",
            Who::VirtualKey,
            Some(json!({"model": "embed", "input": "a", "encoding_format": "base64"})),
        )
        .await;
    assert!(
        packed.body["data"][0]["embedding"].is_string(),
        "{}",
        packed.body
    );
    let bad = env
        .call(
            Method::POST,
            "/v1/embeddings",
            Who::VirtualKey,
            Some(json!({"model": "embed", "input": 3})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn anthropic_messages_come_back_in_anthropics_format_streamed_or_not() {
    let env = Env::new().await;
    env.mock_route("claude-sonnet", &["mock-1"]).await;
    let request = json!({"model": "claude-sonnet", "max_tokens": 64, "system": "Be brief.",
                         "messages": [{"role": "user", "content": "Hello"}]});
    let reply = env
        .send({
            let mut call = crate::support::Call::new(
                Method::POST,
                "/v1/messages",
                None,
                Some(request.clone()),
            );
            call.headers.push(("x-api-key", env.virtual_key.clone()));
            call.headers
                .push(("anthropic-version", "2023-06-01".to_owned()));
            call
        })
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["type"], "message");
    assert_eq!(reply.body["model"], "claude-sonnet");
    assert!(
        reply.body["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("mock")
    );
    assert_eq!(reply.body["stop_reason"], "end_turn");
    assert!(reply.body["usage"]["output_tokens"].as_u64().unwrap() > 0);

    let mut streaming = request;
    streaming["stream"] = json!(true);
    let app = env.app(crate::support::UNTRUSTED_PEER);
    let http = axum::http::Request::post("/v1/messages")
        .header("authorization", format!("Bearer {}", env.virtual_key))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(streaming.to_string()))
        .unwrap();
    let response = tower::ServiceExt::oneshot(app, http).await.unwrap();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let kinds: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(kinds.first(), Some(&"message_start"), "{text}");
    assert_eq!(kinds.last(), Some(&"message_stop"), "{text}");
    assert!(kinds.contains(&"content_block_delta"));

    let missing = env
        .call(
            Method::POST,
            "/v1/messages",
            Who::VirtualKey,
            Some(json!({"model": "claude-sonnet", "messages": []})),
        )
        .await;
    assert_eq!(
        missing.status,
        StatusCode::BAD_REQUEST,
        "max_tokens is required"
    );
}

/// An OpenAI-compatible upstream that sends one chunk, then breaks the stream.
async fn breaking_upstream() -> std::net::SocketAddr {
    use axum::body::{Body, Bytes};
    use futures_util::StreamExt;
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|| async {
            let stream = futures_util::stream::iter(0..2).then(|n| async move {
                if n == 0 {
                    Ok(Bytes::from(
                        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"par\"}}]}\n\n",
                    ))
                } else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Err(std::io::Error::other("cut"))
                }
            });
            axum::http::Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
                .unwrap()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn av_1_a_stream_broken_midway_ends_with_a_clean_error_event_and_no_retry() {
    let env = Env::new().await;
    let addr = breaking_upstream().await;
    let credential = env
        .call(
            Method::POST,
            &env.org_path("/credentials"),
            Who::Master,
            Some(json!({"name": "breaking", "provider": "openai_compatible", "api_key": "sk-x-123456",
                        "base_url": format!("http://{addr}/v1")})),
        )
        .await;
    let credential_id = credential.body["credential_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let backup = env.add_credential().await;
    let body = json!({"targets": [{"credential_id": credential_id, "model": "m"}, {"credential_id": backup, "model": "mock-1"}],
                      "input_micro_usd_per_mtok": 1_000_000, "output_micro_usd_per_mtok": 2_000_000});
    let put = env
        .call(
            Method::PUT,
            &env.org_path("/routes/fragile"),
            Who::Master,
            Some(body),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);

    let app = env.app(crate::support::UNTRUSTED_PEER);
    let request = axum::http::Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {}", env.virtual_key))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(chat("fragile", true).to_string()))
        .unwrap();
    let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
    assert_eq!(response.headers()["x-portcullis-attempts"], "1");
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.contains("\"content\":\"par\""), "{text}");
    let last = text
        .trim_end()
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("data: "))
        .unwrap();
    let event: Value = serde_json::from_str(last).unwrap();
    assert_eq!(event["error"]["code"], "upstream_error", "{text}");
    assert!(
        !text.contains("mock provider"),
        "no retry after the first byte: {text}"
    );
}

/// The fill race: a replica reads a key, the key is revoked and the change is heard, and only
/// then does the fill insert. The change must win, or the revoked key works for the whole TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ac_2_a_key_revoked_while_a_replica_fills_its_cache_is_still_refused_within_a_second() {
    let env = Env::new().await;
    env.mock_route("chat", &["mock-1"]).await;
    // Every fill of this replica waits 400 ms between its read and its insert.
    let replica = crate::support::Replica::start(
        &env,
        portcullis_gateway::dataplane::Caches::with_fill_delay(Duration::from_millis(400)),
    )
    .await;
    for change in ["revoke", "rotate"] {
        let (key_id, secret) = env.virtual_key(None).await;
        let filling = replica.models_status(&secret);
        let revoking = async {
            // Well inside the fill's pause: its read is done, its insert not yet.
            tokio::time::sleep(Duration::from_millis(150)).await;
            let path = env.org_path(&format!("/keys/{key_id}"));
            let response = if change == "revoke" {
                env.call(Method::DELETE, &path, Who::Owner, None).await
            } else {
                env.call(Method::POST, &format!("{path}/rotate"), Who::Owner, None)
                    .await
            };
            assert!(response.status.is_success(), "{}", response.body);
        };
        let (first, ()) = tokio::join!(filling, revoking);
        // The request that read the key before the change may be served.
        assert_eq!(first, StatusCode::OK, "{change}");
        crate::support::within(Duration::from_secs(1), StatusCode::UNAUTHORIZED, || {
            replica.models_status(&secret)
        })
        .await;
        // And it stays refused: nothing put it back.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            replica.models_status(&secret).await,
            StatusCode::UNAUTHORIZED,
            "{change}: the revoked key came back"
        );
    }
}

/// The same race for routes: a route removed while a replica resolves it stays removed there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ac_2_a_route_removed_while_a_replica_fills_its_cache_is_gone_there_within_a_second() {
    let env = Env::new().await;
    env.mock_route("doomed", &["mock-1"]).await;
    let (_, secret) = env.virtual_key(None).await;
    let replica = crate::support::Replica::start(
        &env,
        portcullis_gateway::dataplane::Caches::with_fill_delay(Duration::from_millis(400)),
    )
    .await;
    // The key's own fill first, so that only the route's fill is in flight below.
    assert_eq!(replica.models_status(&secret).await, StatusCode::OK);
    let filling = replica.chat_status(&secret, "doomed");
    let removing = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let path = env.org_path("/routes/doomed");
        let response = env.call(Method::DELETE, &path, Who::Owner, None).await;
        assert!(response.status.is_success(), "{}", response.body);
    };
    let (first, ()) = tokio::join!(filling, removing);
    assert_eq!(first, StatusCode::OK);
    crate::support::within(Duration::from_secs(1), StatusCode::NOT_FOUND, || {
        replica.chat_status(&secret, "doomed")
    })
    .await;
}

/// The fields under which the gateway carries a client's own request to the providers that
/// speak its format (Messages to Anthropic, Responses to OpenAI) are the gateway's: a chat or
/// embeddings client that sends one is refused, so that no body a client chose reaches a
/// target as "native".
#[tokio::test]
async fn a_client_cannot_send_the_gateways_native_fields() {
    let env = Env::new().await;
    env.mock_route("chat", &["mock-1"]).await;
    for (native, path, mut body) in
        portcullis_providers::Native::ALL
            .into_iter()
            .flat_map(|native| {
                [
                    (native, "/v1/chat/completions", chat("chat", false)),
                    (
                        native,
                        "/v1/embeddings",
                        json!({"model": "chat", "input": "hi"}),
                    ),
                ]
            })
    {
        body[native.key()] = json!({"body": {"model": "x", "max_tokens": 100000, "messages": []}});
        let response = env
            .call(Method::POST, path, Who::VirtualKey, Some(body))
            .await;
        assert_eq!(
            (response.status, response.body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{path}: {}",
            response.body
        );
    }
}
