//! OpenCV views of a frame's pixels, whatever their layout.
//!
//! A camera's decoded pictures stay in the decoder's 4:2:0 YUV
//! (`capture::PixelLayout`): the hot path converts only what it uses. The
//! detector's tile is scaled plane by plane to the model's size and only
//! then turned into BGR ([`region_bgr`]: at 1080p about a tenth of the
//! pixels a whole-frame conversion touches); the static gate's thumbnail
//! is the luma plane alone ([`grey_thumbnail`]). Whoever needs the whole
//! picture in BGR — stills, plate crops, the clip, MOG2 — gets it from
//! [`frame_mat`]: a view of a BGR frame's own bytes, or one conversion of
//! a YUV one.

use super::{DetectError, cv};
use crate::capture::{Frame, PixelLayout, Plane, Yuv420};
use opencv::boxed_ref::BoxedRef;
use opencv::core::{self, CV_8UC1, CV_8UC2, CV_8UC3, Mat, Rect, Size, Vector};
use opencv::imgproc;
use opencv::prelude::*;

/// Scratch matrices for the plane-by-plane conversion, reused between
/// frames so a steady stream allocates nothing.
#[derive(Default)]
pub struct YuvScratch {
    y: Mat,
    u: Mat,
    v: Mat,
    uv: Mat,
    yuv: Mat,
}

fn bad(frame: &Frame) -> DetectError {
    DetectError::BadFrame {
        width: frame.width,
        height: frame.height,
    }
}

/// A `rows` × `cols` matrix of `typ` over `plane` of the frame's bytes,
/// without copying.
fn plane_mat(
    frame: &Frame,
    plane: Plane,
    rows: i32,
    cols: i32,
    typ: i32,
) -> Result<BoxedRef<'_, Mat>, DetectError> {
    let data = frame.data();
    let channels = if typ == CV_8UC3 {
        3
    } else if typ == CV_8UC2 {
        2
    } else {
        1
    };
    let row = cols as usize * channels;
    let end = plane
        .stride
        .checked_mul(rows.max(1) as usize - 1)
        .and_then(|v| v.checked_add(row))
        .and_then(|v| v.checked_add(plane.offset));
    if rows <= 0 || cols <= 0 || plane.stride < row || end.is_none_or(|e| e > data.len()) {
        return Err(bad(frame));
    }
    // SAFETY: the header points into `data` from `plane.offset`, which the
    // frame keeps alive and immutable for as long as the returned BoxedRef
    // borrows `frame`; rows × stride from the offset was checked to lie
    // inside the slice above, and OpenCV only reads through it.
    let m = unsafe {
        Mat::new_rows_cols_with_data_unsafe(
            rows,
            cols,
            typ,
            data.as_ptr().add(plane.offset).cast_mut().cast(),
            plane.stride,
        )
    }
    .map_err(cv("wrapping a frame"))?;
    Ok(BoxedRef::from(m))
}

/// The chroma rectangle under `rect` of the luma plane (half size, the
/// half samples at the edges included).
fn chroma_rect(rect: Rect) -> Rect {
    let (x0, y0) = (rect.x / 2, rect.y / 2);
    let (x1, y1) = (
        (rect.x + rect.width + 1) / 2,
        (rect.y + rect.height + 1) / 2,
    );
    Rect::new(x0, y0, (x1 - x0).max(1), (y1 - y0).max(1))
}

/// `rect` of a YUV frame scaled to `size`, as BGR into `out`.
fn yuv_region_bgr(
    frame: &Frame,
    yuv: &Yuv420,
    rect: Rect,
    size: Size,
    out: &mut Mat,
    s: &mut YuvScratch,
) -> Result<(), DetectError> {
    let (w, h) = (frame.width as i32, frame.height as i32);
    let (cw, ch) = ((w + 1) / 2, (h + 1) / 2);
    let resize = |src: &BoxedRef<'_, Mat>, r: Rect, dst: &mut Mat| {
        let roi = Mat::roi(src, r).map_err(cv("cutting a region"))?;
        imgproc::resize(&roi, dst, size, 0.0, 0.0, imgproc::INTER_LINEAR)
            .map_err(cv("scaling a region"))
    };
    let luma = plane_mat(frame, yuv.y, h, w, CV_8UC1)?;
    resize(&luma, rect, &mut s.y)?;
    let crect = chroma_rect(rect);
    if yuv.chroma_step == 2 {
        let uv = plane_mat(frame, yuv.u, ch, cw, CV_8UC2)?;
        resize(&uv, crect, &mut s.uv)?;
        let mut parts = Vector::<Mat>::new();
        core::split(&s.uv, &mut parts).map_err(cv("splitting chroma"))?;
        s.u = parts.get(0).map_err(cv("splitting chroma"))?;
        s.v = parts.get(1).map_err(cv("splitting chroma"))?;
    } else {
        let u = plane_mat(frame, yuv.u, ch, cw, CV_8UC1)?;
        resize(&u, crect, &mut s.u)?;
        let v = plane_mat(frame, yuv.v, ch, cw, CV_8UC1)?;
        resize(&v, crect, &mut s.v)?;
    }
    let mut planes = Vector::<Mat>::with_capacity(3);
    planes.push(std::mem::take(&mut s.y));
    planes.push(std::mem::take(&mut s.u));
    planes.push(std::mem::take(&mut s.v));
    core::merge(&planes, &mut s.yuv).map_err(cv("joining the planes"))?;
    // Give the scratch planes back (their buffers are reused next frame).
    let mut planes = planes.into_iter();
    s.y = planes.next().unwrap_or_default();
    s.u = planes.next().unwrap_or_default();
    s.v = planes.next().unwrap_or_default();
    let m = yuv.matrix.affine_bgr();
    let affine = Mat::from_slice_2d(&m).map_err(cv("the colour matrix"))?;
    core::transform(&s.yuv, out, &affine).map_err(cv("converting to BGR"))
}

/// `rect` of the frame scaled to `size` (bilinear), as BGR into `out`.
pub fn region_bgr(
    frame: &Frame,
    rect: Rect,
    size: Size,
    out: &mut Mat,
    scratch: &mut YuvScratch,
) -> Result<(), DetectError> {
    let inside = rect.x >= 0
        && rect.y >= 0
        && rect.width > 0
        && rect.height > 0
        && rect.x + rect.width <= frame.width as i32
        && rect.y + rect.height <= frame.height as i32;
    if !inside || size.width <= 0 || size.height <= 0 {
        return Err(bad(frame));
    }
    match frame.layout {
        PixelLayout::Bgr { stride } => {
            let whole = bgr_view(frame, stride)?;
            let roi = Mat::roi(&whole, rect).map_err(cv("cutting a region"))?;
            imgproc::resize(&roi, out, size, 0.0, 0.0, imgproc::INTER_LINEAR)
                .map_err(cv("scaling a region"))
        }
        PixelLayout::Yuv420(yuv) => yuv_region_bgr(frame, &yuv, rect, size, out, scratch),
    }
}

/// The frame's grey levels averaged down to `size` (area interpolation)
/// into `out`: luma on the 0–255 scale whatever the layout.
pub fn grey_thumbnail(
    frame: &Frame,
    size: Size,
    out: &mut Mat,
    scratch: &mut Mat,
) -> Result<(), DetectError> {
    let (w, h) = (frame.width as i32, frame.height as i32);
    match frame.layout {
        PixelLayout::Bgr { stride } => {
            let whole = bgr_view(frame, stride)?;
            imgproc::resize(&whole, scratch, size, 0.0, 0.0, imgproc::INTER_AREA)
                .map_err(cv("downscaling"))?;
            imgproc::cvt_color_def(scratch, out, imgproc::COLOR_BGR2GRAY)
                .map_err(cv("grey thumbnail"))
        }
        PixelLayout::Yuv420(yuv) => {
            let luma = plane_mat(frame, yuv.y, h, w, CV_8UC1)?;
            if yuv.matrix.full_range {
                imgproc::resize(&luma, out, size, 0.0, 0.0, imgproc::INTER_AREA)
                    .map_err(cv("downscaling"))
            } else {
                imgproc::resize(&luma, scratch, size, 0.0, 0.0, imgproc::INTER_AREA)
                    .map_err(cv("downscaling"))?;
                // Video range (16–235) to the 0–255 of a grey conversion.
                let k = 255.0 / 219.0;
                scratch
                    .convert_to(out, -1, k, -16.0 * k)
                    .map_err(cv("grey thumbnail"))
            }
        }
    }
}

fn bgr_view(frame: &Frame, stride: usize) -> Result<BoxedRef<'_, Mat>, DetectError> {
    plane_mat(
        frame,
        Plane { offset: 0, stride },
        frame.height as i32,
        frame.width as i32,
        CV_8UC3,
    )
}

/// The whole frame as BGR: a view of a BGR frame's own bytes (no copy), or
/// a YUV frame converted once.
pub fn frame_mat(frame: &Frame) -> Result<BoxedRef<'_, Mat>, DetectError> {
    match frame.layout {
        PixelLayout::Bgr { stride } => bgr_view(frame, stride),
        PixelLayout::Yuv420(yuv) => {
            let (w, h) = (frame.width as i32, frame.height as i32);
            let mut out = Mat::default();
            let whole = Rect::new(0, 0, w, h);
            yuv_region_bgr(
                frame,
                &yuv,
                whole,
                Size::new(w, h),
                &mut out,
                &mut YuvScratch::default(),
            )?;
            Ok(BoxedRef::from(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::YuvMatrix;
    use time::OffsetDateTime;

    const W: u32 = 64;
    const H: u32 = 48;

    /// One picture (a luma ramp, chroma varying both ways) as I420 and as
    /// NV12, the two layouts decoders hand over.
    fn both() -> (Frame, Frame) {
        let (w, h, cw, ch) = (W as usize, H as usize, W as usize / 2, H as usize / 2);
        let luma: Vec<u8> = (0..w * h).map(|i| (16 + (i % w) * 3) as u8).collect();
        let u = |x: usize, _y: usize| (64 + x * 4) as u8;
        let v = |_x: usize, y: usize| (200 - y * 5) as u8;
        let mut i420 = luma.clone();
        i420.extend((0..cw * ch).map(|i| u(i % cw, i / cw)));
        i420.extend((0..cw * ch).map(|i| v(i % cw, i / cw)));
        let mut nv12 = luma;
        for i in 0..cw * ch {
            nv12.push(u(i % cw, i / cw));
            nv12.push(v(i % cw, i / cw));
        }
        let plane = |offset, stride| Plane { offset, stride };
        let (y_size, c_size) = (w * h, cw * ch);
        let layout = |u, v, step| {
            PixelLayout::Yuv420(Yuv420 {
                y: plane(0, w),
                u,
                v,
                chroma_step: step,
                matrix: YuvMatrix::BT601,
            })
        };
        let t = OffsetDateTime::UNIX_EPOCH;
        let a = layout(plane(y_size, cw), plane(y_size + c_size, cw), 1);
        let b = layout(plane(y_size, w), plane(y_size + 1, w), 2);
        (
            Frame::from_raw(0, t, W, H, a, i420).unwrap(),
            Frame::from_raw(0, t, W, H, b, nv12).unwrap(),
        )
    }

    fn bytes(m: &Mat) -> Vec<u8> {
        m.try_clone().unwrap().data_bytes().unwrap().to_vec()
    }

    #[test]
    fn i420_and_nv12_of_one_picture_convert_alike() {
        let (i420, nv12) = both();
        let (a, b) = (frame_mat(&i420).unwrap(), frame_mat(&nv12).unwrap());
        assert_eq!(
            bytes(&a.try_clone().unwrap()),
            bytes(&b.try_clone().unwrap())
        );
        let tile = Rect::new(10, 4, 40, 40);
        let (mut x, mut y) = (Mat::default(), Mat::default());
        let mut s = YuvScratch::default();
        region_bgr(&i420, tile, Size::new(20, 20), &mut x, &mut s).unwrap();
        region_bgr(&nv12, tile, Size::new(20, 20), &mut y, &mut s).unwrap();
        assert_eq!(bytes(&x), bytes(&y));
        // The pixel at (2, 2) is the matrix applied to its own samples.
        let m = a.try_clone().unwrap();
        let px = bytes(&m);
        let at = (2 * W as usize + 2) * 3;
        let (r, g, b) = YuvMatrix::BT601.rgb(16 + 6, 64 + 4, 200 - 5);
        assert!(
            px[at].abs_diff(b) <= 1 && px[at + 1].abs_diff(g) <= 1 && px[at + 2].abs_diff(r) <= 1
        );
    }

    #[test]
    fn a_region_outside_the_frame_is_refused() {
        let (i420, _) = both();
        let mut out = Mat::default();
        let mut s = YuvScratch::default();
        for r in [
            Rect::new(-1, 0, 10, 10),
            Rect::new(60, 0, 10, 10),
            Rect::new(0, 0, 0, 10),
        ] {
            assert!(region_bgr(&i420, r, Size::new(8, 8), &mut out, &mut s).is_err());
        }
        assert!(
            Frame::from_raw(
                0,
                OffsetDateTime::UNIX_EPOCH,
                W,
                H,
                i420.layout,
                vec![0; 100]
            )
            .is_none(),
            "bytes that do not fit the layout make no frame"
        );
    }
}
