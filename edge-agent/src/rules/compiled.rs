//! The site configuration compiled for per-frame use: names resolved to
//! indices, headings turned into unit vectors, the homography built.

use crate::geometry::{BBox, Homography, Point, Polygon, Segment, heading_deg};
use crate::site::{Manoeuvre, RulesConfig, SiteConfig, SpeedLimits};
use protocol::VehicleClass;

/// Why a site could not be compiled (it was not validated).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("site configuration is invalid at {field}: {message}")]
pub struct RuleError {
    /// Field path.
    pub field: String,
    /// Problem.
    pub message: String,
}

pub(crate) struct CLane {
    pub id: String,
    pub polygon: Polygon,
    pub direction: Option<Point>,
    pub directions: Vec<Manoeuvre>,
    pub classes: Vec<VehicleClass>,
    pub group: Option<String>,
    pub stop_line: Option<usize>,
    pub right_turn_on_red: bool,
    pub limits: SpeedLimits,
}

pub(crate) struct CStopLine {
    pub segment: Segment,
    pub approach_deg: f64,
    /// +1 or -1: multiplies [`Segment::side`] into "distance past the line".
    pub sign: f64,
}

impl CStopLine {
    /// Signed distance beyond the line in the approach direction, px.
    pub fn past(&self, p: Point) -> f64 {
        self.segment.side(p) * self.sign
    }
}

pub(crate) enum CSpeed {
    TwoLines {
        lines: [Segment; 2],
        distance_m: f64,
        distance_error_m: f64,
    },
    Homography {
        h: Homography,
        window_us: i64,
    },
}

pub(crate) struct Compiled {
    pub lanes: Vec<CLane>,
    pub stop_lines: Vec<CStopLine>,
    pub speed: Option<CSpeed>,
    pub pixel_error_px: f64,
    pub time_error_us: f64,
    pub zones: Vec<(Polygon, i64)>,
    pub rules: RulesConfig,
    /// The frame's width and height, px.
    pub frame: (f64, f64),
}

fn err(field: impl Into<String>, message: impl Into<String>) -> RuleError {
    RuleError {
        field: field.into(),
        message: message.into(),
    }
}

impl Compiled {
    pub fn new(site: &SiteConfig) -> Result<Self, RuleError> {
        site.validate().map_err(|(f, m)| err(f, m))?;
        let stop_lines: Vec<CStopLine> = site
            .stop_lines
            .iter()
            .map(|s| {
                let d = s.points.b.minus(s.points.a);
                let normal = Point::new(-d.y, d.x);
                let approach = Point::from_heading(s.approach_deg);
                CStopLine {
                    segment: s.points,
                    approach_deg: heading_deg(Point::default(), approach),
                    sign: if normal.dot(approach) >= 0.0 {
                        1.0
                    } else {
                        -1.0
                    },
                }
            })
            .collect();
        let mut lanes = Vec::with_capacity(site.lanes.len());
        for (i, l) in site.lanes.iter().enumerate() {
            let stop_line = match &l.stop_line {
                Some(id) => Some(
                    site.stop_lines
                        .iter()
                        .position(|s| &s.id == id)
                        .ok_or_else(|| err(format!("lanes[{i}].stop_line"), "unknown stop line"))?,
                ),
                None => None,
            };
            let heading = l
                .heading_deg
                .or_else(|| stop_line.map(|s| site.stop_lines[s].approach_deg));
            lanes.push(CLane {
                id: l.id.clone(),
                polygon: l.polygon.clone(),
                direction: heading.map(Point::from_heading),
                directions: l.directions.clone(),
                classes: l.classes.clone(),
                group: l.group.clone(),
                stop_line,
                right_turn_on_red: l.right_turn_on_red,
                limits: l.speed_limit_kmh,
            });
        }
        let (speed, pixel_error_px, time_error_us) = match &site.speed {
            Some(s) => {
                let c = if let Some(t) = &s.two_lines {
                    CSpeed::TwoLines {
                        lines: t.lines,
                        distance_m: t.distance_m,
                        distance_error_m: t.distance_error_m,
                    }
                } else if let Some(h) = &s.homography {
                    CSpeed::Homography {
                        h: Homography::from_points(&h.image, &h.ground_m)
                            .map_err(|e| err("speed.homography", e.to_string()))?,
                        window_us: i64::from(h.window_ms) * 1000,
                    }
                } else {
                    return Err(err("speed", "no calibration method"));
                };
                (Some(c), s.pixel_error_px, s.time_error_ms * 1000.0)
            }
            None => (None, 0.0, 0.0),
        };
        let zones = site
            .no_stopping_zones
            .iter()
            .map(|z| (z.polygon.clone(), (z.max_dwell_s * 1e6).round() as i64))
            .collect();
        Ok(Self {
            lanes,
            stop_lines,
            speed,
            pixel_error_px,
            time_error_us,
            zones,
            rules: site.rules.clone(),
            frame: (f64::from(site.frame.width), f64::from(site.frame.height)),
        })
    }

    /// The first lane containing `p`.
    pub fn lane_at(&self, p: Point) -> Option<usize> {
        self.lanes.iter().position(|l| l.polygon.contains(p))
    }

    /// The first no-stopping zone containing `p`.
    pub fn zone_at(&self, p: Point) -> Option<usize> {
        self.zones.iter().position(|(z, _)| z.contains(p))
    }

    /// Whether `b` touches the edge of the frame (within [`EDGE_PX`]): the
    /// detector clips boxes to the frame, so such a box may show only part
    /// of its vehicle, and its anchor where the frame ends rather than
    /// where the vehicle is.
    pub fn at_edge(&self, b: BBox) -> bool {
        let (w, h) = self.frame;
        b.x <= EDGE_PX || b.y <= EDGE_PX || b.x + b.w >= w - EDGE_PX || b.y + b.h >= h - EDGE_PX
    }
}

/// How close to the frame's edge a box touches it, px.
pub(crate) const EDGE_PX: f64 = 1.0;
