//! Clock-sync status, shared by violation events and heartbeats: whether the
//! edge's clock was synchronised when it stamped the message, the measured
//! offset from the reference if known, and the reference's name. An event
//! time is only evidence if the clock behind it can be trusted, so this
//! travels (signed) with every event.

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::validate;

/// Largest clock offset accepted, one day in milliseconds: anything larger
/// is a broken clock, not a measurement.
pub const MAX_CLOCK_OFFSET_MS: i64 = 86_400_000;

/// Whether the edge clock was synchronised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockSyncStatus {
    /// Locked to the reference within its tolerance.
    Synced,
    /// Known not to be locked (reference unreachable, offset too large).
    Unsynced,
    /// The edge cannot tell.
    Unknown,
}

/// Clock-sync status at the moment a message was stamped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockSync {
    /// Synced, unsynced or unknown.
    pub status: ClockSyncStatus,
    /// Measured offset of the local clock from the reference, milliseconds
    /// (positive: local clock ahead). Absent if not measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_ms: Option<i64>,
    /// The reference, free text such as `ntp:vn.pool.ntp.org`, `gps`,
    /// `ptp`. Absent if none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl ClockSync {
    /// A synced clock with a measured offset and a named source.
    pub fn synced(offset_ms: i64, source: impl Into<String>) -> Self {
        Self {
            status: ClockSyncStatus::Synced,
            offset_ms: Some(offset_ms),
            source: Some(source.into()),
        }
    }

    /// A clock whose state is unknown.
    pub fn unknown() -> Self {
        Self {
            status: ClockSyncStatus::Unknown,
            offset_ms: None,
            source: None,
        }
    }

    /// The state of a time taken while a recording is played back (a file
    /// camera, `edge-agent replay`): no clock stamped the moment of the
    /// violation, so the status is unknown, and the source says why
    /// ([`ClockSync::RECORDING`]). The server shows it, and a police
    /// officer confirms such a case only after acknowledging it.
    pub fn recording() -> Self {
        Self {
            status: ClockSyncStatus::Unknown,
            offset_ms: None,
            source: Some(Self::RECORDING.into()),
        }
    }

    /// The `source` of [`ClockSync::recording`].
    pub const RECORDING: &'static str = "recording";

    /// Whether the time came from a recording played back
    /// ([`ClockSync::recording`]).
    pub fn is_recording(&self) -> bool {
        self.status == ClockSyncStatus::Unknown && self.source.as_deref() == Some(Self::RECORDING)
    }

    /// Checks the offset is within a day and the source is short printable
    /// text; `field` is this value's JSON path, used in the error.
    pub fn validate_at(&self, field: &str) -> Result<(), ValidationError> {
        if let Some(offset) = self.offset_ms
            && offset.unsigned_abs() > MAX_CLOCK_OFFSET_MS.unsigned_abs()
        {
            return Err(ValidationError::new(
                format!("{field}.offset_ms"),
                format!("must be within ±{MAX_CLOCK_OFFSET_MS} ms, got {offset}"),
            ));
        }
        if let Some(source) = &self.source {
            validate::check_ascii_text(
                &format!("{field}.source"),
                source,
                validate::MAX_SHORT_TEXT,
            )?;
        }
        Ok(())
    }
}
