//! The citizen's browser for `tests/payments.rs`: one request per
//! connection over loopback (what a navigation is), answers read whole
//! (chunked bodies joined), and small readers for the sandbox's pay page
//! (its forms) and the server's return page (the result it shows).

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// A request over a fresh connection (what a browser's navigation is).
pub async fn http(addr: SocketAddr, method: &str, target: &str, form: &[(&str, &str)]) -> Resp {
    let body = serde_urlencoded::to_string(form).unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if method == "POST" {
        head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let raw = &out[split + 4..];
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v == "chunked")
    {
        dechunk(raw)
    } else {
        raw.to_vec()
    };
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[line_end + 2..line_end + 2 + size]);
        b = &b[line_end + 2 + size + 2..];
    }
}

/// (address, path and query) of an absolute `http://` URL.
fn split_url(url: &str) -> (SocketAddr, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    (host.parse().unwrap(), path.to_string())
}

pub async fn get_url(url: &str) -> Resp {
    let (addr, target) = split_url(url);
    http(addr, "GET", &target, &[]).await
}

/// The hidden fields of the form with `id` on a page.
pub fn form_fields(page: &str, id: &str) -> Vec<(String, String)> {
    let start = page
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no form {id} in {page}"));
    let form = &page[start..start + page[start..].find("</form>").unwrap()];
    form.split("<input")
        .skip(1)
        .map(|input| {
            let attr = |name: &str| {
                let at = input.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                input[at..at + input[at..].find('"').unwrap()].to_string()
            };
            (attr("name"), attr("value"))
        })
        .collect()
}

/// The result shown on the return page (`ok`, `wait`, `fail`).
pub fn shown(page: &Resp) -> String {
    let at = page.body.find("data-state=\"").expect("a result page") + 12;
    page.body[at..at + page.body[at..].find('"').unwrap()].to_string()
}
