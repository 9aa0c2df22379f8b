//! The signal-phase feed: a junction controller's phase messages
//! ([`protocol::SignalPhase`]) from MQTT to the cameras whose lane groups
//! they govern.
//!
//! The delivery link subscribes to every topic the site files name
//! (`[[signals]] mqtt_topic`) and hands what arrives to [`SignalRouter`],
//! which checks it (the controller's signature over it and its topic, its
//! shape and group, the controller's clock against this box's) and passes
//! it to each camera with a group fed from that topic, through a channel
//! the camera's analysis drains every turn.
//!
//! On the camera side [`FeedGroups`] works in frame time: a frame's time
//! is when its picture reached the box, so the picture shows the junction
//! up to `picture_delay_ms` earlier (the camera's encoding and the
//! network), and the controller's clock may be off this box's by up to
//! [`CLOCK_SLACK_US`]. Both are taken in the driver's favour: a red (or
//! yellow) is believed from `picture_delay_ms` plus the controller's
//! possible lag after it began — only then does every picture surely show
//! it — a green from the slack before it began, and the red-light rule
//! asks the controller's word (`sent`) to vouch for the slack past a
//! crossing; a higher delay only gives drivers more of the amber. A phase
//! applies only once the frames reach
//! its start — frames lag real time by capture, decode and detection, so a
//! phase applied on arrival would judge a frame shot before the change by
//! the new colour. Each status says how far the controller has vouched for
//! it (`known_until_us`, its latest message), and the red-light rule waits
//! for that to pass a crossing before deciding on it: a change to green
//! still on its way must not leave a driver fined on the red before it. A
//! group not heard from for its `feed_silence_s` is unknown, so a dead
//! controller never leaves a red on the board.

use super::{ExternalFeed, SignalState, SignalStatus};
use protocol::SignalPhase;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};
use time::OffsetDateTime;

/// How far the controller's `sent` may lie ahead of this box's clock at
/// arrival, µs: more means the two clocks disagree.
pub const MAX_AHEAD_US: i64 = 250_000;
/// How long a phase may have taken to arrive, µs: an older one is stale (a
/// queued message after an outage, a slow link, or a controller clock
/// running behind).
pub const MAX_LATE_US: i64 = 500_000;
/// How far a controller time may lie from this box's time for the same
/// moment, either way, as far as the two checks above bound it (a clock
/// behind by at most [`MAX_LATE_US`]; ahead by at most [`MAX_AHEAD_US`]
/// plus the link's delay, itself at most [`MAX_LATE_US`]). Every use of a
/// controller time takes it in the driver's favour: a red is believed that
/// much later, a green that much earlier, the controller's word vouches for
/// that much less.
pub const CLOCK_SLACK_US: i64 = MAX_AHEAD_US + MAX_LATE_US;

/// One phase for one camera's lane group, times in µs since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseUpdate {
    pub group: String,
    pub state: SignalState,
    pub since_us: i64,
    pub sent_us: i64,
}

/// Why a phase message was refused.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("signal phase on {topic}: {source}")]
    Message {
        topic: String,
        source: protocol::ProtocolError,
    },
    #[error("signal phase on {topic} is for group `{got}`, the topic is group `{expected}`'s")]
    WrongGroup {
        topic: String,
        got: String,
        expected: String,
    },
    #[error(
        "signal phase on {topic} was sent {late_ms} ms before it arrived (at most {} ms ahead or {} ms late): the controller's clock or the link is off",
        MAX_AHEAD_US / 1000,
        MAX_LATE_US / 1000
    )]
    Clock { topic: String, late_ms: i64 },
}

fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

/// A lane group fed by its junction controller, as a site file names it.
#[derive(Debug, Clone)]
pub struct FedSignal {
    pub group: String,
    pub topic: String,
    /// The controller's public key: only phases it signed are believed.
    pub key: protocol::VerifyingKey,
}

struct Route {
    signal: FedSignal,
    tx: Sender<PhaseUpdate>,
}

/// Routes phase messages from their topics to the cameras' analyses.
#[derive(Default)]
pub struct SignalRouter {
    routes: Mutex<Vec<Route>>,
}

impl SignalRouter {
    /// Registers a camera's fed groups; the camera drains the returned
    /// receiver.
    pub fn register(&self, groups: &[FedSignal]) -> Receiver<PhaseUpdate> {
        let (tx, rx) = channel();
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        for signal in groups {
            routes.push(Route {
                signal: signal.clone(),
                tx: tx.clone(),
            });
        }
        rx
    }

    /// Every topic some camera listens to, each once.
    pub fn topics(&self) -> Vec<String> {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let mut t: Vec<String> = routes.iter().map(|r| r.signal.topic.clone()).collect();
        t.sort();
        t.dedup();
        t
    }

    /// Hands a message that arrived on `topic` at `arrived` to the cameras
    /// fed from it whose controller key signed it; how many took it (0 for
    /// a topic nobody listens to).
    pub fn deliver(
        &self,
        topic: &str,
        payload: &[u8],
        arrived: OffsetDateTime,
    ) -> Result<usize, FeedError> {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let mut signed_for = Vec::new();
        let mut refusal = None;
        for (i, r) in routes.iter().enumerate() {
            if r.signal.topic != topic {
                continue;
            }
            match SignalPhase::from_signed_json(payload, &r.signal.key, topic) {
                Ok(phase) => signed_for.push((i, phase)),
                Err(source) => {
                    refusal = Some(FeedError::Message {
                        topic: topic.to_owned(),
                        source,
                    })
                }
            }
        }
        let Some((_, phase)) = signed_for.first() else {
            return refusal.map_or(Ok(0), Err);
        };
        let late = micros(arrived) - micros(phase.sent);
        if !(-MAX_AHEAD_US..=MAX_LATE_US).contains(&late) {
            return Err(FeedError::Clock {
                topic: topic.to_owned(),
                late_ms: late / 1000,
            });
        }
        if let Some((i, _)) = signed_for
            .iter()
            .find(|(i, p)| routes[*i].signal.group != p.group)
        {
            return Err(FeedError::WrongGroup {
                topic: topic.to_owned(),
                got: phase.group.clone(),
                expected: routes[*i].signal.group.clone(),
            });
        }
        let phase = phase.clone();
        let update = PhaseUpdate {
            group: phase.group,
            state: phase.state,
            since_us: micros(phase.since),
            sent_us: micros(phase.sent),
        };
        let mut taken = 0;
        let mut i = 0;
        // A camera whose analysis ended has dropped its receiver.
        routes.retain(|r| {
            let signed = signed_for.iter().any(|(k, _)| *k == i);
            i += 1;
            if !signed {
                return true;
            }
            let alive = r.tx.send(update.clone()).is_ok();
            taken += usize::from(alive);
            alive
        });
        Ok(taken)
    }
}

/// One fed lane group of a camera.
#[derive(Debug, Clone)]
struct FedGroup {
    group: String,
    topic: String,
    silence_us: i64,
    /// How much older a picture may be than its frame time.
    delay_us: i64,
    /// The latest `sent` of a phase applied.
    heard_us: Option<i64>,
}

/// A camera's fed lane groups: phases waiting for the frames to reach
/// them, and the states applied so far.
#[derive(Debug, Clone, Default)]
pub struct FeedGroups {
    groups: Vec<FedGroup>,
    pending: Vec<PhaseUpdate>,
    feed: ExternalFeed,
}

/// Most phases held for frames that have not reached them (a controller
/// repeating once a second, frames a few seconds behind at worst).
const MAX_PENDING: usize = 64;

impl FeedGroups {
    /// Adds a group fed from `topic`, unknown after `silence_s` without a
    /// phase, whose pictures are up to `picture_delay_ms` older than their
    /// frame times.
    pub fn add(&mut self, group: &str, topic: &str, silence_s: f64, picture_delay_ms: u32) {
        self.groups.push(FedGroup {
            group: group.to_owned(),
            topic: topic.to_owned(),
            silence_us: (silence_s * 1e6) as i64,
            delay_us: i64::from(picture_delay_ms) * 1000,
            heard_us: None,
        });
    }

    /// The `(group, topic)` pairs.
    pub fn topics(&self) -> Vec<(String, String)> {
        self.groups
            .iter()
            .map(|g| (g.group.clone(), g.topic.clone()))
            .collect()
    }

    /// Whether `group` is fed from outside.
    pub fn has(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g.group == group)
    }

    /// Takes a phase for later ([`FeedGroups::advance`]); `false` if
    /// `group` is not fed here.
    pub fn push(&mut self, mut update: PhaseUpdate) -> bool {
        let Some(g) = self.groups.iter().find(|g| g.group == update.group) else {
            return false;
        };
        // Into frame time, in the driver's favour. A frame stamped t shows
        // the junction at some time in [t − delay, t], and the controller's
        // clock may be off ours by up to the slack: a red or yellow is
        // surely on the picture only from its start + delay + the
        // controller's possible lag; a green may be from its start less the
        // slack. `sent` is left alone: the red-light rule asks the
        // controller to have vouched the slack past a crossing.
        match update.state {
            SignalState::Red | SignalState::Yellow => {
                update.since_us = update
                    .since_us
                    .saturating_add(g.delay_us)
                    .saturating_add(MAX_LATE_US);
            }
            SignalState::Green => {
                update.since_us = update.since_us.saturating_sub(CLOCK_SLACK_US);
            }
            SignalState::Unknown => {}
        }
        if self.pending.len() >= MAX_PENDING {
            self.pending.remove(0);
        }
        self.pending.push(update);
        true
    }

    /// Brings the groups to `now_us` (the frame about to be judged):
    /// applies the phases begun by then, in order, and marks silent groups
    /// unknown.
    pub fn advance(&mut self, now_us: i64) {
        self.pending.sort_by_key(|u| u.since_us);
        let due = self.pending.partition_point(|u| u.since_us <= now_us);
        for u in self.pending.drain(..due) {
            let Some(g) = self.groups.iter_mut().find(|g| g.group == u.group) else {
                continue;
            };
            // An older message arriving after a newer one changes nothing.
            if g.heard_us.is_some_and(|h| u.sent_us < h) {
                continue;
            }
            g.heard_us = Some(u.sent_us);
            // The controller knows when its phase began: that is a seen
            // transition, unlike a colour first read mid-phase.
            self.feed.set_status(
                &u.group,
                SignalStatus {
                    state: u.state,
                    since_us: u.since_us,
                    transition_seen: u.state != SignalState::Unknown,
                    changing_since: None,
                    known_until_us: Some(u.sent_us),
                    unvouched_red: None,
                },
            );
        }
        for g in &self.groups {
            let silent_from = g.heard_us.map(|h| h.saturating_add(g.silence_us));
            if let Some(from) = silent_from
                && now_us > from
                && super::SignalSource::status(&self.feed, &g.group).map(|s| s.state)
                    != Some(SignalState::Unknown)
            {
                // Unknown, and vouched for no further than it was heard.
                self.feed.set_status(
                    &g.group,
                    SignalStatus {
                        known_until_us: g.heard_us,
                        unvouched_red: None,
                        ..SignalStatus::unknown(from)
                    },
                );
            }
        }
    }

    /// The status of a fed group (unknown until a phase arrived).
    pub fn status(&self, group: &str) -> Option<SignalStatus> {
        self.has(group).then(|| {
            super::SignalSource::status(&self.feed, group).unwrap_or(SignalStatus {
                // Nothing heard yet: vouched for nothing.
                known_until_us: Some(i64::MIN),
                unvouched_red: None,
                ..SignalStatus::unknown(0)
            })
        })
    }

    /// How many fed groups are unknown now.
    pub fn unknown(&self) -> usize {
        self.groups
            .iter()
            .filter(|g| {
                super::SignalSource::status(&self.feed, &g.group)
                    .is_none_or(|s| s.state == SignalState::Unknown)
            })
            .count()
    }

    /// Sets a group's state at once (tests, a recorded phase).
    pub fn set_now(&mut self, group: &str, state: SignalState, at_us: i64) -> bool {
        if !self.has(group) {
            return false;
        }
        self.feed.set(group, state, at_us);
        if let Some(g) = self.groups.iter_mut().find(|g| g.group == group) {
            g.heard_us = Some(at_us.max(g.heard_us.unwrap_or(i64::MIN)));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::SignalSource;
    use time::Duration;

    const T: &str = "signals/v1/s/east-west";

    fn key(seed: u8) -> protocol::SigningKey {
        protocol::SigningKey::from_bytes(&[seed; 32])
    }

    /// A phase signed by the controller (key 7) or by `signer`.
    fn signed(
        signer: u8,
        group: &str,
        state: SignalState,
        since: OffsetDateTime,
        sent: OffsetDateTime,
    ) -> Vec<u8> {
        SignalPhase {
            group: group.into(),
            state,
            since,
            sent,
        }
        .to_signed_json(&key(signer), T)
        .unwrap()
    }

    fn phase(group: &str, state: &str, since: OffsetDateTime, sent: OffsetDateTime) -> Vec<u8> {
        let state = match state {
            "red" => SignalState::Red,
            "green" => SignalState::Green,
            _ => SignalState::Unknown,
        };
        signed(7, group, state, since, sent)
    }

    fn fed() -> FedSignal {
        FedSignal {
            group: "east-west".into(),
            topic: T.into(),
            key: key(7).verifying_key(),
        }
    }

    #[test]
    fn the_router_checks_group_and_clock_and_reaches_every_camera_on_the_topic() {
        let router = SignalRouter::default();
        let a = router.register(&[fed()]);
        let b = router.register(&[fed()]);
        assert_eq!(router.topics(), vec![T.to_owned()]);
        let now = OffsetDateTime::now_utc();
        let red = phase("east-west", "red", now - Duration::seconds(4), now);
        assert_eq!(router.deliver(T, &red, now).unwrap(), 2);
        let got = a.try_recv().unwrap();
        assert_eq!(
            (got.group.as_str(), got.state),
            ("east-west", SignalState::Red)
        );
        assert_eq!(got.since_us, micros(now - Duration::seconds(4)));
        assert!(b.try_recv().is_ok());
        assert_eq!(router.deliver("other/topic", b"junk", now).unwrap(), 0);

        let unsigned = format!(
            r#"{{"group":"east-west","state":"green","since":"{}","sent":"{}"}}"#,
            now.format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
            now.format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        );
        let cases: [(Vec<u8>, &str); 6] = [
            (b"{".to_vec(), "malformed"),
            (unsigned.into_bytes(), "no `signature`"),
            (
                signed(8, "east-west", SignalState::Green, now, now),
                "signature verification failed",
            ),
            (phase("north", "red", now, now), "group `north`"),
            (
                phase(
                    "east-west",
                    "red",
                    now - Duration::seconds(5),
                    now - Duration::seconds(3),
                ),
                "clock",
            ),
            (
                phase("east-west", "red", now, now + Duration::seconds(2)),
                "clock",
            ),
        ];
        for (bytes, why) in cases {
            let e = router.deliver(T, &bytes, now).unwrap_err().to_string();
            assert!(e.contains(why), "{why}: {e}");
        }
        assert!(a.try_recv().is_err(), "nothing refused reached a camera");

        drop(b);
        assert_eq!(
            router.deliver(T, &red, now).unwrap(),
            1,
            "a gone camera is dropped"
        );
    }

    #[test]
    fn phases_move_by_the_picture_delay_and_say_how_far_they_are_vouched_for() {
        let mut f = FeedGroups::default();
        f.add("g", T, 3.0, 500);
        let never = f.status("g").unwrap();
        assert!(!never.vouched_at(0, 0), "nothing heard vouches for nothing");
        f.push(update(SignalState::Red, 100, 101));
        // Believed from 101 s: its start, the picture's delay (0.5 s) and
        // the controller clock's possible lag (0.5 s).
        f.advance(100_900_000);
        assert_eq!(
            state(&f),
            SignalState::Unknown,
            "the picture may still be before the red"
        );
        f.advance(101_000_000);
        let s = f.status("g").unwrap();
        assert_eq!((s.state, s.since_us), (SignalState::Red, 101_000_000));
        // Vouched for up to the message's own send time; the rule asks for
        // the clock slack (0.75 s) past a crossing.
        assert_eq!(s.known_until_us, Some(101_000_000));
        assert!(s.vouched_at(100_250_000, CLOCK_SLACK_US));
        assert!(!s.vouched_at(100_300_000, CLOCK_SLACK_US));
        // A green counts from its start less the slack: it may be on the
        // picture then.
        f.push(update(SignalState::Green, 102, 102));
        f.advance(102_000_000);
        let s = f.status("g").unwrap();
        assert_eq!((s.state, s.since_us), (SignalState::Green, 101_250_000));
        // Silent: unknown, and still vouched for no further.
        f.advance(105_100_000);
        let s = f.status("g").unwrap();
        assert_eq!(
            (s.state, s.known_until_us),
            (SignalState::Unknown, Some(102_000_000))
        );
    }

    fn update(state: SignalState, since_s: i64, sent_s: i64) -> PhaseUpdate {
        PhaseUpdate {
            group: "g".into(),
            state,
            since_us: since_s * 1_000_000,
            sent_us: sent_s * 1_000_000,
        }
    }

    fn state(f: &FeedGroups) -> SignalState {
        f.status("g").unwrap().state
    }

    #[test]
    fn a_phase_applies_when_the_frames_reach_it_and_silence_makes_it_unknown() {
        let mut f = FeedGroups::default();
        f.add("g", T, 3.0, 0);
        assert_eq!(state(&f), SignalState::Unknown);
        assert_eq!(f.unknown(), 1, "unknown until the controller is heard");
        assert!(!f.push(PhaseUpdate {
            group: "other".into(),
            ..update(SignalState::Red, 0, 0)
        }));
        assert!(f.push(update(SignalState::Green, 90, 100)));
        // Red from 101 s arrives while the frames are still at 100.6 s; it
        // is believed from 101.5 s (the controller's clock may lag ours by
        // 0.5 s).
        assert!(f.push(update(SignalState::Red, 101, 101)));
        f.advance(100_600_000);
        assert_eq!(state(&f), SignalState::Green, "the frame before the change");
        f.advance(101_400_000);
        assert_eq!(state(&f), SignalState::Green, "a lagging clock's red");
        f.advance(101_500_000);
        assert_eq!(f.unknown(), 0);
        let s = f.status("g").unwrap();
        assert_eq!(
            (s.state, s.since_us, s.transition_seen),
            (SignalState::Red, 101_500_000, true)
        );
        // An older message arriving late changes nothing.
        f.push(update(SignalState::Green, 90, 100));
        f.advance(101_600_000);
        assert_eq!(state(&f), SignalState::Red);
        // Repeats keep it; silence past 3 s makes it unknown from then.
        f.push(update(SignalState::Red, 101, 102));
        f.advance(104_900_000);
        assert_eq!(state(&f), SignalState::Red);
        f.advance(105_100_000);
        let s = f.status("g").unwrap();
        assert_eq!((s.state, s.since_us), (SignalState::Unknown, 105_000_000));
        assert_eq!(f.unknown(), 1);
        // The controller back: the state again, as it says.
        f.push(update(SignalState::Red, 101, 106));
        f.advance(106_000_000);
        assert_eq!(state(&f), SignalState::Red);
        assert_eq!(f.status("nope"), None);
        assert!(SignalSource::status(&f.feed, "g").is_some());
    }
}
