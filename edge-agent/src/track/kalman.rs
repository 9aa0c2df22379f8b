//! The constant-velocity Kalman filter of one track, as in SORT/ByteTrack:
//! state `(cx, cy, a, h, vcx, vcy, va, vh)` with `a = w / h`, measurement
//! `(cx, cy, a, h)`, noise proportional to the box height. Fixed-size
//! arrays, no allocation; an update that would make the state non-finite is
//! refused and the caller drops the track.

// Matrix code reads best with explicit indices.
#![allow(clippy::needless_range_loop)]

const STD_POS: f64 = 1.0 / 20.0;
const STD_VEL: f64 = 1.0 / 160.0;

type Vec8 = [f64; 8];
type Mat8 = [[f64; 8]; 8];
type Mat4 = [[f64; 4]; 4];

/// Filter state of one track.
#[derive(Debug, Clone)]
pub(crate) struct Kalman {
    x: Vec8,
    p: Mat8,
}

impl Kalman {
    /// Starts from a measurement `(cx, cy, a, h)`, velocities unknown.
    pub(crate) fn new(z: [f64; 4]) -> Self {
        let h = z[3];
        let sd = [
            2.0 * STD_POS * h,
            2.0 * STD_POS * h,
            1e-2,
            2.0 * STD_POS * h,
            10.0 * STD_VEL * h,
            10.0 * STD_VEL * h,
            1e-5,
            10.0 * STD_VEL * h,
        ];
        let mut p = [[0.0; 8]; 8];
        for i in 0..8 {
            p[i][i] = sd[i] * sd[i];
        }
        let mut x = [0.0; 8];
        x[..4].copy_from_slice(&z);
        Self { x, p }
    }

    /// The current box estimate `(cx, cy, a, h)`.
    pub(crate) fn measurement(&self) -> [f64; 4] {
        [self.x[0], self.x[1], self.x[2], self.x[3]]
    }

    /// Advances the state by `dt` frames.
    pub(crate) fn predict(&mut self, dt: f64) {
        for i in 0..4 {
            self.x[i] += dt * self.x[i + 4];
        }
        // P = F P F^T with F = [[I, dt I], [0, I]].
        let p = &mut self.p;
        for r in 0..8 {
            for c in 0..4 {
                p[r][c] += dt * p[r][c + 4];
            }
        }
        for r in 0..4 {
            for c in 0..8 {
                p[r][c] += dt * p[r + 4][c];
            }
        }
        let h = self.x[3].abs().max(1.0);
        let q = [
            STD_POS * h,
            STD_POS * h,
            1e-2,
            STD_POS * h,
            STD_VEL * h,
            STD_VEL * h,
            1e-5,
            STD_VEL * h,
        ];
        for i in 0..8 {
            p[i][i] += dt * q[i] * q[i];
        }
    }

    /// Corrects with a measurement; `false` (state unchanged) if the result
    /// would not be finite.
    pub(crate) fn update(&mut self, z: [f64; 4]) -> bool {
        let h = self.x[3].abs().max(1.0);
        let r = [STD_POS * h, STD_POS * h, 1e-1, STD_POS * h];
        let mut s: Mat4 = [[0.0; 4]; 4];
        for i in 0..4 {
            for j in 0..4 {
                s[i][j] = self.p[i][j];
            }
            s[i][i] += r[i] * r[i];
        }
        let Some(si) = invert4(s) else {
            return false;
        };
        // K = P H^T S^-1 : 8x4.
        let mut k = [[0.0; 4]; 8];
        for (row, krow) in k.iter_mut().enumerate() {
            for (c, kv) in krow.iter_mut().enumerate() {
                *kv = (0..4).map(|m| self.p[row][m] * si[m][c]).sum();
            }
        }
        let y = [
            z[0] - self.x[0],
            z[1] - self.x[1],
            z[2] - self.x[2],
            z[3] - self.x[3],
        ];
        let mut x = self.x;
        for (row, xv) in x.iter_mut().enumerate() {
            *xv += (0..4).map(|c| k[row][c] * y[c]).sum::<f64>();
        }
        // P = P - K H P.
        let mut p = self.p;
        for (row, prow) in p.iter_mut().enumerate() {
            for (c, pv) in prow.iter_mut().enumerate() {
                *pv -= (0..4).map(|m| k[row][m] * self.p[m][c]).sum::<f64>();
            }
        }
        for i in 0..8 {
            for j in i + 1..8 {
                let avg = (p[i][j] + p[j][i]) / 2.0;
                p[i][j] = avg;
                p[j][i] = avg;
            }
        }
        if x.iter().all(|v| v.is_finite()) && p.iter().flatten().all(|v| v.is_finite()) {
            self.x = x;
            self.p = p;
            true
        } else {
            false
        }
    }

    /// Whether the state is still usable.
    pub(crate) fn is_finite(&self) -> bool {
        self.x.iter().all(|v| v.is_finite())
    }
}

fn invert4(mut a: Mat4) -> Option<Mat4> {
    let mut inv: Mat4 = [[0.0; 4]; 4];
    for (i, row) in inv.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for col in 0..4 {
        let mut piv = col;
        for r in col + 1..4 {
            if a[r][col].abs() > a[piv][col].abs() {
                piv = r;
            }
        }
        let pv = a[piv][col];
        if !pv.is_finite() || pv.abs() < 1e-12 {
            return None;
        }
        a.swap(col, piv);
        inv.swap(col, piv);
        for c in 0..4 {
            a[col][c] /= pv;
            inv[col][c] /= pv;
        }
        for r in 0..4 {
            if r != col {
                let f = a[r][col];
                for c in 0..4 {
                    a[r][c] -= f * a[col][c];
                    inv[r][c] -= f * inv[col][c];
                }
            }
        }
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_constant_velocity() {
        let mut kf = Kalman::new([100.0, 100.0, 0.5, 80.0]);
        for i in 1..=30 {
            kf.predict(1.0);
            assert!(kf.update([100.0 + 5.0 * f64::from(i), 100.0, 0.5, 80.0]));
        }
        kf.predict(1.0);
        let m = kf.measurement();
        // Position 100 + 5 * 31 = 255 once the velocity is learnt.
        assert!((m[0] - 255.0).abs() < 1.0, "{m:?}");
        assert!((m[1] - 100.0).abs() < 0.5);
    }

    #[test]
    fn refuses_non_finite_measurement() {
        let mut kf = Kalman::new([10.0, 10.0, 1.0, 10.0]);
        kf.predict(1.0);
        assert!(!kf.update([f64::NAN, 0.0, 1.0, 10.0]));
        assert!(kf.is_finite());
    }
}
