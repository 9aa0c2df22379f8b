//! Only the server's signed ack, for this device, takes a violation out of
//! the outbox. Forged acks (unsigned, signed with a rogue key, a genuine
//! server ack for another device, an altered one) change nothing, are
//! refused with their reason and counted; the server's ack then delivers.
//! Once on the outbox directly, once through a real Mosquitto with a rogue
//! client publishing on the device's ack topic and the delivery loop
//! running; and the agent refuses to deliver with no server key at all.

mod delivery_support;

use delivery_support::*;
use edge_agent::config::AgentConfig;
use edge_agent::delivery::{self, Shared};
use edge_agent::identity::DeviceIdentity;
use edge_agent::outbox::{AckError, AckOutcome, AckPolicy, Outbox, OutboxLimits, now_ms};
use protocol::{Ack, Message, RejectCode, SigningKey, topics};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use uuid::Uuid;

const OTHER_DEVICE: &str = "hn-test-edge-02";

fn rogue_key() -> SigningKey {
    SigningKey::from_bytes(&[0x66; 32])
}

fn identity(dir: &Path) -> DeviceIdentity {
    DeviceIdentity::load_or_create(DEVICE, SITE, &dir.join("data/device.key"))
        .unwrap()
        .0
}

/// What a rogue client can put on this device's ack topic for `id`, with
/// the refusal reason each must get.
fn forgeries(id: Uuid) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let rejected = signed_ack(&Ack::rejected(id, RejectCode::Invalid, "no"), DEVICE);
    let mut turned: serde_json::Value = serde_json::from_slice(&rejected).unwrap();
    let m = turned.as_object_mut().unwrap();
    m.remove("code");
    m.remove("message");
    m.insert("status".into(), "stored".into());
    vec![
        ("unsigned", Ack::stored(id).to_json().unwrap(), "unsigned"),
        (
            "signed with a rogue key",
            Ack::stored(id).sign_for(DEVICE, &rogue_key()).unwrap(),
            "bad_signature",
        ),
        (
            "the server's genuine ack for another device",
            signed_ack(&Ack::stored(id), OTHER_DEVICE),
            "wrong_device",
        ),
        (
            "the server's rejection altered into stored",
            serde_json::to_vec(&turned).unwrap(),
            "bad_signature",
        ),
        ("not JSON", b"{\"status\":".to_vec(), "malformed"),
    ]
}

#[test]
fn forged_acks_leave_the_event_in_the_outbox_and_the_servers_signed_ack_delivers_it() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity(dir.path());
    let (mut outbox, event_id) = one_sent_event(dir.path(), &id, &"0".repeat(64));
    let policy = AckPolicy::new(DEVICE, vec![server_key().verifying_key()], false).unwrap();

    for (what, bytes, reason) in forgeries(event_id) {
        match outbox.apply_ack_bytes(&bytes, &policy) {
            Err(AckError::Refused(e)) => assert_eq!(e.reason(), reason, "{what}: {e}"),
            other => panic!("{what}: not refused: {other:?}"),
        }
        assert_eq!(
            outbox.state_of(event_id).unwrap().unwrap().0,
            "sent",
            "{what} changed the outbox"
        );
        assert_eq!(outbox.stats(now_ms()).unwrap().depth, 1, "{what}");
    }

    let (outcome, checked) = outbox
        .apply_ack_bytes(&signed_ack(&Ack::stored(event_id), DEVICE), &policy)
        .unwrap();
    assert_eq!(outcome, AckOutcome::Delivered { done: true });
    assert_eq!(checked.signed_by, Some(0));
    assert_eq!(outbox.state_of(event_id).unwrap().unwrap().0, "acked");
    assert_eq!(outbox.stats(now_ms()).unwrap().depth, 0);
}

/// An outbox under `dir` with one violation, published as bytes hashing to
/// `sent_sha256` and not yet acknowledged.
fn one_sent_event(dir: &Path, id: &DeviceIdentity, sent_sha256: &str) -> (Outbox, Uuid) {
    let mut outbox =
        Outbox::open(&dir.join("data/outbox.sqlite"), OutboxLimits::default()).unwrap();
    let (ev, evdir) = violation(id, &dir.join("data/spool"), "cam-1", 1, 1000, 0);
    let event_id = ev.unverified_event_id().unwrap();
    assert!(outbox.enqueue(&ev, "cam-1", &evdir).unwrap());
    let due = outbox
        .due(now_ms(), Duration::from_secs(30), i64::MAX, 10)
        .unwrap();
    let [edge_agent::outbox::Pending::Event(pending)] = due.as_slice() else {
        panic!("expected the one event due, got {} items", due.len());
    };
    outbox
        .mark_sent(pending.seq, now_ms(), sent_sha256)
        .unwrap();
    (outbox, event_id)
}

/// A genuinely signed rejection stops delivery only when it names the
/// bytes this device sent: one of an altered copy (someone published it
/// under the device's event id, the server rejected it, rightly) or one
/// naming nothing is ignored, and the event stays to be sent.
#[test]
fn a_rejection_is_believed_only_of_the_bytes_this_device_sent() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity(dir.path());
    let sent = protocol::sha256_hex(b"the bundle bytes this device published");
    let (mut outbox, event_id) = one_sent_event(dir.path(), &id, &sent);
    let policy = AckPolicy::new(DEVICE, vec![server_key().verifying_key()], false).unwrap();
    let rejection = || Ack::rejected(event_id, RejectCode::Invalid, "a field failed validation");

    for (what, ack) in [
        (
            "a rejection of an altered copy",
            rejection().bound_to(protocol::sha256_hex(b"an altered copy")),
        ),
        ("a rejection naming no bytes", rejection()),
        (
            "a rejection of a clip the event does not have",
            rejection().for_item("clip.mp4").bound_to(sent.clone()),
        ),
    ] {
        let (outcome, _) = outbox
            .apply_ack_bytes(&signed_ack(&ack, DEVICE), &policy)
            .unwrap();
        assert_eq!(outcome, AckOutcome::ForeignRejection, "{what}");
        assert_eq!(
            outbox.state_of(event_id).unwrap().unwrap().0,
            "sent",
            "{what} changed the outbox"
        );
    }
    let (outcome, _) = outbox
        .apply_ack_bytes(&signed_ack(&rejection().bound_to(sent), DEVICE), &policy)
        .unwrap();
    assert_eq!(outcome, AckOutcome::Rejected);
    assert_eq!(outbox.state_of(event_id).unwrap().unwrap().0, "rejected");
}

/// A clip is sent as chunk frames after its event is acked. The server
/// refuses either one chunk on arrival (bound to that frame's hash) or the
/// assembled clip (bound to the whole file's hash): both are this device's
/// bytes and stop the clip's delivery; a rejection bound to a chunk of some
/// other file is ignored, so the clip is not resent forever nor given up
/// on someone else's account.
#[test]
fn a_clip_rejection_is_believed_of_its_chunks_and_of_the_whole_file() {
    let policy = AckPolicy::new(DEVICE, vec![server_key().verifying_key()], false).unwrap();
    // Three chunks, so a middle one is neither the first nor the file.
    let clip_bytes = 2 * protocol::transfer::CLIP_CHUNK_BYTES + 1000;
    for bound_to in ["middle chunk", "whole file"] {
        let dir = tempfile::tempdir().unwrap();
        let id = identity(dir.path());
        let mut outbox = Outbox::open(
            &dir.path().join("data/outbox.sqlite"),
            OutboxLimits::default(),
        )
        .unwrap();
        let (ev, evdir) = violation(
            &id,
            &dir.path().join("data/spool"),
            "cam-1",
            1,
            1000,
            clip_bytes,
        );
        let event_id = ev.unverified_event_id().unwrap();
        assert!(outbox.enqueue(&ev, "cam-1", &evdir).unwrap());
        let due = outbox
            .due(now_ms(), Duration::from_secs(30), i64::MAX, 10)
            .unwrap();
        let [edge_agent::outbox::Pending::Event(e)] = due.as_slice() else {
            panic!("expected the event due, got {due:?}");
        };
        outbox.mark_sent(e.seq, now_ms(), "bundle").unwrap();
        let stored = signed_ack(&Ack::stored(event_id), DEVICE);
        outbox.apply_ack_bytes(&stored, &policy).unwrap();
        let due = outbox
            .due(now_ms(), Duration::from_secs(30), i64::MAX, 10)
            .unwrap();
        let [edge_agent::outbox::Pending::Clip(c)] = due.as_slice() else {
            panic!("expected the clip due, got {due:?}");
        };
        outbox.mark_clip_sent(c.seq, now_ms()).unwrap();

        let file = std::fs::read(evdir.join("clip.mp4")).unwrap();
        let chunks = protocol::ClipChunk::split(event_id, "clip.mp4", &file);
        assert_eq!(chunks.len(), 3);
        let other = protocol::ClipChunk::split(event_id, "clip.mp4", b"someone else's clip");
        let frame_hash = |c: &protocol::ClipChunk| protocol::sha256_hex(&c.encode().unwrap());
        let rejection = |sha: String| {
            Ack::rejected(event_id, RejectCode::EvidenceMismatch, "chunk refused")
                .for_item("clip.mp4")
                .bound_to(sha)
        };

        let (outcome, _) = outbox
            .apply_ack_bytes(
                &signed_ack(&rejection(frame_hash(&other[0])), DEVICE),
                &policy,
            )
            .unwrap();
        assert_eq!(
            outcome,
            AckOutcome::ForeignRejection,
            "{bound_to}: a stranger's chunk"
        );
        let ours = match bound_to {
            "middle chunk" => frame_hash(&chunks[1]),
            _ => protocol::sha256_hex(&file),
        };
        let (outcome, _) = outbox
            .apply_ack_bytes(&signed_ack(&rejection(ours), DEVICE), &policy)
            .unwrap();
        assert_eq!(outcome, AckOutcome::ClipRejected, "{bound_to}");
        assert_eq!(
            outbox.state_of(event_id).unwrap().unwrap(),
            ("acked".to_string(), true),
            "{bound_to}: a refused clip leaves its event delivered"
        );
        assert!(
            outbox
                .due(now_ms() + 3_600_000, Duration::from_secs(30), i64::MAX, 10)
                .unwrap()
                .is_empty(),
            "{bound_to}: a refused clip is not sent again"
        );
    }
}

#[test]
fn a_rogue_clients_acks_through_the_broker_are_refused_and_counted_then_the_server_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let config = agent_config(dir.path(), broker.port, "");
    let cfg = AgentConfig::load(&config).unwrap();
    let id = identity(dir.path());
    let mut outbox = Outbox::open(&cfg.outbox_db(), cfg.outbox.limits()).unwrap();
    let (ev, evdir) = violation(&id, &cfg.spool_dir(), "cam-1", 1, 20_000, 0);
    let event_id = ev.unverified_event_id().unwrap();
    outbox.enqueue(&ev, "cam-1", &evdir).unwrap();

    // The rogue: sees the device's bundles (no ACL on this test broker) and
    // answers each with every forgery on the device's ack topic.
    let stop = Arc::new(AtomicBool::new(false));
    let rogue = {
        use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
        let mut o = MqttOptions::new("rogue", "127.0.0.1", broker.port);
        o.set_max_packet_size(32 << 20, 32 << 20);
        let (client, mut conn) = Client::new(o, 256);
        client
            .subscribe(
                topics::events_topic(SITE, DEVICE).unwrap(),
                QoS::AtLeastOnce,
            )
            .unwrap();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let ack_topic = topics::ack_topic(SITE, DEVICE).unwrap();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(Ok(Event::Incoming(Packet::Publish(p)))) =
                    conn.recv_timeout(Duration::from_millis(100))
                {
                    let Ok(b) = protocol::EventBundle::decode(&p.payload) else {
                        continue;
                    };
                    let Some(id) = b.event.unverified_event_id() else {
                        continue;
                    };
                    for (_, bytes, _) in forgeries(id) {
                        client
                            .publish(&ack_topic, QoS::AtLeastOnce, false, bytes)
                            .unwrap();
                    }
                }
            }
        })
    };

    let shared = Shared::default();
    let runner = {
        let (cfg, id, shared, stop) = (cfg.clone(), id.clone(), shared.clone(), stop.clone());
        std::thread::spawn(move || delivery::run(&cfg, &id, &shared, stop))
    };
    let m = shared.metrics.clone();
    assert!(
        wait_for(30, || m.acks_refused.load(Ordering::Relaxed) >= 5),
        "forgeries not refused: {} refused",
        m.acks_refused.load(Ordering::Relaxed)
    );
    let state = outbox.state_of(event_id).unwrap().unwrap().0;
    assert!(
        state == "sent" || state == "queued",
        "a forged ack moved the event to {state}"
    );
    assert_eq!(outbox.stats(now_ms()).unwrap().depth, 1);
    assert_eq!(m.events_acked.load(Ordering::Relaxed), 0);
    assert_eq!(m.events_rejected.load(Ordering::Relaxed), 0);

    // The server (signing with the key the agent trusts) now answers.
    let server = TestServer::start(broker.port, id.verifying_key());
    assert!(
        wait_for(30, || outbox.stats(now_ms()).unwrap().depth == 0),
        "the server's signed ack did not deliver the event"
    );
    assert_eq!(outbox.state_of(event_id).unwrap().unwrap().0, "acked");
    assert!(m.events_acked.load(Ordering::Relaxed) >= 1);
    assert_eq!(server.seen.lock().unwrap().first.len(), 1);

    stop.store(true, Ordering::Relaxed);
    runner.join().unwrap().unwrap();
    rogue.join().unwrap();
}

#[test]
fn without_a_server_key_the_agent_refuses_to_deliver() {
    let dir = tempfile::tempdir().unwrap();
    let config = agent_config(dir.path(), free_port(), "");
    let text = std::fs::read_to_string(&config).unwrap();
    let (head, _) = text.split_once("[server]").unwrap();
    std::fs::write(&config, head).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["deliver", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it delivered without a server key");
    assert!(stderr.contains("no server key"), "{stderr}");
    assert!(stderr.contains("accept_unsigned_acks"), "{stderr}");
}
