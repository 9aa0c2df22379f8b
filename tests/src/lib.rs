//! Shared helpers for the end-to-end tests: finding the workspace's built
//! binaries, starting them as child processes that are killed when the test
//! ends, and talking plain HTTP to them on loopback. The modules start the
//! outside parts the tests need in temporary directories ([`postgres`],
//! [`mosquitto`], the OpenID Connect test provider in [`oidc`]), play a
//! browser ([`web`]) and a partner app receiving signed webhooks
//! ([`webhook`]).

pub mod mosquitto;
pub mod oidc;
pub mod postgres;
pub mod web;
pub mod webhook;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Path of a workspace binary (`target/<profile>/<name>`). The tests run
/// after `cargo build --workspace` (what `make test` does); a missing binary
/// is a failure that says so, never a skip.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not built: run `cargo build --workspace` (or `make test`) first",
        path.display()
    );
    path
}

/// The workspace's root directory (where `Cargo.toml` lists the members).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` and waits (up to `timeout`) for a stdout line containing
/// `marker`; returns the process and that line.
pub fn start_until(mut cmd: Command, marker: &str, timeout: Duration) -> (Proc, String) {
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("spawn child process");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = marker.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(&wanted) {
                let _ = tx.send(line);
            }
        }
    });
    let proc = Proc { child };
    let line = rx
        .recv_timeout(timeout)
        .unwrap_or_else(|_| panic!("process did not print `{marker}` within {timeout:?}"));
    (proc, line)
}

/// Starts `cmd` with its stderr written to `log` and waits (up to
/// `timeout`) for a stdout line containing `marker`; returns the process and
/// that line. On a timeout, or when the process exits first, panics with
/// the log's tail, so a failure says why.
pub fn start_logged(
    mut cmd: Command,
    marker: &str,
    log: &Path,
    timeout: Duration,
) -> (Proc, String) {
    let file = std::fs::File::create(log).expect("create the log file");
    cmd.stdout(Stdio::piped()).stderr(file);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = marker.to_string();
    std::thread::spawn(move || {
        // Keep reading after the marker: a closed pipe would kill the child.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(&wanted) {
                let _ = tx.send(line);
            }
        }
    });
    let mut proc = Proc { child };
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            return (proc, line);
        }
        let exited = proc.child.try_wait().ok().flatten();
        if exited.is_some() || std::time::Instant::now() > deadline {
            panic!(
                "{:?} did not print `{marker}` within {timeout:?} (exit: {exited:?}); log {}:\n{}",
                cmd.get_program(),
                log.display(),
                tail(log, 60)
            );
        }
    }
}

/// The last `lines` lines of a text file (empty when it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A minimal HTTP/1.1 GET; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, "GET", path, None, None)
}

/// A minimal HTTP/1.1 request with optional bearer token and JSON body;
/// returns (status, body).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = json.unwrap_or("");
    if json.is_some() {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    write!(s, "{head}\r\n{body}")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((status, body))
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
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
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

/// Polls `f` every 200 ms until it is true or `secs` pass.
pub fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    f()
}

/// Completes an edge's configuration file with what the server's enrolment
/// answer (`POST /api/v1/devices`, as JSON text) gives it: the embedded
/// broker login under `[mqtt]` and the server's ack-signing keys as
/// `[server] public_keys`. Without both an edge refuses to deliver (it
/// believes only signed acks) and the embedded broker refuses it.
pub fn apply_enrolment(config: &Path, answer: &str) {
    let answer: serde_json::Value = serde_json::from_str(answer)
        .unwrap_or_else(|e| panic!("enrolment answer is not JSON ({e}): {answer}"));
    let (Some(user), Some(password)) = (
        answer["mqtt_username"].as_str(),
        answer["mqtt_password"].as_str(),
    ) else {
        panic!("enrolment answer without an MQTT login: {answer}");
    };
    let keys: Vec<String> = answer["server_public_keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k.as_str().map(|k| format!("\"{k}\"")))
        .collect();
    assert!(
        !keys.is_empty(),
        "enrolment answer without server keys: {answer}"
    );
    let text = std::fs::read_to_string(config).expect("read the edge configuration");
    assert!(
        text.contains("[mqtt]\n"),
        "the edge configuration has an [mqtt] table"
    );
    let mut text = text.replacen(
        "[mqtt]\n",
        &format!("[mqtt]\nusername = \"{user}\"\npassword = \"{password}\"\n"),
        1,
    );
    text.push_str(&format!(
        "\n[server]\npublic_keys = [{}]\n",
        keys.join(", ")
    ));
    std::fs::write(config, text).expect("write the edge configuration");
}
