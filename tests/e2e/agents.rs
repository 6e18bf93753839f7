//! The coding agents companies route through a gateway, run for real against the binary:
//! Claude Code (`claude -p`, Anthropic's Messages API with everything it sends) and Codex CLI
//! (`codex exec`, OpenAI's Responses API, streamed), installed from the npm registry by
//! `.ci/run` into `PORTCULLIS_AGENTS_DIR` (default `~/.cache/portcullis/agents`). Each completes
//! a turn through a route to the mock provider, and its requests are in the request log under
//! their endpoint.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Server, command, mock_routes_and_key, setup};

/// What the mock provider answers with.
const MOCK_REPLY: &str = "This is the Portcullis mock provider replying.";

fn agent(name: &str) -> PathBuf {
    let dir = std::env::var_os("PORTCULLIS_AGENTS_DIR").map_or_else(
        || {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/portcullis/agents")
        },
        PathBuf::from,
    );
    let path = dir.join("node_modules/.bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: .ci/run installs it (npm install --prefix {} @openai/codex \
         @anthropic-ai/claude-code, at the versions .ci/run names)",
        path.display(),
        dir.display()
    );
    path
}

/// A new empty directory for an agent's home, so that nothing of the machine's is read.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `command` to its end, killing it after `limit`.
fn run_within(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The endpoints of the key's logged requests and their statuses.
async fn logged(
    client: &reqwest::Client,
    setup: &crate::support::Setup,
    server: &Server,
) -> Vec<(String, i64)> {
    let started = Instant::now();
    loop {
        let logs: Value = client
            .get(server.url(&format!("/admin/v1/orgs/{}/logs?limit=1000", setup.org)))
            .bearer_auth(&setup.master)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows: Vec<(String, i64)> = logs["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["endpoint"].as_str().unwrap_or_default().to_owned(),
                    l["status"].as_i64().unwrap_or_default(),
                )
            })
            .collect();
        if !rows.is_empty() || started.elapsed() > Duration::from_secs(10) {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What an agent's turn needs: its route's alias, its own home, the gateway and a key.
struct Turn<'a> {
    alias: &'a str,
    home: &'a std::path::Path,
    server: &'a Server,
    secret: &'a str,
}

/// Runs `agent` for one turn through a route `alias` to the mock, as `prepare` sets it up,
/// and checks what every agent must show: a success, the mock's answer, and each of its
/// requests logged as served under `endpoint`.
async fn one_turn(agent: &str, alias: &str, endpoint: &str, prepare: fn(&mut Command, &Turn<'_>)) {
    let program = self::agent(agent);
    let setup = setup().await;
    let server = Server::start(command(&setup.test));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let (_, secret) = mock_routes_and_key(&client, &setup, &server, &[(alias, "mock-1")]).await;
    let home = scratch(agent);
    let mut run = Command::new(program);
    run.current_dir(&home).env("HOME", &home);
    prepare(
        &mut run,
        &Turn {
            alias,
            home: &home,
            server: &server,
            secret: &secret,
        },
    );
    let output = tokio::task::spawn_blocking(move || run_within(run, Duration::from_secs(120)))
        .await
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(MOCK_REPLY),
        "{}",
        text(&output)
    );
    let rows = logged(&client, &setup, &server).await;
    assert!(
        rows.iter().any(|(e, s)| e == endpoint && *s == 200),
        "{rows:?}"
    );
    assert!(
        rows.iter().all(|(e, s)| e == endpoint && *s == 200),
        "{agent} had a request refused: {rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_completes_a_turn_through_the_gateway() {
    one_turn("claude", "claude-house", "messages", |run, turn| {
        run.args(["-p", "Say hello.", "--model", turn.alias])
            .env("ANTHROPIC_BASE_URL", turn.server.url(""))
            .env("ANTHROPIC_API_KEY", turn.secret)
            // Background requests (titles, summaries) take the same route.
            .env("ANTHROPIC_SMALL_FAST_MODEL", turn.alias)
            .env("ANTHROPIC_DEFAULT_HAIKU_MODEL", turn.alias)
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_cli_completes_a_turn_through_the_responses_api() {
    one_turn("codex", "codex-house", "responses", |run, turn| {
        std::fs::write(
            turn.home.join("config.toml"),
            format!(
                "model = \"{}\"\nmodel_provider = \"portcullis\"\n\n\
                 [model_providers.portcullis]\nname = \"Portcullis\"\nbase_url = \"{}\"\n\
                 env_key = \"PORTCULLIS_KEY\"\nwire_api = \"responses\"\n",
                turn.alias,
                turn.server.url("/v1")
            ),
        )
        .unwrap();
        run.args(["exec", "--skip-git-repo-check", "Say hello."])
            .env("CODEX_HOME", turn.home)
            .env("PORTCULLIS_KEY", turn.secret);
    })
    .await;
}
