//! The embedded broker's logins and the server's signed acks, against the
//! real server on free loopback ports: clients with no, wrong or borrowed
//! credentials are refused; an enrolled device's login works and the ack
//! it gets is signed by the server key for that device; after revocation
//! (or a re-issued secret) the old login is refused; the enrolment answer
//! of the admin API carries the login and the server key; a rejection of an
//! altered copy published by another device names the altered bytes, and a
//! genuine copy republished on another site's topic is not answered.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use ingest_server::app::{self, Running};
use ingest_server::config::Config;
use ingest_server::devices;
use ingest_server::server_key::{self, ServerKey};
use protocol::{Ack, AckVerifyError, topics};
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS};

const SITE: &str = "hn-badinh-01";
const TOKEN: &str = "test-admin-token-0123456789";

/// A username and password, or none.
type Login<'a> = Option<(&'a str, &'a str)>;

fn config(dir: &std::path::Path) -> Config {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.mqtt.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    cfg.admin.token = TOKEN.into();
    cfg
}

/// Connects as `client_id` with `login`; `Some(client, eventloop task
/// output)` once the broker accepted (CONNACK success), `None` if it
/// refused or hung up within 10 s.
async fn login(
    port: u16,
    client_id: &str,
    creds: Login<'_>,
) -> Option<(AsyncClient, rumqttc::EventLoop)> {
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(10))
        .set_max_packet_size(20 << 20, 20 << 20);
    if let Some((u, p)) = creds {
        opts.set_credentials(u, p);
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(c))) => {
                    return c.code == ConnectReturnCode::Success;
                }
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    first.then_some((client, eventloop))
}

async fn enrol(server: &Running, device: &str) -> (protocol::SigningKey, String) {
    let k = key();
    let e = devices::enrol_with_credentials(
        &server.ingestor.context().db,
        device,
        SITE,
        &public_hex(&k),
    )
    .await
    .unwrap();
    assert_eq!(e.mqtt_username, device);
    assert_eq!(e.mqtt_password.len(), 64);
    (k, e.mqtt_password)
}

fn the_server_key(cfg: &Config) -> ServerKey {
    ServerKey::load_or_create(&server_key::key_path(cfg))
        .unwrap()
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strangers_are_refused_and_an_enrolled_device_logs_in_and_gets_signed_acks() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let server = app::start(&cfg).await.unwrap();
    let port = cfg.mqtt.listen.port();
    let (k, secret) = enrol(&server, "edge-a").await;
    let (_, other_secret) = enrol(&server, "edge-b").await;

    let zeros = "0".repeat(64);
    let refused: [(&str, &str, Login); 7] = [
        ("no credentials", "edge-a", None),
        ("wrong password", "edge-a", Some(("edge-a", &zeros))),
        ("empty password", "edge-a", Some(("edge-a", ""))),
        ("unknown device", "edge-x", Some(("edge-x", &secret))),
        (
            "another device's secret",
            "edge-a",
            Some(("edge-a", &other_secret)),
        ),
        (
            "client id not the device id",
            "someone",
            Some(("edge-a", &secret)),
        ),
        (
            "guessing the server login",
            "ingest-server",
            Some(("$ingest-server", &secret)),
        ),
    ];
    for (what, client_id, creds) in refused {
        assert!(
            login(port, client_id, creds).await.is_none(),
            "{what}: the broker let it in"
        );
    }

    // The device itself: logs in, publishes a bundle, gets a signed ack.
    let (client, mut eventloop) = login(port, "edge-a", Some(("edge-a", &secret)))
        .await
        .expect("the enrolled device was refused");
    let ack_topic = topics::ack_topic(SITE, "edge-a").unwrap();
    client
        .subscribe(&ack_topic, QoS::AtLeastOnce)
        .await
        .unwrap();
    let files = Files::new(1000);
    let ev = event("edge-a", SITE, &files);
    let mut published = false;
    let ack_bytes = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match eventloop.poll().await.unwrap() {
                Event::Incoming(Packet::SubAck(_)) if !published => {
                    published = true;
                    client
                        .publish(
                            topics::events_topic(SITE, "edge-a").unwrap(),
                            QoS::AtLeastOnce,
                            false,
                            bundle(&ev, &k, &files),
                        )
                        .await
                        .unwrap();
                }
                Event::Incoming(Packet::Publish(p)) if p.topic == ack_topic => {
                    return p.payload.to_vec();
                }
                _ => {}
            }
        }
    })
    .await
    .expect("no ack within 20 s");
    let key = the_server_key(&cfg);
    let verified = Ack::verify_signed(&ack_bytes, "edge-a", &[key.verifying_key()]).unwrap();
    assert_eq!(verified.ack, Ack::stored(ev.event_id));
    // Bound to the device: not believable as an ack for edge-b, and not
    // under another key.
    assert!(matches!(
        Ack::verify_signed(&ack_bytes, "edge-b", &[key.verifying_key()]),
        Err(AckVerifyError::WrongDevice { .. })
    ));
    assert!(matches!(
        Ack::verify_signed(
            &ack_bytes,
            "edge-a",
            &[protocol::SigningKey::from_bytes(&[3; 32]).verifying_key()]
        ),
        Err(AckVerifyError::BadSignature { .. })
    ));
}

/// The attack the missing topic ACLs leave open, and why it no longer
/// works: another logged-in device publishes an altered copy of edge-a's
/// bundle under edge-a's topic. The server rightly rejects it, and the
/// signed rejection names the SHA-256 of the altered bytes, which is not
/// the hash of what edge-a sends (edge-a believes a rejection only of its
/// own bytes: `edge-agent/tests/ack_signature.rs`); edge-a's genuine
/// bundle is then stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejection_of_an_altered_copy_names_the_altered_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let server = app::start(&cfg).await.unwrap();
    let port = cfg.mqtt.listen.port();
    let (k, secret) = enrol(&server, "edge-a").await;
    let (_, rogue_secret) = enrol(&server, "edge-b").await;
    let (client, mut eventloop) = login(port, "edge-a", Some(("edge-a", &secret)))
        .await
        .expect("edge-a logs in");
    let (rogue, mut rogue_loop) = login(port, "edge-b", Some(("edge-b", &rogue_secret)))
        .await
        .expect("edge-b logs in");
    tokio::spawn(async move { while rogue_loop.poll().await.is_ok() {} });
    let ack_topic = topics::ack_topic(SITE, "edge-a").unwrap();
    client
        .subscribe(&ack_topic, QoS::AtLeastOnce)
        .await
        .unwrap();
    let (acks_tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
    let (ready_tx, mut ready) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(e) = eventloop.poll().await {
            match e {
                Event::Incoming(Packet::SubAck(_)) => {
                    let _ = ready_tx.send(());
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let _ = acks_tx.send(p.payload.to_vec());
                }
                _ => {}
            }
        }
    });
    ready.recv().await.unwrap();
    let key = the_server_key(&cfg);
    let mut next_ack = async || {
        let bytes = tokio::time::timeout(Duration::from_secs(20), acks.recv())
            .await
            .expect("no ack within 20 s")
            .unwrap();
        Ack::verify_signed(&bytes, "edge-a", &[key.verifying_key()])
            .unwrap()
            .ack
    };

    let files = Files::new(1000);
    let ev = event("edge-a", SITE, &files);
    let genuine = bundle(&ev, &k, &files);
    let mut other_files = Files::new(1000);
    other_files.overview[10] ^= 0xff;
    let altered = bundle(&ev, &k, &other_files);
    let events_topic = topics::events_topic(SITE, "edge-a").unwrap();
    rogue
        .publish(&events_topic, QoS::AtLeastOnce, false, altered.clone())
        .await
        .unwrap();
    let rejection = next_ack().await;
    assert!(
        matches!(rejection.status, protocol::AckStatus::Rejected { .. }),
        "{rejection:?}"
    );
    assert_eq!(rejection.event_id, ev.event_id);
    assert_eq!(
        rejection.payload_sha256.as_deref(),
        Some(protocol::sha256_hex(&altered).as_str())
    );
    assert_ne!(
        rejection.payload_sha256.as_deref(),
        Some(protocol::sha256_hex(&genuine).as_str())
    );
    client
        .publish(&events_topic, QoS::AtLeastOnce, false, genuine)
        .await
        .unwrap();
    assert_eq!(next_ack().await, Ack::stored(ev.event_id));
}

/// The other half of that attack: another client republishes edge-a's
/// genuine bundle, unaltered, on another site's events topic. The server
/// refuses it for where it came, and that refusal is not answered at all:
/// a rejection bound to edge-a's own bytes, published on the other site's
/// ack topic, could be copied to edge-a's, and edge-a would set a real
/// violation aside. The copy is quarantined; edge-a's own delivery is
/// then stored, and the first ack edge-a's name gets on any site is that
/// one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_genuine_bundle_republished_on_another_sites_topic_earns_no_ack() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let server = app::start(&cfg).await.unwrap();
    let port = cfg.mqtt.listen.port();
    let (k, secret) = enrol(&server, "edge-a").await;
    let (_, rogue_secret) = enrol(&server, "edge-b").await;
    let (client, mut eventloop) = login(port, "edge-a", Some(("edge-a", &secret)))
        .await
        .expect("edge-a logs in");
    let (rogue, mut rogue_loop) = login(port, "edge-b", Some(("edge-b", &rogue_secret)))
        .await
        .expect("edge-b logs in");
    tokio::spawn(async move { while rogue_loop.poll().await.is_ok() {} });
    // Every ack for edge-a, on whatever site's ack topic.
    client
        .subscribe("tv/v1/+/edge-a/ack", QoS::AtLeastOnce)
        .await
        .unwrap();
    let (acks_tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
    let (ready_tx, mut ready) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(e) = eventloop.poll().await {
            match e {
                Event::Incoming(Packet::SubAck(_)) => {
                    let _ = ready_tx.send(());
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let _ = acks_tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                _ => {}
            }
        }
    });
    ready.recv().await.unwrap();

    let files = Files::new(1000);
    let ev = event("edge-a", SITE, &files);
    let genuine = bundle(&ev, &k, &files);
    let elsewhere = topics::events_topic("hcm-q3-02", "edge-a").unwrap();
    rogue
        .publish(&elsewhere, QoS::AtLeastOnce, false, genuine.clone())
        .await
        .unwrap();
    // Quarantined (committed, so any answer to it is already on its way).
    let db = &server.ingestor.context().db;
    let digest = protocol::sha256_hex(&genuine);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let q = ingest_server::quarantine::list(db, 10).await.unwrap();
        if let Some(e) = q.iter().find(|e| e.payload_sha256 == digest) {
            assert_eq!(
                (e.reason_code.as_str(), e.source.as_str()),
                ("wrong_topic", elsewhere.as_str())
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never quarantined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    client
        .publish(
            topics::events_topic(SITE, "edge-a").unwrap(),
            QoS::AtLeastOnce,
            false,
            genuine,
        )
        .await
        .unwrap();
    let (topic, bytes) = tokio::time::timeout(Duration::from_secs(20), acks.recv())
        .await
        .expect("no ack within 20 s")
        .unwrap();
    let key = the_server_key(&cfg);
    let first = Ack::verify_signed(&bytes, "edge-a", &[key.verifying_key()])
        .unwrap()
        .ack;
    assert_eq!(
        (first, topic),
        (
            Ack::stored(ev.event_id),
            topics::ack_topic(SITE, "edge-a").unwrap()
        ),
        "the first ack for edge-a is its own delivery's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_device_and_a_replaced_secret_can_no_longer_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let server = app::start(&cfg).await.unwrap();
    let port = cfg.mqtt.listen.port();
    let db = &server.ingestor.context().db;
    let (_, first) = enrol(&server, "edge-r").await;
    assert!(
        login(port, "edge-r", Some(("edge-r", &first)))
            .await
            .is_some()
    );

    // A new secret replaces the old one at once.
    let second = devices::issue_mqtt_secret(db, "edge-r").await.unwrap();
    assert_ne!(first, second);
    assert!(
        login(port, "edge-r", Some(("edge-r", &first)))
            .await
            .is_none()
    );
    assert!(
        login(port, "edge-r", Some(("edge-r", &second)))
            .await
            .is_some()
    );

    devices::revoke(db, "edge-r", "stolen").await.unwrap();
    assert!(
        login(port, "edge-r", Some(("edge-r", &second)))
            .await
            .is_none(),
        "a revoked device logged in"
    );
    assert_eq!(
        devices::check_mqtt_login(db, "edge-r", &second)
            .await
            .unwrap(),
        devices::MqttLogin::Revoked
    );
    assert!(matches!(
        devices::issue_mqtt_secret(db, "edge-r").await,
        Err(devices::DeviceError::Revoked(_))
    ));
    // Enrolled without a secret (the plain `enrol`): cannot log in.
    devices::enrol(db, "edge-n", SITE, &public_hex(&key()))
        .await
        .unwrap();
    assert_eq!(
        devices::check_mqtt_login(db, "edge-n", "").await.unwrap(),
        devices::MqttLogin::NoSecret
    );
}

/// One HTTP/1.1 request (`Connection: close`): status and body.
fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_enrolment_answer_carries_the_login_and_the_server_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let server = app::start(&cfg).await.unwrap();
    let server_key = the_server_key(&cfg);
    let body =
        serde_json::json!({"device_id": "edge-h", "site": SITE, "public_key": public_hex(&key())})
            .to_string();
    let (status, answer) = post(server.http_addr, "/api/v1/devices", &body);
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["device_id"], "edge-h");
    assert_eq!(answer["mqtt_username"], "edge-h");
    assert_eq!(
        answer["server_public_keys"],
        serde_json::json!([server_key.public_key_hex()])
    );
    let password = answer["mqtt_password"].as_str().unwrap();
    assert!(
        login(cfg.mqtt.listen.port(), "edge-h", Some(("edge-h", password)))
            .await
            .is_some()
    );
    // Nothing secret in the device listing.
    let listed =
        serde_json::to_string(&devices::list(&server.ingestor.context().db).await.unwrap())
            .unwrap();
    assert!(
        !listed.contains(password) && !listed.contains("mqtt"),
        "{listed}"
    );
}

/// Secrets and server keys on one database: issue, check, replace, revoke;
/// register, list, retire. Run on SQLite and on a real PostgreSQL, whose
/// migrations are kept in step.
async fn credentials_suite(url: String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.database.url = url;
    let ingestor = app::open(&cfg).await.unwrap();
    let db = &ingestor.context().db;
    let first = ServerKey::open(&cfg, db).await.unwrap();
    let second = protocol::SigningKey::from_bytes(&[4; 32]).verifying_key();
    server_key::register(db, &second).await.unwrap();
    let e = devices::enrol_with_credentials(db, "edge-p", SITE, &public_hex(&key()))
        .await
        .unwrap();
    let second_hex = hex::encode(second.to_bytes());
    let mut keys = e.server_public_keys.clone();
    keys.sort();
    let mut expected = vec![first.public_key_hex(), second_hex.clone()];
    expected.sort();
    assert_eq!(keys, expected);
    use devices::MqttLogin::*;
    let check =
        |p: String| async move { devices::check_mqtt_login(db, "edge-p", &p).await.unwrap() };
    assert_eq!(check(e.mqtt_password.clone()).await, Accepted);
    assert_eq!(check("x".repeat(64)).await, WrongPassword);
    assert_eq!(
        devices::check_mqtt_login(db, "edge-q", &e.mqtt_password)
            .await
            .unwrap(),
        UnknownDevice
    );
    assert_eq!(
        devices::check_mqtt_login(db, "not/an/id", "")
            .await
            .unwrap(),
        UnknownDevice
    );
    let again = devices::issue_mqtt_secret(db, "edge-p").await.unwrap();
    assert_eq!(check(e.mqtt_password.clone()).await, WrongPassword);
    assert_eq!(check(again.clone()).await, Accepted);
    devices::revoke(db, "edge-p", "test").await.unwrap();
    assert_eq!(check(again).await, Revoked);

    assert!(server_key::retire(db, &second_hex).await.unwrap());
    assert!(!server_key::retire(db, &second_hex).await.unwrap());
    assert!(server_key::retire(db, "zz").await.is_err());
    assert_eq!(
        server_key::trusted(db).await.unwrap(),
        vec![first.public_key_hex()]
    );
    assert_eq!(server_key::list(db).await.unwrap().len(), 2);
    // A server starting again with a retired key brings it back.
    server_key::register(db, &second).await.unwrap();
    assert_eq!(server_key::trusted(db).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_server_keys_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    credentials_suite(ingest_server::db::Db::sqlite_url(&dir.path().join("t.db"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_server_keys_on_postgres() {
    let pg = Postgres::start();
    let url = pg.fresh_database().await;
    credentials_suite(url).await;
    drop(pg);
}
