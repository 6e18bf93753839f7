//! Scale-out and availability (AV-3, AC-2, AU-3, RM-4) on a private PostgreSQL that the test
//! stops and starts: two gateway processes on one database behave as one service (a key
//! revoked through one is refused by the other within a second), `/readyz` turns 503 while
//! PostgreSQL is down and 200 again when it is back, without a restart, and a restart of
//! PostgreSQL in the middle of traffic loses no settled ledger row and no audit entry.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis_testkit::TestDb;
use serde_json::{Value, json};

use crate::support::{Server, Setup, admin, command, mock_routes_and_key, setup_on};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private cluster, stopped when dropped.
struct Cluster {
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    async fn start(dir: PathBuf, port: u16) -> (Self, String) {
        let data = dir.clone();
        let url = tokio::task::spawn_blocking(move || portcullis_devdb::start(&data, port))
            .await
            .unwrap()
            .unwrap();
        (Self { dir, port }, url)
    }

    async fn stop(&self) {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || portcullis_devdb::stop(&dir))
            .await
            .unwrap()
            .unwrap();
    }

    async fn restart(&self) {
        let (dir, port) = (self.dir.clone(), self.port);
        tokio::task::spawn_blocking(move || portcullis_devdb::start(&dir, port))
            .await
            .unwrap()
            .unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = portcullis_devdb::stop(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn chat(client: &reqwest::Client, server: &Server, key: &str) -> u16 {
    client
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

async fn ready(client: &reqwest::Client, server: &Server) -> u16 {
    client
        .get(server.url("/readyz"))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// Polls `probe` until it returns `want` or `within` passes; how long it took.
async fn until<F, Fut>(within: Duration, want: u16, mut probe: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let started = Instant::now();
    while started.elapsed() < within {
        if probe().await == want {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn new_key(client: &reqwest::Client, setup: &Setup, server: &Server) -> (String, String) {
    let key = admin(
        client,
        setup,
        server,
        reqwest::Method::POST,
        "/keys",
        json!({"name": "k"}),
    )
    .await;
    (
        key["key_id"].as_str().unwrap().to_owned(),
        key["secret"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av_3_two_processes_are_one_service_and_a_database_restart_loses_no_ledger_or_audit_row() {
    let dir = std::env::temp_dir().join(format!("portcullis-restart-{}", uuid::Uuid::now_v7()));
    let (cluster, url) = Cluster::start(dir, free_port()).await;
    let setup = setup_on(TestDb::new_on(&url).await.unwrap());
    let start = || {
        let mut command = command(&setup.test);
        command.env("PORTCULLIS_DATABASE__ACQUIRE_TIMEOUT_MS", "1000");
        Server::start(command)
    };
    let (a, b) = (start(), start());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (revoked_id, revoked) =
        mock_routes_and_key(&client, &setup, &a, &[("chat", "mock-1")]).await;

    // One service: a key revoked through A is refused by B within a second (AC-2).
    assert_eq!(chat(&client, &b, &revoked).await, 200);
    admin(
        &client,
        &setup,
        &a,
        reqwest::Method::DELETE,
        &format!("/keys/{revoked_id}"),
        Value::Null,
    )
    .await;
    let took = until(Duration::from_secs(1), 401, || chat(&client, &b, &revoked)).await;
    assert!(
        took.is_some(),
        "B still served a key revoked through A after 1 s"
    );

    // Traffic through both processes while PostgreSQL stops and starts again.
    let (key_id, key) = new_key(&client, &setup, &a).await;
    let served = Arc::new(AtomicU64::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let traffic = {
        let (client, key, served, running) = (
            client.clone(),
            key.clone(),
            Arc::clone(&served),
            Arc::clone(&running),
        );
        let urls = [a.url("/v1/chat/completions"), b.url("/v1/chat/completions")];
        tokio::spawn(async move {
            let mut n = 0usize;
            while running.load(Ordering::Relaxed) {
                let status = client
                    .post(&urls[n % 2])
                    .bearer_auth(&key)
                    .json(
                        &json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}),
                    )
                    .send()
                    .await
                    .map_or(0, |r| r.status().as_u16());
                if status == 200 {
                    served.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let mut audited = 2; // the revoked key and the traffic key
    for _ in 0..3 {
        new_key(&client, &setup, &b).await;
        audited += 1;
    }
    // Traffic is flowing through both before the outage.
    let before = served.load(Ordering::Relaxed);
    until(Duration::from_secs(10), 1, || {
        let grown = served.load(Ordering::Relaxed) >= before + 10;
        async move { u16::from(grown) }
    })
    .await
    .expect("no traffic was served before the outage");
    cluster.stop().await;
    let down = until(Duration::from_secs(10), 503, || ready(&client, &a)).await;
    assert!(
        down.is_some(),
        "/readyz did not turn 503 with PostgreSQL down"
    );
    // An admin change while the database is down is refused, never half-done.
    let refused = client
        .post(a.url(&format!("/admin/v1/orgs/{}/keys", setup.org)))
        .bearer_auth(&setup.master)
        .json(&json!({"name": "during outage"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.restart().await;
    for server in [&a, &b] {
        let up = until(Duration::from_secs(20), 200, || ready(&client, server)).await;
        assert!(up.is_some(), "/readyz did not come back without a restart");
    }
    for _ in 0..3 {
        new_key(&client, &setup, &a).await;
        audited += 1;
    }
    // And flowing again after it.
    let recovered = served.load(Ordering::Relaxed);
    until(Duration::from_secs(10), 1, || {
        let grown = served.load(Ordering::Relaxed) >= recovered + 10;
        async move { u16::from(grown) }
    })
    .await
    .expect("no traffic was served after the database came back");
    running.store(false, Ordering::Relaxed);
    traffic.await.unwrap();
    let served = served.load(Ordering::Relaxed);
    assert!(
        served > 20,
        "too little traffic to prove anything: {served}"
    );

    // Both processes stop cleanly, flushing what they hold; then count.
    let (mut a, mut b) = (a, b);
    assert!(a.stop().success() && b.stop().success());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(setup.test.admin_url())
        .await
        .unwrap();
    let (ledger, created): (i64, i64) = sqlx::query_as(
        "select (select count(*) from ledger_entries where key_id = $1::uuid),
                (select count(*) from audit_events where action = 'key.created')",
    )
    .bind(&key_id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    // Every request answered 200 has its ledger row, those settled during the outage too.
    assert_eq!(
        ledger,
        i64::try_from(served).unwrap(),
        "ledger rows vs 200 answers"
    );
    assert_eq!(created, audited, "an audit entry per key created");
    let verify =
        crate::support::run(command(&setup.test).args(["audit", "verify", "--org", &setup.org]));
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    drop(conn);
    drop(setup);
    drop(cluster);
}
