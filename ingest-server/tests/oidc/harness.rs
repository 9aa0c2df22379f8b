//! What the OpenID Connect tests share (`tests/sso.rs`,
//! `tests/citizen_sso.rs`, each with `#[path = "oidc/harness.rs"] mod
//! harness;`): the real provider of `provider.js` on Node.js, and a minimal
//! cookie-keeping browser.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_rustls::rustls;
use url::Url;

/// The Node.js provider, stopped when dropped.
pub struct Provider {
    child: Child,
    /// Its issuer identifier (`http://127.0.0.1:{port}`).
    pub issuer: String,
    _log_dir: tempfile::TempDir,
    log: PathBuf,
}

pub fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

impl Provider {
    /// Starts one with the options of `provider.js` (`port` among them).
    pub fn start(opts: Value) -> Provider {
        let node = Command::new("node").arg("--version").output();
        assert!(
            node.as_ref().is_ok_and(|o| o.status.success()),
            "Node.js is missing: the single sign-on tests run a real OpenID Connect provider \
             (oidc-provider) on Node.js 20 or later. Install it (apt-get install nodejs npm), \
             then run `make setup-node`."
        );
        assert!(
            oidc_dir().join("node_modules/oidc-provider").is_dir(),
            "{} has no node_modules: run `make setup-node` \
             (npm ci --prefix ingest-server/tests/oidc)",
            oidc_dir().display()
        );
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("provider.log");
        let mut child = Command::new("node")
            .arg(oidc_dir().join("provider.js"))
            .arg(opts.to_string())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = BufReader::new(stdout);
            let mut line = String::new();
            let _ = out.read_line(&mut line);
            let _ = tx.send(line);
            // Keep reading: the provider logs to stdout, and a closed
            // pipe would kill it (EPIPE).
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let Some(issuer) = line.trim().strip_prefix("ready ") else {
            let _ = child.kill();
            panic!(
                "the OpenID provider did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Provider {
            issuer: issuer.to_string(),
            child,
            _log_dir: log_dir,
            log,
        }
    }

    /// How the next ID tokens are spoiled (see provider.js).
    pub fn tamper(&self, b: &mut Browser, mode: &str) {
        let r = b.get(&format!("{}/__test/tamper?mode={mode}", self.issuer));
        assert_eq!(r.status, 200, "{}", r.body);
    }

    pub fn stats(&self, b: &mut Browser) -> Value {
        serde_json::from_str(&b.get(&format!("{}/__test/stats", self.issuer)).body).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// From `login_url` (our sign-in link) through this provider's login
    /// as `account` (the JSON interaction; `password` when the account has
    /// one): the callback URL the provider sends the browser to (not yet
    /// visited). `edit` may change the authorization request on its way.
    pub fn through(
        &self,
        b: &mut Browser,
        login_url: &str,
        account: &str,
        password: Option<&str>,
        edit: impl FnOnce(String) -> String,
    ) -> String {
        let r = b.get(login_url);
        assert_eq!(r.status, 303, "{}", r.body);
        let mut next = edit(r.location());
        loop {
            assert!(
                next.starts_with(&self.issuer),
                "left the provider too early: {next}"
            );
            let r = b.get(&next);
            assert_eq!(r.status, 303, "{next}: {}\n{}", r.body, self.log());
            next = r.location();
            if next.starts_with(&format!("{}/interaction/", self.issuer)) {
                let r = b.get(&next);
                assert_eq!(r.status, 200, "interaction: {}", r.body);
                assert_eq!(
                    serde_json::from_str::<Value>(&r.body).unwrap()["prompt"],
                    "login"
                );
                let mut form = vec![("login", account)];
                form.extend(password.map(|p| ("password", p)));
                let r = b.post_form(&format!("{next}/login"), &form);
                assert_eq!(r.status, 303, "login: {}", r.body);
                next = r.location();
            }
            if !next.starts_with(&self.issuer) {
                return next;
            }
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal browser: one request per connection, a cookie jar per
/// host:port, redirects followed by the caller, TLS with the given roots.
#[derive(Default)]
pub struct Browser {
    /// Cookies per `host:port` (paths are not kept apart).
    pub jar: HashMap<String, Vec<(String, String)>>,
    /// Roots for `https://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

#[derive(Debug)]
pub struct Resp {
    pub url: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The redirect target, absolute.
    pub fn location(&self) -> String {
        let loc = self
            .header("location")
            .unwrap_or_else(|| panic!("no Location in {self:?}"));
        Url::parse(&self.url)
            .unwrap()
            .join(loc)
            .unwrap()
            .to_string()
    }
}

impl Browser {
    pub fn get(&mut self, url: &str) -> Resp {
        self.request("GET", url, None)
    }

    pub fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> Resp {
        self.request("POST", url, Some(form))
    }

    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        let u = Url::parse(url).unwrap();
        let key = format!("{}:{}", u.host_str()?, u.port_or_known_default()?);
        self.jar
            .get(&key)?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    pub fn request(&mut self, method: &str, url: &str, form: Option<&[(&str, &str)]>) -> Resp {
        let u = Url::parse(url).unwrap();
        let host = u.host_str().unwrap().to_string();
        let port = u.port_or_known_default().unwrap();
        let key = format!("{host}:{port}");
        let body = form
            .map(|f| {
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(f)
                    .finish()
            })
            .unwrap_or_default();
        let mut target = u.path().to_string();
        if let Some(q) = u.query() {
            target = format!("{target}?{q}");
        }
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {key}\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        if form.is_some() {
            head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        if let Some(c) = self.jar.get(&key).filter(|c| !c.is_empty()) {
            let line: Vec<String> = c.iter().map(|(k, v)| format!("{k}={v}")).collect();
            head.push_str(&format!("Cookie: {}\r\n", line.join("; ")));
        }
        head.push_str("\r\n");
        let mut raw = Vec::new();
        let tcp = TcpStream::connect((host.as_str(), port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        if u.scheme() == "https" {
            let cfg = self
                .tls
                .clone()
                .expect("no TLS roots given to this browser");
            let name = rustls::pki_types::ServerName::try_from(host.clone()).unwrap();
            let conn = rustls::ClientConnection::new(cfg, name).unwrap();
            let mut s = rustls::StreamOwned::new(conn, tcp);
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(body.as_bytes()).unwrap();
            // A peer that closes without close_notify ends the read with an error.
            let _ = s.read_to_end(&mut raw);
        } else {
            let mut s = tcp;
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(body.as_bytes()).unwrap();
            s.read_to_end(&mut raw).unwrap();
        }
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP answer from {url}"));
        let text = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut lines = text.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
        }) {
            body = dechunk(&body);
        }
        let resp = Resp {
            url: url.to_string(),
            status,
            headers,
            body: String::from_utf8_lossy(&body).to_string(),
        };
        let jar = self.jar.entry(key).or_default();
        for c in resp.set_cookies() {
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let attrs = attrs.to_ascii_lowercase();
            jar.retain(|(name, _)| name != k.trim());
            let gone = v.is_empty()
                || attrs.contains("max-age=0")
                || attrs.contains("expires=thu, 01 jan 1970");
            if !gone {
                jar.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        resp
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
    out
}
