//! A real PostgreSQL server for a test: `initdb` in a temporary directory,
//! `postgres` on a free loopback port, stopped (fast shutdown) when dropped.
//! A missing PostgreSQL is a failure that says what to install, never a
//! skip.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// A running PostgreSQL, stopped when dropped.
pub struct Postgres {
    child: Child,
    bin: PathBuf,
    dir: tempfile::TempDir,
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
    /// Starts one; panics, naming what to install, when PostgreSQL is missing.
    pub fn start() -> Postgres {
        use std::os::unix::process::CommandExt;
        let bin = bin_dir();
        for b in ["initdb", "postgres", "createdb"] {
            assert!(
                bin.join(b).is_file(),
                "PostgreSQL's {} is missing: the scale-out test needs a real PostgreSQL \
                 (install it with scripts/setup-system.sh, Debian package postgresql; \
                 or set PG_BIN to its bin directory)",
                bin.join(b).display()
            );
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data = dir.path().join("data");
        let ids = is_root().then(postgres_ids);
        if let Some((uid, gid)) = ids {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
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
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).expect("log file");
        if let Some((uid, gid)) = ids {
            std::os::unix::fs::chown(dir.path().join("postgres.log"), Some(uid), Some(gid))
                .expect("chown");
        }
        let mut pg = Command::new(bin.join("postgres"));
        pg.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.path().display()))
            // A test database: durability is not what is tested here.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(log);
        if let Some((uid, gid)) = ids {
            pg.uid(uid).gid(gid);
        }
        let child = pg.spawn().expect("start postgres");
        let mut me = Postgres {
            child,
            bin,
            dir,
            port,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline || me.child.try_wait().ok().flatten().is_some() {
                panic!("postgres did not listen on {addr}:\n{}", me.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        me
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

    /// The server's log so far.
    pub fn log(&self) -> String {
        crate::tail(&self.dir.path().join("postgres.log"), 40)
    }

    /// Its temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: fast shutdown (ends sessions, frees shared memory).
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
