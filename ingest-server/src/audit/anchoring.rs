//! Anchors made on a schedule (`[audit]`): a person making one by hand now
//! and then (`ingest-server audit anchor`) leaves weeks in which the chain
//! could be rewritten unseen. With `anchor_dir` set, the server signs the
//! chain's head every `anchor_interval_s` (and once at start) and writes it
//! there as `anchor-{seq}.json` — a directory meant to be on other storage
//! than the database: a write-once (object-locked) mount, a backup host's
//! share. Nothing is written while the head has not moved, and a file once
//! written is never replaced (server replicas anchoring the same head
//! leave one file). A broken chain is not anchored: the failure is logged
//! as an error, every interval, until someone looks.
//!
//! `ingest-server audit verify --anchor DIR/anchor-*.json` checks them all.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::anchor::{self, Anchor, AnchorError};
use crate::config::ConfigError;
use crate::db::Db;
use crate::server_key::ServerKey;

/// `[audit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Where signed anchors are written on a schedule
    /// (`INGEST_AUDIT_ANCHOR_DIR`); empty: only by hand.
    pub anchor_dir: PathBuf,
    /// Seconds between anchors, 60 to 86 400
    /// (`INGEST_AUDIT_ANCHOR_INTERVAL_S`).
    pub anchor_interval_s: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            anchor_dir: PathBuf::new(),
            anchor_interval_s: 3600,
        }
    }
}

impl AuditConfig {
    /// Environment overrides (`INGEST_AUDIT_*`).
    pub fn apply_env(&mut self, get: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("INGEST_AUDIT_ANCHOR_DIR") {
            self.anchor_dir = PathBuf::from(v.trim());
        }
        if let Some(v) = get("INGEST_AUDIT_ANCHOR_INTERVAL_S") {
            self.anchor_interval_s = v.trim().parse().map_err(|_| ConfigError::Env {
                var: "INGEST_AUDIT_ANCHOR_INTERVAL_S".into(),
                message: format!("`{v}` is not a whole number"),
            })?;
        }
        Ok(())
    }

    /// Checks the interval; errors name `audit.…`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(60..=86_400).contains(&self.anchor_interval_s) {
            return Err(ConfigError::Invalid {
                field: "audit.anchor_interval_s".into(),
                message: format!("{} is outside 60..=86400 (seconds)", self.anchor_interval_s),
            });
        }
        if self.anchor_dir.as_os_str().is_empty() {
            return Ok(());
        }
        if self.anchor_dir.is_relative() {
            return Err(ConfigError::Invalid {
                field: "audit.anchor_dir".into(),
                message: format!("{} is not an absolute path", self.anchor_dir.display()),
            });
        }
        Ok(())
    }

    /// Whether anchors are made on a schedule.
    pub fn enabled(&self) -> bool {
        !self.anchor_dir.as_os_str().is_empty()
    }
}

/// Why a scheduled anchor was not written.
#[derive(Debug, thiserror::Error)]
pub enum AnchoringError {
    #[error(transparent)]
    Anchor(#[from] AnchorError),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Signs the chain's head at `now` and writes it to `dir` as
/// `anchor-{seq}.json`, unless a file for that head is there already.
/// Returns the file written, `None` when the head had one.
pub async fn anchor_to(
    db: &Db,
    key: &ServerKey,
    dir: &Path,
    now: i64,
) -> Result<Option<PathBuf>, AnchoringError> {
    let a = anchor::make(db, key, now).await?;
    let path = dir.join(format!("anchor-{:012}.json", a.seq));
    let io = |source| AnchoringError::Write {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    if path.exists() {
        return Ok(None);
    }
    write_new(&path, &a).map_err(io)?;
    Ok(Some(path))
}

/// Writes the anchor to a temporary file beside `path`, then links it into
/// place: a reader never sees half a file, and an existing file (another
/// replica's) is kept, not replaced.
fn write_new(path: &Path, a: &Anchor) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(a).map_err(std::io::Error::other)? + "\n";
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        match std::fs::hard_link(&tmp, path) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    written
}

/// Anchors now, then every `anchor_interval_s`, in the background.
pub fn spawn(db: Db, key: Arc<ServerKey>, cfg: AuditConfig) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(cfg.anchor_interval_s));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match anchor_to(&db, &key, &cfg.anchor_dir, crate::db::now_ms()).await {
                Ok(Some(path)) => tracing::info!(path = %path.display(), "audit chain anchored"),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "audit anchor not written"),
            }
        }
    });
}
