//! What the fault tests (`faults_*.rs`) share: a Mosquitto and a
//! PostgreSQL that can be stopped and started again on the same port and
//! data, `ingest-server` processes that can be SIGKILLed and restarted,
//! edge devices (configuration, enrolment, outbox and metrics read through
//! the `edge-agent` CLI and `/metrics`), signed events made straight into an
//! edge's outbox, and the server's public API read back.
//!
//! The broker and the database are `e2e_tests::{mosquitto, postgres}`'s,
//! under the names the fault tests use.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::{Proc, binary, free_port, http_request, start_logged, tail};
use serde_json::{Value, json};

/// The admin API's bearer token in every fault test.
pub const TOKEN: &str = "fault-admin-token-0123456789";
/// The password of the console accounts the tests make.
pub const STAFF_PASSWORD: &str = "fault staff password 0123";
/// The site of every device.
pub const SITE: &str = "fault-site";

/// Seconds since `t0`, for progress lines.
pub fn elapsed(t0: Instant) -> String {
    format!("{:.1} s", t0.elapsed().as_secs_f64())
}

/// Prints the tail of every log when the test fails.
#[derive(Default)]
pub struct Logs(Vec<(String, PathBuf)>);

impl Logs {
    /// Registers `path` under `name`; returns it.
    pub fn add(&mut self, name: &str, path: &Path) -> PathBuf {
        self.0.push((name.to_string(), path.to_path_buf()));
        path.to_path_buf()
    }
}

impl Drop for Logs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, path) in &self.0 {
                eprintln!("----- {name} ({}):\n{}", path.display(), tail(path, 40));
            }
        }
    }
}

// ------------------------------------------------ Mosquitto and PostgreSQL

/// A Mosquitto on a fixed loopback port that can be killed
/// ([`Broker::kill`]) and started again there ([`Broker::up`]); no
/// persistence, so what it held when killed is gone.
#[allow(unused_imports)] // not every fault test starts one
pub use e2e_tests::mosquitto::Mosquitto as Broker;
/// A PostgreSQL on a fixed loopback port and data directory, which can be
/// stopped ([`Pg::down`]) and started again ([`Pg::up`]) on both.
#[allow(unused_imports)] // not every fault test starts one
pub use e2e_tests::postgres::Postgres as Pg;

// ------------------------------------------------------------ ingest-server

/// An `ingest-server` on a fixed HTTP port that can be SIGKILLed and started
/// again with the same settings.
pub struct Server {
    /// Its name in logs and messages.
    pub name: String,
    /// Its HTTP address.
    pub addr: SocketAddr,
    env: Vec<(String, String)>,
    dir: PathBuf,
    proc: Option<Proc>,
    starts: u32,
}

impl Server {
    /// Settings for a server named `name` (not started): data directory
    /// `dir/server` (shared by replicas), the admin token, and `extra`
    /// environment (the broker, the database).
    pub fn new(name: &str, dir: &Path, extra: &[(&str, String)]) -> Server {
        let port = free_port();
        let mut env: Vec<(String, String)> = vec![
            (
                "INGEST_DATA_DIR".into(),
                dir.join("server").display().to_string(),
            ),
            ("INGEST_ADMIN_TOKEN".into(), TOKEN.into()),
            ("INGEST_HTTP_LISTEN".into(), format!("127.0.0.1:{port}")),
            ("RUST_LOG".into(), "info,rumqttd=warn".into()),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        Server {
            name: name.to_string(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            env,
            dir: dir.to_path_buf(),
            proc: None,
            starts: 0,
        }
    }

    /// Starts it and waits until it serves HTTP.
    pub fn up(&mut self, logs: &mut Logs) {
        assert!(self.proc.is_none(), "{} is already running", self.name);
        self.starts += 1;
        let log = logs.add(
            &format!("{} (run {})", self.name, self.starts),
            &self.dir.join(format!("{}-{}.log", self.name, self.starts)),
        );
        let mut cmd = Command::new(binary("ingest-server"));
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let (proc, _) = start_logged(cmd, "listening on http://", &log, Duration::from_secs(60));
        self.proc = Some(proc);
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    /// Whether the process is running.
    pub fn running(&mut self) -> bool {
        self.proc
            .as_mut()
            .is_some_and(|p| p.child.try_wait().ok().flatten().is_none())
    }

    /// The CLI with this server's settings (the password on stdin when
    /// given); its standard output. Fails the test when it fails.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> String {
        use std::io::Write;
        let mut child = Command::new(binary("ingest-server"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ingest-server");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            writeln!(input, "{s}").expect("write stdin");
        }
        drop(input);
        let out = child.wait_with_output().expect("ingest-server output");
        assert!(
            out.status.success(),
            "ingest-server {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// An admin API call: (status, JSON body or Null).
    pub fn api(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let text = body.map(|b| b.to_string());
        match http_request(self.addr, method, path, Some(TOKEN), text.as_deref()) {
            Ok((status, body)) => (status, serde_json::from_str(&body).unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    }

    /// `GET /api/v1/cases/{id}`: the case, or `None` when absent.
    pub fn case(&self, id: &str) -> Option<Value> {
        let (status, body) = self.api("GET", &format!("/api/v1/cases/{id}"), None);
        match status {
            200 => Some(body),
            404 => None,
            other => panic!("case {id} on {}: HTTP {other} {body}", self.name),
        }
    }

    /// `GET /api/v1/quarantine`.
    pub fn quarantine(&self) -> Vec<Value> {
        let (status, body) = self.api("GET", "/api/v1/quarantine?limit=1000", None);
        assert_eq!(status, 200, "quarantine on {}: {body}", self.name);
        body.as_array().cloned().unwrap_or_default()
    }

    /// `GET /readyz`'s status (0: no answer).
    pub fn ready_status(&self) -> u16 {
        http_request(self.addr, "GET", "/readyz", None, None)
            .map(|(s, _)| s)
            .unwrap_or(0)
    }

    /// A Prometheus counter or gauge (the whole series name, labels
    /// included); 0 when absent.
    pub fn metric(&self, series: &str) -> u64 {
        let text = http_request(self.addr, "GET", "/metrics", None, None)
            .map(|(_, b)| b)
            .unwrap_or_default();
        metric_value(&text, series)
    }

    /// Enrols `key_hex` as `device` through the admin API; the answer
    /// (with the device's broker login and the server's ack keys, where
    /// the server issues them).
    pub fn enrol(&self, device: &str, key_hex: &str) -> Value {
        let (status, body) = self.api(
            "POST",
            "/api/v1/devices",
            Some(&json!({"device_id": device, "site": SITE, "public_key": key_hex})),
        );
        assert_eq!(status, 201, "enrol {device} at {}: {body}", self.name);
        body
    }

    /// Evidence `sha256` through the API: (status, bytes as a string).
    pub fn evidence_ok(&self, sha256: &str, expected: &[u8]) -> bool {
        // The body is binary: read it raw.
        use std::io::{Read, Write};
        let Ok(mut s) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = write!(
            s,
            "GET /api/v1/evidence/{sha256} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            return false;
        };
        let head = String::from_utf8_lossy(&raw[..at]);
        let body = &raw[at + 4..];
        // Chunked bodies are not what axum sends for a fixed-size body.
        head.starts_with("HTTP/1.1 200") && body == expected && protocol::sha256_hex(body) == sha256
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The value of `series` (name with labels) in Prometheus text; 0 when
/// absent.
pub fn metric_value(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

/// Signs in to the console as `user` (made with the CLI) and counts every
/// case in its "all cases" list (the only count of cases the server
/// publishes).
pub fn console_case_count(server: &Server, user: &str) -> usize {
    let base = format!("http://{}", server.addr);
    let mut b = e2e_tests::web::Browser::new();
    let r = b.post_form(
        &format!("{base}/console/login"),
        &[("username", user), ("password", STAFF_PASSWORD)],
    );
    assert_eq!(r.status, 303, "{user} signs in: {}", r.body);
    let page = b.get(&format!("{base}/console/cases"));
    assert_eq!(page.status, 200, "{}", page.body);
    let at = page.body.find("<h1>").expect("a heading");
    let h1 = &page.body[at..at + page.body[at..].find("</h1>").expect("</h1>")];
    let open = h1.find('(').expect("a count in the heading");
    let close = open + h1[open..].find(')').expect(")");
    h1[open + 1..close].trim().parse().expect("a number")
}

/// Makes console account `user` (auditor) with the CLI.
pub fn add_auditor(server: &Server, user: &str) {
    server.cli(
        &[
            "user",
            "add",
            "--username",
            user,
            "--display-name",
            "Kiểm toán lỗi",
            "--role",
            "auditor",
        ],
        Some(STAFF_PASSWORD),
    );
}

// --------------------------------------------------------------------- edge

/// An edge device: its configuration and data, and `edge-agent run` or
/// `deliver` when started.
pub struct Edge {
    /// Device id.
    pub id: String,
    /// Its configuration file.
    pub config: PathBuf,
    /// Its data directory (outbox, spool, key).
    pub data: PathBuf,
    /// Its `/metrics` address.
    pub metrics: SocketAddr,
    dir: PathBuf,
    proc: Option<Proc>,
    starts: u32,
}

/// What an edge's configuration says beyond the device and the broker.
pub struct EdgeOptions<'a> {
    /// `[[cameras]]` (source, site file), for `run`.
    pub camera: Option<(&'a str, &'a Path)>,
    /// Resend what is not acknowledged after this long.
    pub ack_timeout_s: u64,
    /// Backlog events sent per second at most.
    pub backlog_per_s: f64,
}

impl Default for EdgeOptions<'_> {
    fn default() -> Self {
        EdgeOptions {
            camera: None,
            ack_timeout_s: 5,
            backlog_per_s: 50.0,
        }
    }
}

impl Edge {
    /// Writes the configuration of `device` (under `dir`), makes its key
    /// with `edge-agent enroll` and enrols it at `server`.
    pub fn new(dir: &Path, device: &str, broker: &str, opts: EdgeOptions, server: &Server) -> Edge {
        let config = dir.join(format!("{device}.toml"));
        let data = dir.join(device);
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut text = format!(
            "[device]\nid = \"{device}\"\nsite = \"{SITE}\"\ndata_dir = \"{data}\"\n\n\
             [mqtt]\nurl = \"{broker}\"\nack_timeout_s = {ack}\nreconnect_max_s = 1.0\n\
             backlog_per_s = {backlog:.1}\n\n\
             [health]\nheartbeat_s = 1\nmetrics_listen = \"{metrics}\"\n\n\
             [plates]\nrecognizer = \"none\"\n",
            data = data.display(),
            ack = opts.ack_timeout_s,
            backlog = opts.backlog_per_s,
        );
        if let Some((source, site)) = opts.camera {
            text.push_str(&format!(
                "\n[[cameras]]\nsource = \"{source}\"\nsite = \"{site}\"\ndetector = \"motion\"\n\
                 [cameras.motion]\nanalysis_width = 640\nmin_area = 1500.0\nhistory = 5000\n\
                 learning_rate = 0.0003\n",
                site = site.display()
            ));
        }
        std::fs::write(&config, &text).expect("write the edge configuration");
        let out = Command::new(binary("edge-agent"))
            .args(["enroll", "--config"])
            .arg(&config)
            .output()
            .expect("edge-agent enroll");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let enrol: Value = serde_json::from_slice(&out.stdout).expect("enroll JSON");
        let answer = server.enrol(device, enrol["public_key"].as_str().expect("a public key"));
        // The broker login and the keys acks are signed with, as the
        // enrolment answer gives them.
        let mut mqtt = String::new();
        if let (Some(user), Some(password)) = (
            answer["mqtt_username"].as_str(),
            answer["mqtt_password"].as_str(),
        ) {
            mqtt = format!("username = \"{user}\"\npassword = \"{password}\"\n");
        }
        let keys: Vec<String> = answer["server_public_keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k.as_str().map(|k| format!("\"{k}\"")))
            .collect();
        if !keys.is_empty() {
            text.push_str(&format!(
                "\n[server]\npublic_keys = [{}]\n",
                keys.join(", ")
            ));
        }
        let text = text.replacen("[mqtt]\n", &format!("[mqtt]\n{mqtt}"), 1);
        std::fs::write(&config, text).expect("write the edge configuration");
        Edge {
            id: device.to_string(),
            config,
            data,
            metrics,
            dir: dir.to_path_buf(),
            proc: None,
            starts: 0,
        }
    }

    /// The device's signing key (made by `enroll`).
    pub fn key(&self) -> protocol::SigningKey {
        let (identity, _) = edge_agent::identity::DeviceIdentity::load_or_create(
            &self.id,
            SITE,
            &self.data.join("device.key"),
        )
        .expect("the device key");
        identity.signing_key().clone()
    }

    /// Starts `edge-agent <command>` (`run` or `deliver`); its log is
    /// `<device>-<n>.log`, returned.
    pub fn up(&mut self, command: &str, logs: &mut Logs) -> PathBuf {
        assert!(self.proc.is_none(), "{} is already running", self.id);
        self.starts += 1;
        let log = logs.add(
            &format!("{} (run {})", self.id, self.starts),
            &self.dir.join(format!("{}-{}.log", self.id, self.starts)),
        );
        let child = Command::new(binary("edge-agent"))
            .args([command, "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("edge log"))
            .spawn()
            .expect("start edge-agent");
        self.proc = Some(Proc { child });
        log
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.proc
            .as_mut()
            .is_some_and(|p| p.child.try_wait().ok().flatten().is_none())
    }

    /// `edge-agent outbox`: counts and the 20 most recent rows.
    pub fn outbox(&self) -> Value {
        let out = Command::new(binary("edge-agent"))
            .args(["outbox", "--config"])
            .arg(&self.config)
            .output()
            .expect("edge-agent outbox");
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// The outbox's rows among the 20 most recent: (event id, state, done).
    pub fn rows(&self) -> Vec<(String, String, bool)> {
        self.outbox()["recent"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r["event_id"].as_str().unwrap_or_default().to_string(),
                    r["state"].as_str().unwrap_or_default().to_string(),
                    r["done"] == true,
                )
            })
            .collect()
    }

    /// Its `/metrics` text (empty when it does not answer).
    pub fn metrics_text(&self) -> String {
        http_request(self.metrics, "GET", "/metrics", None, None)
            .map(|(_, b)| b)
            .unwrap_or_default()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The event ids an edge's log says it queued (`violation queued`), in
/// order, over all of `logs`.
pub fn queued_in_logs(logs: &[PathBuf]) -> Vec<String> {
    let mut ids = Vec::new();
    for log in logs {
        let text = strip_ansi(&std::fs::read_to_string(log).unwrap_or_default());
        for line in text.lines().filter(|l| l.contains("violation queued")) {
            // tracing's text format: `... event_id=<uuid> plate=...`
            if let Some(id) = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("event_id="))
            {
                ids.push(id.trim_matches('"').to_string());
            }
        }
    }
    ids
}

/// `text` without ANSI colour sequences (`ESC [ ... m`), which the logs
/// carry even when written to a file.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ------------------------------------------------- events made in an outbox

/// The evidence of one made event: the stills and the clip, by name.
pub struct Made {
    /// Event id.
    pub id: String,
    /// (name, bytes) of each evidence file.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Makes `n` signed red-light events of `edge` (three stills and a clip of
/// `clip_len` bytes each, distinct content) and queues them in its outbox,
/// as the edge's post-processing does (`edge_agent::report`); returns them.
pub fn fill_outbox(edge: &Edge, n: usize, clip_len: usize) -> Vec<Made> {
    use protocol::{
        ClockSync, EvidenceItem, EvidenceRole, Plate, PlateColour, SchemaVersion,
        SignalObservation, SignalState, TrackPoint, TrackSummary, VehicleClass, ViolationEvent,
        ViolationType,
    };
    let cfg = edge_agent::config::AgentConfig::load(&edge.config).expect("the edge config");
    let identity = edge_agent::identity::DeviceIdentity::with_key(&edge.id, SITE, edge.key());
    let mut outbox = edge_agent::outbox::Outbox::open(&cfg.outbox_db(), cfg.outbox.limits())
        .expect("the edge outbox");
    let spool = cfg.spool_dir();
    let mut made = Vec::new();
    for k in 0..n {
        let id = uuid_v4();
        let dir = spool.join(id.to_string());
        std::fs::create_dir_all(&dir).expect("spool directory");
        let roles = [
            ("overview.jpg", "image/jpeg", EvidenceRole::Overview, 20_000),
            (
                "vehicle.jpg",
                "image/jpeg",
                EvidenceRole::VehicleCrop,
                6_000,
            ),
            ("plate.jpg", "image/jpeg", EvidenceRole::PlateCrop, 1_500),
            ("clip.mp4", "video/mp4", EvidenceRole::Clip, clip_len),
        ];
        let mut files = Vec::new();
        let mut items = Vec::new();
        for (j, (name, media, role, len)) in roles.into_iter().enumerate() {
            let mut bytes: Vec<u8> = (0..len)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(j as u8 * 17))
                .collect();
            bytes[..16].copy_from_slice(id.as_bytes());
            std::fs::write(dir.join(name), &bytes).expect("write evidence");
            items.push(EvidenceItem::from_bytes(name, media, role, &bytes));
            files.push((name.to_string(), bytes));
        }
        let now = time::OffsetDateTime::now_utc()
            .to_offset(time::macros::offset!(+7))
            .replace_nanosecond(0)
            .expect("a time");
        let event = ViolationEvent {
            schema_version: SchemaVersion::CURRENT,
            event_id: id,
            device_id: edge.id.clone(),
            camera_id: "cam-fault".into(),
            site: SITE.into(),
            event_time: now - time::Duration::seconds(5),
            clock: ClockSync::synced(0, "ntp:fault-test"),
            violation_type: ViolationType::RedLight,
            vehicle_class: VehicleClass::Car,
            plate: Plate::unreadable(PlateColour::Unknown),
            speed: None,
            signal: Some(SignalObservation {
                state: SignalState::Red,
                red_for_ms: Some(3000),
            }),
            track: TrackSummary {
                track_id: k as u64 + 1,
                first_seen: now - time::Duration::seconds(7),
                last_seen: now - time::Duration::seconds(5),
                frame_count: 20,
                points: vec![TrackPoint {
                    frame: 1,
                    x: 10,
                    y: 20,
                }],
                riders: None,
            },
            evidence: items,
            software_version: "fault-test".into(),
            site_config_sha256: None,
        };
        edge_agent::report::sign_and_queue(&identity, &mut outbox, &event, &dir)
            .expect("queue the event");
        made.push(Made {
            id: id.to_string(),
            files,
        });
    }
    made
}

/// A random (version 4) UUID.
pub fn uuid_v4() -> uuid::Uuid {
    uuid::Uuid::new_v4()
}
