//! A real S3-compatible server for the tests: `s3s-fs` (the `s3s`
//! project's file-system store, from crates.io), installed by `make setup`
//! (`scripts/setup-s3.sh`) under `.deps/s3s-fs/`. It checks every
//! request's SigV4 signature against the one key pair it is started with,
//! keeps each bucket as a directory under its root and each object as a
//! file, and is started here in a temporary directory on a free loopback
//! port. It can be restarted on the same port and data with another key,
//! which is how the tests take the server's permission away mid-run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::{free_port, wait_for_port};

/// The key pair the tests' server accepts.
pub const ACCESS_KEY: &str = "GKtest0123456789abcdef";
pub const SECRET_KEY: &str = "test-secret-0123456789abcdef0123456789abcdef";
/// The bucket the tests store evidence in.
pub const BUCKET: &str = "evidence";

/// Where `make setup` puts the binary (`S3S_FS` overrides it).
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("S3S_FS") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.deps/s3s-fs/bin/s3s-fs")
}

/// An `s3s-fs` on a free loopback port, data in a temporary directory,
/// stopped when dropped.
pub struct S3Server {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl S3Server {
    /// Starts one with `ACCESS_KEY`/`SECRET_KEY` and an empty `BUCKET`.
    /// Fails (never skips) when the binary is missing.
    pub fn start() -> S3Server {
        let bin = binary();
        assert!(
            bin.exists(),
            "the S3 tests need the s3s-fs server at {} and it is missing: `make setup` \
             installs it (or `make setup-s3`, i.e. scripts/setup-s3.sh; S3S_FS=path overrides)",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data").join(BUCKET)).unwrap();
        let mut s = S3Server {
            child: None,
            dir,
            port: free_port(),
        };
        s.run(ACCESS_KEY, SECRET_KEY);
        s
    }

    fn run(&mut self, access: &str, secret: &str) {
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", access, "--secret-key", secret])
            .arg(self.root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary().display()));
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
    pub fn restart_with_key(&mut self, access: &str, secret: &str) {
        self.stop();
        self.run(access, secret);
    }

    /// `http://127.0.0.1:{port}`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's data directory: `{root}/{bucket}/{key}` is the object.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where the server keeps the object `key` of `BUCKET` on disk.
    pub fn object_file(&self, key: &str) -> PathBuf {
        self.root().join(BUCKET).join(key)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
