//! The violation event: what an edge box saw (which vehicle, which plate,
//! which violation, when, by which camera), the facts behind it (speed,
//! signal state, track) and the manifest of evidence files. It is signed by
//! the device (see [`crate::signing`]) and published on the events topic.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::clock::ClockSync;
use crate::error::{ProtocolError, ValidationError};
use crate::evidence::{self, EvidenceError, EvidenceItem};
use crate::message::{DeviceMessage, Message, check_own_version};
use crate::signing::SignedEvent;
use crate::topics::Channel;
use crate::validate::{self, MAX_SHORT_TEXT, MAX_TRACK_POINTS};
use crate::version::SchemaVersion;

/// Fastest plausible measured speed, km/h.
pub const MAX_SPEED_KMH: f64 = 400.0;
/// The one non-ASCII letter of canonical plate text, Đ (U+0110), as in the
/// series `MĐ` (same as `plate_ocr::plate::DJ`).
pub const PLATE_DJ: char = '\u{110}';
/// Shortest and longest canonical plate text, in characters.
pub const PLATE_TEXT_LEN: std::ops::RangeInclusive<usize> = 4..=12;
/// Longest display form of a plate.
pub const MAX_PLATE_DISPLAY: usize = 20;
/// Largest frame side a box may reach, pixels (8K is 7680).
pub const MAX_FRAME_SIDE: u64 = 16_384;

/// The kind of violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationType {
    /// Entered the junction against a red signal.
    RedLight,
    /// Crossed the stop line while the signal was red.
    StopLine,
    /// Drove in a lane not allowed for the vehicle or its direction.
    WrongLane,
    /// Drove against the direction of traffic.
    WrongWay,
    /// Exceeded the speed limit ([`ViolationEvent::speed`] is required).
    Speeding,
    /// Stopped or parked where it is not allowed.
    IllegalStopping,
    /// Motorcycle rider or passenger without a helmet.
    NoHelmet,
}

/// The class of vehicle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VehicleClass {
    /// Passenger car, van.
    Car,
    /// Motorcycle, scooter, moped.
    Motorcycle,
    /// Bus, coach.
    Bus,
    /// Truck, lorry.
    Truck,
}

/// Background colour of the plate (in Việt Nam: white private, yellow
/// commercial, blue state, red military).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlateColour {
    /// White.
    White,
    /// Yellow.
    Yellow,
    /// Blue.
    Blue,
    /// Red.
    Red,
    /// Not determined.
    Unknown,
}

/// The number plate as read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plate {
    /// Whether the plate could be read. If not, `text` and `display` are
    /// absent.
    pub readable: bool,
    /// Canonical text as `plate_ocr::plate::canonicalize` makes it: only
    /// `0-9`, `A-Z` and `Đ`, 4 to 12 characters, e.g. `30A12345`,
    /// `29MĐ112345`. Present iff `readable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Display form as printed on the plate, e.g. `30A-123.45`,
    /// `29-MĐ1 123.45` (at most 20 characters, no control characters; a
    /// two-line plate is written on one line). Optional; absent if not
    /// `readable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    /// Confidence of the reading, `0..=1`. Required if `readable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// Plate colour.
    pub colour: PlateColour,
    /// Number of text lines on the plate, 1 or 2, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<u8>,
    /// Where the plate was read: the frame, the plate's box and the
    /// violator's box on that frame (schema 1.1). Only with a readable
    /// plate; the plate's centre lies inside the vehicle's box, so a
    /// reviewer (and the server) can check that the plate read is the
    /// violator's and not its neighbour's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PlateSource>,
}

/// The frame a plate was read on and where, in full-frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlateSource {
    /// Frame number within the camera's stream (as in [`TrackPoint::frame`]).
    pub frame: u64,
    /// The plate's box on that frame, `[x, y, w, h]`.
    pub plate_box: [u32; 4],
    /// The violator's box on that frame, `[x, y, w, h]`.
    pub vehicle_box: [u32; 4],
}

impl PlateSource {
    /// Checks the source on its own, as the event's validation will (field
    /// paths under `plate.source`).
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.validate_at("plate.source")
    }

    fn validate_at(&self, field: &str) -> Result<(), ValidationError> {
        validate::check_safe_integer(&format!("{field}.frame"), self.frame)?;
        for (name, b) in [
            ("plate_box", self.plate_box),
            ("vehicle_box", self.vehicle_box),
        ] {
            if b[2] == 0 || b[3] == 0 {
                return Err(ValidationError::new(
                    format!("{field}.{name}"),
                    format!("width and height must be positive, got {b:?}"),
                ));
            }
            if u64::from(b[0]) + u64::from(b[2]) > MAX_FRAME_SIDE
                || u64::from(b[1]) + u64::from(b[3]) > MAX_FRAME_SIDE
            {
                return Err(ValidationError::new(
                    format!("{field}.{name}"),
                    format!("must lie within {MAX_FRAME_SIDE} pixels, got {b:?}"),
                ));
            }
        }
        let [px, py, pw, ph] = self.plate_box.map(u64::from);
        let [vx, vy, vw, vh] = self.vehicle_box.map(u64::from);
        // Centres doubled, to stay in integers.
        let (cx, cy) = (2 * px + pw, 2 * py + ph);
        if cx < 2 * vx || cx > 2 * (vx + vw) || cy < 2 * vy || cy > 2 * (vy + vh) {
            return Err(ValidationError::new(
                format!("{field}.plate_box"),
                format!(
                    "the plate's centre must lie inside vehicle_box {:?}, got plate box {:?}",
                    self.vehicle_box, self.plate_box
                ),
            ));
        }
        Ok(())
    }
}

impl Plate {
    /// An unreadable plate: no text, no confidence, lines unknown.
    pub fn unreadable(colour: PlateColour) -> Self {
        Self {
            readable: false,
            text: None,
            display: None,
            confidence: None,
            colour,
            lines: None,
            source: None,
        }
    }

    fn validate_at(&self, field: &str) -> Result<(), ValidationError> {
        if self.readable {
            let text = self.text.as_deref().ok_or_else(|| {
                ValidationError::new(format!("{field}.text"), "required when readable is true")
            })?;
            let ok_chars = text
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == PLATE_DJ);
            if !PLATE_TEXT_LEN.contains(&text.chars().count()) || !ok_chars {
                return Err(ValidationError::new(
                    format!("{field}.text"),
                    format!(
                        "must be {}-{} characters from 0-9, A-Z and Đ, got {:?}",
                        PLATE_TEXT_LEN.start(),
                        PLATE_TEXT_LEN.end(),
                        validate::truncate(text, 40)
                    ),
                ));
            }
            if let Some(display) = &self.display {
                let at = format!("{field}.display");
                if display.is_empty() {
                    return Err(ValidationError::new(at, "must not be empty when present"));
                }
                validate::check_text(&at, display, MAX_PLATE_DISPLAY)?;
            }
            match self.confidence {
                None => {
                    return Err(ValidationError::new(
                        format!("{field}.confidence"),
                        "required when readable is true",
                    ));
                }
                Some(c) => validate::check_unit_interval(&format!("{field}.confidence"), c)?,
            }
        } else {
            if self.text.is_some() {
                return Err(ValidationError::new(
                    format!("{field}.text"),
                    "must be absent when readable is false",
                ));
            }
            if self.display.is_some() {
                return Err(ValidationError::new(
                    format!("{field}.display"),
                    "must be absent when readable is false",
                ));
            }
            if let Some(c) = self.confidence {
                validate::check_unit_interval(&format!("{field}.confidence"), c)?;
            }
            if self.source.is_some() {
                return Err(ValidationError::new(
                    format!("{field}.source"),
                    "must be absent when readable is false",
                ));
            }
        }
        if let Some(source) = &self.source {
            source.validate_at(&format!("{field}.source"))?;
        }
        if let Some(lines) = self.lines
            && !(1..=2).contains(&lines)
        {
            return Err(ValidationError::new(
                format!("{field}.lines"),
                format!("must be 1 or 2, got {lines}"),
            ));
        }
        Ok(())
    }
}

/// Measured speed against the limit in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Speed {
    /// Measured speed, km/h.
    pub measured_kmh: f64,
    /// Posted limit, km/h.
    pub limit_kmh: u16,
    /// Standard uncertainty of `measured_kmh` (one σ, km/h), since 1.2: the
    /// edge fines only when `measured − 2σ` is over the limit and its
    /// tolerance, and the reviewer sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty_kmh: Option<f64>,
}

/// State of a traffic signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalState {
    /// Red.
    Red,
    /// Yellow (amber).
    Yellow,
    /// Green.
    Green,
    /// Not determined.
    Unknown,
}

/// The signal as observed at the moment of violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalObservation {
    /// Signal state.
    pub state: SignalState,
    /// How long the signal had been red, ms (present when `state` is red
    /// and the edge saw it turn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub red_for_ms: Option<u64>,
}

/// One point of a vehicle's track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackPoint {
    /// Frame number within the camera's stream.
    pub frame: u64,
    /// X, image pixels from the left edge.
    pub x: u32,
    /// Y, image pixels from the top edge.
    pub y: u32,
}

/// Summary of the tracked vehicle's path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackSummary {
    /// The tracker's id for the vehicle (unique per camera for a while).
    pub track_id: u64,
    /// When the vehicle was first seen.
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    /// When the vehicle was last seen.
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    /// Frames the vehicle was tracked over.
    pub frame_count: u32,
    /// A few points along the path (at most 64), in frame order.
    pub points: Vec<TrackPoint>,
    /// People seen riding the vehicle (motorcycles), since 1.2: the most
    /// seen together in enough of its frames (the edge's rule:
    /// `edge_agent::track::Track::riders`), 1 to [`MAX_RIDERS`]; absent
    /// when none was seen (too far, or a car). An observation for the
    /// reviewer and for helmet and passenger rules, not itself a violation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub riders: Option<u8>,
}

/// The most riders a [`TrackSummary`] may report (a detector seeing more on
/// one motorcycle is seeing a crowd).
pub const MAX_RIDERS: u8 = 6;

impl TrackSummary {
    fn validate_at(&self, field: &str) -> Result<(), ValidationError> {
        validate::check_safe_integer(&format!("{field}.track_id"), self.track_id)?;
        validate::check_time(&format!("{field}.first_seen"), self.first_seen)?;
        validate::check_time(&format!("{field}.last_seen"), self.last_seen)?;
        if self.first_seen > self.last_seen {
            return Err(ValidationError::new(
                format!("{field}.last_seen"),
                "must not be before first_seen",
            ));
        }
        validate::check_count(
            &format!("{field}.points"),
            self.points.len(),
            0,
            MAX_TRACK_POINTS,
        )?;
        for (i, p) in self.points.iter().enumerate() {
            validate::check_safe_integer(&format!("{field}.points[{i}].frame"), p.frame)?;
            if u64::from(p.x) > MAX_FRAME_SIDE || u64::from(p.y) > MAX_FRAME_SIDE {
                return Err(ValidationError::new(
                    format!("{field}.points[{i}]"),
                    format!(
                        "must lie within {MAX_FRAME_SIDE} pixels, got ({}, {})",
                        p.x, p.y
                    ),
                ));
            }
        }
        if let Some(n) = self.riders
            && !(1..=MAX_RIDERS).contains(&n)
        {
            return Err(ValidationError::new(
                format!("{field}.riders"),
                format!("must be 1 to {MAX_RIDERS} when present, got {n}"),
            ));
        }
        Ok(())
    }
}

/// A detected violation, as the edge signs and sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViolationEvent {
    /// Schema version, [`SchemaVersion::CURRENT`] when made by this build.
    pub schema_version: SchemaVersion,
    /// Unique id, made on the edge; the server deduplicates on it.
    pub event_id: Uuid,
    /// The device that detected it (and signs it).
    pub device_id: String,
    /// The camera that saw it.
    pub camera_id: String,
    /// The site (intersection) id.
    pub site: String,
    /// When it happened, RFC 3339 with the local offset
    /// (`2025-03-14T08:15:30.250+07:00`).
    #[serde(with = "time::serde::rfc3339")]
    pub event_time: OffsetDateTime,
    /// Whether the clock behind `event_time` was synced.
    pub clock: ClockSync,
    /// The violation.
    pub violation_type: ViolationType,
    /// The vehicle's class.
    pub vehicle_class: VehicleClass,
    /// The plate.
    pub plate: Plate,
    /// Measured and limit speed; required for `speeding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<Speed>,
    /// Signal state; required for `red_light`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<SignalObservation>,
    /// The vehicle's track.
    pub track: TrackSummary,
    /// The evidence files (1 to 16), with their hashes.
    pub evidence: Vec<EvidenceItem>,
    /// Software version of the edge agent, e.g. `edge-agent 0.3.1`.
    pub software_version: String,
    /// SHA-256 of the camera's site file as the agent read it (stop lines,
    /// lanes, signal regions, speed calibration: what the rules judged by),
    /// 64 lowercase hex characters (schema 1.4, optional). The city keeps
    /// each site file it deploys; this names which one a case was decided
    /// under — for a speeding case, the calibration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_config_sha256: Option<String>,
}

impl ViolationEvent {
    /// Signs the event with the device's key (validating it first).
    /// Shorthand for [`SignedEvent::sign`].
    pub fn sign(&self, key: &ed25519_dalek::SigningKey) -> Result<SignedEvent, ProtocolError> {
        SignedEvent::sign(self, key)
    }

    /// The manifest entry called `name`, if any.
    pub fn evidence_item(&self, name: &str) -> Option<&EvidenceItem> {
        self.evidence.iter().find(|e| e.name == name)
    }

    /// Checks a file's bytes against the manifest entry called `name`.
    pub fn check_evidence(&self, name: &str, bytes: &[u8]) -> Result<&EvidenceItem, EvidenceError> {
        let item = self
            .evidence_item(name)
            .ok_or_else(|| EvidenceError::NotInManifest {
                name: name.to_owned(),
            })?;
        item.check_bytes(bytes)?;
        Ok(item)
    }
}

impl Message for ViolationEvent {
    const KIND: &'static str = "violation_event";

    fn schema_version(&self) -> SchemaVersion {
        self.schema_version
    }

    fn validate(&self) -> Result<(), ValidationError> {
        check_own_version("schema_version", self.schema_version)?;
        if self.event_id.is_nil() {
            return Err(ValidationError::new("event_id", "must not be the nil UUID"));
        }
        validate::check_id("device_id", &self.device_id)?;
        validate::check_id("camera_id", &self.camera_id)?;
        validate::check_id("site", &self.site)?;
        validate::check_time("event_time", self.event_time)?;
        self.clock.validate_at("clock")?;
        self.plate.validate_at("plate")?;
        match &self.speed {
            Some(speed) => {
                validate::check_range(
                    "speed.measured_kmh",
                    speed.measured_kmh,
                    0.0,
                    MAX_SPEED_KMH,
                )?;
                if speed.limit_kmh == 0 {
                    return Err(ValidationError::new("speed.limit_kmh", "must be positive"));
                }
                if let Some(u) = speed.uncertainty_kmh {
                    validate::check_range("speed.uncertainty_kmh", u, 0.0, MAX_SPEED_KMH)?;
                }
            }
            None if self.violation_type == ViolationType::Speeding => {
                return Err(ValidationError::new("speed", "required for speeding"));
            }
            None => {}
        }
        match &self.signal {
            Some(signal) => {
                if let Some(ms) = signal.red_for_ms {
                    validate::check_safe_integer("signal.red_for_ms", ms)?;
                }
            }
            None if self.violation_type == ViolationType::RedLight => {
                return Err(ValidationError::new("signal", "required for red_light"));
            }
            None => {}
        }
        self.track.validate_at("track")?;
        evidence::validate_manifest("evidence", &self.evidence, self.event_time)?;
        validate::check_ascii_text("software_version", &self.software_version, MAX_SHORT_TEXT)?;
        if let Some(h) = &self.site_config_sha256 {
            validate::check_sha256_hex("site_config_sha256", h)?;
        }
        Ok(())
    }
}

impl DeviceMessage for ViolationEvent {
    const CHANNEL: Channel = Channel::Events;

    fn device_id(&self) -> &str {
        &self.device_id
    }

    fn site(&self) -> &str {
        &self.site
    }
}
