//! The planar homography between the image and the road surface, for
//! speed measured as ground-plane displacement.
//!
//! Four image points with known ground positions (metres) fix the 3×3
//! matrix `H` (with `h33 = 1`); the eight unknowns come from an 8×8 linear
//! system solved by Gaussian elimination with partial pivoting. A singular
//! system (three collinear points, repeated points) is an error, not a
//! matrix full of infinities.

// Matrix code reads best with explicit indices.
#![allow(clippy::needless_range_loop)]

use super::{Point, collinear};

/// Why a homography could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HomographyError {
    /// A coordinate is NaN or infinite.
    #[error("point {0} is not finite")]
    NotFinite(usize),
    /// Three of the four points (of the source or the destination set) lie
    /// on one line, so the mapping is not determined.
    #[error("points {0}, {1} and {2} of the {3} set are collinear")]
    Collinear(usize, usize, usize, &'static str),
    /// The linear system is singular or badly conditioned.
    #[error("the point correspondences give a singular system")]
    Singular,
}

/// A 3×3 projective mapping of the plane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Homography {
    /// Row-major matrix.
    pub m: [[f64; 3]; 3],
}

impl Homography {
    /// The mapping that takes each `src[i]` to `dst[i]`.
    pub fn from_points(src: &[Point; 4], dst: &[Point; 4]) -> Result<Self, HomographyError> {
        for (i, p) in src.iter().chain(dst.iter()).enumerate() {
            if !p.is_finite() {
                return Err(HomographyError::NotFinite(i % 4));
            }
        }
        for (set, pts) in [("source", src), ("destination", dst)] {
            let scale = bbox_diag(pts).max(1e-12);
            for (i, j, k) in [(0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)] {
                // Triangle area below 0.1 % of the square of the spread.
                if collinear(pts[i], pts[j], pts[k], 1e-3 * scale * scale) {
                    return Err(HomographyError::Collinear(i, j, k, set));
                }
            }
        }
        let mut a = [[0.0_f64; 9]; 8];
        for i in 0..4 {
            let (x, y) = (src[i].x, src[i].y);
            let (u, v) = (dst[i].x, dst[i].y);
            a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, u];
            a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, v];
        }
        let h = solve8(a).ok_or(HomographyError::Singular)?;
        let hom = Self {
            m: [[h[0], h[1], h[2]], [h[3], h[4], h[5]], [h[6], h[7], 1.0]],
        };
        // Every source point must map to a finite point (not to infinity).
        for p in src {
            if hom.apply(*p).is_none() {
                return Err(HomographyError::Singular);
            }
        }
        Ok(hom)
    }

    /// Maps a point; `None` if it maps to infinity (or is not finite).
    pub fn apply(&self, p: Point) -> Option<Point> {
        let m = &self.m;
        let w = m[2][0] * p.x + m[2][1] * p.y + m[2][2];
        if !w.is_finite() || w.abs() < 1e-12 {
            return None;
        }
        let x = (m[0][0] * p.x + m[0][1] * p.y + m[0][2]) / w;
        let y = (m[1][0] * p.x + m[1][1] * p.y + m[1][2]) / w;
        let out = Point::new(x, y);
        out.is_finite().then_some(out)
    }

    /// The inverse mapping; `None` if the matrix is singular.
    pub fn inverse(&self) -> Option<Self> {
        let m = &self.m;
        let c = |r0: usize, c0: usize, r1: usize, c1: usize| {
            m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0]
        };
        let adj = [
            [c(1, 1, 2, 2), -c(0, 1, 2, 2), c(0, 1, 1, 2)],
            [-c(1, 0, 2, 2), c(0, 0, 2, 2), -c(0, 0, 1, 2)],
            [c(1, 0, 2, 1), -c(0, 0, 2, 1), c(0, 0, 1, 1)],
        ];
        let det = m[0][0] * adj[0][0] + m[0][1] * adj[1][0] + m[0][2] * adj[2][0];
        if !det.is_finite() || det.abs() < 1e-15 {
            return None;
        }
        let mut out = [[0.0; 3]; 3];
        for (r, row) in out.iter_mut().enumerate() {
            for (col, v) in row.iter_mut().enumerate() {
                *v = adj[r][col] / det;
            }
        }
        Some(Self { m: out })
    }
}

fn bbox_diag(pts: &[Point; 4]) -> f64 {
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for p in pts {
        x0 = x0.min(p.x);
        y0 = y0.min(p.y);
        x1 = x1.max(p.x);
        y1 = y1.max(p.y);
    }
    (x1 - x0).hypot(y1 - y0)
}

/// Solves the 8×8 system whose augmented matrix is `a` (last column the
/// right-hand side). `None` when a pivot is (relatively) zero.
fn solve8(mut a: [[f64; 9]; 8]) -> Option<[f64; 8]> {
    let scale = a
        .iter()
        .flat_map(|r| r[..8].iter())
        .fold(0.0_f64, |m, v| m.max(v.abs()));
    if !(scale.is_finite() && scale > 0.0) {
        return None;
    }
    for col in 0..8 {
        let mut piv = col;
        for r in col + 1..8 {
            if a[r][col].abs() > a[piv][col].abs() {
                piv = r;
            }
        }
        if a[piv][col].abs() <= 1e-12 * scale {
            return None;
        }
        a.swap(col, piv);
        for r in 0..8 {
            if r != col {
                let f = a[r][col] / a[col][col];
                if f != 0.0 {
                    for k in col..9 {
                        a[r][k] -= f * a[col][k];
                    }
                }
            }
        }
    }
    let mut x = [0.0; 8];
    for (i, xi) in x.iter_mut().enumerate() {
        *xi = a[i][8] / a[i][i];
        if !xi.is_finite() {
            return None;
        }
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: [[f64; 2]; 4]) -> [Point; 4] {
        v.map(Point::from)
    }

    #[test]
    fn maps_the_four_points_and_round_trips() {
        // A trapezoid in the image (a road seen in perspective) onto a
        // 7 m × 30 m rectangle on the ground.
        let img = pts([
            [800.0, 400.0],
            [1100.0, 400.0],
            [1500.0, 1000.0],
            [400.0, 1000.0],
        ]);
        let gnd = pts([[0.0, 30.0], [7.0, 30.0], [7.0, 0.0], [0.0, 0.0]]);
        let h = Homography::from_points(&img, &gnd).unwrap();
        for (p, q) in img.iter().zip(gnd.iter()) {
            let m = h.apply(*p).unwrap();
            assert!(m.dist(*q) < 1e-9, "{m:?} vs {q:?}");
        }
        let inv = h.inverse().unwrap();
        for p in [
            Point::new(950.0, 700.0),
            Point::new(600.0, 950.0),
            Point::new(1000.0, 450.0),
        ] {
            let back = inv.apply(h.apply(p).unwrap()).unwrap();
            assert!(back.dist(p) < 1e-6, "{back:?} vs {p:?}");
        }
        // The middle of the image trapezoid's bottom edge is the middle of
        // the ground rectangle's bottom edge (a projective map keeps it on
        // the line, and this edge is parallel to the horizon).
        let mid = h.apply(Point::new(950.0, 1000.0)).unwrap();
        assert!(mid.dist(Point::new(3.5, 0.0)) < 1e-9);
    }

    #[test]
    fn rejects_degenerate_input() {
        let gnd = pts([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]);
        let line = pts([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [5.0, 0.0]]);
        assert!(matches!(
            Homography::from_points(&line, &gnd),
            Err(HomographyError::Collinear(0, 1, 2, "source"))
        ));
        let repeated = pts([[0.0, 0.0], [0.0, 0.0], [2.0, 2.0], [5.0, 0.0]]);
        assert!(Homography::from_points(&repeated, &gnd).is_err());
        let nan = pts([[f64::NAN, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]);
        assert_eq!(
            Homography::from_points(&nan, &gnd),
            Err(HomographyError::NotFinite(0))
        );
    }
}
