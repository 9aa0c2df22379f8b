//! A real S3-compatible server for the tests, one of two, chosen by the
//! environment variable `TV_S3_SERVER`, so that the same tests run against
//! both behind one interface:
//!
//! - unset or `s3s-fs` (`make test`): `s3s-fs` (the `s3s` project's
//!   file-system store, from crates.io), installed by `make setup`
//!   (`scripts/setup-s3.sh`) under `.deps/s3s-fs/`. It checks every
//!   request's SigV4 signature against the one key pair it is started
//!   with, keeps each object as a file, builds in minutes and starts in
//!   milliseconds. Taking the permission away restarts it on the same port
//!   and data with another key pair.
//! - `garage` (`make test-garage`): Garage, the store a deployment would
//!   run, installed by `make setup-garage` (`scripts/setup-garage.sh`)
//!   under `.deps/garage/`: a single node set up through its own CLI
//!   (`garage.rs`). Its build takes far longer, hence its own target.
//!
//! Either is started in a temporary directory on free loopback ports and
//! stopped when dropped. A missing binary or an unknown `TV_S3_SERVER`
//! fails the test, saying what to do; it never skips.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::{free_port, wait_for_port};
use crate::garage::Garage;

/// The key pair the tests' server accepts (a form both servers take:
/// Garage wants an id of at least 8 of `A-Z a-z 0-9 - _ .` and a secret of
/// at least 16 printable characters).
pub const ACCESS_KEY: &str = "GKtest0123456789abcdef";
pub const SECRET_KEY: &str = "test-secret-0123456789abcdef0123456789abcdef";
/// The bucket the tests store evidence in.
pub const BUCKET: &str = "evidence";

/// Which S3 server `TV_S3_SERVER` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    S3sFs,
    Garage,
}

impl Kind {
    /// From `TV_S3_SERVER`: unset, empty or `s3s-fs`, or `garage`; anything
    /// else fails the test rather than silently testing the other server.
    pub fn from_env() -> Kind {
        match std::env::var("TV_S3_SERVER").as_deref() {
            Err(std::env::VarError::NotPresent) | Ok("") | Ok("s3s-fs") => Kind::S3sFs,
            Ok("garage") => Kind::Garage,
            Ok(other) => panic!(
                "TV_S3_SERVER={other:?} is not an S3 server these tests know: use `s3s-fs` \
                 (the default, `make test`) or `garage` (`make test-garage`)"
            ),
            Err(e) => panic!("TV_S3_SERVER: {e}"),
        }
    }
}

/// Where `make setup` puts s3s-fs (`S3S_FS` overrides it).
fn s3s_fs_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("S3S_FS") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.deps/s3s-fs/bin/s3s-fs")
}

/// The S3 server of this run, on a free loopback port, data in a temporary
/// directory, stopped when dropped.
pub struct S3Server {
    inner: Inner,
}

enum Inner {
    S3sFs(S3sFs),
    Garage(Garage),
}

impl S3Server {
    /// Starts the server `TV_S3_SERVER` names with `ACCESS_KEY`/`SECRET_KEY`
    /// and an empty `BUCKET` that key may read and write. Fails (never
    /// skips) when its binary is missing.
    pub fn start() -> S3Server {
        let inner = match Kind::from_env() {
            Kind::S3sFs => Inner::S3sFs(S3sFs::start()),
            Kind::Garage => Inner::Garage(Garage::start(ACCESS_KEY, SECRET_KEY, BUCKET)),
        };
        S3Server { inner }
    }

    /// From now on `BUCKET` is open to this key pair only: every other key
    /// the server knew (`ACCESS_KEY` included) is refused. How the tests
    /// take the server's permission away mid-run, and give it back. s3s-fs
    /// restarts on the same port and data with this key pair; Garage
    /// imports the key if it is new, allows it on the bucket and denies
    /// the others (its keys cannot be deleted and imported again).
    pub fn accept_only_key(&mut self, access: &str, secret: &str) {
        match &mut self.inner {
            Inner::S3sFs(s) => s.restart_with_key(access, secret),
            Inner::Garage(g) => g.accept_only_key(access, secret),
        }
    }

    /// `http://127.0.0.1:{port}`.
    pub fn endpoint(&self) -> String {
        let port = match &self.inner {
            Inner::S3sFs(s) => s.port,
            Inner::Garage(g) => g.s3_port(),
        };
        format!("http://127.0.0.1:{port}")
    }
}

/// `s3s-fs` with one key pair, restartable on the same port and data.
struct S3sFs {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

impl S3sFs {
    fn start() -> S3sFs {
        let bin = s3s_fs_binary();
        assert!(
            bin.exists(),
            "the S3 tests need the s3s-fs server at {} and it is missing: `make setup` \
             installs it (or `make setup-s3`, i.e. scripts/setup-s3.sh; S3S_FS=path overrides)",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data").join(BUCKET)).unwrap();
        let mut s = S3sFs {
            child: None,
            dir,
            port: free_port(),
        };
        s.run(ACCESS_KEY, SECRET_KEY);
        s
    }

    fn run(&mut self, access: &str, secret: &str) {
        let child = Command::new(s3s_fs_binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", access, "--secret-key", secret])
            .arg(self.dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", s3s_fs_binary().display()));
        self.child = Some(child);
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], self.port)), "s3s-fs");
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts on the same port and data, accepting only this key pair.
    fn restart_with_key(&mut self, access: &str, secret: &str) {
        self.stop();
        self.run(access, secret);
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        self.stop();
    }
}
