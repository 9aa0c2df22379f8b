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
}

/// The HTTP listener (console, citizen app, API).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(".data/ingest"),
            http: HttpConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
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

    /// Environment overrides: `INGEST_HTTP_LISTEN`, `INGEST_DATA_DIR`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("INGEST_HTTP_LISTEN") {
            self.http.listen = v.parse().map_err(|e| ConfigError::Env {
                var: "INGEST_HTTP_LISTEN".into(),
                message: format!("`{v}` is not an address:port ({e})"),
            })?;
        }
        if let Some(v) = get("INGEST_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
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
