//! The one HTTP client the server uses for its own outgoing calls: to the
//! identity provider (single sign-on), to push services and partner apps
//! (notices), and to the payment gateway's merchant API (reconciliation).
//! One request per connection, HTTP/1.1 over TLS (rustls with the system's
//! roots plus an optional CA file) or, on a loopback host only, plain HTTP
//! (tests, the demo's stand-ins, a local relay). A client may present a
//! certificate of its own (mutual TLS: the owner registry's gateway); the
//! others call with none.
//!
//! Why not a general client crate: hyper, rustls and the roots loader are
//! already in the build (axum, rumqttc), so this costs no compile time; each
//! call goes to one known server, so there is nothing to pool. Redirects are
//! never followed (every address is configured or given by a signed
//! document); every call has a time limit and a cap on the answer it reads.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use url::{Host, Url};

/// How much of an answer is read and how long a call may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest answer body read.
    pub max_body: usize,
    /// Longest a call may take, connection and TLS included.
    pub timeout: Duration,
    /// When only the status matters: a body that is too long or cut off is
    /// dropped instead of failing the call.
    pub status_only: bool,
}

/// An answer.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, empty when absent.
    pub content_type: String,
    /// The body (empty when dropped under [`Limits::status_only`]).
    pub body: Bytes,
}

/// A certificate and private key this client presents to the server
/// (mutual TLS), both PEM files.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// The certificate chain, leaf first.
    pub cert_file: String,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
}

/// Why a call got no usable answer; [`Client::request`] gives the same as
/// text. The kind tells a caller that retries what is worth retrying.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The URL cannot be called (scheme, host, port): a configuration
    /// error, never worth retrying.
    #[error("{0}")]
    Address(String),
    /// No connection, TLS failed, or the connection broke before a whole
    /// answer came.
    #[error("{0}")]
    Connection(String),
    /// No answer within the time limit.
    #[error("{0}")]
    Timeout(String),
    /// The answer's body is longer than [`Limits::max_body`].
    #[error("{0}")]
    TooLarge(String),
}

impl CallError {
    /// Whether trying again may help (connection and time limit).
    pub fn is_transient(&self) -> bool {
        matches!(self, CallError::Connection(_) | CallError::Timeout(_))
    }
}

/// A client: its TLS configuration built once (or why it could not be).
pub struct Client {
    tls: Result<TlsConnector, String>,
    limits: Limits,
}

impl Client {
    /// Trusting the system's roots and the certificates of `ca_file`
    /// (empty: none).
    pub fn new(ca_file: &str, limits: Limits) -> Client {
        Client {
            tls: connector(client_config(ca_file)),
            limits,
        }
    }

    /// Like [`Client::new`], presenting `identity` to servers that ask for a
    /// client certificate. Unlike `new`, a CA file or identity that cannot
    /// be loaded is an error here, not at the first call.
    pub fn with_identity(
        ca_file: &str,
        identity: &ClientIdentity,
        limits: Limits,
    ) -> Result<Client, String> {
        let tls = connector(client_config_with_identity(ca_file, Some(identity)))?;
        Ok(Client {
            tls: Ok(tls),
            limits,
        })
    }

    /// `method url` with `headers` and an optional body. `Err` is a failure
    /// to get an answer at all (address, connection, TLS, time limit).
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Option<Bytes>,
    ) -> Result<Answer, String> {
        self.send(method, url, headers, body)
            .await
            .map_err(|e| e.to_string())
    }

    /// [`Client::request`] with the kind of failure kept.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Option<Bytes>,
    ) -> Result<Answer, CallError> {
        let bad = |m: String| CallError::Address(m);
        let u = Url::parse(url).map_err(|e| bad(format!("`{url}`: {e}")))?;
        let tls = match u.scheme() {
            "https" => true,
            "http" if is_loopback(&u) => false,
            _ => {
                return Err(bad(format!("`{url}`: only https:// (http:// on loopback)")));
            }
        };
        let port = u
            .port_or_known_default()
            .ok_or_else(|| bad(format!("`{url}`: no port")))?;
        let name = match u.host() {
            Some(Host::Domain(d)) => d.to_string(),
            Some(Host::Ipv4(a)) => a.to_string(),
            Some(Host::Ipv6(a)) => a.to_string(),
            None => return Err(bad(format!("`{url}`: no host"))),
        };
        let mut target = u.path().to_string();
        if let Some(q) = u.query() {
            target.push('?');
            target.push_str(q);
        }
        let host_header = match u.port() {
            Some(p) => format!("{}:{p}", u.host_str().unwrap_or_default()),
            None => u.host_str().unwrap_or_default().to_string(),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(target)
            .header(HOST, host_header)
            .header(
                USER_AGENT,
                concat!("ingest-server/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(b) = &body {
            req = req.header(CONTENT_LENGTH, b.len());
        }
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| bad(format!("`{url}`: {e}")))?;
        let limits = self.limits;
        let work = async {
            let tcp = tokio::net::TcpStream::connect((name.as_str(), port))
                .await
                .map_err(|e| {
                    CallError::Connection(format!("cannot connect to {name}:{port}: {e}"))
                })?;
            if !tls {
                return exchange(tcp, req, limits).await;
            }
            let connector = self
                .tls
                .as_ref()
                .map_err(|e| CallError::Address(e.clone()))?;
            let server = match name.parse::<IpAddr>() {
                Ok(ip) => ServerName::IpAddress(ip.into()),
                Err(_) => ServerName::try_from(name.clone()).map_err(|e| {
                    CallError::Address(format!("`{name}` is not a TLS server name: {e}"))
                })?,
            };
            let stream = connector
                .connect(server, tcp)
                .await
                .map_err(|e| CallError::Connection(format!("TLS with {name}:{port}: {e}")))?;
            exchange(stream, req, limits).await
        };
        let within = match limits.timeout.as_secs() {
            0 => format!("{} ms", limits.timeout.as_millis()),
            s => format!("{s} s"),
        };
        let prefix = |m: String| format!("{method} {url}: {m}");
        match tokio::time::timeout(limits.timeout, work).await {
            Err(_) => Err(CallError::Timeout(prefix(format!(
                "no answer within {within}"
            )))),
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(CallError::Address(m))) => Err(CallError::Address(prefix(m))),
            Ok(Err(CallError::Connection(m))) => Err(CallError::Connection(prefix(m))),
            Ok(Err(CallError::Timeout(m))) => Err(CallError::Timeout(prefix(m))),
            Ok(Err(CallError::TooLarge(m))) => Err(CallError::TooLarge(prefix(m))),
        }
    }
}

fn connector(cfg: Result<ClientConfig, String>) -> Result<TlsConnector, String> {
    cfg.map(|mut cfg| {
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsConnector::from(Arc::new(cfg))
    })
}

/// One request over an open connection.
async fn exchange<S>(io: S, req: Request<Full<Bytes>>, limits: Limits) -> Result<Answer, CallError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let broken = |e: hyper::Error| CallError::Connection(with_causes(&e));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(broken)?;
    let mut driver = tokio::spawn(conn);
    let result = async {
        let res = match sender.send_request(req).await {
            Ok(res) => res,
            Err(e) => {
                // When the connection died first (a TLS alert after the
                // handshake, say), its own error says why; the request's
                // only says that it could not be sent.
                let conn = tokio::time::timeout(Duration::from_millis(100), &mut driver).await;
                return Err(match conn {
                    Ok(Ok(Err(conn_err))) => broken(conn_err),
                    _ => broken(e),
                });
            }
        };
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = Limited::new(res.into_body(), limits.max_body)
            .collect()
            .await
            .map(|b| b.to_bytes());
        let body = match body {
            Ok(b) => b,
            Err(_) if limits.status_only => Bytes::new(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(CallError::TooLarge(format!(
                    "reading the answer: longer than {} bytes",
                    limits.max_body
                )));
            }
            Err(e) => return Err(CallError::Connection(format!("reading the answer: {e}"))),
        };
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }
    .await;
    driver.abort();
    result
}

/// An error with its causes (`connection error: received fatal alert: …`):
/// hyper's own text names only the first.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// TLS client settings: the system's roots and `ca_file`'s certificates
/// (empty: none). Also used for SMTP's STARTTLS.
pub fn client_config(ca_file: &str) -> Result<ClientConfig, String> {
    client_config_with_identity(ca_file, None)
}

/// [`client_config`], presenting `identity` when given (mutual TLS).
pub fn client_config_with_identity(
    ca_file: &str,
    identity: Option<&ClientIdentity>,
) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if !ca_file.is_empty() {
        for cert in load_ca_file(ca_file)? {
            roots
                .add(cert)
                .map_err(|e| format!("ca_file `{ca_file}`: {e}"))?;
        }
    }
    if roots.is_empty() {
        return Err(
            "no trusted CA certificates: the system has none and ca_file is not set".into(),
        );
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some(id) => {
            let (certs, key) = load_identity(id)?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                format!(
                    "client certificate `{}` with key `{}`: {e}",
                    id.cert_file, id.key_file
                )
            })
        }
    }
}

/// The certificate chain and private key of `identity`.
pub fn load_identity(
    identity: &ClientIdentity,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let certs = load_ca_file(&identity.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&identity.key_file)
        .map_err(|e| format!("`{}`: no usable private key ({e})", identity.key_file))?;
    Ok((certs, key))
}

/// Whether a URL's host is a loopback address (`http://` is allowed only
/// there).
pub fn is_loopback(u: &Url) -> bool {
    match u.host() {
        Some(Host::Ipv4(a)) => a.is_loopback(),
        Some(Host::Ipv6(a)) => a.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The certificates of a PEM file (at least one).
pub fn load_ca_file(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("`{path}`: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("`{path}`: {e}"))?;
    if certs.is_empty() {
        return Err(format!("`{path}`: no PEM certificate in it"));
    }
    Ok(certs)
}
