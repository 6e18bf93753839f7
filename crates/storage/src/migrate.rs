//! `portcullis migrate`: creates or updates the database roles, then applies the embedded
//! migrations as the owner role.
//!
//! Roles (cluster-wide in PostgreSQL, shared by every database of the cluster):
//! - `portcullis_owner`, NOLOGIN: owns every table and function; migrations run as it.
//! - `portcullis_runtime`, NOLOGIN: holds exactly the privileges the gateway needs.
//! - the login role named in the runtime URL (`portcullis_app` by default): LOGIN, member of
//!   `portcullis_runtime`, never superuser, never BYPASSRLS, never a member of the owner.

use std::str::FromStr;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use secrecy::{ExposeSecret, SecretString};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use url::Url;

use crate::error::StorageError;

pub const OWNER_ROLE: &str = "portcullis_owner";
pub const RUNTIME_ROLE: &str = "portcullis_runtime";

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// The version of the newest embedded migration: `/readyz` compares the database with it.
pub fn latest_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// What `migrate` needs: an administrative connection, and the runtime URL whose login role
/// it creates.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// A role that may create roles and grant the owner role to itself (a superuser, or the
    /// database's administrator).
    pub admin_url: SecretString,
    pub runtime_url: SecretString,
}

/// What was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    pub runtime_login: String,
    pub applied_version: i64,
}

pub async fn run(options: &MigrateOptions) -> Result<MigrateReport, StorageError> {
    let login = RuntimeLogin::from_url(&options.runtime_url)?;
    let connect = PgConnectOptions::from_str(options.admin_url.expose_secret())
        .map_err(|_| {
            StorageError::Config("database.admin_url is not a valid postgres:// URL".into())
        })?
        .application_name("portcullis-migrate");
    let mut conn = PgConnection::connect_with(&connect).await?;

    // Roles are shared by the whole cluster: migrations of two databases at once (parallel
    // tests, two deployments) can race on them, so a lost race is retried.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match ensure_roles(&mut conn, &login).await {
            Ok(()) => break,
            Err(error) if attempt < 8 && is_race(&error) => {
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }

    sqlx::query(&format!("set role {OWNER_ROLE}"))
        .execute(&mut conn)
        .await?;
    MIGRATOR.run(&mut conn).await?;
    sqlx::query(&format!(
        "grant select on _sqlx_migrations to {RUNTIME_ROLE}"
    ))
    .execute(&mut conn)
    .await?;
    sqlx::query("reset role").execute(&mut conn).await?;
    conn.close().await?;
    Ok(MigrateReport {
        runtime_login: login.name,
        applied_version: latest_version(),
    })
}

/// Creates database `name` on the server at `server_url` (an administrative connection) unless
/// it exists. For `portcullis demo` and development; production databases are made by their
/// operators.
pub async fn create_database_if_missing(
    server_url: &SecretString,
    name: &str,
) -> Result<bool, StorageError> {
    let connect = PgConnectOptions::from_str(server_url.expose_secret()).map_err(|_| {
        StorageError::Config("the server URL is not a valid postgres:// URL".into())
    })?;
    let mut conn = PgConnection::connect_with(&connect).await?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        let statement: String = sqlx::query_scalar("select format('create database %I', $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
        sqlx::query(&statement).execute(&mut conn).await?;
    }
    conn.close().await?;
    Ok(!exists)
}

struct RuntimeLogin {
    name: String,
    password: Option<SecretString>,
}

impl RuntimeLogin {
    fn from_url(url: &SecretString) -> Result<Self, StorageError> {
        let parsed = Url::parse(url.expose_secret()).map_err(|_| {
            StorageError::Config("database.url is not a valid postgres:// URL".into())
        })?;
        let name = parsed.username().to_owned();
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if !valid {
            return Err(StorageError::Config(
                "database.url must name the runtime login role: lowercase letters, digits and _"
                    .into(),
            ));
        }
        if name == OWNER_ROLE || name == RUNTIME_ROLE || name == "postgres" {
            return Err(StorageError::Config(format!(
                "database.url must name a login role of its own, not `{name}`"
            )));
        }
        let password = parsed.password().map(|encoded| {
            SecretString::from(percent_decode_str(encoded).decode_utf8_lossy().into_owned())
        });
        Ok(Self { name, password })
    }
}

fn is_race(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("42710" | "23505" | "XX000" | "40001" | "40P01")))
}

async fn ensure_roles(conn: &mut PgConnection, login: &RuntimeLogin) -> Result<(), sqlx::Error> {
    ensure_role(
        conn,
        OWNER_ROLE,
        "nologin nosuperuser nocreatedb nocreaterole nobypassrls",
    )
    .await?;
    ensure_role(
        conn,
        RUNTIME_ROLE,
        "nologin nosuperuser nocreatedb nocreaterole nobypassrls",
    )
    .await?;
    ensure_role(
        conn,
        &login.name,
        "login nosuperuser nocreatedb nocreaterole nobypassrls inherit",
    )
    .await?;
    if let Some(password) = &login.password {
        // The server quotes the password (format %L): nothing is spliced into SQL here.
        let statement: String =
            sqlx::query_scalar("select format('alter role %I password %L', $1, $2)")
                .bind(&login.name)
                .bind(password.expose_secret())
                .fetch_one(&mut *conn)
                .await?;
        sqlx::query(&statement).execute(&mut *conn).await?;
    }
    grant_membership(conn, RUNTIME_ROLE, &login.name).await?;
    let admin_is_superuser: bool =
        sqlx::query_scalar("select rolsuper from pg_roles where rolname = current_user")
            .fetch_one(&mut *conn)
            .await?;
    if !admin_is_superuser {
        // `set role` to the owner needs membership.
        let admin: String = sqlx::query_scalar("select current_user::text")
            .fetch_one(&mut *conn)
            .await?;
        grant_membership(conn, OWNER_ROLE, &admin).await?;
    }
    for statement in [
        "revoke create on schema public from public".to_owned(),
        format!("grant usage, create on schema public to {OWNER_ROLE}"),
        format!("grant usage on schema public to {RUNTIME_ROLE}"),
    ] {
        sqlx::query(&statement).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Creates the role with these attributes, or brings an existing one back to them.
async fn ensure_role(
    conn: &mut PgConnection,
    name: &str,
    attributes: &str,
) -> Result<(), sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_roles where rolname = $1)")
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
    let verb = if exists { "alter" } else { "create" };
    // `name` is a validated identifier or one of our constants; %I quotes it all the same.
    let statement: String =
        sqlx::query_scalar(&format!("select format('{verb} role %I {attributes}', $1)"))
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
    if exists && role_matches(conn, name, attributes).await? {
        return Ok(());
    }
    sqlx::query(&statement).execute(&mut *conn).await?;
    Ok(())
}

/// Whether an existing role already has the attributes, so that concurrent migrations do not
/// rewrite the same catalog row.
async fn role_matches(
    conn: &mut PgConnection,
    name: &str,
    attributes: &str,
) -> Result<bool, sqlx::Error> {
    let (login, superuser, createdb, createrole, bypass, inherit): (
        bool,
        bool,
        bool,
        bool,
        bool,
        bool,
    ) = sqlx::query_as(
        "select rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, rolinherit
             from pg_roles where rolname = $1",
    )
    .bind(name)
    .fetch_one(&mut *conn)
    .await?;
    let wants = |attribute: &str| attributes.split(' ').any(|a| a == attribute);
    Ok(login == wants("login")
        && !superuser
        && !createdb
        && !createrole
        && !bypass
        && (!wants("inherit") || inherit))
}

async fn grant_membership(
    conn: &mut PgConnection,
    role: &str,
    member: &str,
) -> Result<(), sqlx::Error> {
    let is_member: bool = sqlx::query_scalar(
        "select exists (select 1 from pg_auth_members m
                        join pg_roles r on r.oid = m.roleid
                        join pg_roles u on u.oid = m.member
                        where r.rolname = $1 and u.rolname = $2)",
    )
    .bind(role)
    .bind(member)
    .fetch_one(&mut *conn)
    .await?;
    if !is_member {
        let statement: String = sqlx::query_scalar("select format('grant %I to %I', $1, $2)")
            .bind(role)
            .bind(member)
            .fetch_one(&mut *conn)
            .await?;
        sqlx::query(&statement).execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_login_comes_from_the_url_and_privileged_names_are_refused() {
        let login = RuntimeLogin::from_url(&SecretString::from(
            "postgres://portcullis_app:p%40ss@localhost/db".to_owned(),
        ))
        .unwrap();
        assert_eq!(login.name, "portcullis_app");
        assert_eq!(login.password.unwrap().expose_secret(), "p@ss");
        for url in [
            "postgres://postgres@localhost/db",
            "postgres://portcullis_owner@localhost/db",
            "postgres://Robert%27);drop@localhost/db",
            "postgres://localhost/db",
        ] {
            assert!(
                RuntimeLogin::from_url(&SecretString::from(url.to_owned())).is_err(),
                "{url}"
            );
        }
    }
}
