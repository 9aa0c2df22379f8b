//! `ingest-loadgen`: a load generator that plays N edge devices publishing
//! signed violations (each with three stills of `--still-kb` KB) over MQTT to
//! an ingest server it starts in-process on the embedded broker, and reports
//! sustained violations per second and the publish → ack latency (the ack is
//! sent after the commit). `--database-url postgres://…` measures PostgreSQL;
//! the default is SQLite under a temporary data directory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use ingest_server::config::Config;
use ingest_server::{app, cases, devices};
use protocol::{
    Ack, AckStatus, Attachment, ClockSync, EventBundle, EvidenceItem, EvidenceRole, Message, Plate,
    PlateColour, PlateSource, SchemaVersion, SignalObservation, SignalState, SigningKey,
    TrackSummary, VehicleClass, ViolationEvent, ViolationType, topics,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, Semaphore, mpsc};
use uuid::Uuid;

#[derive(Parser)]
#[command(about = "Load generator: N simulated edges publishing signed violations over MQTT")]
struct Args {
    /// Simulated edge devices.
    #[arg(long, default_value_t = 50)]
    devices: usize,
    /// Violations in total.
    #[arg(long, default_value_t = 5000)]
    events: usize,
    /// Size of each of the three stills, KB.
    #[arg(long, default_value_t = 100)]
    still_kb: usize,
    /// Unacknowledged violations each device keeps in flight.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Database (default: SQLite in a temporary directory).
    #[arg(long)]
    database_url: Option<String>,
    /// External broker `mqtt://host:port` (default: the embedded broker).
    #[arg(long)]
    mqtt_url: Option<String>,
    /// The server's MQTT connections to an external broker (`[mqtt]
    /// connections`; the embedded broker takes one).
    #[arg(long)]
    connections: Option<usize>,
    /// Data directory for SQLite and evidence (default: a temporary one).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
}

const SITE: &str = "bench-site";

fn device_key(i: usize) -> SigningKey {
    let seed: [u8; 32] = Sha256::digest(format!("loadgen device {i}")).into();
    SigningKey::from_bytes(&seed)
}

fn make_bundle(device: &str, key: &SigningKey, still: &[u8]) -> Result<(Uuid, Vec<u8>)> {
    let id = Uuid::new_v4();
    let stills: Vec<Vec<u8>> = (0..3u8)
        .map(|n| {
            let mut s = still.to_vec();
            s[..16].copy_from_slice(id.as_bytes());
            s[16] = n;
            s
        })
        .collect();
    let names = ["overview.jpg", "plate.jpg", "vehicle.jpg"];
    let roles = [
        EvidenceRole::Overview,
        EvidenceRole::PlateCrop,
        EvidenceRole::VehicleCrop,
    ];
    let now = time::OffsetDateTime::now_utc().to_offset(time::macros::offset!(+7));
    let event = ViolationEvent {
        schema_version: SchemaVersion::CURRENT,
        event_id: id,
        device_id: device.into(),
        camera_id: "cam-1".into(),
        site: SITE.into(),
        event_time: now - time::Duration::seconds(2),
        clock: ClockSync::synced(0, "ntp:bench"),
        violation_type: ViolationType::RedLight,
        vehicle_class: VehicleClass::Motorcycle,
        plate: Plate {
            readable: true,
            text: Some("29B112345".into()),
            display: Some("29-B1 123.45".into()),
            confidence: Some(0.9),
            colour: PlateColour::White,
            lines: Some(2),
            source: Some(PlateSource {
                frame: 4_012,
                plate_box: [930, 760, 44, 34],
                vehicle_box: [880, 560, 140, 260],
            }),
        },
        speed: None,
        signal: Some(SignalObservation {
            state: SignalState::Red,
            red_for_ms: Some(3000),
        }),
        track: TrackSummary {
            track_id: 1,
            first_seen: now - time::Duration::seconds(4),
            last_seen: now - time::Duration::seconds(2),
            frame_count: 30,
            points: vec![],
            riders: None,
        },
        evidence: (0..3)
            .map(|n| EvidenceItem::from_bytes(names[n], "image/jpeg", roles[n], &stills[n]))
            .collect(),
        software_version: "loadgen".into(),
        site_config_sha256: None,
    };
    let bundle = EventBundle {
        event: event.sign(key)?,
        attachments: (0..3)
            .map(|n| Attachment {
                name: names[n].into(),
                data: stills[n].clone(),
            })
            .collect(),
    };
    Ok((id, bundle.encode()?))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.devices == 0 || args.events < args.devices || args.still_kb == 0 {
        bail!("need --devices > 0, --events >= --devices, --still-kb > 0");
    }
    let tmp = tempfile::tempdir()?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let mut cfg = Config {
        data_dir,
        ..Config::default()
    };
    cfg.http.listen = "127.0.0.1:0".parse()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    cfg.mqtt.listen = format!("127.0.0.1:{port}").parse()?;
    // Its simulated devices connect without logins (the one place broker
    // authentication is turned off); acks are still signed, and read here
    // as a 1.0 edge would.
    cfg.mqtt.embedded_auth = false;
    cfg.mqtt.connections = args.connections;
    if let Some(url) = &args.database_url {
        cfg.database.url = url.clone();
    }
    if let Some(url) = &args.mqtt_url {
        cfg.mqtt.url = url.clone();
    }
    cfg.validate()?;
    let (host, port) = cfg
        .external_broker()
        .unwrap_or_else(|| ("127.0.0.1".into(), cfg.mqtt.listen.port()));
    let server = app::start(&cfg).await.context("starting the server")?;
    let db = server.ingestor.context().db.clone();
    for i in 0..args.devices {
        let k = device_key(i);
        devices::enrol(
            &db,
            &format!("dev-{i}"),
            SITE,
            &hex::encode(k.verifying_key().to_bytes()),
        )
        .await?;
    }
    let still: Vec<u8> = (0..args.still_kb * 1024)
        .map(|i| (i * 7 + 3) as u8)
        .collect();
    let still = Arc::new(still);
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(args.events)));
    let per_device = args.events / args.devices;
    let total = per_device * args.devices;
    println!(
        "{} devices x {per_device} violations, 3 x {} KB stills, window {}, {} server connections, database {}",
        args.devices,
        args.still_kb,
        args.window,
        cfg.mqtt.connection_count(),
        if args.database_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    );
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..args.devices {
        let still = still.clone();
        let latencies = latencies.clone();
        let window = args.window;
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            run_edge(i, &host, port, per_device, window, &still, &latencies).await
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = start.elapsed();
    let mut lat = latencies.lock().await.clone();
    lat.sort();
    let stored = cases::case_count(&db).await?;
    println!(
        "{total} violations in {:.1} s: {:.0} violations/s ({:.0} MB/s of stills); \
         publish->ack p50 {:.0} ms, p99 {:.0} ms; {stored} cases stored",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        (total * 3 * args.still_kb) as f64 / 1024.0 / elapsed.as_secs_f64(),
        percentile(&lat, 0.5).as_secs_f64() * 1000.0,
        percentile(&lat, 0.99).as_secs_f64() * 1000.0,
    );
    if stored as usize != total {
        bail!("expected {total} cases, found {stored}");
    }
    Ok(())
}

async fn run_edge(
    i: usize,
    host: &str,
    port: u16,
    count: usize,
    window: usize,
    still: &[u8],
    latencies: &Mutex<Vec<Duration>>,
) -> Result<()> {
    let device = format!("dev-{i}");
    let key = device_key(i);
    let mut opts = MqttOptions::new(format!("loadgen-{i}"), host, port);
    opts.set_max_packet_size(20 << 20, 20 << 20)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<Ack>();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    let ack_topic = topics::ack_topic(SITE, &device)?;
    let sub = client.clone();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = sub.subscribe(ack_topic.clone(), QoS::AtLeastOnce).await;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Ok(a) = Ack::from_json(&p.payload) {
                        let _ = ack_tx.send(a);
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    ready_rx.recv().await.context("edge never subscribed")?;
    let topic = topics::events_topic(SITE, &device)?;
    let slots = Arc::new(Semaphore::new(window));
    let mut sent: HashMap<Uuid, Instant> = HashMap::new();
    let mut done = 0;
    let mut published = 0;
    while done < count {
        while published < count {
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                break;
            };
            permit.forget();
            let (id, bytes) = make_bundle(&device, &key, still)?;
            sent.insert(id, Instant::now());
            client
                .publish(topic.clone(), QoS::AtLeastOnce, false, bytes)
                .await?;
            published += 1;
        }
        let ack = tokio::time::timeout(Duration::from_secs(120), ack_rx.recv())
            .await
            .context("no ack within 120 s")?
            .context("ack channel closed")?;
        if !matches!(ack.status, AckStatus::Stored | AckStatus::Duplicate) {
            bail!("{device}: {ack:?}");
        }
        if let Some(t) = sent.remove(&ack.event_id) {
            latencies.lock().await.push(t.elapsed());
            done += 1;
            slots.add_permits(1);
        }
    }
    Ok(())
}
