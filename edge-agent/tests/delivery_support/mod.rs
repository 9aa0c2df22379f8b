//! Shared by the outbox and delivery tests: violations with real-sized
//! evidence in a spool directory, signed by a device key; a Mosquitto
//! broker started on a free loopback port; and a test "server" that
//! subscribes to the events topic, verifies and deduplicates like the real
//! ingest server does, and answers with acks signed by the test server key
//! ([`server_key`]), which [`agent_config`] tells the agent to trust.

#![allow(dead_code)]

use edge_agent::identity::DeviceIdentity;
use protocol::{
    Ack, ClockSync, EvidenceItem, EvidenceRole, Plate, PlateColour, SchemaVersion, SignedEvent,
    TrackPoint, TrackSummary, VehicleClass, ViolationEvent, ViolationType,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

pub const SITE: &str = "hn-test-site";
pub const DEVICE: &str = "hn-test-edge-01";

/// Deterministic, incompressible-looking bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes a violation's evidence (three stills of `still_bytes`, and a clip
/// of `clip_bytes` if non-zero) under `spool/<id>/` and returns the signed
/// event and its directory. `n` numbers the violation (its track id).
pub fn violation(
    identity: &DeviceIdentity,
    spool: &Path,
    camera: &str,
    n: u64,
    still_bytes: usize,
    clip_bytes: usize,
) -> (SignedEvent, PathBuf) {
    let id = Uuid::new_v4();
    let dir = spool.join(id.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let mut evidence = Vec::new();
    for (i, (name, role)) in [
        ("at.jpg", EvidenceRole::Overview),
        ("before.jpg", EvidenceRole::Frame),
        ("plate.jpg", EvidenceRole::PlateCrop),
    ]
    .into_iter()
    .enumerate()
    {
        let bytes = noise(still_bytes, n * 10 + i as u64);
        std::fs::write(dir.join(name), &bytes).unwrap();
        evidence.push(EvidenceItem::from_bytes(name, "image/jpeg", role, &bytes));
    }
    if clip_bytes > 0 {
        let bytes = noise(clip_bytes, n * 10 + 9);
        std::fs::write(dir.join("clip.mp4"), &bytes).unwrap();
        evidence.push(EvidenceItem::from_bytes(
            "clip.mp4",
            "video/mp4",
            EvidenceRole::Clip,
            &bytes,
        ));
    }
    let now = OffsetDateTime::now_utc();
    let event = ViolationEvent {
        schema_version: SchemaVersion::CURRENT,
        event_id: id,
        device_id: identity.device_id.clone(),
        camera_id: camera.into(),
        site: identity.site.clone(),
        event_time: now,
        clock: ClockSync::unknown(),
        violation_type: ViolationType::RedLight,
        vehicle_class: VehicleClass::Motorcycle,
        plate: Plate::unreadable(PlateColour::White),
        speed: None,
        signal: Some(protocol::SignalObservation {
            state: protocol::SignalState::Red,
            red_for_ms: Some(1500),
        }),
        track: TrackSummary {
            track_id: n,
            first_seen: now,
            last_seen: now,
            frame_count: 2,
            points: vec![
                TrackPoint {
                    frame: 1,
                    x: 10,
                    y: 10,
                },
                TrackPoint {
                    frame: 2,
                    x: 12,
                    y: 8,
                },
            ],
            riders: None,
        },
        evidence,
        software_version: "edge-agent test".into(),
        site_config_sha256: None,
    };
    (
        SignedEvent::sign(&event, identity.signing_key()).unwrap(),
        dir,
    )
}

/// A free loopback port for a server the test starts later (bound then
/// released). Chosen below the kernel's ephemeral range, so that between
/// its release and the server's bind no outgoing connection (a database
/// client, an HTTP request) is handed the same port — with `bind(:0)`,
/// which picks from that range, one was now and then, and the server's
/// start failed with "address in use". Each call of a process takes the
/// next port from a start spread by the process id and the clock, so
/// parallel tests and test processes do not ask for the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    let high = ephemeral_low().saturating_sub(1).max(LOW + 1_000);
    let span = high - LOW;
    let seed = std::process::id().wrapping_mul(7_919)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    let _ = NEXT.compare_exchange(0, seed % span + 1, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..span {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below the ephemeral range")
}

/// The first port of the kernel's ephemeral range (Linux; 32768 when it
/// cannot be read).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(32_768)
}

/// A Mosquitto broker on a loopback port, killed on drop.
pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// Mosquitto drops root privileges to the `mosquitto` user, which cannot
/// read a test's private temp directory; as root it is told to stay root
/// (the option is ignored when the tests run unprivileged).
pub fn broker_user() -> &'static str {
    "root"
}

pub fn mosquitto_path() -> PathBuf {
    for p in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("mosquitto is not installed: run `make setup` (scripts/setup-system.sh installs it)");
}

impl Broker {
    pub fn start() -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Broker {
            port: free_port(),
            dir,
            child: None,
        };
        b.restart();
        b
    }

    /// Starts (again) on the same port, with persistence so sessions and
    /// queued messages survive a restart like a production broker.
    pub fn restart(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "user {user}\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {dir}/\nmax_queued_messages 100000\nmessage_size_limit 0\nlog_dest stderr\nlog_type error\n",
                port = self.port,
                dir = self.dir.path().display(),
                user = broker_user()
            ),
        )
        .unwrap();
        let child = Command::new(mosquitto_path())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mosquitto did not start on port {}", self.port);
    }

    /// Stops the broker (SIGTERM, so it saves its persistence file).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An ack for `id` (test server side).
pub fn stored(id: Uuid) -> Ack {
    Ack::stored(id)
}

/// The test server's ack-signing key (32 bytes of 0x5e).
pub fn server_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x5e; 32])
}

/// Its public half as the agent's configuration writes it.
pub fn server_public_hex() -> String {
    hex::encode(server_key().verifying_key().to_bytes())
}

/// `ack` as the server publishes it: signed for `device`.
pub fn signed_ack(ack: &Ack, device: &str) -> Vec<u8> {
    ack.sign_for(device, &server_key()).unwrap()
}

/// What the test server has seen.
#[derive(Debug, Default)]
pub struct Seen {
    /// Event ids in order of first arrival, with their camera and track id.
    pub first: Vec<(Uuid, String, u64)>,
    /// Bundles received, duplicates included.
    pub bundles: usize,
    /// Events whose clip was assembled and matched the manifest.
    pub clips: std::collections::HashSet<Uuid>,
    /// Bundles that failed verification, with the reason.
    pub rejected: Vec<String>,
    /// Clip chunks received, duplicates included.
    pub chunks: usize,
}

/// A stand-in for the ingest server's MQTT side, as the protocol prescribes:
/// verifies the signature and the attachments, stores once (in memory),
/// acks after "storing", assembles clips and acks them per item.
pub struct TestServer {
    pub seen: std::sync::Arc<std::sync::Mutex<Seen>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start(port: u16, key: ed25519_dalek::VerifyingKey) -> TestServer {
        Self::start_as(port, key, None)
    }

    /// As `start`, logging in with `(username, password)`.
    pub fn start_as(
        port: u16,
        key: ed25519_dalek::VerifyingKey,
        login: Option<(&str, &str)>,
    ) -> TestServer {
        use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
        use std::collections::HashMap;
        use std::sync::atomic::Ordering;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen::default()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut o = MqttOptions::new(format!("test-server-{}", Uuid::new_v4()), "127.0.0.1", port);
        if let Some((user, pass)) = login {
            o.set_credentials(user, pass);
        }
        o.set_max_packet_size(32 << 20, 32 << 20)
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5));
        let (client, mut conn) = Client::new(o, 1024);
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut manifests: HashMap<Uuid, Vec<EvidenceItem>> = HashMap::new();
            let mut chunks: HashMap<(Uuid, String), HashMap<u32, Vec<u8>>> = HashMap::new();
            while !stop2.load(Ordering::Relaxed) {
                let ev = match conn.recv_timeout(Duration::from_millis(100)) {
                    Ok(Ok(ev)) => ev,
                    Ok(Err(_)) => {
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                    Err(_) => continue,
                };
                match ev {
                    Event::Incoming(Packet::ConnAck(_)) => {
                        client
                            .subscribe("tv/v1/+/+/events", QoS::AtLeastOnce)
                            .unwrap();
                        client
                            .subscribe("tv/v1/+/+/evidence", QoS::AtLeastOnce)
                            .unwrap();
                    }
                    Event::Incoming(Packet::Publish(p)) => {
                        let addr = protocol::topics::parse_topic(&p.topic).unwrap();
                        let ack_topic =
                            protocol::topics::ack_topic(&addr.site, &addr.device).unwrap();
                        let mut seen = seen2.lock().unwrap();
                        if p.topic.ends_with("/events") {
                            seen.bundles += 1;
                            let bundle = match protocol::EventBundle::decode(&p.payload) {
                                Ok(b) => b,
                                Err(e) => {
                                    seen.rejected.push(e.to_string());
                                    continue;
                                }
                            };
                            let verified = bundle
                                .event
                                .verify_for_topic(&key, &addr)
                                .map_err(|e| e.to_string())
                                .and_then(|ev| {
                                    protocol::check_attachments(&ev, &bundle.attachments)
                                        .map(|_| ev.clone())
                                        .map_err(|e| e.to_string())
                                });
                            let ack = match verified {
                                Ok(ev) => {
                                    if let std::collections::hash_map::Entry::Vacant(slot) =
                                        manifests.entry(ev.event_id)
                                    {
                                        seen.first.push((
                                            ev.event_id,
                                            ev.camera_id.clone(),
                                            ev.track.track_id,
                                        ));
                                        slot.insert(ev.evidence.clone());
                                        Ack::stored(ev.event_id)
                                    } else {
                                        Ack::duplicate(ev.event_id)
                                    }
                                }
                                Err(e) => {
                                    seen.rejected.push(e.clone());
                                    let id = bundle.event.unverified_event_id().unwrap();
                                    Ack::rejected(id, protocol::RejectCode::BadSignature, e)
                                }
                            };
                            let _ = client.try_publish(
                                ack_topic,
                                QoS::AtLeastOnce,
                                false,
                                signed_ack(&ack, &addr.device),
                            );
                        } else if p.topic.ends_with("/evidence") {
                            seen.chunks += 1;
                            let Ok(c) = protocol::ClipChunk::decode(&p.payload) else {
                                continue;
                            };
                            let h = c.header.clone();
                            let parts = chunks.entry((h.event_id, h.name.clone())).or_default();
                            parts.insert(h.index, c.data);
                            if parts.len() as u32 == h.count {
                                let mut whole = Vec::new();
                                for i in 0..h.count {
                                    whole.extend_from_slice(&parts[&i]);
                                }
                                let ok = manifests
                                    .get(&h.event_id)
                                    .and_then(|m| m.iter().find(|i| i.name == h.name))
                                    .is_some_and(|item| item.check_bytes(&whole).is_ok());
                                if ok {
                                    seen.clips.insert(h.event_id);
                                    let ack = Ack::stored(h.event_id).for_item(h.name.clone());
                                    let _ = client.try_publish(
                                        ack_topic,
                                        QoS::AtLeastOnce,
                                        false,
                                        signed_ack(&ack, &addr.device),
                                    );
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        });
        TestServer {
            seen,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes an agent configuration for a broker on `port`, trusting the
/// test server key.
pub fn agent_config(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "[device]\nid = \"{DEVICE}\"\nsite = \"{SITE}\"\ndata_dir = \"{data}\"\n\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nack_timeout_s = 5\nreconnect_min_s = 0.2\nreconnect_max_s = 2.0\nbacklog_per_s = 200\n\n[health]\nheartbeat_s = 1\nmetrics_listen = \"\"\n\n[server]\npublic_keys = [\"{key}\"]\n{extra}\n",
            data = dir.join("data").display(),
            key = server_public_hex()
        ),
    )
    .unwrap();
    path
}

/// Polls `f` every 100 ms until it is true or `secs` pass.
pub fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// The device's identity, made by `edge-agent enroll` as in production.
pub fn enroll(config: &Path) -> DeviceIdentity {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["enroll", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["device_id"], DEVICE);
    let key_file = PathBuf::from(v["key_file"].as_str().unwrap());
    let (id, created) = DeviceIdentity::load_or_create(DEVICE, SITE, &key_file).unwrap();
    assert!(!created);
    assert_eq!(v["public_key"], id.public_key_hex());
    id
}

/// An `edge-agent deliver` process, stopped with SIGTERM when dropped.
pub struct Agent {
    pub child: Child,
}

impl Agent {
    pub fn start(config: &Path, log: &Path) -> Agent {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
            .args(["deliver", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Agent { child }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn sigkill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Outbox limits far above what a test fills.
pub fn roomy_limits() -> edge_agent::outbox::OutboxLimits {
    edge_agent::outbox::OutboxLimits {
        max_bytes: 100 << 20,
        max_events: 1000,
        max_age: Duration::from_secs(3600),
        alarm_fraction: 0.8,
    }
}
