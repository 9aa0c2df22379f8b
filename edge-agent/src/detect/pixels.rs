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
