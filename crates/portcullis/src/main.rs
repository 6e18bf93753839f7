//! The `portcullis` command: configuration, wiring and the listener. Logic lives in the
//! library crates; this binary only connects them.

mod audit_cmd;
mod bootstrap;
mod canary;
mod config;
mod demo;
mod pii_cmd;
mod serve;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis_core::OrgId;
use portcullis_storage::migrate::{self, MigrateOptions};
use portcullis_storage::{Db, DbOptions, auth, credentials};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "A self-hosted LLM gateway built to pass a SOC 2 audit"
)]
struct Cli {
    /// TOML configuration file; `PORTCULLIS_*` environment variables override it.
    #[arg(long, short, env = "PORTCULLIS_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Everything on one machine, for a first look: a private PostgreSQL, migrations, a demo
    /// org, and the gateway on server.listen. Not for production.
    Demo {
        /// Where the private PostgreSQL keeps its data.
        #[arg(long, default_value = ".portcullis-demo")]
        data_dir: PathBuf,
        /// The private PostgreSQL's port on 127.0.0.1.
        #[arg(long, default_value_t = 54330)]
        pg_port: u16,
    },
    /// Serve the gateway until SIGTERM or SIGINT.
    Serve,
    /// Create or update the database roles and apply migrations (needs database.admin_url).
    Migrate,
    /// Create the first org, its owner and the master key (printed once). Runs once. The
    /// password comes from PORTCULLIS_BOOTSTRAP_PASSWORD, a prompt, or a line of stdin.
    Bootstrap {
        /// The first organization's name.
        #[arg(long)]
        org: String,
        /// The owner's email: they log in with it.
        #[arg(long)]
        email: String,
    },
    /// Key-encryption-key tools.
    Kek {
        #[command(subcommand)]
        command: KekCommand,
    },
    /// Audit trail tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Master-key tools.
    MasterKey {
        #[command(subcommand)]
        command: MasterKeyCommand,
    },
    /// Personal data and secrets in text, found as the guardrail finds them.
    Pii {
        #[command(subcommand)]
        command: PiiCommand,
    },
}

#[derive(Debug, Subcommand)]
enum MasterKeyCommand {
    /// Revoke every live master key and print a new one, once (needs database.admin_url).
    /// Audited as `master_key.rotated` in every org.
    Rotate,
}

#[derive(Debug, Subcommand)]
enum PiiCommand {
    /// Read text on stdin; print findings as JSON lines `{type, start, end}` (byte offsets),
    /// or with --redact the text with placeholders such as [EMAIL_1].
    Scan {
        #[arg(long)]
        redact: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KekCommand {
    /// Re-wrap every org's data keys and re-seal TOTP seeds under the current key
    /// (secrets.kek, secrets.kek_version), online. Afterwards the old key can be retired from
    /// secrets.previous_keks.
    Rotate,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify the hash chain of one org, or of every org.
    Verify {
        /// Only this org.
        #[arg(long)]
        org: Option<OrgId>,
        /// A head printed by an earlier run, `SEQ:HASH`, that the chain must still contain
        /// (keep it outside the database: it is what reveals a removed tail). Needs --org.
        #[arg(long, requires = "org")]
        expect_head: Option<String>,
        /// Print one JSON object per org instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Needs neither configuration nor a database: usable anywhere the binary is.
    if let Command::Pii {
        command: PiiCommand::Scan { redact },
    } = cli.command
    {
        return pii_cmd::scan(redact).unwrap_or_else(|error| {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        });
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(mut config) => {
            if matches!(cli.command, Command::Demo { .. })
                && std::env::var_os("PORTCULLIS_LOG__FORMAT").is_none()
            {
                config.log.format = config::LogFormat::Text;
            }
            config
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match telemetry::init(&config.log) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli.command, config));
    drop(runtime);
    // Exports the last traces, if any, before the process ends.
    drop(telemetry);
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Demo { data_dir, pg_port } => demo::run(config, &data_dir, pg_port)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Serve => serve::run(config).await.map(|()| ExitCode::SUCCESS),
        Command::Migrate => {
            let report = migrate::run(&MigrateOptions {
                admin_url: config.database.admin_url()?.clone(),
                runtime_url: config.database.url()?.clone(),
            })
            .await?;
            eprintln!(
                "migrated to version {}; the gateway connects as login role `{}`",
                report.applied_version, report.runtime_login
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bootstrap { org, email } => bootstrap::run(&config, &org, &email)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Kek {
            command: KekCommand::Rotate,
        } => {
            let ring = config.secrets.keyring()?;
            let db = Db::connect_lazy(&DbOptions::new(config.database.url()?.clone()))?;
            let data_keys = credentials::rewrap_data_keys(&db, &ring).await?;
            let seeds = auth::reseal_totp_seeds(&db, &ring).await?;
            canary::check(&db, &ring).await?;
            db.close().await;
            eprintln!(
                "key-encryption key version {}: re-wrapped {data_keys} data key(s), re-sealed \
                 {seeds} TOTP seed(s); the previous key can now be retired",
                ring.current_version()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    org,
                    expect_head,
                    json,
                },
        } => audit_cmd::verify(&config, org, expect_head.as_deref(), json).await,
        Command::Pii {
            command: PiiCommand::Scan { redact },
        } => pii_cmd::scan(redact),
        Command::MasterKey {
            command: MasterKeyCommand::Rotate,
        } => bootstrap::rotate_master_key(&config)
            .await
            .map(|()| ExitCode::SUCCESS),
    }
}
