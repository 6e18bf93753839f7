//! Test fixtures: a fresh, migrated PostgreSQL database per test, dropped afterwards, so that
//! tests run in parallel without sharing state.
//!
//! The server is found through `PCTEST_DATABASE_URL`, then `DATABASE_URL`, then
//! `postgres://postgres@127.0.0.1:5432/postgres`: an administrative role on a server that
//! trusts local connections (as `cargo xtask db` sets up). Tests of controls use
//! [`TestDb::runtime`] or [`TestDb::db`]: the runtime role, never a superuser.

use std::str::FromStr;

use anyhow::Context;
use portcullis_storage::Db;
use portcullis_storage::migrate::{self, MigrateOptions};
use secrecy::SecretString;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use url::Url;

/// The login role that test databases give the gateway.
pub const RUNTIME_LOGIN: &str = "portcullis_app";

/// The administrative URL of the test server.
pub fn server_url() -> String {
    std::env::var("PCTEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database of its own for one test. Dropping it drops the database.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    admin_url: String,
    runtime_url: String,
    /// The runtime role (not superuser, not owner, NOBYPASSRLS): what the gateway uses.
    pub runtime: PgPool,
    /// The owner role, as migrations and a DBA with the owner's rights would act.
    pub owner: PgPool,
    /// Storage over the runtime pool.
    pub db: Db,
}

impl TestDb {
    /// Creates and migrates a new database on the test server.
    pub async fn new() -> anyhow::Result<Self> {
        Self::new_on(&server_url()).await
    }

    /// Creates and migrates a new database on the server at `server` (a superuser's URL): a
    /// private cluster that a test may stop and start.
    pub async fn new_on(server: &str) -> anyhow::Result<Self> {
        let server = server.to_owned();
        let name = format!("pct_{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(&server)
            .await
            .with_context(|| "cannot reach the test PostgreSQL (see PCTEST_DATABASE_URL)")?;
        admin
            .execute(format!("create database {name}").as_str())
            .await?;
        admin.close().await?;

        let admin_url = with_database(&server, &name, None)?;
        let runtime_url = with_database(&server, &name, Some(RUNTIME_LOGIN))?;
        migrate::run(&MigrateOptions {
            admin_url: SecretString::from(admin_url.clone()),
            runtime_url: SecretString::from(runtime_url.clone()),
        })
        .await
        .context("migrating the test database")?;

        let runtime = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(PgConnectOptions::from_str(&runtime_url)?)
            .await?;
        let owner = PgPoolOptions::new()
            .max_connections(2)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("set role portcullis_owner").await?;
                    Ok(())
                })
            })
            .connect_with(PgConnectOptions::from_str(&admin_url)?)
            .await?;
        Ok(Self {
            name,
            admin_url,
            runtime_url,
            db: Db::from_pool(runtime.clone()),
            runtime,
            owner,
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A superuser URL to this database: for tests that play a tampering DBA.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// Runs `sql` as a superuser: for tests that move time (a session's last use, an
    /// invitation's expiry) or play a tampering DBA.
    pub async fn as_superuser(&self, sql: &str) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect(&self.admin_url).await?;
        sqlx::raw_sql(sql)
            .execute(&mut conn)
            .await
            .with_context(|| format!("as superuser: {sql}"))?;
        conn.close().await?;
        Ok(())
    }

    /// Every row of every table as text, read as a superuser: to prove that no secret is
    /// stored in clear anywhere.
    pub async fn dump(&self) -> anyhow::Result<String> {
        let mut conn = PgConnection::connect(&self.admin_url).await?;
        let tables: Vec<String> = sqlx::query_scalar(
            "select relname::text from pg_class
             where relnamespace = 'public'::regnamespace and relkind = 'r' order by 1",
        )
        .fetch_all(&mut conn)
        .await?;
        let mut text = String::new();
        for table in tables {
            let rows: Vec<String> = sqlx::query_scalar(&format!("select t::text from {table} t"))
                .fetch_all(&mut conn)
                .await?;
            text.push_str(&rows.join("\n"));
            text.push('\n');
        }
        conn.close().await?;
        Ok(text)
    }

    /// The runtime role's URL to this database: what a gateway process under test uses.
    pub fn runtime_url(&self) -> &str {
        &self.runtime_url
    }
}

fn with_database(server: &str, database: &str, user: Option<&str>) -> anyhow::Result<String> {
    let mut url = Url::parse(server).context("the test database URL is not a valid URL")?;
    url.set_path(database);
    if let Some(user) = user {
        url.set_username(user)
            .map_err(|()| anyhow::anyhow!("cannot set a user on the test database URL"))?;
        url.set_password(None)
            .map_err(|()| anyhow::anyhow!("cannot clear the password of the test database URL"))?;
    }
    Ok(url.into())
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let server = server_url();
        let name = self.name.clone();
        // Drop runs outside async code: a thread of its own with a small runtime does the
        // asynchronous work and is waited for, so the database is gone when the test ends.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&server).await?;
                admin
                    .execute(format!("drop database if exists {name} with (force)").as_str())
                    .await?;
                admin.close().await?;
                anyhow::Ok(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}
