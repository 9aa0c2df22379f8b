//! Shared helpers of the integration tests: signed test events and bundles
//! made with keys generated in the test, free loopback ports, and real
//! PostgreSQL and Mosquitto servers started in temporary directories.

#![allow(dead_code)]

pub mod chrome;
pub mod pki;
pub mod seed;
pub mod web;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::{
    Attachment, ClockSync, EventBundle, EvidenceItem, EvidenceRole, Plate, PlateColour,
    PlateSource, SchemaVersion, SignalObservation, SignalState, SigningKey, TrackPoint,
    TrackSummary, VehicleClass, ViolationEvent, ViolationType,
};
use time::OffsetDateTime;
use uuid::Uuid;

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A fresh device key.
pub fn key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

pub fn public_hex(key: &SigningKey) -> String {
    hex::encode(key.verifying_key().to_bytes())
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
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
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

/// A server configuration for a test: data under `dir`, HTTP on a port
/// the OS picks, the embedded broker on a free port, SQLite.
pub fn local_config(dir: &Path) -> ingest_server::config::Config {
    let mut cfg = ingest_server::config::Config {
        data_dir: dir.to_path_buf(),
        ..ingest_server::config::Config::default()
    };
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.mqtt.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    cfg
}

pub fn wait_for_port(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on {addr} within 20 s");
}

/// Test files: two stills and a clip.
pub struct Files {
    pub overview: Vec<u8>,
    pub plate: Vec<u8>,
    pub clip: Vec<u8>,
}

impl Files {
    pub fn new(clip_len: usize) -> Self {
        let pattern =
            |seed: u8, n: usize| (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
        Files {
            overview: pattern(1, 5000),
            plate: pattern(2, 700),
            clip: pattern(3, clip_len),
        }
    }
}

/// A valid red-light event by `device` at `site` with the files' manifest.
pub fn event(device: &str, site: &str, files: &Files) -> ViolationEvent {
    let now = OffsetDateTime::now_utc().to_offset(time::macros::offset!(+7));
    let now = now.replace_nanosecond(0).unwrap();
    ViolationEvent {
        schema_version: SchemaVersion::CURRENT,
        event_id: Uuid::new_v4(),
        device_id: device.into(),
        camera_id: "cam-north".into(),
        site: site.into(),
        event_time: now - time::Duration::seconds(5),
        clock: ClockSync::synced(-3, "ntp:10.20.0.1"),
        violation_type: ViolationType::RedLight,
        vehicle_class: VehicleClass::Car,
        plate: Plate {
            readable: true,
            text: Some("30A12345".into()),
            display: Some("30A-123.45".into()),
            confidence: Some(0.97),
            colour: PlateColour::White,
            lines: Some(1),
            source: Some(PlateSource {
                frame: 120_372,
                plate_box: [905, 745, 90, 30],
                vehicle_box: [800, 500, 300, 260],
            }),
        },
        speed: None,
        signal: Some(SignalObservation {
            state: SignalState::Red,
            red_for_ms: Some(4200),
        }),
        track: TrackSummary {
            track_id: 7,
            first_seen: now - time::Duration::seconds(7),
            last_seen: now - time::Duration::seconds(4),
            frame_count: 40,
            points: vec![TrackPoint {
                frame: 1,
                x: 10,
                y: 20,
            }],
            riders: None,
        },
        evidence: vec![
            EvidenceItem::from_bytes(
                "overview.jpg",
                "image/jpeg",
                EvidenceRole::Overview,
                &files.overview,
            )
            .with_frame(120_372, now - time::Duration::seconds(5)),
            EvidenceItem::from_bytes(
                "plate.jpg",
                "image/jpeg",
                EvidenceRole::PlateCrop,
                &files.plate,
            ),
            EvidenceItem::from_bytes("clip.mp4", "video/mp4", EvidenceRole::Clip, &files.clip),
        ],
        software_version: "edge-agent test".into(),
        site_config_sha256: Some(protocol::sha256_hex(b"site file of the test camera")),
    }
}

/// Runs the `ingest-server` binary with `args` on the data in `dir`
/// (SQLite, no configuration file, none of the environment's overrides):
/// whether it succeeded, its standard output and its standard error.
pub fn cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ingest-server"))
        .args(args)
        .env("INGEST_DATA_DIR", dir)
        .env_remove("DATABASE_URL")
        .env_remove("INGEST_CONFIG")
        .env_remove("INGEST_REQUIRE_KNOWN_CAMERA")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Moves every time an event holds by `d`: its time, its track's, and the
/// frames its stills name.
pub fn shift(ev: &mut ViolationEvent, d: time::Duration) {
    ev.event_time += d;
    ev.track.first_seen += d;
    ev.track.last_seen += d;
    for f in ev.evidence.iter_mut().filter_map(|e| e.frame.as_mut()) {
        f.time += d;
    }
}

/// The bundle of a signed event with both stills attached.
pub fn bundle(event: &ViolationEvent, key: &SigningKey, files: &Files) -> Vec<u8> {
    EventBundle {
        event: event.sign(key).unwrap(),
        attachments: vec![
            Attachment {
                name: "overview.jpg".into(),
                data: files.overview.clone(),
            },
            Attachment {
                name: "plate.jpg".into(),
                data: files.plate.clone(),
            },
        ],
    }
    .encode()
    .unwrap()
}

fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "no `postgres` system user to run PostgreSQL as (tests run as root and initdb refuses root); \
             install postgresql (scripts/setup-system.sh)"
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (id("-u"), id("-g"))
}

/// A PostgreSQL server in a temporary directory on a free loopback port,
/// stopped when dropped.
pub struct Postgres {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
    /// Query string every URL to it carries (the TLS settings).
    params: String,
}

impl Postgres {
    /// Starts one. Fails (never skips) when the binaries are missing.
    pub fn start() -> Postgres {
        Self::start_with(None)
    }

    /// Starts one that takes only TLS connections (`hostssl` in its
    /// pg_hba.conf, plain `host` rejected), with `pki`'s `server.crt` (for
    /// 127.0.0.1, signed by `ca.crt`); its URLs verify the server against
    /// `ca.crt` (`sslmode=verify-full`).
    pub fn start_tls(pki: &pki::Pki) -> Postgres {
        Self::start_with(Some(pki))
    }

    fn start_with(tls: Option<&pki::Pki>) -> Postgres {
        let bin = Path::new(PG_BIN);
        for b in ["initdb", "postgres"] {
            assert!(
                bin.join(b).exists(),
                "PostgreSQL binary {} is missing: the storage tests need a real PostgreSQL 15 \
                 (install it with scripts/setup-system.sh, package postgresql-15)",
                bin.join(b).display()
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let as_postgres = unsafe_free_is_root();
        let (uid, gid) = if as_postgres { postgres_ids() } else { (0, 0) };
        if as_postgres {
            chown(dir.path(), uid, gid);
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args([
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if as_postgres {
            use std::os::unix::process::CommandExt;
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut extra: Vec<String> = Vec::new();
        let mut params = String::new();
        if let Some(pki) = tls {
            let d = dir.path();
            std::fs::copy(pki.path("server.crt"), d.join("server.crt")).unwrap();
            std::fs::copy(pki.path("server.key"), d.join("server.key")).unwrap();
            std::fs::set_permissions(
                d.join("server.key"),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .unwrap();
            std::fs::write(
                d.join("pg_hba.conf"),
                "local all all trust\n\
                 hostssl all all 127.0.0.1/32 trust\n\
                 host all all 127.0.0.1/32 reject\n",
            )
            .unwrap();
            if as_postgres {
                for f in ["server.crt", "server.key", "pg_hba.conf"] {
                    chown(&d.join(f), uid, gid);
                }
            }
            for (k, v) in [
                ("ssl", "on".to_owned()),
                ("ssl_cert_file", d.join("server.crt").display().to_string()),
                ("ssl_key_file", d.join("server.key").display().to_string()),
                ("hba_file", d.join("pg_hba.conf").display().to_string()),
            ] {
                extra.push("-c".into());
                extra.push(format!("{k}={v}"));
            }
            params = format!("?sslmode=verify-full&sslrootcert={}", pki.path("ca.crt"));
        }
        let port = free_port();
        let mut pg = Command::new(bin.join("postgres"));
        pg.args(&extra);
        pg.args([
            "-D",
            data.to_str().unwrap(),
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            &format!("unix_socket_directories={}", dir.path().display()),
            "-c",
            "fsync=on",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if as_postgres {
            use std::os::unix::process::CommandExt;
            pg.uid(uid).gid(gid);
        }
        let child = pg.spawn().unwrap();
        let me = Postgres {
            child,
            _dir: dir,
            port,
            params,
        };
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), "postgres");
        me
    }

    /// URL of a new, empty database on this server.
    pub async fn fresh_database(&self) -> String {
        sqlx::any::install_default_drivers();
        let admin = format!(
            "postgres://postgres@127.0.0.1:{}/postgres{}",
            self.port, self.params
        );
        let name = format!("t_{}", Uuid::new_v4().simple());
        // The server may still be starting up after it opened its port.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match sqlx::AnyConnection::connect_any(&admin).await {
                Ok(mut c) => {
                    let sql = format!("CREATE DATABASE {name}");
                    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut c)
                        .await
                        .unwrap();
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot connect to the test PostgreSQL: {e}"),
            }
        }
        format!(
            "postgres://postgres@127.0.0.1:{}/{name}{}",
            self.port, self.params
        )
    }
}

trait ConnectAny {
    async fn connect_any(url: &str) -> Result<sqlx::AnyConnection, sqlx::Error>;
}

impl ConnectAny for sqlx::AnyConnection {
    async fn connect_any(url: &str) -> Result<sqlx::AnyConnection, sqlx::Error> {
        use sqlx::Connection;
        sqlx::AnyConnection::connect(url).await
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: fast shutdown (closes sessions, removes shared memory).
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_free_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

/// A Mosquitto broker on a free loopback port, stopped when dropped.
pub struct Mosquitto {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        assert!(
            Path::new(MOSQUITTO).exists(),
            "{MOSQUITTO} is missing: the external-broker test needs a real Mosquitto \
             (install it with scripts/setup-system.sh, package mosquitto)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf: PathBuf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_packet_size 20000000\nmax_inflight_messages 100\n\
                 max_queued_messages 100000\nuser root\n"
            ),
        )
        .unwrap();
        let child = Command::new(MOSQUITTO)
            .args(["-c", conf.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), "mosquitto");
        Mosquitto {
            child,
            _dir: dir,
            port,
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Cuts a clip into chunks exactly as the protocol says (256 KiB pieces,
/// each with its own hash). Written out here rather than calling
/// `ClipChunk::split`, so these tests pin the wire format themselves.
pub fn split_clip(event_id: Uuid, name: &str, file: &[u8]) -> Vec<protocol::ClipChunk> {
    let size = protocol::transfer::CLIP_CHUNK_BYTES;
    let count = file.len().div_ceil(size).max(1) as u32;
    file.chunks(size)
        .enumerate()
        .map(|(i, data)| protocol::ClipChunk {
            header: protocol::ChunkHeader {
                schema_version: SchemaVersion::CURRENT,
                event_id,
                name: name.to_owned(),
                index: i as u32,
                count,
                total_size: file.len() as u64,
                sha256: protocol::sha256_hex(data),
            },
            data: data.to_vec(),
        })
        .collect()
}
