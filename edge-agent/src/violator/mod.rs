//! Post-processing of one violation: read the violator's plate and write its
//! evidence, off the real-time thread.
//!
//! The plate must belong to the vehicle that broke the rule — a fine on the
//! car beside the violator is the worst failure this product can have — so
//! the plate is looked for only inside the violator's own box (padded a
//! little), low in it where a plate of its class sits, away from where any
//! neighbour's plate would be (the neighbours of the frames either side
//! count too: the detector drops overlapping boxes), on the violation frame
//! and the track's frames nearest it (not those another vehicle's box
//! covers heavily, nor those across a gap in the track), and
//! the read records the frame it came from, the plate's box and the
//! violator's box there, in full-frame coordinates (the event's
//! `plate.source`, and the `plate_vehicle.jpg` still). Anything the reader refuses (too
//! unsure, not a valid Vietnamese plate: a clock overlay, lettering on a bus)
//! leaves the plate "unreadable"; the violation still goes to a person.

mod frames;

use crate::detect::frame_mat;
use crate::evidence::{EvidenceError, EvidenceJob, EvidenceSet};
use crate::geometry::BBox;
use opencv::core::{Mat, Rect};
use opencv::prelude::*;
use plate_ocr::pipeline::{Pipeline, PlateRead};
use protocol::VehicleClass;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
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
    /// The violator's box on that frame, which the plate's centre lies in.
    pub vehicle_bbox: Option<BBox>,
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
            vehicle_bbox: None,
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
    /// SHA-256 of the site file the violation was judged by.
    pub site_sha256: Option<String>,
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

/// Most frames of the violator whose plate reads are fused.
pub const MAX_READ_FRAMES: usize = 5;

pub use frames::MAX_TRIED_FRAMES;

/// The frames to read the violator's plate on, in the order to try them
/// ([`frames::read_frames`]): the violation frame and the frames of its
/// track nearest to it in time along which its box moved steadily, with
/// the box on each. Not the frames where the box is largest: those lie far
/// from the violation, where a track that switched to the vehicle
/// alongside would hand over the wrong plate.
fn read_frames(job: &EvidenceJob) -> Vec<(u64, BBox)> {
    frames::read_frames(
        job.violation.frames.at,
        job.violation.bbox,
        &job.boxes,
        |n| job.holds(n),
    )
}

/// Whether the centre of `read`'s plate (in the coordinates of the crop
/// cut at `region`) lies inside the violator's own box `b`, not just in
/// the margin the crop adds around it.
fn inside(read: &PlateRead, region: Rect, b: &BBox) -> bool {
    let (cx, cy) = plate_centre(read, region);
    cx >= b.x && cx <= b.x + b.w && cy >= b.y && cy <= b.y + b.h
}

/// How far the centre `c` of a plate lies from where `b`'s own plate would
/// be — the middle of its width, 15% of its height above its bottom (front
/// and rear plates alike, cars and motorbikes) — in units of the box's
/// width and height (the larger of the two).
fn plate_offset(c: (f64, f64), b: &BBox) -> f64 {
    let dx = (c.0 - (b.x + b.w / 2.0)).abs() / b.w.max(1.0);
    let dy = (c.1 - (b.y + 0.85 * b.h)).abs() / b.h.max(1.0);
    dx.max(dy)
}

/// The highest a plate's centre may sit in a box of `class`, as a share of
/// the box's height from its top: a motorbike's plate (rear only) hangs
/// over the rear wheel, in the lower half of a box that holds the rider; a
/// car's, bus's or truck's (front or rear) sits on the bumper, in the lower
/// 60% of its box even from a high pole that sees the roof. Whatever is
/// centred higher is not on the vehicle — above all the front plate of a
/// car close behind a motorbike seen from the front, which lies inside
/// the motorbike's box, above its wheels, on a frame where the detector
/// kept the motorbike's box and dropped the car's.
fn plate_zone_top(class: VehicleClass) -> f64 {
    match class {
        VehicleClass::Motorcycle => 0.5,
        VehicleClass::Car | VehicleClass::Bus | VehicleClass::Truck => 0.4,
    }
}

/// Whether a plate centred at `c` inside the violator's box `own` (of
/// `class`) is its plate rather than that of a neighbour whose box holds it
/// too: it must sit where a plate of that class can be on its box
/// ([`plate_zone_top`]), and where the violator's plate would, better than
/// where any such neighbour's would. Two motorbikes side by side overlap,
/// and the neighbour's plate can lie in the violator's box (a fine on the
/// vehicle alongside is the worst failure this product can have); a car
/// following close behind overlaps the violator's lower part, but the
/// violator's plate sits low in the violator's box and high in the
/// follower's, so it stays the violator's.
fn fits_violator(c: (f64, f64), own: &BBox, class: VehicleClass, neighbours: &[BBox]) -> bool {
    if c.1 < own.y + plate_zone_top(class) * own.h {
        return false;
    }
    let mine = plate_offset(c, own);
    neighbours
        .iter()
        .filter(|o| c.0 >= o.x && c.0 <= o.x + o.w && c.1 >= o.y && c.1 <= o.y + o.h)
        .all(|o| plate_offset(c, o) > mine)
}

/// How many of the track's usual frame steps away a neighbour's box still
/// counts on a frame (see [`around`]): as many as the missed detections the
/// plate frames' walk steps over ([`frames::MAX_MISSED_STEPS`]).
const NEIGHBOUR_REACH_STEPS: u64 = frames::MAX_MISSED_STEPS;

/// The other vehicles' boxes around the violator on frame `n`: those of
/// `neighbours` (boxes per frame) on the frames within `reach` frame numbers
/// of it, not only on `n`. A neighbour is not boxed on every frame — the
/// detector misses a frame, or its class-agnostic NMS (IoU 0.45) keeps the
/// violator's box and drops the overlapping neighbour's on exactly the
/// frames where the two overlap most — and a neighbour missing on the one
/// frame its plate shows in the violator's box would hand that plate to the
/// violator. Its box a frame or two away is near where it was; more boxes
/// only ever refuse more plates.
fn around(neighbours: &BTreeMap<u64, Vec<BBox>>, n: u64, reach: u64) -> Vec<BBox> {
    neighbours
        .range(n.saturating_sub(reach)..=n.saturating_add(reach))
        .flat_map(|(_, boxes)| boxes.iter().copied())
        .collect()
}

/// The other vehicles' boxes around the violator's box `b` on frame `n`
/// ([`around`]), or `None` when one covers too much of it to read the frame
/// ([`crowded`]).
fn neighbours_on(
    neighbours: &BTreeMap<u64, Vec<BBox>>,
    n: u64,
    b: &BBox,
    reach: u64,
) -> Option<Vec<BBox>> {
    let near = around(neighbours, n, reach);
    (!crowded(b, &near)).then_some(near)
}

/// How much of the violator's box another vehicle's box may cover before
/// the frame is not read: about where the detector's NMS (IoU 0.45) starts
/// dropping one of two boxes, so the frames where a neighbour is likely
/// missing, and where the two plates' positions can no longer be told
/// apart. Two motorbikes side by side overlap by a third of a box.
const CROWDED_COVER: f64 = 0.4;

/// Whether another vehicle's box in `near` covers at least
/// [`CROWDED_COVER`] of the violator's box `b`: the frame is not read (a
/// plate there is as likely the other vehicle's).
fn crowded(b: &BBox, near: &[BBox]) -> bool {
    let area = b.area();
    area > 0.0
        && near.iter().any(|o| {
            let [ax1, ay1, ax2, ay2] = b.to_xyxy();
            let [bx1, by1, bx2, by2] = o.to_xyxy();
            let iw = (ax2.min(bx2) - ax1.max(bx1)).max(0.0);
            let ih = (ay2.min(by2) - ay1.max(by1)).max(0.0);
            // NaN (a degenerate box) counts as covering.
            let cover = iw * ih / area;
            cover.is_nan() || cover >= CROWDED_COVER
        })
}

/// The centre of `read`'s plate in frame coordinates.
fn plate_centre(read: &PlateRead, region: Rect) -> (f64, f64) {
    (
        f64::from(read.bbox[0] + read.bbox[2] / 2.0) + f64::from(region.x),
        f64::from(read.bbox[1] + read.bbox[3] / 2.0) + f64::from(region.y),
    )
}

/// A plate read on one frame of the violator.
struct FrameRead {
    read: PlateRead,
    /// Where the crop it was read in was cut.
    region: Rect,
    /// The violator's box on that frame.
    vehicle: BBox,
    /// Found by the window search, not by the plate detector.
    searched: bool,
}

// A plate a frame nearly read (valid, but under the confidence threshold,
// at no less than this share of it): too unsure to answer with, sure
// enough that a different plate answered from other frames is in doubt.
// The same share as the window search's rivals.
use plate_ocr::pipeline::NEAR_MISS_SHARE;

/// What the plate detector's reads on one frame say about the violator.
#[derive(Debug)]
enum FrameReads {
    /// Exactly one valid plate fits the violator (its most confident read).
    One(Box<PlateRead>),
    /// Two different valid plates fit it (two vehicles in one box): the
    /// frame is not used, and both plates went to the near misses, so any
    /// answer from other frames is in doubt.
    Rivals(std::collections::BTreeSet<String>),
    /// None fits it; `theirs` are the valid plates in the box that sit on a
    /// neighbour.
    Nothing { theirs: Vec<String> },
}

/// Sorts the plate detector's `reads` of the crop `region` against the
/// violator's box `b` (of `class`) and the neighbours' boxes `near` on that
/// frame ([`around`]). Plates
/// nearly read for the violator (valid, at least `floor` sure) go to
/// `near_misses`.
fn sort_reads(
    reads: Vec<PlateRead>,
    region: Rect,
    b: &BBox,
    class: VehicleClass,
    near: &[BBox],
    floor: f32,
    near_misses: &mut Vec<String>,
) -> FrameReads {
    near_misses.extend(
        reads
            .iter()
            .filter(|r| r.confidence >= floor && inside(r, region, b))
            .filter(|r| fits_violator(plate_centre(r, region), b, class, near))
            .filter_map(|r| r.near_miss.clone()),
    );
    let (valid, theirs): (Vec<PlateRead>, Vec<PlateRead>) = reads
        .into_iter()
        .filter(|r| r.valid && !r.unreadable && r.text.is_some() && inside(r, region, b))
        .partition(|r| fits_violator(plate_centre(r, region), b, class, near));
    let texts: BTreeSet<String> = valid.iter().filter_map(|r| r.text.clone()).collect();
    if texts.len() > 1 {
        near_misses.extend(texts.iter().cloned());
        return FrameReads::Rivals(texts);
    }
    match valid
        .into_iter()
        .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
    {
        Some(read) => FrameReads::One(Box::new(read)),
        None => FrameReads::Nothing {
            theirs: theirs.into_iter().filter_map(|r| r.text).collect(),
        },
    }
}

/// Whether a window search's read on the crop `region` may be the
/// violator's: its window inside the box where the violator's plate would
/// be, and not a plate the detector found on a neighbour (`theirs`) — the
/// window's centre is not the plate's, so a window over the neighbour's
/// plate can sit nearer the violator's plate position than the plate does.
fn searched_read_fits(
    r: &PlateRead,
    region: Rect,
    b: &BBox,
    class: VehicleClass,
    near: &[BBox],
    theirs: &[String],
) -> bool {
    inside(r, region, b)
        && fits_violator(plate_centre(r, region), b, class, near)
        && !r.text.as_ref().is_some_and(|t| theirs.contains(t))
}

/// The plate inside `b` on frame `n`, if exactly one valid plate is there
/// ([`sort_reads`]); for a motorbike whose plate the detector missed, the
/// window search's. Neighbours count from the frames within `reach` frame
/// numbers ([`around`]); a frame where one covers much of the violator's
/// box ([`crowded`]) is not read.
fn read_on(
    job: &EvidenceJob,
    reader: &Pipeline,
    n: u64,
    b: &BBox,
    reach: u64,
    near_misses: &mut Vec<String>,
) -> Option<FrameRead> {
    let Some(near) = neighbours_on(&job.neighbours, n, b, reach) else {
        tracing::debug!(event_id = %job.event_id, frame = n, "another vehicle's box covers the violator's; frame not read");
        return None;
    };
    let near = near.as_slice();
    let class = job.violation.class;
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
    let floor = NEAR_MISS_SHARE * reader.config().min_confidence;
    let theirs = match sort_reads(reads, region, b, class, near, floor, near_misses) {
        FrameReads::One(read) => {
            return Some(FrameRead {
                read: *read,
                region,
                vehicle: *b,
                searched: false,
            });
        }
        FrameReads::Rivals(texts) => {
            tracing::info!(event_id = %job.event_id, frame = n, plates = ?texts, "two plates in the violator's box; frame not used, both are rivals");
            return None;
        }
        FrameReads::Nothing { theirs } => theirs,
    };
    if !theirs.is_empty() {
        tracing::info!(event_id = %job.event_id, frame = n, plates = ?theirs, "plate in the violator's box sits on a neighbour; not used");
    }
    if class != VehicleClass::Motorcycle {
        return None;
    }
    // The detector misses most motorbike plates: read plate-shaped windows.
    let search = reader.window_search()?;
    match reader.search_windows(&crop, search) {
        Ok(r) => r
            .filter(|r| searched_read_fits(r, region, b, class, near, &theirs))
            .map(|read| FrameRead {
                read,
                region,
                vehicle: *b,
                searched: true,
            }),
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
/// A plate found only by the motorbike window search needs two frames that
/// agree: one window out of many passing the grammar alone is not enough.
pub fn read_violator_plate(job: &EvidenceJob, reader: &Pipeline) -> ViolatorPlate {
    let at = job.violation.frames.at;
    let mut near_misses = Vec::new();
    let mut track = job.boxes.clone();
    track.insert(at, job.violation.bbox);
    let reach = NEIGHBOUR_REACH_STEPS * frames::usual_frame_step(&track);
    let reads: Vec<(u64, FrameRead)> = read_frames(job)
        .iter()
        .filter_map(|(n, b)| read_on(job, reader, *n, b, reach, &mut near_misses).map(|r| (*n, r)))
        .take(MAX_READ_FRAMES)
        .collect();
    // Each read with the confidence of the characters the grammar kept.
    let fuse_in: Vec<plate_ocr::fuse::Read> = reads
        .iter()
        .filter_map(|(_, r)| r.read.fuse_read())
        .collect();
    let searched = reads.iter().any(|(_, r)| r.searched);
    let (text, confidence, support) = match fuse_violator_reads(&fuse_in, searched) {
        Ok(agreed) => agreed,
        Err(outcome) => {
            if !reads.is_empty() {
                tracing::info!(event_id = %job.event_id, ?outcome, "plate reads of the violator not agreed; left to the reviewers");
            }
            return ViolatorPlate::unreadable(at);
        }
    };
    if let Some(other) = near_misses.iter().find(|t| **t != text) {
        tracing::info!(event_id = %job.event_id, answer = %text, nearly = %other, "a frame nearly read another plate; left to the reviewers");
        return ViolatorPlate::unreadable(at);
    }
    // The crop comes from the best read of the agreed plate.
    let Some((
        n,
        FrameRead {
            read: r,
            region,
            vehicle,
            ..
        },
    )) = reads
        .iter()
        .filter(|(_, r)| r.read.text.as_deref() == Some(text.as_str()))
        .max_by(|a, b| a.1.read.confidence.total_cmp(&b.1.read.confidence))
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
        vehicle_bbox: Some(*vehicle),
        frames_read: reads.len(),
        frames_agreeing: support,
    }
}

/// The violator's plate from its frames' reads: `(text, confidence,
/// frames agreeing)`, or why not. One confident, grammar-valid read from
/// the plate detector may stand alone; any other whole valid plate read on
/// these frames makes the plate unreadable (a person decides), whatever the
/// majority; where any read came from the window search (`searched`), two
/// frames must agree.
fn fuse_violator_reads(
    reads: &[plate_ocr::fuse::Read],
    searched: bool,
) -> Result<(String, f32, usize), plate_ocr::fuse::Fused> {
    let cfg = plate_ocr::fuse::FuseConfig {
        min_reads: 1,
        max_rival_share: 0.0,
        ..plate_ocr::fuse::FuseConfig::default()
    };
    let fused =
        plate_ocr::fuse::fuse_with_grammar(reads, &cfg, plate_ocr::plate::PlateGrammar::builtin());
    match fused {
        plate_ocr::fuse::Fused::Agreed {
            text,
            confidence,
            support,
            ..
        } if support >= 2 || !searched => Ok((text, confidence, support)),
        other => Err(other),
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
        let plate_box = BBox {
            x: x as f64,
            y: y as f64,
            w: w as f64,
            h: h as f64,
        };
        job.add_plate_crop_rect(plate.frame, plate_box)?;
        if let Some(vehicle) = plate.vehicle_bbox
            && let Err(e) = job.add_plate_context(plate.frame, vehicle, plate_box)
        {
            // A supporting still: the violation goes on without it.
            tracing::warn!(event_id = %job.event_id, error = %e, "plate_vehicle.jpg not made");
        }
    }
    let track = track_summary(&job);
    let site_sha256 = job.site().source_sha256.clone();
    let set: EvidenceSet = job.write(spool)?;
    Ok(Processed {
        plate,
        track,
        site_sha256,
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
        riders: job.violation.riders,
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

#[cfg(test)]
mod tests;
