//! A real Mosquitto broker for a test, on a free loopback port, configured
//! in a temporary directory and stopped when dropped. A missing Mosquitto
//! is a failure that says what to install, never a skip.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// A running broker, stopped when dropped.
pub struct Mosquitto {
    child: Child,
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// `$MOSQUITTO`, else `mosquitto` on the PATH, else Debian's `/usr/sbin/mosquitto`.
fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("MOSQUITTO") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/mosquitto"))
}

impl Mosquitto {
    /// Starts one; panics, naming what to install, when Mosquitto is missing.
    pub fn start() -> Mosquitto {
        let bin = binary();
        assert!(
            bin.is_file(),
            "{} is missing: the scale-out test needs a real Mosquitto broker \
             (install it with scripts/setup-system.sh, Debian package mosquitto)",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        let log = dir.path().join("mosquitto.log");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_packet_size 20000000\nmax_inflight_messages 100\n\
                 max_queued_messages 100000\nuser root\nlog_dest stderr\n\
                 log_type error\nlog_type warning\nlog_type notice\n"
            ),
        )
        .expect("write mosquitto.conf");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut me = Mosquitto { child, dir, port };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline || me.child.try_wait().ok().flatten().is_some() {
                panic!("mosquitto did not listen on {addr}:\n{}", me.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        me
    }

    /// `mqtt://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        crate::tail(&self.dir.path().join("mosquitto.log"), 40)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
