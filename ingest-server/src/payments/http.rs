//! The one outgoing call payments make: a JSON `POST` to the gateway's
//! merchant API (VNPay's `querydr`), through the server's HTTP client
//! (`crate::outbound`: TLS with the system's roots, plain HTTP to a loopback
//! host only — the sandbox in tests and the demo). Answers are capped at
//! 256 KiB, a call at 20 s.

use std::time::Duration;

use bytes::Bytes;

use crate::outbound::{self, Limits};

pub(crate) use crate::outbound::Answer;

const LIMITS: Limits = Limits {
    max_body: 256 << 10,
    timeout: Duration::from_secs(20),
    status_only: false,
};

/// The gateway's client.
pub(crate) struct Client(outbound::Client);

impl Client {
    pub(crate) fn new() -> Client {
        Client(outbound::Client::new("", LIMITS))
    }

    /// `POST url` with a JSON body.
    pub(crate) async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<Answer, String> {
        let headers = [
            ("accept", "application/json".to_string()),
            ("content-type", "application/json".to_string()),
        ];
        self.0
            .request("POST", url, &headers, Some(Bytes::from(body.to_string())))
            .await
    }
}
