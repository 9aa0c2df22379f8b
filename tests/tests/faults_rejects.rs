//! Bad input from the field, sent to a running `ingest-server` the way a
//! device sends: MQTT publishes on `tv/v1/{site}/{device}/events` to the
//! server's embedded broker, checked through the admin API (the quarantine,
//! cases, `/healthz`).
//!
//! `ingest-server/tests/storage.rs` already proves most of the rejections
//! in process, against the library (forged signature, unknown and revoked
//! device, garbage bytes, evidence hash mismatch, same id with other
//! content, ...); this file proves the list of the faults issue end to
//! end, through the real binary and broker, and adds what no test covered:
//! a wrong schema version, malformed JSON inside a well-framed bundle, and
//! an oversized bundle that the broker lets through.
//!
//! Needs `cargo build --workspace` first.

#[path = "faults_server/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e_tests::{free_port, http_get, wait_for};
use ed25519_dalek::Signer;
use protocol::{
    Attachment, ClockSync, EventBundle, EvidenceItem, EvidenceRole, Plate, PlateColour,
    SchemaVersion, SignalObservation, SignalState, SigningKey, TrackPoint, TrackSummary,
    VehicleClass, ViolationEvent, ViolationType, topics,
};
use rumqttc::{Client, MqttOptions, QoS};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::*;

/// A device key from a label (deterministic, distinct per label).
fn key(label: &str) -> SigningKey {
    let seed: [u8; 32] = Sha256::digest(format!("faults_rejects {label}")).into();
    SigningKey::from_bytes(&seed)
}

/// A valid red-light event of `device` with two stills; the stills.
fn event(device: &str) -> (ViolationEvent, Vec<Attachment>) {
    let id = uuid_v4();
    let still = |seed: u8, n: usize| -> Vec<u8> {
        let mut b: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(29) ^ seed).collect();
        b[..16].copy_from_slice(id.as_bytes());
        b
    };
    let files = [
        ("overview.jpg", EvidenceRole::Overview, still(1, 8000)),
        ("plate.jpg", EvidenceRole::PlateCrop, still(2, 900)),
    ];
    let now = time::OffsetDateTime::now_utc()
        .to_offset(time::macros::offset!(+7))
        .replace_nanosecond(0)
        .unwrap();
    let event = ViolationEvent {
        schema_version: SchemaVersion::CURRENT,
        event_id: id,
        device_id: device.into(),
        camera_id: "cam-rej".into(),
        site: SITE.into(),
        event_time: now - time::Duration::seconds(5),
        clock: ClockSync::synced(0, "ntp:fault-test"),
        violation_type: ViolationType::RedLight,
        vehicle_class: VehicleClass::Car,
        plate: Plate::unreadable(PlateColour::Unknown),
        speed: None,
        signal: Some(SignalObservation {
            state: SignalState::Red,
            red_for_ms: Some(2500),
        }),
        track: TrackSummary {
            track_id: 1,
            first_seen: now - time::Duration::seconds(7),
            last_seen: now - time::Duration::seconds(5),
            frame_count: 20,
            points: vec![TrackPoint {
                frame: 1,
                x: 10,
                y: 20,
            }],
            riders: None,
        },
        evidence: files
            .iter()
            .map(|(name, role, b)| EvidenceItem::from_bytes(*name, "image/jpeg", *role, b))
            .collect(),
        software_version: "fault-test".into(),
        site_config_sha256: None,
    };
    let attachments = files
        .into_iter()
        .map(|(name, _, data)| Attachment {
            name: name.into(),
            data,
        })
        .collect();
    (event, attachments)
}

/// The bundle of `event` signed with `key`.
fn bundle(event: &ViolationEvent, key: &SigningKey, attachments: &[Attachment]) -> Vec<u8> {
    EventBundle {
        event: event.sign(key).unwrap(),
        attachments: attachments.to_vec(),
    }
    .encode()
    .unwrap()
}

/// A bundle frame written by hand (`TVB1`, the event JSON, the
/// attachments), for what [`EventBundle::encode`] refuses to make.
fn raw_bundle(json: &[u8], attachments: &[Attachment]) -> Vec<u8> {
    let mut out = b"TVB1".to_vec();
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(json);
    for a in attachments {
        out.extend_from_slice(&(a.name.len() as u16).to_be_bytes());
        out.extend_from_slice(a.name.as_bytes());
        out.extend_from_slice(&(a.data.len() as u32).to_be_bytes());
        out.extend_from_slice(&a.data);
    }
    out
}

/// A device's MQTT connection (the event loop driven on a thread).
struct Device {
    client: Client,
}

impl Device {
    /// Connects as the device of `enrolment` (the admin API's answer: its
    /// broker login, where the server issues one).
    fn connect(enrolment: &Value, port: u16) -> Device {
        let id = enrolment["device_id"].as_str().unwrap();
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_max_packet_size(20 << 20, 20 << 20)
            .set_keep_alive(Duration::from_secs(30));
        if let (Some(user), Some(password)) = (
            enrolment["mqtt_username"].as_str(),
            enrolment["mqtt_password"].as_str(),
        ) {
            opts.set_credentials(user, password);
        }
        let (client, mut connection) = Client::new(opts, 64);
        std::thread::spawn(move || {
            for event in connection.iter() {
                if event.is_err() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
        Device { client }
    }

    fn publish(&self, device: &str, bytes: Vec<u8>) {
        let topic = topics::events_topic(SITE, device).unwrap();
        self.client
            .publish(topic, QoS::AtLeastOnce, false, bytes)
            .unwrap();
    }
}

/// **Every kind of bad input from the field is rejected with its reason in
/// the quarantine, and the server keeps serving.** Against one running
/// server (embedded broker, SQLite), over MQTT from one enrolled device's
/// connection, one bundle each:
/// - a forged event (an enrolled device's id, signed with another key):
///   `bad_signature`;
/// - an event claiming a device never enrolled: `unknown_device`;
/// - an event of a device revoked through the admin API (properly signed
///   with its key): `revoked_device`;
/// - a replayed event: the identical bundle again is answered as a
///   duplicate and stored once, not quarantined (an edge's resend is
///   exactly that); the same event id with other content (a replay that
///   was altered): `event_id_conflict`;
/// - an oversized bundle (16 MiB + 4 KiB, within the broker's limit, over
///   the protocol's): `malformed`, the reason naming the size limit;
/// - malformed JSON inside a well-framed bundle: `malformed`;
/// - a properly signed event of schema version 2.0: `unsupported_version`;
/// - stills whose bytes do not match the signed hashes:
///   `evidence_mismatch`.
///
/// Each quarantine row is found by the SHA-256 of the exact bytes sent;
/// nothing else is quarantined; only the two valid events are cases; and
/// the server still stores a valid event sent after all of it.
#[test]
fn bad_input_quarantined_with_its_reason_server_keeps_serving() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut logs = Logs::default();
    let mqtt_port = free_port();
    let mut server = Server::new(
        "server",
        d,
        &[("INGEST_MQTT_LISTEN", format!("127.0.0.1:{mqtt_port}"))],
    );
    server.up(&mut logs);
    let good = key("good");
    let revoked = key("revoked");
    let enrolment = server.enrol("rej-good", &hex::encode(good.verifying_key().to_bytes()));
    server.enrol(
        "rej-revoked",
        &hex::encode(revoked.verifying_key().to_bytes()),
    );
    let (status, body) = server.api(
        "POST",
        "/api/v1/devices/rej-revoked/revoke",
        Some(&json!({"reason": "stolen from the pole"})),
    );
    assert_eq!(status, 200, "revoke: {body}");
    let dev = Device::connect(&enrolment, mqtt_port);

    // (what, the device whose topic it comes on, bytes, expected reason
    // code, text the reason must contain). All come from one enrolled
    // device's connection (a box gone bad, or one whose login was stolen):
    // a device that is unknown or revoked cannot log in to the broker.
    let mut bad: Vec<(&str, &str, Vec<u8>, &str, &str)> = Vec::new();

    // A valid event, stored; then its identical replay.
    let (ev, att) = event("rej-good");
    let original = bundle(&ev, &good, &att);
    dev.publish("rej-good", original.clone());
    assert!(
        wait_for(30, || server.case(&ev.event_id.to_string()).is_some()),
        "the valid event is stored"
    );
    dev.publish("rej-good", original);
    let mut altered = ev.clone();
    altered.camera_id = "cam-other".into();
    bad.push((
        "the same event id with other content",
        "rej-good",
        bundle(&altered, &good, &att),
        "event_id_conflict",
        "",
    ));

    let (e, a) = event("rej-good");
    bad.push((
        "forged signature",
        "rej-good",
        bundle(&e, &key("forger"), &a),
        "bad_signature",
        "",
    ));
    let (e, a) = event("rej-stranger");
    bad.push((
        "unknown device",
        "rej-good",
        bundle(&e, &key("stranger"), &a),
        "unknown_device",
        "",
    ));
    let (e, a) = event("rej-revoked");
    bad.push((
        "revoked device",
        "rej-good",
        bundle(&e, &revoked, &a),
        "revoked_device",
        "revoked",
    ));

    // Oversized: a valid event with a third attachment that takes the
    // bundle past the protocol's 16 MiB (the broker takes up to its
    // limit, 16 MiB + 64 KiB).
    let (e, mut a) = event("rej-good");
    let json = e.sign(&good).unwrap().to_json().unwrap();
    a.push(Attachment {
        name: "filler.bin".into(),
        data: vec![0x5a; protocol::transfer::MAX_BUNDLE_BYTES + 4096 - json.len()],
    });
    let oversized = raw_bundle(&json, &a);
    assert!(oversized.len() > protocol::transfer::MAX_BUNDLE_BYTES);
    bad.push((
        "oversized bundle",
        "rej-good",
        oversized,
        "malformed",
        "limit",
    ));

    let (_, a) = event("rej-good");
    bad.push((
        "malformed JSON",
        "rej-good",
        raw_bundle(
            br#"{"device_id":"rej-good","kind":"violation_event","payload":{"#,
            &a,
        ),
        "malformed",
        "",
    ));

    // Schema version 2.0, signed properly over its canonical bytes.
    let (e, a) = event("rej-good");
    let mut envelope: Value =
        serde_json::from_slice(&e.sign(&good).unwrap().to_json().unwrap()).unwrap();
    envelope["payload"]["schema_version"] = json!("2.0");
    envelope.as_object_mut().unwrap().remove("signature");
    let signature = good.sign(&protocol::canonical_bytes(&envelope).unwrap());
    envelope["signature"] = json!(hex::encode(signature.to_bytes()));
    bad.push((
        "wrong schema version",
        "rej-good",
        raw_bundle(envelope.to_string().as_bytes(), &a),
        "unsupported_version",
        "",
    ));

    let (e, mut a) = event("rej-good");
    a[0].data[100] ^= 0xff;
    bad.push((
        "evidence hash mismatch",
        "rej-good",
        bundle(&e, &good, &a),
        "evidence_mismatch",
        "",
    ));

    for (_, device, bytes, _, _) in &bad {
        dev.publish(device, bytes.clone());
    }
    let expected: BTreeMap<String, (&str, &str, &str)> = bad
        .iter()
        .map(|(what, _, bytes, code, text)| (protocol::sha256_hex(bytes), (*what, *code, *text)))
        .collect();
    let mut rows = Vec::new();
    let all_in = wait_for(60, || {
        rows = server.quarantine();
        rows.len() >= expected.len()
    });
    assert!(
        all_in,
        "every bad bundle is quarantined: {} of {}: {rows:?}",
        rows.len(),
        expected.len()
    );
    for row in &rows {
        let sha = row["payload_sha256"].as_str().unwrap_or_default();
        let Some((what, code, text)) = expected.get(sha) else {
            panic!("quarantined, but nothing bad was sent with these bytes: {row}");
        };
        assert_eq!(row["reason_code"], *code, "{what}: {row}");
        assert!(
            row["reason"].as_str().unwrap_or_default().contains(text),
            "{what}: the reason says why: {row}"
        );
    }
    assert_eq!(rows.len(), expected.len(), "one row each: {rows:?}");

    // The server keeps serving: a valid event after all that is stored.
    let (ev2, att2) = event("rej-good");
    dev.publish("rej-good", bundle(&ev2, &good, &att2));
    assert!(
        wait_for(30, || server.case(&ev2.event_id.to_string()).is_some()),
        "a valid event after the bad ones is stored"
    );
    assert!(server.running(), "the server is up");
    assert_eq!(http_get(server.addr, "/healthz").unwrap().0, 200);
    assert_eq!(
        server.metric("ingest_bundles_total{outcome=\"stored\"}"),
        2,
        "two valid events, each stored once (the replay was not stored again)"
    );
    assert!(
        server.metric("ingest_bundles_total{outcome=\"duplicate\"}") >= 1,
        "the identical replay was answered as a duplicate"
    );
    eprintln!(
        "[rejects] {} bad bundles quarantined with their reasons: {}",
        expected.len(),
        elapsed(t0)
    );
}
