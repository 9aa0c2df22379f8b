//! `edge-agent` command line.

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};
use edge_agent::capture::{FrameSource, Pacing, SourceSpec};
use edge_agent::config::AgentConfig;
use edge_agent::delivery::{self, Shared};
use edge_agent::identity::DeviceIdentity;
use edge_agent::outbox::Outbox;
use edge_agent::replay::EvidenceOutput;
use edge_agent::site::SiteConfig;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[derive(Parser)]
#[command(version, about = "Traffic enforcement edge agent")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check that every model this box needs is present and verified.
    CheckModels,
    /// Draw the whole site configuration on frame N of a recording or stream
    /// (a PNG a technician checks the configuration with).
    Calibrate {
        /// Site configuration.
        #[arg(long)]
        config: PathBuf,
        /// Video file or stream address.
        #[arg(long)]
        source: String,
        /// Frame number to draw on.
        #[arg(long, default_value_t = 0)]
        frame: u64,
        /// Output PNG.
        #[arg(long, default_value = "calibration.png")]
        out: PathBuf,
    },
    /// Process a recording as fast as possible and print a JSON summary
    /// (tracks per class, violations, analysed fps).
    Replay {
        /// Video file or stream address.
        video: String,
        /// Site configuration (enables the rules).
        #[arg(long)]
        site: Option<PathBuf>,
        /// Vehicle detector: yolox (production) or motion (MOG2).
        #[arg(long, default_value = "yolox")]
        detector: String,
        /// Stop after this many frames.
        #[arg(long)]
        max_frames: Option<u64>,
        /// ONNX Runtime threads for the detector.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Write each violation's evidence (and plate read) under this spool
        /// directory; needs `--site`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Plate recogniser for violators: ppocr (baseline) or vn (our own).
        #[arg(long, default_value = "ppocr")]
        recognizer: String,
        /// Sign each violation and queue it in this agent's outbox (its
        /// spool replaces `--out`), as a live box does; `deliver` sends them.
        #[arg(long)]
        agent_config: Option<PathBuf>,
        /// Keep decoded frames for the evidence instead of the camera's
        /// coded stream (for comparing the two; a live box keeps the stream).
        #[arg(long)]
        decoded_ring: bool,
    },
    /// Render the demonstration intersection to `OUT/camera.mp4` with its
    /// site file `OUT/site.toml` (for `make demo` and trying the box without
    /// a camera).
    Scene {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// A directory with `labels.csv` (image,text) of photographed plates
        /// to put on the cars (e.g. ../shared/data/vn_crops_named).
        #[arg(long)]
        plates: Option<PathBuf>,
    },
    /// Print this device's id, site and public key (making the key on first
    /// use) as JSON, for enrolment at the server.
    Enroll {
        /// Agent configuration.
        #[arg(long, env = "EDGE_CONFIG")]
        config: PathBuf,
    },
    /// Deliver what the outbox holds to the server (and publish heartbeats)
    /// until SIGINT/SIGTERM.
    Deliver {
        /// Agent configuration.
        #[arg(long, env = "EDGE_CONFIG")]
        config: PathBuf,
    },
    /// The live box: every camera in the configuration analysed, violations
    /// post-processed, signed and queued, and delivered — until SIGINT/SIGTERM.
    Run {
        /// Agent configuration (with `[[cameras]]`).
        #[arg(long, env = "EDGE_CONFIG")]
        config: PathBuf,
    },
    /// A stand-in junction controller: publishes signed signal phases for
    /// one lane group on a fixed plan until SIGINT/SIGTERM (demo, tests,
    /// commissioning a fed junction before its controller is connected).
    /// Prints the controller's public key (the site file's
    /// `controller_key`) first, making the key file on first use.
    SignalSim {
        /// The controller's key file (made on first use, mode 0600).
        #[arg(long)]
        key_file: PathBuf,
        /// Broker host and port.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value_t = 1883)]
        port: u16,
        /// Broker account and its password (`signals` on the deployed brokers).
        #[arg(long)]
        username: Option<String>,
        #[arg(long, env = "SIGNAL_SIM_PASSWORD")]
        password: Option<String>,
        /// The lane group and its topic, as in the site file.
        #[arg(long)]
        group: String,
        #[arg(long)]
        topic: String,
        /// Seconds of green, yellow and red.
        #[arg(long, default_value_t = 30.0)]
        green: f64,
        #[arg(long, default_value_t = 3.0)]
        yellow: f64,
        #[arg(long, default_value_t = 40.0)]
        red: f64,
    },
    /// Print the outbox's counts as JSON.
    Outbox {
        /// Agent configuration.
        #[arg(long, env = "EDGE_CONFIG")]
        config: PathBuf,
    },
}

/// Logs to stderr, as JSON lines when asked (`health.log_json`).
fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let config = match &cli.command {
        Cmd::Enroll { config }
        | Cmd::Deliver { config }
        | Cmd::Run { config }
        | Cmd::Outbox { config } => Some(AgentConfig::load(config).map_err(|e| anyhow!(e))?),
        _ => None,
    };
    init_logs(config.as_ref().is_some_and(|c| c.health.log_json));
    match cli.command {
        Cmd::Enroll { .. } | Cmd::Deliver { .. } | Cmd::Run { .. } | Cmd::Outbox { .. } => {
            let Some(cfg) = config else {
                return Err(anyhow!("no configuration"));
            };
            match cli.command {
                Cmd::Enroll { .. } => {
                    // The one command that makes the device key.
                    let (identity, created) = DeviceIdentity::load_or_create(
                        &cfg.device.id,
                        &cfg.device.site,
                        &cfg.key_file(),
                    )?;
                    if created {
                        tracing::info!(key = %cfg.key_file().display(), "made a new device key");
                    }
                    let out = serde_json::json!({
                        "device_id": identity.device_id,
                        "site": identity.site,
                        "public_key": identity.public_key_hex(),
                        "key_file": cfg.key_file(),
                    });
                    println!("{}", serde_json::to_string_pretty(&out)?);
                }
                Cmd::Outbox { .. } => {
                    let outbox = Outbox::open(&cfg.outbox_db(), cfg.outbox.limits())?;
                    let now = edge_agent::outbox::now_ms();
                    let s = outbox.stats(now)?;
                    let out = serde_json::json!({
                        "depth": s.depth, "oldest_age_s": s.oldest_age_s, "bytes": s.bytes,
                        "delivered": s.delivered, "rejected": s.rejected, "evictions": s.evictions,
                        "set_aside": outbox.set_aside_count(0)?,
                        "held_by_server": outbox.held_count(now)?,
                        "alarm": outbox.alarm()?,
                        "recent": outbox.recent(20)?.into_iter().map(|(id, camera, state, done)| {
                            serde_json::json!({"event_id": id, "camera_id": camera, "state": state, "done": done})
                        }).collect::<Vec<_>>(),
                    });
                    println!("{}", serde_json::to_string_pretty(&out)?);
                }
                cmd => {
                    delivery::preflight(&cfg)?;
                    let identity =
                        DeviceIdentity::load(&cfg.device.id, &cfg.device.site, &cfg.key_file())?;
                    serve(&cfg, &identity, matches!(cmd, Cmd::Run { .. }))?;
                }
            }
            Ok(())
        }
        Cmd::SignalSim {
            key_file,
            host,
            port,
            username,
            password,
            group,
            topic,
            green,
            yellow,
            red,
        } => signal_sim(
            &key_file,
            edge_agent::signal::controller_sim::Publisher {
                host,
                port,
                credentials: username.map(|u| (u, password.unwrap_or_default())),
                topic,
                group,
            },
            [green, yellow, red],
        ),
        Cmd::Scene { out, plates } => {
            render_demo(&out, plates.as_deref())?;
            Ok(())
        }
        Cmd::CheckModels => {
            let resolver = edge_agent::models::resolver_from_env()?;
            let paths = edge_agent::models::resolve_required(&resolver).map_err(|e| anyhow!(e))?;
            for p in paths {
                println!("ok {}", p.display());
            }
            Ok(())
        }
        Cmd::Calibrate {
            config,
            source,
            frame,
            out,
        } => {
            let site = SiteConfig::load(&config)
                .with_context(|| format!("site configuration {}", config.display()))?;
            let spec = SourceSpec::parse(&source)?;
            let expect = Some((site.frame.width, site.frame.height));
            let mut frames = FrameSource::open(&spec, Pacing::AsFastAsPossible, expect)?;
            let picked = loop {
                match frames.next_frame(Duration::from_secs(10))? {
                    Some(f) if f.number == frame => break f,
                    Some(_) => continue,
                    None => return Err(anyhow!("{source} ended before frame {frame}")),
                }
            };
            let png = edge_agent::evidence::calibration_png(&picked, &site)?;
            std::fs::write(&out, png).with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Cmd::Replay {
            video,
            site,
            detector,
            max_frames,
            threads,
            out,
            recognizer,
            agent_config,
            decoded_ring,
        } => {
            let evidence = edge_agent::evidence::EvidenceConfig {
                keep_coded_stream: !decoded_ring,
                ..Default::default()
            };
            let site = site
                .map(|p| {
                    SiteConfig::load(&p)
                        .with_context(|| format!("site configuration {}", p.display()))
                })
                .transpose()?;
            let det = edge_agent::live::make_detector(
                &detector,
                threads,
                edge_agent::detect::MotionConfig::default(),
                site.as_ref().map(|s| s.detection).unwrap_or_default(),
            )?;
            let spec = SourceSpec::parse(&video)?;
            let report = match &agent_config {
                Some(path) => {
                    let cfg = AgentConfig::load(path).map_err(|e| anyhow!(e))?;
                    // The box's own key, made by `enroll` only: a key made
                    // here would be one the server never saw.
                    let identity =
                        DeviceIdentity::load(&cfg.device.id, &cfg.device.site, &cfg.key_file())?;
                    let outbox = Outbox::open(&cfg.outbox_db(), cfg.outbox.limits())?;
                    Some((
                        cfg.spool_dir(),
                        edge_agent::replay::Reporter {
                            identity,
                            outbox: std::sync::Mutex::new(outbox),
                        },
                    ))
                }
                None => None,
            };
            let output = match (out, report) {
                (_, Some((spool, reporter))) => Some(EvidenceOutput {
                    spool,
                    reader: Some(
                        edge_agent::violator::plate_reader(&recognizer).map_err(|e| anyhow!(e))?,
                    ),
                    report: Some(reporter),
                    evidence,
                }),
                (Some(spool), None) => Some(EvidenceOutput {
                    spool,
                    reader: Some(
                        edge_agent::violator::plate_reader(&recognizer).map_err(|e| anyhow!(e))?,
                    ),
                    report: None,
                    evidence,
                }),
                (None, None) => None,
            };
            let summary =
                edge_agent::replay::replay(&spec, det, site.as_ref(), max_frames, output.as_ref())?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
    }
}

/// `edge-agent deliver` (and, with `cameras`, `run`): the delivery loop with
/// metrics — and the cameras with their post-processing — until a signal.
fn serve(cfg: &AgentConfig, identity: &DeviceIdentity, cameras: bool) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let shared = Shared::default();
    if !cfg.health.metrics_listen.is_empty() {
        let addr = edge_agent::health::serve_metrics(
            &cfg.health.metrics_listen,
            shared.metrics.clone(),
            shared.board.clone(),
            stop.clone(),
        )
        .with_context(|| format!("metrics listener {}", cfg.health.metrics_listen))?;
        tracing::info!(%addr, "metrics at http://{addr}/metrics");
    }
    let live = if cameras {
        if cfg.cameras.is_empty() {
            return Err(anyhow!("no [[cameras]] in the configuration"));
        }
        let live = edge_agent::live::Live::start(cfg, identity, &shared, stop.clone())?;
        tracing::info!(cameras = cfg.cameras.len(), "cameras started");
        Some(live)
    } else {
        None
    };
    tracing::info!(device = %identity.device_id, broker = %cfg.mqtt.url, "delivering");
    let result = deliver(cfg, identity, &shared, &stop, live.is_some());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(live) = live {
        live.join();
    }
    result?;
    tracing::info!("delivery stopped");
    Ok(())
}

/// Delivery until a signal. With cameras running, a delivery that cannot
/// start (the outbox cannot be opened, the link not set up) is retried
/// with a growing pause, at most a minute, and the cameras go on queuing
/// meanwhile: a box that stops detecting because its uplink or outbox
/// failed loses every violation of the failure. Alone (`deliver`), the
/// error ends the process.
fn deliver(
    cfg: &AgentConfig,
    identity: &DeviceIdentity,
    shared: &Shared,
    stop: &Arc<AtomicBool>,
    cameras: bool,
) -> Result<(), delivery::DeliveryError> {
    use std::sync::atomic::Ordering;
    let mut pause = Duration::from_secs(1);
    loop {
        match delivery::run(cfg, identity, shared, stop.clone()) {
            Err(e) if cameras && !stop.load(Ordering::Relaxed) => {
                tracing::error!(error = %e, retry_in_s = pause.as_secs(), "delivery failed; the cameras go on, delivery starts again");
                let until = std::time::Instant::now() + pause;
                while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                pause = (pause * 2).min(Duration::from_secs(60));
            }
            other => return other,
        }
    }
}

/// `edge-agent signal-sim`: the stand-in controller until a signal.
fn signal_sim(
    key_file: &std::path::Path,
    to: edge_agent::signal::controller_sim::Publisher,
    seconds: [f64; 3],
) -> Result<()> {
    if let Some(s) = seconds
        .iter()
        .find(|s| !(s.is_finite() && (0.5..=600.0).contains(*s)))
    {
        return Err(anyhow!(
            "{s}: each of green, yellow and red must be 0.5 to 600 seconds"
        ));
    }
    if let Some(why) = protocol::topics::id_problem(&to.group) {
        return Err(anyhow!("--group: {why}"));
    }
    let (controller, _) = DeviceIdentity::load_or_create(&to.group, "controller", key_file)
        .with_context(|| format!("controller key {}", key_file.display()))?;
    println!(
        "{}",
        serde_json::json!({ "group": to.group, "topic": to.topic, "controller_key": controller.public_key_hex() })
    );
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let [green, yellow, red] = seconds.map(std::time::Duration::from_secs_f64);
    let plan = edge_agent::signal::controller_sim::Plan { green, yellow, red };
    let n = edge_agent::signal::controller_sim::run(&to, controller.signing_key(), plan, stop)?;
    tracing::info!(published = n, "signal stand-in stopped");
    Ok(())
}

/// `edge-agent scene`: the demo intersection as an MP4 and its site file.
fn render_demo(out: &std::path::Path, plates: Option<&std::path::Path>) -> Result<()> {
    use opencv::prelude::*;
    let mut images = Vec::new();
    if let Some(dir) = plates {
        let labels = std::fs::read_to_string(dir.join("labels.csv"))
            .with_context(|| format!("{}/labels.csv", dir.display()))?;
        for (line, row) in labels.lines().enumerate().skip(1) {
            let Some((file, _)) = row.split_once(',') else {
                return Err(anyhow!(
                    "{}/labels.csv:{}: expected image,text",
                    dir.display(),
                    line + 1
                ));
            };
            let path = dir.join(file.trim());
            let img = opencv::imgcodecs::imread(
                path.to_string_lossy().as_ref(),
                opencv::imgcodecs::IMREAD_COLOR,
            )
            .with_context(|| format!("reading {}", path.display()))?;
            // Wide (one-line) plates suit the rendered cars.
            if img.cols() > 3 * img.rows() {
                images.push(Arc::new(img));
            }
        }
    }
    let scene = edge_agent::scene::demo(&images, time::OffsetDateTime::now_utc());
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let frames = (0..edge_agent::scene::DEMO_FRAMES)
        .map(|n| scene.render(n))
        .collect::<Result<Vec<_>, _>>()
        .context("rendering the scene")?;
    let video = out.join("camera.mp4");
    edge_agent::evidence::encode_clip(&frames, &[], &video, 4000, Duration::from_secs(300))?;
    std::fs::write(out.join("site.toml"), scene.site_toml())?;
    println!(
        "{}: {} s, red-light runners: vehicles {:?}",
        video.display(),
        edge_agent::scene::DEMO_FRAMES / 10,
        scene.red_light_runners(edge_agent::scene::DEMO_FRAMES)
    );
    Ok(())
}
