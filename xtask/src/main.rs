//! `cargo xtask`: the project's developer tasks, in Rust so they run wherever cargo does.
//!
//! - `db [--private]`: a PostgreSQL for tests and development: `DATABASE_URL` if it answers,
//!   else the local server on 127.0.0.1:5432 if it answers, else (or with `--private`) a
//!   private cluster under target/pg on port 54329. `db-stop` stops that cluster.
//! - `migrate`: applies migrations to a `portcullis` database on that server.
//! - `test [--no-lint] [NEXTEST ARGS...]`: format check, clippy, then every test with nextest.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

const LOCAL_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const PRIVATE_PORT: u16 = 54329;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        bail!("usage: cargo xtask <db|db-stop|migrate|test> [args]");
    };
    match task.as_str() {
        "db" => {
            let url = if rest.iter().any(|a| a == "--private") {
                private_database()?
            } else {
                database()?
            };
            say(&format!("PostgreSQL ready: {url}"));
            writeln_stdout(&url)
        }
        "db-stop" => Ok(portcullis_devdb::stop(&private_dir()?)?),
        "migrate" => migrate(),
        "test" => test(rest),
        other => bail!("unknown task `{other}`: expected db, db-stop, migrate or test"),
    }
}

fn say(message: &str) {
    eprintln!("xtask: {message}");
}

fn writeln_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    writeln!(std::io::stdout(), "{text}")?;
    Ok(())
}

fn root() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(manifest
        .parent()
        .context("xtask lives in the workspace")?
        .to_path_buf())
}

fn private_dir() -> anyhow::Result<PathBuf> {
    Ok(root()?.join("target").join("pg"))
}

/// A PostgreSQL superuser URL that answers.
fn database() -> anyhow::Result<String> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        if portcullis_devdb::answers(&url) {
            return Ok(url);
        }
        say("DATABASE_URL does not answer; trying the local server");
    }
    if portcullis_devdb::answers(LOCAL_URL) {
        return Ok(LOCAL_URL.to_owned());
    }
    private_database()
}

fn private_database() -> anyhow::Result<String> {
    let dir = private_dir()?;
    say(&format!(
        "starting a private PostgreSQL in {}",
        dir.display()
    ));
    Ok(portcullis_devdb::start(&dir, PRIVATE_PORT)?)
}

fn with_database(server: &str, name: &str, user: Option<&str>) -> anyhow::Result<String> {
    let (scheme_and_auth, rest) = server.split_once('@').context("database URL has no host")?;
    let host = rest.split('/').next().unwrap_or(rest);
    let auth = match user {
        Some(user) => format!("postgres://{user}"),
        None => scheme_and_auth.to_owned(),
    };
    Ok(format!("{auth}@{host}/{name}"))
}

fn migrate() -> anyhow::Result<()> {
    let server = database()?;
    let exists = Command::new("psql")
        .args([
            "-X",
            "-tAc",
            "select 1 from pg_database where datname = 'portcullis'",
            &server,
        ])
        .output()?;
    if String::from_utf8_lossy(&exists.stdout).trim() != "1" {
        cargo_like(
            "psql",
            &["-X", "-qc", "create database portcullis", &server],
            &[],
        )?;
    }
    let admin = with_database(&server, "portcullis", None)?;
    let runtime = with_database(&server, "portcullis", Some("portcullis_app"))?;
    cargo_like(
        "cargo",
        &["run", "--quiet", "-p", "portcullis", "--", "migrate"],
        &[
            ("PORTCULLIS_DATABASE__ADMIN_URL", admin.as_str()),
            ("PORTCULLIS_DATABASE__URL", runtime.as_str()),
        ],
    )?;
    say(&format!("runtime URL: {runtime}"));
    Ok(())
}

fn test(args: &[String]) -> anyhow::Result<()> {
    let lint = !args.iter().any(|a| a == "--no-lint");
    let passthrough: Vec<&str> = args
        .iter()
        .filter(|a| *a != "--no-lint")
        .map(String::as_str)
        .collect();
    let url = database()?;
    say(&format!("tests use {url}"));
    if lint {
        say("cargo fmt --check");
        cargo_like("cargo", &["fmt", "--all", "--", "--check"], &[])?;
        say("cargo clippy (warnings are errors)");
        cargo_like(
            "cargo",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--quiet",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        )?;
    }
    // The end-to-end tests run the real binary, which nextest does not build for them.
    say("cargo build -p portcullis");
    cargo_like("cargo", &["build", "--quiet", "-p", "portcullis"], &[])?;
    let mut nextest = vec!["nextest", "run", "--workspace"];
    nextest.extend(passthrough);
    cargo_like("cargo", &nextest, &[("PCTEST_DATABASE_URL", url.as_str())])
}

fn cargo_like(program: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
    let status = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root()?)
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn database_urls_are_rewritten_for_a_database_and_user() {
        let server = "postgres://postgres@127.0.0.1:5432/postgres";
        assert_eq!(
            with_database(server, "portcullis", None).unwrap(),
            "postgres://postgres@127.0.0.1:5432/portcullis"
        );
        assert_eq!(
            with_database(server, "portcullis", Some("portcullis_app")).unwrap(),
            "postgres://portcullis_app@127.0.0.1:5432/portcullis"
        );
    }

    #[test]
    fn the_private_cluster_lives_under_target() {
        assert!(private_dir().unwrap().ends_with(Path::new("target/pg")));
    }
}
