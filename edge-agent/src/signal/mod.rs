//! The traffic signal of each lane group: what colour it shows now and
//! since when, read from the camera image or set by an external feed.
//!
//! [`lamp`] reads one frame's raw colour from pixel rectangles (a vehicle
//! body over the head, its colour over more than one lamp, reads unknown);
//! [`SignalFilter`] turns raw readings into a believed state with
//! hysteresis (a new state must be seen `confirm_frames` frames in a row; a
//! single odd or dark frame, e.g. LED flicker, changes nothing) and keeps
//! when the state began, back-dated to its first sighting (a red not
//! across a dark spell), for "red for N ms" and the grace and yellow rules.
//! A real signal goes green, yellow, red, green, and a red bus or lorry in
//! front of the head reads red: so green straight to red is believed only
//! after [`SKIPPED_YELLOW_FACTOR`] times as many sightings, and then as red
//! from that moment, not back-dated; red followed by yellow again was no
//! red (the yellow it interrupted is restored, so a crossing judged on it
//! is undone); and for lamp groups, which know Vietnam's yellow
//! ([`MIN_YELLOW_US`] to [`MAX_YELLOW_US`]), red read sooner after yellow
//! than any yellow ends is believed only once the longest yellow is over,
//! from then, and a red is vouched for, so a run on it is reported, only
//! once no yellow can follow it. [`ExternalFeed`] holds states set by
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
    /// When it began (µs since the epoch): the first frame it was seen in
    /// (for a lamp-read red whose turn the filter could not have seen, the
    /// latest it can have begun: see [`SignalFilter`]), or the feed's
    /// change time.
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
    /// the frames themselves (up to the frame being judged) — but for a
    /// lamp-read red not before a yellow can no longer follow it (yellow
    /// after red proves the red false: [`SignalFilter::with_yellow_us`]),
    /// nor past the first sighting of a yellow not yet confirmed, nor while
    /// the head is dark after such a red (`Some(i64::MIN)`), and while the
    /// head is dark on a red, no further than the last frame it was read
    /// in (with `changing_since` the start of the dark); for a
    /// controller's phase feed, the frame time of its latest message — a
    /// change after that may still be on its way, so nothing later is
    /// judged on it yet.
    pub known_until_us: Option<i64>,
    /// A lamp-read red, from its start to when the head was seen again,
    /// that was never vouched for: it ended in a dark spell while a yellow
    /// could still have followed it (a bus read as red may have gone on to
    /// hide the head), and what was seen after settles nothing. A run that
    /// crossed on it is dropped ([`SignalStatus::disowns`]).
    pub unvouched_red: Option<(i64, i64)>,
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
            unvouched_red: None,
        }
    }

    /// Whether the source vouches for the state at `at_us` (see
    /// [`SignalStatus::known_until_us`]), with `margin_us` to spare.
    pub fn vouched_at(&self, at_us: i64, margin_us: i64) -> bool {
        self.known_until_us
            .is_none_or(|k| k >= at_us.saturating_add(margin_us))
    }

    /// Whether a crossing at `t_cross` was on a red the source disowns
    /// ([`SignalStatus::unvouched_red`]).
    pub fn disowns(&self, t_cross: i64) -> bool {
        self.unvouched_red
            .is_some_and(|(from, to)| t_cross >= from && t_cross < to)
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

/// The shortest yellow a signal shows, µs (Vietnam: 3 s). A red read
/// sooner after the yellow was first seen cannot be the red lamp.
pub const MIN_YELLOW_US: i64 = 3_000_000;

/// How much shorter than [`MIN_YELLOW_US`] a yellow may *look* and still
/// be taken for a whole one, µs: its first frame may be read a frame late
/// (a lamp switching mid-exposure misses the brightness threshold), frame
/// times jitter, and a controller's 3 s may be 2.99 s. Without it a real
/// red seen 2.95 s after the yellow's first sighting was believed only
/// 2 s into the red.
pub const YELLOW_READ_SLACK_US: i64 = 500_000;

/// The longest yellow taken to be possible, µs: once this long has passed
/// since a yellow began, no yellow can follow the red.
pub const MAX_YELLOW_US: i64 = 5_000_000;

/// A colour seen, not yet believed: the colour, its sightings, the first
/// of them.
type Candidate = (SignalState, u32, i64);

/// Hysteresis over raw per-frame readings, with what a real signal's cycle
/// (green, yellow, red, green) allows: red read straight after green, too
/// soon after yellow, or followed by yellow again is something in front of
/// the head, not the red lamp.
#[derive(Debug, Clone)]
pub struct SignalFilter {
    confirm_frames: u32,
    /// Sightings red needs straight after green.
    skip_frames: u32,
    unknown_frames: u32,
    current: SignalStatus,
    candidate: Option<Candidate>,
    unknown_run: u32,
    /// Shortest and longest yellow, µs, when known.
    yellow_us: Option<(i64, i64)>,
    /// The yellow the current red followed, restored if yellow is seen
    /// again (the red was false).
    yellow_before: Option<SignalStatus>,
    /// Frame time from which the current red is vouched for.
    vouch_from: Option<i64>,
    /// A red not yet vouched for ended in a dark spell: whether it was the
    /// red lamp or something red in front of the head that went on to hide
    /// it is not known, so nothing is vouched for until a colour is seen
    /// again — and a red seen then is a new one, dated from then. That
    /// red, while doubted.
    doubted_red: Option<SignalStatus>,
    /// When the current run of unknown frames began.
    dark_from: i64,
    /// The latest doubted red settled by anything but the yellow that
    /// proves it false ([`SignalStatus::unvouched_red`]).
    unvouched_red: Option<(i64, i64)>,
    /// The latest frame's time.
    last_us: i64,
    /// The latest frame in which the believed colour was read: while the
    /// head is dark the filter vouches for it no further.
    seen_us: i64,
}

impl SignalFilter {
    /// A filter that believes a colour after `confirm_frames` consecutive
    /// sightings (dark/unknown frames in between are skipped over) — red
    /// straight after green only after [`SKIPPED_YELLOW_FACTOR`] times as
    /// many — and "unknown" after `4 × confirm_frames` unknown frames in a
    /// row. It knows nothing of how long a yellow lasts; lamp groups use
    /// [`SignalFilter::with_yellow_us`].
    pub fn new(confirm_frames: u32, start_us: i64) -> Self {
        let k = confirm_frames.max(1);
        Self {
            confirm_frames: k,
            skip_frames: k.saturating_mul(SKIPPED_YELLOW_FACTOR),
            unknown_frames: k.saturating_mul(4),
            current: SignalStatus::unknown(start_us),
            candidate: None,
            unknown_run: 0,
            yellow_us: None,
            yellow_before: None,
            vouch_from: None,
            doubted_red: None,
            dark_from: start_us,
            unvouched_red: None,
            last_us: start_us,
            seen_us: start_us,
        }
    }

    /// The same filter, knowing that a yellow lasts from `min_us` to
    /// `max_us` ([`MIN_YELLOW_US`], [`MAX_YELLOW_US`]):
    ///
    /// * red first read less than `min_us` after a yellow whose start was
    ///   seen cannot be the red lamp (something red is in front of the
    ///   head, read as a lamp); when the light really turned under it is
    ///   not known, so it is believed only once the longest yellow has
    ///   ended, from then, its start not seen — the latest the red can
    ///   have begun, in the driver's favour;
    /// * a red is vouched for ([`SignalStatus::known_until_us`]) only from
    ///   `max_us` after the yellow it followed began (after its own first
    ///   sighting when no yellow was seen before it): until then a yellow
    ///   may still show again and prove it false, and the rules hold a
    ///   run confirmed on it rather than report it.
    pub fn with_yellow_us(self, min_us: i64, max_us: i64) -> Self {
        Self {
            yellow_us: Some((min_us, max_us.max(min_us))),
            ..self
        }
    }

    /// The believed status, with the colour being confirmed, if any.
    pub fn status(&self) -> SignalStatus {
        let mut known_until_us = None;
        // A red not yet vouched for when the head went dark is not vouched
        // for by the dark (however long it lasts: the dark began before).
        let dark_since_unvouched = self.unknown_run > 0
            && self.current.state == SignalState::Red
            && self.vouch_from.is_some_and(|v| self.dark_from < v);
        if self.doubted_red.is_some() || dark_since_unvouched {
            known_until_us = Some(i64::MIN);
        } else if self.current.state == SignalState::Red {
            if self.vouch_from.is_some_and(|v| self.last_us < v) {
                known_until_us = Some(i64::MIN);
            } else if let Some((SignalState::Yellow, _, first)) = self.candidate {
                // Yellow after red proves the red false once confirmed;
                // nothing since its first sighting is vouched for.
                known_until_us = Some(first.saturating_sub(1));
            }
        }
        let mut changing_since = self
            .candidate
            .filter(|(s, _, _)| *s != self.current.state)
            .map(|(_, _, first)| first);
        if self.unknown_run > 0 && self.current.state == SignalState::Red {
            // The head is dark (a vehicle in front of it, a lamp out): the
            // red is vouched for only up to the last frame it was read in,
            // and the light may have changed since the dark began — the
            // frames are not judged by the red the filter still holds
            // (hysteresis is for a flickering lamp, not for the light's
            // change going unseen).
            known_until_us = Some(known_until_us.map_or(self.seen_us, |k| k.min(self.seen_us)));
            changing_since = Some(changing_since.map_or(self.dark_from, |c| c.min(self.dark_from)));
        }
        SignalStatus {
            changing_since,
            known_until_us,
            unvouched_red: self.unvouched_red,
            ..self.current
        }
    }

    /// Feeds one raw reading taken at `at_us`; returns the believed status.
    pub fn observe(&mut self, raw: SignalState, at_us: i64) -> SignalStatus {
        self.last_us = at_us;
        if raw == SignalState::Unknown {
            if self.unknown_run == 0 {
                self.dark_from = at_us;
            }
            self.unknown_run = self.unknown_run.saturating_add(1);
            if self.current.state != SignalState::Unknown && self.unknown_run >= self.unknown_frames
            {
                // Doubted if it was not vouched for when the head went dark
                // (not when the dark run was long enough to count).
                let doubted = self.current.state == SignalState::Red
                    && self.vouch_from.is_some_and(|v| self.dark_from < v);
                // A doubted red keeps the yellow it followed: a yellow seen
                // after the dark spell undoes the red as if seen at once.
                self.doubted_red = doubted.then_some(self.current);
                self.current = SignalStatus::unknown(at_us);
                self.candidate = None;
                if !doubted {
                    self.yellow_before = None;
                }
                self.vouch_from = None;
            }
            return self.status();
        }
        let after_dark = self.unknown_run > 0;
        self.unknown_run = 0;
        if raw == self.current.state {
            self.candidate = None;
            self.seen_us = at_us;
            return self.status();
        }
        let (count, first) = match self.candidate {
            // A red's start is not back-dated across a dark spell: a stray
            // red reading before the head was hidden says nothing of when
            // the red seen after it began (taken at its first sighting
            // after the spell, in the driver's favour; other colours keep
            // their first sighting, which favours the driver too).
            Some((s, n, _)) if s == raw && raw == SignalState::Red && after_dark => (n + 1, at_us),
            Some((s, n, first)) if s == raw => (n + 1, first),
            // Another colour first seen after the head was dark on a red:
            // the light may have changed from when the dark began (the
            // driver's favour: a vehicle moving on in the dark is not
            // taken to have moved on red).
            _ if after_dark && self.current.state == SignalState::Red => (1, self.dark_from),
            _ => (1, at_us),
        };
        let (needed, since, seen) = self.change(raw, first, at_us);
        if count >= needed && at_us >= since {
            self.confirm(raw, since, seen);
            self.seen_us = at_us;
        } else {
            self.candidate = Some((raw, count, first));
        }
        self.status()
    }

    /// What believing `raw`, first seen at `first`, takes: the sightings,
    /// when it began (not after `at_us` once believed), and whether that
    /// change was seen.
    fn change(&self, raw: SignalState, first: i64, at_us: i64) -> (u32, i64, bool) {
        use SignalState::{Green, Red, Unknown, Yellow};
        let from = self.current;
        match (from.state, raw) {
            // Green straight to red skipped the yellow: not a real
            // sequence unless it lasts; believed late, from now (when it
            // began is not known: the head may have been hidden through
            // the yellow).
            (Green, Red) => (self.skip_frames, at_us, false),
            // Red too soon after a yellow whose start was seen: not the
            // red lamp; believed once the longest yellow is over.
            (Yellow, Red) => match self.yellow_us {
                Some((min, max))
                    if from.transition_seen
                        && first
                            < from
                                .since_us
                                .saturating_add(min.saturating_sub(YELLOW_READ_SLACK_US)) =>
                {
                    (
                        self.confirm_frames,
                        from.since_us.saturating_add(max),
                        false,
                    )
                }
                _ => (self.confirm_frames, first, true),
            },
            (_, _) => (self.confirm_frames, first, from.state != Unknown),
        }
    }

    /// Believes `raw` from `since`.
    fn confirm(&mut self, raw: SignalState, since: i64, seen: bool) {
        use SignalState::{Red, Yellow};
        // After a dark spell that ended a red not yet vouched for, the
        // red is what the colour now seen follows — if a yellow could still
        // be on: the yellow it followed (or, with none seen, one since the
        // red) no more than the longest yellow ago. Otherwise, and for any
        // other colour, the spell settles nothing about the red: it is
        // disowned, and runs that crossed on it are dropped.
        let max_yellow = self.yellow_us.map_or(MAX_YELLOW_US, |(_, max)| max);
        let from = match self.doubted_red.take() {
            Some(red) => {
                let began = self.yellow_before.map_or(red.since_us, |y| y.since_us);
                if raw == Yellow && since <= began.saturating_add(max_yellow) {
                    red
                } else {
                    self.yellow_before = None;
                    self.unvouched_red = Some((red.since_us, since));
                    self.current
                }
            }
            None => self.current,
        };
        self.candidate = None;
        self.vouch_from = None;
        if from.state == Red && raw == Yellow {
            // The light never goes from red back to yellow: the red was
            // something in front of the head and the yellow was on all
            // along — the one it followed, or, if none was seen, one on at
            // least since the red was first read (so a crossing judged on
            // the false red is undone).
            self.current = self.yellow_before.take().unwrap_or(SignalStatus {
                state: Yellow,
                since_us: from.since_us,
                transition_seen: false,
                changing_since: None,
                known_until_us: None,
                unvouched_red: None,
            });
            return;
        }
        self.yellow_before = None;
        if raw == Red {
            if from.state == Yellow {
                self.yellow_before = Some(from);
            }
            let began = if from.state == Yellow {
                from.since_us
            } else {
                since
            };
            self.vouch_from = self.yellow_us.map(|(_, max)| began.saturating_add(max));
        }
        self.current = SignalStatus {
            state: raw,
            since_us: since,
            transition_seen: seen,
            changing_since: None,
            known_until_us: None,
            unvouched_red: None,
        };
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
                    unvouched_red: None,
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
                    unvouched_red: None,
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
                    filter: SignalFilter::new(s.confirm_frames, start_us).with_yellow_us(
                        (s.yellow_s[0] * 1e6).round() as i64,
                        (s.yellow_s[1] * 1e6).round() as i64,
                    ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use SignalState::{Green, Red, Unknown, Yellow};

    /// 10 fps, yellow 1–2 s.
    fn filter() -> SignalFilter {
        SignalFilter::new(2, 0).with_yellow_us(1_000_000, 2_000_000)
    }

    fn feed(f: &mut SignalFilter, from: i64, seq: &[SignalState]) -> SignalStatus {
        let mut last = f.status();
        for (i, s) in seq.iter().enumerate() {
            last = f.observe(*s, (from + i as i64) * 100_000);
        }
        last
    }

    #[test]
    fn red_is_vouched_for_once_the_longest_yellow_is_over() {
        let mut f = filter();
        feed(&mut f, 0, &[Green, Green]);
        feed(&mut f, 2, &[Yellow; 10]); // yellow from 0.2 s
        let s = feed(&mut f, 12, &[Red, Red]);
        assert_eq!(
            (s.state, s.since_us, s.known_until_us),
            (Red, 1_200_000, Some(i64::MIN))
        );
        let s = feed(&mut f, 14, &[Red; 7]); // to 2.0 s
        assert_eq!(s.known_until_us, Some(i64::MIN));
        let s = feed(&mut f, 21, &[Red, Red]); // 2.2 s
        assert_eq!(s.known_until_us, None);
        // A yellow sighting: nothing from it on is vouched for, nor is the
        // change to it believed (`changing_since`).
        let s = f.observe(Yellow, 2_300_000);
        assert_eq!(s.known_until_us, Some(2_299_999));
        assert_eq!(s.changing_since, Some(2_300_000));
        // Confirmed: the red was false, the yellow from 0.2 s is back.
        let s = f.observe(Yellow, 2_400_000);
        assert_eq!(
            (s.state, s.since_us, s.transition_seen),
            (Yellow, 200_000, true)
        );
        assert_eq!(s.known_until_us, None);
    }

    #[test]
    fn early_red_is_dated_to_the_end_of_the_longest_yellow() {
        let mut f = filter();
        feed(&mut f, 0, &[Green, Green, Yellow, Yellow]); // yellow from 0.2 s
        let s = feed(&mut f, 4, &[Red; 17]); // red from 0.4 s, to 2.0 s
        assert_eq!(s.state, Yellow);
        assert_eq!(s.changing_since, Some(400_000));
        let s = f.observe(Red, 2_200_000);
        assert_eq!(
            (s.state, s.since_us, s.transition_seen),
            (Red, 2_200_000, false)
        );
        assert_eq!(s.known_until_us, None, "no yellow can follow now");
        // Red after a yellow whose start was not seen is not early.
        let mut f = filter();
        feed(&mut f, 0, &[Yellow, Yellow]);
        let s = feed(&mut f, 2, &[Red, Red]);
        assert_eq!(
            (s.state, s.since_us, s.transition_seen),
            (Red, 200_000, true)
        );
    }

    #[test]
    fn a_long_dark_spell_forgets_the_yellow_the_red_followed() {
        let mut f = filter();
        feed(&mut f, 0, &[Green, Green, Yellow, Yellow]);
        feed(&mut f, 4, &[Yellow; 20]);
        feed(&mut f, 24, &[Red, Red]);
        feed(&mut f, 26, &[Unknown; 8]);
        assert_eq!(f.status().state, Unknown);
        let s = feed(&mut f, 34, &[Red, Red, Yellow, Yellow]);
        // Red from 3.4 s, then yellow: the yellow is taken to have been
        // on since the red was first read.
        assert_eq!(
            (s.state, s.since_us, s.transition_seen),
            (Yellow, 3_400_000, false)
        );
    }
}
