//! Compatibility: the official `openai` and `anthropic` Python SDKs (installed by `.ci/run` with
//! pip) call the real binary: chat, streaming, embeddings in the SDK's default base64, the
//! Responses API streamed and not, legacy completions, models, errors; Anthropic messages,
//! streamed and not, token counts and Anthropic-shaped errors.

use portcullis_testkit::TestDb;
use serde_json::{Value, json};

use crate::support::{Server, command, run};

async fn post(client: &reqwest::Client, url: String, token: &str, body: Value, put: bool) -> Value {
    let request = if put {
        client.put(url)
    } else {
        client.post(url)
    };
    let response = request.bearer_auth(token).json(&body).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_openai_and_anthropic_python_sdks_work_against_the_gateway() {
    let importable = std::process::Command::new("python3")
        .args(["-c", "import openai"])
        .status();
    assert!(
        importable.is_ok_and(|s| s.success()),
        "the openai Python package is missing: python3 -m pip install openai (.ci/run does)"
    );
    let test = TestDb::new().await.unwrap();
    let boot = run(command(&test)
        .env("PORTCULLIS_BOOTSTRAP_PASSWORD", "sdk owner passphrase")
        .args(["bootstrap", "--org", "Sdk", "--email", "sdk@example.com"]));
    let stdout = String::from_utf8_lossy(&boot.stdout).to_string();
    let master = stdout
        .lines()
        .find_map(|l| l.strip_prefix("master key: "))
        .unwrap()
        .trim()
        .to_owned();
    let org = stdout
        .lines()
        .find_map(|l| l.strip_prefix("org_id:"))
        .unwrap()
        .trim()
        .to_owned();

    let server = Server::start(command(&test));
    let client = reqwest::Client::builder().build().unwrap();
    let admin = |path: &str| server.url(&format!("/admin/v1/orgs/{org}{path}"));
    let credential = post(
        &client,
        admin("/credentials"),
        &master,
        json!({"name": "mock", "provider": "mock", "api_key": "x"}),
        false,
    )
    .await;
    let target =
        json!({"targets": [{"credential_id": credential["credential_id"], "model": "mock-1"}]});
    for alias in ["gpt-4o-mini", "text-embedding-3-small", "claude-sonnet"] {
        post(
            &client,
            admin(&format!("/routes/{alias}")),
            &master,
            target.clone(),
            true,
        )
        .await;
    }
    let key = post(
        &client,
        admin("/keys"),
        &master,
        json!({"name": "sdk"}),
        false,
    )
    .await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/openai_sdk.py");
    let output = std::process::Command::new("python3")
        .args([script, &server.url("/v1"), key["secret"].as_str().unwrap()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(text.contains("openai sdk: ok"), "{text}");
    assert!(server.terminate().success());
}
