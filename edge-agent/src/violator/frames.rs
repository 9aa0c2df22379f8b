//! Which frames of the violator's track its plate may be read on.
//!
//! The violation frame, and the frames nearest it in time along which the
//! track's box moved steadily. A tracker that lost the violator among
//! similar motorbikes may go on with the one alongside under the same
//! track; the box then jumps sideways (or merges with the neighbour's and
//! doubles), and every frame after the jump shows the neighbour. A plate
//! read there is the neighbour's — with the violator's plate unreadable on
//! the frames before, one confident read of it would name the wrong owner.
//! So the frames are walked outwards from the violation frame and each
//! direction stops at the first step that does not continue the track's
//! usual motion.
//!
//! Each direction also stops at a gap in the track: a step spanning more
//! than [`MAX_MISSED_STEPS`] missed detections (in the track's usual
//! frame step, which is more than one frame number for a camera analysed
//! below its rate). A gap is an occlusion, and occlusions are where
//! identities switch: a lost track takes a detection at IoU ≥ 0.2 with its
//! prediction (`track/mod.rs`, stage 1), so the motorbike that comes out
//! from behind a bus may carry the track of the one that went in. Its box
//! can come out on the same line at the same speed, which no jump test
//! catches, and every frame past the gap would show the other vehicle
//! (whose plate one confident read would then put on the violation). The
//! allowance for a jump grows with the frames a step spans, one more
//! reason not to step across long ones.

use crate::geometry::{BBox, Point};
use std::collections::BTreeMap;

/// Most frames tried, nearest the violation first, to get the reads.
pub const MAX_TRIED_FRAMES: usize = 12;

/// How far a box's centre may stray in one step from where the track's
/// usual motion would put it, in lengths of the box's longer side, before
/// the step counts as a jump to another vehicle. Detector jitter moves a
/// centre by a few percent of the box; a motorbike alongside is a box width
/// away or more.
const JUMP_BOX_SIDES: f64 = 0.3;

/// And a floor, px per frame of the step, for small boxes.
const JUMP_FLOOR_PX: f64 = 4.0;

/// Most detections in a row the track may have missed within a step the
/// walk takes (a detector drops a box for a frame or two now and then);
/// a longer gap ends the walk that way (see the module docs).
pub const MAX_MISSED_STEPS: u64 = 2;

/// The frames to read the violator's plate on, in the order to try them:
/// `at` with `at_box`, then the frames of the track (`boxes`, the
/// violator's box per frame) nearest to `at` that `holds` (the job has the
/// frame) and that the box reached from `at` by steady steps (see the
/// module docs), at most [`MAX_TRIED_FRAMES`] in all. A step whose box is
/// more than twice or less than half the size of `at_box` (two vehicles
/// merged into one box, a switched track), or that spans a gap of more than
/// [`MAX_MISSED_STEPS`] missed detections, ends the walk too.
pub fn read_frames(
    at: u64,
    at_box: BBox,
    boxes: &BTreeMap<u64, BBox>,
    holds: impl Fn(u64) -> bool,
) -> Vec<(u64, BBox)> {
    let mut track = boxes.clone();
    track.insert(at, at_box);
    let usual = usual_step(&track);
    let longest = max_step_frames(&track);
    let area = |b: &BBox| b.w * b.h;
    let at_area = area(&at_box);
    let mut steady = Vec::new();
    let forward = track.range(at..).map(|(n, b)| (*n, *b));
    let backward = track.range(..=at).rev().map(|(n, b)| (*n, *b));
    // The earlier frame first where two are as near (a stable sort below).
    for side in [
        Box::new(backward) as Box<dyn Iterator<Item = (u64, BBox)>>,
        Box::new(forward),
    ] {
        let mut prev = (at, at_box);
        for (n, b) in side.skip(1) {
            let sized = at_area > 0.0 && (at_area / 2.0..=at_area * 2.0).contains(&area(&b));
            let gap = n.abs_diff(prev.0) > longest;
            if !sized || gap || jumped(prev, (n, b), usual) {
                break;
            }
            steady.push((n, b));
            prev = (n, b);
        }
    }
    steady.retain(|(n, _)| holds(*n));
    steady.sort_by_key(|(n, _)| n.abs_diff(at));
    let mut out = vec![(at, at_box)];
    out.extend(steady.into_iter().take(MAX_TRIED_FRAMES - 1));
    out
}

/// The track's usual motion of its box centre, px per frame: the median of
/// its steps' x and y velocities (one jump does not move a median).
fn usual_step(track: &BTreeMap<u64, BBox>) -> Point {
    let mut vx = Vec::new();
    let mut vy = Vec::new();
    for ((n0, b0), (n1, b1)) in track.iter().zip(track.iter().skip(1)) {
        let frames = n1.saturating_sub(*n0).max(1) as f64;
        let d = b1.center().minus(b0.center());
        vx.push(d.x / frames);
        vy.push(d.y / frames);
    }
    Point::new(median(vx), median(vy))
}

/// The track's usual frame step: the median of the frame numbers between
/// its consecutive points (1 for a camera analysed at its full rate, more
/// below it), at least 1.
pub fn usual_frame_step(track: &BTreeMap<u64, BBox>) -> u64 {
    let steps: Vec<f64> = track
        .keys()
        .zip(track.keys().skip(1))
        .map(|(a, b)| b.saturating_sub(*a) as f64)
        .collect();
    (median(steps).round() as u64).max(1)
}

/// The most frame numbers one step of the walk may span: the usual step
/// and [`MAX_MISSED_STEPS`] missed ones, with half a usual step for the
/// uneven steps of a paced stream (10 of 25 fps comes 2 and 3 frames
/// apart).
fn max_step_frames(track: &BTreeMap<u64, BBox>) -> u64 {
    let usual = usual_frame_step(track);
    (MAX_MISSED_STEPS + 1) * usual + usual / 2
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

/// Whether the step from `a` to `b` (frame, box) strays from the usual
/// motion by more than the jump allowance.
fn jumped(a: (u64, BBox), b: (u64, BBox), usual: Point) -> bool {
    let frames = b.0.abs_diff(a.0).max(1) as f64;
    let sign = if b.0 >= a.0 { 1.0 } else { -1.0 };
    let expected = Point::new(
        a.1.center().x + sign * usual.x * frames,
        a.1.center().y + sign * usual.y * frames,
    );
    let off = b.1.center().minus(expected);
    let side = a.1.w.max(a.1.h).max(b.1.w.max(b.1.h));
    let allowed = JUMP_BOX_SIDES * side + JUMP_FLOOR_PX * frames;
    // NaN (a degenerate box) counts as a jump.
    let d = off.x.hypot(off.y);
    d.is_nan() || d > allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A motorbike box 50×100 moving 8 px a frame up the image, frames
    /// 90..=130, violation at 100.
    fn steady() -> BTreeMap<u64, BBox> {
        (90..=130u64)
            .map(|n| {
                let y = 800.0 - 8.0 * (n as f64 - 90.0);
                (n, BBox::from_xywh(500.0, y, 50.0, 100.0))
            })
            .collect()
    }

    fn frames_of(out: &[(u64, BBox)]) -> Vec<u64> {
        out.iter().map(|(n, _)| *n).collect()
    }

    #[test]
    fn a_steady_track_gives_the_frames_nearest_the_violation() {
        let boxes = steady();
        let out = read_frames(100, boxes[&100], &boxes, |_| true);
        assert_eq!(
            frames_of(&out),
            [100, 99, 101, 98, 102, 97, 103, 96, 104, 95, 105, 94]
        );
    }

    #[test]
    fn frames_after_a_sideways_jump_are_not_read() {
        // At frame 103 the track went on with the motorbike alongside,
        // 60 px to the right.
        let mut boxes = steady();
        for (n, b) in boxes.iter_mut() {
            if *n >= 103 {
                b.x += 60.0;
            }
        }
        let out = read_frames(100, boxes[&100], &boxes, |_| true);
        assert!(out.iter().all(|(n, _)| *n <= 102), "{:?}", frames_of(&out));
        assert_eq!(out.len(), MAX_TRIED_FRAMES, "the frames before make up");
        // Before the violation too.
        let mut boxes = steady();
        for (n, b) in boxes.iter_mut() {
            if *n <= 97 {
                b.x -= 60.0;
            }
        }
        let out = read_frames(100, boxes[&100], &boxes, |_| true);
        assert!(out.iter().all(|(n, _)| *n >= 98), "{:?}", frames_of(&out));
    }

    #[test]
    fn a_box_that_doubles_ends_the_walk_and_jitter_does_not() {
        let mut boxes = steady();
        for (n, b) in boxes.iter_mut() {
            // ±3 px of jitter everywhere.
            b.x += if n % 2 == 0 { 3.0 } else { -3.0 };
            if *n >= 104 {
                // Merged with the neighbour's box.
                b.w = 110.0;
            }
        }
        let out = read_frames(100, boxes[&100], &boxes, |_| true);
        let frames = frames_of(&out);
        assert!(frames.iter().all(|n| *n <= 103), "{frames:?}");
        assert!(frames.contains(&103) && frames.contains(&92), "{frames:?}");
    }

    #[test]
    fn the_walk_stops_at_a_gap_where_another_vehicle_may_have_taken_the_track() {
        // Motorbike A, seen 60..=80, is hidden (behind a bus) and its track
        // coasts; motorbike B comes out at 96, 50 px to its right on the
        // same 8 px/frame line, and takes the lost track. The violation is
        // B's at 97; its track was handed over up to frame 100.
        let at_y = |n: u64| 800.0 - 8.0 * (n as f64 - 90.0);
        let mut boxes: BTreeMap<u64, BBox> = (60..=80u64)
            .map(|n| (n, BBox::from_xywh(500.0, at_y(n), 50.0, 100.0)))
            .collect();
        boxes.extend((96..=100u64).map(|n| (n, BBox::from_xywh(550.0, at_y(n), 50.0, 100.0))));
        let out = read_frames(97, boxes[&97], &boxes, |_| true);
        let frames = frames_of(&out);
        assert!(frames.iter().all(|n| *n >= 96), "A's frames: {frames:?}");
        assert_eq!(frames, [97, 96, 98, 99, 100]);
        // Forwards too: a violation of A at 78 reads nothing of B.
        let out = read_frames(78, boxes[&78], &boxes, |_| true);
        let frames = frames_of(&out);
        assert!(frames.iter().all(|n| *n <= 80), "B's frames: {frames:?}");
    }

    #[test]
    fn a_missed_detection_or_two_is_no_gap() {
        // Frames 98, 99 and 103, 104 missed (the detector dropped the box):
        // the walk steps over them.
        let mut boxes = steady();
        for n in [98, 99, 103, 104] {
            boxes.remove(&n);
        }
        let out = read_frames(100, boxes[&100], &boxes, |_| true);
        let frames = frames_of(&out);
        assert!(frames.contains(&97) && frames.contains(&105), "{frames:?}");
        // A camera analysed at 10 of its 25 fps: steps of 2 and 3 frames,
        // one analysed frame missed.
        let paced: BTreeMap<u64, BBox> = steady()
            .into_iter()
            .filter(|(n, _)| n % 5 == 0 || n % 5 == 2)
            .filter(|(n, _)| *n != 102)
            .collect();
        let out = read_frames(100, paced[&100], &paced, |_| true);
        let frames = frames_of(&out);
        assert!(frames.contains(&105) && frames.contains(&97), "{frames:?}");
    }

    #[test]
    fn frames_the_job_lacks_are_left_out_without_ending_the_walk() {
        let boxes = steady();
        let out = read_frames(100, boxes[&100], &boxes, |n| n % 2 == 0);
        assert_eq!(
            frames_of(&out),
            [100, 98, 102, 96, 104, 94, 106, 92, 108, 90, 110, 112]
        );
    }
}
