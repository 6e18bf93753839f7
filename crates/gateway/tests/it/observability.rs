//! AV-3: metrics move with traffic (requests, upstream attempts and fallbacks, guardrail,
//! budget refusals), and the request path's spans reach an OpenTelemetry exporter carrying the
//! org id.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use opentelemetry::trace::TracerProvider;
use opentelemetry_sdk::trace::{InMemorySpanExporterBuilder, SdkTracerProvider};
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;

use crate::support::{Env, Who};

/// The value of one sample line of `/metrics`, 0 when absent.
fn sample(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(env: &Env) -> String {
    let response = env.call(Method::GET, "/metrics", Who::Nobody, None).await;
    assert_eq!(response.status, StatusCode::OK);
    response.body.as_str().unwrap().to_owned()
}

fn chat(alias: &str) -> serde_json::Value {
    json!({"model": alias, "messages": [{"role": "user", "content": "mail a@example.com"}]})
}

#[tokio::test]
async fn av_3_metrics_move_with_traffic() {
    let env = Env::new().await;
    env.mock_route("steady", &["mock-1"]).await;
    env.mock_route("shaky", &["mock-error-503", "mock-1"]).await;
    let before = scrape(&env).await;
    let requests = r#"portcullis_http_requests_total{route="/v1/chat/completions",method="POST",status="200"}"#;
    let patch = env
        .call(
            Method::PATCH,
            &env.org_path("/settings"),
            Who::Admin,
            Some(json!({"pii_guardrail": "redact"})),
        )
        .await;
    assert_eq!(patch.status, StatusCode::OK);
    for alias in ["steady", "steady", "shaky"] {
        let response = env.chat(chat(alias)).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    }
    // A budget of one micro-dollar refuses the next request.
    let patch = env
        .call(
            Method::PATCH,
            &env.org_path("/settings"),
            Who::Admin,
            Some(json!({"budget_micro_usd": 1, "budget_period": "monthly"})),
        )
        .await;
    assert_eq!(patch.status, StatusCode::OK);
    env.mock_route("priced", &["gpt-4o-mini"]).await;
    let refused = env.chat(chat("steady")).await;
    assert_eq!(
        refused.status,
        StatusCode::PAYMENT_REQUIRED,
        "{}",
        refused.body
    );

    let after = scrape(&env).await;
    let moved = |line: &str| sample(&after, line) - sample(&before, line);
    assert_eq!(moved(requests), 3.0, "{after}");
    assert_eq!(
        moved(r#"portcullis_upstream_attempts_total{outcome="ok"}"#),
        3.0
    );
    assert_eq!(
        moved(r#"portcullis_upstream_attempts_total{outcome="error"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"portcullis_upstream_errors_total{kind="status_5xx"}"#),
        1.0
    );
    assert_eq!(moved("portcullis_fallbacks_total"), 1.0);
    assert_eq!(
        moved(r#"portcullis_guardrail_total{action="redacted"}"#),
        4.0,
        "the refused request passed the guardrail before its budget"
    );
    let rejected = moved(r#"portcullis_budget_rejections_total{code="budget_exceeded"}"#)
        + moved(r#"portcullis_budget_rejections_total{code="price_unknown"}"#);
    assert_eq!(rejected, 1.0, "{after}");
    assert!(after.contains(
        r#"portcullis_http_request_duration_seconds_count{route="/v1/chat/completions"}"#
    ));
    assert!(after.contains("portcullis_breakers_open"));
}

#[tokio::test]
async fn av_3_request_spans_reach_an_exporter_with_the_org_id() {
    let exporter = InMemorySpanExporterBuilder::new().build();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let env = Env::new().await;
    env.mock_route("traced", &["mock-error-500", "mock-1"])
        .await;
    for stream in [false, true] {
        let mut body = chat("traced");
        body["stream"] = json!(stream);
        let response = env.chat(body).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    }
    assert!(env.state.logs.flush(Duration::from_secs(10)).await);
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let org = env.org.to_string();
    let org_of = |span: &opentelemetry_sdk::trace::SpanData| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == "org_id")
            .map(|kv| kv.value.to_string())
    };
    for name in [
        "request",
        "auth",
        "guardrail",
        "budget.reserve",
        "upstream",
        "budget.settle",
        "request_log",
    ] {
        let named: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
        assert!(named.len() >= 2, "{name}: {} spans", named.len());
        for span in named.iter().rev().take(2) {
            assert_eq!(
                org_of(span).as_deref(),
                Some(org.as_str()),
                "{name}: {span:?}"
            );
        }
    }
    // Each upstream attempt is a child of its request's `upstream` span: two per request here
    // (a failing target, then the fallback).
    let upstream_ids: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "upstream")
        .map(|s| s.span_context.span_id())
        .collect();
    let attempts: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "upstream.attempt" && upstream_ids.contains(&s.parent_span_id))
        .collect();
    assert!(attempts.len() >= 4, "{} attempts", attempts.len());
    // No span holds the prompt.
    assert!(!format!("{spans:?}").contains("a@example.com"));
}

/// AV-4: a method a client makes up adds no series: it counts as `other`.
#[tokio::test]
async fn av_4_made_up_methods_add_no_metrics_series() {
    let env = Env::new().await;
    for n in 0..50 {
        let method = Method::from_bytes(format!("JUNK{n}").as_bytes()).unwrap();
        env.call(method, "/v1/chat/completions", Who::Nobody, None)
            .await;
    }
    let text = scrape(&env).await;
    assert!(!text.contains("JUNK"), "a client's method became a label");
    assert!(text.contains("method=\"other\""), "{text}");
}
