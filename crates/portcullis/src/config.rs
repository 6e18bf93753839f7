//! Configuration: a TOML file, overridden by `PORTCULLIS_*` environment variables
//! (`PORTCULLIS_DATABASE__URL` sets `database.url`), validated before any port is bound.
//! Secrets come only from the environment or from files (`*_file` settings).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use ipnet::IpNet;
use portcullis_core::crypto::Keyring;
use portcullis_gateway::tls::TlsFiles;
use secrecy::ExposeSecret;
use secrecy::SecretString;
use serde::Deserialize;

const ENV_PREFIX: &str = "PORTCULLIS_";
const NOT_SETTINGS: [&str; 2] = ["config", "bootstrap_password"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    secrets: RawSecrets,
    #[serde(default)]
    providers: RawProviders,
    #[serde(default)]
    spend: RawSpend,
    #[serde(default)]
    logs: RawLogs,
    #[serde(default)]
    auth: RawAuth,
}

/// Login throttling (AC-4): failures counted per window, by bucket (docs/operations.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAuth {
    throttle_window_secs: u64,
    /// Failures of one account from one client address (an IPv6 /64).
    failures_per_account_and_address: u32,
    /// Failures of one account from anywhere.
    failures_per_account: u32,
    /// Failures from one client address over all accounts.
    failures_per_address: u32,
}

impl Default for RawAuth {
    fn default() -> Self {
        let limits = portcullis_gateway::throttle::ThrottleLimits::default();
        Self {
            throttle_window_secs: limits.window.as_secs(),
            failures_per_account_and_address: limits.per_account_and_address,
            failures_per_account: limits.per_account,
            failures_per_address: limits.per_address,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLogs {
    /// Request logs waiting for the writer; past it new ones are dropped (and counted).
    queue_capacity: usize,
    /// Most request logs in one transaction.
    batch_size: usize,
    /// How often content past each org's retention is looked for (one process at a time).
    retention_interval_secs: u64,
    /// Each side of a logged request's content is cut at this many bytes.
    max_content_bytes: usize,
}

impl Default for RawLogs {
    fn default() -> Self {
        let options = portcullis_gateway::logs::LogOptions::default();
        Self {
            queue_capacity: options.queue_capacity,
            batch_size: options.batch_size,
            retention_interval_secs: options.retention_interval.as_secs(),
            max_content_bytes: options.max_content_bytes,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSpend {
    /// A dead process's budget leases (and reservations) are free again after this long.
    lease_ttl_secs: u64,
    /// A TOML price table (the format of crates/policy/prices/prices.toml) whose entries add
    /// to or replace the built-in ones.
    price_table_file: Option<PathBuf>,
}

impl Default for RawSpend {
    fn default() -> Self {
        Self {
            lease_ttl_secs: 30,
            price_table_file: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSecrets {
    /// The key-encryption key, 32 bytes in base64: environment only.
    kek: Option<SecretString>,
    kek_file: Option<PathBuf>,
    kek_version: Option<u32>,
    /// Earlier keys still needed to open what they sealed: `VERSION:BASE64,...`.
    previous_keks: Option<SecretString>,
    previous_keks_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawProviders {
    allow_link_local: bool,
    allow_private_networks: Vec<String>,
    proxy: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    listen: String,
    shutdown_grace_secs: u64,
    trusted_proxies: Vec<String>,
    /// PEM certificate chain and private key: the listener serves TLS with them.
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    /// How often the certificate files are checked for a change.
    tls_reload_secs: u64,
    /// Serve without TLS: only behind a TLS-terminating proxy, and only when said.
    plaintext: bool,
    /// A client must send a whole request head within this.
    header_read_timeout_secs: u64,
    /// A data-plane body must arrive within this once its head did (408 otherwise).
    body_read_timeout_secs: u64,
    /// The largest request head accepted.
    max_header_bytes: usize,
    /// Connections served at once; past it, new ones wait in the listen backlog.
    max_connections: usize,
    /// Requests in flight at once on one HTTP/2 connection.
    http2_max_streams: u32,
    /// Serve `/metrics` here (plaintext, for a scraper on a private network) instead of on
    /// the main listener.
    metrics_listen: Option<String>,
    /// Serve the web console at `/console`.
    console: bool,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            shutdown_grace_secs: 30,
            trusted_proxies: Vec::new(),
            tls_cert_file: None,
            tls_key_file: None,
            tls_reload_secs: 30,
            plaintext: false,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            http2_max_streams: 100,
            metrics_listen: None,
            console: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDatabase {
    url: Option<SecretString>,
    url_file: Option<PathBuf>,
    admin_url: Option<SecretString>,
    admin_url_file: Option<PathBuf>,
    max_connections: u32,
    acquire_timeout_ms: u64,
    startup_timeout_secs: u64,
    /// PostgreSQL's `sslmode` for the gateway's connections (`verify-full` in production).
    tls_mode: Option<String>,
    /// The CA of the database server's certificate.
    tls_ca_file: Option<PathBuf>,
}

impl Default for RawDatabase {
    fn default() -> Self {
        Self {
            url: None,
            url_file: None,
            admin_url: None,
            admin_url_file: None,
            max_connections: 16,
            acquire_timeout_ms: 5_000,
            startup_timeout_secs: 30,
            tls_mode: None,
            tls_ca_file: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    level: String,
    format: LogFormat,
    /// Where traces go over OTLP/HTTP, such as http://collector:4318/v1/traces; none when unset.
    otlp_endpoint: Option<String>,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            level: "info,sqlx=warn".to_owned(),
            format: LogFormat::Json,
            otlp_endpoint: None,
        }
    }
}

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for log shippers.
    Json,
    /// Human-readable lines, for a terminal.
    Text,
}

/// Validated configuration.
#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub secrets: SecretsConfig,
    pub providers: ProvidersConfig,
    pub spend: portcullis_gateway::spend::SpendOptions,
    pub logs: portcullis_gateway::logs::LogOptions,
    pub throttle: portcullis_gateway::throttle::ThrottleLimits,
}

#[derive(Debug)]
pub struct ProvidersConfig {
    /// Where base URLs may lead (link-local, private networks), and the one proxy upstream
    /// requests may go through.
    pub egress: portcullis_gateway::Egress,
}

#[derive(Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub shutdown_grace: Duration,
    /// Peers whose X-Forwarded-For is believed.
    pub trusted_proxies: Vec<IpNet>,
    pub tls: Option<TlsFiles>,
    pub tls_reload: Duration,
    /// Said explicitly: serve without TLS (behind a TLS-terminating proxy).
    pub plaintext: bool,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub http2_max_streams: u32,
    pub metrics_listen: Option<SocketAddr>,
    /// The web console at `/console`.
    pub console: bool,
}

#[derive(Debug)]
pub struct SecretsConfig {
    pub(crate) kek: Option<SecretString>,
    pub kek_version: u32,
    previous_keks: Option<SecretString>,
}

impl SecretsConfig {
    /// The keyring that seals secrets at rest.
    pub fn keyring(&self) -> anyhow::Result<Keyring> {
        let kek = self.kek.as_ref().context(
            "secrets.kek is not set: set PORTCULLIS_SECRETS__KEK to 32 random bytes in base64 \
             (openssl rand -base64 32), or secrets.kek_file",
        )?;
        let mut keys = vec![(
            self.kek_version,
            decode_kek("secrets.kek", kek.expose_secret())?,
        )];
        if let Some(previous) = &self.previous_keks {
            for entry in previous
                .expose_secret()
                .split(',')
                .filter(|e| !e.trim().is_empty())
            {
                let (version, key) = entry.trim().split_once(':').context(
                    "secrets.previous_keks is a list of VERSION:BASE64, separated by commas",
                )?;
                let version: u32 = version
                    .parse()
                    .context("secrets.previous_keks: VERSION is a number")?;
                if version == self.kek_version {
                    bail!("secrets.previous_keks repeats the current version {version}");
                }
                keys.push((version, decode_kek("secrets.previous_keks", key)?));
            }
        }
        Keyring::new(self.kek_version, keys).context("secrets.kek is not a usable key")
    }
}

#[derive(Debug)]
pub struct DatabaseConfig {
    pub(crate) url: Option<SecretString>,
    admin_url: Option<SecretString>,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub startup_timeout: Duration,
    pub tls_mode: Option<String>,
    pub tls_ca_file: Option<PathBuf>,
}

#[derive(Debug)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
    pub otlp_endpoint: Option<String>,
}

impl DatabaseConfig {
    /// The runtime role's URL; every command but `migrate` needs only this one.
    pub fn url(&self) -> anyhow::Result<&SecretString> {
        self.url
            .as_ref()
            .context("database.url is not set: set PORTCULLIS_DATABASE__URL or database.url_file")
    }

    /// The administrative URL that `migrate` uses.
    pub fn admin_url(&self) -> anyhow::Result<&SecretString> {
        self.admin_url.as_ref().context(
            "database.admin_url is not set: set PORTCULLIS_DATABASE__ADMIN_URL or \
             database.admin_url_file",
        )
    }
}

impl Config {
    /// Loads the file (if any) and the environment, then validates.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        // Variables that are not settings: the config path, and bootstrap's password.
        let env = Env::prefixed(ENV_PREFIX).split("__").filter(|key| {
            !NOT_SETTINGS
                .iter()
                .any(|name| key.as_str().eq_ignore_ascii_case(name))
        });
        Self::load_layers(file, Some(env))
    }

    fn load_layers(file: Option<&Path>, env: Option<Env>) -> anyhow::Result<Self> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the configuration file {}", path.display())
            })?;
            refuse_inline_secrets(&text, path)?;
            figment = figment.merge(Toml::string(&text));
        }
        if let Some(env) = env {
            figment = figment.merge(env);
        }
        let raw: RawConfig = figment
            .extract()
            .map_err(|error| anyhow::anyhow!("invalid configuration: {error}"))?;
        Self::validate(raw)
    }

    fn validate(raw: RawConfig) -> anyhow::Result<Self> {
        let trusted_proxies = networks("server.trusted_proxies", &raw.server.trusted_proxies)?;
        let listen = raw.server.listen.parse().with_context(|| {
            format!(
                "server.listen `{}` is not an address such as 127.0.0.1:8080",
                raw.server.listen
            )
        })?;
        if raw.database.max_connections == 0 {
            bail!("database.max_connections must be at least 1");
        }
        let level = raw.log.level;
        tracing_subscriber::EnvFilter::try_new(&level)
            .with_context(|| format!("log.level `{level}` is not a valid filter such as `info`"))?;
        Ok(Self {
            server: ServerConfig {
                listen,
                shutdown_grace: Duration::from_secs(raw.server.shutdown_grace_secs),
                trusted_proxies,
                tls: match (raw.server.tls_cert_file, raw.server.tls_key_file) {
                    (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                    (None, None) => None,
                    _ => bail!("server.tls_cert_file and server.tls_key_file go together"),
                },
                tls_reload: Duration::from_secs(raw.server.tls_reload_secs.max(1)),
                plaintext: raw.server.plaintext,
                header_read_timeout: Duration::from_secs(
                    raw.server.header_read_timeout_secs.clamp(1, 300),
                ),
                body_read_timeout: Duration::from_secs(
                    raw.server.body_read_timeout_secs.clamp(1, 3600),
                ),
                max_header_bytes: raw.server.max_header_bytes.clamp(8 * 1024, 1024 * 1024),
                max_connections: raw.server.max_connections.clamp(1, 1_000_000),
                http2_max_streams: raw.server.http2_max_streams.clamp(1, 10_000),
                metrics_listen: raw
                    .server
                    .metrics_listen
                    .map(|addr| {
                        addr.parse().with_context(|| {
                            format!("server.metrics_listen `{addr}` is not an address such as 127.0.0.1:9090")
                        })
                    })
                    .transpose()?,
                console: raw.server.console,
            },
            secrets: SecretsConfig {
                kek: secret("secrets.kek", raw.secrets.kek, raw.secrets.kek_file)?,
                kek_version: raw.secrets.kek_version.unwrap_or(1),
                previous_keks: secret(
                    "secrets.previous_keks",
                    raw.secrets.previous_keks,
                    raw.secrets.previous_keks_file,
                )?,
            },
            providers: ProvidersConfig {
                egress: portcullis_gateway::Egress {
                    destinations: portcullis_core::net::Destinations {
                        allow_link_local: raw.providers.allow_link_local,
                        allow_private: networks(
                            "providers.allow_private_networks",
                            &raw.providers.allow_private_networks,
                        )?,
                        own: Vec::new(),
                    },
                    proxy: raw.providers.proxy,
                },
            },
            spend: spend_options(&raw.spend)?,
            logs: log_options(&raw.logs)?,
            throttle: throttle_limits(&raw.auth)?,
            database: DatabaseConfig {
                url: secret("database.url", raw.database.url, raw.database.url_file)?,
                admin_url: secret(
                    "database.admin_url",
                    raw.database.admin_url,
                    raw.database.admin_url_file,
                )?,
                max_connections: raw.database.max_connections,
                acquire_timeout: Duration::from_millis(raw.database.acquire_timeout_ms),
                startup_timeout: Duration::from_secs(raw.database.startup_timeout_secs),
                tls_mode: match raw.database.tls_mode {
                    Some(mode) if !portcullis_storage::TLS_MODES.contains(&mode.as_str()) => {
                        bail!(
                            "database.tls_mode `{mode}` is not one of {}",
                            portcullis_storage::TLS_MODES.join(", ")
                        )
                    }
                    mode => mode,
                },
                tls_ca_file: raw.database.tls_ca_file,
            },
            log: LogConfig {
                level,
                format: raw.log.format,
                otlp_endpoint: raw
                    .log
                    .otlp_endpoint
                    .map(|url| {
                        url::Url::parse(&url)
                            .ok()
                            .filter(|u| matches!(u.scheme(), "http" | "https"))
                            .map(|_| url.clone())
                            .with_context(|| {
                                format!("log.otlp_endpoint `{url}` is not an http(s) URL")
                            })
                    })
                    .transpose()?,
            },
        })
    }
}

fn spend_options(raw: &RawSpend) -> anyhow::Result<portcullis_gateway::spend::SpendOptions> {
    use portcullis_gateway::spend::PriceTable;
    if !(1..=3600).contains(&raw.lease_ttl_secs) {
        bail!("spend.lease_ttl_secs must be between 1 and 3600");
    }
    let mut prices = PriceTable::builtin().context("the built-in price table")?;
    if let Some(path) = &raw.price_table_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("spend.price_table_file: cannot read {}", path.display()))?;
        let table = PriceTable::parse(&text)
            .with_context(|| format!("spend.price_table_file {}", path.display()))?;
        prices = prices.overridden_by(table)?;
    }
    let mut options = portcullis_gateway::spend::SpendOptions::new(prices);
    options.lease_ttl = Duration::from_secs(raw.lease_ttl_secs);
    Ok(options)
}

fn throttle_limits(raw: &RawAuth) -> anyhow::Result<portcullis_gateway::throttle::ThrottleLimits> {
    if !(1..=86_400).contains(&raw.throttle_window_secs) {
        bail!("auth.throttle_window_secs must be between 1 and 86400");
    }
    for (name, value) in [
        (
            "auth.failures_per_account_and_address",
            raw.failures_per_account_and_address,
        ),
        ("auth.failures_per_account", raw.failures_per_account),
        ("auth.failures_per_address", raw.failures_per_address),
    ] {
        if !(1..=1_000_000).contains(&value) {
            bail!("{name} must be between 1 and 1000000");
        }
    }
    Ok(portcullis_gateway::throttle::ThrottleLimits {
        window: Duration::from_secs(raw.throttle_window_secs),
        per_account_and_address: raw.failures_per_account_and_address,
        per_account: raw.failures_per_account,
        per_address: raw.failures_per_address,
    })
}

fn log_options(raw: &RawLogs) -> anyhow::Result<portcullis_gateway::logs::LogOptions> {
    if !(1..=1_000_000).contains(&raw.queue_capacity) {
        bail!("logs.queue_capacity must be between 1 and 1000000");
    }
    if !(1..=10_000).contains(&raw.batch_size) {
        bail!("logs.batch_size must be between 1 and 10000");
    }
    if !(1..=86_400).contains(&raw.retention_interval_secs) {
        bail!("logs.retention_interval_secs must be between 1 and 86400");
    }
    if !(1024..=16 * 1024 * 1024).contains(&raw.max_content_bytes) {
        bail!("logs.max_content_bytes must be between 1024 and 16777216");
    }
    Ok(portcullis_gateway::logs::LogOptions {
        queue_capacity: raw.queue_capacity,
        batch_size: raw.batch_size,
        linger: portcullis_gateway::logs::LogOptions::default().linger,
        retention_interval: Duration::from_secs(raw.retention_interval_secs),
        max_content_bytes: raw.max_content_bytes,
    })
}

fn decode_kek(setting: &str, text: &str) -> anyhow::Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .filter(|bytes| bytes.len() == 32)
        .with_context(|| format!("{setting} must hold keys of 32 bytes in base64"))
}

/// A secret given inline (from the environment: inline file values are refused earlier) or
/// read from a file, never both.
fn secret(
    name: &str,
    inline: Option<SecretString>,
    file: Option<PathBuf>,
) -> anyhow::Result<Option<SecretString>> {
    match (inline, file) {
        (Some(_), Some(_)) => bail!("set {name} or {name}_file, not both"),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {name}_file {}", path.display()))?;
            let value = text.trim_end_matches(['\n', '\r']);
            if value.is_empty() {
                bail!("{name}_file {} is empty", path.display());
            }
            Ok(Some(SecretString::from(value.to_owned())))
        }
        (None, None) => Ok(None),
    }
}

/// A database URL without a password (local trust or peer authentication) may sit in the
/// file; one with a password must come from the environment or a file of its own.
fn refuse_inline_secrets(text: &str, path: &Path) -> anyhow::Result<()> {
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        // Syntax errors are reported by the full parse, with their position.
        return Ok(());
    };
    if table
        .get("secrets")
        .and_then(toml::Value::as_table)
        .is_some_and(|secrets| secrets.contains_key("kek") || secrets.contains_key("previous_keks"))
    {
        bail!(
            "secrets.kek and secrets.previous_keks in {} are secrets; set {ENV_PREFIX}SECRETS__KEK \
             ({ENV_PREFIX}SECRETS__PREVIOUS_KEKS) or secrets.kek_file (previous_keks_file)",
            path.display()
        );
    }
    let Some(database) = table.get("database").and_then(toml::Value::as_table) else {
        return Ok(());
    };
    for key in ["url", "admin_url"] {
        let Some(value) = database.get(key).and_then(toml::Value::as_str) else {
            continue;
        };
        let has_password = url::Url::parse(value).is_ok_and(|url| url.password().is_some());
        if has_password {
            let env = format!("{ENV_PREFIX}DATABASE__{}", key.to_uppercase());
            bail!(
                "database.{key} in {} holds a password; secrets come from the environment \
                 ({env}) or a file (database.{key}_file)",
                path.display()
            );
        }
    }
    Ok(())
}

/// A list of addresses or CIDR ranges, named by its setting in an error.
fn networks(setting: &str, texts: &[String]) -> anyhow::Result<Vec<IpNet>> {
    texts
        .iter()
        .map(|text| {
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .with_context(|| format!("{setting}: `{text}` is not an address or CIDR range"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// The file alone: the developer's own `PORTCULLIS_*` variables must not sway the tests.
    fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        Config::load_layers(file, None)
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn defaults_apply_and_file_values_override_them() {
        let file = write(
            "[server]\nlisten = \"0.0.0.0:9000\"\n[database]\nurl = \"postgres://app@db/x\"\n",
        );
        let config = load(Some(file.path())).unwrap();
        assert_eq!(config.server.listen.port(), 9000);
        assert_eq!(config.database.max_connections, 16);
        assert_eq!(
            config.database.url().unwrap().expose_secret(),
            "postgres://app@db/x"
        );
        assert!(config.database.admin_url().is_err());
    }

    #[test]
    fn unknown_settings_are_refused_by_name() {
        let file = write("[server]\nlisten = \"127.0.0.1:1\"\nlisen = \"typo\"\n");
        let error = load(Some(file.path())).unwrap_err().to_string();
        assert!(error.contains("lisen"), "{error}");
    }

    #[test]
    fn a_bad_value_is_reported_with_its_setting() {
        let file = write("[server]\nlisten = \"not an address\"\n");
        let error = load(Some(file.path())).unwrap_err().to_string();
        assert!(error.contains("server.listen"), "{error}");
        let file = write("[database]\nmax_connections = \"many\"\n");
        let error = load(Some(file.path())).unwrap_err().to_string();
        assert!(error.contains("max_connections"), "{error}");
    }

    #[test]
    fn a_password_in_the_file_is_refused_and_never_echoed() {
        let file = write("[database]\nurl = \"postgres://app:hunter2@db/x\"\n");
        let error = load(Some(file.path())).unwrap_err().to_string();
        assert!(error.contains("PORTCULLIS_DATABASE__URL"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn the_kek_never_sits_in_the_file_and_must_be_32_bytes() {
        let file = write("[secrets]\nkek = \"AAAA\"\n");
        let error = load(Some(file.path())).unwrap_err().to_string();
        assert!(error.contains("PORTCULLIS_SECRETS__KEK"), "{error}");
        let short = write("c2hvcnQ=\n");
        let config_file = write(&format!(
            "[secrets]\nkek_file = \"{}\"\n",
            short.path().display()
        ));
        let config = load(Some(config_file.path())).unwrap();
        assert!(config.secrets.keyring().is_err());
        let good = write("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n");
        let config_file = write(&format!(
            "[secrets]\nkek_file = \"{}\"\n",
            good.path().display()
        ));
        assert!(
            load(Some(config_file.path()))
                .unwrap()
                .secrets
                .keyring()
                .is_ok()
        );
    }

    #[test]
    fn previous_keks_join_the_keyring_for_rotation() {
        let current = write("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n");
        let previous = write("1:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\n");
        let config_file = write(&format!(
            "[secrets]\nkek_version = 2\nkek_file = \"{}\"\nprevious_keks_file = \"{}\"\n",
            current.path().display(),
            previous.path().display()
        ));
        let ring = load(Some(config_file.path()))
            .unwrap()
            .secrets
            .keyring()
            .unwrap();
        assert_eq!(ring.current_version(), 2);
        let old = portcullis_core::crypto::Keyring::new(1, vec![(1, vec![2; 32])]).unwrap();
        let sealed = old.seal(b"seed", b"ctx").unwrap();
        assert_eq!(ring.open(&sealed, b"ctx").unwrap(), b"seed");
    }

    #[test]
    fn trusted_proxies_take_addresses_and_ranges() {
        let file = write("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\"]\n");
        assert_eq!(
            load(Some(file.path()))
                .unwrap()
                .server
                .trusted_proxies
                .len(),
            2
        );
        let file = write("[server]\ntrusted_proxies = [\"nope\"]\n");
        let error = load(Some(file.path())).unwrap_err().to_string();
        assert!(error.contains("server.trusted_proxies"), "{error}");
    }

    #[test]
    fn a_secret_comes_from_a_file_and_not_from_both_places() {
        let secret_file = write("postgres://app:s3cret@db/x\n");
        let config_file = write(&format!(
            "[database]\nurl_file = \"{}\"\n",
            secret_file.path().display()
        ));
        let config = load(Some(config_file.path())).unwrap();
        assert_eq!(
            config.database.url().unwrap().expose_secret(),
            "postgres://app:s3cret@db/x"
        );
        assert!(
            !format!("{config:?}").contains("s3cret"),
            "Debug must not show secrets"
        );

        let both = write(&format!(
            "[database]\nurl = \"postgres://app@db/x\"\nurl_file = \"{}\"\n",
            secret_file.path().display()
        ));
        let error = load(Some(both.path())).unwrap_err().to_string();
        assert!(error.contains("not both"), "{error}");
    }
}
