//! `[mqtt]`: the embedded broker, or the external one (Mosquitto, EMQX)
//! that server replicas share, and how this server logs in to it.
//!
//! Kept beside the MQTT client rather than in `crate::config`, as
//! `evidence/config.rs` is, so the settings, their environment overrides
//! (`INGEST_MQTT_*`) and their checks live next to the code that uses them.
//! At city scale the replicas reach the broker over the IOC network, so the
//! connection can be TLS (`mqtts://`, the broker's certificate checked
//! against `ca_file`, optionally a client certificate) with a login whose
//! password comes from a file or the environment (a Kubernetes Secret),
//! never from a log line: its `Debug` form is redacted.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::evidence::config::Secret;

/// MQTT: the embedded broker, or an external one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Run the embedded broker (ignored when `url` is set).
    pub embedded: bool,
    /// Where the embedded broker listens (plain MQTT 3.1.1 / TCP).
    pub listen: SocketAddr,
    /// External broker, `mqtt://host:port` or `mqtts://host:port` (TLS);
    /// empty for the embedded one.
    pub url: String,
    /// Client id of this server (unique per replica).
    pub client_id: String,
    /// Shared-subscription group on an external broker (`$share/{group}/...`).
    pub share_group: String,
    /// Connections this server opens to an external broker, all members of
    /// the shared subscription (1–8; unset: [`DEFAULT_CONNECTIONS`]). Each
    /// gets its own window of unacknowledged messages from the broker, so
    /// more connections let larger batches commit at once (`mqtt::run`).
    /// The embedded broker takes one; see [`MqttConfig::connection_count`].
    pub connections: Option<usize>,
    /// Login on the external broker (optional).
    pub username: String,
    /// Its password inline (prefer `password_file` or
    /// `INGEST_MQTT_PASSWORD`); at most one of the two.
    pub password: Secret,
    /// A file whose first line is the password.
    pub password_file: String,
    /// CA certificate (PEM) the broker's certificate is checked against;
    /// required with `mqtts://`.
    pub ca_file: String,
    /// Client certificate and key (PEM) where the broker asks for one;
    /// both or neither.
    pub cert_file: String,
    /// See `cert_file`.
    pub key_file: String,
    /// Clients of the embedded broker must log in (devices with the MQTT
    /// secret issued at enrolment). On by default; `false` only for the
    /// load generator.
    pub embedded_auth: bool,
    /// The server's ack-signing key (default `{data_dir}/server-ed25519.key`,
    /// made on first start; see `src/server_key.rs`).
    pub server_key_file: Option<PathBuf>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            embedded: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            url: String::new(),
            client_id: "ingest-server".into(),
            share_group: "ingest".into(),
            connections: None,
            username: String::new(),
            password: Secret::default(),
            password_file: String::new(),
            ca_file: String::new(),
            cert_file: String::new(),
            key_file: String::new(),
            embedded_auth: true,
            server_key_file: None,
        }
    }
}

/// Connections to an external broker by default. More were measured and
/// gained nothing on a 2-core machine (README, *Measured*): there the rate
/// is bound by the CPU, not by the broker's window per connection.
pub const DEFAULT_CONNECTIONS: usize = 1;

/// Most connections one server opens: each buffers up to its broker's
/// window of messages (up to 16 MiB each) before they are handled.
pub const MAX_CONNECTIONS: usize = 8;

/// Where the external broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or address.
    pub host: String,
    /// Port (1883 for `mqtt://`, 8883 for `mqtts://` when not given).
    pub port: u16,
    /// `mqtts://`: TLS.
    pub tls: bool,
}

/// How this server connects to the external broker, files read.
#[derive(Clone)]
pub struct ExternalBroker {
    /// Where.
    pub url: BrokerUrl,
    /// Username and password, where configured.
    pub credentials: Option<(String, String)>,
    /// With `mqtts://`: the CA (PEM) and the client certificate and key.
    pub tls: Option<TlsFiles>,
}

/// PEM bytes for a TLS connection to the broker.
#[derive(Clone)]
pub struct TlsFiles {
    /// CA certificate(s) the broker's certificate must chain to.
    pub ca: Vec<u8>,
    /// Client certificate and key, where the broker wants one.
    pub client_auth: Option<(Vec<u8>, Vec<u8>)>,
}

/// `mqtt://host:port` (or `tcp://`), `mqtts://host:port` (or `ssl://`)
/// → where; empty → `None`.
pub fn parse_broker_url(url: &str) -> Result<Option<BrokerUrl>, String> {
    if url.is_empty() {
        return Ok(None);
    }
    let (rest, tls) = if let Some(r) = url
        .strip_prefix("mqtts://")
        .or_else(|| url.strip_prefix("ssl://"))
    {
        (r, true)
    } else if let Some(r) = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
    {
        (r, false)
    } else {
        return Err(format!(
            "`{url}`: expected mqtt://host:port or mqtts://host:port"
        ));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') => (
            h,
            p.parse::<u16>()
                .map_err(|e| format!("`{url}`: bad port ({e})"))?,
        ),
        _ => (rest, if tls { 8883 } else { 1883 }),
    };
    let host = host.trim_matches(['[', ']']);
    if host.is_empty() || host.contains(['/', '@', '?', '#']) {
        return Err(format!(
            "`{url}`: expected a host (no path, login or query)"
        ));
    }
    Ok(Some(BrokerUrl {
        host: host.to_owned(),
        port,
        tls,
    }))
}

fn invalid(field: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        field: format!("mqtt.{field}"),
        message,
    }
}

fn read(field: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| invalid(field, format!("cannot read `{path}`: {e}")))
}

impl MqttConfig {
    /// `INGEST_MQTT_LISTEN`, `INGEST_MQTT_URL`, `INGEST_MQTT_CLIENT_ID`,
    /// `INGEST_MQTT_SHARE_GROUP`, `INGEST_MQTT_CONNECTIONS`, `INGEST_MQTT_USERNAME`,
    /// `INGEST_MQTT_PASSWORD`, `INGEST_MQTT_PASSWORD_FILE`,
    /// `INGEST_MQTT_CA_FILE`, `INGEST_MQTT_CERT_FILE`,
    /// `INGEST_MQTT_KEY_FILE`, `INGEST_SERVER_KEY_FILE`.
    pub fn apply_env(&mut self, get: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("INGEST_MQTT_LISTEN") {
            self.listen = v.parse().map_err(|e| ConfigError::Env {
                var: "INGEST_MQTT_LISTEN".into(),
                message: format!("`{v}` is not an address:port ({e})"),
            })?;
        }
        if let Some(v) = get("INGEST_MQTT_CONNECTIONS") {
            self.connections = Some(v.trim().parse().map_err(|e| ConfigError::Env {
                var: "INGEST_MQTT_CONNECTIONS".into(),
                message: format!("`{v}` is not a count ({e})"),
            })?);
        }
        if let Some(v) = get("INGEST_MQTT_URL") {
            parse_broker_url(&v).map_err(|message| ConfigError::Env {
                var: "INGEST_MQTT_URL".into(),
                message,
            })?;
            self.url = v;
        }
        for (var, field) in [
            ("INGEST_MQTT_CLIENT_ID", &mut self.client_id),
            ("INGEST_MQTT_SHARE_GROUP", &mut self.share_group),
            ("INGEST_MQTT_USERNAME", &mut self.username),
            ("INGEST_MQTT_PASSWORD_FILE", &mut self.password_file),
            ("INGEST_MQTT_CA_FILE", &mut self.ca_file),
            ("INGEST_MQTT_CERT_FILE", &mut self.cert_file),
            ("INGEST_MQTT_KEY_FILE", &mut self.key_file),
        ] {
            if let Some(v) = get(var) {
                *field = v;
            }
        }
        if let Some(v) = get("INGEST_MQTT_PASSWORD") {
            self.password = Secret::new(v);
        }
        if let Some(v) = get("INGEST_SERVER_KEY_FILE") {
            self.server_key_file = Some(PathBuf::from(v));
        }
        Ok(())
    }

    /// Checks the section, reading the files it names (so a missing CA or
    /// password file stops the start here, with the field named).
    pub fn validate(&self) -> Result<(), ConfigError> {
        parse_broker_url(&self.url).map_err(|m| invalid("url", m))?;
        if protocol::topics::validate_id("share group", &self.share_group).is_err() {
            return Err(invalid("share_group", "1-64 of A-Z a-z 0-9 - _ .".into()));
        }
        if self.client_id.is_empty() {
            return Err(invalid("client_id", "must not be empty".into()));
        }
        match self.connections {
            Some(n) if !(1..=MAX_CONNECTIONS).contains(&n) => {
                return Err(invalid(
                    "connections",
                    format!("{n} is not within 1-{MAX_CONNECTIONS}"),
                ));
            }
            Some(n) if n > 1 && self.url.is_empty() => {
                return Err(invalid(
                    "connections",
                    format!(
                        "{n}: more than one needs an external broker (`url`); \
                         the embedded broker takes one"
                    ),
                ));
            }
            _ => {}
        }
        self.external().map(|_| ())
    }

    /// How many connections the server opens: one to the embedded broker,
    /// `connections` (or [`DEFAULT_CONNECTIONS`]) to an external one.
    ///
    /// Why one to rumqttd (0.20): its shared subscriptions are not safe to
    /// lean on. It has no topic ACLs, so any logged-in device could join
    /// the server's group under its fixed name and, by never acknowledging,
    /// stall the whole group (a round-robin turn waits on a full window);
    /// when a member disconnects with messages unacknowledged it rewinds
    /// the group for all members, and when the last one goes it can panic
    /// its router thread. A plain subscription, as devices cannot read
    /// anything but copies, avoids all of that; measured, four connections
    /// were within the noise of one there (`README.md`, *Measured*).
    pub fn connection_count(&self) -> usize {
        if self.url.is_empty() {
            1
        } else {
            self.connections.unwrap_or(DEFAULT_CONNECTIONS)
        }
    }

    /// The external broker and how to log in to it (files read), or `None`
    /// for the embedded one.
    pub fn external(&self) -> Result<Option<ExternalBroker>, ConfigError> {
        let url = parse_broker_url(&self.url).map_err(|m| invalid("url", m))?;
        let tls_fields = [&self.ca_file, &self.cert_file, &self.key_file];
        let Some(url) = url else {
            let login = !self.username.is_empty() || !self.password_file.is_empty();
            if login || tls_fields.iter().any(|f| !f.is_empty()) {
                return Err(invalid(
                    "url",
                    "login and TLS settings are for an external broker: set url too".into(),
                ));
            }
            return Ok(None);
        };
        let password = match (
            self.password.expose().is_empty(),
            self.password_file.is_empty(),
        ) {
            (_, true) => self.password.expose().to_owned(),
            (true, false) => {
                let text = read("password_file", &self.password_file)?;
                let text = String::from_utf8(text).map_err(|_| {
                    invalid(
                        "password_file",
                        format!("`{}` is not UTF-8", self.password_file),
                    )
                })?;
                text.lines().next().unwrap_or("").trim_end().to_owned()
            }
            (false, false) => {
                return Err(invalid(
                    "password_file",
                    "set either the file or the password (INGEST_MQTT_PASSWORD), not both".into(),
                ));
            }
        };
        if !password.is_empty() && self.username.is_empty() {
            return Err(invalid("username", "required with a password".into()));
        }
        let credentials = (!self.username.is_empty()).then(|| (self.username.clone(), password));
        let tls = if url.tls {
            if self.ca_file.is_empty() {
                return Err(invalid(
                    "ca_file",
                    "required with mqtts:// (the CA that signed the broker's certificate)".into(),
                ));
            }
            let client_auth = match (self.cert_file.is_empty(), self.key_file.is_empty()) {
                (true, true) => None,
                (false, false) => Some((
                    read("cert_file", &self.cert_file)?,
                    read("key_file", &self.key_file)?,
                )),
                _ => {
                    return Err(invalid(
                        "cert_file",
                        "cert_file and key_file go together".into(),
                    ));
                }
            };
            Some(TlsFiles {
                ca: read("ca_file", &self.ca_file)?,
                client_auth,
            })
        } else {
            if tls_fields.iter().any(|f| !f.is_empty()) {
                return Err(invalid(
                    "url",
                    "ca_file, cert_file and key_file need mqtts://".into(),
                ));
            }
            None
        };
        Ok(Some(ExternalBroker {
            url,
            credentials,
            tls,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(c: &MqttConfig) -> String {
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn urls() {
        let u = parse_broker_url("mqtts://broker.ioc:8884")
            .unwrap()
            .unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("broker.ioc", 8884, true));
        let u = parse_broker_url("mqtts://broker.ioc").unwrap().unwrap();
        assert_eq!((u.port, u.tls), (8883, true));
        let u = parse_broker_url("tcp://10.0.0.5").unwrap().unwrap();
        assert_eq!((u.port, u.tls), (1883, false));
        let u = parse_broker_url("mqtt://[::1]:1884").unwrap().unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1884));
        assert_eq!(parse_broker_url("").unwrap(), None);
        for bad in [
            "http://x",
            "mqtt://",
            "mqtt://h:99999",
            "mqtt://u@h:1883",
            "mqtt://h/x",
        ] {
            assert!(parse_broker_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_and_login_are_checked_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\nignored\n").unwrap();
        let base = MqttConfig {
            url: "mqtts://broker:8883".into(),
            username: "ingest-0".into(),
            ca_file: pem.display().to_string(),
            password_file: pw.display().to_string(),
            ..MqttConfig::default()
        };
        let ext = base.external().unwrap().unwrap();
        assert_eq!(
            ext.credentials,
            Some(("ingest-0".to_owned(), "s3cret".to_owned()))
        );
        assert!(ext.tls.unwrap().client_auth.is_none());

        let c = MqttConfig {
            ca_file: String::new(),
            ..base.clone()
        };
        assert!(err(&c).contains("mqtt.ca_file"), "{}", err(&c));
        let c = MqttConfig {
            ca_file: "/nonexistent/ca.pem".into(),
            ..base.clone()
        };
        assert!(err(&c).contains("mqtt.ca_file") && err(&c).contains("/nonexistent/ca.pem"));
        let c = MqttConfig {
            cert_file: pem.display().to_string(),
            ..base.clone()
        };
        assert!(err(&c).contains("mqtt.cert_file"), "{}", err(&c));
        let c = MqttConfig {
            password: Secret::new("inline"),
            ..base.clone()
        };
        assert!(err(&c).contains("not both"), "{}", err(&c));
        let c = MqttConfig {
            username: String::new(),
            ..base.clone()
        };
        assert!(err(&c).contains("mqtt.username"), "{}", err(&c));
        let c = MqttConfig {
            url: "mqtt://broker:1883".into(),
            ..base.clone()
        };
        assert!(err(&c).contains("need mqtts://"), "{}", err(&c));
        let c = MqttConfig {
            url: String::new(),
            ..base.clone()
        };
        assert!(err(&c).contains("external broker"), "{}", err(&c));
        // The password never shows in Debug output.
        let c = MqttConfig {
            password: Secret::new("hunter2"),
            ..MqttConfig::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn environment_overrides() {
        let mut c = MqttConfig::default();
        c.apply_env(&|k| match k {
            "INGEST_MQTT_URL" => Some("mqtts://b:8883".into()),
            "INGEST_MQTT_USERNAME" => Some("ingest-1".into()),
            "INGEST_MQTT_PASSWORD" => Some("pw".into()),
            "INGEST_MQTT_CA_FILE" => Some("/etc/ca.pem".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            (
                c.url.as_str(),
                c.username.as_str(),
                c.password.expose(),
                c.ca_file.as_str()
            ),
            ("mqtts://b:8883", "ingest-1", "pw", "/etc/ca.pem")
        );
        let e = c
            .apply_env(&|k| (k == "INGEST_MQTT_URL").then(|| "http://x".into()))
            .unwrap_err();
        assert!(e.to_string().contains("INGEST_MQTT_URL"), "{e}");
    }

    #[test]
    fn connections_are_a_bounded_count_for_an_external_broker() {
        let mut c = MqttConfig::default();
        assert_eq!(c.connection_count(), 1, "embedded");
        c.validate().unwrap();
        c.connections = Some(2);
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("mqtt.connections") && e.contains("external"),
            "{e}"
        );
        c.url = "mqtt://broker:1883".into();
        c.connections = None;
        assert_eq!(c.connection_count(), DEFAULT_CONNECTIONS);
        c.apply_env(&|k| (k == "INGEST_MQTT_CONNECTIONS").then(|| "8".into()))
            .unwrap();
        assert_eq!(c.connection_count(), 8);
        c.validate().unwrap();
        let e = c
            .apply_env(&|k| (k == "INGEST_MQTT_CONNECTIONS").then(|| "many".into()))
            .unwrap_err();
        assert!(e.to_string().contains("INGEST_MQTT_CONNECTIONS"), "{e}");
        for bad in [0, MAX_CONNECTIONS + 1] {
            c.connections = Some(bad);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("mqtt.connections"), "{e}");
        }
    }
}
