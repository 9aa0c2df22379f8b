//! MQTT topic names, in one place. Every topic is
//! `tv/v1/{site}/{device}/{channel}` where channel is `events`, `heartbeat`,
//! `ack` or `evidence`; servers subscribe with the shared subscription
//! `$share/{group}/tv/v1/+/+/{channel}`. The `v1` segment follows the
//! protocol's major version. Site, device and group ids are checked so they
//! can never smuggle a `/`, wildcard or empty level into a topic.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::validate::truncate;

/// The topic prefix shared by every topic of this protocol version.
pub const TOPIC_ROOT: &str = "tv/v1";

/// Longest site, device, camera or share-group id.
pub const MAX_ID_LEN: usize = 64;

/// A topic or id that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TopicError {
    /// An id (site, device, group) is unusable in a topic.
    #[error("invalid {what} id {value:?}: {reason}")]
    InvalidId {
        /// Which id: `site`, `device`, `group`.
        what: &'static str,
        /// The offending value (truncated).
        value: String,
        /// Why.
        reason: String,
    },
    /// A topic string is not `tv/v1/{site}/{device}/{channel}`.
    #[error("malformed topic {topic:?}: {reason}")]
    Malformed {
        /// The offending topic (truncated).
        topic: String,
        /// Why.
        reason: String,
    },
}

/// The last level of a topic: what kind of message flows on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Signed violation events, edge → server.
    Events,
    /// Signed heartbeats, edge → server.
    Heartbeat,
    /// Acks, server → edge.
    Ack,
    /// Evidence transfer, edge → server (if evidence goes over MQTT).
    Evidence,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Channel; 4] = [Self::Events, Self::Heartbeat, Self::Ack, Self::Evidence];

    /// The topic level, e.g. `events`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Heartbeat => "heartbeat",
            Self::Ack => "ack",
            Self::Evidence => "evidence",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = TopicError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| TopicError::Malformed {
                topic: truncate(s, 80),
                reason: "unknown channel (expected events, heartbeat, ack or evidence)".into(),
            })
    }
}

/// Why `value` is not a usable id, or `None` if it is. An id is 1 to
/// [`MAX_ID_LEN`] characters, each an ASCII letter, digit, `-`, `_` or `.`,
/// and not `.` or `..`. That rules out `/`, `+`, `#`, `$`, spaces, NUL and
/// non-ASCII.
pub fn id_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("must not be empty".into());
    }
    if value.len() > MAX_ID_LEN {
        return Some(format!(
            "must be at most {MAX_ID_LEN} characters, got {}",
            value.len()
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Some(format!(
            "may only contain ASCII letters, digits, '-', '_' and '.', found {c:?}"
        ));
    }
    if value == "." || value == ".." {
        return Some("must not be '.' or '..'".into());
    }
    None
}

/// Checks an id that goes into a topic; `what` names it in the error.
pub fn validate_id(what: &'static str, value: &str) -> Result<(), TopicError> {
    match id_problem(value) {
        None => Ok(()),
        Some(reason) => Err(TopicError::InvalidId {
            what,
            value: truncate(value, 80),
            reason,
        }),
    }
}

/// `tv/v1/{site}/{device}/{channel}`.
pub fn topic(site: &str, device: &str, channel: Channel) -> Result<String, TopicError> {
    validate_id("site", site)?;
    validate_id("device", device)?;
    Ok(format!("{TOPIC_ROOT}/{site}/{device}/{channel}"))
}

/// `tv/v1/{site}/{device}/events`: where the edge publishes signed events.
pub fn events_topic(site: &str, device: &str) -> Result<String, TopicError> {
    topic(site, device, Channel::Events)
}

/// `tv/v1/{site}/{device}/heartbeat`: where the edge publishes heartbeats.
pub fn heartbeat_topic(site: &str, device: &str) -> Result<String, TopicError> {
    topic(site, device, Channel::Heartbeat)
}

/// `tv/v1/{site}/{device}/ack`: where the server answers one device.
pub fn ack_topic(site: &str, device: &str) -> Result<String, TopicError> {
    topic(site, device, Channel::Ack)
}

/// `tv/v1/{site}/{device}/evidence`.
pub fn evidence_topic(site: &str, device: &str) -> Result<String, TopicError> {
    topic(site, device, Channel::Evidence)
}

/// `tv/v1/+/+/{channel}`: every device's messages on one channel.
pub fn subscription_filter(channel: Channel) -> String {
    format!("{TOPIC_ROOT}/+/+/{channel}")
}

/// `$share/{group}/tv/v1/+/+/{channel}`: an MQTT 5 shared subscription, so
/// several server instances in `group` split one channel's messages.
pub fn shared_subscription(group: &str, channel: Channel) -> Result<String, TopicError> {
    validate_id("group", group)?;
    Ok(format!("$share/{group}/{}", subscription_filter(channel)))
}

/// What a concrete topic names: site, device and channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicAddress {
    /// The site id.
    pub site: String,
    /// The device id.
    pub device: String,
    /// The channel.
    pub channel: Channel,
}

impl TopicAddress {
    /// Builds an address, checking both ids.
    pub fn new(site: &str, device: &str, channel: Channel) -> Result<Self, TopicError> {
        validate_id("site", site)?;
        validate_id("device", device)?;
        Ok(Self {
            site: site.to_owned(),
            device: device.to_owned(),
            channel,
        })
    }

    /// The topic string for this address.
    pub fn topic(&self) -> String {
        format!(
            "{TOPIC_ROOT}/{}/{}/{}",
            self.site, self.device, self.channel
        )
    }
}

impl fmt::Display for TopicAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.topic())
    }
}

impl FromStr for TopicAddress {
    type Err = TopicError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_topic(s)
    }
}

/// Parses a concrete topic a message arrived on (not a filter: wildcards,
/// `$share/...`, empty levels and unknown channels are all rejected).
pub fn parse_topic(topic: &str) -> Result<TopicAddress, TopicError> {
    let malformed = |reason: &str| TopicError::Malformed {
        topic: truncate(topic, 120),
        reason: reason.to_owned(),
    };
    let levels: Vec<&str> = topic.split('/').collect();
    if levels.len() != 5 {
        return Err(malformed(
            "expected 5 levels: tv/v1/{site}/{device}/{channel}",
        ));
    }
    if levels[0] != "tv" {
        return Err(malformed("first level must be 'tv'"));
    }
    if levels[1] != "v1" {
        return Err(malformed(
            "second level must be 'v1' (the only protocol major version this build speaks)",
        ));
    }
    validate_id("site", levels[2])?;
    validate_id("device", levels[3])?;
    let channel = levels[4]
        .parse::<Channel>()
        .map_err(|_| malformed("last level must be events, heartbeat, ack or evidence"))?;
    Ok(TopicAddress {
        site: levels[2].to_owned(),
        device: levels[3].to_owned(),
        channel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_topics() {
        assert_eq!(
            events_topic("hn-cg", "edge-01").unwrap(),
            "tv/v1/hn-cg/edge-01/events"
        );
        assert_eq!(ack_topic("s", "d").unwrap(), "tv/v1/s/d/ack");
        assert_eq!(
            shared_subscription("ingest", Channel::Events).unwrap(),
            "$share/ingest/tv/v1/+/+/events"
        );
        assert_eq!(
            subscription_filter(Channel::Heartbeat),
            "tv/v1/+/+/heartbeat"
        );
    }

    #[test]
    fn rejects_bad_ids() {
        for bad in [
            "", "a/b", "+", "#", "a+", "$SYS", "nút", "a b", ".", "..", "a\0",
        ] {
            assert!(events_topic(bad, "d").is_err(), "{bad:?}");
            assert!(events_topic("s", bad).is_err(), "{bad:?}");
        }
        assert!(events_topic(&"a".repeat(MAX_ID_LEN), "d").is_ok());
        assert!(events_topic(&"a".repeat(MAX_ID_LEN + 1), "d").is_err());
        assert!(shared_subscription("a/b", Channel::Events).is_err());
    }
}
