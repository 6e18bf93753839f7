//! AV-2 and RM-4 against an upstream that bills what a provider may bill: every choice at the
//! full output bound it was sent (20,000 tokens when it was sent none), images at the
//! published worst case, its usage in spaced JSON or not at all. Over three gateway processes
//! and 200 concurrent requests of every shape a key holder might send, the ledger never passes
//! the key's cap, and never records less than the upstream billed for what it served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::{Server, Setup, admin, command, setup};

/// gpt-4o-mini's rates in the built-in table, micro-dollars per million tokens.
const INPUT_RATE: i64 = 150_000;
const OUTPUT_RATE: i64 = 600_000;
/// The worst case of one high-detail image for gpt-4o-mini.
const IMAGE_TOKENS: i64 = 48_169;

/// What the upstream billed, in millionths of a micro-dollar (exact).
#[derive(Clone, Default)]
struct Billed(Arc<AtomicI64>);

fn bill(billed: &Billed, prompt: i64, completion: i64) {
    billed.0.fetch_add(
        prompt * INPUT_RATE + completion * OUTPUT_RATE,
        Ordering::SeqCst,
    );
}

/// Bills the maximum the request allows: `n` choices of the bound it was sent.
async fn billing(State(billed): State<Billed>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap();
    let bound = request["max_tokens"]
        .as_i64()
        .or_else(|| request["max_completion_tokens"].as_i64())
        .unwrap_or(20_000);
    let n = request["n"].as_i64().unwrap_or(1);
    let images = request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|p| p["type"] == "image_url")
        .count() as i64;
    let prompt = (body.len() as i64 + 3) / 4 + images * IMAGE_TOKENS;
    let completion = n * bound;
    bill(&billed, prompt, completion);
    let tools = request.get("tools").is_some();
    if request["stream"] == true {
        // llama.cpp-like: a space after every colon, and no usage chunk unless one was asked.
        let mut events = vec![
            "data: {\"choices\": [{\"index\": 0, \"delta\": {\"role\": \"assistant\", \"content\": \"\"}}]}\n\n".to_owned(),
        ];
        if tools {
            events.push("data: {\"choices\": [{\"index\": 0, \"delta\": {\"tool_calls\": [{\"index\": 0, \"id\": \"call_1\", \"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}}]}}]}\n\n".to_owned());
        }
        for _ in 0..20 {
            events.push(
                "data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"word \"}}]}\n\n"
                    .to_owned(),
            );
        }
        if request["stream_options"]["include_usage"] == true && n % 2 == 1 {
            events.push(format!(
                "data: {{\"choices\": [], \"usage\": {{\"total_tokens\": {}, \"completion_tokens\": {completion}, \"prompt_tokens\": {prompt}}}}}\n\n",
                prompt + completion
            ));
        }
        events.push("data: [DONE]\n\n".to_owned());
        let stream = futures_util::stream::iter(events).then(|e| async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            Ok::<_, std::io::Error>(Bytes::from(e))
        });
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    axum::Json(json!({"id": "x", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}))
    .into_response()
}

async fn billing_upstream() -> (SocketAddr, Billed) {
    let billed = Billed::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(billing))
        .with_state(billed.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, billed)
}

/// Every shape of request the issue names, by number.
fn shape(i: usize) -> (Value, bool) {
    let text = |t: &str| json!([{"role": "user", "content": t}]);
    let image = json!([{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]);
    let mut body = json!({"model": "gpt-4o-mini", "messages": text("hello")});
    let mut cut = false;
    match i % 9 {
        0 => {
            body["n"] = json!(20);
            body["max_tokens"] = json!(100);
        }
        1 => {}
        2 => body["max_tokens"] = json!(100_000.0),
        3 => body["max_tokens"] = json!("100000"),
        4 => body["max_tokens"] = json!(100_000),
        5 => {
            body["messages"] = image;
            body["max_tokens"] = json!(50);
        }
        6 => {
            body["stream"] = json!(true);
            body["max_tokens"] = json!(200);
            cut = true;
        }
        7 => {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
            body["max_tokens"] = json!(300);
            body["tools"] = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
        }
        _ => {
            body["stream"] = json!(true);
            body["max_tokens"] = json!(64);
            body["n"] = json!(2);
        }
    }
    (body, cut)
}

async fn send(client: &reqwest::Client, url: &str, secret: &str, i: usize) -> u16 {
    let (body, cut) = shape(i);
    let Ok(response) = client
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(secret)
        .json(&body)
        .send()
        .await
    else {
        return 0;
    };
    let status = response.status().as_u16();
    let mut stream = response.bytes_stream();
    if cut {
        // The client leaves after the first piece, before any usage chunk.
        let _ = stream.next().await;
        return status;
    }
    while let Some(piece) = stream.next().await {
        if piece.is_err() {
            break;
        }
    }
    status
}

fn gateway(setup: &Setup) -> Server {
    let mut command = command(&setup.test);
    command.env("PORTCULLIS_SPEND__LEASE_TTL_SECS", "2");
    Server::start(command)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av_2_what_the_upstream_may_bill_never_passes_the_cap_nor_goes_unrecorded() {
    let setup = setup().await;
    let (addr, billed) = billing_upstream().await;
    let servers = [gateway(&setup), gateway(&setup), gateway(&setup)];
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(200)
        .build()
        .unwrap();
    let credential = admin(
        &client,
        &setup,
        &servers[0],
        reqwest::Method::POST,
        "/credentials",
        json!({"name": "billing", "provider": "openai_compatible", "api_key": "sk-billing-0123",
               "base_url": format!("http://{addr}/v1")}),
    )
    .await;
    admin(
        &client,
        &setup,
        &servers[0],
        reqwest::Method::PUT,
        "/routes/gpt-4o-mini",
        json!({"targets": [{"credential_id": credential["credential_id"], "model": "gpt-4o-mini"}],
               "max_choices": 32}),
    )
    .await;
    // Enough for a few dozen of the honest shapes, far from all 200.
    const CAP: i64 = 200_000;
    let key = admin(
        &client,
        &setup,
        &servers[0],
        reqwest::Method::POST,
        "/keys",
        json!({"name": "capped", "budget_micro_usd": CAP}),
    )
    .await;
    let secret = key["secret"].as_str().unwrap().to_owned();
    let urls: Vec<String> = servers.iter().map(|s| s.url("")).collect();
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let (client, url, secret) = (client.clone(), urls[i % 3].clone(), secret.clone());
            tokio::spawn(async move { (i, send(&client, &url, &secret, i).await) })
        })
        .collect();
    let mut served = 0;
    for call in calls {
        let (i, status) = call.await.unwrap();
        match (i % 9, status) {
            // A float or a string bound is the client's mistake.
            (2 | 3, 400) => {}
            (2 | 3, other) => panic!("shape {} answered {other}, not 400", i % 9),
            (_, 200) => served += 1,
            (_, 402) => {}
            (shape, other) => panic!("shape {shape} answered {other}"),
        }
    }
    assert!(served >= 5, "only {served} served");
    for server in servers {
        assert!(server.terminate().success());
    }
    let org = portcullis_core::OrgId::from_uuid(setup.org.parse().unwrap());
    let mut tx = setup.test.db.begin_tenant(org).await.unwrap();
    let entries = portcullis_storage::spend::ledger(
        &mut tx,
        chrono::Utc::now() - chrono::Duration::hours(1),
        chrono::Utc::now() + chrono::Duration::hours(1),
        None,
        10_000,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let recorded: i64 = entries.iter().map(|e| e.cost_micro_usd).sum();
    let billed_micro = (billed.0.load(Ordering::SeqCst) + 999_999) / 1_000_000;
    assert!(
        recorded <= CAP,
        "the ledger records {recorded} past a cap of {CAP}"
    );
    assert!(
        recorded >= billed_micro,
        "the upstream billed {billed_micro} but the ledger records {recorded}"
    );
    assert!(
        entries.iter().any(|e| e.estimated),
        "a stream cut before its usage settles at its reservation, marked estimated"
    );
}
