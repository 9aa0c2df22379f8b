//! The verify step of ingest: turns the raw bytes of one event bundle into
//! either an accepted event (known, enrolled, not revoked device; Ed25519
//! signature over the canonical bytes; the topic it came on; stills that
//! match the signed manifest; plausible fields) or a rejection with a stable
//! reason code, for the quarantine and, when the refusal is about the
//! bytes rather than where they arrived ([`Grounds`]), for the device's
//! ack. The event's camera is checked against the camera registry
//! ([`crate::cameras::check`]: enrolled for the device, not retired,
//! approved for the violation type, speed certificate in force). Pure: no
//! I/O, so it runs on a blocking thread and is tested without a database.

use std::collections::HashMap;

use bytes::Bytes;
use plate_ocr::plate::PlateGrammar;
use protocol::{
    Attachment, EventBundle, EvidenceRole, ProtocolError, RejectCode, ViolationEvent, topics,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cameras::Camera;
use crate::devices::Device;

/// Where a bundle came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An MQTT message on this topic.
    Mqtt(String),
    /// `POST /api/v1/violations`.
    Http,
}

impl Source {
    /// As stored in the quarantine and on cases.
    pub fn label(&self) -> &str {
        match self {
            Source::Mqtt(topic) => topic,
            Source::Http => "http",
        }
    }
}

/// A bundle that passed every check.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The verified event.
    pub event: ViolationEvent,
    /// The signed envelope as canonical JSON (kept verbatim on the case).
    pub signed_json: String,
    /// The stills carried in the bundle (checked against the manifest).
    pub attachments: Vec<Attachment>,
}

/// What a refusal is about, which decides whether the device is told.
///
/// A rejection tells a device to set an event aside for good, and it is
/// bound to the hash of the refused bytes (`Ack::bound_to`), so a device
/// believes it only of bytes it sent itself. That binding is enough only
/// when the verdict follows from the bytes alone: if the same bytes would
/// be accepted elsewhere or at another time, anyone able to publish on the
/// broker (the embedded one has no topic ACLs) could republish a device's
/// genuine bundle where it is refused and hand the device the signed
/// rejection of its own bytes, and the device would drop a real violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grounds {
    /// The bytes themselves: malformed, bad signature, evidence that does
    /// not match the signed manifest, implausible fields, an unknown or
    /// revoked device, an event the device itself already stored with
    /// other content. The same bytes are refused wherever and whenever
    /// they arrive, so the device gets a signed rejection bound to them.
    Bytes,
    /// Where the bytes arrived (a topic whose site, device or channel is
    /// not theirs) or what someone else stored before them (another
    /// device's event under the same id). Quarantined, never answered:
    /// the device resends until its own copy arrives where it belongs, and
    /// the quarantine keeps the bytes and the row once however often they
    /// come (`quarantine::insert_once`).
    Arrival,
}

impl Grounds {
    /// The grounds of a refusal from the protocol's checks: a topic that
    /// does not match the message (or cannot be read) is about the
    /// arrival; everything else is about the bytes.
    pub fn of(e: &ProtocolError) -> Self {
        match e {
            ProtocolError::TopicMismatch { .. } | ProtocolError::Topic(_) => Grounds::Arrival,
            _ => Grounds::Bytes,
        }
    }
}

/// A bundle that failed a check.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// Code sent to the device in the ack.
    pub ack_code: RejectCode,
    /// Code kept in the quarantine (finer than the ack's, e.g.
    /// `revoked_device`).
    pub reason_code: String,
    /// What was wrong.
    pub reason: String,
    /// The event id, if it could be read (then the device gets an ack).
    pub event_id: Option<Uuid>,
    /// The device the bundle claimed to come from (a boxed `str`, which
    /// keeps a rejection small with [`Self::redelivery`] in it).
    pub device_claimed: Option<Box<str>>,
    /// The bundle's signature held and its attachments are the ones the
    /// signed manifest names: every byte came from an enrolled device (so
    /// they are worth keeping; see `ingest::commit_batch`). A signed event
    /// with other attachments is not: anyone can take a signed event from
    /// a court package and attach megabytes of their own.
    pub signed: bool,
    /// Whether the refusal is about the bytes (answered with a bound
    /// rejection) or about where they arrived (not answered).
    pub grounds: Grounds,
    /// The bundle as verified, when its signature, device and attachments
    /// held and only a check against the server's *current* state refused
    /// it (camera registry, plate grammar, the clock: `check_state`).
    /// Such a refusal holds only for an event the server does not have: an
    /// event id already stored with this content is a redelivery whose ack
    /// was lost, answered `duplicate` whatever the state says now, and one
    /// stored with other content is an `event_id_conflict`
    /// (`ingest::rows::settle_stored`, before anything is written).
    pub redelivery: Option<Box<Accepted>>,
}

impl Rejection {
    fn protocol(e: &ProtocolError, event_id: Option<Uuid>, device: Option<String>) -> Self {
        let ack_code = e.reject_code();
        Self {
            reason_code: code_text(&ack_code),
            ack_code,
            reason: e.to_string(),
            event_id,
            device_claimed: device.map(String::into_boxed_str),
            signed: false,
            grounds: Grounds::of(e),
            redelivery: None,
        }
    }

    fn new(
        ack_code: RejectCode,
        reason_code: &str,
        reason: String,
        event_id: Option<Uuid>,
        device: Option<String>,
    ) -> Self {
        Self {
            ack_code,
            reason_code: reason_code.to_owned(),
            reason,
            event_id,
            device_claimed: device.map(String::into_boxed_str),
            signed: false,
            grounds: Grounds::Bytes,
            redelivery: None,
        }
    }

    /// Whether the device gets a (bound, signed) rejection: only when the
    /// refusal is about the bytes themselves ([`Grounds`]) and names an
    /// event.
    pub fn answered(&self) -> bool {
        self.grounds == Grounds::Bytes && self.event_id.is_some()
    }
}

/// The snake_case text of a reject code.
pub fn code_text(code: &RejectCode) -> String {
    match serde_json::to_value(code) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "internal".to_owned(),
    }
}

/// What the verify step needs besides the bytes.
pub struct Checks<'a> {
    /// Enrolled devices by id (those the batch refers to).
    pub devices: &'a HashMap<String, Device>,
    /// The camera registry's entries of those devices, by
    /// `(device_id, camera_id)`.
    pub cameras: &'a HashMap<(String, String), Camera>,
    /// Whether a camera missing from the registry is refused.
    pub require_known_camera: bool,
    /// The server's clock.
    pub now: OffsetDateTime,
    /// How far in the future an event time may be.
    pub clock_tolerance: time::Duration,
    /// The plate grammar.
    pub grammar: &'a PlateGrammar,
}

/// Decodes and verifies one bundle.
pub fn verify_bundle(
    bytes: &Bytes,
    source: &Source,
    checks: &Checks,
) -> Result<Accepted, Rejection> {
    verify_decoded(decode(bytes)?, source, checks)
}

/// Decodes a bundle's frame (first half of [`verify_bundle`]; the batch
/// decodes first to learn which devices to load).
pub fn decode(bytes: &Bytes) -> Result<EventBundle, Rejection> {
    EventBundle::decode(bytes).map_err(|e| Rejection::protocol(&e, None, None))
}

/// Verifies a decoded bundle (second half of [`verify_bundle`]).
pub fn verify_decoded(
    bundle: EventBundle,
    source: &Source,
    checks: &Checks,
) -> Result<Accepted, Rejection> {
    let signed = &bundle.event;
    let event_id = signed.unverified_event_id();
    let claimed = Some(signed.device_id().to_owned());
    let reject = |code: RejectCode, reason_code: &str, reason: String| {
        Rejection::new(code, reason_code, reason, event_id, claimed.clone())
    };

    let device = checks.devices.get(signed.device_id()).ok_or_else(|| {
        reject(
            RejectCode::UnknownDevice,
            "unknown_device",
            format!("device `{}` is not enrolled", trunc(signed.device_id())),
        )
    })?;
    if device.is_revoked() {
        return Err(reject(
            RejectCode::UnknownDevice,
            "revoked_device",
            format!("device `{}` is revoked", device.device_id),
        ));
    }
    let key = device.verifying_key().map_err(|e| {
        reject(
            RejectCode::Internal,
            "internal",
            format!("stored key unusable: {e}"),
        )
    })?;

    let event = match source {
        Source::Mqtt(topic) => {
            let addr = topics::parse_topic(topic)
                .map_err(|e| Rejection::protocol(&e.into(), event_id, claimed.clone()))?;
            signed.verify_for_topic(&key, &addr)
        }
        Source::Http => signed.verify(&key),
    }
    .map_err(|e| Rejection::protocol(&e, event_id, claimed.clone()))?;
    // The attachments are outside the signature: only once they are the
    // ones the signed manifest names is every byte the device's own.
    let missing = protocol::check_attachments(&event, &bundle.attachments).map_err(|e| {
        Rejection::protocol(
            &ProtocolError::Evidence(e),
            Some(event.event_id),
            claimed.clone(),
        )
    })?;
    // A still the device could no longer read from its spool is left out
    // of the bundle (`edge-agent/src/delivery`): the case is kept, the
    // still recorded as missing for the people reviewing it. Refusing the
    // event would lose the violation: the device sets a refused event
    // aside, and the still will never come.
    for still in missing.iter().filter(|i| i.role != EvidenceRole::Clip) {
        tracing::warn!(
            event_id = %event.event_id,
            item = still.name,
            role = ?still.role,
            "a still named in the signed manifest is not in the bundle: recorded as missing"
        );
    }
    let signed_json = String::from_utf8(
        bundle
            .event
            .to_json()
            .map_err(|e| Rejection::protocol(&e, Some(event.event_id), claimed.clone()))?,
    )
    .map_err(|_| {
        reject(
            RejectCode::Internal,
            "internal",
            "canonical JSON not UTF-8".into(),
        )
    })?;
    let accepted = Accepted {
        event,
        signed_json,
        attachments: bundle.attachments,
    };
    // From here on the bundle is the device's own: a refusal says so, and
    // carries the bundle, since it holds only for an event not yet stored.
    match check_state(&accepted, device, checks, &reject) {
        Ok(()) => Ok(accepted),
        Err(mut r) => {
            r.signed = true;
            r.redelivery = Some(Box::new(accepted));
            Err(r)
        }
    }
}

/// How long after a violation a fine can still be imposed (the one
/// source: [`crate::workflow::LIMITATION_DAYS`]).
const LIMITATION_PERIOD: time::Duration = time::Duration::days(crate::workflow::LIMITATION_DAYS);

/// The checks a reviewer's type correction (`review`) is held to, so a
/// corrected type is held to what a device sending that type would be: a
/// red-light or stop-line case records a red signal
/// ([`correction_signal_check`]), and the camera is approved for the type
/// (with a valid certificate for speeding; `cameras::check`). `camera` is
/// the registry entry of the event's camera (`None`: not enrolled).
pub fn type_checks(
    event: &protocol::ViolationEvent,
    camera: Option<&crate::cameras::Camera>,
    require_known_camera: bool,
) -> Result<(), crate::cameras::CameraRefusal> {
    correction_signal_check(event)?;
    crate::cameras::check(camera, event, require_known_camera)
}

/// A red-light case is a crossing on red: the signal it records must say
/// so, or the case proves nothing (the protocol's validation already
/// requires a signal for it). Checked on arrival, not in the protocol's
/// validation, which also runs when a stored event's signature is checked
/// again for a court package.
pub fn signal_check(event: &protocol::ViolationEvent) -> Result<(), crate::cameras::CameraRefusal> {
    if event.violation_type == protocol::ViolationType::RedLight && !on_red(event) {
        return Err(not_red(event));
    }
    Ok(())
}

/// [`signal_check`] for a reviewer's type correction, stricter: a case
/// becomes a red-light or a stop-line one ("stopped beyond the stop line
/// during red") only if its device recorded a red signal — not a case
/// that recorded none (a wrong-lane one) or another colour. (On arrival a
/// device's own stop-line case is taken as its rules judged it: they treat
/// a lamp unreadable since red as red.)
fn correction_signal_check(
    event: &protocol::ViolationEvent,
) -> Result<(), crate::cameras::CameraRefusal> {
    use protocol::ViolationType::{RedLight, StopLine};
    if matches!(event.violation_type, RedLight | StopLine) && !on_red(event) {
        return Err(not_red(event));
    }
    Ok(())
}

fn on_red(event: &protocol::ViolationEvent) -> bool {
    event
        .signal
        .as_ref()
        .is_some_and(|s| s.state == protocol::SignalState::Red)
}

fn not_red(event: &protocol::ViolationEvent) -> crate::cameras::CameraRefusal {
    crate::cameras::CameraRefusal {
        code: "signal_not_red",
        message: format!(
            "a {} event whose recorded signal is {}",
            crate::ingest::enum_text(&event.violation_type),
            match &event.signal {
                Some(s) => crate::ingest::enum_text(&s.state),
                None => "absent".into(),
            }
        ),
    }
}

/// The checks of a bundle whose signature held ([`verify_decoded`]): its
/// fields, and what depends on the server's current state (the device's
/// enrolled site, the clock and the limitation period, the plate grammar,
/// the camera registry). What they refuse, they refuse for a new event
/// only: an event stored before the state changed is not judged again
/// (see [`Rejection::redelivery`]).
fn check_state(
    accepted: &Accepted,
    device: &crate::devices::Device,
    checks: &Checks,
    reject: &dyn Fn(RejectCode, &str, String) -> Rejection,
) -> Result<(), Rejection> {
    let event = &accepted.event;
    // About the bytes, not where they came (`Grounds::Bytes`): the topic
    // already matched the signed site, and the signed site is not where
    // the device is enrolled, on whatever topic the bundle comes.
    if event.site != device.site {
        return Err(reject(
            RejectCode::WrongTopic,
            "site_mismatch",
            format!(
                "event site `{}` is not the site `{}` device `{}` is enrolled at",
                event.site, device.site, device.device_id
            ),
        ));
    }

    if event.event_time > checks.now + checks.clock_tolerance {
        return Err(reject(
            RejectCode::Invalid,
            "future_time",
            format!(
                "event_time {} is more than {} s ahead of the server clock ({})",
                event.event_time,
                checks.clock_tolerance.whole_seconds(),
                checks.now
            ),
        ));
    }
    if let Err(r) = signal_check(event) {
        return Err(reject(RejectCode::Invalid, r.code, r.message));
    }
    // Past the limitation period (one year for traffic violations, Law on
    // Handling Administrative Violations, Art. 6) nobody can be fined: an
    // event that old is a device clock gone wrong, or a backdated one.
    if event.event_time < checks.now - LIMITATION_PERIOD {
        return Err(reject(
            RejectCode::Invalid,
            "past_limitation",
            format!(
                "event_time {} is more than {} days before the server clock ({}): past the \
                 limitation period",
                event.event_time,
                LIMITATION_PERIOD.whole_days(),
                checks.now
            ),
        ));
    }
    if event.plate.readable
        && let Some(text) = &event.plate.text
        && let Err(e) = checks.grammar.parse(text)
    {
        return Err(reject(
            RejectCode::Invalid,
            "plate_grammar",
            format!(
                "plate.text {:?} fits no known plate layout: {e}",
                trunc(text)
            ),
        ));
    }
    // The display form is printed on the court summary and the notice
    // where no reviewer corrected the plate: it must be the same plate as
    // the text the owner is looked up by.
    if event.plate.readable
        && let (Some(text), Some(display)) = (&event.plate.text, &event.plate.display)
        && checks
            .grammar
            .parse(display)
            .map_or(true, |p| p.canonical != *text)
    {
        return Err(reject(
            RejectCode::Invalid,
            "plate_display",
            format!(
                "plate.display {:?} is not the plate {:?} of plate.text",
                trunc(display),
                trunc(text)
            ),
        ));
    }
    // Since schema 1.1 a readable plate says where on the violator it was
    // read (the frame, the plate's box inside the vehicle's): without it
    // nothing shows the plate belongs to the vehicle that broke the rule.
    // The edge sends such a read as unreadable; older edges had no field.
    if event.plate.readable
        && event.plate.source.is_none()
        && event.schema_version >= protocol::SchemaVersion::new(1, 1)
    {
        return Err(reject(
            RejectCode::Invalid,
            "plate_source",
            "a readable plate without plate.source (where on the violator it was read)".into(),
        ));
    }

    let camera = checks
        .cameras
        .get(&(event.device_id.clone(), event.camera_id.clone()));
    if let Err(r) = crate::cameras::check(camera, event, checks.require_known_camera) {
        return Err(reject(RejectCode::Invalid, r.code, r.message));
    }
    Ok(())
}

fn trunc(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(80).collect()
}
