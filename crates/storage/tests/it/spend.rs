//! AV-2 and RM-4 in PostgreSQL, as the runtime role: leases never pass a cap and expire with
//! their holder, settling is idempotent, and the ledger is append-only with its own retention.

use portcullis_core::KeyId;
use portcullis_storage::spend::{self, Take, Want};
use portcullis_testkit::TestDb;

use crate::fixtures::{populated_org, set_org, settle_one, team_counter};

/// The fixture's team budget is 1_000_000 micro-dollars a month.
const TEAM_CAP: i64 = 1_000_000;

async fn team_of(test: &TestDb, org: portcullis_core::OrgId) -> (uuid::Uuid, KeyId) {
    let mut tx = test.runtime.begin().await.unwrap();
    set_org(&mut tx, org).await;
    let (team, key): (uuid::Uuid, uuid::Uuid) =
        sqlx::query_as("select team_id, key_id from virtual_keys limit 1")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    (team, KeyId::from_uuid(key))
}

#[tokio::test]
async fn av_2_leases_never_pass_the_cap_and_a_dead_holders_lease_expires() {
    let test = TestDb::new().await.unwrap();
    let org = populated_org(&test, "a").await.org_id;
    let (team, _) = team_of(&test, org).await;
    let counter = team_counter(team);
    // The fixture settled 1_234 and still leases as much again; a process that will die takes
    // most of the rest.
    let want = |needed, wanted| Want {
        counter,
        lease_id: None,
        needed,
        wanted,
    };
    let dead = uuid::Uuid::now_v7();
    let fixture_lease = 1_234;
    let left = TEAM_CAP - 1_234 - fixture_lease;
    let Take::Granted(grants) = spend::take(&test.db, org, dead, 1_000, &[want(1, left - 10)])
        .await
        .unwrap()
    else {
        panic!("refused a grant within the cap");
    };
    assert_eq!(grants[0].amount, left - 10);
    // Another process: only 10 are left, so 11 is refused and 10 is granted.
    let other = uuid::Uuid::now_v7();
    assert_eq!(
        spend::take(&test.db, org, other, 60_000, &[want(11, 11)])
            .await
            .unwrap(),
        Take::Refused(counter)
    );
    let Take::Granted(small) = spend::take(&test.db, org, other, 60_000, &[want(10, 500)])
        .await
        .unwrap()
    else {
        panic!("refused what was left");
    };
    assert_eq!(small[0].amount, 10, "a grant is cut to what is left");
    // The first holder never renews: once its lease is past its expiry by the database's own
    // clock (awaited, not slept), its slice is free again.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(test.admin_url())
        .await
        .unwrap();
    let waited = std::time::Instant::now();
    loop {
        let expired: bool = sqlx::query_scalar(
            "select bool_and(expires_at < now()) from spend_leases where holder = $1",
        )
        .bind(dead)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if expired {
            break;
        }
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(5),
            "the lease never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        spend::renew(&test.db, dead, 1_000)
            .await
            .unwrap()
            .is_empty()
    );
    let Take::Granted(after) =
        spend::take(&test.db, org, other, 60_000, &[want(left - 10, left - 10)])
            .await
            .unwrap()
    else {
        panic!("the expired lease still holds budget");
    };
    assert_eq!(after[0].amount, left - 10);
    let mut tx = test.db.begin_tenant(org).await.unwrap();
    let (spent, leased) = spend::counter_state(&mut tx, &counter).await.unwrap();
    assert_eq!((spent, leased), (1_234, left + fixture_lease));
}

#[tokio::test]
async fn av_2_a_retried_settlement_counts_once() {
    let test = TestDb::new().await.unwrap();
    let org = populated_org(&test, "a").await.org_id;
    let (team, key) = team_of(&test, org).await;
    let settlement = settle_one(&test.db, org, key, team, 500).await;
    // The same batch again (a commit in doubt, retried): nothing more is counted.
    let inserted = spend::settle(&test.db, std::slice::from_ref(&settlement), &[])
        .await
        .unwrap();
    assert_eq!(inserted, 0);
    let mut tx = test.db.begin_tenant(org).await.unwrap();
    let (spent, _) = spend::counter_state(&mut tx, &team_counter(team))
        .await
        .unwrap();
    assert_eq!(spent, 1_234 + 500);
    let rows = spend::ledger(
        &mut tx,
        chrono::Utc::now() - chrono::Duration::hours(1),
        chrono::Utc::now() + chrono::Duration::hours(1),
        None,
        100,
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows.iter().map(|r| r.cost_micro_usd).sum::<i64>(), 1_734);
    let grouping = spend::Grouping {
        day: true,
        model: false,
        key: false,
        team: false,
    };
    let today = chrono::Utc::now().date_naive();
    let usage = spend::usage(&mut tx, today, today, grouping).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!((usage[0].requests, usage[0].cost_micro_usd), (2, 1_734));
}

#[tokio::test]
async fn rm_4_the_runtime_role_can_neither_change_nor_delete_a_ledger_row() {
    let test = TestDb::new().await.unwrap();
    let org = populated_org(&test, "a").await.org_id;
    for statement in [
        "update ledger_entries set cost_micro_usd = 0",
        "delete from ledger_entries",
        "truncate ledger_entries",
    ] {
        let mut tx = test.runtime.begin().await.unwrap();
        set_org(&mut tx, org).await;
        let error = sqlx::query(statement).execute(&mut *tx).await.unwrap_err();
        let code = error.as_database_error().and_then(|e| e.code()).unwrap();
        assert_eq!(code, "42501", "{statement}: {error}");
    }
    // Even the owner role is refused outside the retention function.
    let mut owner = test.owner.begin().await.unwrap();
    set_org(&mut owner, org).await;
    assert!(
        sqlx::query("delete from ledger_entries")
            .execute(&mut *owner)
            .await
            .is_err()
    );
    drop(owner);
    let mut tx = test.db.begin_tenant(org).await.unwrap();
    let now = chrono::Utc::now();
    let rows = spend::ledger(&mut tx, now - chrono::Duration::hours(1), now, None, 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].cost_micro_usd, 1_234);
}

#[tokio::test]
async fn rm_4_ledger_retention_removes_only_rows_past_the_orgs_retention() {
    let test = TestDb::new().await.unwrap();
    let org = populated_org(&test, "a").await.org_id;
    let (team, key) = team_of(&test, org).await;
    let mut old = settle_one(&test.db, org, key, team, 10).await;
    // A row from eight years ago (the default retention is seven).
    old.entry_id = uuid::Uuid::now_v7();
    old.occurred_at = chrono::Utc::now() - chrono::Duration::days(8 * 365);
    old.charges.clear();
    spend::settle(&test.db, &[old], &[]).await.unwrap();
    let (leases, ledger) = spend::sweep(&test.db).await.unwrap().unwrap();
    assert_eq!((leases, ledger), (0, 1));
    let mut tx = test.db.begin_tenant(org).await.unwrap();
    let rows = spend::ledger(
        &mut tx,
        chrono::Utc::now() - chrono::Duration::days(10 * 365),
        chrono::Utc::now() + chrono::Duration::hours(1),
        None,
        100,
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 2, "the recent rows stay");
    assert!(
        rows.iter()
            .all(|r| r.occurred_at > chrono::Utc::now() - chrono::Duration::days(1))
    );
}
