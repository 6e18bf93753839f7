//! AC-3 from the catalog: every table under forced row-level security with a fail-closed
//! tenant policy, no view or SECURITY DEFINER function opening a way around it, and a runtime
//! role without the privileges that would bypass it.

use portcullis_testkit::{RUNTIME_LOGIN, TestDb};
use sqlx::PgPool;

/// Tables that hold no tenant data, with the reason each may go without RLS.
const NOT_TENANT_DATA: &[(&str, &str)] = &[("_sqlx_migrations", "migration bookkeeping")];

/// The documented cross-tenant look-ups (docs/ARCHITECTURE.md, tenancy).
/// The map, whose tenancy section documents each SECURITY DEFINER function.
const ARCHITECTURE: &str = include_str!("../../../../docs/ARCHITECTURE.md");

const SECURITY_DEFINER_ALLOWED: &[&str] = &[
    "auth_user_by_email",
    "auth_user",
    "auth_user_memberships",
    "auth_start_session",
    "auth_session",
    "auth_end_session",
    "auth_verify_session_mfa",
    "auth_set_totp_pending",
    "auth_enable_mfa",
    "auth_user_mfa_rules",
    "auth_remove_mfa",
    "auth_claim_totp_step",
    "auth_recovery_code_hash",
    "auth_spend_recovery_code",
    "auth_master_key",
    "auth_invite",
    "auth_user_invitations",
    "auth_session_limits",
    "auth_end_user_sessions",
    "auth_user_sessions",
    "auth_touch_session",
    "platform_orgs",
    "platform_create_first_master_key",
    "platform_keyring_canaries",
    "platform_sealed_totp_seeds",
    "platform_reseal_totp",
    "auth_virtual_key",
    "spend_renew_leases",
    "spend_sweep",
    "ledger_expire",
    "content_expire",
];

/// Every way the schema breaks the tenancy rules; empty when it keeps them.
async fn tenancy_violations(pool: &PgPool) -> Vec<String> {
    let mut violations = Vec::new();

    let tables: Vec<(String, bool, bool, bool)> = sqlx::query_as(
        "select c.relname::text, c.relrowsecurity, c.relforcerowsecurity,
                exists (select 1 from pg_attribute a where a.attrelid = c.oid
                        and a.attname = 'org_id' and not a.attisdropped)
         from pg_class c
         where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p')",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (table, enabled, forced, has_org_id) in tables {
        if NOT_TENANT_DATA.iter().any(|(name, _)| *name == table) {
            continue;
        }
        if !enabled || !forced {
            violations.push(format!(
                "table {table}: row-level security not enabled and forced"
            ));
        }
        if has_org_id {
            let (not_null, tenant_policy): (bool, bool) = sqlx::query_as(
                "select (select a.attnotnull from pg_attribute a
                         where a.attrelid = $1::regclass and a.attname = 'org_id'),
                        exists (select 1 from pg_policies p
                                where p.schemaname = 'public' and p.tablename = $1
                                  and p.roles = '{public}' and p.permissive = 'PERMISSIVE'
                                  and p.cmd = 'ALL'
                                  and p.qual = '(org_id = portcullis_current_org())'
                                  and p.with_check = '(org_id = portcullis_current_org())')",
            )
            .bind(&table)
            .fetch_one(pool)
            .await
            .unwrap();
            if !not_null {
                violations.push(format!("table {table}: org_id may be null"));
            }
            if !tenant_policy {
                violations.push(format!(
                    "table {table}: no tenant_isolation policy on org_id"
                ));
            }
        }
    }

    // A permissive policy applying to everyone can only narrow to the current org; policies
    // that open more are for the owner role alone (the SECURITY DEFINER look-ups).
    let open_policies: Vec<(String, String)> = sqlx::query_as(
        "select tablename::text, policyname::text from pg_policies
         where schemaname = 'public' and permissive = 'PERMISSIVE'
           and roles <> '{portcullis_owner}'
           and coalesce(qual, with_check) not like '%portcullis_current_org()%'
           and coalesce(qual, '') not like '%memberships%'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (table, policy) in open_policies {
        violations.push(format!(
            "policy {policy} on {table}: not bounded by the current org"
        ));
    }

    let views: Vec<String> = sqlx::query_scalar(
        "select c.relname::text from pg_class c
         where c.relnamespace = 'public'::regnamespace and c.relkind in ('v', 'm')
           and not coalesce(c.reloptions @> array['security_invoker=true'], false)",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for view in views {
        violations.push(format!(
            "view {view}: not security_invoker, reads as its owner"
        ));
    }

    let definers: Vec<String> = sqlx::query_scalar(
        "select p.proname::text from pg_proc p
         where p.pronamespace = 'public'::regnamespace and p.prosecdef",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for function in definers {
        // Documented means in the map's table of cross-tenant functions, not only here.
        let in_map = ARCHITECTURE.contains(&format!("`{function}("));
        if !SECURITY_DEFINER_ALLOWED.contains(&function.as_str()) || !in_map {
            violations.push(format!(
                "function {function}: undocumented SECURITY DEFINER"
            ));
        }
    }
    violations
}

#[tokio::test]
async fn ac_3_every_table_is_under_forced_rls_with_a_fail_closed_policy() {
    let test = TestDb::new().await.unwrap();
    let violations = tenancy_violations(&test.runtime).await;
    assert!(violations.is_empty(), "{violations:#?}");
}

#[tokio::test]
async fn ac_3_the_catalog_check_catches_a_table_view_or_partition_that_escapes_rls() {
    let test = TestDb::new().await.unwrap();
    for statement in [
        "create table leaky (org_id uuid not null, secret text)",
        "create view leaky_view as select * from organizations",
        "create table parted (org_id uuid not null, v int) partition by list (v)",
        "alter table parted enable row level security",
        "alter table parted force row level security",
        "create policy tenant_isolation on parted using (org_id = portcullis_current_org())
             with check (org_id = portcullis_current_org())",
        "create table parted_1 partition of parted for values in (1)",
        "create function sneaky() returns setof uuid language sql security definer
             as 'select org_id from organizations'",
    ] {
        sqlx::query(statement).execute(&test.owner).await.unwrap();
    }
    let violations = tenancy_violations(&test.runtime).await;
    let mentions = |needle: &str| violations.iter().any(|v| v.contains(needle));
    assert!(
        mentions("table leaky: row-level security"),
        "{violations:#?}"
    );
    assert!(
        mentions("table leaky: no tenant_isolation"),
        "{violations:#?}"
    );
    assert!(mentions("view leaky_view"), "{violations:#?}");
    assert!(
        mentions("table parted_1: row-level security"),
        "{violations:#?}"
    );
    assert!(!mentions("table parted: "), "{violations:#?}");
    assert!(mentions("function sneaky"), "{violations:#?}");
}

#[tokio::test]
async fn ac_3_the_runtime_role_cannot_bypass_rls() {
    let test = TestDb::new().await.unwrap();
    let check = test.db.check_role().await.unwrap();
    assert_eq!(check.role, RUNTIME_LOGIN);
    assert!(!check.superuser);
    assert!(!check.bypass_rls);
    assert!(!check.owns_objects);
    assert!(!check.member_of_owner);
    assert!(check.problems().is_empty());
    test.db.ensure_safe_role().await.unwrap();

    // Neither the login role nor any role it inherits from may bypass RLS or own a table.
    let (inherited_bypass, owned_tables): (bool, i64) = sqlx::query_as(
        "select exists (select 1 from pg_roles r
                        where pg_has_role(current_user, r.oid, 'MEMBER')
                          and (r.rolsuper or r.rolbypassrls)),
                (select count(*) from pg_class c
                 where c.relnamespace = 'public'::regnamespace
                   and pg_has_role(current_user, c.relowner, 'MEMBER'))",
    )
    .fetch_one(&test.runtime)
    .await
    .unwrap();
    assert!(!inherited_bypass);
    assert_eq!(owned_tables, 0);

    // And it cannot change the rules: DDL on a tenant table is refused.
    let disable = sqlx::query("alter table teams disable row level security")
        .execute(&test.runtime)
        .await;
    assert!(disable.is_err());
}

#[tokio::test]
async fn ac_3_a_superuser_connection_is_refused_by_the_start_up_check() {
    let test = TestDb::new().await.unwrap();
    let superuser = sqlx::PgPool::connect(test.admin_url()).await.unwrap();
    let db = portcullis_storage::Db::from_pool(superuser);
    let error = db.ensure_safe_role().await.unwrap_err().to_string();
    assert!(error.contains("is a superuser"), "{error}");
    db.close().await;
}

#[tokio::test]
async fn en_1_database_tls_modes_encrypt_and_verify_the_connection() {
    use portcullis_storage::{Db, DbOptions};
    let test = TestDb::new().await.unwrap();
    let options = |mode: &str| {
        let mut options = DbOptions::new(test.runtime_url().to_owned().into());
        options.tls_mode = Some(mode.to_owned());
        options.acquire_timeout = std::time::Duration::from_secs(3);
        options
    };
    let encrypted = Db::connect_lazy(&options("require")).unwrap();
    assert!(
        encrypted.uses_tls().await.unwrap(),
        "require: the connection is encrypted"
    );
    let plain = Db::connect_lazy(&options("disable")).unwrap();
    assert!(!plain.uses_tls().await.unwrap());
    // The server's certificate is not signed by any CA we gave: verification refuses it.
    let verified = Db::connect_lazy(&options("verify-full")).unwrap();
    assert!(verified.uses_tls().await.is_err());
    assert!(Db::connect_lazy(&options("sometimes")).is_err());
}

#[tokio::test]
async fn cm_2_the_runtime_role_cannot_change_or_delete_a_prompt_version() {
    let test = TestDb::new().await.unwrap();
    let org = crate::fixtures::populated_org(&test, "a").await.org_id;
    let mut tx = test
        .db
        .begin_write(
            org,
            &crate::fixtures::actor(),
            &crate::fixtures::source(),
            portcullis_storage::AuditedChange::new("prompt.created", "prompt", "p"),
        )
        .await
        .unwrap();
    let messages = serde_json::json!([{"role": "system", "content": "v1"}]);
    portcullis_storage::prompts::create(&mut tx, uuid::Uuid::now_v7(), "p", &messages)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    for statement in [
        "update prompt_versions set messages = '[]'",
        "delete from prompt_versions",
        "truncate prompt_versions",
    ] {
        let mut conn = test.runtime.begin().await.unwrap();
        crate::fixtures::set_org(&mut conn, org).await;
        let error = sqlx::query(statement)
            .execute(&mut *conn)
            .await
            .unwrap_err();
        let code = error.as_database_error().and_then(|e| e.code()).unwrap();
        assert_eq!(code, "42501", "{statement}: {error}");
    }
}
