//! `ingest-server`: loads and validates the configuration, then serves
//! (the default), or administers: `device add|list|revoke|mqtt-secret`,
//! `key show|list|retire` (the server's ack-signing key),
//! `camera add|list|retire`,
//! `registry import vehicles.csv owners.csv`, `user add|list|disable`,
//! `audit verify`, `payments reconcile`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use ingest_server::audit::{self, Who};
use ingest_server::config::Config;
use ingest_server::server_key::{self, ServerKey};
use ingest_server::workflow::Role;
use ingest_server::{app, cameras, devices, registry};

#[derive(Parser)]
#[command(version, about = "Traffic enforcement ingest server (IOC)")]
struct Cli {
    /// Configuration file (TOML); embedded defaults when absent.
    #[arg(long, env = "INGEST_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Enrol, list and revoke edge devices.
    Device {
        #[command(subcommand)]
        action: DeviceAction,
    },
    /// The server's Ed25519 key that signs acks (edges must trust it).
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Enrol, list and retire the cameras of edge devices.
    Camera {
        #[command(subcommand)]
        action: CameraAction,
    },
    /// The owner registry in our database.
    Registry {
        #[command(subcommand)]
        action: RegistryAction,
    },
    /// Console accounts.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Online payments.
    Payments {
        #[command(subcommand)]
        action: PaymentsAction,
    },
    /// The evidence store.
    Evidence {
        #[command(subcommand)]
        action: EvidenceAction,
    },
}

#[derive(Subcommand)]
enum EvidenceAction {
    /// Rebuild the pack index from the packs' own headers (after a
    /// database restore older than the evidence); prints a JSON report,
    /// exit status 1 if a pack or file could not be used.
    Reindex {
        /// Also read every file and index only those matching their hash.
        #[arg(long)]
        verify: bool,
    },
    /// Delete the evidence `[retention]` says is no longer needed (what
    /// the server also does every `retention.check_hours`); prints a JSON
    /// report, exit status 1 if something could not be deleted.
    Purge {
        /// Only count the cases that are due; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum PaymentsAction {
    /// Ask the gateway about payments left pending (the server also does
    /// this periodically) and settle what it answers.
    Reconcile,
}

#[derive(Subcommand)]
enum UserAction {
    /// Create an account. The password is read from the first line of
    /// standard input (or --password-file), never from the command line.
    Add {
        #[arg(long)]
        username: String,
        #[arg(long)]
        display_name: String,
        /// operator, police, supervisor, auditor or admin.
        #[arg(long)]
        role: String,
        /// File whose first line is the password.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// No local password: the person signs in through SSO only.
        #[arg(long)]
        sso_only: bool,
    },
    /// List accounts.
    List,
    /// Disable an account and end its sessions.
    Disable { username: String },
    /// Make a personal admin API token for an administrator; printed once.
    Token {
        username: String,
        /// What it is for (shown in the audit log).
        #[arg(long, default_value = "")]
        label: String,
        /// Days until it expires (default: until revoked).
        #[arg(long)]
        days: Option<u32>,
    },
    /// Revoke a personal admin API token by its id (the part after `tvat.`).
    RevokeToken { token_id: String },
}

#[derive(Subcommand)]
enum AuditAction {
    /// Walk the whole hash chain, and check it still holds each anchor
    /// given; exit status 1 if it is broken or an anchor does not hold.
    Verify {
        /// An anchor file made by `audit anchor` (repeatable).
        #[arg(long)]
        anchor: Vec<PathBuf>,
    },
    /// Sign the chain's head with the server key, to keep outside the
    /// database (printed, or written to `--out`).
    Anchor {
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DeviceAction {
    /// Enrol a device with its Ed25519 public key; prints its MQTT login
    /// (the password only this once) and the server keys it must trust.
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        site: String,
        /// 64 hex characters.
        #[arg(long)]
        public_key: String,
        /// Print the enrolment as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List devices.
    List,
    /// Revoke a device: its events are quarantined and it can no longer log
    /// in to the embedded broker.
    Revoke {
        id: String,
        #[arg(long, default_value = "revoked by administrator")]
        reason: String,
    },
    /// Issue a new MQTT password for a device (the old one stops working).
    MqttSecret { id: String },
}

#[derive(Subcommand)]
enum KeyAction {
    /// Print this server's public key (64 hex), making the key if needed:
    /// put it in each edge's `[server] public_keys`.
    Show,
    /// List every registered server key (replicas, rotations).
    List,
    /// Stop handing out a key at enrolment (after a rotation).
    Retire { public_key: String },
}

#[derive(Subcommand)]
enum CameraAction {
    /// Enrol a camera of an enrolled device.
    Add {
        /// The device the camera is attached to.
        #[arg(long)]
        device: String,
        /// The camera's id on the device (`camera_id` of its events).
        #[arg(long)]
        id: String,
        /// Where it is and what it looks at (intersection, direction).
        #[arg(long)]
        description: String,
        /// The site; the device's when left out (and it must be the device's).
        #[arg(long)]
        site: Option<String>,
        /// Latitude, degrees (with --lon).
        #[arg(long, allow_negative_numbers = true)]
        lat: Option<f64>,
        /// Longitude, degrees (with --lat).
        #[arg(long, allow_negative_numbers = true)]
        lon: Option<f64>,
        /// Violation types it is approved for, comma-separated
        /// (`red_light,speeding`); every type when left out.
        #[arg(long, value_delimiter = ',')]
        rules: Option<Vec<String>>,
        /// Number of the inspection (kiểm định) certificate of its speed
        /// measurement.
        #[arg(long)]
        certificate_no: Option<String>,
        /// Last valid day of that certificate, YYYY-MM-DD (Vietnam time).
        #[arg(long)]
        certified_until: Option<String>,
    },
    /// List cameras (active and retired).
    List,
    /// Retire a camera: its events after now are quarantined.
    Retire {
        /// The device.
        device: String,
        /// The camera's id on the device.
        id: String,
        #[arg(long, default_value = "retired by administrator")]
        reason: String,
    },
}

#[derive(Subcommand)]
enum RegistryAction {
    /// Validate and import vehicles and owners (all or nothing).
    Import { vehicles: PathBuf, owners: PathBuf },
}

#[path = "cli/audit.rs"]
mod audit_cli;
#[path = "cli/user.rs"]
mod user_cli;

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rumqttd=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let cfg = Config::load(cli.config.as_deref())?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cfg).await,
        Command::Device { action } => device(cfg, action).await,
        Command::Key { action } => key(cfg, action).await,
        Command::Camera { action } => camera(cfg, action).await,
        Command::User { action } => user_cli::user(cfg, action).await,
        Command::Payments {
            action: PaymentsAction::Reconcile,
        } => {
            let report = ingest_server::payments::reconcile_from_config(&cfg).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Evidence {
            action: EvidenceAction::Reindex { verify },
        } => evidence_reindex(cfg, verify).await,
        Command::Evidence {
            action: EvidenceAction::Purge { dry_run },
        } => evidence_purge(cfg, dry_run).await,
        Command::Audit {
            action: AuditAction::Verify { anchor },
        } => audit_cli::verify(&cfg, &anchor).await,
        Command::Audit {
            action: AuditAction::Anchor { out },
        } => audit_cli::anchor(&cfg, out).await,
        Command::Registry {
            action: RegistryAction::Import { vehicles, owners },
        } => {
            let ingestor = app::open(&cfg).await?;
            let grammar = ingest_server::ingest::IngestContext::grammar_of(&ingestor);
            match registry::import(&ingestor.context().db, grammar, &vehicles, &owners).await {
                Ok((v, o)) => {
                    let detail = serde_json::json!({
                        "vehicles": v, "owners": o,
                        "vehicles_file": vehicles.display().to_string(),
                        "owners_file": owners.display().to_string(),
                    });
                    cli_audit(
                        &ingestor.context().db,
                        "registry.import",
                        "registry",
                        detail,
                    )
                    .await?;
                    println!("imported {v} vehicles and {o} owners");
                    Ok(())
                }
                Err(registry::ImportError::Invalid(problems)) => {
                    for p in &problems {
                        eprintln!("{p}");
                    }
                    bail!("{} problem(s); nothing imported", problems.len())
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

async fn serve(cfg: Config) -> Result<()> {
    let running = app::start(&cfg).await?;
    // Printed on stdout for people and for tests that start us on port 0.
    println!("ingest-server listening on http://{}", running.http_addr);
    println!(
        "ingest-server consuming MQTT from {}:{}",
        running.mqtt_addr.0, running.mqtt_addr.1
    );
    tracing::info!(addr = %running.http_addr, data_dir = %cfg.data_dir.display(), "serving");
    running.http.await??;
    Ok(())
}

async fn device(cfg: Config, action: DeviceAction) -> Result<()> {
    let ingestor = app::open(&cfg).await?;
    let db = &ingestor.context().db;
    match action {
        DeviceAction::Add {
            id,
            site,
            public_key,
            json,
        } => {
            // This server's key is among those handed out, even before its
            // first start.
            ServerKey::open(&cfg, db).await?;
            let e = devices::enrol_with_credentials(db, &id, &site, &public_key).await?;
            let detail = serde_json::json!({"site": site, "public_key": e.device.public_key});
            cli_audit(db, "device.enrol", &id, detail).await?;
            if json {
                println!("{}", serde_json::to_string(&e)?);
            } else {
                let d = &e.device;
                println!(
                    "enrolled {} at {} (key {})",
                    d.device_id, d.site, d.public_key
                );
                println!("mqtt username: {}", e.mqtt_username);
                println!(
                    "mqtt password: {}  (shown once: put it in the edge's [mqtt] password_file)",
                    e.mqtt_password
                );
                for k in &e.server_public_keys {
                    println!("server public key: {k}  (the edge's [server] public_keys)");
                }
            }
        }
        DeviceAction::MqttSecret { id } => {
            let secret = devices::issue_mqtt_secret(db, &id).await?;
            cli_audit(db, "device.mqtt_secret", &id, serde_json::json!({})).await?;
            println!("mqtt username: {id}");
            println!("mqtt password: {secret}  (shown once; the previous one no longer works)");
        }
        DeviceAction::List => {
            for d in devices::list(db).await? {
                let state = if d.is_revoked() { "revoked" } else { "active" };
                println!("{}\t{}\t{}\t{}", d.device_id, d.site, state, d.public_key);
            }
        }
        DeviceAction::Revoke { id, reason } => {
            let (d, changed) = devices::revoke(db, &id, &reason).await?;
            if changed {
                let detail = serde_json::json!({ "reason": reason });
                cli_audit(db, "device.revoke", &id, detail).await?;
            }
            println!("revoked {}", d.device_id);
        }
    }
    Ok(())
}

async fn key(cfg: Config, action: KeyAction) -> Result<()> {
    let ingestor = app::open(&cfg).await?;
    let db = &ingestor.context().db;
    match action {
        KeyAction::Show => {
            let k = ServerKey::open(&cfg, db).await?;
            println!("{}", k.public_key_hex());
        }
        KeyAction::List => {
            for (k, registered, retired) in server_key::list(db).await? {
                let state = if retired.is_some() {
                    "retired"
                } else {
                    "active"
                };
                println!("{k}\t{state}\tregistered_at_ms={registered}");
            }
        }
        KeyAction::Retire { public_key } => {
            if server_key::retire(db, &public_key).await? {
                cli_audit(db, "server_key.retire", &public_key, serde_json::json!({})).await?;
                println!("retired {public_key}");
            } else {
                bail!("no active server key {public_key}");
            }
        }
    }
    Ok(())
}

async fn camera(cfg: Config, action: CameraAction) -> Result<()> {
    let ingestor = app::open(&cfg).await?;
    let db = &ingestor.context().db;
    match action {
        CameraAction::Add {
            device,
            id,
            description,
            site,
            lat,
            lon,
            rules,
            certificate_no,
            certified_until,
        } => {
            let new = cameras::NewCamera {
                device_id: device,
                camera_id: id,
                site,
                description,
                latitude: lat,
                longitude: lon,
                enabled_rules: rules,
                certificate_no,
                certified_until,
            };
            let c = cameras::enrol(db, &new).await?;
            let subject = format!("{}/{}", c.device_id, c.camera_id);
            cli_audit(db, "camera.enrol", &subject, serde_json::json!({})).await?;
            println!(
                "enrolled camera {} of {} at {}",
                c.camera_id, c.device_id, c.site
            );
        }
        CameraAction::List => {
            for v in cameras::list(db).await? {
                let c = &v.camera;
                let rules = c
                    .enabled_rules
                    .as_ref()
                    .map(|r| {
                        r.iter()
                            .map(ingest_server::ingest::enum_text)
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_else(|| "all".into());
                let heartbeat = match (&v.heartbeat_state, v.missing_from_heartbeat) {
                    (Some(state), _) => state.clone(),
                    (None, true) => "MISSING from heartbeat".into(),
                    (None, false) => "-".into(),
                };
                println!(
                    "{}\t{}\t{}\t{}\trules={}\tcertified_until={}\t{}\t{}",
                    c.device_id,
                    c.camera_id,
                    c.site,
                    c.status,
                    rules,
                    c.certified_until.as_deref().unwrap_or("-"),
                    heartbeat,
                    c.description
                );
            }
        }
        CameraAction::Retire { device, id, reason } => {
            let (c, changed) = cameras::retire(db, &device, &id, &reason).await?;
            if changed {
                let subject = format!("{device}/{id}");
                let detail = serde_json::json!({ "reason": reason });
                cli_audit(db, "camera.retire", &subject, detail).await?;
            }
            println!("retired camera {} of {}", c.camera_id, c.device_id);
        }
    }
    Ok(())
}

/// Records a change made from the command line (after it succeeded), as
/// [`cli_admin`].
async fn cli_audit(
    db: &ingest_server::db::Db,
    action: &str,
    subject: &str,
    detail: serde_json::Value,
) -> Result<()> {
    audit::record_now(db, &cli_admin(), action, subject, detail).await?;
    Ok(())
}

/// The CLI's own name in the audit log: `cli:{login}`, as an administrator.
fn cli_admin() -> Who {
    Who::new(
        format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into())
        ),
        Role::Admin,
    )
}

async fn evidence_reindex(cfg: Config, verify: bool) -> Result<()> {
    let ingestor = app::open(&cfg).await?;
    let ctx = ingestor.context();
    let report = ctx.evidence.reindex(verify).await?;
    let detail = serde_json::json!({
        "packs": report.packs, "files": report.files, "added": report.added,
        "verified": report.verified, "problems": report.problems.len(), "verify": verify,
    });
    cli_audit(&ctx.db, "evidence.reindex", "evidence_index", detail).await?;
    print_report(&report, &report.problems)
}

/// Prints a command's JSON report; exits 1 after listing its problems.
fn print_report(report: &impl serde::Serialize, problems: &[String]) -> Result<()> {
    println!("{}", serde_json::to_string(report)?);
    if !problems.is_empty() {
        for p in problems {
            eprintln!("{p}");
        }
        std::process::exit(1);
    }
    Ok(())
}

async fn evidence_purge(cfg: Config, dry_run: bool) -> Result<()> {
    let ingestor = app::open(&cfg).await?;
    let ctx = ingestor.context();
    let now = ingest_server::db::now_ms();
    let report =
        ingest_server::retention::run(&ctx.db, &ctx.evidence, &cfg.retention, now, dry_run).await?;
    if !dry_run {
        let detail = serde_json::to_value(&report)?;
        cli_audit(&ctx.db, "evidence.purge_run", "retention", detail).await?;
    }
    print_report(&report, &report.problems)
}
