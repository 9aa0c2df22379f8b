//! The two ways evidence reaches and leaves the server in these tests, as a
//! device and an administrator would use them: a test edge on MQTT (bundles
//! and clip chunks out, acks in) and a minimal HTTP/1.1 client (bundles by
//! `POST /api/v1/violations`, evidence by `GET /api/v1/evidence/{sha256}`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use protocol::{Ack, Message, topics};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

/// A test edge: connected, subscribed to its ack topic.
pub struct Edge {
    client: AsyncClient,
    acks: mpsc::UnboundedReceiver<Ack>,
    site: String,
    device: String,
}

impl Edge {
    /// Logs in as the device (client id and username = device id) with the
    /// MQTT secret its enrolment issued.
    pub async fn connect(port: u16, site: &str, device: &str, secret: &str) -> Edge {
        let mut opts = MqttOptions::new(device, "127.0.0.1", port);
        opts.set_max_packet_size(20 << 20, 20 << 20)
            .set_keep_alive(Duration::from_secs(10))
            .set_credentials(device, secret);
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let (tx, acks) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
        let ack_topic = topics::ack_topic(site, device).unwrap();
        let sub_client = client.clone();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = sub_client
                            .subscribe(ack_topic.clone(), QoS::AtLeastOnce)
                            .await;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(Ack::from_json(&p.payload).unwrap());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(20), subscribed.recv())
            .await
            .expect("edge never subscribed");
        Edge {
            client,
            acks,
            site: site.into(),
            device: device.into(),
        }
    }

    pub async fn publish(&self, channel: &str, payload: Vec<u8>) {
        let topic = format!("tv/v1/{}/{}/{channel}", self.site, self.device);
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    pub async fn next_ack(&mut self) -> Ack {
        tokio::time::timeout(Duration::from_secs(30), self.acks.recv())
            .await
            .expect("no ack within 30 s")
            .unwrap()
    }

    pub async fn no_ack_for(&mut self, d: Duration) {
        if let Ok(Some(a)) = tokio::time::timeout(d, self.acks.recv()).await {
            panic!("unexpected ack {a:?}");
        }
    }
}

/// One HTTP/1.1 request on its own connection: status and body. Blocking:
/// call it from `spawn_blocking`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = out[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
}

/// `request` off the async threads.
pub async fn http(
    addr: SocketAddr,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    tokio::task::spawn_blocking(move || {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        request(addr, method, &path, &h, &body)
    })
    .await
    .unwrap()
}
