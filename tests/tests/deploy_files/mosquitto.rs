//! `mosquitto/mosquitto.conf` read for what it promises (no anonymous
//! clients, an ACL and a password file on every listener, a client
//! certificate on the TLS one, the plain one internal, packets big enough
//! for a bundle, persistence), then run in the real Mosquitto with only
//! paths and ports moved: refusals, the ACL in force, the shared
//! subscription delivering, and a queued message surviving a restart. A
//! file Mosquitto would read differently from how we read it fails here.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::free_port;

use crate::mqtt_client::Client;
use crate::pki::make_pki;
use crate::support::{deploy, is_root, listening, read, signal_and_wait};

/// The Mosquitto broker: `$MOSQUITTO`, or where Debian installs it.
fn mosquitto_bin() -> PathBuf {
    std::env::var_os("MOSQUITTO")
        .map(PathBuf::from)
        .or_else(|| {
            [
                "/usr/sbin/mosquitto",
                "/usr/bin/mosquitto",
                "/usr/local/sbin/mosquitto",
            ]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
        })
        .expect("mosquitto is not installed: scripts/setup-system.sh (Debian package mosquitto)")
}

/// A Mosquitto process on a configuration file, with its log file.
struct Broker {
    child: std::process::Child,
    log: PathBuf,
}

impl Broker {
    /// Starts Mosquitto on `conf` and waits until it listens on `ports`.
    fn start(conf: &Path, log: &Path, ports: &[u16]) -> Broker {
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log.with_extension("stderr")).unwrap())
            .spawn()
            .expect("start mosquitto");
        let mut b = Broker {
            child,
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for p in ports {
            if !listening(&mut b.child, *p, deadline) {
                panic!(
                    "mosquitto did not listen on {p} with deploy/mosquitto/mosquitto.conf:\n{}",
                    b.logs()
                );
            }
        }
        b
    }

    /// What Mosquitto logged, to its log file and to stderr.
    fn logs(&self) -> String {
        let a = std::fs::read_to_string(&self.log).unwrap_or_default();
        let b = std::fs::read_to_string(self.log.with_extension("stderr")).unwrap_or_default();
        format!("{a}{b}")
    }

    /// SIGTERM (Mosquitto writes its persistence file) and wait.
    fn stop(mut self) {
        assert!(
            signal_and_wait(&mut self.child, "TERM", Duration::from_secs(10)),
            "mosquitto did not stop on SIGTERM"
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The file's promises read off it, then the same file in the real broker.
pub fn mosquitto_conf_runs_in_the_real_broker() {
    let text = read("mosquitto/mosquitto.conf");
    // What the file promises, read off it first.
    let lines: Vec<(String, String)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (k.to_owned(), v.trim().to_owned())
        })
        .collect();
    let value = |k: &str| lines.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
    assert_eq!(value("per_listener_settings"), Some("true"));
    assert_eq!(value("persistence"), Some("true"), "durable sessions");
    let max_packet: usize = value("max_packet_size")
        .expect("max_packet_size")
        .parse()
        .unwrap();
    assert!(
        max_packet > protocol::transfer::MAX_BUNDLE_BYTES,
        "a whole bundle fits in one packet"
    );
    // Per listener: its settings, in order.
    let mut listeners: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (k, v) in &lines {
        if k == "listener" {
            listeners.push((v.clone(), Vec::new()));
        } else if let Some(l) = listeners.last_mut() {
            l.1.push((k.clone(), v.clone()));
        }
    }
    assert_eq!(
        listeners.len(),
        2,
        "a TLS listener for edges and an internal one for servers"
    );
    for (addr, settings) in &listeners {
        let get = |k: &str| {
            settings
                .iter()
                .find(|(a, _)| a == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("allow_anonymous"), Some("false"), "listener {addr}");
        assert_eq!(
            get("acl_file"),
            Some("/etc/mosquitto/acl"),
            "listener {addr}"
        );
        assert!(get("password_file").is_some(), "listener {addr}");
        if get("certfile").is_some() {
            assert_eq!(
                get("require_certificate"),
                Some("true"),
                "edges present a site certificate"
            );
        } else {
            let bind = addr.split_whitespace().nth(1);
            assert!(
                bind.is_some_and(|b| b != "0.0.0.0" && b != "::"),
                "the plain listener {addr} must be bound to an internal address"
            );
        }
    }
    assert!(
        listeners
            .iter()
            .any(|(_, s)| s.iter().any(|(k, _)| k == "certfile"))
    );

    // Now the real broker, with this file: paths and ports moved into a
    // temporary directory, nothing else changed (plus `user root` when the
    // test runs as root, and a log file).
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs = d.join("certs");
    std::fs::create_dir(&certs).unwrap();
    make_pki(&certs, &["dev-a", "dev-b"]);
    let passwd = d.join("passwd");
    for (i, (user, pass)) in [
        ("dev-a", "secret-a"),
        ("dev-b", "secret-b"),
        ("ingest", "secret-ingest"),
    ]
    .iter()
    .enumerate()
    {
        let mut cmd = Command::new("mosquitto_passwd");
        if i == 0 {
            cmd.arg("-c");
        }
        let st = cmd
            .arg("-b")
            .arg(&passwd)
            .args([user, pass])
            .stdout(Stdio::null())
            .status();
        assert!(
            st.expect("mosquitto_passwd is installed (package mosquitto)")
                .success()
        );
    }
    std::fs::create_dir(d.join("persist")).unwrap();
    let (tls_port, plain_port) = (free_port(), free_port());
    let mut conf = String::new();
    for raw in text.lines() {
        let l = raw.trim();
        let line = if let Some(rest) = l.strip_prefix("listener ") {
            let port = if rest.trim() == "8883" {
                tls_port
            } else {
                plain_port
            };
            format!("listener {port} 127.0.0.1")
        } else {
            raw.replace("/etc/mosquitto/certs/", &format!("{}/", certs.display()))
                .replace("/etc/mosquitto/passwd", &passwd.display().to_string())
                .replace(
                    "/etc/mosquitto/acl",
                    &deploy().join("mosquitto/acl").display().to_string(),
                )
                .replace("/var/lib/mosquitto/", &format!("{}/persist/", d.display()))
        };
        conf.push_str(&line);
        conf.push('\n');
    }
    assert!(
        !conf.contains("/etc/") && !conf.contains("/var/lib/"),
        "every path was moved:\n{conf}"
    );
    let log = d.join("mosquitto.log");
    conf.push_str(&format!("log_dest file {}\nlog_type all\n", log.display()));
    if is_root() {
        conf.push_str("user root\n");
    }
    let conf_path = d.join("mosquitto.conf");
    std::fs::write(&conf_path, &conf).unwrap();
    let broker = Broker::start(&conf_path, &log, &[tls_port, plain_port]);
    let logs = || broker.logs();

    // The server replica on the internal listener, through the shared subscription.
    let shared = "$share/ingest/tv/v1/+/+/events";
    let ingest = Client::connect(
        plain_port,
        "ingest-0",
        Some(("ingest", "secret-ingest")),
        None,
        false,
    );
    ingest
        .connected()
        .unwrap_or_else(|e| panic!("ingest refused: {e}\n{}", logs()));
    assert_eq!(ingest.subscribe(shared), 1, "granted QoS 1");

    // Refused: anonymous, a wrong password, and TLS without a client certificate.
    let anon = Client::connect(plain_port, "anon", None, None, true);
    assert!(anon.connected().is_err(), "anonymous clients are refused");
    let wrong = Client::connect(
        tls_port,
        "dev-a",
        Some(("dev-a", "wrong")),
        Some((&certs, "dev-a")),
        true,
    );
    assert!(wrong.connected().is_err(), "a wrong password is refused");
    let plain_dev = Client::connect(
        tls_port,
        "dev-a-plain",
        Some(("dev-a", "secret-a")),
        None,
        true,
    );
    assert!(
        plain_dev.connected().is_err(),
        "plain MQTT on the TLS listener gets nowhere"
    );

    // A device over TLS with its certificate and password: what it publishes
    // under another device's id is dropped, under its own is delivered.
    let dev = Client::connect(
        tls_port,
        "dev-a",
        Some(("dev-a", "secret-a")),
        Some((&certs, "dev-a")),
        true,
    );
    dev.connected()
        .unwrap_or_else(|e| panic!("device refused: {e}\n{}", logs()));
    dev.publish("tv/v1/site-1/dev-b/events", "forged");
    dev.publish("tv/v1/site-1/dev-a/events", "own-1");
    let got = ingest
        .message(10)
        .unwrap_or_else(|| panic!("nothing delivered\n{}", logs()));
    assert_eq!(
        got,
        ("tv/v1/site-1/dev-a/events".into(), "own-1".into()),
        "the forged one is not delivered"
    );
    // A device cannot read another's acks.
    let sub_code = dev.subscribe("tv/v1/+/+/ack");
    ingest
        .client
        .publish(
            "tv/v1/site-1/dev-b/ack",
            rumqttc::QoS::AtLeastOnce,
            false,
            b"ack-b".to_vec(),
        )
        .unwrap();
    assert!(
        sub_code == 0x80 || dev.message(2).is_none(),
        "dev-a must not see dev-b's ack"
    );

    // Persistence: a message for the replica while it is away survives a
    // broker restart.
    ingest.disconnect();
    dev.publish("tv/v1/site-1/dev-a/events", "while-away");
    dev.disconnect();
    broker.stop();
    let broker = Broker::start(&conf_path, &log, &[tls_port, plain_port]);
    let ingest = Client::connect(
        plain_port,
        "ingest-0",
        Some(("ingest", "secret-ingest")),
        None,
        false,
    );
    ingest
        .connected()
        .unwrap_or_else(|e| panic!("ingest refused after restart: {e}\n{}", broker.logs()));
    let got = ingest.message(10).unwrap_or_else(|| {
        panic!(
            "the queued message did not survive the restart\n{}",
            broker.logs()
        )
    });
    assert_eq!(got.1, "while-away");
}
