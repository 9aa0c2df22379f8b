//! A minimal browser for the end-to-end tests: absolute `http://` URLs on
//! loopback, one request per connection (what a navigation is), a cookie jar
//! per `host:port`, forms url-encoded, redirects returned to the caller (who
//! follows them, asserting each step), chunked answers joined; and small
//! readers for the pages: CSRF tokens, a form's hidden fields, an element's
//! text.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Resp {
    /// The URL asked for.
    pub url: String,
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    /// The first header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The redirect target, made absolute against the URL asked for.
    pub fn location(&self) -> String {
        let loc = self
            .header("location")
            .unwrap_or_else(|| panic!("no Location in the answer from {}: {self:?}", self.url));
        absolute(&self.url, loc)
    }
}

/// `reference` resolved against `base` (absolute, origin-relative or
/// query-only references, which is all our servers send).
pub fn absolute(base: &str, reference: &str) -> String {
    if reference.starts_with("http://") || reference.starts_with("https://") {
        return reference.to_string();
    }
    let (origin, path) = split_origin(base);
    if reference.starts_with('/') {
        format!("{origin}{reference}")
    } else if reference.starts_with('?') {
        let path = path.split('?').next().unwrap_or("/");
        format!("{origin}{path}{reference}")
    } else {
        let dir = &path[..path.rfind('/').map(|i| i + 1).unwrap_or(0)];
        format!("{origin}{dir}{reference}")
    }
}

/// (`http://host:port`, `/path?query`) of an absolute URL.
pub fn split_origin(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http:// URL: {url}"));
    let cut = rest.find('/').unwrap_or(rest.len());
    let path = if cut == rest.len() { "/" } else { &rest[cut..] };
    (format!("http://{}", &rest[..cut]), path.to_string())
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Decodes one url-encoded value.
pub fn urldecode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The pairs of a query string (or a form body).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (urldecode(k), urldecode(v))
        })
        .collect()
}

/// A browser: a cookie jar per `host:port` (paths not kept apart).
#[derive(Default, Debug)]
pub struct Browser {
    pub jar: HashMap<String, Vec<(String, String)>>,
}

impl Browser {
    pub fn new() -> Browser {
        Browser::default()
    }

    pub fn get(&mut self, url: &str) -> Resp {
        self.request("GET", url, None)
    }

    pub fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> Resp {
        self.request("POST", url, Some(form))
    }

    /// The cookie `name` kept for `url`'s host and port.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        let (origin, _) = split_origin(url);
        let key = origin.trim_start_matches("http://");
        self.jar
            .get(key)?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// One request over a fresh connection.
    pub fn request(&mut self, method: &str, url: &str, form: Option<&[(&str, &str)]>) -> Resp {
        let (origin, target) = split_origin(url);
        let key = origin.trim_start_matches("http://").to_string();
        let body = form
            .map(|f| {
                f.iter()
                    .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
                    .collect::<Vec<_>>()
                    .join("&")
            })
            .unwrap_or_default();
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {key}\r\nConnection: close\r\n\
             Content-Length: {}\r\nAccept: text/html,application/json;q=0.9\r\n",
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
        let mut s = TcpStream::connect(&key).unwrap_or_else(|e| panic!("connect {key}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP answer from {method} {url}"));
        let text = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut lines = text.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("bad status line from {url}: {text}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut bytes = raw[split + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
        {
            bytes = dechunk(&bytes);
        }
        let jar = self.jar.entry(key).or_default();
        for (_, c) in headers.iter().filter(|(k, _)| k == "set-cookie") {
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            let attrs = attrs.to_ascii_lowercase();
            jar.retain(|(name, _)| name != k);
            let gone = v.is_empty()
                || attrs.contains("max-age=0")
                || attrs.contains("expires=thu, 01 jan 1970");
            if !gone {
                jar.push((k.to_string(), v.to_string()));
            }
        }
        Resp {
            url: url.to_string(),
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
    out
}

/// The value of the first `name="csrf"` input on a page.
pub fn csrf(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF token on the page:\n{page}"))
        + "name=\"csrf\" value=\"".len();
    page[at..at + page[at..].find('"').unwrap()].to_string()
}

/// The form with `id` on a page: its `action` and its inputs' names and
/// values (hidden and visible `<input>`s; not selects or text areas).
pub fn form(page: &str, id: &str) -> Option<(String, Vec<(String, String)>)> {
    let start = page.find(&format!("id=\"{id}\""))?;
    let open = page[..start].rfind("<form")?;
    let end = start + page[start..].find("</form>")?;
    let tag_end = open + page[open..].find('>')?;
    let action = attr(&page[open..tag_end], "action").unwrap_or_default();
    let inputs = page[open..end]
        .split("<input")
        .skip(1)
        .filter_map(|input| {
            let tag = &input[..input.find('>').unwrap_or(input.len())];
            Some((attr(tag, "name")?, attr(tag, "value").unwrap_or_default()))
        })
        .collect();
    Some((html_unescape(&action), inputs))
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    Some(html_unescape(&tag[at..at + tag[at..].find('"')?]))
}

/// Undoes the escapes our pages use.
pub fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The text inside the element with `id` (tags stripped, entities undone,
/// whitespace collapsed).
pub fn text_of(page: &str, id: &str) -> Option<String> {
    let at = page.find(&format!("id=\"{id}\""))?;
    let open_end = at + page[at..].find('>')? + 1;
    let tag_start = page[..at].rfind('<')?;
    let tag = page[tag_start + 1..]
        .split(|c: char| c.is_whitespace() || c == '>')
        .next()?;
    let close = format!("</{tag}>");
    // Nested elements of the same tag are not expected where this is used.
    let end = open_end + page[open_end..].find(&close)?;
    let mut text = String::new();
    let mut in_tag = false;
    for c in page[open_end..end].chars() {
        match c {
            '<' => {
                in_tag = true;
                text.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    Some(
        html_unescape(&text)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_forms() {
        assert_eq!(
            absolute("http://127.0.0.1:1/app/sso/login", "/app/"),
            "http://127.0.0.1:1/app/"
        );
        assert_eq!(
            absolute("http://127.0.0.1:1/a/b?x=1", "?y=2"),
            "http://127.0.0.1:1/a/b?y=2"
        );
        assert_eq!(absolute("http://h:1/a/b", "c"), "http://h:1/a/c");
        assert_eq!(urldecode(&urlencode("a b&c=đ%")), "a b&c=đ%");
        assert_eq!(
            query_pairs("a=1&b=x%20y+z"),
            vec![("a".into(), "1".into()), ("b".into(), "x y z".into())]
        );
        let page = "<p><form method=\"post\" action=\"/x?a=1&amp;b=2\" id=\"f\">\
                    <input type=\"hidden\" name=\"csrf\" value=\"t0k\"><input name=\"n\">\
                    <button>go</button></form><td id=\"state\">Đã <b>nộp</b>\n phạt</td>";
        let (action, fields) = form(page, "f").unwrap();
        assert_eq!(action, "/x?a=1&b=2");
        assert_eq!(
            fields,
            vec![("csrf".into(), "t0k".into()), ("n".into(), String::new())]
        );
        assert_eq!(csrf(page), "t0k");
        assert_eq!(text_of(page, "state").unwrap(), "Đã nộp phạt");
    }
}
