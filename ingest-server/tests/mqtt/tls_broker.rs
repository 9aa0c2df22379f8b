//! A Mosquitto broker with a TLS listener as a city would run it for the
//! server replicas: the broker's certificate signed by a CA of the test's
//! own (`common::pki`), a client certificate required, and a
//! password file (`mosquitto_passwd`); plus a plain, anonymous listener for
//! the test edge, so that only the server's side is under test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::pki::Pki;
use crate::common::{MOSQUITTO, free_port, wait_for_port};

/// The server's login on the broker.
pub const USER: &str = "ingest-0";
pub const PASSWORD: &str = "replica-secret-0";

pub struct TlsBroker {
    child: Child,
    dir: tempfile::TempDir,
    pki: Pki,
    /// The anonymous plain listener (the test edge).
    pub plain_port: u16,
    /// The TLS listener (the server).
    pub tls_port: u16,
}

impl TlsBroker {
    pub fn start() -> TlsBroker {
        assert!(
            Path::new(MOSQUITTO).exists(),
            "{MOSQUITTO} is missing: install it with scripts/setup-system.sh (package mosquitto)"
        );
        let pki = Pki::new();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let passwd = d.join("passwd");
        let st = Command::new("mosquitto_passwd")
            .args(["-c", "-b"])
            .arg(&passwd)
            .args([USER, PASSWORD])
            .stdout(Stdio::null())
            .status()
            .expect("mosquitto_passwd is installed (package mosquitto)");
        assert!(st.success());
        let (plain_port, tls_port) = (free_port(), free_port());
        let p = |n: &str| d.join(n).display().to_string();
        let conf = format!(
            "per_listener_settings true\npersistence false\nmax_packet_size 20000000\n\
             max_inflight_messages 100\nmax_queued_messages 100000\nuser root\n\
             log_dest file {log}\nlog_type all\n\
             listener {plain_port} 127.0.0.1\nallow_anonymous true\n\
             listener {tls_port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n\
             cafile {ca}\ncertfile {cert}\nkeyfile {key}\nrequire_certificate true\n\
             tls_version tlsv1.2\n",
            log = p("mosquitto.log"),
            passwd = passwd.display(),
            ca = pki.path("ca.crt"),
            cert = pki.path("server.crt"),
            key = pki.path("server.key"),
        );
        let conf_path = d.join("mosquitto.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for port in [plain_port, tls_port] {
            wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), "mosquitto");
        }
        TlsBroker {
            child,
            dir,
            pki,
            plain_port,
            tls_port,
        }
    }

    /// A file of the test's PKI (`common::pki`): `ca.crt` (signed the
    /// broker's certificate), `client.crt`/`client.key` (the replica's),
    /// `rogue-ca.crt` (signed nothing the broker shows).
    pub fn file(&self, name: &str) -> PathBuf {
        PathBuf::from(self.pki.path(name))
    }

    /// The broker's log (why it refused a client).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
