//! Anchors made on a schedule (`[audit]`): a person making one by hand now
//! and then (`ingest-server audit anchor`) leaves weeks in which the chain
//! could be rewritten unseen. With `anchor_dir` set, the server signs the
//! chain's head every `anchor_interval_s` (and once at start) and writes it
//! there as `anchor-{seq}.json` — a directory meant to be on other storage
//! than the database: a write-once (object-locked) mount, a backup host's
//! share. The directory must exist and be writable when the server starts
//! ([`check_dir`]; it is never created, so a share not mounted is an
//! error, not anchors on local disk). Nothing is written while the head has
//! not moved, and a file once written is never replaced (server replicas
//! anchoring the same head leave one file). Before signing, the newest
//! anchor already there is checked against the chain: a chain rewritten
//! behind it, or broken, is not anchored, and the failure is logged as an
//! error every interval until someone looks.
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
    /// The newest anchor already in the directory no longer holds: the
    /// chain was rewritten behind it. Nothing is signed over it.
    #[error("the chain no longer holds anchor {path}: {source}")]
    Previous { path: String, source: AnchorError },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Checks that `dir` is an existing directory anchors can be written to
/// (a probe file made and removed): run at start, so a share not mounted,
/// or a directory the service may not write (systemd `ProtectSystem`,
/// a read-only container root), stops the server instead of failing
/// quietly every interval. The directory is never created: a mount point
/// whose share is missing must not fill up with anchors on local disk.
pub fn check_dir(dir: &Path) -> Result<(), AnchoringError> {
    let io = |source| AnchoringError::Io {
        path: dir.display().to_string(),
        source,
    };
    if !std::fs::metadata(dir).map_err(io)?.is_dir() {
        return Err(io(std::io::Error::other("not a directory")));
    }
    let probe = dir.join(format!(".probe-{}", uuid::Uuid::new_v4()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(io)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Signs the chain's head at `now` and writes it to `dir` as
/// `anchor-{seq}.json`, unless a file for that head is there already.
/// First the newest anchor in `dir` is checked against the chain: a chain
/// rewritten behind it is reported ([`AnchoringError::Previous`]) and not
/// signed. Returns the file written, `None` when the head had one.
pub async fn anchor_to(
    db: &Db,
    key: &ServerKey,
    dir: &Path,
    now: i64,
) -> Result<Option<PathBuf>, AnchoringError> {
    let d = dir.to_path_buf();
    let newest = blocking(move || newest_anchor(&d)).await?;
    if let Some((path, text)) = newest {
        let previous = |source| AnchoringError::Previous {
            path: path.display().to_string(),
            source,
        };
        let a = anchor::parse(&text).map_err(previous)?;
        anchor::check(db, &a).await.map_err(previous)?;
    }
    let a = anchor::make(db, key, now).await?;
    let path = dir.join(format!("anchor-{:012}.json", a.seq));
    let p = path.clone();
    let written = blocking(move || write_new(&p, &a)).await?;
    Ok(written.then_some(path))
}

/// Runs file work off the async workers (a hung network mount blocks in
/// the kernel).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AnchoringError> + Send + 'static,
) -> Result<T, AnchoringError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AnchoringError::Io {
            path: String::new(),
            source: std::io::Error::other(e.to_string()),
        })?
}

/// The newest `anchor-*.json` in `dir` (by sequence number, as named) and
/// its text.
fn newest_anchor(dir: &Path) -> Result<Option<(PathBuf, String)>, AnchoringError> {
    let io = |path: &Path, source| AnchoringError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut newest: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let path = entry.map_err(|e| io(dir, e))?.path();
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("anchor-")?.strip_suffix(".json"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq
            && newest.as_ref().is_none_or(|(s, _)| seq > *s)
        {
            newest = Some((seq, path));
        }
    }
    match newest {
        None => Ok(None),
        Some((_, path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            Ok(Some((path, text)))
        }
    }
}

/// Writes the anchor to `path` if no file is there (`create_new`: of two
/// replicas anchoring the same head one writes, the other finds it; works
/// on mounts without hard links, such as object-storage FUSE mounts).
/// `false` when a file was there.
fn write_new(path: &Path, a: &Anchor) -> Result<bool, AnchoringError> {
    let io = |source| AnchoringError::Io {
        path: path.display().to_string(),
        source,
    };
    let text = serde_json::to_string_pretty(a).map_err(|e| io(std::io::Error::other(e)))? + "\n";
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(io(e)),
    };
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(true)
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
