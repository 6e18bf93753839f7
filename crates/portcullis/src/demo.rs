//! `portcullis demo`: a private PostgreSQL, migrations, a demo org and the gateway, in one
//! command on one machine. Trust authentication on loopback: never for production.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use portcullis_core::token::{Token, TokenKind};
use portcullis_storage::migrate::{self, MigrateOptions};
use portcullis_storage::{Db, DbOptions};
use secrecy::SecretString;

use crate::config::Config;
use crate::{bootstrap, serve};

const DATABASE: &str = "portcullis";

pub async fn run(mut config: Config, data_dir: &Path, pg_port: u16) -> anyhow::Result<()> {
    eprintln!(
        "demo: starting a private PostgreSQL in {} (port {pg_port})",
        data_dir.display()
    );
    let dir = data_dir.to_path_buf();
    let server_url = tokio::task::spawn_blocking(move || portcullis_devdb::start(&dir, pg_port))
        .await?
        .context("starting the demo PostgreSQL")?;
    let server = SecretString::from(server_url.clone());
    migrate::create_database_if_missing(&server, DATABASE).await?;

    let admin_url = format!("postgres://postgres@127.0.0.1:{pg_port}/{DATABASE}");
    let runtime_url = format!("postgres://portcullis_app@127.0.0.1:{pg_port}/{DATABASE}");
    let report = migrate::run(&MigrateOptions {
        admin_url: SecretString::from(admin_url),
        runtime_url: SecretString::from(runtime_url.clone()),
    })
    .await
    .context("migrating the demo database")?;
    eprintln!(
        "demo: database migrated to version {}",
        report.applied_version
    );

    let db = Db::connect_lazy(&DbOptions::new(SecretString::from(runtime_url.clone())))?;
    let first_run = db.platform_org_ids().await?.is_empty();
    let credentials = if first_run {
        let password = demo_password()?;
        let outcome = bootstrap::bootstrap(&db, "Demo", DEMO_EMAIL, &password).await?;
        Some((outcome, password))
    } else {
        None
    };
    db.close().await;

    config.database.url = Some(SecretString::from(runtime_url));
    if config.secrets.kek.is_none() {
        config.secrets.kek = Some(demo_kek(data_dir)?);
    }
    let result = serve::run_with(config, |addr| print_banner(addr, credentials.as_ref())).await;
    let dir = data_dir.to_path_buf();
    let stopped = tokio::task::spawn_blocking(move || portcullis_devdb::stop(&dir)).await?;
    if let Err(error) = stopped {
        eprintln!("demo: could not stop the private PostgreSQL: {error}");
    }
    result
}

const DEMO_EMAIL: &str = "owner@demo.example";

/// A random password for the demo owner, shown once in the banner.
fn demo_password() -> anyhow::Result<String> {
    let token = Token::generate(TokenKind::Invite)?;
    Ok(token.expose()[4..24].to_owned())
}

/// The demo's key-encryption key, kept beside its database so that a restarted demo can still
/// open what it sealed.
fn demo_kek(data_dir: &Path) -> anyhow::Result<SecretString> {
    let path = data_dir.join("kek.b64");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(SecretString::from(text.trim().to_owned()));
    }
    let mut bytes = [0u8; 32];
    portcullis_core::token::random_bytes(&mut bytes)?;
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    Ok(SecretString::from(text))
}

fn print_banner(addr: std::net::SocketAddr, credentials: Option<&(bootstrap::Outcome, String)>) {
    let mut banner =
        format!("\nPortcullis demo is up on http://{addr}\n\n  curl -i http://{addr}/readyz\n");
    match credentials {
        Some((outcome, password)) => banner.push_str(&format!(
            "\nDemo org {org}, owner {DEMO_EMAIL}, password {password}\n\
             Master key (shown once): {key}\n\
             \n  curl -s http://{addr}/auth/v1/login -H 'content-type: application/json' \\\
             \n    -d '{{\"email\": \"{DEMO_EMAIL}\", \"password\": \"{password}\"}}'\
             \n  curl -s http://{addr}/admin/v1/orgs -H 'authorization: Bearer {key}'\n",
            org = outcome.org_id,
            key = outcome.master_key.expose(),
        )),
        None => banner.push_str(&format!(
            "\nThe demo was bootstrapped on an earlier run: log in as {DEMO_EMAIL} with the \
             password printed then, or delete the data directory to start afresh.\n"
        )),
    }
    banner.push_str("\nPress Ctrl-C to stop (the private PostgreSQL stops too).\n");
    let _ = std::io::stdout().lock().write_all(banner.as_bytes());
}
