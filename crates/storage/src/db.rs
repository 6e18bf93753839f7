//! The runtime connection pool and the checks the gateway makes of it.

use std::str::FromStr;
use std::time::Duration;

use portcullis_core::OrgId;
use portcullis_core::audit::{Actor, Source};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

use crate::error::StorageError;
use crate::migrate::{self, OWNER_ROLE};
use crate::tenant::{AuditedChange, TenantTx, WriteTx};

/// How to reach PostgreSQL as the runtime role.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// A `postgres://` URL naming the runtime login role. Secret: it may hold a password.
    pub url: SecretString,
    pub max_connections: u32,
    /// How long a request waits for a free connection before failing.
    pub acquire_timeout: Duration,
    /// `sslmode` (one of [`TLS_MODES`]); `None` keeps the URL's own (or `prefer`).
    pub tls_mode: Option<String>,
    /// The CA that signed the server's certificate, for `verify-ca` and `verify-full`.
    pub tls_ca_file: Option<std::path::PathBuf>,
}

impl DbOptions {
    pub fn new(url: SecretString) -> Self {
        Self {
            url,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            tls_mode: None,
            tls_ca_file: None,
        }
    }
}

/// PostgreSQL's `sslmode` values, in order of strictness.
pub const TLS_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// The database as the gateway sees it. The pool stays private: queries go through
/// [`TenantTx`] and [`WriteTx`], or through the narrow cross-tenant functions below.
#[derive(Debug, Clone)]
pub struct Db {
    pool: PgPool,
}

/// What the database says of the role the gateway connected as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleCheck {
    pub role: String,
    pub superuser: bool,
    pub bypass_rls: bool,
    /// Owns a table, view, sequence or function in the schema (and so escapes FORCEd RLS
    /// policies it could rewrite).
    pub owns_objects: bool,
    pub member_of_owner: bool,
}

impl RoleCheck {
    /// Every reason this role must not serve traffic; empty when it is safe.
    pub fn problems(&self) -> Vec<&'static str> {
        let mut problems = Vec::new();
        if self.superuser {
            problems.push("is a superuser");
        }
        if self.bypass_rls {
            problems.push("has BYPASSRLS");
        }
        if self.owns_objects {
            problems.push("owns schema objects");
        }
        if self.member_of_owner {
            problems.push("is a member of the owner role");
        }
        problems
    }
}

impl Db {
    /// Opens a pool lazily: start-up does not wait for PostgreSQL, and `/readyz` reports when
    /// it is unreachable.
    pub fn connect_lazy(options: &DbOptions) -> Result<Self, StorageError> {
        let mut connect = PgConnectOptions::from_str(options.url.expose_secret())
            .map_err(|_| {
                StorageError::Config("database.url is not a valid postgres:// URL".into())
            })?
            .application_name("portcullis");
        if let Some(mode) = &options.tls_mode {
            let mode = PgSslMode::from_str(mode).map_err(|_| {
                StorageError::Config(format!(
                    "database.tls_mode is one of {}",
                    TLS_MODES.join(", ")
                ))
            })?;
            connect = connect.ssl_mode(mode);
        }
        if let Some(ca) = &options.tls_ca_file {
            connect = connect.ssl_root_cert(ca);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            // A broken connection shows up as an error on first use; checking each one
            // before use would cost a round trip per request.
            .test_before_acquire(false)
            .connect_lazy_with(connect);
        Ok(Self { pool })
    }

    /// Wraps an existing pool; for the test kit, which builds pools per test database.
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// A transaction holding the background job's advisory lock `lock`, or `None` when
    /// another process holds it: each job runs in one process at a time across the fleet.
    pub(crate) async fn begin_job(
        &self,
        lock: i64,
    ) -> Result<Option<sqlx::Transaction<'static, sqlx::Postgres>>, StorageError> {
        let mut tx = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock($1)")
            .bind(lock)
            .fetch_one(&mut *tx)
            .await?;
        Ok(locked.then_some(tx))
    }

    /// Whether this pool's connections to PostgreSQL are encrypted (EN-1).
    pub async fn uses_tls(&self) -> Result<bool, StorageError> {
        Ok(sqlx::query_scalar(
            "select coalesce((select ssl from pg_stat_ssl where pid = pg_backend_pid()), false)",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Closes every connection; waits for those in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Reads the role's attributes from the catalog.
    pub async fn check_role(&self) -> Result<RoleCheck, StorageError> {
        let row: (String, bool, bool, bool, bool) = sqlx::query_as(
            "select r.rolname::text, r.rolsuper, r.rolbypassrls,
                    exists (select 1 from pg_class c where c.relowner = r.oid
                              and c.relnamespace = 'public'::regnamespace)
                    or exists (select 1 from pg_proc p where p.proowner = r.oid
                              and p.pronamespace = 'public'::regnamespace),
                    case when exists (select 1 from pg_roles o where o.rolname = $1)
                         then pg_has_role(r.oid, $1, 'MEMBER') else false end
             from pg_roles r where r.rolname = current_user",
        )
        .bind(OWNER_ROLE)
        .fetch_one(&self.pool)
        .await?;
        Ok(RoleCheck {
            role: row.0,
            superuser: row.1,
            bypass_rls: row.2,
            owns_objects: row.3,
            member_of_owner: row.4,
        })
    }

    /// Refuses a role that would make row-level security decorative (AC-3).
    pub async fn ensure_safe_role(&self) -> Result<RoleCheck, StorageError> {
        let check = self.check_role().await?;
        let problems = check.problems();
        if problems.is_empty() {
            Ok(check)
        } else {
            Err(StorageError::UnsafeRole(format!(
                "role `{}` {}; connect as the runtime role created by `portcullis migrate`",
                check.role,
                problems.join(", ")
            )))
        }
    }

    /// Ready means: PostgreSQL answers, and every embedded migration has been applied.
    pub async fn readiness(&self) -> Result<(), StorageError> {
        let (applied, all_succeeded): (Option<i64>, Option<bool>) =
            sqlx::query_as("select max(version), bool_and(success) from _sqlx_migrations")
                .fetch_one(&self.pool)
                .await?;
        let expected = migrate::latest_version();
        if applied == Some(expected) && all_succeeded == Some(true) {
            Ok(())
        } else {
            Err(StorageError::Config(format!(
                "migrations not current: database at {}, binary expects {expected}",
                applied.unwrap_or(0)
            )))
        }
    }

    /// Starts a read transaction scoped to one org.
    pub async fn begin_tenant(&self, org: OrgId) -> Result<TenantTx, StorageError> {
        TenantTx::begin(&self.pool, org).await
    }

    /// Starts a change in one org; its audit entry is appended at commit, in the same
    /// transaction (AU-3).
    pub async fn begin_write(
        &self,
        org: OrgId,
        actor: &Actor,
        source: &Source,
        change: AuditedChange,
    ) -> Result<WriteTx, StorageError> {
        let tenant = TenantTx::begin(&self.pool, org).await?;
        Ok(WriteTx::new(tenant, actor.clone(), source.clone(), change))
    }

    /// Starts a change to `user`'s own account; at commit one entry with `action` is appended
    /// in each of the person's orgs, in the same transaction (AU-3).
    pub async fn begin_person(
        &self,
        user: portcullis_core::UserId,
        source: &Source,
        action: &'static str,
    ) -> Result<crate::PersonTx, StorageError> {
        crate::PersonTx::begin(&self.pool, user, source, action).await
    }

    /// The id of every org. Cross-tenant by design, through the SECURITY DEFINER function
    /// `platform_orgs()`: only for platform operations (the master key, `audit verify`).
    pub async fn platform_org_ids(&self) -> Result<Vec<OrgId>, StorageError> {
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar("select org_id from platform_orgs()")
            .fetch_all(&self.pool)
            .await?;
        Ok(ids.into_iter().map(OrgId::from_uuid).collect())
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }
}
