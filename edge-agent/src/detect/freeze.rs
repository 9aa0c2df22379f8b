//! A frozen picture: a camera that goes on sending frames of one picture.
//!
//! A stuck encoder or ISP repeats the same picture while the stream looks
//! healthy (frames arrive, times advance), and the junction is watched by
//! nobody. A quiet scene is not that: a real sensor adds noise, so two real
//! frames always differ by a grey level or so per pixel on average, while a
//! repeated picture differs by nothing (decoded from the same coded
//! picture) or almost nothing (re-encoded, or a clock burnt into a frozen
//! picture: a few hundred changed pixels of two million).
//!
//! [`FreezeWatch`] keeps a sparse grey sample of the picture a frozen run
//! began with (the *anchor*) and compares each analysed frame with it: the
//! mean absolute difference over every sample (each sample's difference
//! counted up to [`DIFF_CAP`] levels, so a clock or caption the camera
//! burns into a frozen picture cannot outweigh the rest) at or under
//! [`FROZEN_MEAN_DIFF`] is the same picture; anything more moves the anchor
//! to the new frame. The same picture for the configured time of the
//! stream is a frozen camera. Comparing with the anchor rather than the
//! previous frame makes a scene that changes slowly (dawn, or a low-bitrate
//! encoder copying still blocks between key frames) add up until it shows.
//!
//! Why not the static-frame gate's thumbnail: it averages 24 × 24 px cells
//! and rounds them to whole levels, which removes exactly the sensor noise
//! that tells a quiet scene from a frozen one (a cell's mean moves by about
//! a twentieth of a level), and it exists only where a site turns the gate
//! on. The samples here are single pixels, every [`STEP`]th each way (about
//! 32 000 at 1080p): tens of microseconds a frame, no OpenCV, no
//! allocation once the first frame was seen.

use crate::capture::{Frame, PixelLayout};
use time::{Duration, OffsetDateTime};

/// Distance between samples, full-frame pixels, each way.
pub const STEP: usize = 8;

/// Mean absolute difference (grey levels, over the whole sample) at or
/// under which two frames are the same picture. Sensor noise of ±2 levels
/// gives about 1.5; a picture decoded again from the same coded picture, 0.
pub const FROZEN_MEAN_DIFF: f64 = 0.25;

/// Most a sample's difference counts, grey levels: sensor noise stays
/// under it, and an overlay changing by hundreds of levels on a frozen
/// picture counts as if by this much (it may cover up to
/// `FROZEN_MEAN_DIFF / DIFF_CAP`, 6 %, of the frame).
pub const DIFF_CAP: u8 = 4;

/// Default of `[health] camera_frozen_s`: how long the same picture lasts
/// before the camera is reported frozen. Minutes, not seconds: an encoder
/// that skips unchanged blocks sends a quiet night scene without noise,
/// and a lone small vehicle changes too little of the picture to count.
pub const DEFAULT_FROZEN_AFTER_S: f64 = 300.0;

/// A frozen picture began or ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FreezeChange {
    /// The picture has not changed since `since` (stream time), which was
    /// at least the watch's limit ago.
    Began { since: OffsetDateTime },
    /// The picture changed again after being frozen for `lasted` (from
    /// the first frame of the same picture to this one).
    Ended { lasted: Duration },
}

/// Whether one camera's picture is frozen (see the module's notes).
#[derive(Debug)]
pub struct FreezeWatch {
    limit: Duration,
    /// The anchor's samples and the size of its frame.
    anchor: Vec<u8>,
    anchor_size: (u32, u32),
    /// Stream time of the anchor frame; `None` before the first frame.
    since: Option<OffsetDateTime>,
    /// The latest frame's samples (swapped into `anchor` when it moves).
    samples: Vec<u8>,
    frozen: bool,
}

impl FreezeWatch {
    /// A watch that calls a picture frozen once it has not changed for
    /// `limit` of stream time (checked at load: `[health] camera_frozen_s`).
    pub fn new(limit: std::time::Duration) -> FreezeWatch {
        FreezeWatch {
            limit: Duration::try_from(limit).unwrap_or(Duration::MAX),
            anchor: Vec::new(),
            anchor_size: (0, 0),
            since: None,
            samples: Vec::new(),
            frozen: false,
        }
    }

    /// Whether the picture is frozen now.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Looks at one analysed frame; says when a frozen picture begins or
    /// ends.
    pub fn observe(&mut self, frame: &Frame) -> Option<FreezeChange> {
        sample_grey(frame, &mut self.samples);
        let size = (frame.width, frame.height);
        let same = self.since.is_some()
            && self.anchor_size == size
            && same_picture(&self.anchor, &self.samples);
        match self.since {
            Some(since) if same => {
                let held = frame.time - since;
                if held < Duration::ZERO {
                    // Time went back (a reconnected stream): count afresh,
                    // the picture still the same.
                    self.since = Some(frame.time);
                    None
                } else if !self.frozen && held >= self.limit {
                    self.frozen = true;
                    Some(FreezeChange::Began { since })
                } else {
                    None
                }
            }
            _ => {
                let ended = match self.since {
                    Some(since) if self.frozen => Some(FreezeChange::Ended {
                        lasted: (frame.time - since).max(Duration::ZERO),
                    }),
                    _ => None,
                };
                std::mem::swap(&mut self.anchor, &mut self.samples);
                self.anchor_size = size;
                self.since = Some(frame.time);
                self.frozen = false;
                ended
            }
        }
    }
}

/// Whether two samples of the same size are one picture.
fn same_picture(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| u64::from(x.abs_diff(y).min(DIFF_CAP)))
        .sum();
    sum as f64 <= FROZEN_MEAN_DIFF * a.len() as f64
}

/// Grey samples of `frame`, every [`STEP`]th pixel each way from the middle
/// of the first step, into `out`: the luma itself of a YUV frame, (B + 2G +
/// R) / 4 of a BGR one.
fn sample_grey(frame: &Frame, out: &mut Vec<u8>) {
    out.clear();
    let (w, h) = (frame.width as usize, frame.height as usize);
    let data = frame.data();
    let first = STEP / 2;
    // Frames were checked against their layout when made; `get` keeps a
    // bad one from panicking all the same.
    match frame.layout {
        PixelLayout::Bgr { stride } => {
            for y in (first.min(h - 1)..h).step_by(STEP) {
                for x in (first.min(w - 1)..w).step_by(STEP) {
                    let i = y * stride + 3 * x;
                    if let Some(p) = data.get(i..i + 3) {
                        let g = (u16::from(p[0]) + 2 * u16::from(p[1]) + u16::from(p[2])) / 4;
                        out.push(g as u8);
                    }
                }
            }
        }
        PixelLayout::Yuv420(yuv) => {
            for y in (first.min(h - 1)..h).step_by(STEP) {
                let row = yuv.y.offset + y * yuv.y.stride;
                for x in (first.min(w - 1)..w).step_by(STEP) {
                    if let Some(&v) = data.get(row + x) {
                        out.push(v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    const W: u32 = 320;
    const H: u32 = 240;

    /// A street scene (a gradient and a dark car at `car_x`) at `ms`, each
    /// pixel off by up to `noise` grey levels.
    fn frame(ms: i64, car_x: u32, noise: i16, rng: &mut rand::rngs::StdRng) -> Frame {
        let mut bgr = Vec::with_capacity((W * H * 3) as usize);
        for y in 0..H {
            for x in 0..W {
                let base = if (car_x..car_x + 40).contains(&x) && (100..130).contains(&y) {
                    40
                } else {
                    90 + (x / 4 + y / 8) as i16
                };
                let v = if noise > 0 {
                    base + rng.gen_range(-noise..=noise)
                } else {
                    base
                };
                let v = v.clamp(0, 255) as u8;
                bgr.extend_from_slice(&[v, v, v]);
            }
        }
        let t = OffsetDateTime::UNIX_EPOCH + Duration::milliseconds(ms);
        Frame::from_bgr(0, t, W, H, bgr).expect("a valid synthetic frame")
    }

    fn watch() -> FreezeWatch {
        FreezeWatch::new(std::time::Duration::from_secs(30))
    }

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    #[test]
    fn the_same_picture_for_longer_than_the_limit_is_frozen_and_said_once() {
        let mut w = watch();
        let mut r = rng();
        let picture = frame(0, 100, 0, &mut r);
        let mut began = Vec::new();
        // Ten frames a second for 40 s, all the one picture.
        for i in 0..400 {
            let f = Frame::from_bgr(
                i,
                picture.time + Duration::milliseconds(100 * i as i64),
                W,
                H,
                picture.data().to_vec(),
            )
            .unwrap();
            if let Some(c) = w.observe(&f) {
                began.push((i, c));
            }
            assert_eq!(w.is_frozen(), i >= 300, "frame {i}");
        }
        assert_eq!(
            began,
            vec![(
                300,
                FreezeChange::Began {
                    since: picture.time
                }
            )]
        );
    }

    #[test]
    fn a_quiet_scene_with_sensor_noise_is_never_frozen() {
        let mut w = FreezeWatch::new(std::time::Duration::from_secs(5));
        let mut r = rng();
        // Nothing moves for a minute; only the sensor's ±2 levels.
        for i in 0..600 {
            let f = frame(100 * i, 100, 2, &mut r);
            assert_eq!(w.observe(&f), None, "frame {i}");
            assert!(!w.is_frozen());
        }
    }

    #[test]
    fn a_frozen_picture_with_a_clock_burnt_in_is_still_frozen() {
        let mut w = FreezeWatch::new(std::time::Duration::from_secs(5));
        let mut r = rng();
        let picture = frame(0, 100, 2, &mut r);
        let mut frozen_at = None;
        for i in 0..100u32 {
            // A 64 × 12 px on-screen clock whose digits change every frame.
            let mut bgr = picture.data().to_vec();
            for y in 4..16u32 {
                for x in 4..68u32 {
                    let p = ((y * W + x) * 3) as usize;
                    let v = if (x + i) % 3 == 0 { 255 } else { 0 };
                    bgr[p..p + 3].copy_from_slice(&[v, v, v]);
                }
            }
            let t = picture.time + Duration::milliseconds(100 * i64::from(i));
            let f = Frame::from_bgr(i.into(), t, W, H, bgr).unwrap();
            if let Some(FreezeChange::Began { .. }) = w.observe(&f) {
                frozen_at = Some(i);
            }
        }
        assert_eq!(frozen_at, Some(50));
    }

    #[test]
    fn a_frozen_picture_that_changes_again_is_cleared_once() {
        let mut w = FreezeWatch::new(std::time::Duration::from_secs(5));
        let mut r = rng();
        let picture = frame(0, 100, 2, &mut r);
        let mut changes = Vec::new();
        for i in 0..120i64 {
            let t = picture.time + Duration::milliseconds(100 * i);
            // Frozen for 8 s, then the stream recovers: a live, noisy scene
            // whose car drives on.
            let f = if i < 80 {
                Frame::from_bgr(0, t, W, H, picture.data().to_vec()).unwrap()
            } else {
                let mut f = frame(100 * i, 100 + (i as u32 - 80), 2, &mut r);
                f.time = t;
                f
            };
            if let Some(c) = w.observe(&f) {
                changes.push((i, c));
            }
        }
        assert_eq!(
            changes,
            vec![
                (
                    50,
                    FreezeChange::Began {
                        since: picture.time
                    }
                ),
                (
                    80,
                    FreezeChange::Ended {
                        lasted: Duration::seconds(8)
                    }
                ),
            ]
        );
        assert!(!w.is_frozen());
    }

    #[test]
    fn a_yuv_frame_is_read_from_its_luma_and_a_new_size_starts_afresh() {
        use crate::capture::{Plane, Yuv420, YuvMatrix};
        let mut w = FreezeWatch::new(std::time::Duration::from_secs(1));
        let yuv = |ms: i64, width: u32| {
            let (wu, hu) = (width as usize, H as usize);
            let (cw, ch) = (wu.div_ceil(2), hu.div_ceil(2));
            let mut bytes = vec![120u8; wu * hu + 2 * cw * ch];
            bytes[wu * hu..].fill(128);
            let layout = PixelLayout::Yuv420(Yuv420 {
                y: Plane {
                    offset: 0,
                    stride: wu,
                },
                u: Plane {
                    offset: wu * hu,
                    stride: cw,
                },
                v: Plane {
                    offset: wu * hu + cw * ch,
                    stride: cw,
                },
                chroma_step: 1,
                matrix: YuvMatrix::BT601,
            });
            let t = OffsetDateTime::UNIX_EPOCH + Duration::milliseconds(ms);
            Frame::from_raw(0, t, width, H, layout, bytes).unwrap()
        };
        assert_eq!(w.observe(&yuv(0, W)), None);
        assert_eq!(w.observe(&yuv(500, W)), None);
        // The same grey at another size is another stream: counted afresh.
        assert_eq!(w.observe(&yuv(900, 160)), None);
        assert_eq!(w.observe(&yuv(1500, 160)), None);
        assert!(matches!(
            w.observe(&yuv(1900, 160)),
            Some(FreezeChange::Began { .. })
        ));
    }
}
