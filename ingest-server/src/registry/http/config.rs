//! The registry's choice of backend (`registry.backend`) and the
//! `[registry.http]` section: where the national data-exchange gateway is,
//! the certificate this server presents to it (mutual TLS), and how hard to
//! try (time limit, retries, circuit breaker, cache).
//!
//! Kept here rather than in `crate::config` so the adapter's settings, their
//! environment overrides (`INGEST_REGISTRY_BACKEND`,
//! `INGEST_REGISTRY_HTTP_*`) and their checks live beside the code that uses
//! them. Checked once at start like the rest of the configuration; errors
//! name the field (`registry.http.client_key`) or the variable. The
//! certificate, key and CA files are read during the check, so a missing or
//! unreadable file stops the server before it takes any traffic.

use serde::Deserialize;

use crate::config::{ConfigError, RegistryConfig};
use crate::outbound::{self, ClientIdentity};

/// Where owners are looked up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistryBackend {
    /// Our own tables, filled by `ingest-server registry import`.
    #[default]
    Sql,
    /// The data-exchange gateway of `[registry.http]`.
    Http,
}

/// `[registry.http]`: the HTTP registry gateway (see
/// `api/registry-gateway.openapi.json`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpRegistryConfig {
    /// The gateway's base URL; lookups go to `{url}/v1/vehicle-lookups`.
    /// `https://` (`http://` only on a loopback host, for tests).
    pub url: String,
    /// A PEM file of CA certificates to trust for the gateway besides the
    /// system's roots (the data-exchange platform's own CA).
    pub ca_file: String,
    /// This server's client certificate (PEM, leaf first); required with
    /// `https://`.
    pub client_cert: String,
    /// Its private key (PEM); required with `https://`.
    pub client_key: String,
    /// How this system names itself in each request (`requesting_system`).
    pub system_id: String,
    /// Longest one attempt may take, connection and TLS included, ms.
    pub timeout_ms: u64,
    /// Further attempts after a timeout, a connection failure, a 5xx or a
    /// 429 (never after another 4xx or an invalid answer).
    pub retries: u32,
    /// The wait before the first retry, ms; doubled for each later one, at
    /// most `backoff_max_ms`, with equal jitter (half fixed, half random).
    pub backoff_base_ms: u64,
    /// The longest wait between attempts, ms.
    pub backoff_max_ms: u64,
    /// Consecutive failed lookups (after their retries) that open the
    /// circuit: lookups then fail at once without a call.
    pub breaker_threshold: u32,
    /// How long the circuit stays open before one trial lookup is let
    /// through, ms.
    pub breaker_cooldown_ms: u64,
    /// How long an answer (found, not found, ambiguous) is kept, ms; 0: no
    /// cache.
    pub cache_ttl_ms: u64,
    /// Most answers kept; 0: no cache.
    pub cache_size: usize,
}

impl Default for HttpRegistryConfig {
    fn default() -> Self {
        HttpRegistryConfig {
            url: String::new(),
            ca_file: String::new(),
            client_cert: String::new(),
            client_key: String::new(),
            system_id: "ingest-server".into(),
            timeout_ms: 3_000,
            retries: 2,
            backoff_base_ms: 200,
            backoff_max_ms: 2_000,
            breaker_threshold: 5,
            breaker_cooldown_ms: 30_000,
            cache_ttl_ms: 60_000,
            cache_size: 10_000,
        }
    }
}

impl HttpRegistryConfig {
    /// The client identity, when both files are set.
    pub fn identity(&self) -> Option<ClientIdentity> {
        (!self.client_cert.is_empty() && !self.client_key.is_empty()).then(|| ClientIdentity {
            cert_file: self.client_cert.clone(),
            key_file: self.client_key.clone(),
        })
    }

    /// The lookup endpoint: `{url}/v1/vehicle-lookups`.
    pub fn endpoint(&self) -> String {
        format!("{}{}", self.url.trim_end_matches('/'), super::LOOKUP_PATH)
    }

    /// Checks every field; the error names it (`registry.http.…`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            field: format!("registry.http.{field}"),
            message,
        };
        let u = gateway_url(&self.url).map_err(|m| invalid("url", m))?;
        if !self.ca_file.is_empty() {
            outbound::load_ca_file(&self.ca_file).map_err(|m| invalid("ca_file", m))?;
        }
        match (
            u.scheme(),
            self.client_cert.is_empty(),
            self.client_key.is_empty(),
        ) {
            ("https", true, _) => {
                return Err(invalid(
                    "client_cert",
                    "required with https:// (the gateway authenticates this server by certificate)"
                        .into(),
                ));
            }
            ("https", false, true) => {
                return Err(invalid("client_key", "required with client_cert".into()));
            }
            ("https", false, false) => {
                let id = ClientIdentity {
                    cert_file: self.client_cert.clone(),
                    key_file: self.client_key.clone(),
                };
                outbound::client_config(&self.ca_file).map_err(|m| invalid("ca_file", m))?;
                outbound::load_ca_file(&self.client_cert).map_err(|m| invalid("client_cert", m))?;
                // The certificate is readable: what fails now is the key.
                outbound::load_identity(&id).map_err(|m| invalid("client_key", m))?;
                outbound::client_config_with_identity(&self.ca_file, Some(&id))
                    .map_err(|m| invalid("client_key", m))?;
            }
            (_, false, _) | (_, _, false) => {
                return Err(invalid(
                    "client_cert",
                    "a client certificate is only used with https://".into(),
                ));
            }
            _ => {}
        }
        let sys = &self.system_id;
        if sys.is_empty()
            || sys.len() > 64
            || !sys
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            return Err(invalid("system_id", "1-64 of A-Z a-z 0-9 - _ . :".into()));
        }
        let within = |field: &str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(invalid(field, format!("within {lo}..={hi}")))
            }
        };
        within("timeout_ms", self.timeout_ms, 50, 60_000)?;
        within("retries", self.retries.into(), 0, 10)?;
        within("backoff_base_ms", self.backoff_base_ms, 1, 60_000)?;
        within(
            "backoff_max_ms",
            self.backoff_max_ms,
            self.backoff_base_ms,
            300_000,
        )?;
        within("breaker_threshold", self.breaker_threshold.into(), 1, 1_000)?;
        within(
            "breaker_cooldown_ms",
            self.breaker_cooldown_ms,
            10,
            3_600_000,
        )?;
        // A short cache: personal data is not kept around for long.
        within("cache_ttl_ms", self.cache_ttl_ms, 0, 600_000)?;
        within(
            "cache_size",
            u64::try_from(self.cache_size).unwrap_or(u64::MAX),
            0,
            1_000_000,
        )?;
        Ok(())
    }
}

/// `https://`, or `http://` on a loopback host; a host; no query or
/// fragment (paths are appended to it).
fn gateway_url(s: &str) -> Result<url::Url, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    let u = url::Url::parse(s).map_err(|e| format!("`{s}`: {e}"))?;
    match u.scheme() {
        "https" => {}
        "http" if outbound::is_loopback(&u) => {}
        _ => {
            return Err(format!(
                "`{s}`: must be https:// (http:// only on loopback)"
            ));
        }
    }
    if u.host().is_none() || u.query().is_some() || u.fragment().is_some() {
        return Err(format!("`{s}`: a host, and no ?query or #fragment"));
    }
    Ok(u)
}

impl RegistryConfig {
    /// Environment overrides `INGEST_REGISTRY_BACKEND` (`sql`/`http`) and
    /// `INGEST_REGISTRY_HTTP_URL`, `_CA_FILE`, `_CLIENT_CERT`,
    /// `_CLIENT_KEY`, `_SYSTEM_ID`, `_TIMEOUT_MS`, `_RETRIES`,
    /// `_BACKOFF_BASE_MS`, `_BACKOFF_MAX_MS`, `_BREAKER_THRESHOLD`,
    /// `_BREAKER_COOLDOWN_MS`, `_CACHE_TTL_MS`, `_CACHE_SIZE` (any of these
    /// adds a `[registry.http]` section; only `backend` chooses it).
    pub fn apply_env(&mut self, get: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("INGEST_REGISTRY_BACKEND") {
            self.backend = match v.trim() {
                "sql" => RegistryBackend::Sql,
                "http" => RegistryBackend::Http,
                _ => {
                    return Err(ConfigError::Env {
                        var: "INGEST_REGISTRY_BACKEND".into(),
                        message: format!("`{v}` is not sql or http"),
                    });
                }
            };
        }
        const VARS: [&str; 13] = [
            "INGEST_REGISTRY_HTTP_URL",
            "INGEST_REGISTRY_HTTP_CA_FILE",
            "INGEST_REGISTRY_HTTP_CLIENT_CERT",
            "INGEST_REGISTRY_HTTP_CLIENT_KEY",
            "INGEST_REGISTRY_HTTP_SYSTEM_ID",
            "INGEST_REGISTRY_HTTP_TIMEOUT_MS",
            "INGEST_REGISTRY_HTTP_RETRIES",
            "INGEST_REGISTRY_HTTP_BACKOFF_BASE_MS",
            "INGEST_REGISTRY_HTTP_BACKOFF_MAX_MS",
            "INGEST_REGISTRY_HTTP_BREAKER_THRESHOLD",
            "INGEST_REGISTRY_HTTP_BREAKER_COOLDOWN_MS",
            "INGEST_REGISTRY_HTTP_CACHE_TTL_MS",
            "INGEST_REGISTRY_HTTP_CACHE_SIZE",
        ];
        for var in VARS {
            let Some(v) = get(var) else { continue };
            let number = |v: &str| -> Result<u64, ConfigError> {
                v.trim().parse().map_err(|_| ConfigError::Env {
                    var: var.into(),
                    message: format!("`{v}` is not a whole number"),
                })
            };
            let small = |v: &str| -> Result<u32, ConfigError> {
                u32::try_from(number(v)?).map_err(|_| ConfigError::Env {
                    var: var.into(),
                    message: format!("`{v}` is too large"),
                })
            };
            let c = self.http.get_or_insert_with(HttpRegistryConfig::default);
            match var {
                "INGEST_REGISTRY_HTTP_URL" => c.url = v,
                "INGEST_REGISTRY_HTTP_CA_FILE" => c.ca_file = v,
                "INGEST_REGISTRY_HTTP_CLIENT_CERT" => c.client_cert = v,
                "INGEST_REGISTRY_HTTP_CLIENT_KEY" => c.client_key = v,
                "INGEST_REGISTRY_HTTP_SYSTEM_ID" => c.system_id = v,
                "INGEST_REGISTRY_HTTP_TIMEOUT_MS" => c.timeout_ms = number(&v)?,
                "INGEST_REGISTRY_HTTP_RETRIES" => c.retries = small(&v)?,
                "INGEST_REGISTRY_HTTP_BACKOFF_BASE_MS" => c.backoff_base_ms = number(&v)?,
                "INGEST_REGISTRY_HTTP_BACKOFF_MAX_MS" => c.backoff_max_ms = number(&v)?,
                "INGEST_REGISTRY_HTTP_BREAKER_THRESHOLD" => c.breaker_threshold = small(&v)?,
                "INGEST_REGISTRY_HTTP_BREAKER_COOLDOWN_MS" => c.breaker_cooldown_ms = number(&v)?,
                "INGEST_REGISTRY_HTTP_CACHE_TTL_MS" => c.cache_ttl_ms = number(&v)?,
                _ => {
                    c.cache_size = usize::try_from(number(&v)?).map_err(|_| ConfigError::Env {
                        var: var.into(),
                        message: format!("`{v}` is too large"),
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Checks the backend choice and, when present, `[registry.http]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: &str| ConfigError::Invalid {
            field: field.into(),
            message: message.into(),
        };
        if self.backend == RegistryBackend::Http {
            if self.http.is_none() {
                return Err(invalid(
                    "registry.http",
                    "backend = \"http\" needs a [registry.http] section (or INGEST_REGISTRY_HTTP_URL)",
                ));
            }
            if self.demo_mode {
                return Err(invalid(
                    "registry.demo_mode",
                    "demo mode invents registrations in our own tables: only with backend = \"sql\"",
                ));
            }
        }
        match &self.http {
            Some(h) => h.validate(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn field_of(r: RegistryConfig) -> String {
        match r.validate() {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => format!("{other:?}"),
        }
    }

    fn loopback() -> HttpRegistryConfig {
        HttpRegistryConfig {
            url: "http://127.0.0.1:9/registry".into(),
            ..HttpRegistryConfig::default()
        }
    }

    #[test]
    fn sql_is_the_default_and_http_parses() {
        let c = Config::default();
        assert_eq!(c.registry.backend, RegistryBackend::Sql);
        assert!(c.registry.http.is_none());
        let cfg = Config::parse(
            "[registry]\nbackend = \"http\"\n[registry.http]\nurl = \"http://localhost:8443/\"\n\
             retries = 0\ncache_ttl_ms = 0\n",
            "t.toml",
        )
        .unwrap();
        cfg.validate().unwrap();
        let h = cfg.registry.http.as_ref().unwrap();
        assert_eq!(h.endpoint(), "http://localhost:8443/v1/vehicle-lookups");
        assert_eq!((h.retries, h.timeout_ms), (0, 3_000));
        let err = Config::parse("[registry]\nbackend = \"ldap\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ldap"), "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let with = |f: fn(&mut RegistryConfig)| {
            let mut r = RegistryConfig {
                backend: RegistryBackend::Http,
                http: Some(loopback()),
                ..RegistryConfig::default()
            };
            f(&mut r);
            field_of(r)
        };
        assert_eq!(with(|_| {}), "Ok(())");
        assert_eq!(with(|r| r.http = None), "registry.http");
        assert_eq!(with(|r| r.demo_mode = true), "registry.demo_mode");
        let h = |f: &dyn Fn(&mut HttpRegistryConfig)| {
            let mut c = loopback();
            f(&mut c);
            field_of(RegistryConfig {
                http: Some(c),
                ..RegistryConfig::default()
            })
        };
        assert_eq!(
            h(&|c| c.url = "http://gateway.example/".into()),
            "registry.http.url"
        );
        assert_eq!(
            h(&|c| c.url = "http://127.0.0.1:9/?x=1".into()),
            "registry.http.url"
        );
        assert_eq!(
            h(&|c| c.url = "https://gateway.example/".into()),
            "registry.http.client_cert"
        );
        assert_eq!(
            h(&|c| {
                c.url = "https://gateway.example/".into();
                c.client_cert = "/nonexistent/cert.pem".into();
            }),
            "registry.http.client_key"
        );
        assert_eq!(
            h(&|c| {
                c.url = "https://gateway.example/".into();
                c.client_cert = "/nonexistent/cert.pem".into();
                c.client_key = "/nonexistent/key.pem".into();
            }),
            "registry.http.client_cert"
        );
        assert_eq!(
            h(&|c| c.client_cert = "/x.pem".into()),
            "registry.http.client_cert"
        );
        assert_eq!(
            h(&|c| c.ca_file = "/nonexistent/ca.pem".into()),
            "registry.http.ca_file"
        );
        assert_eq!(
            h(&|c| c.system_id = "two words".into()),
            "registry.http.system_id"
        );
        assert_eq!(h(&|c| c.timeout_ms = 5), "registry.http.timeout_ms");
        assert_eq!(h(&|c| c.retries = 11), "registry.http.retries");
        assert_eq!(
            h(&|c| c.backoff_max_ms = 10),
            "registry.http.backoff_max_ms"
        );
        assert_eq!(
            h(&|c| c.breaker_threshold = 0),
            "registry.http.breaker_threshold"
        );
        assert_eq!(
            h(&|c| c.cache_ttl_ms = 3_600_000),
            "registry.http.cache_ttl_ms"
        );
    }

    #[test]
    fn env_overrides() {
        let mut c = Config::default();
        c.apply_env(|k| match k {
            "INGEST_REGISTRY_BACKEND" => Some("http".into()),
            "INGEST_REGISTRY_HTTP_URL" => Some("http://[::1]:8443".into()),
            "INGEST_REGISTRY_HTTP_RETRIES" => Some("4".into()),
            "INGEST_REGISTRY_HTTP_CACHE_SIZE" => Some("0".into()),
            _ => None,
        })
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.registry.backend, RegistryBackend::Http);
        let h = c.registry.http.as_ref().unwrap();
        assert_eq!((h.retries, h.cache_size), (4, 0));
        for (var, value) in [
            ("INGEST_REGISTRY_BACKEND", "ldap"),
            ("INGEST_REGISTRY_HTTP_TIMEOUT_MS", "soon"),
            ("INGEST_REGISTRY_HTTP_RETRIES", "99999999999"),
        ] {
            let err = c
                .apply_env(|k| (k == var).then(|| value.to_string()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(var), "{err}");
        }
    }
}
