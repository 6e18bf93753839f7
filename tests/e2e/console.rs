//! The web console in a real browser, against the real binary: Debian's Chromium driven by
//! playwright-core (`tests/console/walkthrough.cjs`), both installed by `.ci/run` (the npm
//! packages into `PORTCULLIS_BROWSER_DIR`, default `~/.cache/portcullis/browser`). Sign-in,
//! a key's secret shown once and never again (AC-5), a CSRF-less write refused, an invitation
//! accepted by a new person who signs in as a viewer with no write control enabled and whose
//! forced write is refused (AC-1), the audit page naming who did each (AU-2), two-factor
//! sign-in enrolled from the profile and a sign-in with a recovery code (AC-4), the page's
//! policy never broken (EN-3), an accessibility check; screenshots to `docs/console/`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Server, command, mock_routes_and_key, setup};

fn browser_dir() -> PathBuf {
    let dir = std::env::var_os("PORTCULLIS_BROWSER_DIR").map_or_else(
        || {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/portcullis/browser")
        },
        PathBuf::from,
    );
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing from {}: .ci/run installs it (npm install --prefix {} \
         playwright-core axe-core, at the versions .ci/run names)",
        dir.display(),
        dir.display()
    );
    dir
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: .ci/run installs Debian's chromium",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ac_5_en_3_the_console_signs_in_shows_a_secret_once_and_refuses_forged_writes() {
    let setup = setup().await;
    let server = Server::start(command(&setup.test));
    // A route for the traffic the walkthrough sends with the key it makes.
    let client = reqwest::Client::new();
    mock_routes_and_key(&client, &setup, &server, &[("chat", "mock-1")]).await;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let shots = root.join("docs/console");
    std::fs::create_dir_all(&shots).unwrap();
    let mut walk = Command::new("node");
    walk.arg(root.join("tests/console/walkthrough.cjs"))
        .env("CONSOLE_URL", server.url("/console"))
        .env("EMAIL", "owner@e2e.example")
        .env("PASSWORD", "e2e owner passphrase")
        .env("ORG_ID", &setup.org)
        .env("BROWSER_DIR", browser_dir())
        .env("CHROMIUM", chromium())
        .env("SCREENSHOTS", &shots)
        .stdin(Stdio::null());
    // Output goes to files, not pipes: a chatty run never blocks on a full pipe.
    let logs = std::env::temp_dir().join(format!("console-walk-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&logs).unwrap();
    walk.stdout(std::fs::File::create(logs.join("out")).unwrap())
        .stderr(std::fs::File::create(logs.join("err")).unwrap());
    let status = tokio::task::spawn_blocking(move || {
        let mut child = walk.spawn().unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if started.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    let stdout = std::fs::read_to_string(logs.join("out")).unwrap_or_default();
    let stderr = std::fs::read_to_string(logs.join("err")).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()) && stdout.contains("console walkthrough: ok"),
        "the walkthrough failed:\n{stdout}\n{stderr}"
    );
    assert!(server.terminate().success());
}
