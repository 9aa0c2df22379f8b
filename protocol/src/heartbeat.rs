//! The heartbeat an edge device publishes periodically: its software
//! version and uptime, each camera's state and analysed frame rate, how full
//! and how stale its outbox is, free disk, active alarms and clock sync. The
//! server uses it for fleet health; it is signed like an event.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::clock::ClockSync;
use crate::error::{ProtocolError, ValidationError};
use crate::message::{DeviceMessage, Message, check_own_version};
use crate::signing::SignedHeartbeat;
use crate::topics::Channel;
use crate::validate::{self, MAX_ALARMS, MAX_CAMERAS, MAX_SHORT_TEXT};
use crate::version::SchemaVersion;

/// Highest plausible analysed frame rate.
pub const MAX_FPS: f64 = 1000.0;

/// Connection state of one camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraState {
    /// Opening the stream.
    Connecting,
    /// Frames arriving and being analysed.
    Streaming,
    /// Connected but no frames for a while.
    Stalled,
    /// Gave up (will retry later).
    Failed,
}

/// One camera's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraStatus {
    /// Camera id.
    pub camera_id: String,
    /// Its state.
    pub state: CameraState,
    /// When its last frame arrived; absent if none yet.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_frame_time: Option<OffsetDateTime>,
    /// Frames analysed per second, recent average.
    pub analysed_fps: f64,
}

/// The device's store-and-forward queue of unsent messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxStatus {
    /// Items waiting to be sent (or acked).
    pub depth: u64,
    /// Age of the oldest waiting item, seconds; absent when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_age_s: Option<u64>,
    /// Evictions the box has ever recorded (a clip, the stills or a whole
    /// event dropped to keep within its limits; 1.3, absent from older
    /// agents): a count that grows means evidence was lost on the box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evictions: Option<u64>,
}

/// An active alarm. Known alarms have their own variant; any other code
/// (e.g. from a newer edge) is kept as [`Alarm::Other`], so a heartbeat is
/// never rejected for carrying an alarm this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Alarm {
    /// Outbox above its high-water mark.
    OutboxNearlyFull,
    /// Outbox full: new events are being dropped.
    OutboxFull,
    /// Little disk left.
    DiskLow,
    /// Clock not synchronised.
    ClockUnsynced,
    /// At least one camera stalled.
    CameraStalled,
    /// At least one camera failed.
    CameraFailed,
    /// A model failed to load or run.
    ModelError,
    /// Device running too hot.
    Overheating,
    /// Any other alarm code (printable ASCII, at most 64 characters).
    #[serde(untagged)]
    Other(String),
}

/// Which run of the edge agent made a heartbeat, and its place in that run
/// (schema 1.3). The server orders a device's heartbeats by it rather than
/// by the device's clock, which may be unsynchronised (a box rebooted to
/// 1970): a report of the run it already knows counts only with a higher
/// `seq`, and one of a run it saw earlier is a replay. Without it a
/// captured old report, replayed, could make a dead or alarming device look
/// healthy again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootSeq {
    /// Random id the agent draws when it starts (version 4 UUID).
    pub boot_id: uuid::Uuid,
    /// Heartbeats made by this run so far, this one included (from 1).
    pub seq: u64,
}

/// Periodic health report from one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Schema version, [`SchemaVersion::CURRENT`] when made by this build.
    pub schema_version: SchemaVersion,
    /// The device.
    pub device_id: String,
    /// Its site.
    pub site: String,
    /// When the heartbeat was made, RFC 3339 with offset.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Software version of the edge agent.
    pub software_version: String,
    /// Seconds since the agent started.
    pub uptime_s: u64,
    /// Every configured camera (at most 32).
    pub cameras: Vec<CameraStatus>,
    /// The outbox.
    pub outbox: OutboxStatus,
    /// Free bytes on the data disk.
    pub disk_free_bytes: u64,
    /// Active alarms (at most 32); empty when all is well.
    pub alarms: Vec<Alarm>,
    /// Clock sync.
    pub clock: ClockSync,
    /// The agent's run and this report's place in it (1.3; absent from
    /// older agents, whose reports are ordered by their clock alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootSeq>,
}

impl Heartbeat {
    /// Signs the heartbeat with the device's key (validating it first).
    pub fn sign(&self, key: &ed25519_dalek::SigningKey) -> Result<SignedHeartbeat, ProtocolError> {
        SignedHeartbeat::sign(self, key)
    }
}

impl Message for Heartbeat {
    const KIND: &'static str = "heartbeat";

    fn schema_version(&self) -> SchemaVersion {
        self.schema_version
    }

    fn validate(&self) -> Result<(), ValidationError> {
        check_own_version("schema_version", self.schema_version)?;
        validate::check_id("device_id", &self.device_id)?;
        validate::check_id("site", &self.site)?;
        validate::check_ascii_text("software_version", &self.software_version, MAX_SHORT_TEXT)?;
        validate::check_safe_integer("uptime_s", self.uptime_s)?;
        validate::check_count("cameras", self.cameras.len(), 0, MAX_CAMERAS)?;
        let mut ids = HashSet::new();
        for (i, cam) in self.cameras.iter().enumerate() {
            validate::check_id(&format!("cameras[{i}].camera_id"), &cam.camera_id)?;
            if !ids.insert(cam.camera_id.as_str()) {
                return Err(ValidationError::new(
                    format!("cameras[{i}].camera_id"),
                    format!("duplicate camera id {:?}", cam.camera_id),
                ));
            }
            validate::check_range(
                &format!("cameras[{i}].analysed_fps"),
                cam.analysed_fps,
                0.0,
                MAX_FPS,
            )?;
        }
        validate::check_safe_integer("outbox.depth", self.outbox.depth)?;
        if let Some(age) = self.outbox.oldest_age_s {
            validate::check_safe_integer("outbox.oldest_age_s", age)?;
        }
        if let Some(n) = self.outbox.evictions {
            validate::check_safe_integer("outbox.evictions", n)?;
        }
        validate::check_safe_integer("disk_free_bytes", self.disk_free_bytes)?;
        validate::check_count("alarms", self.alarms.len(), 0, MAX_ALARMS)?;
        for (i, alarm) in self.alarms.iter().enumerate() {
            if let Alarm::Other(code) = alarm {
                validate::check_ascii_text(&format!("alarms[{i}]"), code, MAX_SHORT_TEXT)?;
                // `Other("disk_low")` would read back as `DiskLow`.
                let reparsed =
                    serde_json::from_value::<Alarm>(serde_json::Value::String(code.clone()));
                if !matches!(reparsed, Ok(Alarm::Other(_))) {
                    return Err(ValidationError::new(
                        format!("alarms[{i}]"),
                        format!("{code:?} is a known alarm; use its own variant, not Other"),
                    ));
                }
            }
        }
        if let Some(boot) = &self.boot {
            if boot.seq == 0 {
                return Err(ValidationError::new("boot.seq", "counts from 1"));
            }
            validate::check_safe_integer("boot.seq", boot.seq)?;
        }
        self.clock.validate_at("clock")
    }
}

impl DeviceMessage for Heartbeat {
    const CHANNEL: Channel = Channel::Heartbeat;

    fn device_id(&self) -> &str {
        &self.device_id
    }

    fn site(&self) -> &str {
        &self.site
    }
}
