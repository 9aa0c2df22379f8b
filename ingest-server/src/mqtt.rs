//! The server's own MQTT client: subscribes to every edge's events, clip
//! chunks and heartbeats, hands each message to ingest, and publishes the
//! ack on the device's ack topic (QoS 1).
//!
//! On the embedded broker it opens one connection, speaks MQTT 3.1.1 and
//! subscribes plainly (`tv/v1/+/+/events`, ...); on an external broker
//! (Mosquitto, EMQX) it opens `[mqtt] connections` connections (1 by
//! default; see [`run`] for why more than one), speaks MQTT 5 and each
//! subscribes through the shared subscription
//! `$share/{group}/tv/v1/+/+/events`, so several server replicas split one
//! stream and each message reaches exactly one of them; its session
//! outlives a disconnection by [`SHARED_SESSION_EXPIRY_S`] (clean start
//! off), long enough for a restart to pick up what the broker kept for it,
//! short enough that a replica that does not come back stops being handed
//! its share of the stream: brokers keep routing shared messages to an
//! offline member's session, where they wait unanswered while the edges
//! resend them (the edges' outboxes, not the broker, are what keeps an
//! event until it is stored).
//!
//! The broker's PUBACK is sent only after the message was dealt with
//! (manual acks, in arrival order as MQTT requires): if the server dies
//! before its commit, the broker still holds the message for the session. The device itself trusts only the
//! application ack, which is published after the commit.
//!
//! To an external broker the connection may be TLS (`mqtts://`, the
//! broker's certificate checked against `[mqtt] ca_file`, a client
//! certificate where the broker asks for one) with a login
//! (`config.rs`, `INGEST_MQTT_*`).
//!
//! Every ack is signed for its device with the server's key
//! ([`crate::server_key`], [`protocol::Ack::sign_for`]): the device deletes
//! evidence on an ack, so it believes only acks signed by a key it trusts
//! and naming it, never one another client of the broker published.

pub mod config;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::{Ack, Channel, topics};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::clips::ClipAssembler;
use crate::ingest::{Ingestor, Source};
use crate::server_key::ServerKey;

/// Messages handled at once (bounds memory under a backlog).
const MAX_IN_FLIGHT: usize = 1024;

/// Where and how to connect (no `Debug`: it holds the password and the
/// client key).
#[derive(Clone)]
pub struct MqttSettings {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client id of the first connection (the others: [`connection_client_id`]).
    pub client_id: String,
    /// Connections to open, each a member of the shared subscription (1
    /// on the embedded broker).
    pub connections: usize,
    /// `Some(group)`: an external broker, MQTT 5, subscribing through
    /// `$share/{group}/...`; `None`: the embedded one, MQTT 3.1.1, plain.
    pub share_group: Option<String>,
    /// Username and password, if the broker wants them.
    pub credentials: Option<(String, String)>,
    /// TLS to the broker (`mqtts://`), with the CA and client certificate.
    pub tls: Option<config::TlsFiles>,
    /// The key every ack is signed with.
    pub server_key: Arc<ServerKey>,
}

/// TLS through rustls, where the settings ask for it.
fn transport(tls: Option<&config::TlsFiles>) -> Option<Transport> {
    tls.map(|t| {
        Transport::Tls(TlsConfiguration::Simple {
            ca: t.ca.clone(),
            alpn: None,
            client_auth: t.client_auth.clone(),
        })
    })
}

/// The filters this server subscribes to.
pub fn filters(share_group: Option<&str>) -> Vec<String> {
    [Channel::Events, Channel::Evidence, Channel::Heartbeat]
        .into_iter()
        .map(|ch| match share_group {
            Some(g) => topics::shared_subscription(g, ch)
                .unwrap_or_else(|_| topics::subscription_filter(ch)),
            None => topics::subscription_filter(ch),
        })
        .collect()
}

/// The server's client, in the protocol version it speaks to its broker.
#[derive(Clone)]
enum Client {
    /// MQTT 3.1.1 (the embedded rumqttd).
    V4(rumqttc::AsyncClient),
    /// MQTT 5 (an external broker: shared subscriptions are a v5 feature).
    V5(rumqttc::v5::AsyncClient),
}

/// A received PUBLISH of either version.
#[derive(Clone)]
enum Received {
    V4(rumqttc::Publish),
    V5(rumqttc::v5::mqttbytes::v5::Publish),
}

impl Received {
    fn topic(&self) -> String {
        match self {
            Received::V4(p) => p.topic.clone(),
            Received::V5(p) => String::from_utf8_lossy(&p.topic).into_owned(),
        }
    }

    fn payload(&self) -> Bytes {
        match self {
            Received::V4(p) => p.payload.clone(),
            Received::V5(p) => p.payload.clone(),
        }
    }
}

impl Client {
    async fn subscribe(&self, filter: &str) -> Result<(), String> {
        match self {
            Client::V4(c) => c
                .subscribe(filter, QoS::AtLeastOnce)
                .await
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    async fn publish(&self, topic: String, body: Vec<u8>) -> Result<(), String> {
        match self {
            Client::V4(c) => c
                .publish(topic, QoS::AtLeastOnce, false, body)
                .await
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .publish(topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, body)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    async fn ack(&self, received: &Received) -> Result<(), String> {
        match (self, received) {
            (Client::V4(c), Received::V4(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            (Client::V5(c), Received::V5(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            _ => Err("ack for a message of the other protocol version".into()),
        }
    }
}

/// What the event loop reports, whatever the version.
enum Happened {
    Connected,
    Message(Received),
    Lost(String),
}

/// How long the broker keeps a replica's session after it disconnects.
pub const SHARED_SESSION_EXPIRY_S: u32 = 30;

/// The client id of connection `k` (0-based) of a replica whose first
/// connection is `base`: `base`, `base-mqtt1`, `base-mqtt2`, ... (a suffix
/// no one names a replica with, so two replicas' connections never share
/// an id and take over each other's session).
pub fn connection_client_id(base: &str, k: usize) -> String {
    if k == 0 {
        base.to_owned()
    } else {
        format!("{base}-mqtt{k}")
    }
}

/// Opens `settings.connections` connections and serves on all of them until
/// the process ends (each reconnecting as needed): MQTT 5 with shared
/// subscriptions on an external broker, MQTT 3.1.1 on the embedded one.
///
/// Why several on an external broker: it lets only so many unacknowledged
/// QoS 1 messages go to one connection (Mosquitto's `max_inflight_messages`,
/// EMQX's `max_inflight`: 20 and 32 by default, 100 in `deploy/`), and this server acknowledges a
/// message only after its commit, so one connection caps how many bundles
/// wait to be committed together. Each member of the shared subscription
/// gets its own window; the messages being handled share one bound
/// ([`MAX_IN_FLIGHT`]). The embedded broker gets one connection: see
/// `config.rs`, [`config::MqttConfig::connection_count`].
pub async fn run(settings: MqttSettings, ingestor: Ingestor, clips: Arc<ClipAssembler>) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..settings.connections.max(1) {
        let client_id = connection_client_id(&settings.client_id, k);
        tasks.spawn(serve(
            settings.clone(),
            client_id,
            ingestor.clone(),
            clips.clone(),
            permits.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

/// One connection: connects, subscribes, and hands every message to ingest.
async fn serve(
    settings: MqttSettings,
    client_id: String,
    ingestor: Ingestor,
    clips: Arc<ClipAssembler>,
    permits: Arc<Semaphore>,
) {
    let max = crate::broker::MAX_PAYLOAD;
    // The event loop runs in its own task and reports what happened.
    let (events_tx, mut events) = mpsc::channel::<Happened>(256);
    let client = if settings.share_group.is_some() {
        let mut opts = rumqttc::v5::MqttOptions::new(&client_id, &settings.host, settings.port);
        opts.set_keep_alive(Duration::from_secs(30))
            .set_clean_start(false)
            .set_session_expiry_interval(Some(SHARED_SESSION_EXPIRY_S))
            .set_manual_acks(true)
            .set_max_packet_size(u32::try_from(max).ok());
        if let Some((user, pass)) = &settings.credentials {
            opts.set_credentials(user, pass);
        }
        if let Some(t) = transport(settings.tls.as_ref()) {
            opts.set_transport(t);
        }
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(opts, 1024);
        tokio::spawn(async move {
            use rumqttc::v5::mqttbytes::v5::Packet as P5;
            loop {
                let happened = match eventloop.poll().await {
                    Ok(rumqttc::v5::Event::Incoming(P5::ConnAck(_))) => Happened::Connected,
                    Ok(rumqttc::v5::Event::Incoming(P5::Publish(p))) => {
                        Happened::Message(Received::V5(p))
                    }
                    Ok(_) => continue,
                    Err(e) => Happened::Lost(e.to_string()),
                };
                let lost = matches!(happened, Happened::Lost(_));
                if events_tx.send(happened).await.is_err() {
                    return;
                }
                if lost {
                    // rumqttc reconnects on the next poll; don't spin.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
        Client::V5(client)
    } else {
        let mut opts = MqttOptions::new(&client_id, &settings.host, settings.port);
        opts.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_inflight(500)
            .set_max_packet_size(max, max);
        if let Some((user, pass)) = &settings.credentials {
            opts.set_credentials(user, pass);
        }
        if let Some(t) = transport(settings.tls.as_ref()) {
            opts.set_transport(t);
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 1024);
        tokio::spawn(async move {
            loop {
                let happened = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Happened::Connected,
                    Ok(Event::Incoming(Packet::Publish(p))) => Happened::Message(Received::V4(p)),
                    Ok(_) => continue,
                    Err(e) => Happened::Lost(e.to_string()),
                };
                let lost = matches!(happened, Happened::Lost(_));
                if events_tx.send(happened).await.is_err() {
                    return;
                }
                if lost {
                    // rumqttc reconnects on the next poll; don't spin.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
        Client::V4(client)
    };
    let filters = filters(settings.share_group.as_deref());
    let mut connected = false;
    // Messages are handled concurrently (so they batch), but MQTT wants the
    // PUBACKs in the order the PUBLISHes came (rumqttd drops a client that
    // acks out of order): one task sends them in arrival order, each once
    // its message is dealt with.
    let (acks_tx, mut acks_rx) = mpsc::unbounded_channel::<(Received, oneshot::Receiver<()>)>();
    let acker = client.clone();
    tokio::spawn(async move {
        while let Some((received, finished)) = acks_rx.recv().await {
            let _ = finished.await;
            if let Err(e) = acker.ack(&received).await {
                tracing::warn!(error = %e, "PUBACK failed");
            }
        }
    });
    while let Some(happened) = events.recv().await {
        match happened {
            Happened::Connected => {
                if !connected {
                    connected = true;
                    ingestor.context().metrics.mqtt_connection(true);
                }
                tracing::info!(
                    host = settings.host,
                    port = settings.port,
                    client_id,
                    "connected to MQTT broker"
                );
                for f in &filters {
                    if let Err(e) = client.subscribe(f).await {
                        tracing::error!(filter = f, error = %e, "subscribe failed");
                    }
                }
            }
            Happened::Message(p) => {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (done, finished) = oneshot::channel();
                if acks_tx.send((p.clone(), finished)).is_err() {
                    return;
                }
                let client = client.clone();
                let ingestor = ingestor.clone();
                let clips = clips.clone();
                let key = settings.server_key.clone();
                tokio::spawn(async move {
                    handle(&client, &ingestor, &clips, &key, &p).await;
                    let _ = done.send(());
                    drop(permit);
                });
            }
            Happened::Lost(e) => {
                if connected {
                    connected = false;
                    ingestor.context().metrics.mqtt_connection(false);
                }
                tracing::warn!(client_id, error = %e, "MQTT connection lost; retrying in 1 s");
            }
        }
    }
}

async fn handle(
    client: &Client,
    ingestor: &Ingestor,
    clips: &ClipAssembler,
    key: &ServerKey,
    p: &Received,
) {
    let topic = p.topic();
    let payload: Bytes = p.payload();
    let addr = topics::parse_topic(&topic).ok();
    let channel = addr.as_ref().map(|a| a.channel);
    let ack = match channel {
        Some(Channel::Heartbeat) => {
            if let Err(e) = crate::heartbeats::receive(ingestor.context(), payload, &topic).await {
                tracing::error!(error = %e, "heartbeat not stored");
            }
            None
        }
        Some(Channel::Evidence) => match clips.receive(ingestor.context(), payload, &topic).await {
            Ok(outcome) => outcome.ack,
            Err(e) => {
                tracing::error!(error = %e, "clip chunk not stored; the device will resend");
                None
            }
        },
        Some(Channel::Ack) => None,
        // Events, and anything on a topic we cannot read: ingest quarantines
        // the latter as wrong_topic.
        Some(Channel::Events) | None => {
            match ingestor.submit(payload, Source::Mqtt(topic.clone())).await {
                Ok(outcome) => outcome.ack,
                Err(e) => {
                    tracing::error!(error = %e, "bundle not stored; the device will resend");
                    None
                }
            }
        }
    };
    if let (Some(ack), Some(addr)) = (ack, addr) {
        publish_ack(client, key, &addr.site, &addr.device, &ack).await;
    }
}

/// Signs `ack` for `device` and publishes it on the device's ack topic.
async fn publish_ack(client: &Client, key: &ServerKey, site: &str, device: &str, ack: &Ack) {
    let (Ok(topic), Ok(body)) = (
        topics::ack_topic(site, device),
        ack.sign_for(device, key.signing_key()),
    ) else {
        tracing::error!(site, device, "cannot address or sign ack");
        return;
    };
    if let Err(e) = client.publish(topic, body).await {
        tracing::error!(error = %e, "publishing ack failed");
    }
}
