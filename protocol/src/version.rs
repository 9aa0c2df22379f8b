//! The schema version every message carries in `schema_version`, written
//! `"MAJOR.MINOR"` (this build writes events and heartbeats as `1.4`,
//! [`SchemaVersion::CURRENT`]: 1.1 added the plate's `source`, 1.2 the
//! track's `riders` and the speed's uncertainty, 1.3 the heartbeat's
//! `boot`, 1.4 the evidence items' `frame` and the event's
//! `site_config_sha256`; acks are `1.2`, see
//! [`crate::Ack::VERSION`]). A receiver accepts any message with
//! its own major version, whatever the minor; a minor version only adds
//! optional fields (older receivers ignore them, the signature still covers
//! them). Anything else is a new major version, which receivers reject with
//! an error naming both versions.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use thiserror::Error;

use crate::error::ProtocolError;

/// Longest version string we bother to echo back in an error.
const MAX_ECHO: usize = 32;

/// A `"MAJOR.MINOR"` schema version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchemaVersion {
    /// Incompatible changes bump this; receivers reject other majors.
    pub major: u16,
    /// Compatible additions (new optional fields) bump this.
    pub minor: u16,
}

/// A `schema_version` string that is not `"MAJOR.MINOR"`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("malformed schema_version \"{input}\": {reason} (expected \"MAJOR.MINOR\", e.g. \"1.0\")")]
pub struct VersionError {
    /// The offending string (truncated to 32 characters).
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl SchemaVersion {
    /// The version this build writes for device messages (events and
    /// heartbeats) and whose major it understands. Acks are written as
    /// [`crate::Ack::VERSION`].
    pub const CURRENT: SchemaVersion = SchemaVersion { major: 1, minor: 4 };

    /// A version from its parts.
    pub const fn new(major: u16, minor: u16) -> Self {
        Self { major, minor }
    }

    /// Parses `"MAJOR.MINOR"`: two non-negative decimal integers (no sign, no
    /// leading zeros, each at most 65535) separated by one dot.
    pub fn parse(input: &str) -> Result<Self, VersionError> {
        let fail = |reason| VersionError {
            input: input.chars().take(MAX_ECHO).collect(),
            reason,
        };
        let (major, minor) = input
            .split_once('.')
            .ok_or_else(|| fail("no '.' between major and minor"))?;
        let part = |s: &str| -> Result<u16, VersionError> {
            if s.is_empty() {
                return Err(fail("empty major or minor part"));
            }
            if !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(fail("major and minor must be decimal digits only"));
            }
            if s.len() > 1 && s.starts_with('0') {
                return Err(fail("leading zeros are not allowed"));
            }
            s.parse::<u16>()
                .map_err(|_| fail("major or minor is larger than 65535"))
        };
        Ok(Self {
            major: part(major)?,
            minor: part(minor)?,
        })
    }

    /// Whether a receiver speaking `self` accepts a message declaring `other`.
    pub fn accepts(self, other: SchemaVersion) -> bool {
        self.major == other.major
    }

    /// `Ok` if this build accepts a message declaring `received`, otherwise
    /// [`ProtocolError::UnsupportedVersion`] naming both versions.
    pub fn check_supported(received: SchemaVersion) -> Result<(), ProtocolError> {
        if Self::CURRENT.accepts(received) {
            Ok(())
        } else {
            Err(ProtocolError::UnsupportedVersion {
                received,
                supported: Self::CURRENT,
            })
        }
    }

    /// Reads `schema_version` from a raw JSON message and checks it is
    /// supported, before anything else is read: a newer major may have a
    /// different shape altogether, and "unsupported version" is the useful
    /// error then, not "missing field".
    pub fn check_value(
        kind: &'static str,
        message: &Value,
    ) -> Result<SchemaVersion, ProtocolError> {
        let raw = match message {
            Value::Object(map) => map.get("schema_version"),
            _ => {
                return Err(ProtocolError::Schema {
                    kind,
                    path: ".".into(),
                    message: "expected a JSON object".into(),
                });
            }
        };
        let version = match raw {
            None => return Err(ProtocolError::MissingVersion { kind }),
            Some(Value::String(s)) => Self::parse(s)?,
            Some(other) => {
                return Err(VersionError {
                    input: other.to_string().chars().take(MAX_ECHO).collect(),
                    reason: "must be a string",
                }
                .into());
            }
        };
        Self::check_supported(version)?;
        Ok(version)
    }
}

impl Default for SchemaVersion {
    fn default() -> Self {
        Self::CURRENT
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl FromStr for SchemaVersion {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for SchemaVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SchemaVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (s, v) in [
            ("1.0", SchemaVersion::new(1, 0)),
            ("1.12", SchemaVersion::new(1, 12)),
            ("0.0", SchemaVersion::new(0, 0)),
            ("65535.65535", SchemaVersion::new(65535, 65535)),
        ] {
            assert_eq!(SchemaVersion::parse(s), Ok(v));
            assert_eq!(v.to_string(), s);
        }
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "", "1", "1.", ".1", "1.0.0", "v1.0", "+1.0", "-1.0", "01.0", "1.00", "1.a", "65536.0",
            " 1.0", "1.0 ", "1,0", "١.٠",
        ] {
            let err = SchemaVersion::parse(s).expect_err(s);
            assert!(err.to_string().contains("MAJOR.MINOR"), "{err}");
        }
    }

    #[test]
    fn major_decides_compatibility() {
        assert!(SchemaVersion::check_supported(SchemaVersion::new(1, 7)).is_ok());
        let err = SchemaVersion::check_supported(SchemaVersion::new(2, 0)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("2.0") && text.contains("speaks 1.4"),
            "{text}"
        );
    }
}
