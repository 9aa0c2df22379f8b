//! Image files in, BGR pixels out: every camera still or plate crop enters
//! through here and is checked before it is decoded.
//!
//! The file's size is checked first, then the dimensions from its header,
//! against configured limits, so a decompression bomb is refused before any
//! pixel buffer is allocated. Decoding (JPEG, PNG) uses the `image` crate,
//! which reports corrupt and truncated files as errors; the pixels are then
//! handed to OpenCV as an 8-bit BGR `Mat` for the hot path.

use std::io::Cursor;
use std::path::Path;

use image::{ImageReader, Limits};
use opencv::core::{CV_8UC3, Mat, MatTraitConst, MatTraitConstManual, MatTraitManual, Scalar};

use crate::error::{CvContext, Result, VisionError};

/// Limits on what an input image may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Most pixels (width × height) an image may have.
    pub max_pixels: u64,
    /// Largest file accepted, in bytes.
    pub max_bytes: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        // 8 MP cameras are the largest in service; leave room for 12 MP stills.
        ImageLimits {
            max_pixels: 40_000_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Reads and decodes the image file at `path` into an 8-bit BGR `Mat`.
pub fn load_bgr(path: &Path, limits: &ImageLimits) -> Result<Mat> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| VisionError::Image {
        path: name.clone(),
        message: e.to_string(),
    })?;
    if !meta.is_file() {
        return Err(VisionError::Image {
            path: name,
            message: "not a regular file".to_string(),
        });
    }
    if meta.len() > limits.max_bytes {
        return Err(VisionError::Image {
            path: name,
            message: format!(
                "file of {} bytes exceeds the limit of {} bytes",
                meta.len(),
                limits.max_bytes
            ),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| VisionError::Image {
        path: name.clone(),
        message: e.to_string(),
    })?;
    decode_bgr(&bytes, &name, limits)
}

/// Decodes an encoded image (`name` is used in errors) into an 8-bit BGR `Mat`.
pub fn decode_bgr(bytes: &[u8], name: &str, limits: &ImageLimits) -> Result<Mat> {
    let err = |message: String| VisionError::Image {
        path: name.to_string(),
        message,
    };
    if bytes.is_empty() {
        return Err(err("empty file".to_string()));
    }
    if bytes.len() as u64 > limits.max_bytes {
        return Err(err(format!(
            "{} bytes exceeds the limit of {} bytes",
            bytes.len(),
            limits.max_bytes
        )));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?;
    let format = reader
        .format()
        .ok_or_else(|| err("not a supported image (JPEG or PNG)".to_string()))?;
    let (width, height) = match header_dimensions(bytes) {
        Some(d) => d,
        None => reader
            .into_dimensions()
            .map_err(|e| err(format!("cannot read the header: {e}")))?,
    };
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(VisionError::TooLarge {
            path: name.to_string(),
            width: width.into(),
            height: height.into(),
            limit: limits.max_pixels,
        });
    }
    if width == 0 || height == 0 {
        return Err(err(format!("has no pixels ({width}x{height})")));
    }
    if format == image::ImageFormat::Jpeg && !jpeg_has_end(bytes) {
        // The decoder fills a cut-off scan with grey; a partial plate must not
        // be read as if it were whole.
        return Err(err("truncated JPEG (no end-of-image marker)".to_string()));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?;
    let mut lim = Limits::default();
    lim.max_image_width = Some(width);
    lim.max_image_height = Some(height);
    lim.max_alloc = Some(pixels.saturating_mul(8).max(1 << 20));
    reader.limits(lim);
    let img = reader
        .decode()
        .map_err(|e| err(format!("cannot decode: {e}")))?;
    rgb_to_bgr_mat(img.to_rgb8().as_raw(), width, height).map_err(|e| match e {
        VisionError::OpenCv { message, .. } => err(message),
        other => other,
    })
}

/// Width and height from a PNG's IHDR or a JPEG's start-of-frame marker,
/// read from the first bytes without decoding; `None` if not found.
pub fn header_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    const PNG: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    if bytes.len() >= 24 && bytes[..8] == PNG && &bytes[12..16] == b"IHDR" {
        let w = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
        let h = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
        return Some((w, h));
    }
    if bytes.len() < 4 || bytes[0] != 0xff || bytes[1] != 0xd8 {
        return None;
    }
    // Walk the JPEG marker segments up to the first start-of-frame.
    let mut i = 2usize;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xff {
            return None;
        }
        let marker = bytes[i + 1];
        if marker == 0xff {
            i += 1;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        let is_sof = matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc);
        if is_sof {
            let s = bytes.get(i + 5..i + 9)?;
            let h = u32::from(u16::from_be_bytes([s[0], s[1]]));
            let w = u32::from(u16::from_be_bytes([s[2], s[3]]));
            return Some((w, h));
        }
        if marker == 0xda || len < 2 {
            return None;
        }
        i += 2 + len;
    }
    None
}

/// Whether a JPEG ends with its end-of-image marker (trailing zero padding allowed).
fn jpeg_has_end(bytes: &[u8]) -> bool {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    end >= 2 && bytes[end - 2] == 0xff && bytes[end - 1] == 0xd9
}

/// An 8-bit BGR `Mat` from packed RGB bytes.
pub fn rgb_to_bgr_mat(rgb: &[u8], width: u32, height: u32) -> Result<Mat> {
    let (w, h) = (
        i32::try_from(width)
            .map_err(|_| VisionError::Config(format!("width {width} too large")))?,
        i32::try_from(height)
            .map_err(|_| VisionError::Config(format!("height {height} too large")))?,
    );
    if rgb.len() != (width as usize) * (height as usize) * 3 {
        return Err(VisionError::Config(format!(
            "{} bytes is not {width}x{height} RGB",
            rgb.len()
        )));
    }
    let mut mat = Mat::new_rows_cols_with_default(h, w, CV_8UC3, Scalar::all(0.0))
        .cv("allocating an image")?;
    let dst = mat.data_bytes_mut().cv("writing an image")?;
    for (d, s) in dst.chunks_exact_mut(3).zip(rgb.chunks_exact(3)) {
        d[0] = s[2];
        d[1] = s[1];
        d[2] = s[0];
    }
    Ok(mat)
}

/// Width and height of a `Mat`, refusing empty ones (`what` names it).
pub fn checked_size(mat: &Mat, what: &str) -> Result<(i32, i32)> {
    let (w, h) = (mat.cols(), mat.rows());
    if mat.empty() || w <= 0 || h <= 0 {
        return Err(VisionError::Empty {
            what: what.to_string(),
            width: w,
            height: h,
        });
    }
    Ok((w, h))
}

/// A continuous copy of `mat` (ROIs are views with strides), for byte access.
pub fn continuous(mat: &Mat) -> Result<Mat> {
    if mat.is_continuous() {
        mat.try_clone().cv("copying an image")
    } else {
        let mut out = Mat::default();
        mat.copy_to(&mut out).cv("copying an image")?;
        Ok(out)
    }
}

/// Writes a BGR `Mat` as a PNG or JPEG (by extension), for debugging crops.
pub fn save_bgr(mat: &Mat, path: &Path) -> Result<()> {
    let (w, h) = checked_size(mat, "image to save")?;
    let m = continuous(mat)?;
    let bytes = m.data_bytes().cv("reading an image")?;
    let mut rgb = Vec::with_capacity(bytes.len());
    for p in bytes.chunks_exact(3) {
        rgb.extend_from_slice(&[p[2], p[1], p[0]]);
    }
    let img =
        image::RgbImage::from_raw(w as u32, h as u32, rgb).ok_or_else(|| VisionError::Image {
            path: path.display().to_string(),
            message: "pixel buffer does not match its size".to_string(),
        })?;
    img.save(path).map_err(|e| VisionError::Image {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}
