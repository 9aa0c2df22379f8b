//! Plane geometry in image pixels: points, boxes, polygons, line crossings,
//! headings and the ground-plane homography.
//!
//! Everything the site configuration describes (lanes, stop lines, zones)
//! and everything the tracker produces (boxes, anchor points) lives in the
//! same pixel frame: x to the right, y **down**, origin at the top-left of
//! the full-resolution frame. Headings follow the same convention: 0° points
//! right (+x), 90° points down (+y), -90° (= 270°) points up. Because y points
//! down, a positive change of heading is a clockwise turn on screen, which
//! for a camera looking down on the road is a right turn on the ground.
//!
//! The code is `f64` throughout, allocation-free except for polygons, and
//! never panics on non-finite input: predicates return `false`, measures
//! return `NaN` or `None`.

mod homography;

pub use homography::{Homography, HomographyError};

use serde::{Deserialize, Serialize};

/// A point in image pixels (or, after a homography, in metres on the ground).
/// Serialized as `[x, y]`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(from = "[f64; 2]", into = "[f64; 2]")]
pub struct Point {
    /// Horizontal coordinate, to the right.
    pub x: f64,
    /// Vertical coordinate, down.
    pub y: f64,
}

impl From<[f64; 2]> for Point {
    fn from([x, y]: [f64; 2]) -> Self {
        Self { x, y }
    }
}

impl From<Point> for [f64; 2] {
    fn from(p: Point) -> Self {
        [p.x, p.y]
    }
}

impl Point {
    /// A point.
    pub const fn new(x: f64, y: f64) -> Self {
        Self { x, y }
    }

    /// Both coordinates finite.
    pub fn is_finite(self) -> bool {
        self.x.is_finite() && self.y.is_finite()
    }

    /// `self - other` as a vector.
    pub fn minus(self, other: Point) -> Point {
        Point::new(self.x - other.x, self.y - other.y)
    }

    /// `self + other`.
    pub fn plus(self, other: Point) -> Point {
        Point::new(self.x + other.x, self.y + other.y)
    }

    /// Scales the vector by `k`.
    pub fn scale(self, k: f64) -> Point {
        Point::new(self.x * k, self.y * k)
    }

    /// Dot product of two vectors.
    pub fn dot(self, other: Point) -> f64 {
        self.x * other.x + self.y * other.y
    }

    /// z of the cross product of two vectors (positive: `other` is
    /// clockwise of `self` on screen, because y points down).
    pub fn cross(self, other: Point) -> f64 {
        self.x * other.y - self.y * other.x
    }

    /// Length of the vector.
    pub fn norm(self) -> f64 {
        self.x.hypot(self.y)
    }

    /// Euclidean distance.
    pub fn dist(self, other: Point) -> f64 {
        self.minus(other).norm()
    }

    /// Linear interpolation: `self` at `t = 0`, `other` at `t = 1`.
    pub fn lerp(self, other: Point, t: f64) -> Point {
        self.plus(other.minus(self).scale(t))
    }

    /// Unit vector pointing along `heading_deg` (see the module docs).
    pub fn from_heading(heading_deg: f64) -> Point {
        let r = heading_deg.to_radians();
        Point::new(r.cos(), r.sin())
    }
}

/// Heading of the vector `from → to` in degrees, `(-180, 180]`; 0° is +x,
/// 90° is +y (down). `NaN` if the points coincide or are not finite.
pub fn heading_deg(from: Point, to: Point) -> f64 {
    let d = to.minus(from);
    if !d.is_finite() || d.norm() == 0.0 {
        return f64::NAN;
    }
    d.y.atan2(d.x).to_degrees()
}

/// Signed smallest difference `to - from` between two headings, in
/// `(-180, 180]`. Positive: turned clockwise on screen (a right turn).
pub fn angle_diff_deg(from: f64, to: f64) -> f64 {
    let mut d = (to - from) % 360.0;
    if d > 180.0 {
        d -= 360.0;
    } else if d <= -180.0 {
        d += 360.0;
    }
    d
}

/// An axis-aligned box: top-left corner, width and height, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BBox {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

impl BBox {
    /// From top-left corner, width and height.
    pub const fn from_xywh(x: f64, y: f64, w: f64, h: f64) -> Self {
        Self { x, y, w, h }
    }

    /// From the corners `(x1, y1)` top-left and `(x2, y2)` bottom-right.
    pub fn from_xyxy(x1: f64, y1: f64, x2: f64, y2: f64) -> Self {
        Self::from_xywh(x1, y1, x2 - x1, y2 - y1)
    }

    /// From centre, width and height.
    pub fn from_cxcywh(cx: f64, cy: f64, w: f64, h: f64) -> Self {
        Self::from_xywh(cx - w / 2.0, cy - h / 2.0, w, h)
    }

    /// `[x1, y1, x2, y2]`.
    pub fn to_xyxy(self) -> [f64; 4] {
        [self.x, self.y, self.x + self.w, self.y + self.h]
    }

    /// Finite with positive width and height.
    pub fn is_valid(self) -> bool {
        [self.x, self.y, self.w, self.h]
            .iter()
            .all(|v| v.is_finite())
            && self.w > 0.0
            && self.h > 0.0
    }

    /// Area (0 for an invalid box).
    pub fn area(self) -> f64 {
        if self.is_valid() {
            self.w * self.h
        } else {
            0.0
        }
    }

    /// Centre.
    pub fn center(self) -> Point {
        Point::new(self.x + self.w / 2.0, self.y + self.h / 2.0)
    }

    /// Bottom-centre: where the vehicle touches the road, the point every
    /// rule tests against lines and polygons.
    pub fn anchor(self) -> Point {
        Point::new(self.x + self.w / 2.0, self.y + self.h)
    }

    /// Intersection over union, `0..=1`; 0 if either box is invalid.
    pub fn iou(self, other: BBox) -> f64 {
        if !self.is_valid() || !other.is_valid() {
            return 0.0;
        }
        let [ax1, ay1, ax2, ay2] = self.to_xyxy();
        let [bx1, by1, bx2, by2] = other.to_xyxy();
        let iw = (ax2.min(bx2) - ax1.max(bx1)).max(0.0);
        let ih = (ay2.min(by2) - ay1.max(by1)).max(0.0);
        let inter = iw * ih;
        let union = self.area() + other.area() - inter;
        if union > 0.0 && inter.is_finite() {
            (inter / union).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// A closed polygon (the last point joins the first).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Polygon {
    /// The vertices in order (either winding).
    pub points: Vec<Point>,
}

impl Polygon {
    /// A polygon from its vertices.
    pub fn new(points: Vec<Point>) -> Self {
        Self { points }
    }

    /// Signed area by the shoelace formula (positive: clockwise on screen).
    pub fn signed_area(&self) -> f64 {
        let n = self.points.len();
        if n < 3 {
            return 0.0;
        }
        let mut s = 0.0;
        for i in 0..n {
            let a = self.points[i];
            let b = self.points[(i + 1) % n];
            s += a.cross(b);
        }
        s / 2.0
    }

    /// Absolute area, square pixels.
    pub fn area(&self) -> f64 {
        self.signed_area().abs()
    }

    /// Whether `p` is inside (even-odd rule; points exactly on an edge may
    /// go either way). `false` for fewer than 3 vertices or a non-finite
    /// point.
    pub fn contains(&self, p: Point) -> bool {
        let n = self.points.len();
        if n < 3 || !p.is_finite() {
            return false;
        }
        let mut inside = false;
        let mut j = n - 1;
        for i in 0..n {
            let (a, b) = (self.points[i], self.points[j]);
            if (a.y > p.y) != (b.y > p.y) {
                let x_at = a.x + (p.y - a.y) * (b.x - a.x) / (b.y - a.y);
                if p.x < x_at {
                    inside = !inside;
                }
            }
            j = i;
        }
        inside
    }
}

/// A line segment between two points.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(from = "[Point; 2]", into = "[Point; 2]")]
pub struct Segment {
    /// First end.
    pub a: Point,
    /// Second end.
    pub b: Point,
}

impl From<[Point; 2]> for Segment {
    fn from([a, b]: [Point; 2]) -> Self {
        Self { a, b }
    }
}

impl From<Segment> for [Point; 2] {
    fn from(s: Segment) -> Self {
        [s.a, s.b]
    }
}

/// Where a moving point crossed a segment between two frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crossing {
    /// Fraction of the way from the earlier to the later position at which
    /// the crossing happened, `0..=1` (for sub-frame timing).
    pub t: f64,
    /// The crossing point.
    pub point: Point,
    /// `true` if the point moved from the negative to the positive side
    /// (see [`Segment::side`]).
    pub to_positive: bool,
}

impl Segment {
    /// A segment.
    pub const fn new(a: Point, b: Point) -> Self {
        Self { a, b }
    }

    /// Length.
    pub fn length(self) -> f64 {
        self.a.dist(self.b)
    }

    /// Signed distance of `p` from the (infinite) line, pixels. Positive on
    /// the side the right-hand normal of `a → b` points to (on screen, with
    /// y down: clockwise of `a → b`). `NaN` for a zero-length segment.
    pub fn side(self, p: Point) -> f64 {
        let d = self.b.minus(self.a);
        let len = d.norm();
        if len == 0.0 {
            return f64::NAN;
        }
        d.cross(p.minus(self.a)) / len
    }

    /// Whether the motion `p0 → p1` crosses this segment (within its ends),
    /// and how. Touching the line and staying on it is not a crossing: the
    /// start must be strictly on one side and the end on the other side or
    /// on the line.
    pub fn crossing(self, p0: Point, p1: Point) -> Option<Crossing> {
        let s0 = self.side(p0);
        let s1 = self.side(p1);
        if !s0.is_finite() || !s1.is_finite() || s0 == 0.0 {
            return None;
        }
        if (s0 < 0.0) == (s1 < 0.0) && s1 != 0.0 {
            return None;
        }
        let t = s0 / (s0 - s1);
        let point = p0.lerp(p1, t);
        // Within the segment's extent (with a small tolerance for rounding).
        let d = self.b.minus(self.a);
        let u = point.minus(self.a).dot(d) / d.dot(d);
        if !(-1e-9..=1.0 + 1e-9).contains(&u) {
            return None;
        }
        Some(Crossing {
            t,
            point,
            to_positive: s0 < 0.0,
        })
    }
}

/// Whether three points are (nearly) on one line: the triangle they make
/// has an area below `min_area` square units.
pub fn collinear(a: Point, b: Point, c: Point, min_area: f64) -> bool {
    (b.minus(a).cross(c.minus(a)) / 2.0).abs() < min_area
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_known_boxes() {
        let a = BBox::from_xywh(0.0, 0.0, 10.0, 10.0);
        let b = BBox::from_xywh(5.0, 0.0, 10.0, 10.0);
        assert!((a.iou(b) - 50.0 / 150.0).abs() < 1e-12);
        assert_eq!(a.iou(a), 1.0);
        assert_eq!(a.iou(BBox::from_xywh(20.0, 20.0, 5.0, 5.0)), 0.0);
        assert_eq!(a.iou(BBox::from_xywh(f64::NAN, 0.0, 5.0, 5.0)), 0.0);
        assert_eq!(a.iou(BBox::from_xywh(0.0, 0.0, -5.0, 5.0)), 0.0);
        let c = BBox::from_xyxy(2.0, 2.0, 4.0, 4.0);
        assert_eq!(c.to_xyxy(), [2.0, 2.0, 4.0, 4.0]);
        assert!((a.iou(c) - 0.04).abs() < 1e-12);
    }

    #[test]
    fn anchor_is_bottom_centre() {
        let b = BBox::from_xywh(10.0, 20.0, 30.0, 40.0);
        assert_eq!(b.anchor(), Point::new(25.0, 60.0));
        assert_eq!(b.center(), Point::new(25.0, 40.0));
    }

    #[test]
    fn polygon_contains_and_area() {
        let sq = Polygon::new(vec![
            Point::new(0.0, 0.0),
            Point::new(10.0, 0.0),
            Point::new(10.0, 10.0),
            Point::new(0.0, 10.0),
        ]);
        assert_eq!(sq.area(), 100.0);
        assert!(sq.contains(Point::new(5.0, 5.0)));
        assert!(!sq.contains(Point::new(15.0, 5.0)));
        assert!(!sq.contains(Point::new(f64::NAN, 5.0)));
        // Concave L shape.
        let l = Polygon::new(vec![
            Point::new(0.0, 0.0),
            Point::new(10.0, 0.0),
            Point::new(10.0, 4.0),
            Point::new(4.0, 4.0),
            Point::new(4.0, 10.0),
            Point::new(0.0, 10.0),
        ]);
        assert_eq!(l.area(), 64.0);
        assert!(l.contains(Point::new(2.0, 8.0)));
        assert!(!l.contains(Point::new(8.0, 8.0)));
        assert_eq!(Polygon::new(vec![Point::new(0.0, 0.0)]).area(), 0.0);
    }

    #[test]
    fn crossing_direction_and_fraction() {
        // Horizontal stop line at y = 100 from x = 0 to 200.
        let line = Segment::new(Point::new(0.0, 100.0), Point::new(200.0, 100.0));
        // Moving up the image (y decreasing) from 110 to 90.
        let c = line
            .crossing(Point::new(50.0, 110.0), Point::new(50.0, 90.0))
            .unwrap();
        assert!((c.t - 0.5).abs() < 1e-12);
        assert_eq!(c.point, Point::new(50.0, 100.0));
        // a→b points right; its clockwise side (screen) is down, y > 100.
        assert!(line.side(Point::new(0.0, 110.0)) > 0.0);
        assert!(!c.to_positive);
        let back = line
            .crossing(Point::new(50.0, 90.0), Point::new(50.0, 130.0))
            .unwrap();
        assert!(back.to_positive);
        assert!((back.t - 0.25).abs() < 1e-12);
        // Outside the segment's extent.
        assert!(
            line.crossing(Point::new(250.0, 110.0), Point::new(250.0, 90.0))
                .is_none()
        );
        // Same side.
        assert!(
            line.crossing(Point::new(50.0, 110.0), Point::new(50.0, 101.0))
                .is_none()
        );
        // Degenerate segment.
        let z = Segment::new(Point::new(1.0, 1.0), Point::new(1.0, 1.0));
        assert!(
            z.crossing(Point::new(0.0, 0.0), Point::new(2.0, 2.0))
                .is_none()
        );
    }

    #[test]
    fn headings_follow_screen_convention() {
        let o = Point::new(0.0, 0.0);
        assert_eq!(heading_deg(o, Point::new(1.0, 0.0)), 0.0);
        assert_eq!(heading_deg(o, Point::new(0.0, 1.0)), 90.0);
        assert_eq!(heading_deg(o, Point::new(0.0, -1.0)), -90.0);
        assert!(heading_deg(o, o).is_nan());
        // Driving up the image, then turning to the right of the screen:
        // a right turn is a positive change.
        assert_eq!(angle_diff_deg(-90.0, 0.0), 90.0);
        assert_eq!(angle_diff_deg(170.0, -170.0), 20.0);
        assert_eq!(angle_diff_deg(-170.0, 170.0), -20.0);
        assert_eq!(angle_diff_deg(0.0, 180.0), 180.0);
        let v = Point::from_heading(90.0);
        assert!(v.x.abs() < 1e-12 && (v.y - 1.0).abs() < 1e-12);
    }
}
