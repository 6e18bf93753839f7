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
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = tokio::task::spawn_blocking(move || {
        let mut child = walk.spawn().unwrap();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("console walkthrough: ok"),
        "the walkthrough failed:\n{stdout}\n{stderr}"
    );
    assert!(server.terminate().success());
}
