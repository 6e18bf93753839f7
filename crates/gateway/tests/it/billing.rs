//! AV-2 and RM-4 on the request path, against fake upstreams speaking each provider's format:
//! usage is parsed whatever its spacing, read in full (cache writes and reads, thinking), and
//! when it is unknown (an upstream that sent none, a client that left, an attempt that timed
//! out after the upstream took it) the request settles at its reservation, never below what
//! the upstream may have billed.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

use crate::support::{Env, Who, eventually, unique};

/// Serves `body` (a whole answer) or `events` (a stream) at `path`, whatever was asked.
async fn fake(path: &'static str, answer: Answer) -> SocketAddr {
    let app = axum::Router::new().route(
        path,
        post(move || {
            let answer = answer.clone();
            async move {
                match answer {
                    Answer::Json(body) => axum::http::Response::builder()
                        .header("content-type", "application/json")
                        .body(axum::body::Body::from(body.to_string()))
                        .unwrap(),
                    Answer::Events(text) => axum::http::Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(axum::body::Body::from(text))
                        .unwrap(),
                    Answer::Slow => {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        axum::http::Response::new(axum::body::Body::empty())
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[derive(Clone)]
enum Answer {
    Json(Value),
    Events(String),
    Slow,
}

/// A route `alias` to `provider` at `addr` with `model`, and a key: its secret.
async fn route_to(
    env: &Env,
    alias: &str,
    provider: &str,
    addr: SocketAddr,
    model: &str,
    extra: Value,
) {
    let base = match provider {
        "anthropic" => format!("http://{addr}"),
        "gemini" => format!("http://{addr}/v1beta"),
        _ => format!("http://{addr}/v1"),
    };
    let credential = env
        .call(
            Method::POST,
            &env.org_path("/credentials"),
            Who::Master,
            Some(
                json!({"name": unique("up"), "provider": provider, "api_key": "sk-fake-0123456789",
                        "base_url": base}),
            ),
        )
        .await;
    assert_eq!(
        credential.status,
        StatusCode::CREATED,
        "{}",
        credential.body
    );
    let mut body =
        json!({"targets": [{"credential_id": credential.body["credential_id"], "model": model}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let put = env
        .call(
            Method::PUT,
            &env.org_path(&format!("/routes/{alias}")),
            Who::Master,
            Some(body),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
}

async fn ledger(env: &Env) -> Vec<Value> {
    env.state.spend.flush().await;
    let page = env
        .call(Method::GET, &env.org_path("/ledger"), Who::Admin, None)
        .await;
    page.body["entries"].as_array().unwrap().clone()
}

fn chat(alias: &str, stream: bool) -> Value {
    json!({"model": alias, "messages": [{"role": "user", "content": "hi"}], "stream": stream,
           "max_tokens": 100})
}

#[tokio::test]
async fn av_2_a_spaced_and_reordered_usage_chunk_is_the_usage_recorded() {
    let env = Env::new().await;
    let events = concat!(
        "data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"Hi\"}}]}\n\n",
        "data: { \"usage\" : { \"completion_tokens\" : 42 , \"prompt_tokens\" : 9,",
        " \"prompt_tokens_details\": {\"cached_tokens\": 4} }, \"choices\": [] }\n\n",
        "data: [DONE]\n\n"
    );
    let addr = fake("/v1/chat/completions", Answer::Events(events.to_owned())).await;
    route_to(
        &env,
        "spaced",
        "openai_compatible",
        addr,
        "gpt-4o-mini",
        json!({}),
    )
    .await;
    let r = env.chat(chat("spaced", true)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let text = r.body.as_str().unwrap();
    assert!(
        !text.contains("usage"),
        "the client did not ask for the usage chunk: {text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let entries = ledger(&env).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["estimated"], false);
    assert_eq!(
        (
            &entries[0]["input_tokens"],
            &entries[0]["output_tokens"],
            &entries[0]["cached_input_tokens"]
        ),
        (&json!(9), &json!(42), &json!(4))
    );
}

#[tokio::test]
async fn av_2_a_stream_with_no_usage_settles_at_its_reservation_and_the_client_gets_a_count() {
    let env = Env::new().await;
    // llama.cpp-like: spaced JSON, and no usage chunk although one was asked for.
    let events = concat!(
        "data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"Hello \"}}]}\n\n",
        "data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"there\"}, \"finish_reason\": \"stop\"}]}\n\n",
        "data: [DONE]\n\n"
    );
    let addr = fake("/v1/chat/completions", Answer::Events(events.to_owned())).await;
    route_to(
        &env,
        "llama",
        "openai_compatible",
        addr,
        "gpt-4o-mini",
        json!({}),
    )
    .await;
    let mut body = chat("llama", true);
    body["stream_options"] = json!({"include_usage": true});
    let r = env.chat(body).await;
    let text = r.body.as_str().unwrap();
    let usage_line = text
        .lines()
        .find(|l| l.contains("\"usage\""))
        .unwrap_or_else(|| panic!("no usage chunk for a client that asked: {text}"));
    let usage: Value = serde_json::from_str(usage_line.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(
        usage["usage"]["completion_tokens"], 11,
        "the bytes of content"
    );
    assert!(
        usage["portcullis_usage"]
            .as_str()
            .unwrap()
            .contains("estimated")
    );
    assert!(text.ends_with("data: [DONE]\n\n"));
    let entries = ledger(&env).await;
    assert_eq!(entries[0]["estimated"], true);
    // At the reservation: the body's bytes in, the full bound out.
    assert_eq!(entries[0]["output_tokens"], 100);
    assert!(entries[0]["cost_micro_usd"].as_i64().unwrap() >= 100 * 600_000 / 1_000_000);
}

#[tokio::test]
async fn av_2_a_client_that_leaves_a_stream_is_settled_at_the_reservation_and_logged_so() {
    let env = Env::new().await;
    let mut events = String::new();
    for _ in 0..200 {
        events
            .push_str("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"word \"}}]}\n\n");
    }
    events.push_str("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":200}}\n\ndata: [DONE]\n\n");
    let addr = fake("/v1/chat/completions", Answer::Events(events)).await;
    route_to(
        &env,
        "long",
        "openai_compatible",
        addr,
        "gpt-4o-mini",
        json!({}),
    )
    .await;
    let request = axum::http::Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {}", env.virtual_key))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(chat("long", true).to_string()))
        .unwrap();
    let response = tower::ServiceExt::oneshot(env.app(crate::support::UNTRUSTED_PEER), request)
        .await
        .unwrap();
    let mut body = response.into_body().into_data_stream();
    let _first = futures_util::StreamExt::next(&mut body).await;
    drop(body);
    let entries = eventually(|| async {
        let entries = ledger(&env).await;
        (!entries.is_empty()).then_some(entries)
    })
    .await;
    assert_eq!(entries[0]["estimated"], true);
    assert_eq!(entries[0]["output_tokens"], 100);
    assert!(env.state.logs.flush(Duration::from_secs(10)).await);
    let logs = env
        .call(Method::GET, &env.org_path("/logs"), Who::Admin, None)
        .await;
    assert_eq!(
        logs.body["logs"][0]["error_code"], "client_disconnected",
        "{}",
        logs.body
    );
}

#[tokio::test]
async fn av_2_an_attempt_that_timed_out_is_recorded_and_the_next_needs_budget_of_its_own() {
    let env = Env::new().await;
    let slow = fake("/v1/chat/completions", Answer::Slow).await;
    let good = fake(
        "/v1/chat/completions",
        Answer::Json(
            json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
                           "usage": {"prompt_tokens": 5, "completion_tokens": 5}}),
        ),
    )
    .await;
    let slow_credential = env
        .call(
            Method::POST,
            &env.org_path("/credentials"),
            Who::Master,
            Some(
                json!({"name": "slow", "provider": "openai_compatible", "api_key": "sk-slow-0123",
                        "base_url": format!("http://{slow}/v1")}),
            ),
        )
        .await;
    let good_credential = env
        .call(
            Method::POST,
            &env.org_path("/credentials"),
            Who::Master,
            Some(
                json!({"name": "good", "provider": "openai_compatible", "api_key": "sk-good-0123",
                        "base_url": format!("http://{good}/v1")}),
            ),
        )
        .await;
    let body = json!({"targets": [
        {"credential_id": slow_credential.body["credential_id"], "model": "gpt-4o-mini"},
        {"credential_id": good_credential.body["credential_id"], "model": "gpt-4o-mini"}],
        "timeout_ms": 300});
    let put = env
        .call(
            Method::PUT,
            &env.org_path("/routes/flaky"),
            Who::Master,
            Some(body),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    // Budget for many attempts: the slow one is recorded at its worst case, the next serves.
    let r = env.chat(chat("flaky", false)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let entries = ledger(&env).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    let timed_out = entries
        .iter()
        .find(|e| e["target"].as_str().unwrap().starts_with("slow"))
        .unwrap();
    assert_eq!(timed_out["estimated"], true);
    assert_eq!(timed_out["output_tokens"], 100);
    // A key whose budget holds one reservation only: no second attempt after the timeout.
    let key = env
        .call(
            Method::POST,
            &env.org_path("/keys"),
            Who::Master,
            Some(json!({"name": "tight", "budget_micro_usd": 100})),
        )
        .await;
    let secret = key.body["secret"].as_str().unwrap();
    let r = env
        .call_as(
            Method::POST,
            "/v1/chat/completions",
            secret,
            Some(chat("flaky", false)),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{}", r.body);
    let spent: i64 = ledger(&env)
        .await
        .iter()
        .filter(|e| e["key_id"] == key.body["key_id"])
        .map(|e| e["cost_micro_usd"].as_i64().unwrap())
        .sum();
    assert!(spent <= 100, "a tight key spent {spent} past its cap");
}

#[tokio::test]
async fn rm_4_anthropic_cache_tokens_and_gemini_thinking_are_billed_at_their_rates() {
    let env = Env::new().await;
    let anthropic = fake(
        "/v1/messages",
        Answer::Json(
            json!({"id": "msg_1", "type": "message", "role": "assistant",
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 100, "cache_creation_input_tokens": 1000,
                      "cache_read_input_tokens": 10000, "output_tokens": 50}}),
        ),
    )
    .await;
    route_to(
        &env,
        "claude",
        "anthropic",
        anthropic,
        "claude-sonnet-4",
        json!({}),
    )
    .await;
    let r = env.chat(chat("claude", false)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let gemini = fake(
        "/v1beta/models/{spec}",
        Answer::Json(
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]},
            "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 10,
                              "thoughtsTokenCount": 60, "totalTokenCount": 90}}),
        ),
    )
    .await;
    route_to(
        &env,
        "thinker",
        "gemini",
        gemini,
        "gemini-2.5-flash",
        json!({}),
    )
    .await;
    let r = env.chat(chat("thinker", false)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let entries = ledger(&env).await;
    let claude = entries.iter().find(|e| e["model"] == "claude").unwrap();
    assert_eq!(claude["input_tokens"], 11_100);
    assert_eq!(claude["cached_input_tokens"], 10_000);
    assert_eq!(claude["cache_write_tokens"], 1_000);
    // 100 x 3 + 10,000 x 0.30 + 1,000 x 3.75 + 50 x 15 micro-dollars (per million: / 1e6).
    let expected = (100 * 3_000_000 + 10_000 * 300_000 + 1_000 * 3_750_000 + 50 * 15_000_000_i64)
        .div_euclid(1_000_000);
    assert_eq!(claude["cost_micro_usd"], expected);
    let thinker = entries.iter().find(|e| e["model"] == "thinker").unwrap();
    assert_eq!(thinker["output_tokens"], 70, "thinking is output");
    assert_eq!(thinker["reasoning_tokens"], 60);
}

#[tokio::test]
async fn av_2_a_client_that_leaves_before_the_answer_is_still_charged_what_may_be_billed() {
    let env = Env::new().await;
    let slow = fake("/v1/chat/completions", Answer::Slow).await;
    route_to(
        &env,
        "slow",
        "openai_compatible",
        slow,
        "gpt-4o-mini",
        json!({"timeout_ms": 5000}),
    )
    .await;
    // The client gives up while the upstream works: the request future is dropped.
    let call = env.chat(chat("slow", false));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), call)
            .await
            .is_err()
    );
    let entries = eventually(|| async {
        let entries = ledger(&env).await;
        (!entries.is_empty()).then_some(entries)
    })
    .await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["estimated"], true);
    assert_eq!(entries[0]["output_tokens"], 100);
    assert!(entries[0]["cost_micro_usd"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn av_2_an_answer_too_large_to_read_is_charged_as_billed() {
    let env = Env::new().await;
    let huge = "x".repeat(17 * 1024 * 1024);
    let big = fake(
        "/v1/chat/completions",
        Answer::Json(
            json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": huge}}],
                           "usage": {"prompt_tokens": 5, "completion_tokens": 5}}),
        ),
    )
    .await;
    route_to(
        &env,
        "big",
        "openai_compatible",
        big,
        "gpt-4o-mini",
        json!({}),
    )
    .await;
    let r = env.chat(chat("big", false)).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    let entries = ledger(&env).await;
    assert_eq!(entries.len(), 1, "the upstream did the work: {entries:?}");
    assert_eq!(entries[0]["estimated"], true);
}

/// A Responses request an OpenAI target served natively is billed by the usage of its own
/// answer, cached and reasoning tokens included, streamed or not; the client gets OpenAI's
/// answer under the alias.
#[tokio::test]
async fn av_2_a_responses_request_served_natively_by_openai_is_billed_by_its_own_usage() {
    let env = Env::new().await;
    let usage = json!({"input_tokens": 900, "input_tokens_details": {"cached_tokens": 800},
        "output_tokens": 70, "output_tokens_details": {"reasoning_tokens": 50}, "total_tokens": 970});
    let response = json!({"id": "resp_up", "object": "response", "status": "completed",
        "model": "gpt-4o-mini", "output": [{"type": "message", "id": "msg_1", "role": "assistant",
        "status": "completed", "content": [{"type": "output_text", "text": "Hi", "annotations": []}]}],
        "usage": usage});
    let whole = fake("/v1/responses", Answer::Json(response.clone())).await;
    route_to(&env, "native", "openai", whole, "gpt-4o-mini", json!({})).await;
    let completed =
        json!({"type": "response.completed", "sequence_number": 1, "response": response});
    let events = format!(
        "event: response.output_text.delta\ndata: {}\n\nevent: response.completed\ndata: {completed}\n\n",
        json!({"type": "response.output_text.delta", "sequence_number": 0, "item_id": "msg_1",
               "output_index": 0, "content_index": 0, "delta": "Hi"})
    );
    let streamed = fake("/v1/responses", Answer::Events(events)).await;
    route_to(
        &env,
        "native-stream",
        "openai",
        streamed,
        "gpt-4o-mini",
        json!({}),
    )
    .await;
    for (alias, stream) in [("native", false), ("native-stream", true)] {
        let body =
            json!({"model": alias, "input": "hi", "stream": stream, "max_output_tokens": 100});
        let r = env
            .call(Method::POST, "/v1/responses", Who::VirtualKey, Some(body))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{alias}: {}", r.body);
        if stream {
            let text = r.body.as_str().unwrap();
            assert!(text.contains("event: response.completed"), "{text}");
            assert!(text.contains(&format!("\"model\":\"{alias}\"")), "{text}");
        } else {
            assert_eq!(r.body["object"], "response");
            assert_eq!(r.body["model"], alias);
            assert_eq!(r.body["output"][0]["content"][0]["text"], "Hi");
        }
    }
    let entries = ledger(&env).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    for entry in &entries {
        assert_eq!(entry["estimated"], false, "{entry}");
        assert_eq!(
            (
                &entry["input_tokens"],
                &entry["cached_input_tokens"],
                &entry["output_tokens"]
            ),
            (&json!(900), &json!(800), &json!(70)),
            "{entry}"
        );
    }
}

/// A Completions request an OpenAI-compatible server served natively is billed by its usage
/// chunk, which the client sees only when it asked for it; chunks name the alias.
#[tokio::test]
async fn av_2_a_completions_request_served_natively_is_billed_and_shows_usage_only_if_asked() {
    let env = Env::new().await;
    let chunk = json!({"id": "cmpl-up", "object": "text_completion", "created": 0,
        "model": "upstream-name", "choices": [{"text": " world", "index": 0, "logprobs": null, "finish_reason": "stop"}]});
    let usage = json!({"id": "cmpl-up", "object": "text_completion", "created": 0, "model": "upstream-name",
        "choices": [], "usage": {"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9}});
    let events = format!("data: {chunk}\n\ndata: {usage}\n\ndata: [DONE]\n\n");
    let addr = fake("/v1/completions", Answer::Events(events)).await;
    let price =
        json!({"input_micro_usd_per_mtok": 1_000_000, "output_micro_usd_per_mtok": 2_000_000});
    route_to(
        &env,
        "base",
        "openai_compatible",
        addr,
        "upstream-name",
        price,
    )
    .await;
    for asked in [false, true] {
        let mut body =
            json!({"model": "base", "prompt": "Hello", "max_tokens": 20, "stream": true});
        if asked {
            body["stream_options"] = json!({"include_usage": true});
        }
        let r = env
            .call(Method::POST, "/v1/completions", Who::VirtualKey, Some(body))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let text = r.body.as_str().unwrap();
        assert!(
            text.contains(" world") && text.ends_with("data: [DONE]\n\n"),
            "{text}"
        );
        assert!(
            text.contains("\"model\":\"base\"") && !text.contains("upstream-name"),
            "{text}"
        );
        assert_eq!(text.contains("\"usage\""), asked, "usage shown: {text}");
        assert_eq!(text.matches("[DONE]").count(), 1, "{text}");
    }
    let entries = ledger(&env).await;
    assert_eq!(entries.len(), 2);
    for entry in &entries {
        assert_eq!(entry["estimated"], false, "{entry}");
        assert_eq!(
            (&entry["input_tokens"], &entry["output_tokens"]),
            (&json!(6), &json!(3))
        );
    }
}

/// AV-2 with a mock of the provider trait (no network is the point here): the funnel settles
/// exactly what the provider reported, and an attempt that may have been billed (a timeout
/// after the upstream took the request) is charged at its worst case before the next target
/// serves.
#[tokio::test]
async fn av_2_the_funnel_settles_what_the_provider_reported_and_charges_a_billed_attempt() {
    use portcullis_core::money::Usage;
    use portcullis_providers::{MockProvider, ProviderError, Reply};
    let mut provider = MockProvider::new();
    provider.expect_name().return_const("mock");
    provider.expect_speaks().return_const(false);
    provider
        .expect_complete()
        .times(2)
        .returning(|target, _, _| match target.model.as_str() {
            "timing-out" => Err(ProviderError::Timeout),
            _ => Ok(Reply::Json {
                status: 200,
                body: json!({"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                 "finish_reason": "stop"}]})
                .to_string()
                .into(),
                usage: Some(Usage {
                    input_tokens: 1200,
                    cached_input_tokens: 200,
                    output_tokens: 300,
                    ..Usage::default()
                }),
            }),
        });
    let env = Env::new_with(|state| {
        state.provider(
            portcullis_core::provider::ProviderKind::Mock,
            std::sync::Arc::new(provider),
        )
    })
    .await;
    let credential = env.add_credential().await;
    let route = json!({"targets": [{"credential_id": credential, "model": "timing-out"},
                                   {"credential_id": credential, "model": "answering"}],
                       "input_micro_usd_per_mtok": 1_000_000, "output_micro_usd_per_mtok": 2_000_000});
    let put = env
        .call(
            Method::PUT,
            &env.org_path("/routes/mocked"),
            Who::Master,
            Some(route),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    let r = env.chat(chat("mocked", false)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let entries = ledger(&env).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    let billed = entries.iter().find(|e| e["estimated"] == true).unwrap();
    let served = entries.iter().find(|e| e["estimated"] == false).unwrap();
    assert!(
        billed["target"].as_str().unwrap().ends_with(":timing-out"),
        "{billed}"
    );
    assert!(billed["cost_micro_usd"].as_i64().unwrap() > 0, "{billed}");
    assert_eq!(
        (
            &served["input_tokens"],
            &served["cached_input_tokens"],
            &served["output_tokens"]
        ),
        (&json!(1200), &json!(200), &json!(300))
    );
    assert!(
        served["target"].as_str().unwrap().ends_with(":answering"),
        "{served}"
    );
}

/// AV-2: a Completions request goes natively to its server as the client wrote it, so what
/// changes its price there (`service_tier: priority`) is priced, or refused, like a chat
/// request's: it never reaches the server at the standard price.
#[tokio::test]
async fn av_2_a_native_completions_request_cannot_buy_priority_at_the_standard_price() {
    let env = Env::new().await;
    let answer = json!({"id": "cmpl-up", "object": "text_completion", "created": 0, "model": "m",
        "choices": [{"text": " hi", "index": 0, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}});
    let addr = fake("/v1/completions", Answer::Json(answer)).await;
    let price =
        json!({"input_micro_usd_per_mtok": 1_000_000, "output_micro_usd_per_mtok": 2_000_000});
    route_to(
        &env,
        "base",
        "openai_compatible",
        addr,
        "upstream-name",
        price,
    )
    .await;
    let body =
        json!({"model": "base", "prompt": "Hello", "max_tokens": 20, "service_tier": "priority"});
    let r = env
        .call(Method::POST, "/v1/completions", Who::VirtualKey, Some(body))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(ledger(&env).await.is_empty());
}
