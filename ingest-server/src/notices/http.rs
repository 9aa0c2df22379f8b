//! What the push and webhook channels ask of the server's HTTP client
//! (`crate::outbound`): a POST with the channel's headers. Only the status
//! matters, so at most 64 KiB of an answer is read and a longer or cut-off
//! body is dropped; every call is limited to 15 s.

use std::time::Duration;

use bytes::Bytes;

use crate::outbound::{self, Limits};

pub use crate::outbound::{Answer, client_config};

const LIMITS: Limits = Limits {
    max_body: 64 * 1024,
    timeout: Duration::from_secs(15),
    status_only: true,
};

/// A client; its TLS configuration is built once.
pub struct Client(outbound::Client);

impl Client {
    /// Trusting the system's roots and `ca_file`'s certificates (empty:
    /// none).
    pub fn new(ca_file: &str) -> Client {
        Client(outbound::Client::new(ca_file, LIMITS))
    }

    /// `POST url` with `headers` and `body`. `Err` is a failure to get any
    /// answer (connection, TLS, timeout): worth retrying.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Answer, String> {
        self.0.request("POST", url, headers, Some(body)).await
    }
}
