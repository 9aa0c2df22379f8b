//! The MQTT link: one `rumqttc` client with a persistent session (the
//! device id is the client id, `clean_session = false`, so acks the server
//! sends while the box is offline wait at the broker), TLS or per-device
//! credentials, keep-alive, and reconnection with jittered exponential
//! backoff. A thread drives the connection and turns what arrives into
//! [`LinkEvent`]s for the delivery loop; publishing goes through the
//! [`Client`] handle.
//!
//! A publish handed to the client waits in its request queue until the
//! connection thread writes it out; on a slow uplink that can take longer
//! than the ack timeout. So the thread reports when each publish is
//! written ([`LinkEvent::Written`]) and when the broker acknowledges it
//! ([`LinkEvent::PubAck`]), and the delivery loop holds back what is still
//! in the client's queue ([`super::queue`]).

use crate::config::MqttConfig;
use rand::Rng;
use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest MQTT packet either way: a bundle is at most 16 MiB plus headers.
pub const MAX_PACKET: usize = protocol::transfer::MAX_BUNDLE_BYTES + 64 * 1024;

/// What the connection thread reports.
#[derive(Debug)]
pub enum LinkEvent {
    /// Connected (a CONNACK arrived); the session is (re)established.
    /// Without a session at the broker (`session_present` false) rumqttc
    /// drops every publish still queued in the client: none of them will
    /// leave.
    Up {
        /// Whether the broker still had this client's session.
        session_present: bool,
    },
    /// The connection failed or dropped; it will be retried.
    Down(String),
    /// A message on the device's ack topic.
    Ack(Vec<u8>),
    /// The client wrote a publish out as this packet id (again, after a
    /// reconnect, for one not yet acknowledged).
    Written(u16),
    /// The broker acknowledged the publish with this packet id.
    PubAck(u16),
    /// A message on another subscribed topic (a signal controller's
    /// phase), with the time it arrived.
    Message {
        topic: String,
        payload: Vec<u8>,
        arrived: time::OffsetDateTime,
    },
}

/// A link error at setup (files unreadable, bad URL).
#[derive(Debug, thiserror::Error)]
#[error("mqtt: {0}")]
pub struct LinkError(pub String);

/// The running link.
pub struct Link {
    /// Publishing handle.
    pub client: Client,
    /// Events from the connection thread.
    pub events: Receiver<LinkEvent>,
    thread: Option<JoinHandle<()>>,
}

/// Exponential backoff with full jitter between `min` and `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: f64,
    max: f64,
    attempt: u32,
}

impl Backoff {
    /// A backoff from `min_s` up to `max_s` seconds.
    pub fn new(min_s: f64, max_s: f64) -> Self {
        Self {
            min: min_s,
            max: max_s,
            attempt: 0,
        }
    }

    /// The next delay: uniform in [min, min · 2^attempt], capped at max.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = (self.min * 2f64.powi(self.attempt.min(20) as i32)).min(self.max);
        self.attempt += 1;
        let s = rand::thread_rng().gen_range(self.min..=ceiling.max(self.min));
        Duration::from_secs_f64(s)
    }

    /// After a successful connection.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>, LinkError> {
    std::fs::read(path).map_err(|e| LinkError(format!("{what} {}: {e}", path.display())))
}

/// The client options for `cfg`, as `client_id`.
pub fn options(cfg: &MqttConfig, client_id: &str) -> Result<MqttOptions, LinkError> {
    let (tls, host, port) = cfg.endpoint().map_err(LinkError)?;
    let mut o = MqttOptions::new(client_id, host, port);
    o.set_keep_alive(Duration::from_secs(cfg.keep_alive_s))
        .set_clean_session(false)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_inflight(cfg.window.clamp(1, u16::MAX as usize) as u16 + 64);
    let password = match (&cfg.password, &cfg.password_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(f)) => Some(
            String::from_utf8_lossy(&read(f, "password file")?)
                .trim()
                .to_owned(),
        ),
        (None, None) => None,
    };
    if let Some(user) = &cfg.username {
        o.set_credentials(user.clone(), password.unwrap_or_default());
    }
    if tls {
        let ca = match &cfg.ca_file {
            Some(f) => read(f, "CA file")?,
            None => return Err(LinkError("mqtts:// needs ca_file".into())),
        };
        let client_auth = match (&cfg.cert_file, &cfg.key_file) {
            (Some(c), Some(k)) => Some((read(c, "client certificate")?, read(k, "client key")?)),
            _ => None,
        };
        o.set_transport(Transport::Tls(TlsConfiguration::Simple {
            ca,
            alpn: None,
            client_auth,
        }));
    }
    Ok(o)
}

impl Link {
    /// Starts the client and its connection thread. `ack_topic` messages are
    /// forwarded as [`LinkEvent::Ack`].
    pub fn start(
        cfg: &MqttConfig,
        client_id: &str,
        ack_topic: String,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, LinkError> {
        let opts = options(cfg, client_id)?;
        let (client, mut connection) = Client::new(opts, 512);
        let (tx, events) = channel();
        let mut backoff = Backoff::new(cfg.reconnect_min_s, cfg.reconnect_max_s);
        let thread = std::thread::Builder::new()
            .name("mqtt-link".into())
            .spawn(move || {
                let send = |tx: &Sender<LinkEvent>, e| tx.send(e).is_ok();
                while !stop.load(Ordering::Relaxed) {
                    match connection.recv_timeout(Duration::from_millis(200)) {
                        Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                            backoff.reset();
                            let up = LinkEvent::Up {
                                session_present: ack.session_present,
                            };
                            if !send(&tx, up) {
                                break;
                            }
                        }
                        Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                            if !send(&tx, LinkEvent::Written(pkid)) {
                                break;
                            }
                        }
                        Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                            if !send(&tx, LinkEvent::PubAck(ack.pkid)) {
                                break;
                            }
                        }
                        Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                            let event = if p.topic == ack_topic {
                                LinkEvent::Ack(p.payload.to_vec())
                            } else {
                                LinkEvent::Message {
                                    arrived: time::OffsetDateTime::now_utc(),
                                    topic: p.topic,
                                    payload: p.payload.to_vec(),
                                }
                            };
                            if !send(&tx, event) {
                                break;
                            }
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            if !send(&tx, LinkEvent::Down(e.to_string())) {
                                break;
                            }
                            let delay = backoff.next_delay();
                            let until = std::time::Instant::now() + delay;
                            while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed)
                            {
                                std::thread::sleep(Duration::from_millis(50));
                            }
                        }
                        Err(rumqttc::RecvTimeoutError::Timeout) => {}
                        Err(rumqttc::RecvTimeoutError::Disconnected) => break,
                    }
                }
            })
            .map_err(|e| LinkError(format!("starting the link thread: {e}")))?;
        Ok(Self {
            client,
            events,
            thread: Some(thread),
        })
    }

    /// Subscribes to `topic` at `qos` (after each `Up`; harmless if the
    /// persistent session already has it).
    pub fn subscribe(&self, topic: &str, qos: QoS) -> Result<(), LinkError> {
        self.client
            .try_subscribe(topic, qos)
            .map_err(|e| LinkError(format!("subscribe {topic}: {e}")))
    }

    /// Disconnects and waits for the connection thread.
    pub fn shutdown(mut self) {
        let _ = self.client.try_disconnect();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_resets() {
        let mut b = Backoff::new(0.5, 8.0);
        let d: Vec<f64> = (0..10).map(|_| b.next_delay().as_secs_f64()).collect();
        assert!(d.iter().all(|&x| (0.5..=8.0).contains(&x)), "{d:?}");
        assert!(d[6..].iter().any(|&x| x > 1.0), "should grow: {d:?}");
        b.reset();
        assert!(b.next_delay().as_secs_f64() <= 0.5 + 1e-9);
    }
}
