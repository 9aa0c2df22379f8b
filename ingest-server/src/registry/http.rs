//! The HTTP registry adapter: owner lookups through the national
//! data-exchange gateway instead of our own tables (`registry.backend =
//! "http"`, `[registry.http]`). The contract is
//! `api/registry-gateway.openapi.json`: `POST {url}/v1/vehicle-lookups` with
//! the plate, its colour, the purpose, the case and who asks, over mutual
//! TLS (`crate::outbound` with this server's client certificate); 200 with
//! the vehicle and its owner, 404 `vehicle_not_found`, 409 `ambiguous`.
//!
//! The gateway is someone else's service and may be slow or down, so each
//! lookup is bounded: a time limit per attempt; retries with exponential
//! backoff and jitter, only where trying again can help (no answer, 5xx,
//! 429; never another 4xx or an invalid answer); a circuit breaker
//! (`breaker.rs`) that, after several failed lookups in a row, fails lookups
//! at once for a cool-down; and a short cache (`cache.rs`). A lookup that
//! fails leaves its case `error`, looked up again later by the sweeper with
//! a backoff ([`super::spawn_sweeper`]); ingest never waits for it
//! (resolution runs after commit, see [`super::resolve_owners`]).
//!
//! Every lookup, answered from the cache or not, failed or refused at once,
//! is written to `registry_access_log` through [`super::log_access`], like
//! the SQL registry's. A registration found is also written to our `owners`
//! and `vehicles` tables (the same upserts as the CSV import), because the
//! notices, the citizen app and the case's owner link read the owner from
//! there: only owners of vehicles with a case are ever copied. Every copy
//! carries when it was made (`copied_at`, migration 0019), and retention
//! (`crate::retention`) deletes it once no case whose evidence is kept
//! names it: a misread plate's owner, or a rejected case's, is not kept
//! for ever.

mod breaker;
mod cache;
pub mod config;
mod wire;

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use thiserror::Error;
use uuid::Uuid;

pub use config::{HttpRegistryConfig, RegistryBackend};

use self::breaker::{Admit, Breaker};
use self::cache::Cache;
use super::{
    AccessOutcome, PlateLookup, Purpose, Registration, Registry, RegistryError, log_access,
};
use crate::db::Db;
use crate::outbound::{self, CallError, Limits};

/// The lookup route, under `registry.http.url`.
pub const LOOKUP_PATH: &str = "/v1/vehicle-lookups";

/// Longest answer read (a registration is well under 2 KiB).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why the gateway gave no usable answer.
#[derive(Debug, Error)]
pub enum GatewayError {
    /// The adapter cannot be built from its configuration.
    #[error("registry.http: {0}")]
    Setup(String),
    /// The circuit is open: no call was made.
    #[error(
        "registry gateway: circuit open after {failures} failed lookups in a row; \
         no call made, next trial in {retry_in_ms} ms"
    )]
    CircuitOpen {
        /// Consecutive failures that opened it.
        failures: u32,
        /// Until the next trial.
        retry_in_ms: u64,
    },
    /// The circuit is half-open and its one trial call is under way: no
    /// call was made.
    #[error("registry gateway: circuit half-open, a trial lookup is under way; no call made")]
    TrialUnderWay,
    /// No answer (connection, TLS, time limit), after every attempt.
    #[error(
        "registry gateway unreachable after {attempts} attempt(s) (request {request_id}): {message}"
    )]
    Unreachable {
        /// Attempts made.
        attempts: u32,
        /// The `X-Request-Id` of the lookup.
        request_id: Uuid,
        /// The last failure.
        message: String,
    },
    /// 5xx or 429 on every attempt.
    #[error(
        "registry gateway answered HTTP {status} on {attempts} attempt(s) (request {request_id}){detail}"
    )]
    Failing {
        /// The last status.
        status: u16,
        /// Attempts made.
        attempts: u32,
        /// The `X-Request-Id` of the lookup.
        request_id: Uuid,
        /// `: code: message` from the answer, when it had one.
        detail: String,
    },
    /// A 4xx (other than 429 and the contract's 404 and 409): this request
    /// was refused; not retried.
    #[error(
        "registry gateway refused the lookup with HTTP {status} (request {request_id}){detail}"
    )]
    Refused {
        /// The status.
        status: u16,
        /// The `X-Request-Id` of the lookup.
        request_id: Uuid,
        /// `: code: message` from the answer, when it had one.
        detail: String,
    },
    /// An answer that breaks the contract (not JSON, a missing or mistyped
    /// field, too long, another plate); not retried.
    #[error("registry gateway gave an invalid answer (request {request_id}): {message}")]
    InvalidAnswer {
        /// The `X-Request-Id` of the lookup.
        request_id: Uuid,
        /// What was wrong, naming the field.
        message: String,
    },
}

impl GatewayError {
    /// Whether this counts against the gateway for the circuit breaker: it
    /// did not answer, failed, or answered nonsense. A refusal of one
    /// request (4xx) shows the gateway is up.
    fn counts_as_failure(&self) -> bool {
        matches!(
            self,
            GatewayError::Unreachable { .. }
                | GatewayError::Failing { .. }
                | GatewayError::InvalidAnswer { .. }
        )
    }
}

/// What the gateway said about a plate.
#[derive(Debug, Clone)]
enum Answered {
    Found(Box<Registration>),
    NotFound,
    Ambiguous,
}

/// See the module documentation.
pub struct HttpRegistry {
    db: Db,
    client: outbound::Client,
    endpoint: String,
    system_id: String,
    retries: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    breaker: Mutex<Breaker>,
    cache: Mutex<Cache<Answered>>,
}

impl HttpRegistry {
    /// From `[registry.http]` (checked by [`HttpRegistryConfig::validate`]
    /// at start), writing the access log and copies into `db`. Fails when
    /// the certificate, key or CA file cannot be loaded.
    pub fn new(cfg: &HttpRegistryConfig, db: Db) -> Result<HttpRegistry, GatewayError> {
        let limits = Limits {
            max_body: MAX_ANSWER_BYTES,
            timeout: Duration::from_millis(cfg.timeout_ms),
            status_only: false,
        };
        let client = match cfg.identity() {
            Some(id) => outbound::Client::with_identity(&cfg.ca_file, &id, limits)
                .map_err(GatewayError::Setup)?,
            None => {
                // Only the CA file: fail here, not at the first lookup.
                outbound::client_config(&cfg.ca_file).map_err(GatewayError::Setup)?;
                outbound::Client::new(&cfg.ca_file, limits)
            }
        };
        Ok(HttpRegistry {
            db,
            client,
            endpoint: cfg.endpoint(),
            system_id: cfg.system_id.clone(),
            retries: cfg.retries,
            backoff_base: Duration::from_millis(cfg.backoff_base_ms),
            backoff_max: Duration::from_millis(cfg.backoff_max_ms),
            breaker: Mutex::new(Breaker::new(
                cfg.breaker_threshold,
                Duration::from_millis(cfg.breaker_cooldown_ms),
            )),
            cache: Mutex::new(Cache::new(
                Duration::from_millis(cfg.cache_ttl_ms),
                cfg.cache_size,
            )),
        })
    }

    /// Whether the circuit is closed (calls go through).
    pub fn circuit_closed(&self) -> bool {
        self.breaker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_closed()
    }

    /// The wait before retry `n` (1-based): `base · 2^(n-1)`, at most
    /// `max`, half of it fixed and half random (equal jitter), so lookups
    /// that failed together do not all come back at once.
    fn backoff(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        let full = self
            .backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max);
        let half = full / 2;
        let ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rand::Rng::gen_range(&mut rand::thread_rng(), 0..=ms))
    }

    /// One lookup with its retries.
    async fn call(
        &self,
        plate: &str,
        colour: Option<&str>,
        purpose: &Purpose,
        request_id: Uuid,
    ) -> Result<Answered, GatewayError> {
        let body = serde_json::to_vec(&wire::LookupRequest {
            plate_text: plate,
            plate_colour: colour,
            purpose: &purpose.reason,
            case_reference: purpose.event_id.map(|e| e.to_string()),
            requested_by: &purpose.actor,
            requesting_system: &self.system_id,
        })
        .map_err(|e| GatewayError::Setup(format!("encoding the request: {e}")))?;
        let body = Bytes::from(body);
        // The same request id on every attempt: one lookup, for the
        // gateway's logs as for ours.
        let headers = [
            ("content-type", "application/json".to_string()),
            ("accept", "application/json".to_string()),
            ("x-request-id", request_id.to_string()),
        ];
        let mut attempts = 0;
        loop {
            attempts += 1;
            let sent = self
                .client
                .send("POST", &self.endpoint, &headers, Some(body.clone()))
                .await;
            let failure = match sent {
                Ok(a) if matches!(a.status, 429 | 500..=599) => GatewayError::Failing {
                    status: a.status,
                    attempts,
                    request_id,
                    detail: detail(&a.body),
                },
                Ok(a) => return answer(a, plate, colour, request_id),
                Err(e @ (CallError::Connection(_) | CallError::Timeout(_))) => {
                    GatewayError::Unreachable {
                        attempts,
                        request_id,
                        message: e.to_string(),
                    }
                }
                Err(CallError::TooLarge(m)) => {
                    return Err(GatewayError::InvalidAnswer {
                        request_id,
                        message: m,
                    });
                }
                Err(CallError::Address(m)) => return Err(GatewayError::Setup(m)),
            };
            if attempts > self.retries {
                return Err(failure);
            }
            let wait = self.backoff(attempts);
            tracing::debug!(%request_id, attempts, wait_ms = wait.as_millis() as u64, error = %failure,
                "registry gateway: retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// Writes a registration found into our tables, marked as a copy made
    /// now (see the module documentation).
    async fn keep_copy(&self, r: &Registration) -> Result<(), RegistryError> {
        let now = Some(crate::db::now_ms());
        let mut tx = self.db.begin_write().await?;
        super::upsert_owner(&mut tx, &r.owner, now).await?;
        super::upsert_vehicle(&mut tx, &r.vehicle, now).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// `: code: message` of an error answer, or nothing.
fn detail(body: &[u8]) -> String {
    match wire::error_of(body) {
        Some((code, m)) if m.is_empty() => format!(": {code}"),
        Some((code, m)) => format!(": {code}: {m}"),
        None => String::new(),
    }
}

/// The meaning of an answer that is not 5xx or 429.
fn answer(
    a: outbound::Answer,
    plate: &str,
    colour: Option<&str>,
    request_id: Uuid,
) -> Result<Answered, GatewayError> {
    let invalid = |message: String| GatewayError::InvalidAnswer {
        request_id,
        message,
    };
    let code = wire::error_of(&a.body).map(|(c, _)| c);
    match (a.status, code.as_deref()) {
        (200, _) if !wire::is_json(&a.content_type) => Err(invalid(format!(
            "Content-Type `{}`, expected application/json",
            a.content_type.chars().take(100).collect::<String>()
        ))),
        (200, _) => wire::registration(&a.body, plate, colour)
            .map(|r| Answered::Found(Box::new(r)))
            .map_err(invalid),
        (404, Some("vehicle_not_found")) => Ok(Answered::NotFound),
        (409, Some("ambiguous")) => Ok(Answered::Ambiguous),
        // A 404 from something else (a proxy, a wrong path) must not pass
        // for "no such vehicle".
        (404, _) => Err(invalid(format!(
            "404 without error code `vehicle_not_found` (is registry.http.url right?){}",
            detail(&a.body)
        ))),
        (status @ 400..=499, _) => Err(GatewayError::Refused {
            status,
            request_id,
            detail: detail(&a.body),
        }),
        (status, _) => Err(invalid(format!("unexpected HTTP status {status}"))),
    }
}

/// The breaker's leave for one call; tells it the outcome, or that the
/// call was dropped (a trial that never reports would keep it half-open).
struct Permit<'a> {
    breaker: &'a Mutex<Breaker>,
    trial: bool,
    done: bool,
}

impl Permit<'_> {
    fn report(mut self, failed: bool) {
        let mut b = self.breaker.lock().unwrap_or_else(PoisonError::into_inner);
        if failed {
            b.failure(Instant::now());
        } else {
            b.success();
        }
        self.done = true;
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done && self.trial {
            self.breaker
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .abandon_trial();
        }
    }
}

#[async_trait]
impl Registry for HttpRegistry {
    async fn lookup(
        &self,
        plate: &str,
        colour: Option<&str>,
        purpose: &Purpose,
    ) -> Result<Option<Registration>, RegistryError> {
        Ok(self.ask(plate, colour, purpose).await?.into_one())
    }

    /// The gateway asked without a colour: 200 is the one registration, 409
    /// `ambiguous` several.
    async fn find(&self, plate: &str, purpose: &Purpose) -> Result<PlateLookup, RegistryError> {
        self.ask(plate, None, purpose).await
    }
}

impl HttpRegistry {
    /// One lookup (see the module documentation), `colour` given to the
    /// gateway when known.
    async fn ask(
        &self,
        plate: &str,
        colour: Option<&str>,
        purpose: &Purpose,
    ) -> Result<PlateLookup, RegistryError> {
        let key_colour = colour.unwrap_or("");
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(plate, key_colour, Instant::now());
        if let Some(c) = cached {
            let (outcome, found) = match c {
                Answered::Found(r) => (AccessOutcome::FoundCached, PlateLookup::One(r)),
                Answered::NotFound => (AccessOutcome::NotFoundCached, PlateLookup::NotFound),
                Answered::Ambiguous => (AccessOutcome::AmbiguousCached, PlateLookup::Several),
            };
            log_access(&self.db, plate, purpose, outcome).await?;
            return Ok(found);
        }

        let admitted = self
            .breaker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(Instant::now());
        let permit = match admitted {
            Admit::Go { trial } => Permit {
                breaker: &self.breaker,
                trial,
                done: false,
            },
            Admit::Open { retry_in, failures } => {
                log_access(&self.db, plate, purpose, AccessOutcome::Unavailable).await?;
                return Err(GatewayError::CircuitOpen {
                    failures,
                    retry_in_ms: u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
                }
                .into());
            }
            Admit::TrialUnderWay => {
                log_access(&self.db, plate, purpose, AccessOutcome::Unavailable).await?;
                return Err(GatewayError::TrialUnderWay.into());
            }
        };
        if permit.trial {
            tracing::info!("registry gateway: cool-down over, trying one lookup");
        }

        let request_id = Uuid::new_v4();
        let result = self.call(plate, colour, purpose, request_id).await;
        let failed = result.as_ref().is_err_and(GatewayError::counts_as_failure);
        let was_closed = self.circuit_closed();
        permit.report(failed);
        let closed = self.circuit_closed();
        if was_closed && !closed {
            tracing::warn!("registry gateway: circuit opened, lookups fail at once for a while");
        } else if !was_closed && closed {
            tracing::info!("registry gateway: circuit closed again");
        }

        let answered = match result {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(%request_id, error = %e, "registry gateway lookup failed");
                log_access(&self.db, plate, purpose, AccessOutcome::Error).await?;
                return Err(e.into());
            }
        };
        let (outcome, found) = match &answered {
            Answered::Found(r) => (AccessOutcome::Found, PlateLookup::One(r.clone())),
            Answered::NotFound => (AccessOutcome::NotFound, PlateLookup::NotFound),
            Answered::Ambiguous => (AccessOutcome::Ambiguous, PlateLookup::Several),
        };
        log_access(&self.db, plate, purpose, outcome).await?;
        if let PlateLookup::One(r) = &found {
            self.keep_copy(r).await?;
        }
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(plate, key_colour, answered, Instant::now());
        tracing::debug!(%request_id, outcome = outcome.as_str(), "registry gateway lookup");
        Ok(found)
    }
}
