//! The small HTTP client single sign-on needs to talk to the identity
//! provider: GET (discovery, keys, userinfo) and a form POST (the token
//! endpoint), one request per connection, HTTP/1.1 over TLS (rustls, the
//! system's roots plus the client's `ca_file`) or, on loopback only, plain
//! HTTP.
//!
//! Why not a general client crate: hyper, rustls and the roots loader are
//! already in the build (axum, rumqttc), so this costs no new compile time;
//! and the provider is one known server, so there is nothing to pool.
//! Answers are capped at 1 MiB and every request at 15 s, redirects are not
//! followed (a provider's endpoints are given exactly by its discovery
//! document), and `http://` is refused for anything but a loopback host.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use url::{Host, Url};

/// Longest answer read (discovery, keys, tokens, userinfo).
const MAX_BODY: usize = 1 << 20;
/// Longest a request may take, connection and TLS included.
const TIMEOUT: Duration = Duration::from_secs(15);

/// An answer.
#[derive(Debug)]
pub(crate) struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, empty when absent.
    pub content_type: String,
    /// The body.
    pub body: Bytes,
}

/// The client: a TLS configuration built once (or why it could not be).
pub(crate) struct Client {
    tls: Result<TlsConnector, String>,
}

impl Client {
    /// A client trusting the system's roots and the certificates of
    /// `ca_file` (empty: none).
    pub(crate) fn new(ca_file: &str) -> Client {
        Client {
            tls: tls_connector(ca_file),
        }
    }

    /// `GET url`, with a bearer token when given.
    pub(crate) async fn get(&self, url: &str, bearer: Option<&str>) -> Result<Answer, String> {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        self.send("GET", url, auth, None).await
    }

    /// `POST url` with an `application/x-www-form-urlencoded` body and,
    /// when given, HTTP Basic client authentication (RFC 6749 §2.3.1: both
    /// parts form-encoded first).
    pub(crate) async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<Answer, String> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let auth = basic.map(|(id, secret)| {
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            format!(
                "Basic {}",
                BASE64.encode(format!("{}:{}", enc(id), enc(secret)))
            )
        });
        self.send("POST", url, auth, Some(Bytes::from(body))).await
    }

    async fn send(
        &self,
        method: &str,
        url: &str,
        authorization: Option<String>,
        form: Option<Bytes>,
    ) -> Result<Answer, String> {
        let u = Url::parse(url).map_err(|e| format!("`{url}`: {e}"))?;
        let tls = match u.scheme() {
            "https" => true,
            "http" if is_loopback(&u) => false,
            _ => return Err(format!("`{url}`: only https:// (http:// on loopback)")),
        };
        let port = u
            .port_or_known_default()
            .ok_or_else(|| format!("`{url}`: no port"))?;
        let (addr_host, name) = match u.host() {
            Some(Host::Domain(d)) => (d.to_string(), d.to_string()),
            Some(Host::Ipv4(a)) => (a.to_string(), a.to_string()),
            Some(Host::Ipv6(a)) => (a.to_string(), a.to_string()),
            None => return Err(format!("`{url}`: no host")),
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
            )
            .header(ACCEPT, "application/json");
        if let Some(a) = authorization {
            req = req.header(AUTHORIZATION, a);
        }
        if form.is_some() {
            req = req.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let req = req
            .body(Full::new(form.unwrap_or_default()))
            .map_err(|e| format!("`{url}`: {e}"))?;
        let work = async {
            let tcp = tokio::net::TcpStream::connect((addr_host.as_str(), port))
                .await
                .map_err(|e| format!("cannot connect to {name}:{port}: {e}"))?;
            if !tls {
                return exchange(tcp, req).await;
            }
            let connector = self.tls.as_ref().map_err(Clone::clone)?;
            let server = match name.parse::<IpAddr>() {
                Ok(ip) => ServerName::IpAddress(ip.into()),
                Err(_) => ServerName::try_from(name.clone())
                    .map_err(|e| format!("`{name}` is not a TLS server name: {e}"))?,
            };
            let stream = connector
                .connect(server, tcp)
                .await
                .map_err(|e| format!("TLS with {name}:{port}: {e}"))?;
            exchange(stream, req).await
        };
        tokio::time::timeout(TIMEOUT, work)
            .await
            .map_err(|_| format!("{method} {url}: no answer within {} s", TIMEOUT.as_secs()))?
            .map_err(|e| format!("{method} {url}: {e}"))
    }
}

/// One request over an open connection.
async fn exchange<S>(io: S, req: Request<Full<Bytes>>) -> Result<Answer, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let res = sender.send_request(req).await.map_err(|e| e.to_string());
    let res = match res {
        Ok(r) => r,
        Err(e) => {
            driver.abort();
            return Err(e);
        }
    };
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = Limited::new(res.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| format!("reading the answer: {e}"));
    driver.abort();
    Ok(Answer {
        status,
        content_type,
        body: body?,
    })
}

/// rustls with the system's roots and `ca_file`'s certificates.
fn tls_connector(ca_file: &str) -> Result<TlsConnector, String> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
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
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(cfg)))
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
