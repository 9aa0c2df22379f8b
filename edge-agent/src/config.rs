//! The agent's own configuration (one file per box): who the device is,
//! where it keeps its data, how it reaches the broker, how much the outbox
//! may hold, and how it reports health. Camera and site geometry live in the
//! per-camera site files ([`crate::site`]).
//!
//! TOML with environment overrides (`EDGE_DEVICE_ID`, `EDGE_SITE`,
//! `EDGE_DATA_DIR`, `EDGE_MQTT_URL`, `EDGE_MQTT_USERNAME`,
//! `EDGE_MQTT_PASSWORD`, `EDGE_SERVER_PUBLIC_KEYS`, `EDGE_METRICS_LISTEN`,
//! `EDGE_LOG_JSON`), validated once at start; errors name the file, line
//! and field.

use crate::outbox::OutboxLimits;
use crate::site::SiteError;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole agent configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The device.
    pub device: DeviceConfig,
    /// The broker.
    #[serde(default)]
    pub mqtt: MqttConfig,
    /// The server's keys, which its acks must be signed with.
    #[serde(default)]
    pub server: ServerConfig,
    /// The outbox bounds.
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// Heartbeat, metrics, logs.
    #[serde(default)]
    pub health: HealthConfig,
    /// Plate reading on violators.
    #[serde(default)]
    pub plates: PlatesConfig,
    /// The cameras this box analyses (`edge-agent run`).
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
}

/// Plate reading.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlatesConfig {
    /// `ppocr` (the general OCR baseline), `vn` (our own recogniser) or
    /// `none` (every plate left to the reviewers).
    pub recognizer: String,
    /// Post-processing workers (plate read on the violator, stills and
    /// clip from the evidence ring, signature, outbox), 1–8, each with its
    /// own plate reader. One keeps up with a junction's violations; more
    /// drain a burst sooner, before the bounded queue to them fills and
    /// violations are dropped.
    pub workers: usize,
}

/// Most post-processing workers.
pub const MAX_POST_WORKERS: usize = 8;

impl Default for PlatesConfig {
    fn default() -> Self {
        Self {
            recognizer: "ppocr".into(),
            workers: 2,
        }
    }
}

/// One camera.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Stream or file: `rtsp://…`, `file.mp4`, `v4l2:///dev/video0`, `http://…mjpeg`.
    pub source: String,
    /// Its site file (geometry, signals, rules; the camera id is in it).
    pub site: PathBuf,
    /// Vehicle detector: `yolox` or `motion`.
    #[serde(default = "default_detector")]
    pub detector: String,
    /// Inference threads for this camera's detector.
    #[serde(default = "one")]
    pub threads: usize,
    /// Pace a file at its own frame rate, as a camera would deliver it.
    #[serde(default)]
    pub realtime: bool,
    /// Analyse at most this many frames a second (e.g. 10 of a 25 fps
    /// stream), evenly by stream time; unset analyses every frame the box
    /// keeps up with. Frames not analysed still feed the evidence (clip).
    #[serde(default)]
    pub analysis_fps: Option<f64>,
    /// Tuning of the `motion` detector.
    #[serde(default)]
    pub motion: crate::detect::MotionConfig,
}

fn default_detector() -> String {
    "yolox".into()
}

fn one() -> usize {
    1
}

/// Who this box is and where it keeps state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Device id as enrolled at the server (1–64 of `A-Z a-z 0-9 - _ .`).
    pub id: String,
    /// Site id.
    pub site: String,
    /// Data directory: outbox database, spool, key.
    pub data_dir: PathBuf,
    /// The Ed25519 key file (default `<data_dir>/device.key`).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// Broker connection and delivery pacing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: String,
    /// Per-device credentials (with `password` or `password_file`).
    pub username: Option<String>,
    /// Password (prefer `password_file` or `EDGE_MQTT_PASSWORD`).
    pub password: Option<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// CA certificate (PEM) for `mqtts://`.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for TLS client authentication.
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM).
    pub key_file: Option<PathBuf>,
    /// MQTT keep-alive, seconds.
    pub keep_alive_s: u64,
    /// Most events and clips published and not yet acknowledged.
    pub window: usize,
    /// Resend what has not been acknowledged after this many seconds.
    pub ack_timeout_s: u64,
    /// Backlog events (queued before the current connection) sent per second
    /// at most, so live violations are not starved after an outage.
    pub backlog_per_s: f64,
    /// Reconnect backoff: first delay and ceiling, seconds (with jitter).
    pub reconnect_min_s: f64,
    /// Ceiling of the reconnect backoff.
    pub reconnect_max_s: f64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: "mqtt://127.0.0.1:1883".into(),
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            keep_alive_s: 30,
            window: 16,
            ack_timeout_s: 30,
            backlog_per_s: 50.0,
            reconnect_min_s: 0.5,
            reconnect_max_s: 30.0,
        }
    }
}

/// The ingest server as this box trusts it: only an ack signed by one of
/// these keys, for this device, marks anything delivered.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The server's Ed25519 public keys, 64 hex characters each (from
    /// `ingest-server key show` or the enrolment answer). Several for
    /// replicas with their own keys, or during a key rotation. Required
    /// unless `accept_unsigned_acks`.
    pub public_keys: Vec<String>,
    /// Lab use only: also believe acks that are not signed (a server older
    /// than signed acks) and, without `public_keys`, acks whose signature
    /// cannot be checked; each such ack is logged as a warning. Off: the
    /// agent refuses to deliver without a server key.
    pub accept_unsigned_acks: bool,
}

impl ServerConfig {
    /// The keys, parsed (each was checked at load).
    pub fn verifying_keys(&self) -> Result<Vec<protocol::VerifyingKey>, String> {
        self.public_keys
            .iter()
            .map(|k| parse_public_key(k))
            .collect()
    }
}

/// A 64-hex-character Ed25519 public key.
pub(crate) fn parse_public_key(text: &str) -> Result<protocol::VerifyingKey, String> {
    let bytes = hex::decode(text.trim()).map_err(|e| format!("{text:?} is not hex: {e}"))?;
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("{} bytes, expected 32 (64 hex characters)", bytes.len()))?;
    protocol::VerifyingKey::from_bytes(&arr).map_err(|e| format!("not an Ed25519 public key: {e}"))
}

/// Outbox bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Evidence held for undelivered events, MiB.
    pub max_mib: u64,
    /// Undelivered events.
    pub max_events: u64,
    /// Undelivered events older than this many days lose their evidence
    /// (clip and stills); the event itself is still sent.
    pub max_age_days: f64,
    /// Alarm at this fraction of a limit.
    pub alarm_fraction: f64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        let d = OutboxLimits::default();
        Self {
            max_mib: d.max_bytes / (1024 * 1024),
            max_events: d.max_events,
            max_age_days: d.max_age.as_secs_f64() / 86_400.0,
            alarm_fraction: d.alarm_fraction,
        }
    }
}

/// Largest outbox the configuration accepts, MiB (1 TiB).
pub const MAX_OUTBOX_MIB: u64 = 1 << 20;

impl OutboxConfig {
    /// As [`OutboxLimits`].
    pub fn limits(&self) -> OutboxLimits {
        OutboxLimits {
            max_bytes: self.max_mib.saturating_mul(1024 * 1024),
            max_events: self.max_events,
            max_age: Duration::from_secs_f64(self.max_age_days * 86_400.0),
            alarm_fraction: self.alarm_fraction,
        }
    }
}

/// Health reporting.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Heartbeat period, seconds.
    pub heartbeat_s: f64,
    /// Prometheus metrics listener (loopback by default; `""` disables).
    pub metrics_listen: String,
    /// Logs as JSON lines.
    pub log_json: bool,
    /// A live camera whose analysed frames show the same picture for this
    /// many seconds of its stream (a stuck encoder or ISP; a quiet scene's
    /// sensor noise alone is a change) raises the alarm `camera_frozen`
    /// (60–3600, default 300).
    pub camera_frozen_s: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            heartbeat_s: 30.0,
            metrics_listen: "127.0.0.1:9108".into(),
            log_json: false,
            camera_frozen_s: crate::detect::DEFAULT_FROZEN_AFTER_S,
        }
    }
}

impl HealthConfig {
    /// How long the same picture lasts before a camera is frozen.
    pub fn camera_frozen_after(&self) -> Duration {
        Duration::from_secs_f64(self.camera_frozen_s)
    }
}

impl AgentConfig {
    /// Reads, applies environment overrides, validates.
    pub fn load(path: &Path) -> Result<Self, SiteError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SiteError::Io {
            file: file.clone(),
            message: e.to_string(),
        })?;
        Self::from_toml_str(&text, &file, |k| std::env::var(k).ok())
    }

    /// Parses `text`, applies overrides from `env`, validates.
    pub fn from_toml_str(
        text: &str,
        file: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SiteError> {
        let mut c: AgentConfig =
            toml::from_str(text).map_err(|e| SiteError::from_toml(file, text, &e))?;
        let set = |v: &mut String, k: &str| {
            if let Some(x) = env(k) {
                *v = x;
            }
        };
        set(&mut c.device.id, "EDGE_DEVICE_ID");
        set(&mut c.device.site, "EDGE_SITE");
        set(&mut c.mqtt.url, "EDGE_MQTT_URL");
        set(&mut c.health.metrics_listen, "EDGE_METRICS_LISTEN");
        if let Some(d) = env("EDGE_DATA_DIR") {
            c.device.data_dir = d.into();
        }
        if let Some(u) = env("EDGE_MQTT_USERNAME") {
            c.mqtt.username = Some(u);
        }
        if let Some(p) = env("EDGE_MQTT_PASSWORD") {
            c.mqtt.password = Some(p);
        }
        if let Some(k) = env("EDGE_SERVER_PUBLIC_KEYS") {
            c.server.public_keys = k
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(j) = env("EDGE_LOG_JSON") {
            c.health.log_json = matches!(j.as_str(), "1" | "true" | "yes");
        }
        c.validate()
            .map_err(|(field, message)| SiteError::semantic(file, text, field, message))?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, m: String| Err((f.to_owned(), m));
        if let Some(p) = protocol::topics::id_problem(&self.device.id) {
            return bad("device.id", p);
        }
        if let Some(p) = protocol::topics::id_problem(&self.device.site) {
            return bad("device.site", p);
        }
        if let Err(m) = self.mqtt.endpoint() {
            return bad("mqtt.url", m);
        }
        if self.mqtt.password.is_some() && self.mqtt.password_file.is_some() {
            return bad(
                "mqtt.password",
                "give password or password_file, not both".into(),
            );
        }
        if self.mqtt.cert_file.is_some() != self.mqtt.key_file.is_some() {
            return bad(
                "mqtt.cert_file",
                "cert_file and key_file go together".into(),
            );
        }
        if !(5..=3600).contains(&self.mqtt.keep_alive_s) {
            return bad("mqtt.keep_alive_s", "must be within 5..=3600".into());
        }
        if !(1..=1000).contains(&self.mqtt.window) {
            return bad("mqtt.window", "must be within 1..=1000".into());
        }
        if !(1..=86_400).contains(&self.mqtt.ack_timeout_s) {
            return bad("mqtt.ack_timeout_s", "must be within 1..=86400".into());
        }
        // Upper bounds as well as lower ones: TOML reads `inf`, and a
        // duration made of an absurd number of seconds panics.
        if !(self.mqtt.backlog_per_s.is_finite()
            && (0.01..=100_000.0).contains(&self.mqtt.backlog_per_s))
        {
            return bad("mqtt.backlog_per_s", "must be within 0.01..=100000".into());
        }
        if !(self.mqtt.reconnect_min_s > 0.0
            && self.mqtt.reconnect_max_s >= self.mqtt.reconnect_min_s
            && self.mqtt.reconnect_max_s <= 3600.0)
        {
            return bad(
                "mqtt.reconnect_min_s",
                "need 0 < reconnect_min_s <= reconnect_max_s <= 3600".into(),
            );
        }
        for (i, k) in self.server.public_keys.iter().enumerate() {
            if let Err(m) = parse_public_key(k) {
                return bad(&format!("server.public_keys[{i}]"), m);
            }
        }
        if !(1..=MAX_OUTBOX_MIB).contains(&self.outbox.max_mib) {
            return bad(
                "outbox.max_mib",
                format!("must be within 1..={MAX_OUTBOX_MIB}"),
            );
        }
        if self.outbox.max_events == 0 {
            return bad("outbox.max_events", "must be positive".into());
        }
        if !(self.outbox.max_age_days.is_finite()
            && self.outbox.max_age_days > 0.0
            && self.outbox.max_age_days <= 3650.0)
        {
            return bad("outbox.max_age_days", "must be within (0, 3650]".into());
        }
        if !(self.outbox.alarm_fraction > 0.0 && self.outbox.alarm_fraction < 1.0) {
            return bad("outbox.alarm_fraction", "must be within (0, 1)".into());
        }
        if !(self.health.heartbeat_s.is_finite()
            && (0.2..=3600.0).contains(&self.health.heartbeat_s))
        {
            return bad("health.heartbeat_s", "must be within 0.2..=3600".into());
        }
        if !(self.health.camera_frozen_s.is_finite()
            && (60.0..=3600.0).contains(&self.health.camera_frozen_s))
        {
            return bad("health.camera_frozen_s", "must be within 60..=3600".into());
        }
        if !["ppocr", "vn", "none"].contains(&self.plates.recognizer.as_str()) {
            return bad(
                "plates.recognizer",
                format!("{:?}: expected ppocr, vn or none", self.plates.recognizer),
            );
        }
        if !(1..=MAX_POST_WORKERS).contains(&self.plates.workers) {
            return bad(
                "plates.workers",
                format!("{} is not within 1-{MAX_POST_WORKERS}", self.plates.workers),
            );
        }
        for (i, c) in self.cameras.iter().enumerate() {
            if self.cameras[..i].iter().any(|o| o.site == c.site) {
                return bad(
                    &format!("cameras[{i}].site"),
                    format!("{} is another camera's site file too", c.site.display()),
                );
            }
            if !["yolox", "motion"].contains(&c.detector.as_str()) {
                return bad(
                    &format!("cameras[{i}].detector"),
                    format!("{:?}: expected yolox or motion", c.detector),
                );
            }
            if !(1..=16).contains(&c.threads) {
                return bad(
                    &format!("cameras[{i}].threads"),
                    "must be within 1..=16".into(),
                );
            }
            if c.source.trim().is_empty() {
                return bad(&format!("cameras[{i}].source"), "empty".into());
            }
            if let Some(f) = c.analysis_fps
                && !(f.is_finite() && (1.0..=60.0).contains(&f))
            {
                return bad(
                    &format!("cameras[{i}].analysis_fps"),
                    format!("{f}: must be within 1..=60"),
                );
            }
        }
        if self.cameras.len() > protocol::validate::MAX_CAMERAS {
            return bad(
                "cameras",
                format!(
                    "at most {} cameras per box",
                    protocol::validate::MAX_CAMERAS
                ),
            );
        }
        if !self.health.metrics_listen.is_empty()
            && self.health.metrics_listen.parse::<SocketAddr>().is_err()
        {
            return bad(
                "health.metrics_listen",
                format!("{:?} is not host:port", self.health.metrics_listen),
            );
        }
        Ok(())
    }

    /// The key file.
    pub fn key_file(&self) -> PathBuf {
        self.device
            .key_file
            .clone()
            .unwrap_or_else(|| self.device.data_dir.join("device.key"))
    }

    /// The outbox database.
    pub fn outbox_db(&self) -> PathBuf {
        self.device.data_dir.join("outbox.sqlite")
    }

    /// The evidence spool.
    pub fn spool_dir(&self) -> PathBuf {
        self.device.data_dir.join("spool")
    }
}

impl MqttConfig {
    /// `(tls, host, port)` from the URL.
    pub fn endpoint(&self) -> Result<(bool, String, u16), String> {
        let (tls, rest) = if let Some(r) = self.url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = self.url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(format!(
                "{:?}: expected mqtt://host:port or mqtts://host:port",
                self.url
            ));
        };
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{:?}: no port", self.url))?;
        let port: u16 = port
            .trim_end_matches('/')
            .parse()
            .map_err(|_| format!("{:?}: bad port", self.url))?;
        if host.is_empty() || port == 0 {
            return Err(format!("{:?}: empty host or port 0", self.url));
        }
        if tls && self.ca_file.is_none() {
            return Err("mqtts:// needs ca_file".into());
        }
        Ok((tls, host.to_owned(), port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[device]
id = "hn-cg-edge-01"
site = "hn-caugiay"
data_dir = "/tmp/x"

[mqtt]
url = "mqtt://127.0.0.1:1883"
window = 8
"#;

    #[test]
    fn good_file_with_env_overrides() {
        let c = AgentConfig::from_toml_str(GOOD, "agent.toml", |k| match k {
            "EDGE_MQTT_URL" => Some("mqtt://10.0.0.2:8883".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.mqtt.endpoint().unwrap(), (false, "10.0.0.2".into(), 8883));
        assert_eq!(c.mqtt.window, 8);
        assert_eq!(c.key_file(), PathBuf::from("/tmp/x/device.key"));
    }

    #[test]
    fn the_documented_example_is_valid() {
        let text = include_str!("../examples/agent.toml");
        let c = AgentConfig::from_toml_str(text, "examples/agent.toml", |_| None).unwrap();
        assert!(c.mqtt.endpoint().unwrap().0, "mqtts");
        assert_eq!(c.outbox.limits(), OutboxLimits::default());
        assert_eq!(c.health.camera_frozen_after(), Duration::from_secs(300));
    }

    #[test]
    fn server_keys_from_file_or_environment_and_checked() {
        let key = "fd1724385aa0c75b64fb78cd602fa1d991fdebf76b13c58ed702eac835e9f618";
        let text = format!("{GOOD}\n[server]\npublic_keys = [\"{key}\"]\n");
        let c = AgentConfig::from_toml_str(&text, "agent.toml", |_| None).unwrap();
        assert_eq!(c.server.verifying_keys().unwrap().len(), 1);
        assert!(!c.server.accept_unsigned_acks);
        let c = AgentConfig::from_toml_str(GOOD, "agent.toml", |k| {
            (k == "EDGE_SERVER_PUBLIC_KEYS").then(|| format!("{key}, {key}"))
        })
        .unwrap();
        assert_eq!(c.server.public_keys.len(), 2);
        let bad = format!("{GOOD}\n[server]\npublic_keys = [\"{key}\", \"abcd\"]\n");
        let err = AgentConfig::from_toml_str(&bad, "agent.toml", |_| None).unwrap_err();
        assert!(err.to_string().contains("server.public_keys[1]"), "{err}");
    }

    #[test]
    fn analysis_rate_is_checked() {
        let cam = |fps: &str| {
            format!("{GOOD}\n[[cameras]]\nsource = \"a.mp4\"\nsite = \"s.toml\"\n{fps}\n")
        };
        let c =
            AgentConfig::from_toml_str(&cam("analysis_fps = 10"), "agent.toml", |_| None).unwrap();
        assert_eq!(c.cameras[0].analysis_fps, Some(10.0));
        let c = AgentConfig::from_toml_str(&cam(""), "agent.toml", |_| None).unwrap();
        assert_eq!(c.cameras[0].analysis_fps, None);
        for bad in [
            "analysis_fps = 0.5",
            "analysis_fps = 100",
            "analysis_fps = nan",
        ] {
            let err = AgentConfig::from_toml_str(&cam(bad), "agent.toml", |_| None).unwrap_err();
            assert!(
                err.to_string().contains("cameras[0].analysis_fps"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn bad_files_name_line_and_field() {
        let cases = [
            (GOOD.replace("window = 8", "window = 0"), "mqtt.window"),
            // A huge timeout wrapped when made milliseconds.
            (
                GOOD.replace(
                    "window = 8",
                    "window = 8\nack_timeout_s = 18446744073709552",
                ),
                "mqtt.ack_timeout_s",
            ),
            (GOOD.replace("mqtt://127.0.0.1:1883", "tcp://x"), "mqtt.url"),
            (GOOD.replace("hn-cg-edge-01", "a/b"), "device.id"),
            (GOOD.replace("window = 8", "windwo = 8"), "windwo"),
            (GOOD.replace("window = 8", "window = \"x\""), "window"),
            (format!("{GOOD}\n[plates]\nworkers = 0\n"), "plates.workers"),
            (format!("{GOOD}\n[plates]\nworkers = 9\n"), "plates.workers"),
            // TOML reads `inf`; each would panic when made a duration.
            (
                format!("{GOOD}\n[health]\nheartbeat_s = inf\n"),
                "health.heartbeat_s",
            ),
            (
                format!("{GOOD}\n[health]\ncamera_frozen_s = 30\n"),
                "health.camera_frozen_s",
            ),
            (
                format!("{GOOD}\n[health]\ncamera_frozen_s = inf\n"),
                "health.camera_frozen_s",
            ),
            (
                format!("{GOOD}\n[outbox]\nmax_age_days = inf\n"),
                "outbox.max_age_days",
            ),
            (
                format!("{GOOD}\n[outbox]\nmax_mib = 17592186044416\n"),
                "outbox.max_mib",
            ),
            (
                GOOD.replace(
                    "window = 8",
                    "window = 8\nreconnect_min_s = inf\nreconnect_max_s = inf",
                ),
                "mqtt.reconnect_min_s",
            ),
            (
                GOOD.replace("window = 8", "window = 8\nbacklog_per_s = inf"),
                "mqtt.backlog_per_s",
            ),
            (
                format!(
                    "{GOOD}\n[[cameras]]\nsource = \"a.mp4\"\nsite = \"s.toml\"\n[[cameras]]\nsource = \"b.mp4\"\nsite = \"s.toml\"\n"
                ),
                "cameras[1].site",
            ),
        ];
        for (text, needle) in cases {
            let err = AgentConfig::from_toml_str(&text, "agent.toml", |_| None).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("agent.toml:"), "{msg}");
            assert!(msg.contains(needle), "{msg} should mention {needle}");
        }
    }
}
