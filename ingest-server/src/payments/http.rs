//! The one outgoing call payments make: a JSON `POST` to the gateway's
//! merchant API (VNPay's `querydr`), HTTP/1.1, one request per connection,
//! over TLS with the system's roots, or plain HTTP to a loopback host only
//! (the sandbox in tests and the demo).
//!
//! Why not the single sign-on client or a client crate: that one is private
//! to `sso` and speaks forms; hyper and rustls are already in the build, so
//! this costs no compile time. Answers are capped at 256 KiB, a request at
//! 20 s, redirects are not followed.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use url::{Host, Url};

const MAX_BODY: usize = 256 << 10;
const TIMEOUT: Duration = Duration::from_secs(20);

/// An answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// The client: a TLS configuration built once (or why it could not be).
pub(crate) struct Client {
    tls: Result<TlsConnector, String>,
}

impl Client {
    pub(crate) fn new() -> Client {
        Client { tls: tls() }
    }

    /// `POST url` with a JSON body.
    pub(crate) async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<Answer, String> {
        let u = Url::parse(url).map_err(|e| format!("`{url}`: {e}"))?;
        let secure = match u.scheme() {
            "https" => true,
            "http" if crate::sso::is_loopback(&u) => false,
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
        let req = Request::builder()
            .method("POST")
            .uri(target)
            .header(HOST, host_header)
            .header(
                USER_AGENT,
                concat!("ingest-server/", env!("CARGO_PKG_VERSION")),
            )
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| format!("`{url}`: {e}"))?;
        let work = async {
            let tcp = tokio::net::TcpStream::connect((name.as_str(), port))
                .await
                .map_err(|e| format!("cannot connect to {name}:{port}: {e}"))?;
            if !secure {
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
    let result = async {
        let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let body = Limited::new(res.into_body(), MAX_BODY)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| format!("reading the answer: {e}"))?;
        Ok(Answer { status, body })
    }
    .await;
    driver.abort();
    result
}

fn tls() -> Result<TlsConnector, String> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if roots.is_empty() {
        return Err("no trusted CA certificates on this system".into());
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
