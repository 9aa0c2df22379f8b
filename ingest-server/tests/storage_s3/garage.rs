//! Garage, the S3-compatible store a deployment would run, as the tests'
//! S3 server when `TV_S3_SERVER=garage` (`make test-garage`): one node in a
//! temporary directory, set up the way an operator sets up a cluster, so
//! that the tests see Garage's real behaviour rather than a stand-in's.
//!
//! `scripts/setup-garage.sh` (`make setup-garage`) puts the binary at
//! `.deps/garage/bin/garage` (`GARAGE` overrides it), built with the LMDB
//! metadata engine only, so `db_engine = "lmdb"`. The node gets a
//! `garage.toml` (replication factor 1, a random RPC secret, RPC and S3 API
//! on free loopback ports, region `garage`), runs `garage server` as a
//! child process logging to a file, and is then configured through the
//! `garage` CLI: its node id, a layout (`layout assign`, `layout apply`),
//! the bucket, the tests' key (`key import`) and the key's permissions on
//! the bucket (`bucket allow`). Every wait polls with a deadline and fails
//! with Garage's own log.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::free_port;

/// How long the node may take to answer its CLI, and to serve S3.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Where `make setup-garage` puts the binary (`GARAGE` overrides it).
fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("GARAGE") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.deps/garage/bin/garage")
}

/// A running single-node Garage with one bucket; stopped when dropped.
pub struct Garage {
    child: Option<Child>,
    // Kept for its lifetime: the node's metadata, data and log live in it.
    _dir: tempfile::TempDir,
    config: PathBuf,
    log: PathBuf,
    s3_port: u16,
    bucket: String,
    /// Every key imported so far (Garage keeps a key once imported; a
    /// deleted key's id cannot be imported again).
    keys: BTreeSet<String>,
}

impl Garage {
    /// Starts a node with `bucket`, readable, writable and owned by the key
    /// pair `access`/`secret`. Fails (never skips) when the binary is
    /// missing, and with Garage's log when the node is not ready in time.
    pub fn start(access: &str, secret: &str, bucket: &str) -> Garage {
        let bin = binary();
        assert!(
            bin.exists(),
            "TV_S3_SERVER=garage: the S3 tests need Garage at {} and it is missing: \
             run `make setup-garage` (scripts/setup-garage.sh; GARAGE=path overrides)",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let rpc_port = free_port();
        let s3_port = loop {
            let p = free_port();
            if p != rpc_port {
                break p;
            }
        };
        let rpc_secret = hex::encode(rand::random::<[u8; 32]>());
        let config = dir.path().join("garage.toml");
        let text = format!(
            "metadata_dir = \"{meta}\"\n\
             data_dir = \"{data}\"\n\
             db_engine = \"lmdb\"\n\
             lmdb_map_size = \"1GiB\"\n\
             # Throw-away data: no fsync (a deployment turns both on).\n\
             metadata_fsync = false\n\
             data_fsync = false\n\
             replication_factor = 1\n\
             rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
             rpc_secret = \"{rpc_secret}\"\n\
             \n\
             [s3_api]\n\
             s3_region = \"garage\"\n\
             api_bind_addr = \"127.0.0.1:{s3_port}\"\n",
            meta = dir.path().join("meta").display(),
            data = dir.path().join("data").display(),
        );
        std::fs::write(&config, text).unwrap();
        let log = dir.path().join("garage.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "garage=info,netapp=warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut g = Garage {
            child: Some(child),
            _dir: dir,
            config,
            log,
            s3_port,
            bucket: bucket.to_string(),
            keys: BTreeSet::new(),
        };

        // The CLI answers once the node's RPC is up.
        let deadline = Instant::now() + READY_WITHIN;
        g.retry(&["status"], deadline, "answer `garage status`");
        let id = g.cli(&["node", "id", "-q"]);
        let id = id.trim().split('@').next().unwrap_or_default().to_string();
        assert!(
            id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "`garage node id` gave {id:?}\n{}",
            g.log_tail()
        );
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
        g.cli(&["layout", "apply", "--version", "1"]);
        // The first table write after the layout may wait for it to settle.
        g.retry(&["bucket", "create", bucket], deadline, "create the bucket");
        g.accept_only_key(access, secret);
        g.wait_for_s3(deadline);
        g
    }

    pub fn s3_port(&self) -> u16 {
        self.s3_port
    }

    /// The bucket is open to this key pair only: imported if new, allowed
    /// to read, write and own the bucket; every other key denied all three.
    pub fn accept_only_key(&mut self, access: &str, secret: &str) {
        if self.keys.insert(access.to_string()) {
            self.cli(&["key", "import", "--yes", "-n", access, access, secret]);
        }
        let bucket = self.bucket.clone();
        self.cli(&[
            "bucket", "allow", "--read", "--write", "--owner", &bucket, "--key", access,
        ]);
        let others: Vec<String> = self.keys.iter().filter(|k| *k != access).cloned().collect();
        for other in &others {
            self.cli(&[
                "bucket", "deny", "--read", "--write", "--owner", &bucket, "--key", other,
            ]);
        }
    }

    /// `garage -c garage.toml {args}`: its output, or what it said on failure.
    fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(binary())
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", binary().display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "{}{stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// `try_cli`, failing the test with Garage's log on an error.
    fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args).unwrap_or_else(|e| {
            panic!(
                "`garage {}` failed: {e}\n{}",
                args.join(" "),
                self.log_tail()
            )
        })
    }

    /// `try_cli` until it succeeds; fails the test at `deadline`, or at once
    /// if the server has exited.
    fn retry(&mut self, args: &[&str], deadline: Instant, what: &str) -> String {
        loop {
            let err = match self.try_cli(args) {
                Ok(out) => return out,
                Err(e) => e,
            };
            self.assert_running(what);
            if Instant::now() > deadline {
                panic!(
                    "Garage did not {what} within {READY_WITHIN:?}: `garage {}`: {err}\n{}",
                    args.join(" "),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Until the S3 API answers HTTP (an unsigned request: any S3 answer,
    /// even a refusal, shows it serves).
    fn wait_for_s3(&mut self, deadline: Instant) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.s3_port));
        loop {
            if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let req = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
                let mut answer = Vec::new();
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read_to_end(&mut answer).is_ok()
                    && answer.starts_with(b"HTTP/1.1 ")
                {
                    return;
                }
            }
            self.assert_running("serve S3");
            if Instant::now() > deadline {
                panic!(
                    "Garage did not serve S3 on {addr} within {READY_WITHIN:?}\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn assert_running(&mut self, what: &str) {
        let exited = match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(status))) => Some(status.to_string()),
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        };
        if let Some(status) = exited {
            self.child = None;
            panic!(
                "Garage exited ({status}) before it could {what}\n{}",
                self.log_tail()
            );
        }
    }

    /// The end of the server's log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(60);
        format!(
            "--- Garage's log ({}), last lines ---\n{}",
            self.log.display(),
            lines[from..].join("\n")
        )
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
