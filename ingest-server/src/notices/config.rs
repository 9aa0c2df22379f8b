//! The `[notices]` configuration section: where fine notices go (Web Push
//! with VAPID, signed webhooks to partner apps, e-mail over SMTP), how the
//! outbox retries, and the link the notice gives to the citizen app.
//! Re-exported by [`crate::config`]; checked once at start like the rest
//! of it, every error naming the field (`notices.smtp.port`) or the
//! environment variable (`INGEST_NOTICES_SMTP_PORT`).
//!
//! Secrets (webhook secrets, the SMTP password) are best given as files
//! (`secret_file`, `password_file`) so they stay out of the configuration
//! file and the process environment; `Debug` never prints them.

use std::net::IpAddr;

use serde::Deserialize;

use crate::config::ConfigError;

/// `[notices]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoticesConfig {
    /// Run the delivery worker and the deadline checks in this process
    /// (`INGEST_NOTICES_ENABLED`). Notices are written at confirmation
    /// whatever this says; a replica with `false` only leaves them to the
    /// others.
    pub enabled: bool,
    /// The citizen app's public address, e.g. `https://phatnguoi.hanoi.gov.vn`
    /// (`INGEST_NOTICES_PUBLIC_BASE_URL`); the notice links to
    /// `{public_base_url}/app/cases/{event_id}`. Empty: `http://{http.listen}`
    /// (one machine, tests).
    pub public_base_url: String,
    /// The authority named as the sender of the notice.
    pub authority: String,
    /// How often the worker looks for due deliveries, milliseconds.
    pub poll_ms: u64,
    /// How often the 10- and 20-day deadlines are checked, seconds.
    pub deadline_check_s: u64,
    /// Attempts per delivery before it is given up (`dead`).
    pub max_attempts: u32,
    /// The first retry waits about this long, milliseconds; each later one
    /// twice as long (with jitter), up to `retry_max_ms`.
    pub retry_base_ms: u64,
    /// The longest wait between two attempts, milliseconds.
    pub retry_max_ms: u64,
    /// How long a worker holds a delivery it is sending, seconds: another
    /// replica may take it over after that (the receiver then sees the same
    /// idempotency key again). At least [`MIN_LEASE_S`]: longer than any
    /// one attempt can take.
    pub lease_s: u64,
    /// A PEM file of extra CA certificates trusted for push services and
    /// webhooks (an internal CA); the system's roots are trusted anyway.
    pub ca_file: String,
    /// Web Push (VAPID).
    pub vapid: VapidConfig,
    /// Partner apps that get a signed webhook per notice (VNeID, the city
    /// app); `[[notices.webhooks]]`.
    pub webhooks: Vec<WebhookConfig>,
    /// E-mail, where the owner has an address; absent: no e-mail.
    pub smtp: Option<SmtpConfig>,
}

/// The longest one delivery attempt's send may take, seconds: the SMTP
/// transaction's time limit (`smtp::SEND_TIMEOUT`); Web Push and webhooks
/// give up after 15 s (`notices/http.rs`).
pub const LONGEST_SEND_S: u64 = super::smtp::SEND_TIMEOUT.as_secs();

/// What an attempt does besides the send (reading the case and the
/// notice, writing the outcome), with room to spare, seconds.
pub const LEASE_MARGIN_S: u64 = 30;

/// The shortest `lease_s`: a lease must outlast the attempt it covers, or
/// another replica claims the delivery and sends it again while the first
/// is still sending (`notices/leases.rs`).
pub const MIN_LEASE_S: u64 = LONGEST_SEND_S + LEASE_MARGIN_S;

impl Default for NoticesConfig {
    fn default() -> Self {
        NoticesConfig {
            enabled: true,
            public_base_url: String::new(),
            authority: "Cơ quan Cảnh sát giao thông".into(),
            poll_ms: 2000,
            deadline_check_s: 300,
            max_attempts: 12,
            retry_base_ms: 30_000,
            retry_max_ms: 6 * 3600 * 1000,
            lease_s: 120,
            ca_file: String::new(),
            vapid: VapidConfig::default(),
            webhooks: Vec::new(),
            smtp: None,
        }
    }
}

/// `[notices.vapid]`: the application server's identity for Web Push.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VapidConfig {
    /// Contact for the push services, `mailto:…` or `https://…`
    /// (`INGEST_NOTICES_VAPID_SUBJECT`); the JWT's `sub`.
    pub subject: String,
    /// The P-256 key pair, PKCS#8 PEM (`INGEST_NOTICES_VAPID_KEY_FILE`).
    /// Made (mode 0600) on first start when missing. Empty:
    /// `{data_dir}/vapid-p256.pem`. Replicas must share one file:
    /// subscriptions are bound to the key.
    pub key_file: String,
    /// The push services a citizen's subscription may point at: a host
    /// name, or `.domain` for any host under it. A subscription is a URL the
    /// server will POST to, so an endpoint anywhere else (an internal
    /// address) is refused when the citizen subscribes. By default the
    /// browsers' own services (Chrome/Edge FCM, Firefox, Safari, Windows).
    pub endpoint_hosts: Vec<String>,
}

impl Default for VapidConfig {
    fn default() -> Self {
        VapidConfig {
            subject: String::new(),
            key_file: String::new(),
            endpoint_hosts: [
                "fcm.googleapis.com",
                "updates.push.services.mozilla.com",
                ".push.apple.com",
                ".notify.windows.com",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl VapidConfig {
    /// Whether a push endpoint on `host` is allowed ([`Self::endpoint_hosts`]).
    pub fn allows_endpoint_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.endpoint_hosts.iter().any(|h| {
            let h = h.to_ascii_lowercase();
            match h.strip_prefix('.') {
                Some(domain) => host.ends_with(&format!(".{domain}")),
                None => host == h,
            }
        })
    }
}

/// `[[notices.webhooks]]`: one partner app.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Short name (`vneid`, `ihanoi`): the delivery's target, 1-32 of
    /// `a-z 0-9 - _`.
    pub name: String,
    /// Where to POST (`https://`; `http://` only on loopback).
    pub url: String,
    /// The HMAC secret (at least 16 bytes), or `secret_file`, not both.
    #[serde(default)]
    pub secret: String,
    /// A file holding the secret (first line, trimmed).
    #[serde(default)]
    pub secret_file: String,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("secret", &"***")
            .field("secret_file", &self.secret_file)
            .finish()
    }
}

impl WebhookConfig {
    /// The secret: configured, or the first line of `secret_file`.
    pub fn secret(&self) -> Result<String, String> {
        secret_of(&self.secret, &self.secret_file)
    }
}

/// `[notices.smtp]`: the mail relay.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Relay host (`INGEST_NOTICES_SMTP_HOST`).
    pub host: String,
    /// Port, 587 for submission with STARTTLS (`INGEST_NOTICES_SMTP_PORT`).
    pub port: u16,
    /// The sender, `notices@example.gov.vn` (`INGEST_NOTICES_SMTP_FROM`).
    pub from: String,
    /// The sender's display name (UTF-8).
    pub from_name: String,
    /// AUTH PLAIN user; empty: no authentication
    /// (`INGEST_NOTICES_SMTP_USERNAME`).
    pub username: String,
    /// A file holding the password (first line)
    /// (`INGEST_NOTICES_SMTP_PASSWORD_FILE`).
    pub password_file: String,
    /// Upgrade with STARTTLS before anything else is sent
    /// (`INGEST_NOTICES_SMTP_STARTTLS`). `false` is allowed only for a
    /// loopback host (a local relay, tests).
    pub starttls: bool,
    /// The name given in EHLO.
    pub helo_name: String,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: String::new(),
            port: 587,
            from: String::new(),
            from_name: "Thông báo vi phạm giao thông".into(),
            username: String::new(),
            password_file: String::new(),
            starttls: true,
            helo_name: "ingest-server".into(),
        }
    }
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("from_name", &self.from_name)
            .field("username", &self.username)
            .field("password_file", &self.password_file)
            .field("starttls", &self.starttls)
            .field("helo_name", &self.helo_name)
            .finish()
    }
}

impl SmtpConfig {
    /// The password from `password_file` (empty when no file is set).
    pub fn password(&self) -> Result<String, String> {
        if self.password_file.is_empty() {
            return Ok(String::new());
        }
        secret_of("", &self.password_file)
    }
}

fn secret_of(inline: &str, file: &str) -> Result<String, String> {
    if file.is_empty() {
        return Ok(inline.to_string());
    }
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read `{file}`: {e}"))?;
    let first = text.lines().next().unwrap_or("").trim();
    if first.is_empty() {
        return Err(format!("`{file}` is empty"));
    }
    Ok(first.to_string())
}

/// Whether `host` is a loopback name or address.
pub(crate) fn loopback_host(host: &str) -> bool {
    let h = host.trim_matches(['[', ']']);
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
}

/// An outgoing URL: `https://`, or `http://` on loopback only.
pub(crate) fn outgoing_url(s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s).map_err(|e| format!("`{s}`: {e}"))?;
    let host = u.host_str().unwrap_or_default().to_string();
    match u.scheme() {
        "https" => {}
        "http" if loopback_host(&host) => {}
        _ => {
            return Err(format!(
                "`{s}`: must be https:// (http:// only on loopback)"
            ));
        }
    }
    if host.is_empty() || u.fragment().is_some() {
        return Err(format!("`{s}`: a host and no #fragment"));
    }
    Ok(u)
}

/// A plain e-mail address (no display name), as SMTP's MAIL/RCPT take it.
pub(crate) fn mailbox_ok(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && s.len() <= 254
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>()[],;:\\\"".contains(&b))
}

impl NoticesConfig {
    /// The base of links into the citizen app, without a trailing `/`.
    pub fn base_url(&self, http_listen: std::net::SocketAddr) -> String {
        if self.public_base_url.is_empty() {
            format!("http://{http_listen}")
        } else {
            self.public_base_url.trim_end_matches('/').to_string()
        }
    }

    /// Environment overrides `INGEST_NOTICES_*` (see the README).
    pub fn apply_env(&mut self, get: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let env = |var: &str, message: String| ConfigError::Env {
            var: var.into(),
            message,
        };
        let boolean = |var: &str, v: &str| -> Result<bool, ConfigError> {
            v.parse()
                .map_err(|_| env(var, format!("`{v}` is not true or false")))
        };
        if let Some(v) = get("INGEST_NOTICES_ENABLED") {
            self.enabled = boolean("INGEST_NOTICES_ENABLED", &v)?;
        }
        if let Some(v) = get("INGEST_NOTICES_PUBLIC_BASE_URL") {
            self.public_base_url = v;
        }
        if let Some(v) = get("INGEST_NOTICES_VAPID_SUBJECT") {
            self.vapid.subject = v;
        }
        if let Some(v) = get("INGEST_NOTICES_VAPID_KEY_FILE") {
            self.vapid.key_file = v;
        }
        if let Some(v) = get("INGEST_NOTICES_CA_FILE") {
            self.ca_file = v;
        }
        // name=url|secret_file, comma-separated; replaces the file's list.
        if let Some(v) = get("INGEST_NOTICES_WEBHOOKS") {
            let mut hooks = Vec::new();
            for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let parsed = item
                    .split_once('=')
                    .and_then(|(n, rest)| rest.split_once('|').map(|(u, f)| (n, u, f)));
                let Some((name, url, file)) = parsed else {
                    return Err(env(
                        "INGEST_NOTICES_WEBHOOKS",
                        format!("`{item}`: expected name=url|secret_file"),
                    ));
                };
                hooks.push(WebhookConfig {
                    name: name.trim().into(),
                    url: url.trim().into(),
                    secret: String::new(),
                    secret_file: file.trim().into(),
                });
            }
            self.webhooks = hooks;
        }
        const SMTP: [&str; 6] = [
            "INGEST_NOTICES_SMTP_HOST",
            "INGEST_NOTICES_SMTP_PORT",
            "INGEST_NOTICES_SMTP_FROM",
            "INGEST_NOTICES_SMTP_USERNAME",
            "INGEST_NOTICES_SMTP_PASSWORD_FILE",
            "INGEST_NOTICES_SMTP_STARTTLS",
        ];
        for var in SMTP {
            let Some(v) = get(var) else { continue };
            let s = self.smtp.get_or_insert_with(SmtpConfig::default);
            match var {
                "INGEST_NOTICES_SMTP_HOST" => s.host = v,
                "INGEST_NOTICES_SMTP_PORT" => {
                    s.port = v
                        .parse()
                        .map_err(|_| env(var, format!("`{v}` is not a port")))?;
                }
                "INGEST_NOTICES_SMTP_FROM" => s.from = v,
                "INGEST_NOTICES_SMTP_USERNAME" => s.username = v,
                "INGEST_NOTICES_SMTP_PASSWORD_FILE" => s.password_file = v,
                _ => s.starttls = boolean(var, &v)?,
            }
        }
        Ok(())
    }

    /// Checks every field; the error names it (`notices.…`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            field: format!("notices.{field}"),
            message,
        };
        if !self.public_base_url.is_empty() {
            let u = url::Url::parse(&self.public_base_url).map_err(|e| {
                invalid(
                    "public_base_url",
                    format!("`{}`: {e}", self.public_base_url),
                )
            })?;
            if !matches!(u.scheme(), "https" | "http") || u.host().is_none() {
                return Err(invalid(
                    "public_base_url",
                    "an http(s):// address of the citizen app".into(),
                ));
            }
            if u.query().is_some() || u.fragment().is_some() {
                return Err(invalid("public_base_url", "no ?query or #fragment".into()));
            }
        }
        let authority = self.authority.trim();
        if authority.is_empty() || authority.chars().count() > 200 {
            return Err(invalid("authority", "1-200 characters".into()));
        }
        if !(50..=600_000).contains(&self.poll_ms) {
            return Err(invalid("poll_ms", "within 50..=600000".into()));
        }
        if !(1..=86_400).contains(&self.deadline_check_s) {
            return Err(invalid("deadline_check_s", "within 1..=86400".into()));
        }
        if !(1..=100).contains(&self.max_attempts) {
            return Err(invalid("max_attempts", "within 1..=100".into()));
        }
        if self.retry_base_ms == 0 || self.retry_base_ms > self.retry_max_ms {
            return Err(invalid(
                "retry_base_ms",
                "at least 1 and not above retry_max_ms".into(),
            ));
        }
        if self.retry_max_ms > 7 * 86_400 * 1000 {
            return Err(invalid("retry_max_ms", "at most 7 days".into()));
        }
        if !(MIN_LEASE_S..=3600).contains(&self.lease_s) {
            return Err(invalid(
                "lease_s",
                format!(
                    "{}: within {MIN_LEASE_S}..=3600 — a delivery is held for one attempt, and an \
                     attempt may take the longest channel's time limit ({LONGEST_SEND_S} s, \
                     e-mail) plus {LEASE_MARGIN_S} s; a shorter lease lets another replica send \
                     it again while the first is still sending",
                    self.lease_s
                ),
            ));
        }
        if !self.ca_file.is_empty() {
            crate::sso::load_ca_file(&self.ca_file).map_err(|m| invalid("ca_file", m))?;
        }
        let sub = &self.vapid.subject;
        let contact = sub.starts_with("mailto:") && sub.len() > 7
            || sub.starts_with("https://") && url::Url::parse(sub).is_ok();
        if !sub.is_empty() && !contact {
            return Err(invalid(
                "vapid.subject",
                format!("`{sub}`: a mailto: or https:// contact"),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            let field = |f: &str| format!("webhooks[{i}].{f}");
            let ok_name = !w.name.is_empty()
                && w.name.len() <= 32
                && w.name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !ok_name {
                return Err(invalid(&field("name"), "1-32 of a-z 0-9 - _".into()));
            }
            if !names.insert(w.name.as_str()) {
                return Err(invalid(
                    &field("name"),
                    format!("`{}` appears twice", w.name),
                ));
            }
            outgoing_url(&w.url).map_err(|m| invalid(&field("url"), m))?;
            match (w.secret.is_empty(), w.secret_file.is_empty()) {
                (true, true) => {
                    return Err(invalid(
                        &field("secret"),
                        "set secret or secret_file".into(),
                    ));
                }
                (false, false) => {
                    return Err(invalid(
                        &field("secret"),
                        "set secret or secret_file, not both".into(),
                    ));
                }
                _ => {}
            }
            let secret = w.secret().map_err(|m| invalid(&field("secret_file"), m))?;
            if secret.len() < 16 {
                return Err(invalid(&field("secret"), "at least 16 bytes".into()));
            }
        }
        if let Some(s) = &self.smtp {
            if s.host.is_empty() {
                return Err(invalid("smtp.host", "must not be empty".into()));
            }
            if s.port == 0 {
                return Err(invalid("smtp.port", "must not be 0".into()));
            }
            if !mailbox_ok(&s.from) {
                return Err(invalid(
                    "smtp.from",
                    format!("`{}`: a plain address like notices@example.gov.vn", s.from),
                ));
            }
            if s.from_name.contains(['\r', '\n']) || s.from_name.chars().count() > 100 {
                return Err(invalid(
                    "smtp.from_name",
                    "one line, at most 100 characters".into(),
                ));
            }
            if !s.starttls && !loopback_host(&s.host) {
                return Err(invalid(
                    "smtp.starttls",
                    "may be false only for a loopback host (the password and the notice would \
                     cross the network in clear)"
                        .into(),
                ));
            }
            if !s.username.is_empty() && s.password_file.is_empty() {
                return Err(invalid(
                    "smtp.password_file",
                    "required when smtp.username is set".into(),
                ));
            }
            s.password().map_err(|m| invalid("smtp.password_file", m))?;
            let helo = &s.helo_name;
            if helo.is_empty()
                || !helo
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return Err(invalid("smtp.helo_name", "a host name".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
