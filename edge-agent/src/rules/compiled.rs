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
        /// Relative error of the calibration (`calibration_error`).
        rel_error: f64,
        /// The four image points' convex hull, where the homography is not
        /// extrapolated.
        hull: Polygon,
        /// How far outside `hull` a window's end may still be, px.
        margin_px: f64,
    },
}

/// How far outside the calibration points' hull a homography window's end
/// may be, as a fraction of the larger side of the hull's bounding box.
pub(crate) const HULL_MARGIN: f64 = 0.05;

pub(crate) struct Compiled {
    pub lanes: Vec<CLane>,
    pub stop_lines: Vec<CStopLine>,
    pub speed: Option<CSpeed>,
    /// What measured speeds are multiplied by for an anchor above the
    /// road ([`crate::site::SpeedCalibration::anchor_height_factor`]).
    pub anchor_factor: f64,
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
        let (speed, anchor_factor, pixel_error_px, time_error_us) = match &site.speed {
            Some(s) => {
                let c = if let Some(t) = &s.two_lines {
                    CSpeed::TwoLines {
                        lines: t.lines,
                        distance_m: t.distance_m,
                        distance_error_m: t.effective_distance_error_m(),
                    }
                } else if let Some(g) = &s.homography {
                    let hull = convex_hull(&g.image);
                    let (w, h) = extent(&g.image);
                    CSpeed::Homography {
                        h: Homography::from_points(&g.image, &g.ground_m)
                            .map_err(|e| err("speed.homography", e.to_string()))?,
                        window_us: i64::from(g.window_ms) * 1000,
                        rel_error: g.calibration_error,
                        hull,
                        margin_px: HULL_MARGIN * w.max(h),
                    }
                } else {
                    return Err(err("speed", "no calibration method"));
                };
                (
                    Some(c),
                    s.anchor_height_factor(),
                    s.pixel_error_px,
                    s.time_error_ms * 1000.0,
                )
            }
            None => (None, 1.0, 0.0, 0.0),
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
            anchor_factor,
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

/// The convex hull of some points (counter-clockwise in the image's
/// coordinates; collinear points dropped).
fn convex_hull(points: &[Point]) -> Polygon {
    let mut ps = points.to_vec();
    ps.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)));
    ps.dedup();
    let mut hull: Vec<Point> = Vec::with_capacity(2 * ps.len());
    for pass in [ps.clone(), ps.into_iter().rev().collect()] {
        let start = hull.len();
        for p in pass {
            while hull.len() >= start + 2 {
                let (a, b) = (hull[hull.len() - 2], hull[hull.len() - 1]);
                if b.minus(a).cross(p.minus(a)) <= 0.0 {
                    hull.pop();
                } else {
                    break;
                }
            }
            hull.push(p);
        }
        hull.pop();
    }
    Polygon::new(hull)
}

/// The width and height of the points' bounding box.
fn extent(points: &[Point]) -> (f64, f64) {
    let span = |f: fn(&Point) -> f64| {
        let v = points.iter().map(f);
        v.clone().fold(f64::NEG_INFINITY, f64::max) - v.fold(f64::INFINITY, f64::min)
    };
    (span(|p| p.x), span(|p| p.y))
}

/// How close to the frame's edge a box touches it, px.
pub(crate) const EDGE_PX: f64 = 1.0;
