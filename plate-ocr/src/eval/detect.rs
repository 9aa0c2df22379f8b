//! Detection recall: labelled plate boxes (the openalpr text layout, with
//! an optional vehicle-class column), one detection matched to at most one
//! label, recall per vehicle class at several IoU thresholds, on whole
//! images or inside vehicle-sized boxes around each plate (as the edge
//! reads a violator), optionally with the motorbike window search.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use opencv::prelude::MatTraitConst;
use serde::Serialize;

use crate::detect::{PlateDetector, iou};
use crate::error::{Result, VisionError};
use crate::image_file::{ImageLimits, load_bgr};

use super::percentile;

/// Vehicle class of a labelled plate: the optional seventh column of a
/// detection label line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VehicleClass {
    Car,
    Motorbike,
}

impl VehicleClass {
    /// Every class, in report order.
    pub const ALL: [VehicleClass; 2] = [VehicleClass::Car, VehicleClass::Motorbike];

    /// The label-file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            VehicleClass::Car => "car",
            VehicleClass::Motorbike => "motorbike",
        }
    }

    /// Parses the label-file spelling (`car`, `motorbike`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// One labelled plate of a detection data set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlateBox {
    /// Image file name (relative to the image directory).
    pub image: String,
    /// x, y, width, height in image pixels.
    pub bbox: [f32; 4],
    /// The plate text as labelled (`?` where unreadable).
    pub text: String,
    /// Vehicle class, where the label has a seventh column.
    pub class: Option<VehicleClass>,
    /// `labels.txt:LINE`, for messages.
    pub source: String,
}

/// Reads the detection labels in `dir`: every `.txt` file, one plate per
/// line, `file<TAB>x<TAB>y<TAB>w<TAB>h<TAB>TEXT[<TAB>car|motorbike]`. A bad line
/// is an error naming the file and the line.
pub fn load_detection_labels(dir: &Path) -> Result<Vec<PlateBox>> {
    let err = |path: &Path, message: String| VisionError::Dataset {
        path: path.display().to_string(),
        message,
    };
    let mut txts: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| err(dir, e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    txts.sort();
    if txts.is_empty() {
        return Err(err(dir, "no .txt label files".to_string()));
    }
    let mut out = Vec::new();
    for txt in &txts {
        let text = std::fs::read_to_string(txt).map_err(|e| err(txt, e.to_string()))?;
        let name = txt.file_name().map_or_else(
            || txt.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let bad = |m: String| err(txt, format!("line {}: {m} in {line:?}", n + 1));
            let f: Vec<&str> = line.split('\t').map(str::trim).collect();
            if !(6..=7).contains(&f.len()) {
                return Err(bad(format!(
                    "{} tab-separated fields, expected 6 or 7 (file x y w h text [class])",
                    f.len()
                )));
            }
            let image = f[0];
            if image.is_empty() || image.contains(['/', '\\']) || image == "." || image == ".." {
                return Err(bad(format!("image {image:?} is not a plain file name")));
            }
            let mut bbox = [0f32; 4];
            for (slot, (v, what)) in bbox
                .iter_mut()
                .zip(f[1..5].iter().zip(["x", "y", "w", "h"]))
            {
                *slot = v
                    .parse::<f32>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| bad(format!("{what} = {v:?} is not a number")))?;
            }
            if bbox[0] < 0.0 || bbox[1] < 0.0 || bbox[2] <= 0.0 || bbox[3] <= 0.0 {
                return Err(bad("box must have x, y ≥ 0 and w, h > 0".to_string()));
            }
            let class =
                match f.get(6) {
                    None => None,
                    Some(c) => Some(VehicleClass::parse(c).ok_or_else(|| {
                        bad(format!("class {c:?} is not one of `car`, `motorbike`"))
                    })?),
                };
            out.push(PlateBox {
                image: image.to_string(),
                bbox,
                text: f[5].to_string(),
                class,
                source: format!("{name}:{}", n + 1),
            });
        }
    }
    if out.is_empty() {
        return Err(err(dir, "no labelled plates".to_string()));
    }
    Ok(out)
}

/// Checks a detection set against its images: every image loads and every
/// box lies inside its image. Returns the labels.
pub fn validate_detection_set(
    labels_dir: &Path,
    images_dir: &Path,
    limits: &ImageLimits,
) -> Result<Vec<PlateBox>> {
    let labels = load_detection_labels(labels_dir)?;
    let mut sizes: BTreeMap<&str, (f32, f32)> = BTreeMap::new();
    for l in &labels {
        let (cols, rows) = match sizes.get(l.image.as_str()) {
            Some(s) => *s,
            None => {
                let img = load_bgr(&images_dir.join(&l.image), limits)?;
                let s = (img.cols() as f32, img.rows() as f32);
                sizes.insert(&l.image, s);
                s
            }
        };
        let [x, y, w, h] = l.bbox;
        if x + w > cols || y + h > rows {
            return Err(VisionError::Dataset {
                path: labels_dir.display().to_string(),
                message: format!(
                    "{}: box {:?} leaves the {cols}×{rows} image {}",
                    l.source, l.bbox, l.image
                ),
            });
        }
    }
    Ok(labels)
}

/// Recall of one vehicle class.
#[derive(Debug, Clone, Serialize)]
pub struct ClassRecall {
    pub plates: usize,
    pub found: usize,
    pub recall: f64,
    /// Smallest and largest labelled plate width (px).
    pub width_px: [f32; 2],
    pub missed: Vec<String>,
}

/// Results of a detection evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct DetectReport {
    pub dataset: String,
    pub detector: String,
    /// A label counts as found when a detection overlaps it by IoU ≥ this
    /// (one detection per label, greedy by IoU).
    pub min_iou: f32,
    pub plates: usize,
    pub found: usize,
    pub recall: f64,
    /// Detections that match no labelled plate.
    pub extra: usize,
    /// Labelled plates whose image failed to load or detect.
    pub failed: usize,
    pub latency_ms: BTreeMap<String, f64>,
    pub missed: Vec<String>,
    /// Per vehicle class (`car`, `motorbike`), for labels with a seventh column.
    pub by_class: BTreeMap<String, ClassRecall>,
}

/// Detection recall at IoU ≥ `min_iou` on an openalpr-style directory
/// (labels and images in `dir`).
pub fn evaluate_detection(
    detector: &dyn PlateDetector,
    dir: &Path,
    limits: &ImageLimits,
    min_iou: f32,
) -> Result<DetectReport> {
    let mut reports = evaluate_detection_at(detector, dir, dir, limits, &[min_iou])?;
    reports.pop().ok_or_else(|| VisionError::Dataset {
        path: dir.display().to_string(),
        message: "no IoU threshold".to_string(),
    })
}

/// The plate boxes found in one image or crop, or why that failed.
type Found = std::result::Result<Vec<[f32; 4]>, String>;

/// One greedy one-to-one matching of an image's labels to its detections at
/// IoU ≥ `min_iou`: which labels are found, and how many detections are left.
fn match_boxes(labels: &[&PlateBox], dets: &[[f32; 4]], min_iou: f32) -> (Vec<bool>, usize) {
    let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
    for (li, l) in labels.iter().enumerate() {
        for (di, d) in dets.iter().enumerate() {
            let o = iou(d, &l.bbox);
            if o >= min_iou {
                pairs.push((o, li, di));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut found = vec![false; labels.len()];
    let mut used = vec![false; dets.len()];
    for (_, li, di) in pairs {
        if !found[li] && !used[di] {
            found[li] = true;
            used[di] = true;
        }
    }
    let extra = used.iter().filter(|u| !**u).count();
    (found, extra)
}

/// Counts one labelled plate into its class's recall (labels without a
/// class are counted only overall).
fn tally(
    by_class: &mut BTreeMap<String, ClassRecall>,
    l: &PlateBox,
    hit: bool,
    name: impl FnOnce() -> String,
) {
    let Some(c) = l.class else { return };
    let cr = by_class
        .entry(c.as_str().to_string())
        .or_insert_with(|| ClassRecall {
            plates: 0,
            found: 0,
            recall: 0.0,
            width_px: [f32::INFINITY, 0.0],
            missed: Vec::new(),
        });
    cr.plates += 1;
    cr.width_px = [cr.width_px[0].min(l.bbox[2]), cr.width_px[1].max(l.bbox[2])];
    if hit {
        cr.found += 1;
    } else {
        cr.missed.push(name());
    }
    cr.recall = cr.found as f64 / cr.plates as f64;
}

/// Detection recall with labels in `labels_dir` and images in `images_dir`,
/// one report per IoU threshold in `ious` (each image is detected once).
pub fn evaluate_detection_at(
    detector: &dyn PlateDetector,
    labels_dir: &Path,
    images_dir: &Path,
    limits: &ImageLimits,
    ious: &[f32],
) -> Result<Vec<DetectReport>> {
    let labels = load_detection_labels(labels_dir)?;
    let mut by_image: BTreeMap<&str, Vec<&PlateBox>> = BTreeMap::new();
    for l in &labels {
        by_image.entry(l.image.as_str()).or_default().push(l);
    }
    // Detect once per image.
    let mut times = Vec::new();
    let mut results: Vec<(&str, &Vec<&PlateBox>, Found)> = Vec::new();
    for (image, plates) in &by_image {
        let dets = load_bgr(&images_dir.join(image), limits).and_then(|img| {
            let start = Instant::now();
            let d = detector.detect(&img)?;
            times.push(start.elapsed().as_secs_f64() * 1000.0);
            Ok(d.into_iter().map(|d| d.bbox).collect::<Vec<_>>())
        });
        results.push((image, plates, dets.map_err(|e| e.to_string())));
    }
    times.sort_by(f64::total_cmp);
    let mut latency = BTreeMap::new();
    latency.insert("p50".to_string(), percentile(&times, 0.5));
    latency.insert("p90".to_string(), percentile(&times, 0.9));
    latency.insert("p99".to_string(), percentile(&times, 0.99));

    let mut reports = Vec::with_capacity(ious.len());
    for &min_iou in ious {
        let (mut found, mut extra, mut failed) = (0, 0, 0);
        let mut missed = Vec::new();
        let mut by_class: BTreeMap<String, ClassRecall> = BTreeMap::new();
        for (image, plates, dets) in &results {
            let name = |l: &PlateBox| {
                if plates.len() > 1 {
                    let [x, y, w, h] = l.bbox;
                    format!("{image}@{x},{y},{w}x{h}")
                } else {
                    image.to_string()
                }
            };
            let hits = match dets {
                Ok(dets) => {
                    let (hits, e) = match_boxes(plates, dets, min_iou);
                    extra += e;
                    hits
                }
                Err(e) => {
                    failed += plates.len();
                    for l in plates.iter() {
                        missed.push(format!("{} ({e})", name(l)));
                    }
                    vec![false; plates.len()]
                }
            };
            for (l, hit) in plates.iter().zip(hits) {
                if hit {
                    found += 1;
                } else if dets.is_ok() {
                    missed.push(name(l));
                }
                tally(&mut by_class, l, hit, || name(l));
            }
        }
        reports.push(DetectReport {
            dataset: labels_dir.display().to_string(),
            detector: detector.name().to_string(),
            min_iou,
            plates: labels.len(),
            found,
            recall: found as f64 / labels.len().max(1) as f64,
            extra,
            failed,
            latency_ms: latency.clone(),
            missed,
            by_class,
        });
    }
    Ok(reports)
}

/// A vehicle-sized box around a labelled plate, standing in for the vehicle
/// detector's box (the data set has no vehicle labels): centred on the
/// plate, 3.5 plate widths wide; for a motorbike from 5 plate heights above
/// the plate to 1.5 below it, for a car from 8 above to 2 below. Then padded
/// by `pad` of its size on each side (the edge pads the YOLOX box by 10%)
/// and clipped to the `cols` × `rows` image.
pub fn vehicle_box(l: &PlateBox, pad: f32, cols: f32, rows: f32) -> [f32; 4] {
    let [x, y, w, h] = l.bbox;
    let (above, below) = match l.class {
        Some(VehicleClass::Motorbike) => (5.0, 1.5),
        _ => (8.0, 2.0),
    };
    let vw = 3.5 * w;
    let (x0, y0) = (x + w / 2.0 - vw / 2.0, y - above * h);
    let (x1, y1) = (x0 + vw, y + h + below * h);
    let (px, py) = (pad * (x1 - x0), pad * (y1 - y0));
    let (x0, y0) = ((x0 - px).max(0.0).floor(), (y0 - py).max(0.0).floor());
    let (x1, y1) = ((x1 + px).min(cols).ceil(), (y1 + py).min(rows).ceil());
    [x0, y0, (x1 - x0).max(0.0), (y1 - y0).max(0.0)]
}

/// Recall when plates are looked for inside a vehicle-sized box around each
/// labelled plate ([`vehicle_box`], padded by `pad`) rather than in the whole
/// image, as the edge does after its vehicle detector. `find` returns plate
/// boxes in the crop's coordinates; a label is found when one of them, moved
/// back to the image, overlaps it by IoU ≥ the threshold. Boxes that match
/// no label of their crop count as extra. `name` goes into the reports.
pub fn evaluate_in_vehicle_boxes(
    name: &str,
    find: &dyn Fn(&opencv::core::Mat) -> Result<Vec<[f32; 4]>>,
    labels_dir: &Path,
    images_dir: &Path,
    limits: &ImageLimits,
    pad: f32,
    ious: &[f32],
) -> Result<Vec<DetectReport>> {
    use opencv::core::{Mat, Rect};
    let labels = load_detection_labels(labels_dir)?;
    let mut times = Vec::new();
    // Per label: the boxes found in its vehicle box (image coordinates), or
    // the error.
    let mut found_boxes: Vec<Found> = Vec::new();
    let mut cache: Option<(String, Mat)> = None;
    for l in &labels {
        if cache.as_ref().is_none_or(|(n, _)| *n != l.image) {
            cache = load_bgr(&images_dir.join(&l.image), limits)
                .ok()
                .map(|m| (l.image.clone(), m));
        }
        let Some((_, img)) = cache.as_ref() else {
            found_boxes.push(Err(format!("cannot load {}", l.image)));
            continue;
        };
        let [vx, vy, vw, vh] = vehicle_box(l, pad, img.cols() as f32, img.rows() as f32);
        let rect = Rect::new(vx as i32, vy as i32, vw as i32, vh as i32);
        let res = Mat::roi(img, rect)
            .and_then(|m| m.try_clone())
            .map_err(|e| e.to_string())
            .and_then(|crop| {
                let start = Instant::now();
                let r = find(&crop).map_err(|e| e.to_string());
                times.push(start.elapsed().as_secs_f64() * 1000.0);
                r
            })
            .map(|bs| {
                bs.into_iter()
                    .map(|[x, y, w, h]| [x + vx, y + vy, w, h])
                    .collect()
            });
        found_boxes.push(res);
    }
    times.sort_by(f64::total_cmp);
    let mut latency = BTreeMap::new();
    latency.insert("p50".to_string(), percentile(&times, 0.5));
    latency.insert("p90".to_string(), percentile(&times, 0.9));
    latency.insert("p99".to_string(), percentile(&times, 0.99));
    let mut reports = Vec::with_capacity(ious.len());
    for &min_iou in ious {
        let (mut found, mut extra, mut failed) = (0, 0, 0);
        let mut missed = Vec::new();
        let mut by_class: BTreeMap<String, ClassRecall> = BTreeMap::new();
        for (l, boxes) in labels.iter().zip(&found_boxes) {
            let [x, y, w, h] = l.bbox;
            let label_name = format!("{}@{x},{y},{w}x{h}", l.image);
            let hit = match boxes {
                Ok(bs) => {
                    let (hits, e) = match_boxes(&[l], bs, min_iou);
                    extra += e;
                    hits.first().copied().unwrap_or(false)
                }
                Err(e) => {
                    failed += 1;
                    missed.push(format!("{label_name} ({e})"));
                    false
                }
            };
            if hit {
                found += 1;
            } else if boxes.is_ok() {
                missed.push(label_name.clone());
            }
            tally(&mut by_class, l, hit, || label_name.clone());
        }
        reports.push(DetectReport {
            dataset: labels_dir.display().to_string(),
            detector: format!("{name} in vehicle boxes (pad {pad})"),
            min_iou,
            plates: labels.len(),
            found,
            recall: found as f64 / labels.len().max(1) as f64,
            extra,
            failed,
            latency_ms: latency.clone(),
            missed,
            by_class,
        });
    }
    Ok(reports)
}

impl DetectReport {
    /// The human-readable summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}  detector={}\n  recall@IoU{}: {}/{} = {:.1}%  (unmatched detections: {}, failed images: {})\n",
            self.dataset,
            self.detector,
            self.min_iou,
            self.found,
            self.plates,
            self.recall * 100.0,
            self.extra,
            self.failed,
        );
        for (class, c) in &self.by_class {
            s.push_str(&format!(
                "    {class}: {}/{} = {:.1}%  (plates {:.0}–{:.0} px wide)\n",
                c.found,
                c.plates,
                c.recall * 100.0,
                c.width_px[0],
                c.width_px[1]
            ));
        }
        s.push_str(&format!(
            "  latency per image (ms): p50 {:.2}  p90 {:.2}  p99 {:.2}\n  missed: {}\n",
            self.latency_ms.get("p50").copied().unwrap_or(0.0),
            self.latency_ms.get("p90").copied().unwrap_or(0.0),
            self.latency_ms.get("p99").copied().unwrap_or(0.0),
            self.missed.join(", ")
        ));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_labels(name: &str, body: &str) -> (PathBuf, Result<Vec<PlateBox>>) {
        let dir =
            std::env::temp_dir().join(format!("plate-ocr-eval-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("a.txt"), body).expect("write labels");
        let r = load_detection_labels(&dir);
        (dir, r)
    }

    #[test]
    fn detection_labels_six_or_seven_columns() {
        let (dir, r) = write_labels(
            "ok",
            "a.jpg\t120\t80\t64\t16\tAB123\r\n\na.jpg\t1\t2\t3\t4\t?\tmotorbike\n",
        );
        let l = r.expect("valid labels");
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].bbox, [120.0, 80.0, 64.0, 16.0]);
        assert_eq!(l[0].class, None);
        assert_eq!(l[1].class, Some(VehicleClass::Motorbike));
        assert_eq!(l[1].source, "a.txt:3");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_detection_labels_name_file_and_line() {
        for (name, body, needle) in [
            ("cols", "a.jpg\t1\t2\t3\t4\n", "5 tab-separated fields"),
            ("num", "a.jpg\t1\tx\t3\t4\tT\n", "y = \"x\""),
            ("nan", "a.jpg\t1\t2\tNaN\t4\tT\n", "w = \"NaN\""),
            ("neg", "a.jpg\t1\t2\t0\t4\tT\n", "w, h > 0"),
            ("class", "a.jpg\t1\t2\t3\t4\tT\ttruck\n", "class \"truck\""),
            ("path", "../a.jpg\t1\t2\t3\t4\tT\n", "plain file name"),
        ] {
            let (dir, r) = write_labels(name, &format!("a.jpg\t1\t2\t3\t4\tT\n{body}"));
            let e = r.expect_err(name).to_string();
            assert!(
                e.contains("a.txt") && e.contains("line 2") && e.contains(needle),
                "{name}: {e}"
            );
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    #[test]
    fn matching_is_one_to_one() {
        let l = |x: f32| PlateBox {
            image: "a".into(),
            bbox: [x, 0.0, 10.0, 10.0],
            text: "?".into(),
            class: None,
            source: "a.txt:1".into(),
        };
        let (a, b) = (l(0.0), l(1.0));
        // One detection over two overlapping labels finds one of them.
        let (hits, extra) = match_boxes(&[&a, &b], &[[0.5, 0.0, 10.0, 10.0]], 0.5);
        assert_eq!(hits.iter().filter(|h| **h).count(), 1);
        assert_eq!(extra, 0);
        let (hits, extra) =
            match_boxes(&[&a], &[[0.0, 0.0, 10.0, 10.0], [50.0, 0.0, 5.0, 5.0]], 0.5);
        assert_eq!(hits, vec![true]);
        assert_eq!(extra, 1);
    }

    #[test]
    fn vehicle_box_holds_the_plate_low_and_stays_inside() {
        let l = PlateBox {
            image: "a".into(),
            bbox: [100.0, 200.0, 20.0, 16.0],
            text: "?".into(),
            class: Some(VehicleClass::Motorbike),
            source: "a.txt:1".into(),
        };
        let [x, y, w, h] = vehicle_box(&l, 0.0, 1000.0, 1000.0);
        assert_eq!([x, y, w, h], [75.0, 120.0, 70.0, 120.0]);
        // The plate sits in the lower part, where the window search looks.
        assert!((l.bbox[1] - y) / h > 0.5);
        let [x, y, w, h] = vehicle_box(&l, 0.1, 150.0, 230.0);
        assert!(x >= 0.0 && y >= 0.0 && x + w <= 150.0 && y + h <= 230.0);
    }
}
