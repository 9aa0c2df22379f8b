//! Outbox and delivery figures for the README:
//!
//! 1. enqueue throughput: violations per second written to the spool (three
//!    stills, each file fsynced and renamed, then the directory) and queued
//!    in the outbox (one `synchronous=FULL` commit each);
//! 2. backlog drain: the time to deliver that whole backlog to a local
//!    Mosquitto, with an in-process subscriber that verifies each bundle
//!    (signature and still hashes) and acks it like the server does.
//!
//! `cargo run --release -p edge-agent --example outbox_bench -- [COUNT] [STILL_BYTES]`
//! (defaults 10000 and 150000). Needs `mosquitto` (installed by `make setup`).

use edge_agent::config::AgentConfig;
use edge_agent::delivery::{self, Shared};
use edge_agent::identity::DeviceIdentity;
use edge_agent::outbox::{Outbox, now_ms};
use protocol::{
    Ack, ClockSync, EventBundle, EvidenceItem, EvidenceRole, Plate, PlateColour, SchemaVersion,
    SignalObservation, SignalState, SignedEvent, TrackPoint, TrackSummary, VehicleClass,
    ViolationEvent, ViolationType,
};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let count: u64 = args
        .get(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let still: usize = args
        .get(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(150_000);
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nmessage_size_limit 0\n"),
    )?;
    let mut broker = std::process::Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stderr(std::process::Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));

    // The acking subscriber plays the server: it signs its acks with this
    // key, which the agent is told to trust.
    let server_key = protocol::SigningKey::from_bytes(&[0x5e; 32]);
    let toml = format!(
        "[device]\nid = \"bench-edge\"\nsite = \"bench-site\"\ndata_dir = \"{}\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nbacklog_per_s = 100000\nwindow = 32\n[outbox]\nmax_events = 1000000\nmax_mib = 1000000\n[health]\nmetrics_listen = \"\"\n[server]\npublic_keys = [\"{}\"]\n",
        dir.path().join("data").display(),
        hex::encode(server_key.verifying_key().to_bytes())
    );
    let cfg =
        AgentConfig::from_toml_str(&toml, "bench", |_| None).map_err(|e| anyhow::anyhow!(e))?;
    let (id, _) = DeviceIdentity::load_or_create("bench-edge", "bench-site", &cfg.key_file())?;
    let spool = cfg.spool_dir();
    let mut outbox = Outbox::open(&cfg.outbox_db(), cfg.outbox.limits())?;

    // 1. Enqueue.
    let t = Instant::now();
    for n in 0..count {
        let (event, evdir) = make_violation(&id, &spool, n, still)?;
        outbox.enqueue(&event, "cam-1", &evdir)?;
    }
    let enqueue_s = t.elapsed().as_secs_f64();
    println!(
        "enqueue: {count} violations with 3 x {still} B stills in {enqueue_s:.1} s = {:.0} violations/s",
        count as f64 / enqueue_s
    );

    // 2. Drain to the broker and an acking, verifying subscriber.
    let verified = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let acker = {
        let (verified, stop, key) = (verified.clone(), stop.clone(), id.verifying_key());
        let server_key = server_key.clone();
        let mut o = MqttOptions::new("bench-server", "127.0.0.1", port);
        o.set_max_packet_size(32 << 20, 32 << 20);
        let (client, mut conn) = Client::new(o, 1024);
        client.subscribe("tv/v1/+/+/events", QoS::AtLeastOnce)?;
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok(Ok(Event::Incoming(Packet::Publish(p)))) =
                    conn.recv_timeout(Duration::from_millis(100))
                else {
                    continue;
                };
                let Ok(b) = EventBundle::decode(&p.payload) else {
                    continue;
                };
                let Ok(ev) = b.event.verify(&key) else {
                    continue;
                };
                if protocol::check_attachments(&ev, &b.attachments).is_err() {
                    continue;
                }
                verified.fetch_add(1, Ordering::Relaxed);
                let ack = Ack::stored(ev.event_id)
                    .sign_for("bench-edge", &server_key)
                    .unwrap_or_default();
                let topic =
                    protocol::topics::ack_topic("bench-site", "bench-edge").unwrap_or_default();
                let _ = client.publish(topic, QoS::AtLeastOnce, false, ack);
            }
        })
    };
    let t = Instant::now();
    let runner = {
        let (cfg, id, stop) = (cfg.clone(), id.clone(), stop.clone());
        std::thread::spawn(move || delivery::run(&cfg, &id, &Shared::default(), stop))
    };
    while outbox.stats(now_ms())?.depth > 0 {
        std::thread::sleep(Duration::from_millis(100));
        if t.elapsed() > Duration::from_secs(3600) {
            anyhow::bail!("drain did not finish within an hour");
        }
    }
    let drain_s = t.elapsed().as_secs_f64();
    println!(
        "drain: {count}-violation backlog delivered and acked in {drain_s:.1} s = {:.0} violations/s ({:.0} MB/s); {} bundles verified",
        count as f64 / drain_s,
        count as f64 * 3.0 * still as f64 / drain_s / 1e6,
        verified.load(Ordering::Relaxed)
    );
    stop.store(true, Ordering::Relaxed);
    let _ = runner.join();
    let _ = acker.join();
    let _ = broker.kill();
    Ok(())
}

fn make_violation(
    id: &DeviceIdentity,
    spool: &std::path::Path,
    n: u64,
    still: usize,
) -> anyhow::Result<(SignedEvent, std::path::PathBuf)> {
    let event_id = uuid::Uuid::new_v4();
    let partial = spool.join(format!("{event_id}.partial"));
    std::fs::create_dir_all(&partial)?;
    let mut evidence = Vec::new();
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for (name, role) in [
        ("at.jpg", EvidenceRole::Overview),
        ("before.jpg", EvidenceRole::Frame),
        ("plate.jpg", EvidenceRole::PlateCrop),
    ] {
        let bytes: Vec<u8> = (0..still)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        // As the evidence spool writes: temp file, fsync, rename.
        let tmp = partial.join(format!(".{name}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, partial.join(name))?;
        evidence.push(EvidenceItem::from_bytes(name, "image/jpeg", role, &bytes));
    }
    File::open(&partial)?.sync_all()?;
    let dir = spool.join(event_id.to_string());
    std::fs::rename(&partial, &dir)?;
    let now = time::OffsetDateTime::now_utc();
    let event = ViolationEvent {
        schema_version: SchemaVersion::CURRENT,
        event_id,
        device_id: id.device_id.clone(),
        camera_id: "cam-1".into(),
        site: id.site.clone(),
        event_time: now,
        clock: ClockSync::unknown(),
        violation_type: ViolationType::RedLight,
        vehicle_class: VehicleClass::Motorcycle,
        plate: Plate::unreadable(PlateColour::White),
        speed: None,
        signal: Some(SignalObservation {
            state: SignalState::Red,
            red_for_ms: Some(1000),
        }),
        track: TrackSummary {
            track_id: n,
            first_seen: now,
            last_seen: now,
            frame_count: 2,
            points: vec![
                TrackPoint {
                    frame: 1,
                    x: 1,
                    y: 1,
                },
                TrackPoint {
                    frame: 2,
                    x: 2,
                    y: 2,
                },
            ],
            riders: None,
        },
        evidence,
        software_version: "edge-agent bench".into(),
        site_config_sha256: None,
    };
    Ok((SignedEvent::sign(&event, id.signing_key())?, dir))
}
