//! The frame ring buffer: the last few seconds of one camera's
//! full-resolution frames, so a violation found now can still get stills
//! and a clip from before it. Used for sources without a coded stream to
//! keep (MJPEG, raw V4L2, synthetic frames); an H.264/H.265 camera keeps
//! its coded pictures instead (`super::stream`), at a fraction of the
//! memory.
//!
//! Frames are `Arc`-backed ([`Frame`] clones share the GStreamer buffer),
//! so keeping one costs no copy but keeps its pixels alive: the ring is
//! bounded three ways — by age (newest minus oldest frame time), by count
//! and by bytes — and drops the oldest frames first. The newest frame is
//! always kept, even if it alone exceeds a bound. At 1920×1080 BGR one
//! frame is 6,220,800 bytes: the default 7 s at 25 fps is 175 frames,
//! about 1.09 GB per camera; at 720p (2,764,800 bytes a frame) about
//! 0.48 GB. A coded camera's decoded pictures (`--decoded-ring`) are the
//! decoder's 4:2:0 YUV, half of that.

use crate::capture::Frame;
use std::collections::VecDeque;
use std::time::Duration;
use time::OffsetDateTime;

/// Bounds of a [`FrameRing`]; whichever is reached first evicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLimits {
    /// Longest span from the oldest to the newest frame kept (default 7 s:
    /// 5 s of "before" plus 2 s for the rules' reporting delay).
    pub max_age: Duration,
    /// Most frames kept (default 250: 7 s at 30 fps plus slack).
    pub max_frames: usize,
    /// Most pixel bytes kept (default 1.5 GiB: 7 s of 1080p at 30 fps).
    pub max_bytes: usize,
}

impl Default for RingLimits {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(7),
            max_frames: 250,
            max_bytes: 1536 * 1024 * 1024,
        }
    }
}

/// The last frames of one camera, oldest first, frame numbers increasing.
#[derive(Debug)]
pub struct FrameRing {
    limits: RingLimits,
    frames: VecDeque<Frame>,
    bytes: usize,
}

impl FrameRing {
    /// An empty ring.
    pub fn new(limits: RingLimits) -> Self {
        Self {
            limits,
            frames: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Its bounds.
    pub fn limits(&self) -> RingLimits {
        self.limits
    }

    /// Adds the newest frame and evicts what falls outside the bounds.
    /// A frame numbered at or below the newest one (a restarted source)
    /// empties the ring first: frame numbers must increase.
    pub fn push(&mut self, frame: Frame) {
        if self.newest().is_some_and(|n| frame.number <= n.number) {
            self.clear();
        }
        self.bytes += frame.data().len();
        self.frames.push_back(frame);
        self.evict();
    }

    fn evict(&mut self) {
        let Some(newest) = self.frames.back().map(|f| f.time) else {
            return;
        };
        while self.frames.len() > 1 {
            let oldest = &self.frames[0];
            let too_old = newest - oldest.time > self.limits.max_age;
            if too_old
                || self.frames.len() > self.limits.max_frames.max(1)
                || self.bytes > self.limits.max_bytes
            {
                if let Some(f) = self.frames.pop_front() {
                    self.bytes -= f.data().len();
                }
            } else {
                break;
            }
        }
    }

    /// Drops every frame.
    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether it holds no frame.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Pixel bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The oldest frame held.
    pub fn oldest(&self) -> Option<&Frame> {
        self.frames.front()
    }

    /// The newest frame held.
    pub fn newest(&self) -> Option<&Frame> {
        self.frames.back()
    }

    /// The frame numbered `number`, if still held.
    pub fn get(&self, number: u64) -> Option<&Frame> {
        let i = self
            .frames
            .binary_search_by_key(&number, |f| f.number)
            .ok()?;
        self.frames.get(i)
    }

    /// Every frame held, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Frame> {
        self.frames.iter()
    }

    /// Clones (cheap) of the frames at or after `since`, oldest first.
    pub fn since(&self, since: OffsetDateTime) -> Vec<Frame> {
        self.frames
            .iter()
            .filter(|f| f.time >= since)
            .cloned()
            .collect()
    }
}
