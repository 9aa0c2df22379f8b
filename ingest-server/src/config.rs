//! Server configuration: a TOML file with environment overrides, validated
//! once at start so a bad setting stops the server with a message that names
//! the file and the field, instead of failing later in a request.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
}

/// The HTTP listener (console, citizen app, API).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Mark session cookies `Secure` (sent over HTTPS only). Unset: yes,
    /// unless the server listens on loopback only (the one-machine default,
    /// where browsers treat http://127.0.0.1 as a secure context anyway);
    /// env `INGEST_SECURE_COOKIES` (true/false). Behind a TLS-terminating
    /// proxy leave it unset or true.
    pub secure_cookies: Option<bool>,
}

/// The database. Empty `url`: SQLite file `ingest.db` under `data_dir`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path` or `postgres://user:pass@host/db`; env `DATABASE_URL`.
    pub url: String,
}

/// MQTT: the embedded broker, or an external one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Run the embedded broker (ignored when `url` is set).
    pub embedded: bool,
    /// Where the embedded broker listens (plain MQTT 3.1.1 / TCP).
    pub listen: SocketAddr,
    /// External broker, `mqtt://host:port`; empty for the embedded one.
    pub url: String,
    /// Client id of this server (unique per replica).
    pub client_id: String,
    /// Shared-subscription group on an external broker (`$share/{group}/...`).
    pub share_group: String,
    /// Credentials on the external broker (optional).
    pub username: String,
    pub password: String,
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
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            secure_cookies: None,
        }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            embedded: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            url: String::new(),
            client_id: "ingest-server".into(),
            share_group: "ingest".into(),
            username: String::new(),
            password: String::new(),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            batch_max: 128,
            batch_wait_ms: 5,
            clock_tolerance_s: 30,
        }
    }
}

impl Config {
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
        parse_mqtt_url(&self.mqtt.url).ok().flatten()
    }
}

/// `mqtt://host:port` (or `tcp://`) → (host, port); empty → `None`.
fn parse_mqtt_url(url: &str) -> Result<Option<(String, u16)>, String> {
    if url.is_empty() {
        return Ok(None);
    }
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or_else(|| format!("`{url}`: expected mqtt://host:port"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|e| format!("`{url}`: bad port ({e})"))?,
        ),
        None => (rest, 1883),
    };
    if host.is_empty() {
        return Err(format!("`{url}`: no host"));
    }
    Ok(Some((host.trim_matches(['[', ']']).to_owned(), port)))
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
    /// `DATABASE_URL`, `INGEST_MQTT_LISTEN`, `INGEST_MQTT_URL`,
    /// `INGEST_MQTT_CLIENT_ID`, `INGEST_ADMIN_TOKEN`, `INGEST_SECURE_COOKIES`.
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
        if let Some(v) = get("INGEST_MQTT_LISTEN") {
            self.mqtt.listen = addr("INGEST_MQTT_LISTEN", &v)?;
        }
        if let Some(v) = get("INGEST_MQTT_URL") {
            parse_mqtt_url(&v).map_err(|message| ConfigError::Env {
                var: "INGEST_MQTT_URL".into(),
                message,
            })?;
            self.mqtt.url = v;
        }
        if let Some(v) = get("INGEST_MQTT_CLIENT_ID") {
            self.mqtt.client_id = v;
        }
        if let Some(v) = get("INGEST_ADMIN_TOKEN") {
            self.admin.token = v;
        }
        if let Some(v) = get("INGEST_SECURE_COOKIES") {
            self.http.secure_cookies = Some(v.parse().map_err(|_| ConfigError::Env {
                var: "INGEST_SECURE_COOKIES".into(),
                message: format!("`{v}` is not true or false"),
            })?);
        }
        Ok(())
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
        parse_mqtt_url(&self.mqtt.url).map_err(|m| invalid("mqtt.url", m))?;
        if protocol::topics::validate_id("share group", &self.mqtt.share_group).is_err() {
            return Err(invalid(
                "mqtt.share_group",
                "1-64 of A-Z a-z 0-9 - _ .".into(),
            ));
        }
        if self.mqtt.client_id.is_empty() {
            return Err(invalid("mqtt.client_id", "must not be empty".into()));
        }
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
        let text = include_str!("../../deploy/config/ingest-server.toml");
        let cfg = Config::parse(text, "deploy/config/ingest-server.toml").unwrap();
        cfg.validate().unwrap();
    }
}
