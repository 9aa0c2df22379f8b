//! Receivers for the notice tests (`tests/notices.rs`), written
//! independently of the server's code: an HTTP receiver that records what
//! it gets and answers from a script (webhooks, push services), HMAC-SHA256
//! spelt out over sha2, the server side of SMTP, the Node.js Web Push
//! checker (`tests/push/push.js`), and a bare HTTP GET.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use ingest_server::config::WebhookConfig;
use ingest_server::db::now_ms;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// One request a test receiver got.
#[derive(Clone, Debug)]
pub struct Got {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Bytes,
}

#[derive(Clone, Default)]
pub struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    /// Per path: statuses to answer first, in order; then `ok`.
    script: Arc<Mutex<HashMap<String, Vec<u16>>>>,
}

impl Receiver {
    pub fn got(&self, path: &str) -> Vec<Got> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.path == path)
            .cloned()
            .collect()
    }
}

async fn receive(
    State(r): State<Receiver>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let path = format!("/{name}");
    r.got.lock().unwrap().push(Got {
        path: path.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body,
    });
    let next = {
        let mut s = r.script.lock().unwrap();
        s.get_mut(&path)
            .and_then(|v| (!v.is_empty()).then(|| v.remove(0)))
    };
    let ok = if name.starts_with("push") { 201 } else { 200 };
    StatusCode::from_u16(next.unwrap_or(ok)).unwrap()
}

/// An HTTP receiver on loopback (webhooks at `/{name}`, push at `/push…`).
pub async fn receiver(script: &[(&str, &[u16])]) -> (String, Receiver) {
    let r = Receiver::default();
    for (p, s) in script {
        r.script.lock().unwrap().insert(p.to_string(), s.to_vec());
    }
    let app = axum::Router::new()
        .route("/{name}", post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), r)
}

/// HMAC-SHA256 written out (RFC 2104), independent of the server's ring.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> String {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    hex::encode(
        Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize(),
    )
}

/// Whether the signature is HMAC-SHA256(secret, "{timestamp}.{raw body}").
pub fn signature_ok(g: &Got, secret: &str) -> bool {
    let mut msg = g.headers["x-tv-timestamp"].as_bytes().to_vec();
    msg.push(b'.');
    msg.extend_from_slice(&g.body);
    g.headers["x-tv-signature"] == format!("v1={}", hmac_sha256(secret.as_bytes(), &msg))
}

/// What a webhook receiver must check: signature over the raw body,
/// timestamp within 5 minutes, delivery id present and equal to the body's.
pub fn verify_webhook(g: &Got, secret: &str) -> Value {
    assert!(signature_ok(g, secret), "signature");
    let ts = &g.headers["x-tv-timestamp"];
    let age = now_ms() / 1000 - ts.parse::<i64>().unwrap();
    assert!((-300..=300).contains(&age), "timestamp {age} s away");
    assert_eq!(g.headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&g.body).unwrap();
    assert_eq!(body["delivery_id"], g.headers["x-tv-delivery"].as_str());
    body
}

pub fn hook(name: &str, url: String, secret: &str) -> WebhookConfig {
    WebhookConfig {
        name: name.into(),
        url,
        secret: secret.into(),
        secret_file: String::new(),
    }
}

pub fn push_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/push")
}

/// Runs `node push.js mode` with `input` on stdin.
pub fn node_push(mode: &str, input: &str) -> Result<Value, String> {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "Node.js is missing: the Web Push test decrypts with an independent implementation \
         (http_ece) on Node.js 20 or later. Install it (apt-get install nodejs npm), then run \
         `make setup-node-push`."
    );
    assert!(
        push_dir().join("node_modules/http_ece").is_dir(),
        "{} has no node_modules: run `make setup-node-push` (npm ci --prefix ingest-server/tests/push)",
        push_dir().display()
    );
    let mut child = Command::new("node")
        .arg(push_dir().join("push.js"))
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

/// One message an SMTP server took: AUTH PLAIN token (decoded), MAIL FROM,
/// RCPT TO, the data (dot-stuffing undone), and whether the session was
/// under TLS by then.
#[derive(Debug, Clone)]
pub struct Mail {
    pub auth: String,
    pub from: String,
    pub to: String,
    pub data: String,
    pub tls: bool,
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// The server side of SMTP, enough for one client: EHLO, STARTTLS (when
/// `tls` is given; then AUTH is refused before the upgrade), AUTH PLAIN,
/// MAIL, RCPT, DATA, QUIT. Each message arrives on `tx`.
pub async fn smtp_server(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tx: tokio::sync::mpsc::UnboundedSender<Mail>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    loop {
        let (sock, _) = listener.accept().await.unwrap();
        let (tx, tls) = (tx.clone(), tls.clone());
        tokio::spawn(async move {
            let mut io: BufReader<Box<dyn Io>> = BufReader::new(Box::new(sock));
            io.get_mut()
                .write_all(b"220 test.local ESMTP\r\n")
                .await
                .unwrap();
            let mut m = Mail {
                auth: String::new(),
                from: String::new(),
                to: String::new(),
                data: String::new(),
                tls: false,
            };
            loop {
                let mut line = String::new();
                if io.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let cmd = line.trim_end().to_string();
                let upper = cmd.to_ascii_uppercase();
                let reply: &[u8] = if upper.starts_with("EHLO") {
                    if tls.is_some() && !m.tls {
                        b"250-test.local\r\n250 STARTTLS\r\n"
                    } else {
                        b"250-test.local\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n"
                    }
                } else if upper == "STARTTLS" && tls.is_some() && !m.tls {
                    io.get_mut().write_all(b"220 go ahead\r\n").await.unwrap();
                    let plain = std::mem::replace(
                        &mut io,
                        BufReader::new(Box::new(tokio::io::duplex(1).0)),
                    );
                    let Ok(stream) = tls.as_ref().unwrap().accept(plain.into_inner()).await else {
                        return;
                    };
                    io = BufReader::new(Box::new(stream));
                    m.tls = true;
                    continue;
                } else if let Some(t) = cmd.strip_prefix("AUTH PLAIN ") {
                    if tls.is_some() && !m.tls {
                        b"530 5.7.0 STARTTLS first\r\n"
                    } else {
                        m.auth = String::from_utf8(
                            base64::engine::general_purpose::STANDARD.decode(t).unwrap(),
                        )
                        .unwrap();
                        b"235 2.7.0 ok\r\n"
                    }
                } else if upper.starts_with("MAIL FROM:") {
                    m.from = cmd[10..].to_string();
                    b"250 ok\r\n"
                } else if upper.starts_with("RCPT TO:") {
                    m.to = cmd[8..].to_string();
                    b"250 ok\r\n"
                } else if upper == "DATA" {
                    io.get_mut().write_all(b"354 go on\r\n").await.unwrap();
                    m.data.clear();
                    loop {
                        let mut l = String::new();
                        io.read_line(&mut l).await.unwrap();
                        if l == ".\r\n" {
                            break;
                        }
                        m.data.push_str(l.strip_prefix('.').unwrap_or(&l));
                    }
                    tx.send(m.clone()).unwrap();
                    b"250 queued\r\n"
                } else if upper == "QUIT" {
                    let _ = io.get_mut().write_all(b"221 bye\r\n").await;
                    return;
                } else {
                    b"502 not here\r\n"
                };
                io.get_mut().write_all(reply).await.unwrap();
            }
        });
    }
}

/// A private CA and a certificate for 127.0.0.1 signed by it (the
/// `openssl` command), as (CA file, acceptor for the server side).
pub fn tls_for_loopback(dir: &Path) -> (String, tokio_rustls::TlsAcceptor) {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("openssl is needed for this test: {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=IOC test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "smtp.key",
        "-out",
        "smtp.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "smtp.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "smtp.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let certs = CertificateDer::pem_file_iter(dir.join("smtp.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("smtp.key")).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    (
        dir.join("ca.pem").display().to_string(),
        tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
    )
}

/// `=?UTF-8?B?…?=` words (folded) back to text.
pub fn decode_words(v: &str) -> String {
    let mut out = Vec::new();
    for w in v.split_whitespace() {
        let b = w
            .strip_prefix("=?UTF-8?B?")
            .and_then(|w| w.strip_suffix("?="))
            .unwrap_or_else(|| panic!("not an encoded word: {w}"));
        out.extend(base64::engine::general_purpose::STANDARD.decode(b).unwrap());
    }
    String::from_utf8(out).unwrap()
}

/// A plain HTTP GET with a bearer token.
pub fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_string(),
    )
}
