//! The spool: one directory per event, `<spool>/<event-uuid>/`, written so
//! that a directory under its final name is always complete.
//!
//! Files are made in `<spool>/<event-uuid>.partial/`: each is written to a
//! hidden temp name, fsynced and renamed; then the directory is fsynced,
//! renamed to `<event-uuid>` and the spool directory fsynced. A crash
//! leaves at most a `.partial` directory, which is never presented as
//! evidence (a new attempt for the same event replaces it; the outbox may
//! delete stale ones). Besides the evidence files the directory holds
//! `manifest.json` (the items, what is missing and why), which is not
//! itself an evidence item.
//!
//! Files: `before.jpg`, `at.jpg`, `after.jpg` (privacy-masked originals),
//! `before_annotated.jpg`, `at_annotated.jpg`, `after_annotated.jpg`,
//! `vehicle.jpg` (lower half of the violator's box), `signal.jpg` (the
//! lane's signal head, when it is read from the image), `plate.jpg` (when
//! the plate reader supplied one), `plate_vehicle.jpg` (the frame the plate
//! was read on, around the violator, with its box and the plate's drawn)
//! and `clip.mp4`. Roles: `at.jpg` is the
//! `overview`; the other stills are `frame`s.
//!
//! Each still and crop names the frame it shows (number and time), unless
//! that frame's time lies more than [`MAX_FRAME_OFFSET_S`] from the
//! violation's (the time the event's `event_time` is taken from): the
//! protocol refuses a manifest naming such a frame, and with it the whole
//! signed event, so one still's stamp would lose the violation. A source
//! stamped on arrival (HTTP MJPEG) whose clock steps during the evidence
//! window gives such a frame; its still is kept, without the stamp, and a
//! warning logged.

use super::clip::encode_clip;
use super::collector::{EvidenceJob, stamp};
use super::stills::{self, Annotation, Moment};
use super::{EvidenceError, io};
use crate::geometry::BBox;
use protocol::evidence::MAX_FRAME_OFFSET_S;
use protocol::{EvidenceItem, EvidenceRole, FrameStamp, sha256_hex_reader};
use serde::Serialize;
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// A piece of evidence that could not be made, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingEvidence {
    /// The file that is absent, e.g. `before.jpg`.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// What [`EvidenceJob::write`] produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvidenceSet {
    /// The event.
    pub event_id: Uuid,
    /// The complete directory, `<spool>/<event_id>`.
    pub dir: PathBuf,
    /// Every evidence file with its size and SHA-256, for the event.
    pub items: Vec<EvidenceItem>,
    /// What could not be made (empty when the set is whole).
    pub missing: Vec<MissingEvidence>,
    /// Whether the clip covers the whole `post` window.
    pub window_complete: bool,
}

const JPEG: &str = "image/jpeg";

struct Writer {
    dir: PathBuf,
    items: Vec<EvidenceItem>,
    /// The event, for the log.
    event_id: Uuid,
    /// The violation's time, the event's `event_time`: what a still's frame
    /// time must lie near to be named (see the module docs).
    event_time: OffsetDateTime,
    /// Stills encoded at less than the configured quality or size to fit
    /// their share of the bundle (for `manifest.json`).
    reduced: Vec<serde_json::Value>,
}

impl Writer {
    /// Encodes `img` as the JPEG still `name` within its share of the
    /// bundle ([`stills::jpeg_fitted`]), noting a reduction, and writes it.
    fn still(
        &mut self,
        name: &str,
        role: EvidenceRole,
        img: &opencv::core::Mat,
        quality: i32,
        frame: Option<FrameStamp>,
    ) -> Result<(), EvidenceError> {
        let fitted = stills::jpeg_fitted(img, quality, name)?;
        if fitted.reduced(quality) {
            self.reduced.push(serde_json::json!({
                "name": name,
                "quality": fitted.quality,
                "scale": fitted.scale,
            }));
        }
        self.bytes(name, role, JPEG, &fitted.bytes, frame)
    }

    /// Writes a still or crop cut from the frame `frame` (named in the
    /// manifest, under the signature, if it lies within
    /// [`MAX_FRAME_OFFSET_S`] of the violation; see the module docs) or,
    /// for `None`, from no one frame.
    fn bytes(
        &mut self,
        name: &str,
        role: EvidenceRole,
        media: &str,
        bytes: &[u8],
        frame: Option<FrameStamp>,
    ) -> Result<(), EvidenceError> {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut f = File::create(&tmp).map_err(io("creating", &tmp))?;
        f.write_all(bytes).map_err(io("writing", &tmp))?;
        f.sync_all().map_err(io("syncing", &tmp))?;
        let dest = self.dir.join(name);
        fs::rename(&tmp, &dest).map_err(io("renaming into", &dest))?;
        let mut item = EvidenceItem::from_bytes(name, media, role, bytes);
        item.frame = frame.filter(|f| self.near_event(name, f));
        self.items.push(item);
        Ok(())
    }

    /// Whether the frame `f` of the still `name` lies near enough the
    /// violation to be named (the protocol's bound, compared as it
    /// compares); if not, says so in the log.
    fn near_event(&self, name: &str, f: &FrameStamp) -> bool {
        let off = (f.time - self.event_time).whole_seconds();
        let near = off.abs() <= MAX_FRAME_OFFSET_S;
        if !near {
            tracing::warn!(
                event = %self.event_id,
                still = name,
                frame = f.number,
                offset_s = off,
                "a still's frame time lies more than {MAX_FRAME_OFFSET_S} s from the violation's (the clock stepped?): the still names no frame"
            );
        }
        near
    }

    /// Adds a file already written at `tmp` (synced and renamed here).
    fn file(
        &mut self,
        tmp: &Path,
        name: &str,
        role: EvidenceRole,
        media: &str,
    ) -> Result<(), EvidenceError> {
        let f = File::open(tmp).map_err(io("opening", tmp))?;
        f.sync_all().map_err(io("syncing", tmp))?;
        let (sha256, size_bytes) = sha256_hex_reader(&f).map_err(io("hashing", tmp))?;
        if size_bytes == 0 {
            return Err(EvidenceError::Io {
                step: "checking",
                path: tmp.to_path_buf(),
                message: "file is empty".into(),
            });
        }
        let dest = self.dir.join(name);
        fs::rename(tmp, &dest).map_err(io("renaming into", &dest))?;
        self.items.push(EvidenceItem {
            name: name.into(),
            media_type: media.into(),
            role,
            size_bytes,
            sha256,
            frame: None,
        });
        Ok(())
    }
}

/// Writes the clip of `job` to `tmp`; says how it was made:
/// `camera-stream` (the camera's own H.264 pictures, remuxed untouched: no
/// privacy mask to fill), `re-encoded` (the camera stream decoded, masks
/// filled if any, encoded again as H.264: a site with masks, an H.265
/// camera, whose clip browsers may not play, or a stream whose times an MP4
/// cannot carry as they are, see `JobStream::can_remux`) or `encoded` (from
/// decoded frames).
fn write_clip(job: &EvidenceJob, tmp: &Path) -> (&'static str, Result<(), EvidenceError>) {
    let (site, cfg) = (&*job.site, &*job.config);
    match &job.stream {
        Some(s) if site.privacy_masks.is_empty() && s.is_h264() && s.can_remux() => {
            ("camera-stream", s.remux(job.end, tmp, cfg.clip_timeout))
        }
        Some(s) => (
            "re-encoded",
            s.encode_masked(
                (job.start, job.end),
                &site.privacy_masks,
                tmp,
                cfg.clip_bitrate_kbps,
                cfg.clip_timeout,
            ),
        ),
        None => {
            let frames: Vec<_> = job
                .frames()
                .iter()
                .filter(|f| f.time >= job.start && f.time <= job.end)
                .cloned()
                .collect();
            (
                "encoded",
                encode_clip(
                    &frames,
                    &site.privacy_masks,
                    tmp,
                    cfg.clip_bitrate_kbps,
                    cfg.clip_timeout,
                ),
            )
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), EvidenceError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing directory", dir))
}

/// How long a `<id>.partial` directory may go unchanged before
/// [`sweep_spool`] takes it for a write that died (longer than a clip's
/// encode may take: its writes renew the directory's time).
pub const PARTIAL_STALE: Duration = Duration::from_secs(15 * 60);

/// How long a complete directory with no signed event (`signed.json`) and
/// no outbox row is kept for a person to look at before [`sweep_spool`]
/// removes it: such evidence can never be delivered (the event is never
/// guessed at afterwards, `recover.rs`), and kept for ever it fills the
/// disk outside every limit.
pub const UNSIGNED_KEPT: Duration = Duration::from_secs(24 * 3600);

/// What [`sweep_spool`] removed, and what it could not.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Unfinished `<id>.partial` directories (a write that failed or died).
    pub partial: Vec<PathBuf>,
    /// Complete directories with no signed event and no outbox row.
    pub unsigned: Vec<PathBuf>,
    /// Entries that could not be looked at or removed, and why.
    pub failed: Vec<(PathBuf, String)>,
}

/// Removes what the spool holds that can never be delivered (run at start,
/// before anything writes to `spool`): `<id>.partial` directories untouched
/// for [`PARTIAL_STALE`], and `<id>` directories without `signed.json`
/// untouched for `unsigned_after` whose event the outbox does not hold
/// (`queued(id)` false). Each removal is logged. A directory with a signed
/// event, or one the outbox holds, is never touched.
pub fn sweep_spool(
    spool: &Path,
    unsigned_after: Duration,
    mut queued: impl FnMut(Uuid) -> bool,
) -> Swept {
    let mut out = Swept::default();
    let entries = match fs::read_dir(spool) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => {
            out.failed.push((spool.to_path_buf(), e.to_string()));
            return out;
        }
    };
    let now = std::time::SystemTime::now();
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                out.failed.push((spool.to_path_buf(), e.to_string()));
                continue;
            }
        };
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let (id, partial) = match name.strip_suffix(".partial") {
            Some(stem) => (stem, true),
            None => (name.as_str(), false),
        };
        let Ok(id) = Uuid::parse_str(id) else {
            continue;
        };
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => m,
            Ok(_) => continue,
            Err(e) => {
                out.failed.push((path, e.to_string()));
                continue;
            }
        };
        let age = meta
            .modified()
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default();
        let remove = if partial {
            age >= PARTIAL_STALE
        } else {
            age >= unsigned_after && !path.join(crate::recover::SIGNED_FILE).exists() && !queued(id)
        };
        if !remove {
            continue;
        }
        match fs::remove_dir_all(&path) {
            Ok(()) if partial => {
                tracing::warn!(dir = %path.display(), age_s = age.as_secs(), "unfinished evidence directory (a write that failed or died) removed");
                out.partial.push(path);
            }
            Ok(()) => {
                tracing::error!(dir = %path.display(), age_s = age.as_secs(), "evidence with no signed event and no outbox row removed: it could never be delivered");
                out.unsigned.push(path);
            }
            Err(e) => {
                tracing::warn!(dir = %path.display(), error = %e, "could not remove an undeliverable spool directory");
                out.failed.push((path, e.to_string()));
            }
        }
    }
    out
}

pub(crate) fn write_job(job: &EvidenceJob, spool: &Path) -> Result<EvidenceSet, EvidenceError> {
    // A job carrying the coded stream decodes its stills here unless the
    // worker already did (with the plate frames, in one pass).
    let stills: BTreeSet<u64> = [
        job.violation.frames.before,
        job.violation.frames.at,
        job.violation.frames.after,
    ]
    .into();
    let decoded;
    let job = if stills
        .iter()
        .any(|n| job.frame(*n).is_none() && job.holds(*n))
    {
        let mut j = job.clone();
        j.materialise(&stills)?;
        decoded = j;
        &decoded
    } else {
        job
    };
    let v = &job.violation;
    let at_frame = job
        .frame(v.frames.at)
        .ok_or_else(|| EvidenceError::FrameGone {
            event_id: job.event_id,
            frame: v.frames.at,
            why: "the stream ended before it arrived".into(),
        })?;
    let id = job.event_id.hyphenated().to_string();
    let dir = spool.join(&id);
    if dir.exists() {
        return Err(EvidenceError::AlreadyExists { dir });
    }
    fs::create_dir_all(spool).map_err(io("creating the spool", spool))?;
    let partial = spool.join(format!("{id}.partial"));
    in_partial(&partial, || fill(job, spool, &partial, &dir, at_frame))
}

/// Makes the unfinished directory `partial` (replacing a stale one) and
/// runs `fill` in it. A fill that fails takes the directory with it: left,
/// it held a violation's stills and clip on the disk for ever, outside
/// every limit (one left by a crash goes at the next start,
/// [`sweep_spool`]).
fn in_partial<T>(
    partial: &Path,
    fill: impl FnOnce() -> Result<T, EvidenceError>,
) -> Result<T, EvidenceError> {
    if partial.exists() {
        fs::remove_dir_all(partial).map_err(io("removing a stale", partial))?;
    }
    fs::create_dir(partial).map_err(io("creating", partial))?;
    let written = fill();
    if written.is_err()
        && let Err(e) = fs::remove_dir_all(partial)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %partial.display(), error = %e, "could not remove an unfinished evidence directory");
    }
    written
}

/// Writes the evidence of `job` into `partial` and renames it `dir`.
fn fill(
    job: &EvidenceJob,
    spool: &Path,
    partial: &Path,
    dir: &Path,
    at_frame: &crate::capture::Frame,
) -> Result<EvidenceSet, EvidenceError> {
    let v = &job.violation;
    let site = &*job.site;
    let cfg = &*job.config;
    let mut w = Writer {
        dir: partial.to_path_buf(),
        items: Vec::new(),
        event_id: job.event_id,
        // Where `report::violation_event` takes `event_time` from (its
        // fallback, the track's last sight, is not known here; the `at`
        // frame's time stands in for it).
        event_time: v.at().unwrap_or(at_frame.time),
        reduced: Vec::new(),
    };
    let mut missing = Vec::new();
    let q = cfg.jpeg_quality;

    for (moment, number) in [
        (Moment::At, v.frames.at),
        (Moment::Before, v.frames.before),
        (Moment::After, v.frames.after),
    ] {
        let name = moment.name();
        let Some(frame) = job.frame(number) else {
            let why = if number > job.last_frame_number().unwrap_or(0) {
                "the stream ended before it arrived"
            } else {
                "it had left the ring buffer"
            };
            for n in [format!("{name}.jpg"), format!("{name}_annotated.jpg")] {
                missing.push(MissingEvidence {
                    name: n,
                    reason: format!("frame {number}: {why}"),
                });
            }
            continue;
        };
        let masked = stills::masked_copy(frame, site)?;
        let role = if moment == Moment::At {
            EvidenceRole::Overview
        } else {
            EvidenceRole::Frame
        };
        let file = format!("{name}.jpg");
        let at = Some(stamp(frame));
        w.still(&file, role, &masked, q, at)?;
        let note = Annotation {
            site,
            violation: v,
            moment,
            violator: job.boxes.get(&number).copied(),
            offset: cfg.display_offset,
        };
        let ann = stills::annotated(&masked, frame, &note)?;
        let file = format!("{name}_annotated.jpg");
        w.still(&file, EvidenceRole::Frame, &ann, q, at)?;
    }

    let at_masked = stills::masked_copy(at_frame, site)?;
    match stills::crop(&at_masked, stills::lower_half(v.bbox))? {
        Some(c) => w.still(
            "vehicle.jpg",
            EvidenceRole::VehicleCrop,
            &c,
            q,
            Some(stamp(at_frame)),
        )?,
        None => missing.push(MissingEvidence {
            name: "vehicle.jpg".into(),
            reason: format!("the vehicle box {:?} lies outside the frame", v.bbox),
        }),
    }
    if let Some(lamps) = v
        .lane
        .as_deref()
        .and_then(|id| site.lanes.iter().find(|l| l.id == id))
        .and_then(|l| l.group.as_deref())
        .and_then(|g| site.signal(g))
        .and_then(|s| s.lamps)
    {
        let rects = [lamps.red, lamps.yellow, lamps.green];
        let x1 = rects.iter().map(|r| r.x).min().unwrap_or(0) as f64;
        let y1 = rects.iter().map(|r| r.y).min().unwrap_or(0) as f64;
        let x2 = rects.iter().map(|r| r.x + r.w).max().unwrap_or(0) as f64;
        let y2 = rects.iter().map(|r| r.y + r.h).max().unwrap_or(0) as f64;
        let m = (x2 - x1).max(y2 - y1);
        let area = BBox::from_xyxy(x1 - m, y1 - m / 2.0, x2 + m, y2 + m / 2.0);
        if let Some(c) = stills::crop(&at_masked, area)? {
            w.still(
                "signal.jpg",
                EvidenceRole::SignalCrop,
                &c,
                q,
                Some(stamp(at_frame)),
            )?;
        }
    }
    if let Some(plate) = &job.plate_jpeg {
        w.bytes(
            "plate.jpg",
            EvidenceRole::PlateCrop,
            JPEG,
            plate,
            job.plate_frame,
        )?;
    }
    if let Some(context) = &job.plate_context_jpeg {
        w.bytes(
            "plate_vehicle.jpg",
            EvidenceRole::VehicleCrop,
            JPEG,
            context,
            job.plate_context_frame,
        )?;
    }

    let mut clip_source = None;
    if cfg.clip {
        let in_window = match &job.stream {
            Some(s) => s
                .frames()
                .filter(|(_, t)| *t >= job.start && *t <= job.end)
                .count(),
            None => job
                .frames()
                .iter()
                .filter(|f| f.time >= job.start && f.time <= job.end)
                .count(),
        };
        if in_window < 2 {
            missing.push(MissingEvidence {
                name: "clip.mp4".into(),
                reason: format!("only {in_window} frame(s) in the clip window"),
            });
        } else {
            let tmp = partial.join(".clip.mp4.tmp");
            let (source, encoded) = write_clip(job, &tmp);
            let encoded =
                encoded.and_then(|()| w.file(&tmp, "clip.mp4", EvidenceRole::Clip, "video/mp4"));
            match encoded {
                Ok(()) => clip_source = Some(source),
                Err(e) => {
                    tracing::warn!(event = %job.event_id, error = %e, "evidence clip failed");
                    let _ = fs::remove_file(&tmp);
                    missing.push(MissingEvidence {
                        name: "clip.mp4".into(),
                        reason: e.to_string(),
                    });
                }
            }
        }
    }

    let set = EvidenceSet {
        event_id: job.event_id,
        dir: dir.to_path_buf(),
        items: w.items.clone(),
        missing,
        window_complete: job.window_complete(),
    };
    let manifest = serde_json::json!({
        "event_id": set.event_id,
        "camera_id": site.camera_id,
        "frames": { "before": v.frames.before, "at": v.frames.at, "after": v.frames.after },
        "items": set.items,
        "missing": set.missing,
        "window_complete": set.window_complete,
        "clip_source": clip_source,
        "reduced": w.reduced,
    });
    let text = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    let tmp = partial.join(".manifest.json.tmp");
    fs::write(&tmp, &text).map_err(io("writing", &tmp))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing", &tmp))?;
    let mpath = partial.join("manifest.json");
    fs::rename(&tmp, &mpath).map_err(io("renaming into", &mpath))?;
    sync_dir(partial)?;
    fs::rename(partial, dir).map_err(io("completing", dir))?;
    sync_dir(spool)?;
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets a directory's modification time `ago` in the past.
    fn age(dir: &Path, ago: Duration) {
        File::open(dir)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - ago)
            .unwrap();
    }

    /// A write that fails half-way (a disk full, an encoder error) leaves
    /// no `.partial` directory behind to fill the disk; one that succeeds
    /// keeps what it made.
    #[test]
    fn a_failed_write_removes_its_partial_directory() {
        let spool = tempfile::tempdir().unwrap();
        let partial = spool.path().join(format!("{}.partial", Uuid::new_v4()));
        let err = in_partial(&partial, || -> Result<(), EvidenceError> {
            fs::write(partial.join("at.jpg"), vec![0u8; 4096]).unwrap();
            Err(EvidenceError::Io {
                step: "writing",
                path: partial.join("after.jpg"),
                message: "No space left on device".into(),
            })
        });
        assert!(err.is_err());
        assert!(!partial.exists(), "the unfinished directory was left");
        // A stale one from before is replaced, and a fill that succeeds
        // keeps its files.
        fs::create_dir(&partial).unwrap();
        fs::write(partial.join("old.jpg"), b"old").unwrap();
        in_partial(&partial, || {
            fs::write(partial.join("at.jpg"), b"new").map_err(io("w", &partial))
        })
        .unwrap();
        assert!(partial.join("at.jpg").exists() && !partial.join("old.jpg").exists());
    }

    /// At start, the spool loses what can never be delivered: unfinished
    /// writes, and complete evidence with no signed event that the outbox
    /// does not hold, once old enough; never a directory with a signed
    /// event, one the outbox holds, a recent one, or anything not ours.
    #[test]
    fn the_start_sweep_removes_stale_partials_and_old_unsigned_directories_only() {
        let spool = tempfile::tempdir().unwrap();
        let day = Duration::from_secs(24 * 3600);
        let make = |name: String, files: &[&str], ago: Duration| {
            let dir = spool.path().join(name);
            fs::create_dir(&dir).unwrap();
            for f in files {
                fs::write(dir.join(f), b"x").unwrap();
            }
            age(&dir, ago);
            dir
        };
        let (queued_id, fresh_id) = (Uuid::new_v4(), Uuid::new_v4());
        let stale_partial = make(
            format!("{}.partial", Uuid::new_v4()),
            &["at.jpg"],
            PARTIAL_STALE * 2,
        );
        let live_partial = make(
            format!("{}.partial", Uuid::new_v4()),
            &["at.jpg"],
            Duration::ZERO,
        );
        let unsigned = make(
            Uuid::new_v4().to_string(),
            &["at.jpg", "manifest.json"],
            2 * day,
        );
        let signed = make(
            Uuid::new_v4().to_string(),
            &["at.jpg", crate::recover::SIGNED_FILE],
            30 * day,
        );
        let queued = make(queued_id.to_string(), &["at.jpg"], 30 * day);
        let fresh = make(fresh_id.to_string(), &["at.jpg"], Duration::from_secs(60));
        let other = make("not-ours".into(), &["x"], 30 * day);
        let swept = sweep_spool(spool.path(), UNSIGNED_KEPT, |id| id == queued_id);
        assert_eq!(swept.partial, std::slice::from_ref(&stale_partial));
        assert_eq!(swept.unsigned, std::slice::from_ref(&unsigned));
        assert!(swept.failed.is_empty(), "{:?}", swept.failed);
        assert!(!stale_partial.exists() && !unsigned.exists());
        for kept in [&live_partial, &signed, &queued, &fresh, &other] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
        // No spool yet: nothing to do.
        assert_eq!(
            sweep_spool(&spool.path().join("none"), UNSIGNED_KEPT, |_| false),
            Swept::default()
        );
    }
}
