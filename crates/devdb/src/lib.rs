//! A private PostgreSQL cluster for development, demos and CI: `initdb` and `pg_ctl` from the
//! system, a data directory of our own, TCP on loopback only, trust authentication. Nothing
//! here is for production.
//!
//! PostgreSQL refuses to run as root; when we are root, its tools run as the `postgres` user
//! (`runuser`), which then owns the data directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum DevDbError {
    #[error("{tool} not found: install PostgreSQL (Debian: apt-get install postgresql)")]
    ToolMissing { tool: &'static str },
    #[error("{step} failed: {detail}")]
    Step { step: &'static str, detail: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The URL of the private cluster's superuser on `port`.
pub fn url(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

/// Whether a server answers a query at this URL within a few seconds.
pub fn answers(url: &str) -> bool {
    Command::new("psql")
        .args(["-X", "-q", "-t", "-A", "-c", "select 1", url])
        .env("PGCONNECT_TIMEOUT", "3")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Starts (creating it first if needed) a cluster in `dir` listening on 127.0.0.1:`port`,
/// and returns its URL. Does nothing but return the URL when it already answers.
pub fn start(dir: &Path, port: u16) -> Result<String, DevDbError> {
    let url = url(port);
    if answers(&url) {
        return Ok(url);
    }
    let data = dir.join("data");
    let as_root = is_root();
    std::fs::create_dir_all(dir)?;
    if as_root {
        run(
            "chown",
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir),
        )?;
    }
    if !data.join("PG_VERSION").exists() {
        let mut initdb = tool_command("initdb", as_root)?;
        initdb
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--no-locale",
            ])
            .arg("-D")
            .arg(&data);
        run("initdb", &mut initdb)?;
    }
    let mut pg_ctl = tool_command("pg_ctl", as_root)?;
    pg_ctl
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("server.log"))
        .args(["-w", "-t", "60", "-o"])
        .arg(format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off \
             -c max_connections=200"
        ))
        .arg("start");
    run("pg_ctl start", &mut pg_ctl)?;
    if answers(&url) {
        Ok(url)
    } else {
        Err(DevDbError::Step {
            step: "pg_ctl start",
            detail: format!(
                "no answer at {url}; see {}",
                dir.join("server.log").display()
            ),
        })
    }
}

/// Stops the cluster in `dir`, if it runs.
pub fn stop(dir: &Path) -> Result<(), DevDbError> {
    let data = dir.join("data");
    if !data.join("postmaster.pid").exists() {
        return Ok(());
    }
    let mut pg_ctl = tool_command("pg_ctl", is_root())?;
    pg_ctl
        .arg("-D")
        .arg(&data)
        .args(["-m", "fast", "-w", "stop"]);
    run("pg_ctl stop", &mut pg_ctl)?;
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn tool_command(tool: &'static str, as_root: bool) -> Result<Command, DevDbError> {
    let path = find_tool(tool).ok_or(DevDbError::ToolMissing { tool })?;
    Ok(if as_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    })
}

/// On the PATH, or in Debian's versioned directory (newest first).
fn find_tool(tool: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| entry.ok().map(|e| e.path().join("bin").join(tool)))
            .filter(|candidate| candidate.is_file())
            .collect();
        versions.sort();
        versions.pop()
    })
}

fn run(step: &'static str, command: &mut Command) -> Result<Output, DevDbError> {
    let output = command.stdin(Stdio::null()).output()?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(DevDbError::Step {
            step,
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}
