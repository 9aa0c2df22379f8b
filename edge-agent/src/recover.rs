//! Spool recovery: a violation whose evidence reached the spool but whose
//! signed event never reached the outbox is queued at the next start.
//!
//! Between the evidence directory appearing under its final name and the
//! outbox row being committed, the box can lose power, or the outbox can
//! refuse the write (disk full, a locked or damaged database). Before this
//! module such a violation was gone: its evidence sat in the spool with no
//! row to deliver it and no event to say what it was. Now the signed
//! envelope is written into the event's directory (`signed.json`, fsynced
//! and renamed in like the evidence files) *before* the outbox insert, and
//! [`requeue_orphans`] — run when the live box opens the outbox — queues
//! every complete directory that has one and no outbox row. The envelope
//! is the one signed at the time (the server verifies it as ever; a copy
//! already stored is answered as a duplicate). `signed.json` is not an
//! evidence item: the outbox queues only the files the event's manifest
//! names.
//!
//! A directory without `signed.json` (power lost between the evidence and
//! the signature, or written by an older version) cannot be delivered: it
//! is reported at every start, and left for a person.

use crate::outbox::{Outbox, OutboxError};
use protocol::SignedEvent;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// The signed envelope's file in an event's spool directory.
pub const SIGNED_FILE: &str = "signed.json";

/// Why the signed copy could not be kept.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", path.display())]
pub struct KeepError {
    what: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Writes `signed` into `dir` as [`SIGNED_FILE`], durably: a temp file,
/// fsynced, renamed, the directory fsynced.
pub fn keep_signed(dir: &Path, signed: &SignedEvent) -> Result<(), KeepError> {
    let err = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| KeepError { what, path, source }
    };
    let json = signed
        .to_json()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
        .map_err(err("encoding", dir))?;
    let tmp = dir.join(format!(".{SIGNED_FILE}.tmp"));
    let mut f = File::create(&tmp).map_err(err("creating", &tmp))?;
    f.write_all(&json).map_err(err("writing", &tmp))?;
    f.sync_all().map_err(err("syncing", &tmp))?;
    drop(f);
    let dest = dir.join(SIGNED_FILE);
    fs::rename(&tmp, &dest).map_err(err("renaming to", &dest))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err("syncing", dir))
}

/// What [`requeue_orphans`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Events queued from their spool directory.
    pub requeued: Vec<Uuid>,
    /// Complete directories with no outbox row and no signed envelope.
    pub unsigned: Vec<PathBuf>,
    /// Directories that could not be queued, and why.
    pub failed: Vec<(PathBuf, String)>,
}

/// Queues every complete event directory under `spool` that has a signed
/// envelope and no outbox row (see the module doc). An entry that cannot
/// be read or queued is reported in [`Recovery::failed`] and the rest go
/// on; only an outbox that cannot be asked at all is an error.
pub fn requeue_orphans(spool: &Path, outbox: &mut Outbox) -> Result<Recovery, OutboxError> {
    let mut report = Recovery::default();
    let entries = match fs::read_dir(spool) {
        Ok(e) => e,
        // No spool yet: nothing was ever written.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(e) => {
            report.failed.push((spool.to_path_buf(), e.to_string()));
            return Ok(report);
        }
    };
    let mut dirs: Vec<(Uuid, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                report.failed.push((spool.to_path_buf(), e.to_string()));
                continue;
            }
        };
        let path = entry.path();
        // `<uuid>` only: `<uuid>.partial` is an unfinished write, never
        // evidence; anything else is not ours.
        let id = entry
            .file_name()
            .to_str()
            .and_then(|n| Uuid::parse_str(n).ok());
        if let (Some(id), true) = (id, path.is_dir()) {
            dirs.push((id, path));
        }
    }
    dirs.sort();
    for (id, dir) in dirs {
        if outbox.state_of(id)?.is_some() {
            continue;
        }
        let file = dir.join(SIGNED_FILE);
        let bytes = match fs::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                report.unsigned.push(dir);
                continue;
            }
            Err(e) => {
                report.failed.push((file, e.to_string()));
                continue;
            }
        };
        match queue_one(outbox, id, &dir, &bytes) {
            Ok(()) => report.requeued.push(id),
            Err(why) => report.failed.push((file, why)),
        }
    }
    Ok(report)
}

fn queue_one(outbox: &mut Outbox, id: Uuid, dir: &Path, bytes: &[u8]) -> Result<(), String> {
    let signed = SignedEvent::from_json(bytes).map_err(|e| format!("not a signed event: {e}"))?;
    if signed.unverified_event_id() != Some(id) {
        return Err(format!(
            "the envelope is for event {:?}, not the directory's",
            signed.unverified_event_id()
        ));
    }
    let camera = signed
        .payload()
        .get("camera_id")
        .and_then(|c| c.as_str())
        .ok_or("the envelope names no camera_id")?
        .to_string();
    outbox
        .enqueue(&signed, &camera, dir)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
