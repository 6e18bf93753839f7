//! AC-3 and CF-2 against real rows: what the runtime role sees under each org's context.

use portcullis_core::OrgId;
use portcullis_storage::audit::{self, EventFilter};
use portcullis_storage::{StorageError, orgs, teams};
use portcullis_testkit::TestDb;
use sqlx::PgConnection;

use crate::fixtures::{self, add_team, populated_org, set_org, tenant_tables};

async fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(conn).await.unwrap()
}

#[tokio::test]
async fn ac_3_an_org_sees_none_of_another_orgs_rows_in_any_table() {
    let test = TestDb::new().await.unwrap();
    let a = populated_org(&test, "org-a").await;
    let b = populated_org(&test, "org-b").await;
    let tables = tenant_tables(&test.runtime).await;
    assert!(
        tables.len() >= 5,
        "tenant tables from the catalog: {tables:?}"
    );

    for (me, other) in [(a.org_id, b.org_id), (b.org_id, a.org_id)] {
        let mut tx = test.runtime.begin().await.unwrap();
        set_org(&mut tx, me).await;
        for table in &tables {
            // No WHERE clause: the database alone keeps the other org out.
            let rows: Vec<uuid::Uuid> = sqlx::query_scalar(&format!("select org_id from {table}"))
                .fetch_all(&mut *tx)
                .await
                .unwrap();
            assert!(
                !rows.is_empty(),
                "fixture has no row in {table}: extend fixtures.rs"
            );
            assert!(
                rows.iter().all(|id| *id == *me.as_uuid()),
                "{table} shows {other}'s rows"
            );
        }
        // The org's one member: an invitation makes no user until it is accepted.
        let users = count(&mut tx, "select count(*) from users").await;
        assert_eq!(users, 1, "users of the other org are visible");
        tx.rollback().await.unwrap();
    }
}

#[tokio::test]
async fn ac_3_without_an_org_context_every_table_is_empty() {
    let test = TestDb::new().await.unwrap();
    populated_org(&test, "org-a").await;
    let mut conn = test.runtime.acquire().await.unwrap();
    let mut tables = tenant_tables(&test.runtime).await;
    tables.push("users".to_owned());
    for table in &tables {
        let rows = count(&mut conn, &format!("select count(*) from {table}")).await;
        assert_eq!(rows, 0, "{table} is readable without an org context");
    }
    // An empty setting (what a reused connection reports) fails closed too, without an error.
    let mut tx = test.runtime.begin().await.unwrap();
    sqlx::query("select set_config('portcullis.org_id', '', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(count(&mut tx, "select count(*) from teams").await, 0);
}

#[tokio::test]
async fn ac_3_writing_a_row_into_another_org_is_refused() {
    let test = TestDb::new().await.unwrap();
    let a = populated_org(&test, "org-a").await;
    let b = populated_org(&test, "org-b").await;
    let statements = [
        "insert into teams (team_id, org_id, name) values (gen_random_uuid(), $1, 'intruder')",
        "insert into org_settings (org_id) values ($1)",
        "insert into memberships (org_id, user_id, role)
             select $1, user_id, 'owner' from users limit 1",
        "update teams set name = 'renamed' where org_id = $1",
        "delete from teams where org_id = $1",
    ];
    for statement in statements {
        let mut tx = test.runtime.begin().await.unwrap();
        set_org(&mut tx, a.org_id).await;
        let result = sqlx::query(statement)
            .bind(b.org_id.as_uuid())
            .execute(&mut *tx)
            .await;
        match result {
            // Updates and deletes simply find no row of the other org.
            Ok(done) => assert_eq!(done.rows_affected(), 0, "{statement}"),
            Err(sqlx::Error::Database(error)) => {
                assert_eq!(
                    error.code().as_deref(),
                    Some("42501"),
                    "{statement}: {error}"
                );
            }
            Err(error) => panic!("{statement}: {error}"),
        }
    }
    let mut tx = test.db.begin_tenant(b.org_id).await.unwrap();
    let names: Vec<String> = teams::list_teams(&mut tx)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["org-b-team"]);
}

#[tokio::test]
async fn ac_3_a_security_invoker_view_keeps_rls() {
    let test = TestDb::new().await.unwrap();
    let a = populated_org(&test, "org-a").await;
    populated_org(&test, "org-b").await;
    for statement in [
        "create view org_names with (security_invoker = true) as select org_id, name from organizations",
        "grant select on org_names to portcullis_runtime",
    ] {
        sqlx::query(statement).execute(&test.owner).await.unwrap();
    }
    let mut tx = test.runtime.begin().await.unwrap();
    set_org(&mut tx, a.org_id).await;
    let names: Vec<String> = sqlx::query_scalar("select name from org_names")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(names, ["org-a"]);
}

#[tokio::test]
async fn ac_3_a_pooled_connection_reused_after_a_tenant_transaction_carries_no_org() {
    let test = TestDb::new().await.unwrap();
    let org = populated_org(&test, "org-a").await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(test.runtime_url())
        .await
        .unwrap();
    let db = portcullis_storage::Db::from_pool(pool.clone());
    let pid_before: i32 = sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();

    let mut tx = db.begin_tenant(org.org_id).await.unwrap();
    assert_eq!(teams::list_teams(&mut tx).await.unwrap().len(), 1);
    tx.commit().await.unwrap();

    let mut conn = pool.acquire().await.unwrap();
    let pid_after: i32 = sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(
        pid_before, pid_after,
        "the test must reuse the same server connection"
    );
    let setting: Option<String> =
        sqlx::query_scalar("select nullif(current_setting('portcullis.org_id', true), '')")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(setting, None);
    assert_eq!(count(&mut conn, "select count(*) from teams").await, 0);

    // A rolled-back transaction leaves nothing behind either.
    drop(conn);
    let tx = db.begin_tenant(org.org_id).await.unwrap();
    drop(tx);
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(
        count(&mut conn, "select count(*) from organizations").await,
        0
    );
}

#[tokio::test]
async fn cf_2_one_org_uuid_in_the_setting_the_rows_and_the_audit_entries() {
    let test = TestDb::new().await.unwrap();
    let org = populated_org(&test, "org-a").await;
    let id = *org.org_id.as_uuid();

    let mut tx = test.db.begin_tenant(org.org_id).await.unwrap();
    assert_eq!(orgs::get_org(&mut tx).await.unwrap().org_id, org.org_id);
    let events = audit::list(
        &mut tx,
        &EventFilter {
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        events.len(),
        6,
        "org, team, member, key, credential and prompt created"
    );
    assert!(events.iter().all(|e| e.record.org_id == org.org_id));
    assert_eq!(events[0].record.action, "org.created");
    assert_eq!(events[0].record.target_id, org.org_id.to_string());
    tx.commit().await.unwrap();

    let mut raw = test.runtime.begin().await.unwrap();
    set_org(&mut raw, org.org_id).await;
    let setting: String = sqlx::query_scalar("select current_setting('portcullis.org_id')")
        .fetch_one(&mut *raw)
        .await
        .unwrap();
    assert_eq!(setting, id.to_string());
    for table in tenant_tables(&test.runtime).await {
        let ids: Vec<uuid::Uuid> =
            sqlx::query_scalar(&format!("select distinct org_id from {table}"))
                .fetch_all(&mut *raw)
                .await
                .unwrap();
        assert_eq!(ids, [id], "{table}");
    }

    // No second tenant identifier: no column names a tenant other than org_id.
    let other_ids: Vec<String> = sqlx::query_scalar(
        "select c.relname || '.' || a.attname from pg_attribute a
         join pg_class c on c.oid = a.attrelid
         where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p', 'v')
           and a.attnum > 0 and not a.attisdropped
           and (a.attname ~ '(tenant|organi[sz]ation|account)' or
                (a.attname ~ 'org' and a.attname <> 'org_id'))",
    )
    .fetch_all(&test.runtime)
    .await
    .unwrap();
    assert!(other_ids.is_empty(), "{other_ids:?}");
}

#[tokio::test]
async fn cf_2_a_duplicate_team_name_conflicts_only_within_one_org() {
    let test = TestDb::new().await.unwrap();
    let a = populated_org(&test, "org-a").await;
    let b = populated_org(&test, "org-b").await;
    // The same name in another org is fine: uniqueness never reveals another org's rows.
    add_team(&test.db, b.org_id, "org-a-team").await;
    let team_id = portcullis_core::TeamId::new();
    let mut tx = test
        .db
        .begin_write(
            a.org_id,
            &fixtures::actor(),
            &fixtures::source(),
            portcullis_storage::AuditedChange::new("team.created", "team", team_id),
        )
        .await
        .unwrap();
    let duplicate = teams::NewTeam {
        name: "org-a-team".to_owned(),
        budget_micro_usd: None,
        budget_period: None,
    };
    let error = teams::create_team(&mut tx, team_id, &duplicate)
        .await
        .unwrap_err();
    assert!(matches!(error, StorageError::Conflict(_)), "{error:?}");
}

#[tokio::test]
async fn ac_3_reading_an_unknown_org_finds_nothing() {
    let test = TestDb::new().await.unwrap();
    populated_org(&test, "org-a").await;
    let mut tx = test.db.begin_tenant(OrgId::new()).await.unwrap();
    assert!(matches!(
        orgs::get_org(&mut tx).await,
        Err(StorageError::NotFound)
    ));
}
