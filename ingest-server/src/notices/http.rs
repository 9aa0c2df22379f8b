//! The HTTP client the push and webhook channels post with: one POST per
//! connection, HTTP/1.1 over TLS (rustls, the system's roots plus
//! `notices.ca_file`) or, on loopback only, plain HTTP (tests, a local
//! relay). The same shape as the single sign-on client (`src/sso/http.rs`,
//! private to that module): hyper and rustls are already in the build, so
//! this costs no compile time, and a receiver is one known server per
//! request, so there is nothing to pool.
//!
//! Requests time out after 15 s; redirects are not followed (a receiver's
//! address is configured or given by the push subscription); at most
//! 64 KiB of an answer is read (only its status matters).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{CONTENT_LENGTH, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use url::{Host, Url};

const MAX_ANSWER: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(15);

/// An answer: status and (the start of) the body.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body, cut at 64 KiB.
    pub body: Bytes,
}

/// A client; its TLS configuration is built once.
pub struct Client {
    tls: Result<TlsConnector, String>,
}

impl Client {
    /// Trusting the system's roots and `ca_file`'s certificates (empty:
    /// none).
    pub fn new(ca_file: &str) -> Client {
        Client {
            tls: connector(ca_file),
        }
    }

    /// `POST url` with `headers` and `body`. `Err` is a failure to get any
    /// answer (connection, TLS, timeout): worth retrying.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Answer, String> {
        let u = Url::parse(url).map_err(|e| format!("`{url}`: {e}"))?;
        let tls = match u.scheme() {
            "https" => true,
            "http" if super::config::loopback_host(u.host_str().unwrap_or_default()) => false,
            _ => return Err(format!("`{url}`: only https:// (http:// on loopback)")),
        };
        let port = u
            .port_or_known_default()
            .ok_or_else(|| format!("`{url}`: no port"))?;
        let name = match u.host() {
            Some(Host::Domain(d)) => d.to_string(),
            Some(Host::Ipv4(a)) => a.to_string(),
            Some(Host::Ipv6(a)) => a.to_string(),
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
            .method("POST")
            .uri(target)
            .header(HOST, host_header)
            .header(
                USER_AGENT,
                concat!("ingest-server/", env!("CARGO_PKG_VERSION")),
            )
            .header(CONTENT_LENGTH, body.len());
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| format!("`{url}`: {e}"))?;
        let work = async {
            let tcp = tokio::net::TcpStream::connect((name.as_str(), port))
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
            .map_err(|_| format!("POST {url}: no answer within {} s", TIMEOUT.as_secs()))?
            .map_err(|e| format!("POST {url}: {e}"))
    }
}

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
    let res = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => {
            driver.abort();
            return Err(e.to_string());
        }
    };
    let status = res.status().as_u16();
    // The status is the answer; a body that is cut off or too long
    // does not change it.
    let body = Limited::new(res.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    driver.abort();
    Ok(Answer { status, body })
}

/// TLS client settings for a CA file (the system's roots in any case).
pub(crate) fn client_config(ca_file: &str) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if !ca_file.is_empty() {
        for cert in crate::sso::load_ca_file(ca_file)? {
            roots
                .add(cert)
                .map_err(|e| format!("notices.ca_file `{ca_file}`: {e}"))?;
        }
    }
    if roots.is_empty() {
        return Err("no trusted CA certificates (the system has none; set notices.ca_file)".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn connector(ca_file: &str) -> Result<TlsConnector, String> {
    let mut cfg = client_config(ca_file)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(cfg)))
}
