//! The server's own MQTT client: subscribes to every edge's events, clip
//! chunks and heartbeats, hands each message to ingest, and publishes the
//! ack on the device's ack topic (QoS 1).
//!
//! On the embedded broker it subscribes plainly (`tv/v1/+/+/events`, ...);
//! on an external broker (Mosquitto, EMQX) through the shared subscription
//! `$share/{group}/tv/v1/+/+/events`, so several server replicas split one
//! stream and each message reaches exactly one of them. Mosquitto and EMQX
//! honour `$share` for MQTT 3.1.1 clients as well, which is what this
//! client speaks.
//!
//! The broker's PUBACK is sent only after the message was dealt with
//! (manual acks, in arrival order as MQTT requires): if the server dies
//! before its commit, the broker still holds the message for the session. The device itself trusts only the
//! application ack, which is published after the commit.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::{Ack, Channel, Message, topics};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::clips::ClipAssembler;
use crate::ingest::{Ingestor, Source};

/// Messages handled at once (bounds memory under a backlog).
const MAX_IN_FLIGHT: usize = 1024;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client id.
    pub client_id: String,
    /// `Some(group)`: subscribe through `$share/{group}/...`.
    pub share_group: Option<String>,
    /// Username and password, if the broker wants them.
    pub credentials: Option<(String, String)>,
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

/// Connects and serves until the process ends (reconnecting as needed).
pub async fn run(settings: MqttSettings, ingestor: Ingestor, clips: Arc<ClipAssembler>) {
    let mut opts = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_inflight(500)
        .set_max_packet_size(crate::broker::MAX_PAYLOAD, crate::broker::MAX_PAYLOAD);
    if let Some((user, pass)) = &settings.credentials {
        opts.set_credentials(user, pass);
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    let filters = filters(settings.share_group.as_deref());
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // Messages are handled concurrently (so they batch), but MQTT wants the
    // PUBACKs in the order the PUBLISHes came (rumqttd drops a client that
    // acks out of order): one task sends them in arrival order, each once
    // its message is dealt with.
    let (acks_tx, mut acks_rx) = mpsc::unbounded_channel::<(Publish, oneshot::Receiver<()>)>();
    let acker = client.clone();
    tokio::spawn(async move {
        while let Some((publish, finished)) = acks_rx.recv().await {
            let _ = finished.await;
            if let Err(e) = acker.ack(&publish).await {
                tracing::warn!(error = %e, "PUBACK failed");
            }
        }
    });
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!(
                    host = settings.host,
                    port = settings.port,
                    "connected to MQTT broker"
                );
                for f in &filters {
                    if let Err(e) = client.subscribe(f.clone(), QoS::AtLeastOnce).await {
                        tracing::error!(filter = f, error = %e, "subscribe failed");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
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
                tokio::spawn(async move {
                    handle(&client, &ingestor, &clips, &p).await;
                    let _ = done.send(());
                    drop(permit);
                });
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "MQTT connection lost; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn handle(client: &AsyncClient, ingestor: &Ingestor, clips: &ClipAssembler, p: &Publish) {
    let topic = p.topic.clone();
    let payload: Bytes = p.payload.clone();
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
        publish_ack(client, &addr.site, &addr.device, &ack).await;
    }
}

async fn publish_ack(client: &AsyncClient, site: &str, device: &str, ack: &Ack) {
    let (Ok(topic), Ok(body)) = (topics::ack_topic(site, device), ack.to_json()) else {
        tracing::error!(site, device, "cannot address or encode ack");
        return;
    };
    if let Err(e) = client.publish(topic, QoS::AtLeastOnce, false, body).await {
        tracing::error!(error = %e, "publishing ack failed");
    }
}
