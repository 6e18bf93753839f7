//! Spend on the data plane: budgets refuse with 402 naming the scope (AV-2), a target without a
//! price is refused unless its route says unpriced, rate limits answer 429 with Retry-After,
//! and every served request lands in the ledger and the daily usage (RM-4).

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Env, Who, unique};

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hello"}],
           "stream": stream, "max_tokens": 16})
}

/// A mock route priced at one micro-dollar per token each way.
async fn priced_route(env: &Env, alias: &str) {
    env.mock_route(alias, &["mock-1"]).await;
    let path = env.org_path(&format!("/routes/{alias}"));
    let current = env
        .call(Method::GET, &env.org_path("/routes"), Who::Master, None)
        .await;
    let targets = current.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alias"] == alias)
        .unwrap()["targets"]
        .clone();
    let put = env
        .call(
            Method::PUT,
            &path,
            Who::Master,
            Some(
                json!({"targets": targets, "input_micro_usd_per_mtok": 1_000_000,
                        "output_micro_usd_per_mtok": 1_000_000}),
            ),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
}

async fn key_with(env: &Env, extra: Value) -> (String, String) {
    let mut body = json!({"name": unique("spend")});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let key = env
        .call(
            Method::POST,
            &env.org_path("/keys"),
            Who::Master,
            Some(body),
        )
        .await;
    assert_eq!(key.status, StatusCode::CREATED, "{}", key.body);
    (
        key.body["key_id"].as_str().unwrap().to_owned(),
        key.body["secret"].as_str().unwrap().to_owned(),
    )
}

async fn ledger(env: &Env) -> Vec<Value> {
    env.state.spend.flush().await;
    let page = env
        .call(Method::GET, &env.org_path("/ledger"), Who::Admin, None)
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.body["entries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn av_2_a_key_budget_refuses_with_402_naming_the_scope_and_is_never_passed() {
    let env = Env::new().await;
    priced_route(&env, "chat").await;
    // One request reserves its body's bytes plus 16 output tokens; it spends far less.
    let (_, secret) = key_with(&env, json!({"budget_micro_usd": 1_000})).await;
    let mut served = 0;
    let mut refused = None;
    for _ in 0..200 {
        let r = env
            .call_as(
                Method::POST,
                "/v1/chat/completions",
                &secret,
                Some(chat("chat", false)),
            )
            .await;
        match r.status {
            StatusCode::OK => served += 1,
            StatusCode::PAYMENT_REQUIRED => {
                refused = Some(r.body);
                break;
            }
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    let refused = refused.expect("the budget never refused");
    assert_eq!(refused["error"]["code"], "budget_exceeded");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("key")
    );
    assert!(served > 0);
    let entries = ledger(&env).await;
    let spent: i64 = entries
        .iter()
        .map(|e| e["cost_micro_usd"].as_i64().unwrap())
        .sum();
    assert_eq!(entries.len(), served);
    assert!(spent <= 1_000, "spent {spent} past a cap of 1000");
}

#[tokio::test]
async fn av_2_a_target_without_a_price_is_refused_unless_its_route_says_unpriced() {
    let env = Env::new().await;
    env.mock_route("unpriced", &["house-model"]).await;
    // Refused with or without a budget: the ledger never records free use by accident.
    let (_, budgeted) = key_with(&env, json!({"budget_micro_usd": 1_000_000})).await;
    for key in [budgeted.as_str(), env.virtual_key.as_str()] {
        let r = env
            .call_as(
                Method::POST,
                "/v1/chat/completions",
                key,
                Some(chat("unpriced", false)),
            )
            .await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{}", r.body);
        assert_eq!(r.body["error"]["code"], "price_unknown");
    }
    // The route says so explicitly, and that is in the trail.
    let routes = env
        .call(Method::GET, &env.org_path("/routes"), Who::Master, None)
        .await;
    let targets = routes.body["data"][0]["targets"].clone();
    let put = env
        .call(
            Method::PUT,
            &env.org_path("/routes/unpriced"),
            Who::Admin,
            Some(json!({"targets": targets, "unpriced": true})),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    let changed = env.audit("route.changed").await;
    assert_eq!(changed.last().unwrap().record.details["unpriced"], true);
    let r = env
        .call(
            Method::POST,
            "/v1/chat/completions",
            Who::VirtualKey,
            Some(chat("unpriced", false)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let entries = ledger(&env).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["priced"], false);
    assert_eq!(entries[0]["cost_micro_usd"], 0);
}

#[tokio::test]
async fn av_2_an_org_budget_counts_every_key_of_the_org() {
    let env = Env::new().await;
    priced_route(&env, "chat").await;
    let patch = env
        .call(
            Method::PATCH,
            &env.org_path("/settings"),
            Who::Admin,
            Some(json!({"budget_micro_usd": 300, "budget_period": "monthly"})),
        )
        .await;
    assert_eq!(patch.status, StatusCode::OK, "{}", patch.body);
    assert_eq!(patch.body["settings"]["budget_micro_usd"], 300);
    let (_, first) = key_with(&env, json!({})).await;
    let (_, second) = key_with(&env, json!({})).await;
    let mut codes = Vec::new();
    for i in 0..40 {
        let secret = if i % 2 == 0 { &first } else { &second };
        let r = env
            .call_as(
                Method::POST,
                "/v1/chat/completions",
                secret,
                Some(chat("chat", false)),
            )
            .await;
        if r.status == StatusCode::PAYMENT_REQUIRED {
            codes.push(r.body["error"]["message"].as_str().unwrap().to_owned());
        }
    }
    assert!(!codes.is_empty(), "the org budget never refused");
    assert!(codes.iter().all(|m| m.contains("org")), "{codes:?}");
    let spent: i64 = ledger(&env)
        .await
        .iter()
        .map(|e| e["cost_micro_usd"].as_i64().unwrap())
        .sum();
    assert!(spent <= 300, "spent {spent}");
}

/// A team budget is charged by every key of the team on the request path, concurrently, and by
/// no key outside it: the team's keys are refused naming the team and never spend past its
/// cap, while a key of the same org outside the team is still served.
#[tokio::test]
async fn av_2_a_team_budget_counts_every_key_of_the_team_and_no_other() {
    let env = Env::new().await;
    priced_route(&env, "chat").await;
    let team = env
        .call(
            Method::POST,
            &env.org_path("/teams"),
            Who::Admin,
            Some(json!({"name": "research", "budget_micro_usd": 300, "budget_period": "monthly"})),
        )
        .await;
    assert_eq!(team.status, StatusCode::CREATED, "{}", team.body);
    let team_id = team.body["team_id"].as_str().unwrap().to_owned();
    let (_, first) = key_with(&env, json!({"team_id": team_id})).await;
    let (_, second) = key_with(&env, json!({"team_id": team_id})).await;
    let (outsider_id, outsider) = key_with(&env, json!({})).await;
    let send = |secret: String| {
        let env = &env;
        async move {
            env.call_as(
                Method::POST,
                "/v1/chat/completions",
                &secret,
                Some(chat("chat", false)),
            )
            .await
        }
    };
    let answers = futures_util::future::join_all((0..60).map(|i| {
        send(if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        })
    }))
    .await;
    let mut refusals = Vec::new();
    let mut served = 0;
    for answer in &answers {
        match answer.status {
            StatusCode::OK => served += 1,
            StatusCode::PAYMENT_REQUIRED => {
                refusals.push(answer.body["error"]["message"].as_str().unwrap().to_owned());
            }
            other => panic!("unexpected {other}: {}", answer.body),
        }
    }
    assert!(served > 0, "the team's keys were never served");
    assert!(!refusals.is_empty(), "the team budget never refused");
    assert!(refusals.iter().all(|m| m.contains("team")), "{refusals:?}");
    // The org is not the team: a key outside it is still served.
    let outside = send(outsider.clone()).await;
    assert_eq!(outside.status, StatusCode::OK, "{}", outside.body);
    let entries = ledger(&env).await;
    let team_spent: i64 = entries
        .iter()
        .filter(|e| e["team_id"] == team_id.as_str())
        .map(|e| e["cost_micro_usd"].as_i64().unwrap())
        .sum();
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["team_id"] == team_id.as_str())
            .count(),
        served,
        "every served request of the team is in its ledger"
    );
    assert!(
        team_spent > 0 && team_spent <= 300,
        "the team spent {team_spent} of 300"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["key_id"] == outsider_id.as_str() && e["team_id"].is_null())
    );
}

/// Every prompt endpoint of the funnel's list (AV-2, RM-1, RM-4, AV-3): refused with 402 past
/// its key's budget before anything reaches the upstream, and when served, streamed or not, in
/// the ledger, the request log under its own endpoint, and the metrics under its route.
#[tokio::test]
async fn av_2_every_prompt_endpoint_is_budgeted_logged_and_in_the_ledger() {
    let env = Env::new().await;
    priced_route(&env, "chat").await;
    // Embeddings are priced per input token only.
    let (_, broke) = key_with(&env, json!({"budget_micro_usd": 0})).await;
    let (served_key_id, served_key) = key_with(&env, json!({"budget_micro_usd": 1_000_000})).await;
    let mut served = 0;
    for path in portcullis_gateway::dataplane::prompt_routes() {
        let streams: &[bool] = if path == "/v1/embeddings" {
            &[false]
        } else {
            &[false, true]
        };
        for &stream in streams {
            let body = crate::support::prompt_body(path, "chat", stream);
            let refused = env
                .call_as(Method::POST, path, &broke, Some(body.clone()))
                .await;
            assert_eq!(
                refused.status,
                StatusCode::PAYMENT_REQUIRED,
                "{path} (stream {stream}) with no budget: {}",
                refused.body
            );
            let answer = env
                .call_as(Method::POST, path, &served_key, Some(body))
                .await;
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "{path} (stream {stream}): {}",
                answer.body
            );
            served += 1;
        }
    }
    let entries = ledger(&env).await;
    let of_key: Vec<&Value> = entries
        .iter()
        .filter(|e| e["key_id"] == served_key_id.as_str())
        .collect();
    assert_eq!(of_key.len(), served, "a ledger row per served request");
    assert!(
        of_key
            .iter()
            .all(|e| e["cost_micro_usd"].as_i64() > Some(0)),
        "{of_key:?}"
    );
    assert!(
        env.state
            .logs
            .flush(std::time::Duration::from_secs(10))
            .await
    );
    let logs = env
        .call(
            Method::GET,
            &env.org_path("/logs?limit=1000"),
            Who::Admin,
            None,
        )
        .await;
    let logs = logs.body["logs"].as_array().unwrap();
    for (endpoint, count) in [
        ("chat", 2),
        ("embeddings", 1),
        ("messages", 2),
        ("responses", 2),
    ] {
        let ok = logs
            .iter()
            .filter(|l| l["endpoint"] == endpoint && l["status"] == 200)
            .count();
        let refused = logs
            .iter()
            .filter(|l| l["endpoint"] == endpoint && l["status"] == 402)
            .count();
        assert_eq!((ok, refused), (count, count), "{endpoint}: {logs:?}");
    }
    // And in the metrics, by route: served and refused, and the budget's refusals counted.
    let metrics = env.call(Method::GET, "/metrics", Who::Nobody, None).await;
    let text = metrics.body.as_str().unwrap();
    for path in portcullis_gateway::dataplane::prompt_routes() {
        for status in ["200", "402"] {
            let line = text.lines().find(|l| {
                l.starts_with("portcullis_http_requests_total")
                    && l.contains(&format!("route=\"{path}\""))
                    && l.contains(&format!("status=\"{status}\""))
            });
            assert!(
                line.is_some(),
                "no {status} of {path} in the metrics:\n{text}"
            );
        }
    }
    let rejections = text
        .lines()
        .find(|l| l.starts_with("portcullis_budget_rejections_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_default();
    assert!(rejections >= 9.0, "{rejections} budget rejections counted");
}

#[tokio::test]
async fn av_2_requests_per_minute_answer_429_with_retry_after() {
    let env = Env::new().await;
    priced_route(&env, "chat").await;
    let (_, secret) = key_with(&env, json!({"rpm_limit": 3})).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let r = env
            .call_as(
                Method::POST,
                "/v1/chat/completions",
                &secret,
                Some(chat("chat", false)),
            )
            .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(r.body["error"]["code"], "rate_limited");
            retry_after = r.headers.get("retry-after").cloned();
        }
        statuses.push(r.status.as_u16());
    }
    // A minute may turn during the test: never more than 3 in one minute, so at most 3 + 3.
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!((3..=5).contains(&ok), "{statuses:?}");
    if ok < 5 {
        let secs: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&secs));
    }
}

#[tokio::test]
async fn rm_4_each_request_lands_in_the_ledger_and_the_daily_usage() {
    let env = Env::new().await;
    priced_route(&env, "chat").await;
    let whole = env
        .call(
            Method::POST,
            "/v1/chat/completions",
            Who::VirtualKey,
            Some(chat("chat", false)),
        )
        .await;
    assert_eq!(whole.status, StatusCode::OK);
    let usage = whole.body["usage"].clone();
    // A stream whose client did not ask for usage: the gateway asks, settles, and hides it.
    let stream = env
        .call(
            Method::POST,
            "/v1/chat/completions",
            Who::VirtualKey,
            Some(chat("chat", true)),
        )
        .await;
    assert_eq!(stream.status, StatusCode::OK);
    let text = stream.body.as_str().unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(
        !text.contains("\"usage\":{"),
        "the client got a usage chunk it did not ask for"
    );
    let entries = ledger(&env).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    for entry in &entries {
        assert_eq!(entry["model"], "chat");
        assert_eq!(entry["input_tokens"], usage["prompt_tokens"]);
        assert_eq!(entry["output_tokens"], usage["completion_tokens"]);
        assert_eq!(entry["estimated"], false);
        let tokens =
            usage["prompt_tokens"].as_i64().unwrap() + usage["completion_tokens"].as_i64().unwrap();
        assert_eq!(entry["cost_micro_usd"].as_i64().unwrap(), tokens);
    }
    let by_model = env
        .call(
            Method::GET,
            &env.org_path("/usage?group_by=model"),
            Who::Viewer,
            None,
        )
        .await;
    assert_eq!(by_model.status, StatusCode::OK, "{}", by_model.body);
    let rows = by_model.body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["model"], "chat");
    assert_eq!(rows[0]["requests"], 2);
    let bad = env
        .call(
            Method::GET,
            &env.org_path("/usage?group_by=colour"),
            Who::Viewer,
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let member = env
        .call(Method::GET, &env.org_path("/ledger"), Who::Member, None)
        .await;
    assert_eq!(member.status, StatusCode::FORBIDDEN);
}
