//! The S3-compatible backend of the evidence store: an
//! `object_store::aws::AmazonS3` built from `[storage.s3]`, and a check at
//! start that the bucket is there and the key may use it.
//!
//! Built with `AmazonS3Builder::new()`, never `from_env()`: the server's
//! own configuration is the only source, so an `AWS_*` variable left in
//! the environment cannot silently point evidence somewhere else. Requests
//! are signed (SigV4, the payload's SHA-256 included), so the store refuses
//! a body altered on the way; each has a time limit, and only connection
//! failures, time-outs and 5xx answers are retried (`retries`), never a
//! 4xx: a refused key or a missing bucket stays an error, at once.
//!
//! The check at start lists the top level of the prefix (one request, no
//! write): a wrong key or secret, a missing bucket or an unreachable
//! endpoint stops the server with a message that says which, before it
//! takes any traffic. Permissions can still change later; then the writes
//! of a batch fail, nothing in it is acknowledged, and devices resend.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use super::EvidenceStoreError;
use super::config::S3Config;

/// The store of `cfg` (with its prefix), checked with one listing.
pub(super) async fn open(cfg: &S3Config) -> Result<Arc<dyn ObjectStore>, EvidenceStoreError> {
    let store = build(cfg)?;
    probe(cfg, store.as_ref()).await?;
    tracing::info!(store = %cfg.describe(), "evidence store: S3");
    Ok(store)
}

fn setup(cfg: &S3Config, message: String) -> EvidenceStoreError {
    EvidenceStoreError::Setup {
        store: cfg.describe(),
        message,
    }
}

/// The client, without touching the network.
pub(super) fn build(cfg: &S3Config) -> Result<Arc<dyn ObjectStore>, EvidenceStoreError> {
    // Checked at start already; checked again here because `EvidenceStore`
    // may be opened from a configuration that was never validated.
    cfg.validate().map_err(|e| setup(cfg, e.to_string()))?;
    let secret = cfg.secret().map_err(|e| setup(cfg, e.to_string()))?;
    let endpoint = cfg
        .bucket_endpoint()
        .map_err(|e| setup(cfg, e.to_string()))?;
    let timeout = Duration::from_millis(cfg.timeout_ms);
    let options = ClientOptions::new()
        .with_timeout(timeout)
        .with_connect_timeout(timeout.min(Duration::from_secs(5)));
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: cfg.retries as usize,
        retry_timeout: timeout.saturating_mul(cfg.retries.saturating_add(1)),
    };
    let s3 = AmazonS3Builder::new()
        .with_endpoint(endpoint.as_str())
        .with_bucket_name(cfg.bucket.as_str())
        .with_region(cfg.region.as_str())
        .with_access_key_id(cfg.access_key_id.as_str())
        .with_secret_access_key(secret.expose())
        .with_virtual_hosted_style_request(!cfg.path_style)
        .with_client_options(options)
        // After the client options, which would reset it. `endpoint_url`
        // allowed http:// only on loopback or with `allow_http`.
        .with_allow_http(endpoint.starts_with("http://"))
        .with_retry(retry)
        .build()
        .map_err(|e| setup(cfg, e.to_string()))?;
    if cfg.prefix.is_empty() {
        Ok(Arc::new(s3))
    } else {
        Ok(Arc::new(PrefixStore::new(s3, cfg.prefix.as_str())))
    }
}

/// One listing of the prefix's top level: proves the endpoint answers, the
/// bucket exists and the key may read it.
async fn probe(cfg: &S3Config, store: &dyn ObjectStore) -> Result<(), EvidenceStoreError> {
    let Err(e) = store.list_with_delimiter(None).await else {
        return Ok(());
    };
    let message = match status_of(&e) {
        Some(401 | 403) => format!(
            "the S3 server refused access key `{}` for bucket `{}`: check \
             storage.s3.access_key_id, the secret, and the key's permissions ({e})",
            cfg.access_key_id, cfg.bucket
        ),
        Some(404) => format!(
            "bucket `{}` not found (storage.s3.bucket; the server does not create it) ({e})",
            cfg.bucket
        ),
        _ => format!(
            "cannot list bucket `{}` at {} (storage.s3.endpoint): {e}",
            cfg.bucket, cfg.endpoint
        ),
    };
    Err(setup(cfg, message))
}

/// The HTTP status behind a store error: from the variant where the client
/// maps it (reads, heads), otherwise from the error's text, since the S3
/// client reports a failed listing as `Generic` and names the status only
/// in its message (`... status code: 403 Forbidden ...`).
fn status_of(e: &object_store::Error) -> Option<u16> {
    match e {
        object_store::Error::PermissionDenied { .. } => return Some(403),
        object_store::Error::Unauthenticated { .. } => return Some(401),
        object_store::Error::NotFound { .. } => return Some(404),
        _ => {}
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push(' ');
        text.push_str(&s.to_string());
        source = s.source();
    }
    const MARK: &str = "status code: ";
    let at = text.find(MARK)? + MARK.len();
    text.get(at..at + 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_is_read_from_a_generic_error() {
        let e = object_store::Error::Generic {
            store: "S3",
            source: "Error performing GET http://x/b in 6ms - Server returned non-2xx \
                     status code: 403 Forbidden: <Error/>"
                .into(),
        };
        assert_eq!(status_of(&e), Some(403));
        let e = object_store::Error::Generic {
            store: "S3",
            source: "connection refused".into(),
        };
        assert_eq!(status_of(&e), None);
    }
}
