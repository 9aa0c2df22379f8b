//! End to end over real MQTT: the server with its embedded broker (rumqttd)
//! and, for the city-scale path, two server replicas sharing one stream
//! from a real Mosquitto through `$share/ingest/...`. A test edge publishes
//! signed bundles, clip chunks and heartbeats and waits for the acks.
//! A replica also reaches its broker over TLS with a client certificate
//! and a password (`tls_broker.rs`), and is refused with the wrong ones.

mod common;
#[path = "mqtt/tls_broker.rs"]
mod tls_broker;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use ingest_server::app::{self, Running};
use ingest_server::config::Config;
use ingest_server::{cases, devices, heartbeats, quarantine};
use protocol::{Ack, AckStatus, Message, RejectCode, SigningKey, topics};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

const SITE: &str = "hcm-q1-nguyenhue";

fn config(dir: &std::path::Path) -> Config {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.mqtt.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    cfg.admin.token = "test-admin-token-0123456789".into();
    cfg
}

/// A test edge: connected, subscribed to its ack topic, acks arriving on a channel.
struct Edge {
    client: AsyncClient,
    acks: mpsc::UnboundedReceiver<Ack>,
    device: String,
}

impl Edge {
    /// Logs in as the device (client id and username = device id) with
    /// the MQTT secret its enrolment issued.
    async fn connect(host: &str, port: u16, device: &str, secret: &str) -> Edge {
        let mut opts = MqttOptions::new(device, host, port);
        opts.set_max_packet_size(20 << 20, 20 << 20)
            .set_keep_alive(Duration::from_secs(10))
            .set_credentials(device, secret);
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let (tx, acks) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
        let ack_topic = topics::ack_topic(SITE, device).unwrap();
        let sub_client = client.clone();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        sub_client
                            .subscribe(ack_topic.clone(), QoS::AtLeastOnce)
                            .await
                            .unwrap();
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
            device: device.into(),
        }
    }

    async fn publish(&self, channel: &str, payload: Vec<u8>) {
        let topic = format!("tv/v1/{SITE}/{}/{channel}", self.device);
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    async fn next_ack(&mut self) -> Ack {
        tokio::time::timeout(Duration::from_secs(20), self.acks.recv())
            .await
            .expect("no ack within 20 s")
            .unwrap()
    }

    async fn no_ack_for(&mut self, d: Duration) {
        if let Ok(Some(a)) = tokio::time::timeout(d, self.acks.recv()).await {
            panic!("unexpected ack {a:?}");
        }
    }
}

/// The device's signing key and its MQTT secret.
async fn enrol(server: &Running, device: &str) -> (SigningKey, String) {
    let k = key();
    let e = devices::enrol_with_credentials(
        &server.ingestor.context().db,
        device,
        SITE,
        &public_hex(&k),
    )
    .await
    .unwrap();
    (k, e.mqtt_password)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_broker_end_to_end() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info")
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let server = app::start(&cfg).await.unwrap();
    let (k, secret) = enrol(&server, "edge-a").await;
    let mut edge = Edge::connect("127.0.0.1", cfg.mqtt.listen.port(), "edge-a", &secret).await;

    // A bundle: stored, then its redelivery: duplicate.
    let files = Files::new(700_000);
    let ev = event("edge-a", SITE, &files);
    let b = bundle(&ev, &k, &files);
    edge.publish("events", b.clone()).await;
    assert_eq!(edge.next_ack().await, Ack::stored(ev.event_id));
    edge.publish("events", b).await;
    assert_eq!(edge.next_ack().await, Ack::duplicate(ev.event_id));

    // The clip as chunks: one item ack once all are in.
    for c in split_clip(ev.event_id, "clip.mp4", &files.clip) {
        edge.publish("evidence", c.encode().unwrap()).await;
    }
    assert_eq!(
        edge.next_ack().await,
        Ack::stored(ev.event_id).for_item("clip.mp4")
    );
    let case = cases::case(&server.ingestor.context().db, &ev.event_id.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((case.evidence_stored, case.evidence_total), (3, 3));

    // Forged: rejected with a code. Garbage: quarantined, no ack possible.
    let forged = bundle(&event("edge-a", SITE, &files), &key(), &files);
    edge.publish("events", forged).await;
    let a = edge.next_ack().await;
    assert!(
        matches!(
            a.status,
            AckStatus::Rejected {
                code: RejectCode::BadSignature,
                ..
            }
        ),
        "{a:?}"
    );
    edge.publish("events", b"garbage".to_vec()).await;
    edge.no_ack_for(Duration::from_millis(500)).await;

    // A heartbeat is kept as the device's latest.
    let hb: protocol::Heartbeat = serde_json::from_value(serde_json::json!({
        "schema_version": "1.0", "device_id": "edge-a", "site": SITE,
        "time": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap(),
        "software_version": "edge-agent test", "uptime_s": 1, "cameras": [],
        "outbox": {"depth": 0}, "disk_free_bytes": 1, "alarms": [], "clock": {"status": "synced"}
    }))
    .unwrap();
    edge.publish("heartbeat", hb.sign(&k).unwrap().to_json().unwrap())
        .await;

    // The server keeps serving after all that.
    let ev2 = event("edge-a", SITE, &files);
    edge.publish("events", bundle(&ev2, &k, &files)).await;
    assert_eq!(edge.next_ack().await, Ack::stored(ev2.event_id));

    // A burst, handled concurrently over the server's one connection to
    // the embedded broker; each bundle is stored and acked exactly once.
    assert!(connects_within(&server, 1, Duration::from_secs(10)).await);
    let mut burst = HashMap::new();
    for _ in 0..24 {
        let ev = event("edge-a", SITE, &files);
        burst.insert(ev.event_id, ());
        edge.publish("events", bundle(&ev, &k, &files)).await;
    }
    for _ in 0..24 {
        let a = edge.next_ack().await;
        assert_eq!(a.status, AckStatus::Stored, "{a:?}");
        assert!(burst.remove(&a.event_id).is_some(), "acked twice: {a:?}");
    }
    edge.no_ack_for(Duration::from_millis(500)).await;

    let db = &server.ingestor.context().db;
    let q = quarantine::list(db, 10).await.unwrap();
    let codes: Vec<_> = q.iter().map(|e| e.reason_code.as_str()).collect();
    assert!(
        codes.contains(&"bad_signature") && codes.contains(&"malformed"),
        "{codes:?}"
    );
    assert_eq!(heartbeats::latest(db).await.unwrap().len(), 1);
    assert_eq!(cases::case_count(db).await.unwrap(), 26);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_one_stream_from_mosquitto() {
    let mosquitto = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("mqtt://127.0.0.1:{}", mosquitto.port);
    let mut replicas = Vec::new();
    for n in 0..2 {
        let mut cfg = config(dir.path());
        cfg.mqtt.url = url.clone();
        cfg.mqtt.client_id = format!("ingest-{n}");
        cfg.mqtt.connections = Some(3);
        replicas.push(app::start(&cfg).await.unwrap());
    }
    let (k, secret) = enrol(&replicas[0], "edge-b").await;
    // Both replicas, three connections each, all members of the group, must
    // be subscribed before the edge publishes.
    for r in &replicas {
        assert!(connects_within(r, 3, Duration::from_secs(10)).await);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut edge = Edge::connect("127.0.0.1", mosquitto.port, "edge-b", &secret).await;

    let files = Files::new(1000);
    let mut expected = HashMap::new();
    for _ in 0..20 {
        let ev = event("edge-b", SITE, &files);
        expected.insert(ev.event_id, ());
        edge.publish("events", bundle(&ev, &k, &files)).await;
    }
    for _ in 0..20 {
        let a = edge.next_ack().await;
        assert_eq!(a.status, AckStatus::Stored, "{a:?}");
        assert!(expected.remove(&a.event_id).is_some(), "acked twice: {a:?}");
    }
    // Each message went to exactly one replica: no second ack.
    edge.no_ack_for(Duration::from_millis(500)).await;
    let db = &replicas[0].ingestor.context().db;
    assert_eq!(cases::case_count(db).await.unwrap(), 20);
    drop(mosquitto);
}

/// How many of the server's MQTT connections are up, from its metrics.
fn connections_up(server: &Running) -> u64 {
    let m = server.ingestor.context().metrics.render();
    m.lines()
        .find_map(|l| l.strip_prefix("ingest_mqtt_connected "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no ingest_mqtt_connected in\n{m}"))
}

/// Whether all `all` of the server's MQTT connections report themselves
/// connected within `wait`.
async fn connects_within(server: &Running, all: u64, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let up = connections_up(server);
        assert!(up <= all, "{up} connections up of {all}");
        if up == all {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether no connection of the server comes up within `wait`.
async fn none_connects_within(server: &Running, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        if connections_up(server) > 0 {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_reaches_its_broker_over_tls_with_certificate_and_password() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("ingest_server::mqtt=info")
        .try_init();
    let broker = tls_broker::TlsBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("mqtt-password");
    std::fs::write(&pw_file, format!("{}\n", tls_broker::PASSWORD)).unwrap();
    let tls_config = |sub: &str| {
        let mut cfg = config(&dir.path().join(sub));
        cfg.mqtt.url = format!("mqtts://127.0.0.1:{}", broker.tls_port);
        cfg.mqtt.client_id = format!("ingest-{sub}");
        cfg.mqtt.username = tls_broker::USER.into();
        cfg.mqtt.password_file = pw_file.display().to_string();
        cfg.mqtt.ca_file = broker.file("ca.crt").display().to_string();
        cfg.mqtt.cert_file = broker.file("client.crt").display().to_string();
        cfg.mqtt.key_file = broker.file("client.key").display().to_string();
        // Two connections, each logging in over TLS with its own client id.
        cfg.mqtt.connections = Some(2);
        cfg
    };
    let server = app::start(&tls_config("good")).await.unwrap();
    assert!(
        connects_within(&server, 2, Duration::from_secs(20)).await,
        "the replica never connected over TLS\n{}",
        broker.log()
    );
    let (k, secret) = enrol(&server, "edge-tls").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut edge = Edge::connect("127.0.0.1", broker.plain_port, "edge-tls", &secret).await;
    let files = Files::new(1000);
    let ev = event("edge-tls", SITE, &files);
    edge.publish("events", bundle(&ev, &k, &files)).await;
    assert_eq!(edge.next_ack().await, Ack::stored(ev.event_id));

    // Refused, and never connected: a wrong password, a CA that did not
    // sign the broker's certificate, no client certificate.
    let wrong_pw = dir.path().join("wrong-mqtt-password");
    std::fs::write(&wrong_pw, "not-the-password\n").unwrap();
    let mut bad = Vec::new();
    let mut c = tls_config("wrong-password");
    c.mqtt.password_file = wrong_pw.display().to_string();
    bad.push(("a wrong password", c));
    let mut c = tls_config("other-ca");
    c.mqtt.ca_file = broker.file("rogue-ca.crt").display().to_string();
    bad.push(("a CA that did not sign the broker", c));
    let mut c = tls_config("no-client-cert");
    c.mqtt.cert_file = String::new();
    c.mqtt.key_file = String::new();
    bad.push(("no client certificate", c));
    for (what, cfg) in bad {
        let s = app::start(&cfg).await.unwrap();
        assert!(
            none_connects_within(&s, Duration::from_secs(3)).await,
            "connected with {what}\n{}",
            broker.log()
        );
    }
    // The good replica is still connected and serving.
    let ev2 = event("edge-tls", SITE, &files);
    edge.publish("events", bundle(&ev2, &k, &files)).await;
    assert_eq!(edge.next_ack().await, Ack::stored(ev2.event_id));

    // Settings that cannot work stop the start, naming the field.
    let mut c = tls_config("missing-ca");
    c.mqtt.ca_file = dir.path().join("nope.crt").display().to_string();
    let err = app::start(&c)
        .await
        .err()
        .expect("a missing CA file stops the start");
    assert!(err.to_string().contains("mqtt.ca_file"), "{err}");
}
