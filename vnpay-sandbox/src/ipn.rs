//! The sandbox's one outgoing call: the IPN, `GET` over plain HTTP/1.1 to
//! the merchant (the sandbox only ever talks to a merchant on the same
//! machine or network; no TLS), with a 10 s limit.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// `GET url`: (status, body).
pub(crate) async fn get(url: &str) -> Result<(u16, String), String> {
    let u = url::Url::parse(url).map_err(|e| format!("`{url}`: {e}"))?;
    if u.scheme() != "http" {
        return Err(format!("`{url}`: the sandbox calls http:// only"));
    }
    let host = u
        .host_str()
        .ok_or_else(|| format!("`{url}`: no host"))?
        .to_string();
    let port = u.port_or_known_default().unwrap_or(80);
    let mut target = u.path().to_string();
    if let Some(q) = u.query() {
        target.push('?');
        target.push_str(q);
    }
    let work = async {
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::builder()
            .method("GET")
            .uri(target)
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .header(hyper::header::USER_AGENT, "vnpay-sandbox")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let result = async {
            let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = res.status().as_u16();
            let body = Limited::new(res.into_body(), 64 << 10)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        }
        .await;
        driver.abort();
        result
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| format!("GET {url}: no answer within 10 s"))?
}
