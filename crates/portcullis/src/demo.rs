//! `portcullis demo`: a private PostgreSQL, migrations, a demo org and the gateway, in one
//! command on one machine. Trust authentication on loopback: never for production.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use portcullis_core::audit::{Actor, Source};
use portcullis_storage::migrate::{self, MigrateOptions};
use portcullis_storage::{Db, DbOptions, orgs};
use secrecy::SecretString;

use crate::config::Config;
use crate::serve;

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
    let org = match db.platform_org_ids().await?.first() {
        Some(org) => *org,
        None => {
            let created =
                orgs::create_org(&db, &Actor::system("demo"), &Source::default(), "Demo").await?;
            created.org_id
        }
    };
    db.close().await;

    config.database.url = Some(SecretString::from(runtime_url));
    let result = serve::run_with(config, |addr| print_banner(addr, org, pg_port)).await;
    let dir = data_dir.to_path_buf();
    let stopped = tokio::task::spawn_blocking(move || portcullis_devdb::stop(&dir)).await?;
    if let Err(error) = stopped {
        eprintln!("demo: could not stop the private PostgreSQL: {error}");
    }
    result
}

fn print_banner(addr: std::net::SocketAddr, org: portcullis_core::OrgId, pg_port: u16) {
    let banner = format!(
        "\nPortcullis demo is up on http://{addr}\n\
         \n  curl -i http://{addr}/readyz\
         \n  PORTCULLIS_DATABASE__URL=postgres://portcullis_app@127.0.0.1:{pg_port}/{DATABASE} \\\
         \n    portcullis audit verify --org {org}\
         \n\nDemo org: {org}. Press Ctrl-C to stop (the private PostgreSQL stops too).\n"
    );
    let _ = std::io::stdout().lock().write_all(banner.as_bytes());
}
