//! YOLOX-Nano on a letterboxed copy of the frame.
//!
//! Model contract (see `models/manifest.toml`): input f32 [1,3,416,416], BGR,
//! 0–255, letterbox at the top-left padded with 114; output [1,3549,85], the
//! raw head: per anchor (dx, dy, log w, log h, objectness, 80 class scores),
//! objectness and classes already through a sigmoid, boxes still relative to
//! their grid cell (strides 8, 16, 32). We decode and run NMS here. Buffers
//! are allocated once; a tile costs one scaling of each plane to the model's
//! size and one conversion to BGR of that (`pixels.rs`).

use super::riders::{Person, attach_riders, nms_persons};
use super::seam::{join_at_seam, unseen_pieces};
use super::{DetectError, VehicleDetector, YuvScratch, cv, nms, region_bgr};
use crate::capture::Frame;
use crate::track::Detection;
use opencv::core::{CV_8UC3, Mat, Rect, Scalar, Size};
use opencv::prelude::*;
use plate_ocr::runtime::{Model, SessionConfig};
use protocol::VehicleClass;

/// COCO class ids we keep, and what they are.
const CLASSES: [(usize, VehicleClass); 4] = [
    (2, VehicleClass::Car),
    (3, VehicleClass::Motorcycle),
    (5, VehicleClass::Bus),
    (7, VehicleClass::Truck),
];

/// COCO's "person": riders of motorcycles (`riders.rs`).
const PERSON: usize = 0;

/// Minimum objectness × person score for a rider: people are only
/// counted, not tracked, so the low-score boxes the tracker wants for
/// vehicles would only add pedestrians' fragments.
const RIDER_MIN_SCORE: f32 = 0.3;

/// The detector's class, corrected by the box's shape where the site set
/// `min_aspect` (`[detection] motorbike_min_aspect`): a "car" box at least
/// that many times taller than wide is a motorbike. YOLOX-Nano calls most
/// small motorbikes of a wide view cars (on the shared street recording,
/// about half the motorbikes it finds). Seen level from the front, back or
/// side a car is never much taller than wide (0.8–1.0, a high van about
/// 1.2) while a motorbike with its rider is 2–2.5; from a high pole
/// looking along the lane a car's roof shows too and its box reaches
/// 1.5–2, which is why the site decides. Trucks and buses keep their
/// class. Only for a box whole in its tile (a car cut by the side of the
/// tile or frame is narrow and tall too).
fn class_by_shape(class: VehicleClass, w: f32, h: f32, min_aspect: Option<f32>) -> VehicleClass {
    match min_aspect {
        Some(a) if class == VehicleClass::Car && h >= a * w => VehicleClass::Motorcycle,
        _ => class,
    }
}

/// How close (model pixels, in the tile's letterboxed input) a box's side
/// may come to its tile's side and still count as whole: the box
/// regression is not sharper than a few pixels.
const CUT_MARGIN_INPUT_PX: f32 = 6.0;

/// Tuning of the detector.
#[derive(Debug, Clone, Copy)]
pub struct YoloxConfig {
    /// Minimum objectness × class score kept (the tracker wants low-score
    /// boxes too, for its second association stage).
    pub min_score: f32,
    pub nms_iou: f32,
    pub threads: usize,
    /// Side-by-side tiles the frame is cut into (1 or 2). YOLOX-Nano sees
    /// 416 px; a wide 1080p view makes a motorbike about 10 px there, too
    /// small to classify. Two overlapping tiles double that at twice the
    /// inference cost. `None` picks 2 for frames wider than 1.6:1.
    pub tiles: Option<u8>,
    /// See [`class_by_shape`]; `None`: the detector's class as it is.
    pub motorbike_min_aspect: Option<f32>,
}

impl Default for YoloxConfig {
    fn default() -> Self {
        YoloxConfig {
            min_score: 0.1,
            nms_iou: 0.45,
            threads: 1,
            tiles: None,
            motorbike_min_aspect: None,
        }
    }
}

/// YOLOX-Nano vehicle detector.
pub struct YoloxDetector {
    model: Model,
    size: i32,
    cfg: YoloxConfig,
    /// (grid x, grid y, stride) per anchor, in output order.
    grid: Vec<(f32, f32, f32)>,
    canvas: Mat,
    resized: Mat,
    scratch: YuvScratch,
    input: Vec<f32>,
}

impl YoloxDetector {
    /// Loads `yolox_nano` through the model manifest.
    pub fn new(cfg: YoloxConfig) -> Result<YoloxDetector, DetectError> {
        let model = Model::load_named(
            "yolox_nano",
            SessionConfig {
                intra_threads: cfg.threads,
            },
        )?;
        let size = 416;
        let mut grid = Vec::with_capacity(3549);
        for stride in [8, 16, 32] {
            let n = size / stride;
            for gy in 0..n {
                for gx in 0..n {
                    grid.push((gx as f32, gy as f32, stride as f32));
                }
            }
        }
        let canvas = Mat::new_rows_cols_with_default(size, size, CV_8UC3, Scalar::all(114.0))
            .map_err(cv("allocating"))?;
        Ok(YoloxDetector {
            model,
            size,
            cfg,
            grid,
            canvas,
            resized: Mat::default(),
            scratch: YuvScratch::default(),
            input: vec![0.0; (3 * size * size) as usize],
        })
    }

    /// Letterboxes `tile` of the frame into `self.input`; returns the scale used.
    fn prepare(&mut self, frame: &Frame, tile: Rect) -> Result<f32, DetectError> {
        let s = self.size as f32;
        let r = (s / tile.width as f32).min(s / tile.height as f32);
        let nw = ((tile.width as f32 * r).round() as i32).clamp(1, self.size);
        let nh = ((tile.height as f32 * r).round() as i32).clamp(1, self.size);
        region_bgr(
            frame,
            tile,
            Size::new(nw, nh),
            &mut self.resized,
            &mut self.scratch,
        )?;
        self.canvas
            .set_to_def(&Scalar::all(114.0))
            .map_err(cv("clearing the canvas"))?;
        {
            let mut roi = Mat::roi_mut(&mut self.canvas, Rect::new(0, 0, nw, nh))
                .map_err(cv("letterbox roi"))?;
            self.resized.copy_to(&mut roi).map_err(cv("letterboxing"))?;
        }
        let bytes = self.canvas.data_bytes().map_err(cv("reading the canvas"))?;
        let plane = (self.size * self.size) as usize;
        let (b, rest) = self.input.split_at_mut(plane);
        let (g, rr) = rest.split_at_mut(plane);
        for (i, px) in bytes.chunks_exact(3).enumerate() {
            b[i] = px[0] as f32;
            g[i] = px[1] as f32;
            rr[i] = px[2] as f32;
        }
        Ok(r)
    }
}

impl VehicleDetector for YoloxDetector {
    fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>, DetectError> {
        let (w, h) = (frame.width as i32, frame.height as i32);
        let tiles = self
            .cfg
            .tiles
            .unwrap_or(if w as f32 > 1.6 * h as f32 { 2 } else { 1 })
            .clamp(1, 2);
        let (mut dets, mut pieces, mut persons) = (Vec::new(), Vec::new(), Vec::new());
        let (mut left_halves, mut right_halves) = (Vec::new(), Vec::new());
        if tiles == 1 {
            let mut found = Found {
                dets: &mut dets,
                pieces: &mut pieces,
                halves: &mut left_halves,
                persons: &mut persons,
            };
            self.detect_tile(frame, Rect::new(0, 0, w, h), None, &mut found)?;
        } else {
            // Two tiles overlapping by 10% of the width: a vehicle on the
            // seam narrower than that is whole in at least one of them,
            // a wider one is cut in both and put together again.
            let tw = ((w as f32 * 0.55).ceil() as i32).min(w);
            let (left, right) = (Rect::new(0, 0, tw, h), Rect::new(w - tw, 0, tw, h));
            let mut found = Found {
                dets: &mut dets,
                pieces: &mut pieces,
                halves: &mut left_halves,
                persons: &mut persons,
            };
            self.detect_tile(frame, left, Some(right), &mut found)?;
            found.halves = &mut right_halves;
            self.detect_tile(frame, right, Some(left), &mut found)?;
            dets.extend(join_at_seam(left_halves, right_halves, self.cfg.nms_iou));
            let missed = unseen_pieces(pieces, &dets);
            dets.extend(missed);
        }
        let mut vehicles = nms(dets, self.cfg.nms_iou);
        attach_riders(&mut vehicles, &nms_persons(persons, self.cfg.nms_iou));
        Ok(vehicles)
    }
}

/// What one tile's detection adds to.
struct Found<'a> {
    /// Vehicles whole in their tile (or cut by the frame's side).
    dets: &'a mut Vec<Detection>,
    /// Vehicles cut by the seam, inside the other tile.
    pieces: &'a mut Vec<Detection>,
    /// Vehicles cut by the seam and reaching out of the other tile: half
    /// of one wider than the overlap (`seam.rs`).
    halves: &'a mut Vec<Detection>,
    /// People not cut by the seam (one cut there is whole in the other
    /// tile; counting both halves would make one rider two).
    persons: &'a mut Vec<Person>,
}

impl YoloxDetector {
    /// Detects in `tile` into `found`; a vehicle cut by its seam with
    /// `other` that lies inside `other` goes to `pieces` (that tile should
    /// see it whole), a person cut there is left out.
    fn detect_tile(
        &mut self,
        frame: &Frame,
        tile: Rect,
        other: Option<Rect>,
        found: &mut Found<'_>,
    ) -> Result<(), DetectError> {
        let r = self.prepare(frame, tile)?;
        let n = self.size as usize;
        let (shape, out) = self.model.run(&[1, 3, n, n], &self.input, None)?;
        if shape.len() != 3 || shape[1] != self.grid.len() || shape[2] != 85 {
            return Err(DetectError::Output(shape));
        }
        let (fw, fh) = (frame.width as f32, frame.height as f32);
        let (ox, oy) = (tile.x as f32, tile.y as f32);
        for (row, &(gx, gy, stride)) in out.chunks_exact(85).zip(&self.grid) {
            let obj = row[4];
            if obj < self.cfg.min_score {
                continue;
            }
            let (cls, p) = best_vehicle(row);
            let score = obj * p;
            let person = obj * row[5 + PERSON];
            let is_person = person >= RIDER_MIN_SCORE && person.is_finite();
            let is_vehicle = score >= self.cfg.min_score && score.is_finite();
            if !is_person && !is_vehicle {
                continue;
            }
            let cx = ox + (row[0] + gx) * stride / r;
            let cy = oy + (row[1] + gy) * stride / r;
            let w = row[2].exp() * stride / r;
            let h = row[3].exp() * stride / r;
            // An overflowing size (`exp` of a huge log-size) would clamp
            // to a box over the whole frame.
            if !(w.is_finite() && h.is_finite()) {
                continue;
            }
            let x0 = (cx - w / 2.0).clamp(0.0, fw);
            let y0 = (cy - h / 2.0).clamp(0.0, fh);
            let x1 = (cx + w / 2.0).clamp(0.0, fw);
            let y1 = (cy + h / 2.0).clamp(0.0, fh);
            // `!(… >= 2)`: a NaN or infinite coordinate from the model is
            // no box (a NaN box would also defeat the NMS of every other).
            if !(x1 - x0 >= 2.0 && y1 - y0 >= 2.0 && cx.is_finite() && cy.is_finite()) {
                continue;
            }
            // A vehicle cut by the tile's left or right edge: the other
            // tile sees it whole if the cut is their seam and what shows
            // lies inside the other tile. If not (the frame's edge), it
            // stays, but a car cut at the side is narrow and tall too: its
            // shape says nothing of its class.
            let (left, right) = (ox, ox + tile.width as f32);
            let margin = CUT_MARGIN_INPUT_PX / r;
            let (cut_left, cut_right) = (
                cx - w / 2.0 <= left + margin,
                cx + w / 2.0 >= right - margin,
            );
            let cut_at_the_side = cut_left || cut_right;
            let piece = cut_at_the_side
                && other.is_some_and(|o| {
                    let (ol, or) = (o.x as f32, (o.x + o.width) as f32);
                    x0 >= ol + margin && x1 <= or - margin
                });
            let at_the_seam =
                other.is_some_and(|o| if o.x > tile.x { cut_right } else { cut_left });
            if is_person && !piece {
                found.persons.push(Person {
                    bbox: [x0, y0, x1 - x0, y1 - y0],
                    score: person,
                });
            }
            if !is_vehicle {
                continue;
            }
            let det = Detection {
                bbox: [x0, y0, x1 - x0, y1 - y0],
                score,
                class: if cut_at_the_side {
                    cls
                } else {
                    class_by_shape(cls, x1 - x0, y1 - y0, self.cfg.motorbike_min_aspect)
                },
                riders: 0,
            };
            if piece {
                found.pieces.push(det);
            } else if at_the_seam {
                found.halves.push(det);
            } else {
                found.dets.push(det);
            }
        }
        Ok(())
    }
}

/// The likeliest vehicle class of one output row and its probability; 0
/// when the row's likeliest class of ours is a person (YOLOX's own decode
/// takes the best class of all: a pedestrian's anchor with some
/// motorcycle score is a person, not a motorbike to track).
fn best_vehicle(row: &[f32]) -> (VehicleClass, f32) {
    let (cls, p) = CLASSES
        .iter()
        .map(|&(i, c)| (c, row.get(5 + i).copied().unwrap_or(0.0)))
        .fold((VehicleClass::Car, f32::NEG_INFINITY), |best, c| {
            if c.1 > best.1 { c } else { best }
        });
    let person = row.get(5 + PERSON).copied().unwrap_or(0.0);
    if p >= person { (cls, p) } else { (cls, 0.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(person: f32, car: f32, motorcycle: f32) -> Vec<f32> {
        let mut r = vec![0.0; 85];
        r[5 + PERSON] = person;
        r[5 + 2] = car;
        r[5 + 3] = motorcycle;
        r
    }

    #[test]
    fn an_anchor_that_is_most_likely_a_person_is_no_vehicle() {
        assert_eq!(best_vehicle(&row(0.9, 0.1, 0.65)).1, 0.0);
        assert_eq!(
            best_vehicle(&row(0.6, 0.1, 0.65)),
            (VehicleClass::Motorcycle, 0.65)
        );
        assert_eq!(best_vehicle(&row(0.0, 0.7, 0.2)), (VehicleClass::Car, 0.7));
        // A NaN score is never the best.
        assert_eq!(
            best_vehicle(&row(0.0, f32::NAN, 0.3)).0,
            VehicleClass::Motorcycle
        );
    }

    #[test]
    fn a_tall_narrow_car_box_is_a_motorbike() {
        use VehicleClass::*;
        let set = Some(1.4);
        assert_eq!(class_by_shape(Car, 20.0, 45.0, set), Motorcycle);
        assert_eq!(
            class_by_shape(Car, 20.0, 45.0, None),
            Car,
            "off unless the site sets it"
        );
        assert_eq!(
            class_by_shape(Car, 20.0, 24.0, set),
            Car,
            "a high van head-on"
        );
        assert_eq!(class_by_shape(Car, 20.0, 27.0, set), Car);
        assert_eq!(class_by_shape(Car, 60.0, 40.0, set), Car);
        assert_eq!(
            class_by_shape(Car, 20.0, 35.0, Some(2.0)),
            Car,
            "a steep view's car"
        );
        assert_eq!(class_by_shape(Truck, 20.0, 45.0, set), Truck);
        assert_eq!(class_by_shape(Bus, 20.0, 45.0, set), Bus);
        assert_eq!(class_by_shape(Motorcycle, 60.0, 40.0, set), Motorcycle);
    }
}
