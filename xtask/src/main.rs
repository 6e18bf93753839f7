//! `cargo xtask`: the project's developer tasks, in Rust so they run wherever cargo does.
//!
//! - `db [--private]`: a PostgreSQL for tests and development: `DATABASE_URL` if it answers,
//!   else the local server on 127.0.0.1:5432 if it answers, else (or with `--private`) a
//!   private cluster under target/pg on port 54329. `db-stop` stops that cluster.
//! - `migrate`: applies migrations to a `portcullis` database on that server.
//! - `test [--no-lint] [NEXTEST ARGS...]`: format check, clippy, rustdoc of the embedded crates,
//!   then every test with nextest.
//! - `compliance [--junit FILE] [--registry FILE] [--out DIR]`: runs every control test (or
//!   reads a run's JUnit report) and writes target/compliance/report.md and report.json.

mod compliance;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

const LOCAL_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const PRIVATE_PORT: u16 = 54329;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        bail!("usage: cargo xtask <db|db-stop|migrate|test|compliance> [args]");
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
        "compliance" => compliance_report(rest),
        other => bail!("unknown task `{other}`: expected db, db-stop, migrate, test or compliance"),
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
        // The crates other services embed: every public item documented, every link sound.
        say("cargo doc of core, policy and providers (warnings are errors)");
        cargo_like(
            "cargo",
            &[
                "doc",
                "--no-deps",
                "--quiet",
                "-p",
                "portcullis-core",
                "-p",
                "portcullis-policy",
                "-p",
                "portcullis-providers",
            ],
            &[("RUSTDOCFLAGS", "-D warnings")],
        )?;
    }
    // The end-to-end tests run the real binary, which nextest does not build for them.
    say("cargo build -p portcullis");
    cargo_like("cargo", &["build", "--quiet", "-p", "portcullis"], &[])?;
    // A run that fails before it starts must leave no earlier run's report behind to be read
    // as its own (`compliance --junit`).
    let report = root()?.join("target/nextest/default/junit.xml");
    if report.exists() {
        std::fs::remove_file(&report).with_context(|| format!("removing {}", report.display()))?;
    }
    let mut nextest = vec!["nextest", "run", "--workspace"];
    nextest.extend(passthrough);
    cargo_like("cargo", &nextest, &[("PCTEST_DATABASE_URL", url.as_str())])
}

/// Selects every test whose name names a control (`ac_1_...`, `..._rm_2_...`).
const CONTROL_TESTS: &str = "test(/(^|::|_)(ac|au|rm|en|cf|av|cm)_[0-9]+_/)";

fn compliance_report(args: &[String]) -> anyhow::Result<()> {
    let args = compliance::parse_args(args)?;
    let root = root()?;
    let registry_path = args
        .registry
        .unwrap_or_else(|| root.join("docs").join("controls.toml"));
    let controls = compliance::read_registry(
        &std::fs::read_to_string(&registry_path)
            .with_context(|| format!("reading {}", registry_path.display()))?,
    )?;
    let junit = match args.junit {
        Some(path) => path,
        None => {
            // A run that fails before it starts must not leave the last run's report to read.
            let report = root.join("target/nextest/default/junit.xml");
            if report.exists() {
                std::fs::remove_file(&report)
                    .with_context(|| format!("removing {}", report.display()))?;
            }
            let url = database()?;
            say("cargo build -p portcullis");
            cargo_like("cargo", &["build", "--quiet", "-p", "portcullis"], &[])?;
            say("every control test");
            // A failing test fails its control in the report, not this step.
            if let Err(error) = cargo_like(
                "cargo",
                &[
                    "nextest",
                    "run",
                    "--workspace",
                    "--no-fail-fast",
                    "-E",
                    CONTROL_TESTS,
                ],
                &[("PCTEST_DATABASE_URL", url.as_str())],
            ) {
                say(&format!("some control tests failed: {error}"));
            }
            root.join("target/nextest/default/junit.xml")
        }
    };
    let outcomes = compliance::read_junit(
        &std::fs::read_to_string(&junit).with_context(|| format!("reading {}", junit.display()))?,
    )?;
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(&root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = git(&["describe", "--always", "--dirty", "--abbrev=40"])
        .unwrap_or_else(|| "unknown".to_owned());
    let written: chrono::DateTime<chrono::Utc> = std::fs::metadata(&junit)
        .and_then(|m| m.modified())
        .with_context(|| format!("reading the time of {}", junit.display()))?
        .into();
    if let Some(commit_time) = git(&["log", "-1", "--format=%ct"]).and_then(|t| t.parse().ok()) {
        compliance::stale_run(written.timestamp(), commit_time)?;
    }
    let provenance = compliance::Provenance {
        commit,
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        tests_run_at: written.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let out = args
        .out
        .unwrap_or_else(|| root.join("target").join("compliance"));
    let mut evaluated = compliance::evaluate(&controls, &outcomes);
    compliance::require_all(&mut evaluated, &source_tests(&root)?);
    let result = compliance::write_reports(&evaluated, &provenance, &out);
    let passed = evaluated
        .iter()
        .filter(|e| e.status == compliance::Status::Pass)
        .count();
    let open = evaluated
        .iter()
        .filter(|e| e.status == compliance::Status::NotProven)
        .count();
    say(&format!(
        "{passed} of {} controls proven, {open} not proven (open work); report in {}",
        evaluated.len(),
        out.join("report.md").display()
    ));
    result
}

/// Every test function in the workspace's sources: what a complete run holds.
fn source_tests(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    let mut dirs = vec![root.join("crates"), root.join("tests"), root.join("xtask")];
    while let Some(dir) = dirs.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.extend(compliance::source_tests(&std::fs::read_to_string(&path)?));
            }
        }
    }
    Ok(found)
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
