//! Runs the real binary: found beside this test executable in the target directory.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portcullis_testkit::TestDb;

/// `target/<profile>/portcullis`: the test runs from `target/<profile>/deps/`.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile_dir.join("portcullis");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p portcullis` first (cargo xtask test does)",
        path.display()
    );
    path
}

/// A command with a clean `PORTCULLIS_*` environment pointing at the test database.
pub fn command(test: &TestDb) -> Command {
    let mut command = Command::new(binary());
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTCULLIS_") {
            command.env_remove(key);
        }
    }
    command
        .env("PORTCULLIS_DATABASE__URL", test.runtime_url())
        .env("PORTCULLIS_DATABASE__ADMIN_URL", test.admin_url())
        .env("PORTCULLIS_LOG__FORMAT", "json")
        .env(
            "PORTCULLIS_SECRETS__KEK",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        )
        // The tests' upstreams listen on loopback, which an operator allows by name (AV-4).
        .env(
            "PORTCULLIS_PROVIDERS__ALLOW_PRIVATE_NETWORKS",
            "[\"127.0.0.0/8\"]",
        )
        .env("PORTCULLIS_SERVER__LISTEN", "127.0.0.1:0")
        .env("PORTCULLIS_SERVER__PLAINTEXT", "true");
    command
}

pub fn run(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).output().unwrap()
}

/// A running `portcullis serve`; killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    log: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Server {
    /// Starts the server and waits for its "listening" log line.
    pub fn start(mut command: Command) -> Self {
        let child = command
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, log) = mpsc::channel();
        // Owned by `Server` at once, so that a failed start still kills and reaps it.
        let mut server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            seen: Vec::new(),
        };
        let stderr = server.child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        loop {
            let line = server
                .log
                .recv_timeout(Duration::from_secs(30))
                .expect("the server did not report listening in time");
            let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            server.seen.push(line);
            if entry["message"] == "listening" {
                server.addr = entry["addr"].as_str().unwrap().parse().unwrap();
                return server;
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.stop()
    }

    /// Sends SIGTERM and waits for the exit, keeping the server's log for reading.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader thread ends with the pipe: everything the server wrote is here.
                while let Ok(line) = self.log.recv_timeout(Duration::from_secs(2)) {
                    self.seen.push(line);
                }
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the server did not stop within 5 s of SIGTERM");
    }

    /// Every log line written so far.
    pub fn log_lines(&mut self) -> &[String] {
        self.seen.extend(self.log.try_iter());
        &self.seen
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // A failed test shows what the server said: a 500 names its cause only there.
            while let Ok(line) = self.log.recv_timeout(Duration::from_secs(1)) {
                self.seen.push(line);
            }
            for line in &self.seen {
                eprintln!("server: {line}");
            }
        }
    }
}

/// A bootstrapped database: its first org and master key.
pub struct Setup {
    pub test: TestDb,
    pub org: String,
    pub master: String,
}

/// A fresh database with one org, bootstrapped by the real binary.
pub async fn setup() -> Setup {
    setup_on(TestDb::new().await.unwrap())
}

/// `test` with one org, bootstrapped by the real binary.
pub fn setup_on(test: TestDb) -> Setup {
    let boot = run(command(&test)
        .env("PORTCULLIS_BOOTSTRAP_PASSWORD", "e2e owner passphrase")
        .args(["bootstrap", "--org", "E2E", "--email", "owner@e2e.example"]));
    let stdout = String::from_utf8_lossy(&boot.stdout).to_string();
    let line = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap()
            .trim()
            .to_owned()
    };
    Setup {
        org: line("org_id:"),
        master: line("master key: "),
        test,
    }
}

/// An org-scoped admin call with the master key, which must succeed; its JSON body.
pub async fn admin(
    client: &reqwest::Client,
    setup: &Setup,
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let url = server.url(&format!("/admin/v1/orgs/{}{path}", setup.org));
    let response = client
        .request(method, url)
        .bearer_auth(&setup.master)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    let text = response.text().await.unwrap();
    // 204 No Content has no body.
    if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

/// Routes each `(alias, model)` to one `mock` credential, and makes a virtual key: its
/// `(key_id, secret)`.
pub async fn mock_routes_and_key(
    client: &reqwest::Client,
    setup: &Setup,
    server: &Server,
    routes: &[(&str, &str)],
) -> (String, String) {
    let credential = admin(
        client,
        setup,
        server,
        reqwest::Method::POST,
        "/credentials",
        serde_json::json!({"name": "mock", "provider": "mock", "api_key": "x"}),
    )
    .await;
    for (alias, model) in routes {
        admin(
            client,
            setup,
            server,
            reqwest::Method::PUT,
            &format!("/routes/{alias}"),
            serde_json::json!({"targets": [{"credential_id": credential["credential_id"], "model": model}]}),
        )
        .await;
    }
    let key = admin(
        client,
        setup,
        server,
        reqwest::Method::POST,
        "/keys",
        serde_json::json!({"name": "traffic"}),
    )
    .await;
    (
        key["key_id"].as_str().unwrap().to_owned(),
        key["secret"].as_str().unwrap().to_owned(),
    )
}

/// `serve` with `command`, which must exit by itself within 20 s: its status and stderr.
pub fn serve_exits(mut command: std::process::Command) -> (std::process::ExitStatus, String) {
    let mut child = command
        .arg("serve")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return (status, stderr);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("serve kept running when it should have refused to start");
}
