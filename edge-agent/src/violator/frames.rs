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

/// The frames to read the violator's plate on, in the order to try them:
/// `at` with `at_box`, then the frames of the track (`boxes`, the
/// violator's box per frame) nearest to `at` that `holds` (the job has the
/// frame) and that the box reached from `at` by steady steps (see the
/// module docs), at most [`MAX_TRIED_FRAMES`] in all. A step whose box is
/// more than twice or less than half the size of `at_box` (two vehicles
/// merged into one box, a switched track) ends the walk too.
pub fn read_frames(
    at: u64,
    at_box: BBox,
    boxes: &BTreeMap<u64, BBox>,
    holds: impl Fn(u64) -> bool,
) -> Vec<(u64, BBox)> {
    let mut track = boxes.clone();
    track.insert(at, at_box);
    let usual = usual_step(&track);
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
            if !sized || jumped(prev, (n, b), usual) {
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
    fn frames_the_job_lacks_are_left_out_without_ending_the_walk() {
        let boxes = steady();
        let out = read_frames(100, boxes[&100], &boxes, |n| n % 2 == 0);
        assert_eq!(
            frames_of(&out),
            [100, 98, 102, 96, 104, 94, 106, 92, 108, 90, 110, 112]
        );
    }
}
