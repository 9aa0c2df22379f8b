//! A real Mosquitto broker for a test, on a free loopback port, configured
//! in a temporary directory and stopped when dropped. It can be killed
//! ([`Mosquitto::kill`]) and started again ([`Mosquitto::up`]) on the same
//! port, as the fault tests do. A missing Mosquitto is a failure that says
//! what to install, never a skip.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// A broker on a fixed loopback port, stopped when dropped; it can be
/// killed and started again there (no persistence: what it held when killed
/// is gone, as after a crash of a broker without a disk).
pub struct Mosquitto {
    child: Option<Child>,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    starts: u32,
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
    /// Starts one on a free port; panics, naming what to install, when
    /// Mosquitto is missing.
    pub fn start() -> Mosquitto {
        let bin = binary();
        assert!(
            bin.is_file(),
            "{} is missing: the test needs a real Mosquitto broker \
             (install it with scripts/setup-system.sh, Debian package mosquitto)",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        std::fs::write(
            dir.path().join("mosquitto.conf"),
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_packet_size 20000000\nmax_inflight_messages 100\n\
                 max_queued_messages 100000\nuser root\nlog_dest stderr\n\
                 log_type error\nlog_type warning\nlog_type notice\n"
            ),
        )
        .expect("write mosquitto.conf");
        let mut me = Mosquitto {
            child: None,
            bin,
            dir,
            port,
            starts: 0,
        };
        me.up();
        me
    }

    /// Starts the broker on its port (first by [`Mosquitto::start`], again
    /// after [`Mosquitto::kill`]) and waits until it listens; each run logs
    /// to its own file.
    pub fn up(&mut self) {
        assert!(self.child.is_none(), "the broker is already running");
        self.starts += 1;
        let log = self.log_path();
        let mut child = Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mosquitto did not listen on {addr}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// SIGKILL: the broker dies as in a crash, keeping its port for
    /// [`Mosquitto::up`]; nothing when it is not running.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `mqtt://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The log of its current (or last) run so far (its last 40 lines).
    pub fn log(&self) -> String {
        crate::tail(&self.log_path(), 40)
    }

    /// The log file of its current (or last) run.
    pub fn log_path(&self) -> PathBuf {
        self.dir
            .path()
            .join(format!("mosquitto-{}.log", self.starts))
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}
