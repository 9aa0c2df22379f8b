//! A real PostgreSQL server for a test: `initdb` in a temporary directory,
//! `postgres` on a free loopback port, stopped (fast shutdown) when dropped.
//! It can be stopped ([`Postgres::down`]) and started again
//! ([`Postgres::up`]) on the same port and data directory, as the fault
//! tests do. A missing PostgreSQL is a failure that says what to install,
//! never a skip.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// A PostgreSQL on a fixed loopback port and data directory, stopped when
/// dropped; it can be stopped and started again on both.
pub struct Postgres {
    child: Option<Child>,
    bin: PathBuf,
    dir: tempfile::TempDir,
    ids: Option<(u32, u32)>,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// The directory of `initdb` and `postgres`: `$PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian's layout), else `pg_config --bindir`.
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, p)| p.join("initdb").is_file())
        .collect();
    versions.sort();
    if let Some((_, p)) = versions.pop() {
        return p;
    }
    Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// uid and gid of the `postgres` system user (initdb refuses to run as root).
fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run `id`");
        assert!(
            out.status.success(),
            "no `postgres` system user to run PostgreSQL as (the tests run as root and \
             initdb refuses root): install PostgreSQL (scripts/setup-system.sh, package postgresql)"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a numeric id")
    };
    (id("-u"), id("-g"))
}

impl Postgres {
    /// `initdb` in a temporary directory, then starts it on a free port;
    /// panics, naming what to install, when PostgreSQL is missing.
    pub fn start() -> Postgres {
        use std::os::unix::process::CommandExt;
        let bin = bin_dir();
        for b in ["initdb", "postgres", "createdb"] {
            assert!(
                bin.join(b).is_file(),
                "PostgreSQL's {} is missing: the test needs a real PostgreSQL \
                 (install it with scripts/setup-system.sh, Debian package postgresql; \
                 or set PG_BIN to its bin directory)",
                bin.join(b).display()
            );
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ids = is_root().then(postgres_ids);
        if let Some((uid, gid)) = ids {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = ids {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut me = Postgres {
            child: None,
            bin,
            dir,
            ids,
            port: free_port(),
        };
        me.up();
        me
    }

    /// Starts the server on its data directory and port (first by
    /// [`Postgres::start`], again after [`Postgres::down`]) and waits until
    /// it listens.
    pub fn up(&mut self) {
        use std::os::unix::process::CommandExt;
        assert!(self.child.is_none(), "PostgreSQL is already running");
        let log = self.log_path();
        // Every run appends to the one log.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        if let Some((uid, gid)) = self.ids {
            std::os::unix::fs::chown(&log, Some(uid), Some(gid)).expect("chown");
        }
        let mut pg = Command::new(self.bin.join("postgres"));
        pg.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            // A test database: durability is not what is tested here.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(file);
        if let Some((uid, gid)) = self.ids {
            pg.uid(uid).gid(gid);
        }
        let mut child = pg.spawn().expect("start postgres");
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                let _ = child.wait();
                panic!("postgres did not listen on {addr}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// Stops it (fast shutdown: sessions ended, as `pg_ctl stop -m fast`),
    /// keeping its port and data directory for [`Postgres::up`]; nothing
    /// when it is not running.
    pub fn down(&mut self) {
        self.stop_within(Duration::from_secs(20));
    }

    /// SIGINT (fast shutdown: ends sessions, frees shared memory), then
    /// SIGKILL when it has not exited within `grace`.
    fn stop_within(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Creates database `name` (retrying while the server finishes starting)
    /// and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new(self.bin.join("createdb"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", "postgres", name])
                .output()
                .expect("run createdb");
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "createdb {name}: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The server's log so far (its last 40 lines).
    pub fn log(&self) -> String {
        crate::tail(&self.log_path(), 40)
    }

    /// Its log file (every run appends).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Its temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_within(Duration::from_secs(10));
    }
}
