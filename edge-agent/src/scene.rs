//! Synthetic intersection scenes with known answers, for tests and demos.
//!
//! A [`Scene`] renders a one-approach intersection (road, lane markings, a
//! stop line, a signal head cycling red/yellow/green) with scripted
//! vehicles — coloured boxes carrying white plates with rendered text —
//! moving along straight paths. It writes the matching site configuration
//! and computes the ground truth (which vehicle crosses the stop line on
//! red), so a test can run the real analysis on the frames and compare
//! violation lists exactly.

use crate::capture::Frame;
use opencv::core::{CV_8UC3, Mat, Point, Rect, Scalar};
use opencv::imgproc;
use opencv::prelude::*;
use protocol::{SignalState, VehicleClass};
use time::OffsetDateTime;

/// The signal cycle, in frames: green, then yellow, then red, repeating,
/// starting at green on frame 0.
#[derive(Debug, Clone, Copy)]
pub struct SignalCycle {
    pub green: u64,
    pub yellow: u64,
    pub red: u64,
}

impl SignalCycle {
    /// The signal shown on frame `n`.
    pub fn state(&self, n: u64) -> SignalState {
        let t = n % (self.green + self.yellow + self.red).max(1);
        if t < self.green {
            SignalState::Green
        } else if t < self.green + self.yellow {
            SignalState::Yellow
        } else {
            SignalState::Red
        }
    }
}

/// A vehicle moving straight up the image at constant speed, from
/// `enter_frame`, stopping for good at `stop_at_y` (its bottom edge) if set.
#[derive(Debug, Clone)]
pub struct ScriptedVehicle {
    pub class: VehicleClass,
    /// Left edge, px.
    pub x: i32,
    pub width: i32,
    pub height: i32,
    /// Bottom edge when it enters, px.
    pub start_bottom: f32,
    /// Pixels per frame, upwards.
    pub speed: f32,
    pub enter_frame: u64,
    pub stop_at_y: Option<f32>,
    pub plate: String,
    /// A photographed plate (BGR) pasted in place of the drawn text, scaled
    /// to the plate's width: a real plate for the reader to read.
    pub plate_image: Option<std::sync::Arc<Mat>>,
    /// Body colour, BGR.
    pub colour: [u8; 3],
}

impl ScriptedVehicle {
    /// A 70×100 car whose bottom edge enters at y 470 on `enter_frame`,
    /// moving up `speed` px per frame, stopping for good at `stop_at_y`.
    pub fn car(
        x: i32,
        enter_frame: u64,
        speed: f32,
        stop_at_y: Option<f32>,
        plate: &str,
        colour: [u8; 3],
    ) -> Self {
        ScriptedVehicle {
            class: VehicleClass::Car,
            x,
            width: 70,
            height: 100,
            start_bottom: 470.0,
            speed,
            enter_frame,
            stop_at_y,
            plate: plate.to_string(),
            plate_image: None,
            colour,
        }
    }

    /// Bottom edge on frame `n`, or `None` before it enters or after it left.
    pub fn bottom(&self, n: u64) -> Option<f32> {
        if n < self.enter_frame {
            return None;
        }
        let mut y = self.start_bottom - self.speed * (n - self.enter_frame) as f32;
        if let Some(stop) = self.stop_at_y {
            y = y.max(stop);
        }
        (y > 0.0).then_some(y)
    }
}

/// A rendered intersection.
#[derive(Debug, Clone)]
pub struct Scene {
    pub width: i32,
    pub height: i32,
    pub fps: u32,
    /// y of the stop line, px.
    pub stop_y: i32,
    pub signal: SignalCycle,
    pub vehicles: Vec<ScriptedVehicle>,
    /// Wall-clock time of frame 0.
    pub start: OffsetDateTime,
}

impl Scene {
    /// The standard test intersection: 640×480 at 10 fps, stop line at
    /// y 240, signal green 0–59, yellow 60–89 (3 s, as on Vietnamese
    /// signals; the lamp filter does not believe a red that follows a
    /// shorter yellow, see `signal`), red 90–179, repeating.
    pub fn standard(vehicles: Vec<ScriptedVehicle>, start: OffsetDateTime) -> Scene {
        Scene {
            width: 640,
            height: 480,
            fps: 10,
            stop_y: 240,
            signal: SignalCycle {
                green: 60,
                yellow: 30,
                red: 90,
            },
            vehicles,
            start,
        }
    }
}

/// Two cars arriving side by side on red (frame 110): the left one runs it,
/// the right one stops at the line. 220 frames.
pub fn runner_and_stopper(start: OffsetDateTime) -> Scene {
    Scene::standard(
        vec![
            ScriptedVehicle::car(80, 110, 5.0, None, "29B67890", [40, 60, 200]),
            ScriptedVehicle::car(300, 110, 5.0, Some(280.0), "51F11111", [40, 160, 40]),
        ],
        start,
    )
}

const LAMP: i32 = 24;
const LAMP_X_FROM_RIGHT: i32 = 60;

impl Scene {
    fn lamp_rect(&self, i: i32) -> Rect {
        Rect::new(
            self.width - LAMP_X_FROM_RIGHT,
            20 + i * (LAMP + 8),
            LAMP,
            LAMP,
        )
    }

    /// The site configuration that matches this scene: one approach lane
    /// below the stop line (heading up the image), its signal read from the
    /// drawn lamps.
    pub fn site_toml(&self) -> String {
        let (w, h, y) = (self.width, self.height, self.stop_y);
        let r = |i: i32| {
            let q = self.lamp_rect(i);
            format!("[{}, {}, {}, {}]", q.x, q.y, q.width, q.height)
        };
        format!(
            r#"camera_id = "synthetic"

[frame]
width = {w}
height = {h}

[[stop_lines]]
id = "main"
points = [[40, {y}], [{x1}, {y}]]
approach_deg = -90

[[lanes]]
id = "approach"
polygon = [[40, {y}], [{x1}, {y}], [{x1}, {hb}], [40, {hb}]]
directions = ["straight"]
group = "main"
stop_line = "main"

[[lanes]]
id = "exit"
polygon = [[40, 0], [{x1}, 0], [{x1}, {y}], [40, {y}]]
heading_deg = -90

[[signals]]
group = "main"
confirm_frames = 2
[signals.lamps]
red = {red}
yellow = {yellow}
green = {green}

[rules.red_light]
enabled = true
# The default (30 px) is for a 1920x1080 view: scaled to this one's width.
confirm_past_px = {confirm:.1}
"#,
            x1 = w - 100,
            hb = h - 1,
            confirm = (crate::site::RedLightRule::DEFAULT_CONFIRM_PAST_PX * f64::from(w) / 1920.0)
                .max(crate::site::RedLightRule::MIN_CONFIRM_PAST_PX),
            red = r(0),
            yellow = r(1),
            green = r(2),
        )
    }

    /// Renders frame `n`.
    pub fn render(&self, n: u64) -> Result<Frame, opencv::Error> {
        let mut m = Mat::new_rows_cols_with_default(
            self.height,
            self.width,
            CV_8UC3,
            Scalar::new(90.0, 90.0, 90.0, 0.0),
        )?;
        let white = Scalar::new(235.0, 235.0, 235.0, 0.0);
        // Lane edge markings and the stop line.
        for x in [40, self.width - 100] {
            imgproc::line(
                &mut m,
                Point::new(x, 0),
                Point::new(x, self.height),
                white,
                2,
                imgproc::LINE_8,
                0,
            )?;
        }
        imgproc::line(
            &mut m,
            Point::new(40, self.stop_y),
            Point::new(self.width - 100, self.stop_y),
            white,
            4,
            imgproc::LINE_8,
            0,
        )?;
        // Signal head.
        let state = self.signal.state(n);
        let lit = [
            (SignalState::Red, Scalar::new(30.0, 30.0, 250.0, 0.0)),
            (SignalState::Yellow, Scalar::new(30.0, 210.0, 250.0, 0.0)),
            (SignalState::Green, Scalar::new(60.0, 230.0, 40.0, 0.0)),
        ];
        for (i, (s, colour)) in lit.iter().enumerate() {
            let c = if *s == state {
                *colour
            } else {
                Scalar::new(35.0, 35.0, 35.0, 0.0)
            };
            imgproc::rectangle(&mut m, self.lamp_rect(i as i32), c, -1, imgproc::LINE_8, 0)?;
        }
        // Vehicles with their plates.
        for v in &self.vehicles {
            let Some(bottom) = v.bottom(n) else { continue };
            let top = (bottom - v.height as f32).round() as i32;
            let body = Rect::new(v.x, top, v.width, v.height);
            let [b, g, r] = v.colour;
            imgproc::rectangle(
                &mut m,
                body,
                Scalar::new(b as f64, g as f64, r as f64, 0.0),
                -1,
                imgproc::LINE_8,
                0,
            )?;
            let pw = (v.width * 2 / 3).max(10);
            if let Some(img) = &v.plate_image {
                let ph = (pw * img.rows() / img.cols().max(1)).max(4);
                let at = Rect::new(v.x + (v.width - pw) / 2, bottom as i32 - ph - 4, pw, ph);
                if at.x >= 0 && at.y >= 0 && at.x + pw <= self.width && at.y + ph <= self.height {
                    let mut small = Mat::default();
                    imgproc::resize(
                        img.as_ref(),
                        &mut small,
                        opencv::core::Size::new(pw, ph),
                        0.0,
                        0.0,
                        imgproc::INTER_AREA,
                    )?;
                    let mut roi = Mat::roi_mut(&mut m, at)?;
                    small.copy_to(&mut roi)?;
                }
                continue;
            }
            let ph = (pw / 3).max(6);
            let plate = Rect::new(v.x + (v.width - pw) / 2, bottom as i32 - ph - 4, pw, ph);
            imgproc::rectangle(&mut m, plate, white, -1, imgproc::LINE_8, 0)?;
            // Fit the text inside the plate.
            let mut baseline = 0;
            let unit = imgproc::get_text_size(
                &v.plate,
                imgproc::FONT_HERSHEY_PLAIN,
                1.0,
                1,
                &mut baseline,
            )?;
            let scale = (ph as f64 / 14.0).min((pw - 4) as f64 / unit.width.max(1) as f64);
            imgproc::put_text(
                &mut m,
                &v.plate,
                Point::new(plate.x + 2, plate.y + ph - 3),
                imgproc::FONT_HERSHEY_PLAIN,
                scale,
                Scalar::new(10.0, 10.0, 10.0, 0.0),
                1,
                imgproc::LINE_AA,
                false,
            )?;
        }
        let bytes = m.data_bytes()?.to_vec();
        let time = self.start
            + time::Duration::nanoseconds((n as i64) * 1_000_000_000 / self.fps.max(1) as i64);
        Frame::from_bgr(n, time, self.width as u32, self.height as u32, bytes)
            .ok_or_else(|| opencv::Error::new(opencv::core::StsError, "frame size mismatch"))
    }

    /// Ground truth over `frames`: the indexes of vehicles whose bottom edge
    /// crosses the stop line while the signal is red.
    pub fn red_light_runners(&self, frames: u64) -> Vec<usize> {
        let line = self.stop_y as f32;
        let mut out = Vec::new();
        for (i, v) in self.vehicles.iter().enumerate() {
            for n in 1..frames {
                if let (Some(a), Some(b)) = (v.bottom(n - 1), v.bottom(n))
                    && a >= line
                    && b < line
                {
                    if self.signal.state(n) == SignalState::Red {
                        out.push(i);
                    }
                    break;
                }
            }
        }
        out
    }
}

/// Frames of the demonstration scene (36 s at 10 fps).
pub const DEMO_FRAMES: u64 = 360;

/// The demonstration intersection (`edge-agent scene`, `make demo`): 36 s
/// at 10 fps, two lanes, two signal cycles; two cars run the red light, one
/// crosses on green and one on yellow. The cars are drawn large so a photographed plate on them
/// has the pixels a real camera gives a near car's plate. `plates` (photographed plates, reused
/// in turn) replace the drawn text when given, so the plate reader has
/// something real to read.
pub fn demo(plates: &[std::sync::Arc<Mat>], start: OffsetDateTime) -> Scene {
    // (left edge, enter frame, speed, stop at): red is 90-179 and 270-359.
    let script: [(i32, u64, f32, Option<f32>); 4] = [
        (40, 100, 5.0, None),  // runs the red at about frame 146
        (300, 20, 5.0, None),  // crosses on green at about frame 66
        (40, 200, 5.0, None),  // crosses on yellow at about frame 246
        (300, 265, 6.0, None), // runs the next red at about frame 303
    ];
    let vehicles = script
        .iter()
        .enumerate()
        .map(|(i, &(x, enter_frame, speed, stop_at_y))| ScriptedVehicle {
            class: VehicleClass::Car,
            x,
            width: 210,
            height: 230,
            start_bottom: 470.0,
            speed,
            enter_frame,
            stop_at_y,
            plate: format!("DEMO {}", i + 1),
            plate_image: (!plates.is_empty()).then(|| plates[i % plates.len()].clone()),
            colour: [[40, 60, 200], [160, 90, 30], [90, 90, 90], [30, 140, 160]][i],
        })
        .collect();
    Scene::standard(vehicles, start)
}
