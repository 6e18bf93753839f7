//! AV-2 across processes: several `portcullis serve` processes on one database share budgets
//! and rate limits exactly; a process killed between reserve and settle holds its share only
//! until its lease expires.

use std::time::Duration;

use portcullis_core::OrgId;
use portcullis_core::money::Period;
use portcullis_storage::spend::{self as store, Counter, Scope};
use serde_json::{Value, json};

use crate::support::{Server, Setup, admin, command, setup};

/// Leases of the processes under test expire this fast.
const LEASE_TTL_SECS: &str = "2";

fn server(setup: &Setup) -> Server {
    let mut command = command(&setup.test);
    command.env("PORTCULLIS_SPEND__LEASE_TTL_SECS", LEASE_TTL_SECS);
    Server::start(command)
}

/// Routes `chat` (answers at once) and `slow` (after 3 s), priced at one micro-dollar per
/// token each way; returns a key with `limits`.
async fn routes_and_key(
    client: &reqwest::Client,
    setup: &Setup,
    server: &Server,
    limits: Value,
) -> (String, String) {
    let credential = admin(
        client,
        setup,
        server,
        reqwest::Method::POST,
        "/credentials",
        json!({"name": "mock", "provider": "mock", "api_key": "x"}),
    )
    .await;
    for (alias, model) in [("chat", "mock-1"), ("slow", "mock-slow-3000")] {
        admin(
            client,
            setup,
            server,
            reqwest::Method::PUT,
            &format!("/routes/{alias}"),
            json!({"targets": [{"credential_id": credential["credential_id"], "model": model}],
                   "input_micro_usd_per_mtok": 1_000_000, "output_micro_usd_per_mtok": 1_000_000}),
        )
        .await;
    }
    let mut body = json!({"name": "spend"});
    for (k, v) in limits.as_object().unwrap() {
        body[k] = v.clone();
    }
    let key = admin(client, setup, server, reqwest::Method::POST, "/keys", body).await;
    (
        key["key_id"].as_str().unwrap().to_owned(),
        key["secret"].as_str().unwrap().to_owned(),
    )
}

fn chat(alias: &str) -> Value {
    json!({"model": alias, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8})
}

async fn call(client: &reqwest::Client, server_url: &str, secret: &str, alias: &str) -> u16 {
    client
        .post(format!("{server_url}/v1/chat/completions"))
        .bearer_auth(secret)
        .json(&chat(alias))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av_2_five_hundred_concurrent_requests_over_three_processes_never_pass_the_cap() {
    let setup = setup().await;
    let servers = [server(&setup), server(&setup), server(&setup)];
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(200)
        .build()
        .unwrap();
    // A request reserves about 80 micro-dollars and spends about 17: a cap of 850 allows
    // about 50 of them.
    const CAP: i64 = 850;
    let (key_id, secret) = routes_and_key(
        &client,
        &setup,
        &servers[0],
        json!({"budget_micro_usd": CAP}),
    )
    .await;
    let urls: Vec<String> = servers.iter().map(|s| s.url("")).collect();
    let calls: Vec<_> = (0..510)
        .map(|i| {
            let (client, url, secret) = (client.clone(), urls[i % 3].clone(), secret.clone());
            tokio::spawn(async move { call(&client, &url, &secret, "chat").await })
        })
        .collect();
    let mut served = 0;
    let mut refused = 0;
    for call in calls {
        match call.await.unwrap() {
            200 => served += 1,
            402 => refused += 1,
            other => panic!("a request ended {other}, neither served nor refused"),
        }
    }
    assert_eq!(served + refused, 510);
    assert!(served >= 10, "only {served} served");
    // Stopping flushes each process's ledger writer and returns its leases.
    for server in servers {
        assert!(server.terminate().success());
    }
    let org = OrgId::from_uuid(setup.org.parse().unwrap());
    let mut tx = setup.test.db.begin_tenant(org).await.unwrap();
    let counter = Counter {
        scope: Scope::Key,
        scope_id: key_id.parse().unwrap(),
        period_start: Period::Total.start(chrono_now()),
    };
    let (spent, leased) = store::counter_state(&mut tx, &counter).await.unwrap();
    let now = chrono_now();
    let rows = store::ledger(
        &mut tx,
        now - chrono_hours(1),
        now + chrono_hours(1),
        None,
        1000,
    )
    .await
    .unwrap();
    let ledger_total: i64 = rows.iter().map(|r| r.cost_micro_usd).sum();
    eprintln!("AV-2: {served} served, {refused} refused, spent {spent} of {CAP}");
    assert_eq!(rows.len(), served, "one ledger row per served request");
    assert_eq!(
        ledger_total, spent,
        "the ledger and the budget counter agree"
    );
    assert!(spent <= CAP, "overspend: {} past the cap", spent - CAP);
    assert_eq!(leased, 0, "stopped processes returned their leases");
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn chrono_hours(h: i64) -> chrono::Duration {
    chrono::Duration::hours(h)
}

#[tokio::test]
async fn av_2_a_process_killed_between_reserve_and_settle_frees_its_reservation_on_expiry() {
    let setup = setup().await;
    let mut doomed = server(&setup);
    let survivor = server(&setup);
    let client = reqwest::Client::builder().build().unwrap();
    // Room for one request in flight (about 80 reserved), not two.
    let (key_id, secret) =
        routes_and_key(&client, &setup, &survivor, json!({"budget_micro_usd": 100})).await;
    let doomed_url = doomed.url("");
    let in_flight = {
        let (client, secret) = (client.clone(), secret.clone());
        tokio::spawn(async move { call(&client, &doomed_url, &secret, "slow").await })
    };
    // Awaited, not slept: the doomed process holds a lease of the key's budget.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(setup.test.admin_url())
        .await
        .unwrap();
    let waited = std::time::Instant::now();
    loop {
        let leased: i64 = sqlx::query_scalar(
            "select coalesce(sum(amount), 0)::bigint from spend_leases
             where scope = 'key' and scope_id = $1::uuid",
        )
        .bind(&key_id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if leased > 0 {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the request in flight never reserved"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let survivor_url = survivor.url("");
    assert_eq!(
        call(&client, &survivor_url, &secret, "chat").await,
        402,
        "the reservation in flight on the other process holds the budget"
    );
    doomed.child.kill().unwrap();
    doomed.child.wait().unwrap();
    assert_eq!(
        in_flight.await.unwrap(),
        0,
        "the killed process never answered"
    );
    // Nothing settled it: past the lease's expiry the budget is whole again.
    let mut status = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        status = call(&client, &survivor_url, &secret, "chat").await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 402);
    }
    assert_eq!(status, 200, "the dead process's reservation never expired");
}

#[tokio::test]
async fn av_2_requests_per_minute_hold_across_two_processes() {
    let setup = setup().await;
    let servers = [server(&setup), server(&setup)];
    let client = reqwest::Client::builder().build().unwrap();
    let (_, secret) = routes_and_key(&client, &setup, &servers[0], json!({"rpm_limit": 10})).await;
    // The 30 calls take well under ten seconds: keep them inside one minute.
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if second >= 45 {
        tokio::time::sleep(Duration::from_secs(61 - second)).await;
    }
    let mut statuses = Vec::new();
    for i in 0..30 {
        statuses.push(call(&client, &servers[i % 2].url(""), &secret, "chat").await);
    }
    let served = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(served, 10, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
}

/// AV-2 at shutdown: a request still in flight when the grace period ends is cut, and its
/// reservation is settled into the ledger (at its worst case) before the process exits: the
/// upstream may have billed it, so it is never lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av_2_a_request_cut_at_the_end_of_the_grace_period_is_in_the_ledger() {
    let setup = setup().await;
    let mut command = command(&setup.test);
    command.env("PORTCULLIS_SERVER__SHUTDOWN_GRACE_SECS", "1");
    let server = Server::start(command);
    let client = reqwest::Client::new();
    let (_, secret) = routes_and_key(
        &client,
        &setup,
        &server,
        json!({"budget_micro_usd": 1_000_000}),
    )
    .await;
    let slow = {
        let (client, url, secret) = (client.clone(), server.url(""), secret.clone());
        tokio::spawn(async move { call(&client, &url, &secret, "slow").await })
    };
    // In flight: the mock answers after 3 s, the grace period ends after 1.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped = tokio::task::spawn_blocking(move || {
        let mut server = server;
        let status = server.stop();
        (status, server.log_lines().to_vec())
    });
    assert_ne!(
        slow.await.unwrap(),
        200,
        "the request outlived the grace period"
    );
    let (status, lines) = stopped.await.unwrap();
    assert!(status.success(), "{lines:#?}");
    let org = OrgId::from_uuid(setup.org.parse().unwrap());
    let mut tx = setup.test.db.begin_tenant(org).await.unwrap();
    let now = chrono_now();
    let rows = store::ledger(
        &mut tx,
        now - chrono_hours(1),
        now + chrono_hours(1),
        None,
        100,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        rows.len(),
        1,
        "the cut request left no ledger row: {lines:#?}"
    );
    assert!(rows[0].estimated, "{:?}", rows[0]);
    assert!(rows[0].cost_micro_usd > 0, "{:?}", rows[0]);
}
