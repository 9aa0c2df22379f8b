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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use thiserror::Error;

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

fn config(addr: SocketAddr) -> Config {
    let server = ServerSettings {
        name: "v4-edge".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: MAX_PAYLOAD,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
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
/// port) and waits until it accepts connections.
pub fn start(addr: SocketAddr) -> Result<EmbeddedBroker, BrokerError> {
    // rumqttd binds in its own thread and only logs a failure; find out here.
    std::net::TcpListener::bind(addr)
        .map_err(|source| BrokerError::Bind { addr, source })
        .map(drop)?;
    let mut broker = Broker::new(config(addr));
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
