//! Server configuration: a TOML file with environment overrides, validated
//! once at start so a bad setting stops the server with a message that names
//! the file and the field, instead of failing later in a request.
//!
//! This module holds [`Config`], its small sections (`[http]`, `[database]`,
//! `[ingest]`, `[registry]`, `[admin]`), loading, the environment overrides
//! and validation. The single sign-on sections are in `config/sso.rs`; the
//! other sections live beside the code that uses them (`mqtt/config.rs`,
//! `evidence/config.rs`, `notices/config.rs`, `payments/config.rs`,
//! `registry/http/config.rs`). All are re-exported here, so every section is
//! `crate::config::…`.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use crate::evidence::config::{S3Config, StorageBackend, StorageConfig};
pub use crate::mqtt::config::MqttConfig;
pub use crate::notices::config::{NoticesConfig, SmtpConfig, VapidConfig, WebhookConfig};
pub use crate::payments::config::{PaymentsConfig, VnPayConfig};
pub use crate::registry::http::config::{HttpRegistryConfig, RegistryBackend};

mod sso;

pub use sso::{CitizenSsoConfig, SsoConfig};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where state lives on embedded defaults (SQLite file, evidence directory).
    pub data_dir: PathBuf,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub mqtt: MqttConfig,
    pub ingest: IngestConfig,
    pub admin: AdminConfig,
    /// Where evidence is kept (`[storage]`, `src/evidence/config.rs`):
    /// `{data_dir}/evidence` by default, or an S3-compatible bucket.
    #[serde(default)]
    pub storage: StorageConfig,
    /// The owner registry.
    #[serde(default)]
    pub registry: RegistryConfig,
    /// Single sign-on through an OpenID Connect provider; absent: local
    /// accounts only.
    #[serde(default)]
    pub sso: Option<SsoConfig>,
    /// Citizens' sign-in to the citizen app through the national identity
    /// provider (OpenID Connect); absent: citizens cannot sign in.
    #[serde(default)]
    pub citizen_sso: Option<CitizenSsoConfig>,
    /// Online payment of fines (`[payments.vnpay]`, `src/payments/`);
    /// absent: payments off.
    #[serde(default)]
    pub payments: PaymentsConfig,
    /// Fine notices to owners (`[notices]`, `src/notices/`): channels,
    /// retries, deadlines.
    #[serde(default)]
    pub notices: NoticesConfig,
    /// How long evidence is kept once no case needs it (`[retention]`,
    /// `src/retention/config.rs`).
    #[serde(default)]
    pub retention: crate::retention::RetentionConfig,
    /// Signed anchors of the audit chain on a schedule (`[audit]`,
    /// `src/audit/anchoring.rs`); off unless `anchor_dir` is set.
    #[serde(default)]
    pub audit: crate::audit::AuditConfig,
}

/// The HTTP listener (console, citizen app, API).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Mark session cookies `Secure` (sent over HTTPS only) and answer
    /// with `Strict-Transport-Security`. Unset: yes, unless the server
    /// listens on loopback only (the one-machine default, where browsers
    /// treat http://127.0.0.1 as a secure context anyway); env
    /// `INGEST_SECURE_COOKIES` (true/false). Behind a TLS-terminating proxy
    /// set it to true: a proxy on the same machine reaches a loopback
    /// listener, where unset means false (`deploy/config/ingest-server.toml`
    /// sets it).
    pub secure_cookies: Option<bool>,
    /// Bearer token a Prometheus scraper sends for `GET /metrics`
    /// (`authorization` in its scrape config); env `INGEST_METRICS_TOKEN`.
    /// Empty: `/metrics` answers only a client on this machine that is not
    /// a proxy forwarding someone else (no `X-Forwarded-For`/`Forwarded`).
    pub metrics_token: String,
    /// Addresses or networks (`192.0.2.10`, `10.96.12.0/28`) of the reverse
    /// proxies in front of the server, whose `X-Forwarded-For` names the
    /// client (loopback is always trusted); env `INGEST_TRUSTED_PROXIES`
    /// (comma-separated). As narrow as the proxies: any host listed can
    /// claim to forward anyone.
    /// Used to count failed sign-ins per client (`console/throttle.rs`).
    pub trusted_proxies: Vec<String>,
    /// Minutes a console session may go unused before it is refused (and
    /// the person signs in again), 5-720; env
    /// `INGEST_CONSOLE_IDLE_MINUTES`. A console left open on an unattended
    /// desk shows personal data and can confirm fines; the session's whole
    /// life is one 12-hour shift (`accounts::SESSION_MS`) all the same.
    pub console_idle_minutes: u32,
}

/// The database. Empty `url`: SQLite file `ingest.db` under `data_dir`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path` or `postgres://user:pass@host/db`; env `DATABASE_URL`.
    pub url: String,
}

/// Ingest tuning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Most bundles committed in one transaction.
    pub batch_max: usize,
    /// Longest wait for more bundles after the first, milliseconds.
    pub batch_wait_ms: u64,
    /// How far ahead of the server's clock an event time may be, seconds.
    pub clock_tolerance_s: u64,
    /// Quarantine events from cameras not enrolled in the camera registry
    /// (`src/cameras/`); env `INGEST_REQUIRE_KNOWN_CAMERA`. Off by default
    /// (deployments that enrol only devices); production turns it on.
    pub require_known_camera: bool,
}

/// The owner registry (`src/registry.rs`). Its `backend` and `[registry.http]`
/// settings, their environment overrides and checks are in
/// `src/registry/http/config.rs`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Where owners are looked up: `sql` (our tables, filled by `registry
    /// import`; the default) or `http` (the data-exchange gateway of
    /// `[registry.http]`); env `INGEST_REGISTRY_BACKEND`.
    pub backend: RegistryBackend,
    /// The HTTP registry gateway; required with `backend = "http"`.
    pub http: Option<HttpRegistryConfig>,
    /// Demo mode, for `make demo` only: a plate the registry does not know
    /// is given a vehicle record owned by one of the fictitious owners
    /// imported with ids starting `demo-`, marked `fictitious-demo`. Off by
    /// default; env `INGEST_REGISTRY_DEMO_MODE` (true/false). Never turn it
    /// on with real data: it invents registrations.
    pub demo_mode: bool,
}

/// The admin API (device enrolment, quarantine). Empty token: disabled.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Bearer token for `/api/v1/devices`, `/api/v1/quarantine`, ...;
    /// env `INGEST_ADMIN_TOKEN`.
    pub token: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(".data/ingest"),
            http: HttpConfig::default(),
            database: DatabaseConfig::default(),
            mqtt: MqttConfig::default(),
            ingest: IngestConfig::default(),
            admin: AdminConfig::default(),
            storage: StorageConfig::default(),
            registry: RegistryConfig::default(),
            sso: None,
            citizen_sso: None,
            payments: PaymentsConfig::default(),
            notices: NoticesConfig::default(),
            retention: crate::retention::RetentionConfig::default(),
            audit: crate::audit::AuditConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            secure_cookies: None,
            metrics_token: String::new(),
            trusted_proxies: Vec::new(),
            console_idle_minutes: crate::accounts::DEFAULT_IDLE_MINUTES,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            batch_max: 128,
            batch_wait_ms: 5,
            clock_tolerance_s: 30,
            require_known_camera: false,
        }
    }
}

impl Config {
    /// The parsed `http.trusted_proxies`.
    pub fn trusted_proxies(&self) -> Result<Vec<crate::console::throttle::ProxyNet>, String> {
        self.http
            .trusted_proxies
            .iter()
            .map(|t| crate::console::throttle::ProxyNet::parse(t))
            .collect()
    }

    /// How long (ms) a console session may go unused
    /// ([`HttpConfig::console_idle_minutes`]).
    pub fn console_idle_ms(&self) -> i64 {
        i64::from(self.http.console_idle_minutes) * 60_000
    }

    /// Whether session cookies are `Secure` (see [`HttpConfig::secure_cookies`]).
    pub fn secure_cookies(&self) -> bool {
        self.http
            .secure_cookies
            .unwrap_or(!self.http.listen.ip().is_loopback())
    }

    /// The database URL: configured, or SQLite under the data directory.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            crate::db::Db::sqlite_url(&self.data_dir.join("ingest.db"))
        } else {
            self.database.url.clone()
        }
    }

    /// The external broker as (host, port), if configured.
    pub fn external_broker(&self) -> Option<(String, u16)> {
        crate::mqtt::config::parse_broker_url(&self.mqtt.url)
            .ok()
            .flatten()
            .map(|u| (u.host, u.port))
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("configuration file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("configuration: {field}: {message}")]
    Invalid { field: String, message: String },
}

impl Config {
    /// Reads `path` (or the defaults when `None`), applies the environment
    /// overrides, and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                Config::parse(&text, &p.display().to_string())?
            }
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses TOML text; `origin` names it in errors (toml's message carries
    /// the line and column).
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })
    }

    /// Environment overrides: `INGEST_HTTP_LISTEN`, `INGEST_DATA_DIR`,
    /// `DATABASE_URL`, the `INGEST_MQTT_*` of `[mqtt]` (`mqtt/config.rs`),
    /// `INGEST_ADMIN_TOKEN`, `INGEST_METRICS_TOKEN`, `INGEST_TRUSTED_PROXIES`,
    /// `INGEST_SECURE_COOKIES`,
    /// `INGEST_REQUIRE_KNOWN_CAMERA`,
    /// and for single sign-on `INGEST_SSO_ISSUER`, `INGEST_SSO_CLIENT_ID`,
    /// `INGEST_SSO_CLIENT_SECRET`, `INGEST_SSO_CLIENT_SECRET_FILE`,
    /// `INGEST_SSO_REDIRECT_URL`, `INGEST_SSO_ROLE_CLAIM`,
    /// `INGEST_SSO_ROLE_MAP` (`theirs=ours,theirs2=ours2`),
    /// `INGEST_SSO_EXTRA_SCOPES` (space- or comma-separated),
    /// `INGEST_SSO_BUTTON_LABEL`, `INGEST_SSO_CA_FILE` (any of them turns
    /// single sign-on on); for citizens' sign-in `INGEST_CITIZEN_SSO_ISSUER`,
    /// `…_CLIENT_ID`, `…_CLIENT_SECRET`, `…_CLIENT_SECRET_FILE`,
    /// `…_REDIRECT_URL`, `…_NATIONAL_ID_CLAIM`, `…_NAME_CLAIM`,
    /// `…_EXTRA_SCOPES`, `…_CA_FILE` (any of them turns it on); for the
    /// owner registry `INGEST_REGISTRY_BACKEND` and `INGEST_REGISTRY_HTTP_*`
    /// (see `src/registry/http/config.rs`); for evidence storage
    /// `INGEST_STORAGE_BACKEND` and `INGEST_STORAGE_S3_*` (see
    /// `src/evidence/config.rs`).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let addr = |var: &str, v: &str| -> Result<SocketAddr, ConfigError> {
            v.parse().map_err(|e| ConfigError::Env {
                var: var.into(),
                message: format!("`{v}` is not an address:port ({e})"),
            })
        };
        if let Some(v) = get("INGEST_HTTP_LISTEN") {
            self.http.listen = addr("INGEST_HTTP_LISTEN", &v)?;
        }
        if let Some(v) = get("INGEST_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("DATABASE_URL") {
            self.database.url = v;
        }
        self.mqtt.apply_env(&get)?;
        if let Some(v) = get("INGEST_REGISTRY_DEMO_MODE") {
            self.registry.demo_mode = v.parse().map_err(|_| ConfigError::Env {
                var: "INGEST_REGISTRY_DEMO_MODE".into(),
                message: format!("`{v}` is not true or false"),
            })?;
        }
        if let Some(v) = get("INGEST_ADMIN_TOKEN") {
            self.admin.token = v;
        }
        if let Some(v) = get("INGEST_METRICS_TOKEN") {
            self.http.metrics_token = v;
        }
        if let Some(v) = get("INGEST_TRUSTED_PROXIES") {
            self.http.trusted_proxies = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
        }
        if let Some(v) = get("INGEST_CONSOLE_IDLE_MINUTES") {
            self.http.console_idle_minutes = v.trim().parse().map_err(|_| ConfigError::Env {
                var: "INGEST_CONSOLE_IDLE_MINUTES".into(),
                message: format!("`{v}` is not a number of minutes"),
            })?;
        }
        if let Some(v) = get("INGEST_SECURE_COOKIES") {
            self.http.secure_cookies = Some(v.parse().map_err(|_| ConfigError::Env {
                var: "INGEST_SECURE_COOKIES".into(),
                message: format!("`{v}` is not true or false"),
            })?);
        }
        crate::cameras::apply_env(&mut self.ingest.require_known_camera, &get)?;
        self.storage.apply_env(&get)?;
        self.registry.apply_env(&get)?;
        self.payments.apply_env(&get)?;
        self.notices.apply_env(&get)?;
        self.retention.apply_env(&get)?;
        self.audit.apply_env(&get)?;
        self.apply_sso_env(&get)
    }
    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                field: "data_dir".into(),
                message: "must not be empty".into(),
            });
        }
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            field: field.into(),
            message,
        };
        self.trusted_proxies()
            .map_err(|m| invalid("http.trusted_proxies", m))?;
        if !(5..=720).contains(&self.http.console_idle_minutes) {
            return Err(invalid(
                "http.console_idle_minutes",
                format!(
                    "{} is not 5-720 (minutes a console session may go unused)",
                    self.http.console_idle_minutes
                ),
            ));
        }
        let url = &self.database.url;
        if !url.is_empty()
            && !["sqlite:", "postgres:", "postgresql:"]
                .iter()
                .any(|p| url.starts_with(p))
        {
            return Err(invalid(
                "database.url",
                format!(
                    "`{}`: expected sqlite:// or postgres://",
                    crate::db::redact(url)
                ),
            ));
        }
        self.mqtt.validate()?;
        if self.ingest.batch_max == 0 || self.ingest.batch_max > 10_000 {
            return Err(invalid(
                "ingest.batch_max",
                "must be within 1..=10000".into(),
            ));
        }
        if self.ingest.clock_tolerance_s > 86_400 {
            return Err(invalid(
                "ingest.clock_tolerance_s",
                "at most 86400 (one day)".into(),
            ));
        }
        if self.ingest.batch_wait_ms > 10_000 {
            return Err(invalid("ingest.batch_wait_ms", "at most 10000".into()));
        }
        if !self.admin.token.is_empty() && self.admin.token.len() < 16 {
            return Err(invalid(
                "admin.token",
                "at least 16 characters when set".into(),
            ));
        }
        if let Some(sso) = &self.sso {
            sso.validate()?;
        }
        if let Some(c) = &self.citizen_sso {
            c.validate()?;
        }
        self.storage.validate()?;
        self.registry.validate()?;
        self.payments.validate()?;
        self.notices.validate()?;
        self.retention.validate()?;
        self.audit.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_listen_on_loopback() {
        let c = Config::default();
        assert!(c.http.listen.ip().is_loopback());
    }

    #[test]
    fn unknown_field_names_the_field_and_line() {
        let err = Config::parse(
            "data_dir = \"x\"\n[http]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("t.toml") && err.contains("lisen") && err.contains("line 4"),
            "{err}"
        );
    }

    #[test]
    fn the_console_idle_limit_is_bounded() {
        let mut c = Config::default();
        assert_eq!(c.console_idle_ms(), 30 * 60_000);
        for (minutes, ok) in [(4, false), (5, true), (720, true), (721, false)] {
            c.http.console_idle_minutes = minutes;
            assert_eq!(c.validate().is_ok(), ok, "{minutes}");
        }
        c.apply_env(|k| (k == "INGEST_CONSOLE_IDLE_MINUTES").then(|| "15".to_string()))
            .unwrap();
        assert_eq!(c.console_idle_ms(), 15 * 60_000);
        assert!(
            c.apply_env(|k| (k == "INGEST_CONSOLE_IDLE_MINUTES").then(|| "soon".to_string()))
                .is_err()
        );
    }

    #[test]
    fn env_override_is_validated() {
        let mut c = Config::default();
        let err = c
            .apply_env(|k| (k == "INGEST_HTTP_LISTEN").then(|| "nonsense".to_string()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("INGEST_HTTP_LISTEN"), "{err}");
        c.apply_env(|k| (k == "INGEST_HTTP_LISTEN").then(|| "127.0.0.1:9999".to_string()))
            .unwrap();
        assert_eq!(c.http.listen.port(), 9999);
    }

    #[test]
    fn database_and_broker_settings() {
        let mut c = Config::default();
        assert!(
            c.database_url().starts_with("sqlite://"),
            "{}",
            c.database_url()
        );
        assert!(c.external_broker().is_none());
        c.apply_env(|k| match k {
            "DATABASE_URL" => Some("postgres://u:p@127.0.0.1:5432/tv".into()),
            "INGEST_MQTT_URL" => Some("mqtt://10.0.0.5:1884".into()),
            _ => None,
        })
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.database_url(), "postgres://u:p@127.0.0.1:5432/tv");
        assert_eq!(c.external_broker(), Some(("10.0.0.5".into(), 1884)));
        let err = c
            .apply_env(|k| (k == "INGEST_MQTT_URL").then(|| "http://x".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("INGEST_MQTT_URL"), "{err}");
        c.database.url = "mysql://x".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("database.url")
        );
    }
}

#[cfg(test)]
mod deploy_tests {
    use super::Config;

    /// The reference configuration shipped in `deploy/` must stay loadable.
    #[test]
    fn deploy_config_parses() {
        let text = include_str!("../../../deploy/config/ingest-server.toml");
        let cfg = Config::parse(text, "deploy/config/ingest-server.toml").unwrap();
        cfg.validate().unwrap();
    }
}
