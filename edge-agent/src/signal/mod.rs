//! The traffic signal of each lane group: what colour it shows now and
//! since when, read from the camera image or set by an external feed.
//!
//! [`lamp`] reads one frame's raw colour from pixel rectangles;
//! [`SignalFilter`] turns raw readings into a believed state with
//! hysteresis (a new state must be seen `confirm_frames` frames in a row; a
//! single odd or dark frame, e.g. LED flicker, changes nothing) and keeps
//! when the state began, back-dated to its first sighting, for "red for N
//! ms" and the grace and yellow rules. Green straight to red is no real
//! sequence (a red bus passing in front of the head reads so): it is
//! believed only after [`SKIPPED_YELLOW_FACTOR`] times as many sightings,
//! and then as red from that moment, not back-dated. [`ExternalFeed`] holds states set by
//! a signal controller's phase feed, which [`feed`] brings from MQTT to the
//! camera and applies in step with its frames.
//! [`SignalBoard`] puts both behind the [`SignalSource`] trait, one entry
//! per lane group of the site, which is what [`crate::rules::RuleEngine`]
//! reads each frame.

pub mod controller_sim;
pub mod feed;
pub mod lamp;

pub use feed::{FedSignal, FeedError, PhaseUpdate, SignalRouter};
pub use lamp::{FrameView, LampConfig, LampReading, PixelFormat, read_lamps};
pub use protocol::SignalState;

use crate::site::{FrameSize, LampRegions, SiteConfig};
use crate::track::FrameInfo;
use protocol::SignalObservation;

/// The believed state of one signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalStatus {
    /// The colour shown.
    pub state: SignalState,
    /// When it began (µs since the epoch): the first frame it was seen in,
    /// or the feed's change time.
    pub since_us: i64,
    /// Whether the change into this state was observed (from another known
    /// colour). If not (start-up, after a dark spell) `since_us` is only a
    /// lower bound of the state's age.
    pub transition_seen: bool,
    /// When another colour was first seen, while it is not yet confirmed
    /// (the filter's hysteresis): the light may already have changed then.
    /// A vehicle reaching the line from that moment on is not judged by
    /// `state` (the first frames of green are still reported as red).
    pub changing_since: Option<i64>,
    /// How far the source vouches for `state`: `None` for lamps read from
    /// the frames themselves (up to the frame being judged); for a
    /// controller's phase feed, the frame time of its latest message — a
    /// change after that may still be on its way, so nothing later is
    /// judged on it yet.
    pub known_until_us: Option<i64>,
}

impl SignalStatus {
    /// Unknown since `at_us`.
    pub const fn unknown(at_us: i64) -> Self {
        Self {
            state: SignalState::Unknown,
            since_us: at_us,
            transition_seen: false,
            changing_since: None,
            known_until_us: None,
        }
    }

    /// Whether the source vouches for the state at `at_us` (see
    /// [`SignalStatus::known_until_us`]), with `margin_us` to spare.
    pub fn vouched_at(&self, at_us: i64, margin_us: i64) -> bool {
        self.known_until_us
            .is_none_or(|k| k >= at_us.saturating_add(margin_us))
    }

    /// Whether the state held at `at_us`, as far as is known: it had begun,
    /// and no other colour had been seen yet.
    pub fn held_at(&self, at_us: i64) -> bool {
        at_us >= self.since_us && self.changing_since.is_none_or(|c| at_us < c)
    }

    /// Milliseconds the state has lasted at `now_us` (0 if `now_us` is
    /// earlier).
    pub fn elapsed_ms(&self, now_us: i64) -> u64 {
        u64::try_from(now_us.saturating_sub(self.since_us) / 1000).unwrap_or(0)
    }

    /// How long it has been red, when red and the turn to red was seen.
    pub fn red_for_ms(&self, now_us: i64) -> Option<u64> {
        (self.state == SignalState::Red && self.transition_seen).then(|| self.elapsed_ms(now_us))
    }

    /// The observation as the violation event carries it.
    pub fn observation(&self, now_us: i64) -> SignalObservation {
        SignalObservation {
            state: self.state,
            red_for_ms: self.red_for_ms(now_us),
        }
    }
}

/// Anything that knows the signal state of lane groups.
pub trait SignalSource {
    /// The status of `group`, or `None` if this source does not know it.
    fn status(&self, group: &str) -> Option<SignalStatus>;
}

/// How many times `confirm_frames` red must be seen in a row to be believed
/// straight after green, without the yellow between (a missed yellow, or a
/// head with none): a red bus or lorry passing in front of the head reads
/// red for a moment, and the light never goes from green to red unwarned.
pub const SKIPPED_YELLOW_FACTOR: u32 = 10;

/// Hysteresis over raw per-frame readings.
#[derive(Debug, Clone)]
pub struct SignalFilter {
    confirm_frames: u32,
    /// Sightings red needs straight after green.
    skip_frames: u32,
    unknown_frames: u32,
    current: SignalStatus,
    candidate: Option<(SignalState, u32, i64)>,
    unknown_run: u32,
}

impl SignalFilter {
    /// A filter that believes a colour after `confirm_frames` consecutive
    /// sightings (dark/unknown frames in between are skipped over) — red
    /// straight after green only after [`SKIPPED_YELLOW_FACTOR`] times as
    /// many — and "unknown" after `4 × confirm_frames` unknown frames in a
    /// row.
    pub fn new(confirm_frames: u32, start_us: i64) -> Self {
        let k = confirm_frames.max(1);
        Self {
            confirm_frames: k,
            skip_frames: k.saturating_mul(SKIPPED_YELLOW_FACTOR),
            unknown_frames: k.saturating_mul(4),
            current: SignalStatus::unknown(start_us),
            candidate: None,
            unknown_run: 0,
        }
    }

    /// The believed status, with the colour being confirmed, if any.
    pub fn status(&self) -> SignalStatus {
        SignalStatus {
            changing_since: self
                .candidate
                .filter(|(s, _, _)| *s != self.current.state)
                .map(|(_, _, first)| first),
            ..self.current
        }
    }

    /// Feeds one raw reading taken at `at_us`; returns the believed status.
    pub fn observe(&mut self, raw: SignalState, at_us: i64) -> SignalStatus {
        if raw == SignalState::Unknown {
            self.unknown_run = self.unknown_run.saturating_add(1);
            if self.current.state != SignalState::Unknown && self.unknown_run >= self.unknown_frames
            {
                self.current = SignalStatus::unknown(at_us);
                self.candidate = None;
            }
            return self.status();
        }
        self.unknown_run = 0;
        if raw == self.current.state {
            self.candidate = None;
            return self.status();
        }
        let (count, first) = match self.candidate {
            Some((s, n, first)) if s == raw => (n + 1, first),
            _ => (1, at_us),
        };
        // Green straight to red skipped the yellow: not a real sequence
        // unless it lasts; believed late, from now (when it began is not
        // known: the head may have been hidden through the yellow).
        let skipped_yellow = self.current.state == SignalState::Green && raw == SignalState::Red;
        let needed = if skipped_yellow {
            self.skip_frames
        } else {
            self.confirm_frames
        };
        if count >= needed {
            self.current = SignalStatus {
                state: raw,
                since_us: if skipped_yellow { at_us } else { first },
                transition_seen: self.current.state != SignalState::Unknown && !skipped_yellow,
                changing_since: None,
                known_until_us: None,
            };
            self.candidate = None;
        } else {
            self.candidate = Some((raw, count, first));
        }
        self.status()
    }
}

/// Signal states set from outside (a signal controller's phase feed).
/// The controller is authoritative, so there is no hysteresis: a change
/// applies at the time it is stamped with; repeating the same state keeps
/// its start.
#[derive(Debug, Clone, Default)]
pub struct ExternalFeed {
    groups: Vec<(String, SignalStatus)>,
}

impl ExternalFeed {
    /// An empty feed (every group unknown to it).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `group` to `state` as of `at_us`.
    pub fn set(&mut self, group: &str, state: SignalState, at_us: i64) {
        match self.groups.iter_mut().find(|(g, _)| g == group) {
            Some((_, s)) if s.state == state => {}
            Some((_, s)) => {
                *s = SignalStatus {
                    state,
                    since_us: at_us,
                    transition_seen: s.state != SignalState::Unknown
                        && state != SignalState::Unknown,
                    changing_since: None,
                    known_until_us: None,
                };
            }
            None => self.groups.push((
                group.to_owned(),
                SignalStatus {
                    state,
                    since_us: at_us,
                    transition_seen: false,
                    changing_since: None,
                    known_until_us: None,
                },
            )),
        }
    }

    /// Sets a full status directly (replaying a recorded phase, tests).
    pub fn set_status(&mut self, group: &str, status: SignalStatus) {
        match self.groups.iter_mut().find(|(g, _)| g == group) {
            Some((_, s)) => *s = status,
            None => self.groups.push((group.to_owned(), status)),
        }
    }
}

impl SignalSource for ExternalFeed {
    fn status(&self, group: &str) -> Option<SignalStatus> {
        self.groups
            .iter()
            .find(|(g, _)| g == group)
            .map(|(_, s)| *s)
    }
}

#[derive(Debug, Clone)]
struct LampGroup {
    group: String,
    lamps: LampRegions,
    filter: SignalFilter,
    last: Option<LampReading>,
}

/// Every lane group's signal of one site: lamp groups read from frames,
/// feed groups set by the controller's phases ([`SignalBoard::push_phase`]).
#[derive(Debug, Clone)]
pub struct SignalBoard {
    frame: FrameSize,
    lamp_config: LampConfig,
    lamp_groups: Vec<LampGroup>,
    feeds: feed::FeedGroups,
}

impl SignalBoard {
    /// The signals of `site`, all unknown as of `start_us`.
    pub fn from_site(site: &SiteConfig, lamp_config: LampConfig, start_us: i64) -> Self {
        let mut lamp_groups = Vec::new();
        let mut feeds = feed::FeedGroups::default();
        for s in &site.signals {
            if let Some(lamps) = s.lamps {
                lamp_groups.push(LampGroup {
                    group: s.group.clone(),
                    lamps,
                    filter: SignalFilter::new(s.confirm_frames, start_us),
                    last: None,
                });
            } else if let Some(topic) = &s.mqtt_topic {
                feeds.add(&s.group, topic, s.feed_silence_s, s.picture_delay_ms);
            }
        }
        Self {
            frame: site.frame,
            lamp_config,
            lamp_groups,
            feeds,
        }
    }

    /// Reads every lamp group from this frame.
    pub fn observe_frame(&mut self, frame: FrameInfo, view: &FrameView<'_>) {
        for g in &mut self.lamp_groups {
            let reading = read_lamps(view, &g.lamps, self.frame, &self.lamp_config);
            g.filter.observe(reading.state, frame.timestamp_us);
            g.last = Some(reading);
        }
    }

    /// The latest raw reading of a lamp group (for health and debugging).
    pub fn last_reading(&self, group: &str) -> Option<LampReading> {
        self.lamp_groups
            .iter()
            .find(|g| g.group == group)
            .and_then(|g| g.last)
    }

    /// The `(group, mqtt topic)` pairs fed from outside.
    pub fn feed_topics(&self) -> Vec<(String, String)> {
        self.feeds.topics()
    }

    /// Takes a controller's phase, applied once the frames reach its start
    /// ([`SignalBoard::advance_feeds`]); `false` (ignored) if its group is
    /// not a feed group of this site.
    pub fn push_phase(&mut self, update: PhaseUpdate) -> bool {
        self.feeds.push(update)
    }

    /// Brings the feed groups to the frame at `now_us`: the phases begun by
    /// then apply, groups silent too long become unknown.
    pub fn advance_feeds(&mut self, now_us: i64) {
        self.feeds.advance(now_us);
    }

    /// How many feed groups are unknown now (silent controllers).
    pub fn silent_feeds(&self) -> usize {
        self.feeds.unknown()
    }

    /// Sets a feed group's state at once (tests, a recorded phase);
    /// `false` (ignored) if `group` is not a feed group of this site.
    pub fn set_external(&mut self, group: &str, state: SignalState, at_us: i64) -> bool {
        self.feeds.set_now(group, state, at_us)
    }
}

impl SignalSource for SignalBoard {
    fn status(&self, group: &str) -> Option<SignalStatus> {
        if let Some(g) = self.lamp_groups.iter().find(|g| g.group == group) {
            return Some(g.filter.status());
        }
        self.feeds.status(group)
    }
}
