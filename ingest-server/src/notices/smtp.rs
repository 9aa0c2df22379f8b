//! E-mail to owners who have an address in the registry: a small async
//! SMTP client (RFC 5321) that speaks EHLO, STARTTLS (RFC 3207, through
//! tokio-rustls), AUTH PLAIN (RFC 4616), MAIL, RCPT and DATA to one relay,
//! and the message (RFC 5322) with a UTF-8 subject and names as RFC 2047
//! encoded words and a UTF-8 body in base64.
//!
//! Why our own: the relay is one known server and the message one plain
//! text; `lettre` would bring its own TLS and MIME stacks into the build for
//! that. STARTTLS is required unless the relay is on loopback (a local MTA,
//! tests); the password is never sent before TLS.
//!
//! Outcomes: a 5xx answer to RCPT or to the end of DATA gives the delivery
//! up (the address or the message is refused); anything else that fails
//! (connection, 4xx, authentication, a relay that offers no STARTTLS) is
//! retried, so a relay outage or a wrong password fixed later still gets
//! the notices out. The Message-ID is the delivery's idempotency key, the
//! same on every retry, so mail systems and clients can drop a duplicate.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use super::channel::{self, Channel, Job, Outcome};
use super::config::SmtpConfig;

/// The time limit of one whole SMTP transaction (connect to QUIT). The
/// delivery lease (`notices.lease_s`) must be longer:
/// `config::MIN_LEASE_S` is derived from it.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// A message to send.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Sender address.
    pub from: String,
    /// Sender display name (UTF-8).
    pub from_name: String,
    /// Recipient address.
    pub to: String,
    /// Recipient name (UTF-8), may be empty.
    pub to_name: String,
    /// Subject (UTF-8).
    pub subject: String,
    /// Plain-text body (UTF-8, `\n` line ends).
    pub body: String,
    /// Message-ID without brackets (`key@domain`).
    pub message_id: String,
    /// Date, Unix ms.
    pub date_ms: i64,
    /// `X-TV-Delivery`.
    pub delivery: String,
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpError {
    /// Try again later.
    Transient(String),
    /// The relay refused the recipient or the message for good.
    Permanent(String),
}

/// `text` as RFC 2047 encoded words (`=?UTF-8?B?…?=`), each at most 75
/// characters, folded onto continuation lines.
pub fn encode_word(text: &str) -> String {
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        // 45 bytes of UTF-8 are 60 characters of base64: 72 with the frame.
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", B64.encode(&chunk)));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() || words.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", B64.encode(&chunk)));
    }
    words.join("\r\n ")
}

/// The message as sent after DATA (CRLF line ends, no dot-stuffing yet).
pub fn format_message(m: &Mail) -> String {
    let date = OffsetDate(m.date_ms).to_string();
    let to = if m.to_name.is_empty() {
        format!("<{}>", m.to)
    } else {
        format!("{} <{}>", encode_word(&m.to_name), m.to)
    };
    let body_b64 = B64.encode(m.body.replace('\n', "\r\n"));
    let mut out = String::new();
    for (k, v) in [
        (
            "From",
            format!("{} <{}>", encode_word(&m.from_name), m.from),
        ),
        ("To", to),
        ("Subject", encode_word(&m.subject)),
        ("Date", date),
        ("Message-ID", format!("<{}>", m.message_id)),
        ("MIME-Version", "1.0".into()),
        ("Content-Type", "text/plain; charset=UTF-8".into()),
        ("Content-Transfer-Encoding", "base64".into()),
        ("Auto-Submitted", "auto-generated".into()),
        ("X-TV-Delivery", m.delivery.clone()),
    ] {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    for line in body_b64.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

/// RFC 5322 date in Vietnam time.
struct OffsetDate(i64);

impl std::fmt::Display for OffsetDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fmt = time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
        );
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
            .to_offset(super::text::VN);
        f.write_str(&t.format(&fmt).map_err(|_| std::fmt::Error)?)
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Session {
    io: BufReader<Box<dyn Io>>,
}

impl Session {
    /// Reads one reply (all its lines): (code, text).
    async fn reply(&mut self) -> Result<(u16, String), SmtpError> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = (&mut self.io)
                .take(2048)
                .read_line(&mut line)
                .await
                .map_err(|e| SmtpError::Transient(format!("reading from the relay: {e}")))?;
            if n == 0 {
                return Err(SmtpError::Transient(
                    "the relay closed the connection".into(),
                ));
            }
            let line = line.trim_end();
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| {
                    SmtpError::Transient(format!("not an SMTP reply: {:?}", redact_addresses(line)))
                })?;
            text.push_str(line.get(4..).unwrap_or(""));
            text.push('\n');
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, text));
            }
        }
    }

    async fn send(&mut self, line: &str) -> Result<(), SmtpError> {
        self.io
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .map_err(|e| SmtpError::Transient(format!("writing to the relay: {e}")))?;
        self.io
            .get_mut()
            .flush()
            .await
            .map_err(|e| SmtpError::Transient(format!("writing to the relay: {e}")))
    }

    /// Sends `line` and wants a reply in `ok`; a 5xx is permanent when
    /// `final_5xx`.
    async fn command(
        &mut self,
        line: &str,
        shown: &str,
        ok: &[u16],
        final_5xx: bool,
    ) -> Result<String, SmtpError> {
        self.send(line).await?;
        let (code, text) = self.reply().await?;
        if ok.contains(&code) {
            return Ok(text);
        }
        let msg = format!("{shown}: {code} {}", redact_addresses(text.trim()));
        Err(if final_5xx && (500..600).contains(&code) {
            SmtpError::Permanent(msg)
        } else {
            SmtpError::Transient(msg)
        })
    }
}

/// Sends `mail` through the relay of `cfg` (with `password` for AUTH when a
/// username is set; `tls` for STARTTLS).
pub async fn send(
    cfg: &SmtpConfig,
    password: &str,
    tls: Option<&TlsConnector>,
    mail: &Mail,
) -> Result<(), SmtpError> {
    tokio::time::timeout(SEND_TIMEOUT, transaction(cfg, password, tls, mail))
        .await
        .map_err(|_| {
            SmtpError::Transient(format!("no answer within {} s", SEND_TIMEOUT.as_secs()))
        })?
}

async fn transaction(
    cfg: &SmtpConfig,
    password: &str,
    tls: Option<&TlsConnector>,
    mail: &Mail,
) -> Result<(), SmtpError> {
    let host = cfg.host.trim_matches(['[', ']']).to_string();
    let tcp = tokio::net::TcpStream::connect((host.as_str(), cfg.port))
        .await
        .map_err(|e| SmtpError::Transient(format!("cannot connect to {host}:{}: {e}", cfg.port)))?;
    let boxed: Box<dyn Io> = Box::new(tcp);
    let mut s = Session {
        io: BufReader::new(boxed),
    };
    let (code, text) = s.reply().await?;
    if code != 220 {
        return Err(SmtpError::Transient(format!(
            "greeting: {code} {}",
            text.trim()
        )));
    }
    let ehlo = format!("EHLO {}", cfg.helo_name);
    let mut caps = s.command(&ehlo, "EHLO", &[250], false).await?;
    if cfg.starttls {
        let offered = caps
            .lines()
            .any(|l| l.trim().eq_ignore_ascii_case("STARTTLS"));
        if !offered {
            return Err(SmtpError::Transient(
                "the relay does not offer STARTTLS (required by notices.smtp.starttls)".into(),
            ));
        }
        s.command("STARTTLS", "STARTTLS", &[220], false).await?;
        let connector =
            tls.ok_or_else(|| SmtpError::Transient("no TLS configuration for STARTTLS".into()))?;
        if !s.io.buffer().is_empty() {
            return Err(SmtpError::Transient(
                "the relay sent data before the TLS handshake".into(),
            ));
        }
        let name = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(host.clone())
                .map_err(|e| SmtpError::Transient(format!("`{host}`: {e}")))?,
        };
        let plain = std::mem::replace(&mut s.io, BufReader::new(Box::new(tokio::io::empty())));
        let stream = connector
            .connect(name, plain.into_inner())
            .await
            .map_err(|e| SmtpError::Transient(format!("TLS with {host}: {e}")))?;
        let boxed: Box<dyn Io> = Box::new(stream);
        s.io = BufReader::new(boxed);
        caps = s
            .command(&ehlo, "EHLO after STARTTLS", &[250], false)
            .await?;
    }
    if !cfg.username.is_empty() {
        let plain_offered = caps.lines().any(|l| {
            let l = l.trim().to_ascii_uppercase();
            l.starts_with("AUTH") && l.split([' ', '=']).any(|m| m == "PLAIN")
        });
        if !plain_offered {
            return Err(SmtpError::Transient(
                "the relay does not offer AUTH PLAIN".into(),
            ));
        }
        let token = B64.encode(format!("\0{}\0{password}", cfg.username));
        s.command(&format!("AUTH PLAIN {token}"), "AUTH PLAIN", &[235], false)
            .await?;
    }
    s.command(
        &format!("MAIL FROM:<{}>", mail.from),
        "MAIL FROM",
        &[250],
        false,
    )
    .await?;
    s.command(
        &format!("RCPT TO:<{}>", mail.to),
        "RCPT TO",
        &[250, 251],
        true,
    )
    .await?;
    s.command("DATA", "DATA", &[354], false).await?;
    let mut data = String::new();
    for line in format_message(mail).split_terminator("\r\n") {
        if line.starts_with('.') {
            data.push('.');
        }
        data.push_str(line);
        data.push_str("\r\n");
    }
    data.push('.');
    s.command(&data, "end of DATA", &[250], true).await?;
    let _ = s.send("QUIT").await;
    Ok(())
}

/// The e-mail channel.
pub struct Email {
    cfg: SmtpConfig,
    password: String,
    tls: Option<TlsConnector>,
}

impl Email {
    /// From `[notices.smtp]`; `ca_file` adds trusted CAs for STARTTLS.
    pub fn new(cfg: &SmtpConfig, ca_file: &str) -> Result<Email, String> {
        let password = cfg.password()?;
        let tls = if cfg.starttls {
            let c = super::http::client_config(ca_file)?;
            Some(TlsConnector::from(Arc::new(c)))
        } else {
            None
        };
        Ok(Email {
            cfg: cfg.clone(),
            password,
            tls,
        })
    }
}

#[async_trait]
impl Channel for Email {
    fn name(&self) -> &'static str {
        "email"
    }

    fn registrations(&self) -> Vec<String> {
        vec!["email".into()]
    }

    async fn deliver(&self, job: &Job<'_>) -> Outcome {
        let purpose = "send the fine notice by e-mail to the registered owner";
        let owner = match channel::owner_contact(job.db, job.facts, purpose, job.now).await {
            Ok(Some(o)) => o,
            Ok(None) => return Outcome::Permanent("the owner is not in the registry".into()),
            Err(e) => return Outcome::Retry(format!("reading the owner: {e}")),
        };
        let Some(to) = owner.email.filter(|e| super::config::mailbox_ok(e)) else {
            return Outcome::Permanent("the owner has no usable e-mail address".into());
        };
        let name = owner.full_name.replace(['\r', '\n'], " ");
        let text = job.render(Some(&name));
        let domain = self
            .cfg
            .from
            .rsplit_once('@')
            .map_or("localhost", |(_, d)| d);
        let mail = Mail {
            from: self.cfg.from.clone(),
            from_name: self.cfg.from_name.clone(),
            to,
            to_name: name,
            subject: text.title,
            body: text.body,
            message_id: format!("{}@{domain}", job.delivery.idempotency_key),
            date_ms: job.now,
            delivery: job.delivery.idempotency_key.clone(),
        };
        match send(&self.cfg, &self.password, self.tls.as_ref(), &mail).await {
            Ok(()) => Outcome::Sent,
            Err(SmtpError::Transient(e)) => Outcome::Retry(e),
            Err(SmtpError::Permanent(e)) => Outcome::Permanent(e),
        }
    }
}

/// The relay's answer with every e-mail address in it replaced by
/// `[address]`: relays echo the recipient ("550 5.1.1 <an@example.vn>:
/// Recipient address rejected"), and the answer is kept as the delivery's
/// error and shown on the console's deadlines page, where an owner's
/// address has no business (minimum personal data).
fn redact_addresses(text: &str) -> String {
    text.split(' ')
        .map(|w| if w.contains('@') { "[address]" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relays_answer_keeps_no_address() {
        assert_eq!(
            redact_addresses("5.1.1 <hoang.giang@example.vn>: Recipient address rejected"),
            "5.1.1 [address] Recipient address rejected"
        );
        assert_eq!(redact_addresses("4.2.2 mailbox full"), "4.2.2 mailbox full");
    }

    #[test]
    fn encoded_words_round_trip_and_stay_short() {
        let subject = "Thông báo vi phạm giao thông: xe 30A-123.45 — Hoàng Thị Giang, Hà Nội";
        let enc = encode_word(subject);
        let mut back = Vec::new();
        for w in enc.split("\r\n ") {
            assert!(w.len() <= 75, "{w}");
            let b = w
                .strip_prefix("=?UTF-8?B?")
                .unwrap()
                .strip_suffix("?=")
                .unwrap();
            back.extend(B64.decode(b).unwrap());
        }
        assert_eq!(String::from_utf8(back).unwrap(), subject);
    }

    #[test]
    fn message_has_headers_and_a_base64_body() {
        let m = Mail {
            from: "notices@example.gov.vn".into(),
            from_name: "CSGT Hà Nội".into(),
            to: "giang@example.vn".into(),
            to_name: "Hoàng Thị Giang".into(),
            subject: "Thông báo".into(),
            body: "Dòng một\nDòng hai".into(),
            message_id: "k@example.gov.vn".into(),
            date_ms: 1_740_812_709_000,
            delivery: "k".into(),
        };
        let text = format_message(&m);
        assert!(
            text.contains("Date: Sat, 01 Mar 2025 14:05:09 +0700\r\n"),
            "{text}"
        );
        assert!(text.contains("Message-ID: <k@example.gov.vn>\r\n"));
        assert!(text.contains(" <giang@example.vn>\r\n"));
        let body = text.split("\r\n\r\n").nth(1).unwrap().replace("\r\n", "");
        assert_eq!(B64.decode(body).unwrap(), "Dòng một\r\nDòng hai".as_bytes());
    }
}
