//! The embedded MQTT broker: `rumqttd` running inside the server process,
//! so a single `ingest-server` is a working system with no other service to
//! install. Edges connect to it with MQTT 3.1.1 over TCP; the server's own
//! client ([`crate::mqtt`]) connects to it like any other client.
//!
//! rumqttd keeps messages in an in-memory commit log per filter
//! ([`SEGMENT_BYTES`] × [`SEGMENT_COUNT`]); a subscriber that falls further
//! behind than that loses the oldest messages. Nothing is lost for good:
//! an edge keeps an event in its outbox until the server's ack, and resends.
//! At city scale an external broker (Mosquitto, EMQX) replaces it.
//!
//! Every client must log in ([`BrokerAuth`]): a device with its device id as
//! both client id and username and the MQTT secret issued at enrolment
//! (checked against the database on each connection, so a revoked device is
//! refused from the moment it is revoked); the server's own client with a
//! random credential made at each start. rumqttd has no topic ACLs: a
//! logged-in device could still publish or subscribe under another
//! device's topics. That is why ingest verifies every event's signature
//! against the topic's device, and why acks are signed by the server; in
//! the field Mosquitto's ACL (`deploy/mosquitto/acl`) also confines each
//! device to its own topics.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::RngCore;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::db::Db;
use crate::devices::{self, MqttLogin};

/// Largest MQTT payload accepted (a 16 MiB bundle plus headers).
pub const MAX_PAYLOAD: usize = protocol::transfer::MAX_BUNDLE_BYTES + 64 * 1024;
/// Size of one commit-log segment.
pub const SEGMENT_BYTES: usize = 64 * 1024 * 1024;
/// Segments kept per filter.
pub const SEGMENT_COUNT: usize = 8;

/// The broker could not start.
#[derive(Debug, Error)]
pub enum BrokerError {
    /// The address is taken or not ours.
    #[error("embedded MQTT broker cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// It did not come up.
    #[error("embedded MQTT broker on {0} did not accept connections within 10 s")]
    NotListening(SocketAddr),
    /// Its thread could not be spawned.
    #[error("embedded MQTT broker thread: {0}")]
    Thread(std::io::Error),
}

/// The running embedded broker (it lives until the process ends; rumqttd
/// has no shutdown).
#[derive(Debug)]
pub struct EmbeddedBroker {
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The server's own login on the embedded broker, made afresh at each
/// start and never written anywhere. Its username starts with `$`, which no
/// device id can, so no device can pose as the server.
#[derive(Clone)]
pub struct InternalLogin {
    /// The server client's MQTT client id.
    pub client_id: String,
    /// `$ingest-server`.
    pub username: String,
    /// 256 random bits, hex.
    pub password: String,
}

impl std::fmt::Debug for InternalLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalLogin")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl InternalLogin {
    /// A fresh random login for the client `client_id`.
    pub fn random(client_id: &str) -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self {
            client_id: client_id.to_owned(),
            username: "$ingest-server".into(),
            password: hex::encode(bytes),
        }
    }
}

/// One login attempt, sent from rumqttd's runtime to the checker task.
struct Attempt {
    client_id: String,
    username: String,
    password: String,
    answer: oneshot::Sender<bool>,
}

/// The embedded broker's login check. rumqttd calls it from its own tokio
/// runtime; the database lives in the server's, so each attempt is handed
/// over a channel to a task spawned (by [`BrokerAuth::spawn`]) in the
/// server's runtime, which answers yes or no.
#[derive(Clone)]
pub struct BrokerAuth {
    attempts: mpsc::Sender<Attempt>,
}

/// Longest a login may wait for its answer before it is refused.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

impl BrokerAuth {
    /// Starts the checker in the current tokio runtime: devices from `db`,
    /// and the server's own `internal` login.
    pub fn spawn(db: Db, internal: InternalLogin) -> Self {
        let (attempts, mut rx) = mpsc::channel::<Attempt>(1024);
        tokio::spawn(async move {
            while let Some(a) = rx.recv().await {
                let (db, internal) = (db.clone(), internal.clone());
                tokio::spawn(async move {
                    let ok = check(&db, &internal, &a.client_id, &a.username, &a.password).await;
                    let _ = a.answer.send(ok);
                });
            }
        });
        Self { attempts }
    }

    /// Whether this login may connect (false if the checker is gone or
    /// slower than 10 s).
    pub async fn allows(&self, client_id: String, username: String, password: String) -> bool {
        let (answer, answered) = oneshot::channel();
        let attempt = Attempt {
            client_id,
            username,
            password,
            answer,
        };
        if self.attempts.send(attempt).await.is_err() {
            return false;
        }
        matches!(
            tokio::time::timeout(LOGIN_TIMEOUT, answered).await,
            Ok(Ok(true))
        )
    }
}

/// The decision, logged when it is a refusal.
async fn check(
    db: &Db,
    internal: &InternalLogin,
    client_id: &str,
    username: &str,
    password: &str,
) -> bool {
    if username == internal.username {
        let ok = client_id == internal.client_id
            && password.len() == internal.password.len()
            && password
                .bytes()
                .zip(internal.password.bytes())
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0;
        if !ok {
            tracing::warn!(client_id, "MQTT login refused: bad server credential");
        }
        return ok;
    }
    // A device logs in as itself: client id = username = device id (so no
    // device can take over another's session by its client id), and never
    // under the server client's id.
    if client_id != username || client_id == internal.client_id {
        tracing::warn!(
            client_id,
            username,
            "MQTT login refused: client id must be the device id"
        );
        return false;
    }
    match devices::check_mqtt_login(db, username, password).await {
        Ok(MqttLogin::Accepted) => {
            tracing::debug!(device = username, "MQTT login accepted");
            true
        }
        Ok(refused) => {
            tracing::warn!(device = username, reason = ?refused, "MQTT login refused");
            false
        }
        Err(e) => {
            tracing::error!(device = username, error = %e, "MQTT login not checked; refused");
            false
        }
    }
}

fn config(addr: SocketAddr, auth: Option<BrokerAuth>) -> Config {
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: MAX_PAYLOAD,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    if let Some(auth) = auth {
        connections.set_auth_handler(move |client_id, username, password| {
            let auth = auth.clone();
            async move { auth.allows(client_id, username, password).await }
        });
    }
    let server = ServerSettings {
        name: "v4-edge".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 200,
            max_segment_size: SEGMENT_BYTES,
            max_segment_count: SEGMENT_COUNT,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..Config::default()
    }
}

/// Starts the broker on `addr` (port 0 is not allowed: edges need a known
/// port) and waits until it accepts connections. `auth`: the login check
/// ([`BrokerAuth`]); `None` lets any client in (`mqtt.embedded_auth =
/// false`, for the load generator only).
pub fn start(addr: SocketAddr, auth: Option<BrokerAuth>) -> Result<EmbeddedBroker, BrokerError> {
    if auth.is_none() {
        tracing::warn!(%addr, "embedded MQTT broker WITHOUT authentication: any client may connect");
    }
    // rumqttd binds in its own thread and only logs a failure; find out here.
    std::net::TcpListener::bind(addr)
        .map_err(|source| BrokerError::Bind { addr, source })
        .map(drop)?;
    let mut broker = Broker::new(config(addr, auth));
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(BrokerError::Thread)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            tracing::info!(%addr, "embedded MQTT broker listening");
            return Ok(EmbeddedBroker { addr });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(BrokerError::NotListening(addr))
}
