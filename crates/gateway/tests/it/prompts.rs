//! CM-2: prompt versions are immutable; a label serves the version it points at, and moving it
//! back rolls back on the next request, without a deploy; every change is audited; a missing
//! variable is a 400 naming it.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Env, Who};

async fn ok(env: &Env, method: Method, path: &str, who: Who, body: Value) -> Value {
    let response = env
        .call(method.clone(), &env.org_path(path), who, Some(body))
        .await;
    assert!(
        response.status.is_success(),
        "{method} {path}: {} {}",
        response.status,
        response.body
    );
    response.body
}

fn version(text: &str) -> Value {
    json!({"messages": [{"role": "system", "content": text}]})
}

/// What the echo model answers: the last message's text, so the test sends none of its own.
async fn ask(env: &Env, prompt: Value) -> (StatusCode, Value) {
    let body = json!({"model": "echo", "messages": [], "prompt": prompt});
    let response = env.chat(body).await;
    (response.status, response.body)
}

fn answer(body: &Value) -> &str {
    body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn cm_2_labels_deploy_and_roll_back_on_the_next_request_and_every_change_is_audited() {
    let env = Env::new().await;
    env.mock_route("echo", &["mock-echo"]).await;
    let mut first = version("Version one for {{ customer }}.");
    first["name"] = json!("support");
    let created = ok(&env, Method::POST, "/prompts", Who::Member, first).await;
    assert_eq!(
        (created["version"].clone(), created["variables"].clone()),
        (json!(1), json!(["customer"]))
    );
    let second = ok(
        &env,
        Method::POST,
        "/prompts/support/versions",
        Who::Member,
        version("Version two for {{ customer }}."),
    )
    .await;
    assert_eq!(second["version"], 2);
    let vars = json!({"customer": "Ana"});

    // Deploy version 2 as production: served at once.
    ok(
        &env,
        Method::PUT,
        "/prompts/support/labels/production",
        Who::Admin,
        json!({"version": 2}),
    )
    .await;
    let (status, body) = ask(&env, json!({"name": "support", "variables": vars})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(answer(&body), "Version two for Ana.");
    // Roll back: the next request gets version 1.
    let moved = ok(
        &env,
        Method::PUT,
        "/prompts/support/labels/production",
        Who::Admin,
        json!({"version": 1}),
    )
    .await;
    assert_eq!(moved["previous_version"], 2);
    let (_, body) = ask(
        &env,
        json!({"name": "support", "label": "production", "variables": vars}),
    )
    .await;
    assert_eq!(answer(&body), "Version one for Ana.");
    // A version by number, and a missing variable named.
    let (_, body) = ask(
        &env,
        json!({"name": "support", "version": 2, "variables": vars}),
    )
    .await;
    assert_eq!(answer(&body), "Version two for Ana.");
    let (status, body) = ask(&env, json!({"name": "support", "version": 2})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing variable `customer`"),
        "{body}"
    );
    let (status, _) = ask(
        &env,
        json!({"name": "support", "label": "canary", "variables": vars}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Only an admin moves labels; versions have no route that edits or deletes them.
    let denied = env
        .call(
            Method::PUT,
            &env.org_path("/prompts/support/labels/production"),
            Who::Member,
            Some(json!({"version": 2})),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    for method in [Method::PUT, Method::PATCH, Method::DELETE] {
        let edit = env
            .call(
                method.clone(),
                &env.org_path("/prompts/support/versions"),
                Who::Owner,
                Some(version("edited")),
            )
            .await;
        assert_eq!(edit.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    let versions = env
        .call(
            Method::GET,
            &env.org_path("/prompts/support/versions"),
            Who::Viewer,
            None,
        )
        .await;
    assert_eq!(
        versions.body["versions"][0]["messages"][0]["content"],
        "Version one for {{ customer }}."
    );

    let audit = env
        .call(
            Method::GET,
            &env.org_path("/audit?limit=1000"),
            Who::Admin,
            None,
        )
        .await;
    let actions: Vec<&str> = audit.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .filter(|a| a.starts_with("prompt."))
        .collect();
    assert_eq!(
        actions,
        [
            "prompt.created",
            "prompt.version_created",
            "prompt.label_moved",
            "prompt.label_moved"
        ]
    );
}

#[tokio::test]
async fn cm_2_a_bad_template_is_refused_when_the_version_is_created() {
    let env = Env::new().await;
    let mut bad = version("{% if %}");
    bad["name"] = json!("broken");
    let response = env
        .call(
            Method::POST,
            &env.org_path("/prompts"),
            Who::Member,
            Some(bad),
        )
        .await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.body
    );
    assert!(
        response.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not parse")
    );
}
