//! CF-3, RM-1 and RM-5 through the HTTP surface, against a mock of the provider trait that
//! records what the funnel hands it: the guardrail's `redact` and `block` on every prompt-carrying
//! route, streaming included; the logging level switched, audited and applied to the next
//! request; a data-subject deletion through its route.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use portcullis_core::money::Usage;
use portcullis_core::provider::ProviderKind;
use portcullis_gateway::dataplane::prompt_routes;
use portcullis_providers::{Chunk, MockProvider, Reply};
use serde_json::{Value, json};

use crate::support::{Env, Who};

const EMAIL: &str = "jane.roe@example.com";
const CARD: &str = "4111 1111 1111 1111";
const PHONE: &str = "+44 20 7946 0958";

type Seen = Arc<Mutex<Vec<Value>>>;

/// An OpenAI-compatible provider that keeps every body the funnel hands it: a `mockall` mock
/// of the `Provider` trait, so no network stands between the guardrail and what is checked.
fn recording_provider() -> (MockProvider, Seen) {
    let seen: Seen = Arc::default();
    let usage = Usage::totals(5, 2);
    let mut provider = MockProvider::new();
    provider.expect_name().return_const("recorder");
    provider.expect_speaks().return_const(false);
    let kept = Arc::clone(&seen);
    provider.expect_complete().returning(move |_, body, _| {
        kept.lock().unwrap().push(Value::Object(body.clone()));
        let answer = json!({"id": "c", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "noted"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}});
        Ok(Reply::Json {
            status: 200,
            body: answer.to_string().into(),
            usage: Some(usage),
        })
    });
    let kept = Arc::clone(&seen);
    provider
        .expect_stream()
        .returning(move |_, body, _client_usage, _| {
            kept.lock().unwrap().push(Value::Object(body.clone()));
            let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": "noted"}, "finish_reason": null}]});
            let last = json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
            let rest = [
                Ok(Chunk::Events(format!("data: {last}\n\n").into())),
                Ok(Chunk::Usage(usage)),
                Ok(Chunk::Done),
            ];
            Ok(Reply::Stream {
                first: format!("data: {chunk}\n\n").into(),
                rest: Box::pin(futures_util::stream::iter(rest)),
            })
        });
    let kept = Arc::clone(&seen);
    provider.expect_embed().returning(move |_, body, _| {
        kept.lock().unwrap().push(Value::Object(body.clone()));
        let answer = json!({"object": "list", "model": "m",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.5]}],
            "usage": {"prompt_tokens": 3, "total_tokens": 3}});
        Ok(Reply::Json {
            status: 200,
            body: answer.to_string().into(),
            usage: Some(Usage::totals(3, 0)),
        })
    });
    (provider, seen)
}

/// The harness with alias `rec` routed to the recording provider.
async fn setup() -> (Env, Seen) {
    let (provider, seen) = recording_provider();
    let env =
        Env::new_with(|state| state.provider(ProviderKind::OpenAiCompatible, Arc::new(provider)))
            .await;
    // Never called: the recording provider stands in for the built-in adapter.
    let addr = "127.0.0.1:9";
    let credential = env
        .call(
            Method::POST,
            &env.org_path("/credentials"),
            Who::Master,
            Some(json!({"name": "recorder", "provider": "openai_compatible",
                        "api_key": "sk-recorder-0123456789", "base_url": format!("http://{addr}/v1")})),
        )
        .await;
    assert_eq!(
        credential.status,
        StatusCode::CREATED,
        "{}",
        credential.body
    );
    let route = json!({"targets": [{"credential_id": credential.body["credential_id"], "model": "m"}],
                       "input_micro_usd_per_mtok": 1_000_000, "output_micro_usd_per_mtok": 2_000_000});
    let put = env
        .call(
            Method::PUT,
            &env.org_path("/routes/rec"),
            Who::Master,
            Some(route),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    (env, seen)
}

async fn set(env: &Env, settings: Value) {
    let patch = env
        .call(
            Method::PATCH,
            &env.org_path("/settings"),
            Who::Admin,
            Some(settings),
        )
        .await;
    assert_eq!(patch.status, StatusCode::OK, "{}", patch.body);
}

/// Requests carrying the PII values on one prompt route, in every mode it has.
fn bodies(path: &str) -> Vec<Value> {
    let text = format!("Reach me at {EMAIL} or {PHONE}; card {CARD}.");
    match path {
        "/v1/chat/completions" => [false, true]
            .into_iter()
            .map(|stream| {
                json!({"model": "rec", "stream": stream, "user": EMAIL, "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": [{"type": "text", "text": text}]}]})
            })
            .collect(),
        "/v1/messages" => [false, true]
            .into_iter()
            .map(|stream| {
                json!({"model": "rec", "max_tokens": 50, "stream": stream,
                       "system": format!("The customer is {EMAIL}."),
                       "messages": [{"role": "user", "content": text}]})
            })
            .collect(),
        "/v1/embeddings" => vec![json!({"model": "rec", "input": [text, "plain"]})],
        "/v1/responses" => [false, true]
            .into_iter()
            .map(|stream| {
                json!({"model": "rec", "stream": stream, "user": EMAIL,
                       "instructions": format!("The customer is {EMAIL}."),
                       "input": [{"type": "message", "role": "user",
                                  "content": [{"type": "input_text", "text": text}]}]})
            })
            .collect(),
        "/v1/completions" => [false, true]
            .into_iter()
            .map(|stream| json!({"model": "rec", "stream": stream, "user": EMAIL, "prompt": text}))
            .collect(),
        other => panic!("{other} carries prompts: give it bodies here"),
    }
}

fn holds_pii(text: &str) -> bool {
    text.contains(EMAIL) || text.contains(CARD) || text.contains("7946 0958")
}

#[tokio::test]
async fn cf_3_redact_mode_sends_placeholders_upstream_on_every_route_and_mode() {
    let (env, seen) = setup().await;
    set(&env, json!({"pii_guardrail": "redact"})).await;
    let mut sent = 0;
    for path in prompt_routes() {
        for body in bodies(path) {
            let response = env
                .call(Method::POST, path, Who::VirtualKey, Some(body.clone()))
                .await;
            assert_eq!(
                response.status,
                StatusCode::OK,
                "{path} {body}: {}",
                response.body
            );
            sent += 1;
            let received = seen.lock().unwrap().last().cloned().unwrap();
            let text = received.to_string();
            assert!(
                !holds_pii(&text),
                "{path}: the upstream received PII: {text}"
            );
            assert!(text.contains("[EMAIL_1]"), "{path}: {text}");
            assert!(text.contains("[PAYMENT_CARD_1]"), "{path}: {text}");
        }
    }
    assert_eq!(seen.lock().unwrap().len(), sent);
    // The request log records what ran: redacted, and which kinds.
    assert!(env.state.logs.flush(Duration::from_secs(10)).await);
    let logs = env
        .call(Method::GET, &env.org_path("/logs"), Who::Admin, None)
        .await;
    let logs = logs.body["logs"].as_array().unwrap();
    assert_eq!(logs.len(), sent);
    for log in logs {
        assert_eq!(log["guardrail"], "redacted", "{log}");
        assert_eq!(log["status"], 200, "{log}");
        let kinds = log["pii_types"].to_string();
        assert!(
            kinds.contains("email") && kinds.contains("payment_card"),
            "{log}"
        );
    }
}

#[tokio::test]
async fn cf_3_block_mode_refuses_with_pii_detected_naming_kinds_never_values() {
    let (env, seen) = setup().await;
    set(&env, json!({"pii_guardrail": "block"})).await;
    let mut refused = 0;
    for path in prompt_routes() {
        for body in bodies(path) {
            let response = env
                .call(Method::POST, path, Who::VirtualKey, Some(body))
                .await;
            assert_eq!(
                response.status,
                StatusCode::BAD_REQUEST,
                "{path}: {}",
                response.body
            );
            assert_eq!(response.body["error"]["code"], "pii_detected", "{path}");
            let message = response.body["error"]["message"].as_str().unwrap();
            assert!(message.contains("email"), "{path}: {message}");
            assert!(
                !holds_pii(message),
                "{path}: the error echoes a value: {message}"
            );
            refused += 1;
        }
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "a blocked request reached the upstream"
    );
    // A request without PII passes in block mode.
    let clean =
        json!({"model": "rec", "messages": [{"role": "user", "content": "What is 2 + 2?"}]});
    let response = env.chat(clean).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert!(env.state.logs.flush(Duration::from_secs(10)).await);
    let logs = env
        .call(Method::GET, &env.org_path("/logs"), Who::Admin, None)
        .await;
    let logs = logs.body["logs"].as_array().unwrap();
    assert_eq!(logs.len(), refused + 1);
    let blocked: Vec<&Value> = logs
        .iter()
        .filter(|l| l["guardrail"] == "blocked")
        .collect();
    assert_eq!(blocked.len(), refused);
    assert!(
        blocked
            .iter()
            .all(|l| l["status"] == 400 && l["error_code"] == "pii_detected")
    );
    assert_eq!(logs.last().unwrap()["guardrail"], "passed");
}

#[tokio::test]
async fn rm_1_switching_the_logging_level_is_audited_and_applies_to_the_next_request() {
    let (env, _seen) = setup().await;
    let chat = |n: usize| {
        json!({"model": "rec", "user": "subject-1",
               "messages": [{"role": "user", "content": format!("question {n}")}]})
    };
    let mut ids = Vec::new();
    for (n, level) in ["metadata", "content", "metadata"].into_iter().enumerate() {
        if n > 0 {
            set(&env, json!({"logging_level": level})).await;
        }
        // At once: no wait for the change to travel.
        let response = env.chat(chat(n)).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        ids.push(
            response.headers["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert!(env.state.logs.flush(Duration::from_secs(10)).await);
    for (n, (id, level)) in ids
        .iter()
        .zip(["metadata", "content", "metadata"])
        .enumerate()
    {
        let log = env
            .call(
                Method::GET,
                &env.org_path(&format!("/logs/{id}")),
                Who::Admin,
                None,
            )
            .await;
        assert_eq!(log.status, StatusCode::OK, "{}", log.body);
        assert_eq!(log.body["logging_level"], level, "{}", log.body);
        assert_eq!(
            log.body["input_tokens"], 5,
            "metadata at every level: {}",
            log.body
        );
        assert_eq!(log.body["end_user"], "subject-1");
        if level == "content" {
            let content = &log.body["content"];
            assert_eq!(
                content["request"]["messages"][0]["content"],
                format!("question {n}")
            );
            assert!(content["response"].as_str().unwrap().contains("noted"));
        } else {
            assert!(log.body.get("content").is_none(), "{}", log.body);
        }
    }
    let audit = env
        .call(
            Method::GET,
            &env.org_path("/audit?action=settings.changed"),
            Who::Admin,
            None,
        )
        .await;
    let levels: Vec<&Value> = audit.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["details"]["logging_level"])
        .collect();
    assert_eq!(levels, [&json!("content"), &json!("metadata")]);
}

#[tokio::test]
async fn rm_5_a_data_subject_deletion_through_its_route_is_scoped_and_audited() {
    let (env, _seen) = setup().await;
    set(&env, json!({"logging_level": "content"})).await;
    for user in ["subject-a", "subject-a", "subject-b"] {
        let body = json!({"model": "rec", "user": user,
                          "messages": [{"role": "user", "content": "hello"}]});
        let response = env.chat(body).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    }
    assert!(env.state.logs.flush(Duration::from_secs(10)).await);
    env.state.spend.flush().await;
    let ledger_before = env
        .call(Method::GET, &env.org_path("/ledger"), Who::Admin, None)
        .await;
    let deletion = env
        .call(
            Method::POST,
            &env.org_path("/data-subject-deletions"),
            Who::Admin,
            Some(json!({"end_user": "subject-a"})),
        )
        .await;
    assert_eq!(deletion.status, StatusCode::OK, "{}", deletion.body);
    assert_eq!(
        deletion.body,
        json!({"deleted": {"request_logs": 2, "contents": 2}})
    );
    let left = |user: &'static str| {
        let env = &env;
        async move {
            env.call(
                Method::GET,
                &env.org_path(&format!("/logs?end_user={user}")),
                Who::Admin,
                None,
            )
            .await
            .body["logs"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(left("subject-a").await, 0);
    assert_eq!(left("subject-b").await, 1);
    let ledger_after = env
        .call(Method::GET, &env.org_path("/ledger"), Who::Admin, None)
        .await;
    assert_eq!(
        ledger_after.body, ledger_before.body,
        "the ledger is untouched (RM-4)"
    );
    assert_eq!(ledger_after.body["entries"].as_array().unwrap().len(), 3);
    let audit = env
        .call(
            Method::GET,
            &env.org_path("/audit?action=data_subject.deleted"),
            Who::Admin,
            None,
        )
        .await;
    let events = audit.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{}", audit.body);
    assert_eq!(events[0]["details"]["request_logs"], 2);
    assert!(
        !events[0].to_string().contains("subject-a"),
        "the audit holds the id"
    );
    // A bad request is the client's mistake.
    let empty = env
        .call(
            Method::POST,
            &env.org_path("/data-subject-deletions"),
            Who::Admin,
            Some(json!({"end_user": ""})),
        )
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn rm_1_a_prompt_with_nul_characters_keeps_its_log_content_and_ledger_row() {
    let env = Env::new().await;
    env.mock_route("echo", &["mock-echo"]).await;
    set(&env, json!({"logging_level": "content"})).await;
    let mut ids = Vec::new();
    for stream in [false, true] {
        let body = json!({"model": "echo", "stream": stream,
                          "messages": [{"role": "user", "content": "before\u{0}after"}]});
        let response = env.chat(body).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        ids.push(
            response.headers["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert!(env.state.logs.flush(Duration::from_secs(10)).await);
    env.state.spend.flush().await;
    for id in &ids {
        let log = env
            .call(
                Method::GET,
                &env.org_path(&format!("/logs/{id}")),
                Who::Admin,
                None,
            )
            .await;
        assert_eq!(log.status, StatusCode::OK, "{}", log.body);
        let response = log.body["content"]["response"].as_str().unwrap();
        assert!(response.contains("after"), "{response}");
    }
    let ledger = env
        .call(Method::GET, &env.org_path("/ledger"), Who::Admin, None)
        .await;
    assert_eq!(ledger.body["entries"].as_array().unwrap().len(), 2);
    assert_eq!(env.state.logs.metrics().dropped.get(), 0);
}

#[tokio::test]
async fn cf_3_a_large_prompt_is_scanned_as_fully_as_a_small_one() {
    let (env, seen) = setup().await;
    set(&env, json!({"pii_guardrail": "redact"})).await;
    // Past the inline limit: scanned on the blocking pool.
    let text = format!("{} mail {EMAIL} now", "lorem ipsum ".repeat(20_000));
    let body = json!({"model": "rec", "messages": [{"role": "user", "content": text}]});
    let response = env.chat(body).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let received = seen.lock().unwrap().last().cloned().unwrap().to_string();
    assert!(!received.contains(EMAIL));
    assert!(received.contains("mail [EMAIL_1] now"));
}

/// An Anthropic upstream that keeps every body it is sent and answers one message.
async fn recording_anthropic() -> (SocketAddr, Seen) {
    use axum::routing::post;
    let seen: Seen = Arc::default();
    let kept = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/v1/messages",
        post(move |axum::Json(body): axum::Json<Value>| {
            let seen = Arc::clone(&kept);
            async move {
                let stream = body["stream"] == true;
                seen.lock().unwrap().push(body);
                if stream {
                    let events = concat!(
                        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n",
                        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
                        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"sig-1\"}}\n\n",
                        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
                        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
                        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"noted\"}}\n\n",
                        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
                        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n",
                        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
                    );
                    return axum::http::Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(axum::body::Body::from(events))
                        .unwrap();
                }
                axum::response::IntoResponse::into_response(axum::Json(json!({"id": "msg_1",
                    "type": "message", "role": "assistant",
                    "model": "claude-x", "content": [{"type": "text", "text": "noted"}],
                    "stop_reason": "end_turn", "usage": {"input_tokens": 9, "output_tokens": 2}})))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

/// CF-3 on the native path: an Anthropic target receives the client's own Messages request
/// (cache_control kept), and the guardrail's redaction reaches it there too; in block mode
/// nothing is sent.
#[tokio::test]
async fn cf_3_the_native_request_to_an_anthropic_target_is_redacted_and_blocked_like_any() {
    let env = Env::new().await;
    let (addr, seen) = recording_anthropic().await;
    let credential = env
        .call(
            Method::POST,
            &env.org_path("/credentials"),
            Who::Master,
            Some(json!({"name": "claude", "provider": "anthropic",
                        "api_key": "sk-ant-fake-0123456789", "base_url": format!("http://{addr}")})),
        )
        .await;
    assert_eq!(
        credential.status,
        StatusCode::CREATED,
        "{}",
        credential.body
    );
    // The route caps the output below what the client asks: the native request carries the cap.
    let route = json!({"targets": [{"credential_id": credential.body["credential_id"], "model": "claude-x"}],
                       "input_micro_usd_per_mtok": 1_000_000, "output_micro_usd_per_mtok": 2_000_000,
                       "max_output_tokens": 40});
    let put = env
        .call(
            Method::PUT,
            &env.org_path("/routes/claude"),
            Who::Master,
            Some(route),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    let text = format!("Reach me at {EMAIL} or {PHONE}; card {CARD}.");
    let body = json!({"model": "claude", "max_tokens": 50,
        "system": [{"type": "text", "text": format!("The customer is {EMAIL}."),
                    "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]});
    set(
        &env,
        json!({"pii_guardrail": "redact", "logging_level": "content"}),
    )
    .await;
    let response = env
        .call(
            Method::POST,
            "/v1/messages",
            Who::VirtualKey,
            Some(body.clone()),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let received = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        received["system"][0]["cache_control"]["type"], "ephemeral",
        "the request was not sent natively: {received}"
    );
    assert_eq!(received["max_tokens"], 40, "the route's cap: {received}");
    // The log keeps the request the target received: the client's own, redacted.
    let request_id = response.headers["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(env.state.logs.flush(Duration::from_secs(10)).await);
    let log = env
        .call(
            Method::GET,
            &env.org_path(&format!("/logs/{request_id}")),
            Who::Admin,
            None,
        )
        .await;
    let logged = &log.body["content"]["request"];
    assert_eq!(
        logged["system"][0]["cache_control"]["type"], "ephemeral",
        "the log shows another request than was sent: {}",
        log.body
    );
    assert!(!holds_pii(&logged.to_string()), "{logged}");
    // The answer comes back as the target gave it, under the client's alias.
    assert_eq!(
        (
            response.body["type"].as_str(),
            response.body["model"].as_str()
        ),
        (Some("message"), Some("claude")),
        "{}",
        response.body
    );
    assert_eq!(response.body["content"][0]["text"], "noted");
    // Streamed, the target's own events (thinking and its signature too) reach the client once
    // each, and the request settles at the usage they report.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let response = env
        .call(
            Method::POST,
            "/v1/messages",
            Who::VirtualKey,
            Some(streamed),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let events = response.body.as_str().unwrap();
    assert!(events.contains("\"signature\":\"sig-1\""), "{events}");
    assert!(events.contains("\"model\":\"claude\""), "{events}");
    assert_eq!(events.matches("event: message_stop").count(), 1, "{events}");
    assert!(
        !events.contains("claude-x"),
        "the upstream model leaked: {events}"
    );
    let sent = received.to_string();
    assert!(
        !holds_pii(&sent),
        "the Anthropic upstream received PII: {sent}"
    );
    assert!(
        sent.contains("[EMAIL_1]") && sent.contains("[PAYMENT_CARD_1]"),
        "{sent}"
    );
    assert!(
        received
            .get(portcullis_providers::anthropic::NATIVE)
            .is_none(),
        "{sent}"
    );

    set(&env, json!({"pii_guardrail": "block"})).await;
    let before = seen.lock().unwrap().len();
    let response = env
        .call(Method::POST, "/v1/messages", Who::VirtualKey, Some(body))
        .await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.body
    );
    assert_eq!(
        response.body["type"], "error",
        "Anthropic's shape: {}",
        response.body
    );
    assert_eq!(response.body["error"]["code"], "pii_detected");
    assert_eq!(
        seen.lock().unwrap().len(),
        before,
        "a blocked request was sent"
    );
}

/// CF-3 on `/v1/messages/count_tokens`: the count is asked of the route's Anthropic target
/// (a mock of the provider trait here), after the guardrail: redacted in `redact`, never sent
/// in `block`. A route without a target that counts is answered with the estimate.
#[tokio::test]
async fn cf_3_a_token_count_is_the_providers_and_passes_the_guardrail_first() {
    let mut counter = MockProvider::new();
    counter.expect_name().return_const("anthropic");
    counter
        .expect_speaks()
        .returning(|format| format == portcullis_providers::Native::Messages);
    counter
        .expect_count_tokens()
        .times(1)
        .withf(|target, request, _| {
            let text = Value::Object(request.clone()).to_string();
            target.model == "claude-model" && !holds_pii(&text) && text.contains("[EMAIL_1]")
        })
        .returning(|_, _, _| Ok(Some(42)));
    let env =
        Env::new_with(|state| state.provider(ProviderKind::Anthropic, Arc::new(counter))).await;
    let credential = env
        .call(
            Method::POST,
            &env.org_path("/credentials"),
            Who::Master,
            Some(
                json!({"name": "claude", "provider": "anthropic", "api_key": "sk-ant-0123456789"}),
            ),
        )
        .await;
    assert_eq!(
        credential.status,
        StatusCode::CREATED,
        "{}",
        credential.body
    );
    let route = json!({"targets": [{"credential_id": credential.body["credential_id"], "model": "claude-model"}]});
    let put = env
        .call(
            Method::PUT,
            &env.org_path("/routes/claude"),
            Who::Master,
            Some(route),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    let count = |alias: &str| {
        json!({"model": alias, "system": "Be brief.",
               "messages": [{"role": "user", "content": format!("Mail {EMAIL} please")}]})
    };
    let path = "/v1/messages/count_tokens";

    set(&env, json!({"pii_guardrail": "block"})).await;
    let blocked = env
        .call(Method::POST, path, Who::VirtualKey, Some(count("claude")))
        .await;
    assert_eq!(blocked.status, StatusCode::BAD_REQUEST, "{}", blocked.body);
    assert_eq!(blocked.body["error"]["type"], "invalid_request_error");

    set(&env, json!({"pii_guardrail": "redact"})).await;
    let counted = env
        .call(Method::POST, path, Who::VirtualKey, Some(count("claude")))
        .await;
    assert_eq!(counted.status, StatusCode::OK, "{}", counted.body);
    assert_eq!(counted.body["input_tokens"], 42);
    assert_eq!(counted.headers["x-portcullis-token-count"], "provider");

    env.mock_route("plain", &["mock-1"]).await;
    let estimated = env
        .call(Method::POST, path, Who::VirtualKey, Some(count("plain")))
        .await;
    assert_eq!(estimated.status, StatusCode::OK, "{}", estimated.body);
    assert_eq!(estimated.headers["x-portcullis-token-count"], "estimate");
    assert!(estimated.body["input_tokens"].as_u64().unwrap() > 0);

    // An OpenAI model's published tokenizer counts it, without asking anyone.
    let openai = env
        .call(
            Method::POST,
            &env.org_path("/credentials"),
            Who::Master,
            Some(
                json!({"name": "gpt", "provider": "openai_compatible", "api_key": "sk-0123456789",
                        "base_url": "http://127.0.0.1:9/v1"}),
            ),
        )
        .await;
    assert_eq!(openai.status, StatusCode::CREATED, "{}", openai.body);
    let route = json!({"targets": [{"credential_id": openai.body["credential_id"], "model": "gpt-4o-mini"}]});
    let put = env
        .call(
            Method::PUT,
            &env.org_path("/routes/gpt"),
            Who::Master,
            Some(route),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    let tokenized = env
        .call(Method::POST, path, Who::VirtualKey, Some(count("gpt")))
        .await;
    assert_eq!(tokenized.status, StatusCode::OK, "{}", tokenized.body);
    assert_eq!(tokenized.headers["x-portcullis-token-count"], "tokenizer");
    let tokens = tokenized.body["input_tokens"].as_u64().unwrap();
    let estimate = estimated.body["input_tokens"].as_u64().unwrap();
    assert!(
        tokens > 0 && tokens < estimate,
        "{tokens} tokens, estimate {estimate}"
    );

    // Each count is in the request log (RM-1), with what the guardrail did.
    assert!(env.state.logs.flush(Duration::from_secs(10)).await);
    let logs = env
        .call(Method::GET, &env.org_path("/logs"), Who::Admin, None)
        .await;
    let mut seen: Vec<(String, String, u64)> = logs.body["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["endpoint"] == "count_tokens")
        .map(|l| {
            (
                l["model"].as_str().unwrap().to_owned(),
                l["guardrail"].as_str().unwrap().to_owned(),
                l["status"].as_u64().unwrap(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("claude".to_owned(), "blocked".to_owned(), 400),
            ("claude".to_owned(), "redacted".to_owned(), 200),
            ("gpt".to_owned(), "redacted".to_owned(), 200),
            ("plain".to_owned(), "redacted".to_owned(), 200),
        ]
    );
}

/// AV-4: a token count takes its place under the key's rate limit, like any request.
#[tokio::test]
async fn av_4_token_counts_are_rate_limited_like_requests() {
    let env = Env::new().await;
    env.mock_route("plain", &["mock-1"]).await;
    let key = env
        .call(
            Method::POST,
            &env.org_path("/keys"),
            Who::Master,
            Some(json!({"name": "counted", "rpm_limit": 2})),
        )
        .await;
    assert_eq!(key.status, StatusCode::CREATED, "{}", key.body);
    let secret = key.body["secret"].as_str().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = env
            .call_as(
                Method::POST,
                "/v1/messages/count_tokens",
                secret,
                Some(json!({"model": "plain", "messages": [{"role": "user", "content": "hi"}]})),
            )
            .await;
        statuses.push(response.status);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}
