//! Provider adapters and the fallback chain against local fake upstreams speaking the
//! providers' wire formats (AV-1).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code fails by panicking"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "fake upstreams and clients are spawned tasks that end with the test"
)]

use portcullis_providers::Egress;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use futures_util::StreamExt;
use portcullis_providers::{
    Breakers, Chunk, ProviderError, ProviderKind, Reply, Target, Upstreams, serve_chat,
};
use serde_json::{Map, Value, json};

const KEY: &str = "sk-upstream-secret-0123456789";

#[derive(Clone, Default)]
struct Seen {
    hits: Arc<AtomicU32>,
    last_body: Arc<std::sync::Mutex<Option<Value>>>,
    last_headers: Arc<std::sync::Mutex<Option<HeaderMap>>>,
}

async fn fake(
    State((seen, mode)): State<(Seen, &'static str)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    seen.hits.fetch_add(1, Ordering::SeqCst);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    *seen.last_body.lock().unwrap() = Some(body.clone());
    *seen.last_headers.lock().unwrap() = Some(headers);
    match mode {
        "ok" if body["stream"] == true => {
            let events = ["data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n", "data: [DONE]\n\n"];
            let stream = futures_util::stream::iter(events.map(|e| Ok::<_, std::io::Error>(Bytes::from(e))));
            Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(stream)).unwrap()
        }
        "ok" if body.get("input").is_some() => axum::Json(json!({"object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}],
            "usage": {"prompt_tokens": 1, "total_tokens": 1}})).into_response(),
        "ok" => axum::Json(json!({"object": "chat.completion", "model": body["model"], "choices": [],
                                 "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}))
        .into_response(),
        "500" => (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"error": {"message": "boom"}}))).into_response(),
        "429" => (StatusCode::TOO_MANY_REQUESTS, axum::Json(json!({"error": {"message": "slow down"}}))).into_response(),
        "400" => (StatusCode::BAD_REQUEST, axum::Json(json!({"error": {"message": format!("bad key {KEY}")}}))).into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::OK.into_response()
        }
        "redirect" => Response::builder().status(307).header("location", "http://127.0.0.1:9/steal").body(Body::empty()).unwrap(),
        "cut" => {
            // One chunk, then the connection breaks mid-stream.
            let stream = futures_util::stream::iter(0..2).then(|n| async move {
                if n == 0 {
                    Ok(Bytes::from("data: {\"choices\":[{\"delta\":{\"content\":\"par\"}}]}\n\n"))
                } else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Err(std::io::Error::other("cut"))
                }
            });
            Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(stream)).unwrap()
        }
        // Answers under 200 that are not what the endpoint promises.
        "html" => Response::builder().header("content-type", "text/html")
            .body(Body::from("<html><body>Sign in to the captive portal</body></html>")).unwrap(),
        "truncated" => Response::builder().header("content-type", "application/json")
            .body(Body::from(r#"{"object": "chat.completion", "choices": [{"message": {"content": "par"#)).unwrap(),
        "gzip" => Response::builder().header("content-type", "application/json").header("content-encoding", "gzip")
            .body(Body::from(&b"\x1f\x8b\x08\x00\x00\x00\x00\x00"[..])).unwrap(),
        "error200" => axum::Json(json!({"error": {"message": "quota exceeded", "type": "insufficient_quota"}})).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn upstream(mode: &'static str) -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(fake))
        .route("/v1/embeddings", post(fake))
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(fake),
        )
        .with_state((seen.clone(), mode));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

/// An address where nothing listens.
async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn target(
    up: &Upstreams,
    label: &str,
    kind: ProviderKind,
    addr: SocketAddr,
    base_suffix: &str,
) -> Target {
    Target {
        label: label.to_owned(),
        circuit: label.to_owned(),
        provider: up.provider(kind),
        base_url: Some(format!("http://{addr}{base_suffix}").parse().unwrap()),
        api_key: KEY.to_owned().into(),
        model: format!("{label}-model"),
        weight: 1,
    }
}

fn body(stream: bool) -> Map<String, Value> {
    json!({"model": "alias", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
        .as_object()
        .unwrap()
        .clone()
}

fn upstreams() -> Upstreams {
    Upstreams::new(
        Duration::from_secs(2),
        Breakers::new(2, Duration::from_millis(200)),
        // The fake upstreams listen on loopback, which an operator allows by name (AV-4).
        &Egress {
            destinations: portcullis_core::net::Destinations {
                allow_private: vec!["127.0.0.0/8".parse().unwrap()],
                ..Default::default()
            },
            proxy: None,
        },
    )
    .unwrap()
}

/// A stream's events as text, the usage it reported, and whether it ended as it should.
async fn collected(reply: Reply) -> (String, Option<portcullis_core::money::Usage>, bool) {
    let Reply::Stream { first, rest } = reply else {
        panic!("expected a stream")
    };
    let mut text = String::from_utf8(first.to_vec()).unwrap();
    let (mut usage, mut done) = (None, false);
    for chunk in rest.collect::<Vec<_>>().await {
        match chunk.unwrap() {
            Chunk::Events(bytes) => text.push_str(std::str::from_utf8(&bytes).unwrap()),
            Chunk::Usage(u) => usage = Some(u),
            Chunk::Done => done = true,
        }
    }
    (text, usage, done)
}

async fn json_of(reply: Reply) -> Value {
    match reply {
        Reply::Json { body, .. } => serde_json::from_slice(&body).unwrap(),
        Reply::Stream { .. } => panic!("expected JSON"),
    }
}

#[tokio::test]
async fn openai_compatible_passes_the_body_with_the_targets_model_and_key() {
    let (addr, seen) = upstream("ok").await;
    let up = upstreams();
    let served = serve_chat(
        &up,
        &[target(
            &up,
            "a",
            ProviderKind::OpenAiCompatible,
            addr,
            "/v1",
        )],
        &body(false),
        false,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert_eq!(served.attempts, 1);
    let reply = json_of(served.reply).await;
    assert_eq!(reply["usage"]["total_tokens"], 5);
    let sent = seen.last_body.lock().unwrap().clone().unwrap();
    assert_eq!(sent["model"], "a-model");
    assert_eq!(sent["messages"][0]["content"], "hi");
    let headers = seen.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(headers["authorization"], format!("Bearer {KEY}"));
}

#[tokio::test]
async fn host_names_resolve_through_the_guarded_resolver() {
    let (addr, seen) = upstream("ok").await;
    let up = upstreams();
    let mut named = target(&up, "named", ProviderKind::OpenAiCompatible, addr, "/v1");
    named.base_url = Some(
        format!("http://localhost:{}/v1", addr.port())
            .parse()
            .unwrap(),
    );
    let served = serve_chat(&up, &[named], &body(false), false, Duration::from_secs(2)).await;
    assert!(served.is_ok(), "{served:?}");
    assert_eq!(seen.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn azure_uses_the_deployment_path_and_api_key_header() {
    let (addr, seen) = upstream("ok").await;
    let up = upstreams();
    let served = serve_chat(
        &up,
        &[target(&up, "az", ProviderKind::Azure, addr, "")],
        &body(false),
        false,
        Duration::from_secs(2),
    )
    .await;
    assert!(served.is_ok(), "{served:?}");
    let headers = seen.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(headers["api-key"], KEY);
    assert!(headers.get("authorization").is_none());
}

#[tokio::test]
async fn streams_arrive_chunk_by_chunk() {
    let (addr, _) = upstream("ok").await;
    let up = upstreams();
    let served = serve_chat(
        &up,
        &[target(
            &up,
            "s",
            ProviderKind::OpenAiCompatible,
            addr,
            "/v1",
        )],
        &body(true),
        true,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let (text, _, done) = collected(served.reply).await;
    assert!(text.contains("\"content\":\"hi\""), "{text}");
    assert!(done, "the end marker is reported, not forwarded: {text}");
    assert!(!text.contains("[DONE]"), "{text}");
}

#[tokio::test]
async fn av_1_refused_timed_out_500_and_429_targets_fall_back_to_the_next() {
    let (good, seen) = upstream("ok").await;
    let (slow, _) = upstream("slow").await;
    let (error, _) = upstream("500").await;
    let (limited, _) = upstream("429").await;
    let refused = closed_port().await;
    for (name, bad) in [
        ("refused", refused),
        ("slow", slow),
        ("500", error),
        ("429", limited),
    ] {
        let up = upstreams();
        let chain = [
            target(&up, name, ProviderKind::OpenAiCompatible, bad, "/v1"),
            target(&up, "good", ProviderKind::OpenAiCompatible, good, "/v1"),
        ];
        let served = serve_chat(&up, &chain, &body(false), false, Duration::from_millis(300)).await;
        let served = served.unwrap_or_else(|f| panic!("{name}: {f:?}"));
        assert_eq!(served.target, "good", "{name}");
        assert!(served.attempts >= 2, "{name}");
    }
    assert!(seen.hits.load(Ordering::SeqCst) >= 4);
}

#[tokio::test]
async fn av_1_a_caller_error_is_not_retried_and_keys_are_scrubbed() {
    let (bad_request, _) = upstream("400").await;
    let (good, seen) = upstream("ok").await;
    let up = upstreams();
    let chain = [
        target(
            &up,
            "strict",
            ProviderKind::OpenAiCompatible,
            bad_request,
            "/v1",
        ),
        target(&up, "good", ProviderKind::OpenAiCompatible, good, "/v1"),
    ];
    let failure = serve_chat(&up, &chain, &body(false), false, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert_eq!(failure.attempts, 1);
    assert_eq!(
        seen.hits.load(Ordering::SeqCst),
        0,
        "a 400 must not fall back"
    );
    let ProviderError::Status { status, message } = failure.last else {
        panic!("{:?}", failure.last)
    };
    assert_eq!(status, 400);
    assert!(!message.contains(KEY), "{message}");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (redirecting, seen) = upstream("redirect").await;
    let up = upstreams();
    let failure = serve_chat(
        &up,
        &[target(
            &up,
            "r",
            ProviderKind::OpenAiCompatible,
            redirecting,
            "/v1",
        )],
        &body(false),
        false,
        Duration::from_secs(2),
    )
    .await
    .unwrap_err();
    assert_eq!(seen.hits.load(Ordering::SeqCst), 1);
    assert!(
        matches!(failure.last, ProviderError::Status { status: 307, .. }),
        "{:?}",
        failure.last
    );
}

#[tokio::test]
async fn av_1_the_breaker_skips_a_failing_target_then_probes_it_back() {
    let (error, errors) = upstream("500").await;
    let (good, _) = upstream("ok").await;
    let up = upstreams();
    let chain = [
        target(&up, "flaky", ProviderKind::OpenAiCompatible, error, "/v1"),
        target(&up, "good", ProviderKind::OpenAiCompatible, good, "/v1"),
    ];
    for _ in 0..2 {
        serve_chat(&up, &chain, &body(false), false, Duration::from_secs(2))
            .await
            .unwrap();
    }
    assert!(up.breakers.is_open("flaky"));
    let before = errors.hits.load(Ordering::SeqCst);
    let served = serve_chat(&up, &chain, &body(false), false, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(served.attempts, 1, "an open breaker skips the target");
    assert_eq!(errors.hits.load(Ordering::SeqCst), before);
    tokio::time::sleep(Duration::from_millis(250)).await;
    serve_chat(&up, &chain, &body(false), false, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        errors.hits.load(Ordering::SeqCst),
        before + 1,
        "after the cooldown one probe goes through"
    );
    assert!(up.breakers.is_open("flaky"), "a failed probe reopens");
}

#[tokio::test]
async fn av_1_a_stream_broken_after_its_first_byte_is_not_retried() {
    let (cut, _) = upstream("cut").await;
    let (good, seen) = upstream("ok").await;
    let up = upstreams();
    let chain = [
        target(&up, "cut", ProviderKind::OpenAiCompatible, cut, "/v1"),
        target(&up, "good", ProviderKind::OpenAiCompatible, good, "/v1"),
    ];
    let served = serve_chat(&up, &chain, &body(true), true, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(served.target, "cut");
    let Reply::Stream { rest, .. } = served.reply else {
        panic!("expected a stream")
    };
    let rest: Vec<_> = rest.collect().await;
    assert!(
        rest.iter().any(Result::is_err),
        "the break reaches the caller"
    );
    assert_eq!(
        seen.hits.load(Ordering::SeqCst),
        0,
        "no retry after the first byte"
    );
}

#[tokio::test]
async fn the_mock_provider_answers_fails_and_streams_on_demand() {
    let up = upstreams();
    let mock = |model: &str| Target {
        label: model.to_owned(),
        circuit: model.to_owned(),
        provider: up.provider(ProviderKind::Mock),
        base_url: None,
        api_key: String::new().into(),
        model: model.to_owned(),
        weight: 1,
    };
    let served = serve_chat(
        &up,
        &[mock("mock-error-503"), mock("mock-1")],
        &body(false),
        false,
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert_eq!(served.target, "mock-1");
    let reply = json_of(served.reply).await;
    assert!(reply["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let mut streaming = body(true);
    streaming.insert("stream_options".into(), json!({"include_usage": true}));
    let served = serve_chat(
        &up,
        &[mock("mock-1")],
        &streaming,
        true,
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    let (text, usage, done) = collected(served.reply).await;
    assert!(text.contains("\"usage\":{\"completion_tokens\""), "{text}");
    assert!(usage.is_some_and(|u| u.output_tokens == 8) && done);
}

#[tokio::test]
async fn embeddings_go_to_the_embeddings_endpoint() {
    let (addr, seen) = upstream("ok").await;
    let up = upstreams();
    let body = json!({"model": "alias", "input": "hello", "encoding_format": "base64"})
        .as_object()
        .unwrap()
        .clone();
    let served = portcullis_providers::serve(
        &up,
        &[&target(
            &up,
            "e",
            ProviderKind::OpenAiCompatible,
            addr,
            "/v1",
        )],
        &body,
        portcullis_providers::Operation::Embeddings,
        &portcullis_providers::Limits::new(Duration::from_secs(2)),
        &mut portcullis_providers::Unbudgeted,
    )
    .await
    .unwrap();
    assert_eq!(served.attempts, 1);
    let sent = seen.last_body.lock().unwrap().clone().unwrap();
    assert_eq!(sent["model"], "e-model");
    assert_eq!(sent["encoding_format"], "base64");
}

async fn fake_anthropic(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> Response {
    seen.hits.fetch_add(1, Ordering::SeqCst);
    let body: Value = serde_json::from_slice(&body).unwrap();
    *seen.last_body.lock().unwrap() = Some(body.clone());
    *seen.last_headers.lock().unwrap() = Some(headers);
    if body["stream"] == true {
        let events = [
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":11,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi there\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":4}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        ];
        let stream =
            futures_util::stream::iter(events.map(|e| Ok::<_, std::io::Error>(Bytes::from(e))));
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    axum::Json(json!({"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
        "content": [{"type": "text", "text": "Hi"}, {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 11, "output_tokens": 7}}))
    .into_response()
}

async fn anthropic_upstream() -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route("/v1/messages", post(fake_anthropic))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

#[tokio::test]
async fn anthropic_is_called_in_its_own_format_and_answers_in_openais() {
    let (addr, seen) = anthropic_upstream().await;
    let up = upstreams();
    let claude = target(&up, "claude", ProviderKind::Anthropic, addr, "");
    let request = json!({"model": "alias", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"}],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
        "stop": "END"});
    let served = serve_chat(
        &up,
        std::slice::from_ref(&claude),
        request.as_object().unwrap(),
        false,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let sent = seen.last_body.lock().unwrap().clone().unwrap();
    assert_eq!(sent["model"], "claude-model");
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(sent["max_tokens"], 4096, "Anthropic needs max_tokens");
    assert_eq!(sent["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(
        sent["messages"][1]["content"][0]["input"],
        json!({"city": "Oslo"})
    );
    assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(sent["tools"][0]["input_schema"], json!({"type": "object"}));
    assert_eq!(sent["stop_sequences"], json!(["END"]));
    let headers = seen.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(headers["x-api-key"], KEY);
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    let reply = json_of(served.reply).await;
    assert_eq!(reply["choices"][0]["message"]["content"], "Hi");
    assert_eq!(
        reply["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Oslo\"}"
    );
    assert_eq!(reply["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(reply["usage"]["total_tokens"], 18);

    let mut streaming = body(true);
    streaming.insert("stream_options".into(), json!({"include_usage": true}));
    let served = serve_chat(&up, &[claude], &streaming, true, Duration::from_secs(2))
        .await
        .unwrap();
    let (text, usage, done) = collected(served.reply).await;
    assert!(text.contains("\"content\":\"Hi there\""), "{text}");
    assert!(text.contains("\"finish_reason\":\"stop\""), "{text}");
    assert!(text.contains("\"completion_tokens\":4"), "{text}");
    assert_eq!(
        usage.map(|u| (u.input_tokens, u.output_tokens)),
        Some((11, 4))
    );
    assert!(done);
}

async fn fake_gemini(
    State(seen): State<Seen>,
    axum::extract::Path(spec): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    seen.hits.fetch_add(1, Ordering::SeqCst);
    *seen.last_body.lock().unwrap() = Some(serde_json::from_slice(&body).unwrap());
    *seen.last_headers.lock().unwrap() = Some(headers);
    if spec.ends_with(":streamGenerateContent") {
        let events = [
            "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Hel\"}]}}]}\r\n\r\n",
            "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"lo\"}]},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":2}}\r\n\r\n",
        ];
        let stream =
            futures_util::stream::iter(events.map(|e| Ok::<_, std::io::Error>(Bytes::from(e))));
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    assert!(spec.ends_with(":generateContent"), "{spec}");
    axum::Json(
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"},
        {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 3, "totalTokenCount": 7}}),
    )
    .into_response()
}

#[tokio::test]
async fn gemini_is_called_in_its_own_format_with_the_key_in_a_header() {
    let seen = Seen::default();
    let app = Router::new()
        .route("/v1beta/models/{spec}", post(fake_gemini))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let up = upstreams();
    let gemini = target(&up, "gemini", ProviderKind::Gemini, addr, "/v1beta");
    let request = json!({"model": "alias", "max_tokens": 50, "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather?"}],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]});
    let served = serve_chat(
        &up,
        std::slice::from_ref(&gemini),
        request.as_object().unwrap(),
        false,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let sent = seen.last_body.lock().unwrap().clone().unwrap();
    assert_eq!(sent["systemInstruction"]["parts"][0]["text"], "Be brief.");
    assert_eq!(
        sent["contents"][0],
        json!({"role": "user", "parts": [{"text": "Weather?"}]})
    );
    assert_eq!(sent["generationConfig"]["maxOutputTokens"], 50);
    assert_eq!(
        sent["tools"][0]["functionDeclarations"][0]["name"],
        "weather"
    );
    let headers = seen.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(headers["x-goog-api-key"], KEY);
    let reply = json_of(served.reply).await;
    assert_eq!(reply["choices"][0]["message"]["content"], "Hi");
    assert_eq!(
        reply["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Oslo\"}"
    );
    assert_eq!(reply["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(reply["usage"]["total_tokens"], 7);

    let mut streaming = body(true);
    streaming.insert("stream_options".into(), json!({"include_usage": true}));
    let served = serve_chat(&up, &[gemini], &streaming, true, Duration::from_secs(2))
        .await
        .unwrap();
    let (text, usage, done) = collected(served.reply).await;
    assert!(
        text.contains("\"content\":\"Hel\"") && text.contains("\"content\":\"lo\""),
        "{text}"
    );
    assert!(
        text.contains("\"finish_reason\":\"stop\"") && text.contains("\"completion_tokens\":2"),
        "{text}"
    );
    assert_eq!(usage.map(|u| u.output_tokens), Some(2));
    assert!(done);
}

/// Two tenants' targets may carry the same label (a credential named alike, the same model):
/// one tenant's failures open its circuit only.
#[tokio::test]
async fn av_4_one_tenants_failures_leave_another_tenants_target_served_first() {
    let (good, seen) = upstream("ok").await;
    let down = closed_port().await;
    let up = upstreams();
    let mut theirs = target(
        &up,
        "shared-name:m",
        ProviderKind::OpenAiCompatible,
        down,
        "/v1",
    );
    theirs.circuit = "org-a:credential-a:m".to_owned();
    let mut mine = target(
        &up,
        "shared-name:m",
        ProviderKind::OpenAiCompatible,
        good,
        "/v1",
    );
    mine.circuit = "org-b:credential-b:m".to_owned();
    for _ in 0..10 {
        let _ = serve_chat(
            &up,
            std::slice::from_ref(&theirs),
            &body(false),
            false,
            Duration::from_secs(2),
        )
        .await;
    }
    assert!(up.breakers.is_open("org-a:credential-a:m"));
    let served = serve_chat(&up, &[mine], &body(false), false, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(served.attempts, 1, "served on its first attempt");
    assert_eq!(seen.hits.load(Ordering::SeqCst), 1);
}

/// An answer under 200 that is not what the endpoint promises is the upstream's failure: the
/// next target serves the request, and with none left it is an invalid response (502).
#[tokio::test]
async fn av_4_html_truncated_unasked_encodings_and_error_objects_under_200_fall_back() {
    let (good, _) = upstream("ok").await;
    for mode in ["html", "truncated", "gzip", "error200"] {
        let (bad, _) = upstream(mode).await;
        for stream in [false, true] {
            let up = upstreams();
            let alone = [target(
                &up,
                mode,
                ProviderKind::OpenAiCompatible,
                bad,
                "/v1",
            )];
            let failure = serve_chat(&up, &alone, &body(stream), stream, Duration::from_secs(2))
                .await
                .err()
                .unwrap_or_else(|| panic!("{mode} (stream {stream}) was served"));
            assert!(
                matches!(failure.last, ProviderError::InvalidResponse),
                "{mode}: {:?}",
                failure.last
            );
            let chain = [
                alone[0].clone(),
                target(&up, "good", ProviderKind::OpenAiCompatible, good, "/v1"),
            ];
            let served = serve_chat(&up, &chain, &body(stream), stream, Duration::from_secs(2))
                .await
                .unwrap_or_else(|f| panic!("{mode}: {f:?}"));
            assert_eq!(served.target, "good", "{mode} (stream {stream})");
            assert_eq!(served.attempts, 2);
        }
    }
}

/// A chat request translated from a Messages request carries the client's own: an Anthropic
/// target receives that one (cache_control, thinking, context management and the beta header
/// kept; model, output bound and streaming from the chat request), and an
/// OpenAI-compatible target of the same chain never sees it.
#[tokio::test]
async fn an_anthropic_target_receives_the_clients_messages_request_natively_and_no_other_does() {
    let original = json!({"model": "alias", "max_tokens": 32000, "stream": true,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "adaptive"}, "context_management": {"edits": []},
        "tools": [{"name": "ls", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}]}]});
    let mut chat =
        portcullis_providers::anthropic::request_to_openai(original.as_object().unwrap()).unwrap();
    // The gateway bounded the output (in the field it writes) and asked for no stream.
    chat.remove("max_tokens");
    chat.insert("max_completion_tokens".into(), json!(512));
    chat.remove("stream");
    portcullis_providers::anthropic::keep_native(
        &mut chat,
        original.as_object().unwrap(),
        Some("context-management-2025-06-27"),
    );
    let (addr, seen) = anthropic_upstream().await;
    let up = upstreams();
    let claude = target(&up, "claude", ProviderKind::Anthropic, addr, "");
    let served = serve_chat(
        &up,
        std::slice::from_ref(&claude),
        &chat,
        false,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    // Answered in the client's format, as it came, under the alias it asked for.
    let reply = json_of(served.reply).await;
    assert_eq!(reply["type"], "message", "{reply}");
    assert_eq!(reply["model"], "alias");
    assert_eq!(reply["content"][1]["type"], "tool_use");
    let sent = seen.last_body.lock().unwrap().clone().unwrap();
    let mut expected = original.clone();
    expected["model"] = json!("claude-model");
    expected["max_tokens"] = json!(512);
    expected["stream"] = json!(false);
    assert_eq!(sent, expected, "the client's request, as it sent it");
    let headers = seen.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(headers["anthropic-beta"], "context-management-2025-06-27");
    // A stream passes Anthropic's events through, with the usage read off them.
    let mut streaming = chat.clone();
    streaming.insert("stream".into(), json!(true));
    let served = serve_chat(
        &up,
        std::slice::from_ref(&claude),
        &streaming,
        true,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let (text, usage, done) = collected(served.reply).await;
    assert!(text.contains("event: content_block_delta"), "{text}");
    assert!(text.contains("\"model\":\"alias\""), "{text}");
    assert!(text.contains("event: message_stop") && done, "{text}");
    assert!(!text.contains("chat.completion.chunk"), "{text}");
    assert_eq!(
        usage.map(|u| (u.input_tokens, u.output_tokens)),
        Some((11, 4))
    );

    let (openai_addr, openai_seen) = upstream("ok").await;
    let compatible = target(
        &up,
        "vllm",
        ProviderKind::OpenAiCompatible,
        openai_addr,
        "/v1",
    );
    serve_chat(&up, &[compatible], &chat, false, Duration::from_secs(2))
        .await
        .unwrap();
    let sent = openai_seen.last_body.lock().unwrap().clone().unwrap();
    assert!(
        sent.get(portcullis_providers::anthropic::NATIVE).is_none(),
        "another provider received the Anthropic request: {sent}"
    );
    assert_eq!(
        sent.get("max_completion_tokens")
            .or_else(|| sent.get("max_tokens")),
        Some(&json!(512))
    );
}

async fn fake_openai_responses(State(seen): State<Seen>, body: Bytes) -> Response {
    seen.hits.fetch_add(1, Ordering::SeqCst);
    let body: Value = serde_json::from_slice(&body).unwrap();
    *seen.last_body.lock().unwrap() = Some(body.clone());
    let usage = json!({"input_tokens": 120, "input_tokens_details": {"cached_tokens": 100},
        "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 20}, "total_tokens": 150});
    let response = json!({"id": "resp_up", "object": "response", "status": "completed",
        "model": body["model"], "output": [
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque-2"},
            {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": "Done.", "annotations": []}]}],
        "usage": usage});
    if body["stream"] == true {
        let created = json!({"type": "response.created", "sequence_number": 0,
            "response": {"id": "resp_up", "object": "response", "status": "in_progress",
                         "model": body["model"], "output": []}});
        let delta = json!({"type": "response.output_text.delta", "sequence_number": 1,
            "item_id": "msg_1", "output_index": 1, "content_index": 0, "delta": "Done."});
        let completed =
            json!({"type": "response.completed", "sequence_number": 2, "response": response});
        let text = format!(
            "event: response.created\ndata: {created}\n\nevent: response.output_text.delta\ndata: {delta}\n\nevent: response.completed\ndata: {completed}\n\n"
        );
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from(text))
            .unwrap();
    }
    axum::Json(response).into_response()
}

/// A Responses client's own request (Codex CLI's, recorded) goes to an OpenAI target as it
/// came: reasoning items, `include` and client tools kept, hosted tools left out, bounded and
/// unstored; the answer comes back in the Responses format under the alias, its usage read.
#[tokio::test]
async fn av_2_an_openai_target_is_sent_a_responses_request_natively() {
    let seen = Seen::default();
    let app = Router::new()
        .route("/v1/responses", post(fake_openai_responses))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let recorded: Value =
        serde_json::from_str(include_str!("../fixtures/codex-0.171.0-responses.json")).unwrap();
    let mut client = recorded["body"].as_object().unwrap().clone();
    client.insert("model".into(), json!("alias"));
    let items = client["input"].as_array().unwrap().len();
    client["input"].as_array_mut().unwrap().push(
        json!({"type": "reasoning", "id": "rs_0", "summary": [], "encrypted_content": "opaque-1"}),
    );
    let up = upstreams();
    let gpt = target(&up, "gpt", ProviderKind::OpenAi, addr, "/v1");
    for stream in [false, true] {
        client.insert("stream".into(), json!(stream));
        let mut chat = portcullis_providers::responses::request_to_chat(&client).unwrap();
        portcullis_providers::responses::keep_native(&mut chat, &client);
        chat.insert("max_completion_tokens".into(), json!(2048));
        let served = serve_chat(
            &up,
            std::slice::from_ref(&gpt),
            &chat,
            stream,
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        let sent = seen.last_body.lock().unwrap().clone().unwrap();
        assert_eq!(sent["model"], "gpt-model");
        assert_eq!(sent["max_output_tokens"], 2048);
        assert_eq!(
            (&sent["store"], &sent["stream"]),
            (&json!(false), &json!(stream))
        );
        assert_eq!(sent["input"].as_array().unwrap().len(), items + 1);
        assert_eq!(sent["input"][items]["encrypted_content"], "opaque-1");
        assert_eq!(sent["include"], recorded["body"]["include"]);
        let kinds: Vec<&str> = sent["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["type"].as_str().unwrap())
            .collect();
        assert!(
            kinds.contains(&"function") && kinds.contains(&"namespace"),
            "{kinds:?}"
        );
        assert!(
            !kinds.contains(&"web_search"),
            "a hosted, billed tool went out: {kinds:?}"
        );
        assert!(sent.get(portcullis_providers::responses::NATIVE).is_none());
        let usage = portcullis_core::money::Usage {
            input_tokens: 120,
            cached_input_tokens: 100,
            output_tokens: 30,
            reasoning_tokens: 20,
            ..Default::default()
        };
        if stream {
            let (text, reported, complete) = collected(served.reply).await;
            assert!(complete, "{text}");
            assert_eq!(reported, Some(usage));
            assert!(text.contains("event: response.output_text.delta"), "{text}");
            assert!(text.contains("\"model\":\"alias\""), "{text}");
            assert!(!text.contains("gpt-model"), "{text}");
        } else {
            let Reply::Json {
                body,
                usage: reported,
                ..
            } = served.reply
            else {
                panic!("not a whole answer");
            };
            let answer: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(answer["object"], "response");
            assert_eq!(answer["model"], "alias");
            assert_eq!(answer["output"][0]["encrypted_content"], "opaque-2");
            assert_eq!(reported, Some(usage));
        }
    }
    // Any other target gets the chat translation, never the native copy.
    let (other, other_seen) = upstream("ok").await;
    let compatible = target(&up, "compat", ProviderKind::OpenAiCompatible, other, "/v1");
    let mut chat = portcullis_providers::responses::request_to_chat(&client).unwrap();
    portcullis_providers::responses::keep_native(&mut chat, &client);
    serve_chat(&up, &[compatible], &chat, true, Duration::from_secs(2))
        .await
        .unwrap();
    let sent = other_seen.last_body.lock().unwrap().clone().unwrap();
    assert!(sent.get(portcullis_providers::responses::NATIVE).is_none());
    assert!(sent["messages"].is_array());
}

async fn fake_completions(State(seen): State<Seen>, body: Bytes) -> Response {
    seen.hits.fetch_add(1, Ordering::SeqCst);
    let body: Value = serde_json::from_slice(&body).unwrap();
    *seen.last_body.lock().unwrap() = Some(body.clone());
    let usage = json!({"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9});
    if body["stream"] == true {
        let chunk = json!({"id": "cmpl-up", "object": "text_completion", "created": 0,
            "model": body["model"], "choices": [{"text": " world", "index": 0, "logprobs": null,
            "finish_reason": "stop"}]});
        let usage = json!({"id": "cmpl-up", "object": "text_completion", "created": 0,
            "model": body["model"], "choices": [], "usage": usage});
        let text = format!("data: {chunk}\n\ndata: {usage}\n\ndata: [DONE]\n\n");
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from(text))
            .unwrap();
    }
    axum::Json(
        json!({"id": "cmpl-up", "object": "text_completion", "created": 0,
        "model": body["model"], "choices": [{"text": " world", "index": 0, "logprobs": null,
        "finish_reason": "stop"}], "usage": usage}),
    )
    .into_response()
}

/// A legacy Completions request goes to an OpenAI-compatible server as it came (the prompt
/// raw, not wrapped in a chat turn), bounded, with the usage chunk asked for when streamed.
#[tokio::test]
async fn av_2_a_compatible_server_is_sent_a_completions_request_natively() {
    let seen = Seen::default();
    let app = Router::new()
        .route("/v1/completions", post(fake_completions))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let up = upstreams();
    let vllm = target(&up, "base", ProviderKind::OpenAiCompatible, addr, "/v1");
    for stream in [false, true] {
        let client = json!({"model": "alias", "prompt": "Hello", "max_tokens": 99999,
                            "stream": stream, "stop": ["\n"]});
        let client = client.as_object().unwrap();
        let mut chat = portcullis_providers::completions::request_to_chat(client).unwrap();
        portcullis_providers::completions::keep_native(&mut chat, client);
        chat.insert("max_completion_tokens".into(), json!(64));
        let served = serve_chat(
            &up,
            std::slice::from_ref(&vllm),
            &chat,
            stream,
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        let sent = seen.last_body.lock().unwrap().clone().unwrap();
        assert_eq!(sent["prompt"], "Hello", "the prompt went raw");
        assert!(sent.get("messages").is_none());
        assert_eq!(
            (&sent["model"], &sent["max_tokens"]),
            (&json!("base-model"), &json!(64))
        );
        assert_eq!(sent["stop"], json!(["\n"]));
        assert!(
            sent.get(portcullis_providers::completions::NATIVE)
                .is_none()
        );
        let usage = Some(portcullis_core::money::Usage::totals(6, 3));
        if stream {
            assert_eq!(sent["stream_options"]["include_usage"], true);
            let (text, reported, complete) = collected(served.reply).await;
            assert!(complete && text.contains(" world"), "{text}");
            assert_eq!(reported, usage);
        } else {
            let Reply::Json {
                usage: reported, ..
            } = served.reply
            else {
                panic!("not a whole answer");
            };
            assert_eq!(reported, usage);
        }
    }
    assert_eq!(seen.hits.load(Ordering::SeqCst), 2);
}
