//! A small MQTT 3.1.1 client for the broker checks, on rumqttc: connect
//! with a login and optionally a client certificate, then wait for the
//! CONNACK, PUBACK, SUBACK or a message with a deadline. The Mosquitto check
//! needs the broker's answers (a refusal, a denied subscription, nothing
//! delivered) as values to assert on, not as errors in an event loop.

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// A test MQTT 3.1.1 client whose events arrive on a channel.
pub struct Client {
    /// The rumqttc client itself, for a publish that waits for nothing.
    pub client: rumqttc::Client,
    events: Receiver<Result<rumqttc::Event, String>>,
}

impl Client {
    pub fn connect(
        port: u16,
        id: &str,
        login: Option<(&str, &str)>,
        tls: Option<(&Path, &str)>,
        clean: bool,
    ) -> Client {
        use rumqttc::{MqttOptions, TlsConfiguration, Transport};
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5));
        o.set_clean_session(clean);
        if let Some((u, p)) = login {
            o.set_credentials(u, p);
        }
        if let Some((dir, name)) = tls {
            let f = |n: String| std::fs::read(dir.join(n)).unwrap();
            o.set_transport(Transport::Tls(TlsConfiguration::Simple {
                ca: f("ca.crt".into()),
                alpn: None,
                client_auth: Some((f(format!("{name}.crt")), f(format!("{name}.key")))),
            }));
        }
        let (client, mut conn) = rumqttc::Client::new(o, 64);
        let (tx, events) = channel();
        std::thread::spawn(move || {
            for ev in conn.iter() {
                let end = ev.is_err();
                if tx.send(ev.map_err(|e| e.to_string())).is_err() || end {
                    break;
                }
            }
        });
        Client { client, events }
    }

    /// Waits for the CONNACK: Ok, or the refusal.
    pub fn connected(&self) -> Result<(), String> {
        use rumqttc::{ConnectReturnCode, Event, Packet};
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Ok(Event::Incoming(Packet::ConnAck(c)))) => {
                    return if c.code == ConnectReturnCode::Success {
                        Ok(())
                    } else {
                        Err(format!("{:?}", c.code))
                    };
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err("no CONNACK within 10 s".into()),
            }
        }
    }

    /// Waits for one incoming packet matching `f`.
    fn wait<T>(&self, secs: u64, mut f: impl FnMut(&rumqttc::Packet) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Ok(rumqttc::Event::Incoming(p))) => {
                    if let Some(t) = f(&p) {
                        return Some(t);
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(_))
                | Err(RecvTimeoutError::Disconnected)
                | Err(RecvTimeoutError::Timeout) => return None,
            }
        }
    }

    pub fn publish(&self, topic: &str, body: &str) {
        self.client
            .publish(
                topic,
                rumqttc::QoS::AtLeastOnce,
                false,
                body.as_bytes().to_vec(),
            )
            .unwrap();
        self.wait(10, |p| {
            matches!(p, rumqttc::Packet::PubAck(_)).then_some(())
        })
        .unwrap_or_else(|| panic!("no PUBACK for {topic}"));
    }

    pub fn subscribe(&self, filter: &str) -> u8 {
        self.client
            .subscribe(filter, rumqttc::QoS::AtLeastOnce)
            .unwrap();
        self.wait(10, |p| match p {
            rumqttc::Packet::SubAck(s) => Some(match s.return_codes.first() {
                Some(rumqttc::SubscribeReasonCode::Success(q)) => *q as u8,
                _ => 0x80,
            }),
            _ => None,
        })
        .expect("SUBACK")
    }

    /// The next message received: (topic, body).
    pub fn message(&self, secs: u64) -> Option<(String, String)> {
        self.wait(secs, |p| match p {
            rumqttc::Packet::Publish(m) => Some((
                m.topic.clone(),
                String::from_utf8_lossy(&m.payload).into_owned(),
            )),
            _ => None,
        })
    }

    pub fn disconnect(self) {
        let _ = self.client.disconnect();
        std::thread::sleep(Duration::from_millis(300));
    }
}
