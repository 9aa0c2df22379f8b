//! What single sign-on asks of the server's HTTP client (`crate::outbound`):
//! GET (discovery, keys, userinfo, with a bearer token for userinfo) and a
//! form POST with HTTP Basic client authentication (the token endpoint).
//! Answers are capped at 1 MiB and every call at 15 s.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;

use crate::outbound::{self, Limits};

pub(crate) use crate::outbound::Answer;
pub use crate::outbound::{is_loopback, load_ca_file};

const LIMITS: Limits = Limits {
    max_body: 1 << 20,
    timeout: Duration::from_secs(15),
    status_only: false,
};

/// The identity provider's client.
pub(crate) struct Client(outbound::Client);

impl Client {
    /// Trusting the system's roots and `ca_file` (empty: none).
    pub(crate) fn new(ca_file: &str) -> Client {
        Client(outbound::Client::new(ca_file, LIMITS))
    }

    /// `GET url`, with a bearer token when given.
    pub(crate) async fn get(&self, url: &str, bearer: Option<&str>) -> Result<Answer, String> {
        let mut headers = vec![("accept", "application/json".to_string())];
        if let Some(t) = bearer {
            headers.push(("authorization", format!("Bearer {t}")));
        }
        self.0.request("GET", url, &headers, None).await
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
        let mut headers = vec![
            ("accept", "application/json".to_string()),
            (
                "content-type",
                "application/x-www-form-urlencoded".to_string(),
            ),
        ];
        if let Some((id, secret)) = basic {
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            headers.push((
                "authorization",
                format!(
                    "Basic {}",
                    BASE64.encode(format!("{}:{}", enc(id), enc(secret)))
                ),
            ));
        }
        self.0
            .request("POST", url, &headers, Some(Bytes::from(body)))
            .await
    }
}
