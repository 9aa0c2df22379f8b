//! What a frame's bytes are: packed BGR, or the decoder's own 4:2:0 YUV.
//!
//! An H.264/H.265 camera's pictures come out of the decoder as 4:2:0 YUV
//! (I420 from software decoders, NV12 from most hardware ones). Converting
//! a whole 1080p picture to BGR costs about 3 ms on one core, a tenth of an
//! analysed frame, for pixels nobody looks at whole: the detector wants a
//! downscaled copy of two tiles, the static gate a grey thumbnail, the
//! signal reader a few lamp rectangles. So those frames keep the decoder's
//! layout, and each consumer converts only what it uses (`detect::pixels`
//! with OpenCV, the lamp reader pixel by pixel with [`YuvMatrix`]); stills
//! and plate crops convert the whole frame once, off the hot path.
//! Sources decoded straight away (MJPEG, raw V4L2, synthetic scenes) stay
//! BGR. Nothing here uses OpenCV.

/// Where one plane of a planar picture lies in the frame's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plane {
    /// Byte offset of the plane's first row.
    pub offset: usize,
    /// Bytes from one row to the next.
    pub stride: usize,
}

/// A 4:2:0 YUV picture: luma at full size, the two chroma planes at half
/// size each way (rounded up), separate (I420) or interleaved (NV12).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Yuv420 {
    pub y: Plane,
    /// The U samples; for NV12 the interleaved plane itself.
    pub u: Plane,
    /// The V samples; for NV12 one byte after `u`, same stride.
    pub v: Plane,
    /// Bytes from one chroma sample to the next in a row: 1 (I420) or 2
    /// (NV12).
    pub chroma_step: usize,
    /// How the samples map to RGB.
    pub matrix: YuvMatrix,
}

/// How a frame's bytes are laid out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PixelLayout {
    /// Blue, green, red, a byte each; rows `stride` bytes apart.
    Bgr { stride: usize },
    /// The decoder's 4:2:0 YUV.
    Yuv420(Yuv420),
}

impl PixelLayout {
    /// Why `len` bytes cannot hold a `width` × `height` picture laid out
    /// like this, if they cannot.
    pub fn problem(&self, len: usize, width: u32, height: u32) -> Option<&'static str> {
        let (w, h) = (width as usize, height as usize);
        if w == 0 || h == 0 {
            return Some("empty frame");
        }
        let fits = |p: Plane, row: usize, rows: usize| {
            p.stride >= row
                && p.stride
                    .checked_mul(rows - 1)
                    .and_then(|v| v.checked_add(row))
                    .and_then(|v| v.checked_add(p.offset))
                    .is_some_and(|end| end <= len)
        };
        match *self {
            PixelLayout::Bgr { stride } => (!fits(Plane { offset: 0, stride }, 3 * w, h))
                .then_some("BGR rows beyond the buffer"),
            PixelLayout::Yuv420(yuv) => {
                let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
                let chroma_row = (cw - 1) * yuv.chroma_step + 1;
                if !(1..=2).contains(&yuv.chroma_step) {
                    Some("chroma samples neither planar nor interleaved")
                } else if !fits(yuv.y, w, h) {
                    Some("luma plane beyond the buffer")
                } else if !fits(yuv.u, chroma_row, ch) || !fits(yuv.v, chroma_row, ch) {
                    Some("chroma plane beyond the buffer")
                } else {
                    None
                }
            }
        }
    }
}

/// Luma/chroma to RGB: the colour matrix (BT.601, BT.709, BT.2020) and
/// whether the samples use the full 0–255 range or the video range
/// (luma 16–235, chroma 16–240) most cameras send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YuvMatrix {
    /// Red and blue luma weights of the matrix.
    pub kr: f32,
    pub kb: f32,
    pub full_range: bool,
}

impl YuvMatrix {
    pub const BT601: YuvMatrix = YuvMatrix {
        kr: 0.299,
        kb: 0.114,
        full_range: false,
    };
    pub const BT709: YuvMatrix = YuvMatrix {
        kr: 0.2126,
        kb: 0.0722,
        full_range: false,
    };
    pub const BT2020: YuvMatrix = YuvMatrix {
        kr: 0.2627,
        kb: 0.0593,
        full_range: false,
    };

    /// What a picture of `height` lines that says nothing of its
    /// colorimetry most likely uses: BT.709 for HD, BT.601 below (the
    /// rule GStreamer and the codecs' specifications follow), video range.
    pub fn default_for(height: u32) -> YuvMatrix {
        if height > 576 {
            YuvMatrix::BT709
        } else {
            YuvMatrix::BT601
        }
    }

    /// The conversion as an affine map of `(Y, U, V, 1)` to `(B, G, R)`,
    /// row by row (OpenCV's `transform` takes it as it is).
    pub fn affine_bgr(&self) -> [[f32; 4]; 3] {
        let (kr, kb) = (self.kr, self.kb);
        let kg = 1.0 - kr - kb;
        let (sy, sc, y0) = if self.full_range {
            (1.0, 1.0, 0.0)
        } else {
            (255.0 / 219.0, 255.0 / 224.0, 16.0)
        };
        let b_u = 2.0 * (1.0 - kb) * sc;
        let r_v = 2.0 * (1.0 - kr) * sc;
        let g_u = -2.0 * (1.0 - kb) * kb / kg * sc;
        let g_v = -2.0 * (1.0 - kr) * kr / kg * sc;
        let base = -y0 * sy;
        [
            [sy, b_u, 0.0, base - 128.0 * b_u],
            [sy, g_u, g_v, base - 128.0 * (g_u + g_v)],
            [sy, 0.0, r_v, base - 128.0 * r_v],
        ]
    }

    /// One sample triple as `(r, g, b)`.
    pub fn rgb(&self, y: u8, u: u8, v: u8) -> (u8, u8, u8) {
        let m = self.affine_bgr();
        let px = [f32::from(y), f32::from(u), f32::from(v)];
        let ch = |row: &[f32; 4]| {
            (row[0] * px[0] + row[1] * px[1] + row[2] * px[2] + row[3])
                .round()
                .clamp(0.0, 255.0) as u8
        };
        (ch(&m[2]), ch(&m[1]), ch(&m[0]))
    }
}

impl Yuv420 {
    /// The pixel at `(x, y)` of `data` as `(r, g, b)`, `None` outside the
    /// buffer.
    pub fn rgb_at(&self, data: &[u8], x: usize, y: usize) -> Option<(u8, u8, u8)> {
        let luma = *data.get(self.y.offset + y * self.y.stride + x)?;
        let c = |p: Plane| data.get(p.offset + (y / 2) * p.stride + (x / 2) * self.chroma_step);
        Some(self.matrix.rgb(luma, *c(self.u)?, *c(self.v)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_stays_grey_and_the_primaries_come_back() {
        for m in [YuvMatrix::BT601, YuvMatrix::BT709, YuvMatrix::BT2020] {
            // Video-range black, white and mid grey.
            assert_eq!(m.rgb(16, 128, 128), (0, 0, 0));
            assert_eq!(m.rgb(235, 128, 128), (255, 255, 255));
            let (r, g, b) = m.rgb(126, 128, 128);
            assert!(r == g && g == b && (127..=129).contains(&r));
        }
        // BT.709 video-range red (R'G'B' 255, 0, 0): Y 63, Cb 102, Cr 240.
        let (r, g, b) = YuvMatrix::BT709.rgb(63, 102, 240);
        assert!(r >= 253 && g <= 2 && b <= 2, "{r} {g} {b}");
        // BT.601 full-range green (0, 255, 0): Y 150, Cb 44, Cr 21.
        let full = YuvMatrix {
            full_range: true,
            ..YuvMatrix::BT601
        };
        let (r, g, b) = full.rgb(150, 44, 21);
        assert!(r <= 2 && g >= 253 && b <= 2, "{r} {g} {b}");
    }

    #[test]
    fn a_layout_beyond_its_buffer_is_refused() {
        let i420 = |len: usize| {
            PixelLayout::Yuv420(Yuv420 {
                y: Plane {
                    offset: 0,
                    stride: 4,
                },
                u: Plane {
                    offset: 16,
                    stride: 2,
                },
                v: Plane {
                    offset: 20,
                    stride: 2,
                },
                chroma_step: 1,
                matrix: YuvMatrix::BT601,
            })
            .problem(len, 4, 4)
        };
        assert_eq!(i420(24), None);
        assert!(i420(23).is_some());
        assert!(PixelLayout::Bgr { stride: 12 }.problem(47, 4, 4).is_some());
        assert_eq!(PixelLayout::Bgr { stride: 12 }.problem(48, 4, 4), None);
        assert!(PixelLayout::Bgr { stride: 2 }.problem(480, 4, 4).is_some());
        assert!(PixelLayout::Bgr { stride: 12 }.problem(48, 0, 4).is_some());
    }
}
