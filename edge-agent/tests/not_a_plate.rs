//! Text that is not a plate must never become a plate read.
//!
//! Both shared recordings carry real text beside the traffic: a camera's
//! clock overlay ("…24-2026 Sun 18:09:35") and street-name caption, shop
//! signs and billboards, and, in the first seconds of the other clip, a
//! screen recorder's window full of words and digits. Each region is read
//! exactly as a violator's box is: the y5fu detector and recogniser inside
//! the region, then (for the `vn` reader) the motorbike window search. The
//! grammar and the detector must refuse every one of them: a read here is
//! what would put an innocent plate on a fine.

use edge_agent::capture::{FrameSource, Pacing, SourceSpec};
use edge_agent::detect::frame_mat;
use opencv::core::{Mat, MatTraitConst, Rect};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

fn video(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/video")
        .join(name);
    assert!(
        p.is_file(),
        "evaluation video missing: {} (shared/ must sit beside the repository)",
        p.display()
    );
    p
}

/// A text region of a recording, on the frames where it shows.
struct TextRegion {
    what: &'static str,
    rect: Rect,
    frames: &'static [u64],
}

/// Decodes `file` and returns the wanted frames as BGR images.
fn frames(file: &str, wanted: &[u64]) -> BTreeMap<u64, Mat> {
    let mut src = FrameSource::open(
        &SourceSpec::File(video(file)),
        Pacing::AsFastAsPossible,
        None,
    )
    .expect("opens");
    let last = wanted.iter().copied().max().unwrap_or(0);
    let mut out = BTreeMap::new();
    while let Some(f) = src.next_frame(Duration::from_secs(10)).expect("decodes") {
        if wanted.contains(&f.number) {
            let m = frame_mat(&f)
                .expect("frame as Mat")
                .try_clone()
                .expect("copy");
            out.insert(f.number, m);
        }
        if f.number >= last {
            break;
        }
    }
    assert_eq!(
        out.len(),
        wanted.len(),
        "every wanted frame of {file} decoded"
    );
    out
}

/// Reads `region` of `image` with `reader` the way the violator's box is
/// read; returns the valid plates and the raw texts the recogniser produced
/// (the proof that text reached it and was refused, not just never seen).
fn valid_reads(
    reader: &plate_ocr::pipeline::Pipeline,
    image: &Mat,
    rect: Rect,
) -> (Vec<String>, Vec<String>) {
    let crop = Mat::roi(image, rect)
        .expect("region inside the frame")
        .try_clone()
        .expect("copy");
    let reads = reader.read_image(&crop).expect("reads");
    let mut raw: Vec<String> = reads
        .iter()
        .filter(|r| !r.raw.is_empty())
        .map(|r| r.raw.clone())
        .collect();
    let mut out: Vec<String> = reads
        .into_iter()
        .filter(|r| r.valid && !r.unreadable)
        .filter_map(|r| r.text)
        .collect();
    // As if the detector had taken a piece of the text for a plate: read
    // one-line and two-line plate-shaped windows over the whole region, so
    // the grammar alone has to refuse what the recogniser makes of it.
    for win in plate_shaped_windows(rect.width, rect.height) {
        let piece = Mat::roi(&crop, win)
            .expect("window inside the region")
            .try_clone()
            .expect("copy");
        let r = reader.read_crop(&piece, None).expect("reads a window");
        if !r.raw.is_empty() {
            raw.push(r.raw.clone());
        }
        if r.valid && !r.unreadable {
            out.extend(r.text);
        }
    }
    if let Some(search) = reader.window_search()
        && let Some(r) = reader.search_windows(&crop, search).expect("window search")
        && r.valid
        && !r.unreadable
    {
        out.extend(r.text);
    }
    (out, raw)
}

/// Returns how many region-frames were read and the raw texts seen.
/// One-line (520×110 mm) and two-line (190×140 mm) plate shapes, at most 40
/// px high, every half window along and every window height down a `width`
/// × `height` region.
fn plate_shaped_windows(width: i32, height: i32) -> Vec<Rect> {
    let h = height.min(40);
    let mut out = Vec::new();
    for aspect in [520.0 / 110.0, 190.0 / 140.0] {
        let w = (h as f32 * aspect).round() as i32;
        if w > width {
            continue;
        }
        let (sx, sy) = ((w / 2).max(1), h.max(1));
        let mut y = 0;
        while y + h <= height {
            let mut x = 0;
            while x + w <= width {
                out.push(Rect::new(x, y, w, h));
                x += sx;
            }
            y += sy;
        }
    }
    out
}

fn check(file: &str, regions: &[TextRegion]) -> (usize, Vec<String>) {
    let mut wanted: Vec<u64> = regions
        .iter()
        .flat_map(|r| r.frames.iter().copied())
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let images = frames(file, &wanted);
    let mut reads = 0;
    let mut seen = Vec::new();
    for name in ["ppocr", "vn"] {
        let reader = edge_agent::violator::plate_reader(name).expect("plate reader");
        for region in regions {
            for n in region.frames {
                let image = &images[n];
                assert!(
                    region.rect.x + region.rect.width <= image.cols()
                        && region.rect.y + region.rect.height <= image.rows(),
                    "{} lies inside the frame",
                    region.what
                );
                let (found, raw) = valid_reads(&reader, image, region.rect);
                seen.extend(raw);
                assert!(
                    found.is_empty(),
                    "{name} read {found:?} as a plate from the {} of {file}, frame {n}",
                    region.what
                );
                reads += 1;
            }
        }
    }
    (reads, seen)
}

#[test]
fn camera_clock_caption_and_signs_are_not_plates() {
    let regions = [
        TextRegion {
            what: "clock overlay (date, weekday, time)",
            rect: Rect::new(0, 0, 372, 32),
            frames: &[0, 300],
        },
        TextRegion {
            what: "street-name caption",
            rect: Rect::new(270, 270, 326, 38),
            frames: &[0],
        },
        TextRegion {
            what: "shop sign and billboard",
            rect: Rect::new(0, 0, 140, 116),
            frames: &[150],
        },
        TextRegion {
            what: "lit billboard",
            rect: Rect::new(130, 25, 115, 50),
            frames: &[150],
        },
    ];
    let (n, seen) = check("mirsabayu_traffic.mp4", &regions);
    assert_eq!(n, 2 * (2 + 1 + 1 + 1));
    assert!(seen.len() >= 30, "the recognisers saw the text: {seen:?}");
}

#[test]
fn screen_recorder_window_and_billboard_are_not_plates() {
    let regions = [
        TextRegion {
            what: "screen recorder window (buttons, hotkeys, log lines)",
            rect: Rect::new(0, 0, 366, 600),
            frames: &[0],
        },
        TextRegion {
            what: "bank billboard",
            rect: Rect::new(215, 170, 165, 250),
            frames: &[80],
        },
    ];
    let (n, seen) = check("thanglm20_nguoc_chieu.mp4", &regions);
    assert_eq!(n, 2 * (1 + 1));
    assert!(seen.len() >= 30, "the recognisers saw the text: {seen:?}");
}
