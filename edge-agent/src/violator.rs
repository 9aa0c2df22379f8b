//! Post-processing of one violation: read the violator's plate and write its
//! evidence, off the real-time thread.
//!
//! The plate must belong to the vehicle that broke the rule — a fine on the
//! car beside the violator is the worst failure this product can have — so
//! the plate is looked for only inside the violator's own box (padded a
//! little) on the violation frame, and the read records that frame number and
//! the plate's box in frame coordinates. Anything the reader refuses (too
//! unsure, not a valid Vietnamese plate: a clock overlay, lettering on a bus)
//! leaves the plate "unreadable"; the violation still goes to a person.

use crate::detect::frame_mat;
use crate::evidence::{EvidenceError, EvidenceJob, EvidenceSet};
use crate::geometry::BBox;
use opencv::core::{Mat, Rect};
use opencv::prelude::*;
use plate_ocr::pipeline::{Pipeline, PlateRead};
use protocol::VehicleClass;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::Path;

/// The plate read on the violator.
#[derive(Debug, Clone, Serialize)]
pub struct ViolatorPlate {
    /// Canonical text, `None` when unreadable.
    pub text: Option<String>,
    pub display: Option<String>,
    pub confidence: f32,
    pub lines: Option<u8>,
    pub colour: String,
    /// The frame the plate was read on, and its box there (x, y, w, h).
    pub frame: u64,
    pub bbox: Option<[f32; 4]>,
    /// Frames of the violator with a valid read, and how many of them read
    /// exactly the answer.
    pub frames_read: usize,
    pub frames_agreeing: usize,
}

impl ViolatorPlate {
    fn unreadable(frame: u64) -> Self {
        ViolatorPlate {
            text: None,
            display: None,
            confidence: 0.0,
            lines: None,
            colour: "unknown".into(),
            frame,
            bbox: None,
            frames_read: 0,
            frames_agreeing: 0,
        }
    }
}

/// What post-processing produced for one violation.
#[derive(Debug, Clone, Serialize)]
pub struct Processed {
    pub plate: ViolatorPlate,
    /// The violator's track as the event reports it.
    #[serde(skip)]
    pub track: protocol::TrackSummary,
    /// The event's spool directory.
    pub dir: std::path::PathBuf,
    pub evidence: Vec<protocol::EvidenceItem>,
    pub missing: Vec<String>,
}

/// The violator's box padded by 10% of its size, clipped to the frame.
fn search_region(b: &BBox, width: u32, height: u32) -> Option<Rect> {
    let (px, py) = (b.w * 0.1, b.h * 0.1);
    let x0 = (b.x - px).max(0.0).floor() as i32;
    let y0 = (b.y - py).max(0.0).floor() as i32;
    let x1 = ((b.x + b.w + px).min(width as f64)).ceil() as i32;
    let y1 = ((b.y + b.h + py).min(height as f64)).ceil() as i32;
    (x1 - x0 >= 8 && y1 - y0 >= 8).then(|| Rect::new(x0, y0, x1 - x0, y1 - y0))
}

/// Most frames of the violator the plate is read on.
pub const MAX_READ_FRAMES: usize = 5;

/// The frames to read the violator's plate on: the violation frame and the
/// others where its box is largest (nearest the camera, so the plate has the
/// most pixels), at most [`MAX_READ_FRAMES`], with the box on each.
fn read_frames(job: &EvidenceJob) -> Vec<(u64, BBox)> {
    let at = job.violation.frames.at;
    let mut others: Vec<(u64, BBox)> = job
        .boxes
        .iter()
        .filter(|(n, _)| **n != at && job.holds(**n))
        .map(|(n, b)| (*n, *b))
        .collect();
    others.sort_by(|a, b| (b.1.w * b.1.h).total_cmp(&(a.1.w * a.1.h)));
    let mut out = vec![(at, job.violation.bbox)];
    out.extend(others.into_iter().take(MAX_READ_FRAMES - 1));
    out
}

/// The most confident valid read inside `b` on frame `n`, with the region
/// it was searched in.
fn read_on(job: &EvidenceJob, reader: &Pipeline, n: u64, b: &BBox) -> Option<(PlateRead, Rect)> {
    let frame = job.frame(n)?;
    let region = search_region(b, frame.width, frame.height)?;
    let crop: Mat = frame_mat(frame)
        .ok()
        .and_then(|m| Mat::roi(&m, region).ok().and_then(|r| r.try_clone().ok()))?;
    let reads = match reader.read_image(&crop) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(frame = n, error = %e, "plate reading failed");
            return None;
        }
    };
    let found = reads
        .into_iter()
        .filter(|r| r.valid && !r.unreadable && r.text.is_some())
        .max_by(|a, b| a.confidence.total_cmp(&b.confidence));
    if found.is_some() || job.violation.class != VehicleClass::Motorcycle {
        return found.map(|r| (r, region));
    }
    // The detector misses most motorbike plates: read plate-shaped windows.
    let search = reader.window_search()?;
    match reader.search_windows(&crop, search) {
        Ok(r) => r.map(|r| (r, region)),
        Err(e) => {
            tracing::warn!(frame = n, error = %e, "plate window search failed");
            None
        }
    }
}

/// Reads the plate inside the violator's own box on several frames of its
/// track and fuses the reads ([`plate_ocr::fuse`]): the plate is answered
/// only when the frames agree; frames that read different plates make it
/// unreadable (a person decides), never a majority guess between two plates.
pub fn read_violator_plate(job: &EvidenceJob, reader: &Pipeline) -> ViolatorPlate {
    let at = job.violation.frames.at;
    let reads: Vec<(u64, PlateRead, Rect)> = read_frames(job)
        .iter()
        .filter_map(|(n, b)| read_on(job, reader, *n, b).map(|(r, region)| (*n, r, region)))
        .collect();
    let fuse_in: Vec<plate_ocr::fuse::Read> = reads
        .iter()
        .filter_map(|(_, r, _)| {
            let text = r.text.as_deref()?;
            let mut read = plate_ocr::fuse::Read::uniform(text, r.confidence);
            if r.chars.len() == text.chars().count() {
                read.char_conf = r.chars.iter().map(|c| c.prob).collect();
            }
            Some(read)
        })
        .collect();
    // One confident, grammar-valid read may stand alone; two or more must agree.
    let cfg = plate_ocr::fuse::FuseConfig {
        min_reads: 1,
        ..plate_ocr::fuse::FuseConfig::default()
    };
    let fused = plate_ocr::fuse::fuse_with_grammar(
        &fuse_in,
        &cfg,
        plate_ocr::plate::PlateGrammar::builtin(),
    );
    let (text, confidence, support) = match &fused {
        plate_ocr::fuse::Fused::Agreed {
            text,
            confidence,
            support,
            ..
        } => (text.clone(), *confidence, *support),
        other => {
            if !reads.is_empty() {
                tracing::info!(event_id = %job.event_id, outcome = ?other, "plate reads of the violator not agreed; left to the reviewers");
            }
            return ViolatorPlate::unreadable(at);
        }
    };
    // The crop comes from the best read of the agreed plate.
    let Some((n, r, region)) = reads
        .iter()
        .filter(|(_, r, _)| r.text.as_deref() == Some(text.as_str()))
        .max_by(|a, b| a.1.confidence.total_cmp(&b.1.confidence))
    else {
        return ViolatorPlate::unreadable(at);
    };
    ViolatorPlate {
        text: Some(text),
        display: r.display.clone(),
        confidence,
        lines: r.lines,
        colour: format!("{:?}", r.colour).to_lowercase(),
        frame: *n,
        bbox: Some([
            r.bbox[0] + region.x as f32,
            r.bbox[1] + region.y as f32,
            r.bbox[2],
            r.bbox[3],
        ]),
        frames_read: reads.len(),
        frames_agreeing: support,
    }
}

/// Reads the plate, attaches its crop, and writes the evidence to `spool`.
pub fn process(
    mut job: EvidenceJob,
    reader: Option<&Pipeline>,
    spool: &Path,
) -> Result<Processed, EvidenceError> {
    // A job carrying the camera's coded stream: decode the plate frames and
    // the stills in one pass.
    let v = &job.violation.frames;
    let mut wanted: BTreeSet<u64> = [v.before, v.at, v.after].into();
    if reader.is_some() {
        wanted.extend(read_frames(&job).into_iter().map(|(n, _)| n));
    }
    job.materialise(&wanted)?;
    let plate = match reader {
        Some(r) => read_violator_plate(&job, r),
        None => ViolatorPlate::unreadable(job.violation.frames.at),
    };
    if let Some([x, y, w, h]) = plate.bbox {
        job.add_plate_crop_rect(
            plate.frame,
            BBox {
                x: x as f64,
                y: y as f64,
                w: w as f64,
                h: h as f64,
            },
        )?;
    }
    let track = track_summary(&job);
    let set: EvidenceSet = job.write(spool)?;
    Ok(Processed {
        plate,
        track,
        dir: set.dir.clone(),
        evidence: set.items,
        missing: set
            .missing
            .iter()
            .map(|m| format!("{}: {}", m.name, m.reason))
            .collect(),
    })
}

/// The violator's track for the event: its boxes over the evidence window,
/// at most 64 bottom-centre points (where the wheels meet the road) spread
/// evenly, the first and last times it was boxed.
pub fn track_summary(job: &EvidenceJob) -> protocol::TrackSummary {
    let boxes: Vec<(&u64, &BBox)> = job.boxes.iter().collect();
    let time_of = |n: u64| job.frame_time(n);
    let first_seen = boxes
        .first()
        .and_then(|(n, _)| time_of(**n))
        .unwrap_or(job.start);
    let last_seen = boxes
        .last()
        .and_then(|(n, _)| time_of(**n))
        .unwrap_or(job.end)
        .max(first_seen);
    let max = protocol::validate::MAX_TRACK_POINTS;
    let step = boxes.len().div_ceil(max).max(1);
    let points = boxes
        .iter()
        .step_by(step)
        .take(max)
        .map(|(n, b)| protocol::TrackPoint {
            frame: **n,
            x: (b.x + b.w / 2.0).max(0.0).round() as u32,
            y: (b.y + b.h).max(0.0).round() as u32,
        })
        .collect();
    protocol::TrackSummary {
        track_id: job.violation.track_id,
        first_seen,
        last_seen,
        frame_count: u32::try_from(boxes.len()).unwrap_or(u32::MAX),
        points,
    }
}

/// The plate reader for violators: y5fu-320 inside the vehicle box, then the
/// recogniser `name` (`ppocr`, the general OCR baseline, or `vn`, our own)
/// and the plate grammar. With `vn` (about a millisecond a read) a
/// motorbike whose plate y5fu does not find is also searched window by
/// window ([`plate_ocr::search`]); PP-OCR is too slow for that.
pub fn plate_reader(name: &str) -> Result<Pipeline, String> {
    use plate_ocr::detect::{Y5fuDetector, Y5fuSize};
    use plate_ocr::pipeline::PipelineConfig;
    use plate_ocr::recognize::{PpOcrRecognizer, Recognizer, SlotRecognizer};
    use plate_ocr::runtime::SessionConfig;
    let cfg = SessionConfig::default();
    let rec: Box<dyn Recognizer> = match name {
        "ppocr" => Box::new(PpOcrRecognizer::load(cfg).map_err(|e| e.to_string())?),
        "vn" => Box::new(SlotRecognizer::load(cfg).map_err(|e| e.to_string())?),
        other => return Err(format!("unknown recogniser `{other}` (ppocr or vn)")),
    };
    let det = Y5fuDetector::load(Y5fuSize::S320, cfg).map_err(|e| e.to_string())?;
    let pipeline = Pipeline::new(Some(Box::new(det)), rec, PipelineConfig::default());
    Ok(match name {
        "vn" => pipeline.with_window_search(plate_ocr::search::WindowSearch::motorbike()),
        _ => pipeline,
    })
}
