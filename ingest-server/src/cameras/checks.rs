//! The verify step's check of an event against its camera's registry entry
//! ([`check`], called from `ingest::verify`): unknown or retired camera,
//! violation type not approved, speeding without a valid inspection
//! certificate on the event's date in Vietnam. Pure, so it is tested here
//! without a database.
//!
//! Part of [`crate::cameras`], which re-exports [`check`] and
//! [`CameraRefusal`]; the caller looks the cameras up with
//! [`crate::cameras::for_devices`].

use protocol::{ViolationEvent, ViolationType};

use super::{Camera, rules_text};

/// Vietnam time, in which a certificate's last valid day is read.
const VIETNAM: time::UtcOffset = time::macros::offset!(+7);

/// Why an event's camera does not allow it: quarantine reason code and
/// message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraRefusal {
    /// Stable reason code (`unknown_camera`, `retired_camera`,
    /// `rule_not_enabled`, `certification_missing`, `certification_expired`).
    pub code: &'static str,
    /// What was wrong.
    pub message: String,
}

/// Checks a verified event against the registry entry of its camera
/// (`None`: not enrolled). Pure.
pub fn check(
    camera: Option<&Camera>,
    event: &ViolationEvent,
    require_known_camera: bool,
) -> Result<(), CameraRefusal> {
    let refuse = |code, message| Err(CameraRefusal { code, message });
    let Some(camera) = camera else {
        // A speed fine needs a certified measuring device, and only an
        // enrolled camera has a certificate on record.
        if event.violation_type == ViolationType::Speeding {
            return refuse(
                "certification_missing",
                format!(
                    "speeding from camera `{}` of device `{}`, which is not enrolled (so has no \
                     inspection certificate on record)",
                    event.camera_id, event.device_id
                ),
            );
        }
        if require_known_camera {
            return refuse(
                "unknown_camera",
                format!(
                    "camera `{}` is not enrolled for device `{}`",
                    event.camera_id, event.device_id
                ),
            );
        }
        return Ok(());
    };
    let event_ms =
        i64::try_from(event.event_time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    if let Some(retired) = camera.retired_at
        && event_ms >= retired
    {
        return refuse(
            "retired_camera",
            format!(
                "camera `{}` of device `{}` was retired at {} ({}), before the event time {}",
                camera.camera_id,
                camera.device_id,
                crate::notices::text::rfc3339(retired),
                camera.retired_reason.as_deref().unwrap_or(""),
                event.event_time
            ),
        );
    }
    if let Some(rules) = &camera.enabled_rules
        && !rules.contains(&event.violation_type)
    {
        return refuse(
            "rule_not_enabled",
            format!(
                "camera `{}` of device `{}` is not approved for {} (enabled_rules: {})",
                camera.camera_id,
                camera.device_id,
                crate::ingest::enum_text(&event.violation_type),
                rules_text(rules)
            ),
        );
    }
    if event.violation_type == ViolationType::Speeding {
        let day = event.event_time.to_offset(VIETNAM).date();
        match camera.certified_until_date() {
            None => {
                return refuse(
                    "certification_missing",
                    format!(
                        "speeding from camera `{}` of device `{}`, which has no inspection \
                         certificate (certified_until) on record",
                        camera.camera_id, camera.device_id
                    ),
                );
            }
            Some(until) if day > until => {
                return refuse(
                    "certification_expired",
                    format!(
                        "speeding on {day} from camera `{}` of device `{}`, whose inspection \
                         certificate {} was valid until {until}",
                        camera.camera_id,
                        camera.device_id,
                        camera.certificate_no.as_deref().unwrap_or("(no number)")
                    ),
                );
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn camera() -> Camera {
        Camera {
            id: "x".into(),
            device_id: "edge-1".into(),
            camera_id: "cam-north".into(),
            site: "site-1".into(),
            description: "Xuân Thủy × Cầu Giấy, hướng Bắc".into(),
            latitude: Some(21.036),
            longitude: Some(105.79),
            enabled_rules: None,
            certificate_no: Some("KĐ-123".into()),
            certified_until: Some("2026-06-30".into()),
            status: "active".into(),
            created_at: 0,
            retired_at: None,
            retired_reason: None,
        }
    }

    fn event(t: ViolationType, at: &str) -> ViolationEvent {
        let mut e: ViolationEvent = serde_json::from_value(serde_json::json!({
            "schema_version": "1.0", "event_id": uuid::Uuid::new_v4(), "device_id": "edge-1",
            "camera_id": "cam-north", "site": "site-1", "event_time": at,
            "clock": {"status": "synced"}, "violation_type": "red_light",
            "vehicle_class": "car",
            "plate": {"readable": false, "colour": "unknown"},
            "track": {"track_id": 1, "first_seen": at, "last_seen": at, "frame_count": 1,
                      "points": []},
            "evidence": [], "software_version": "t"
        }))
        .unwrap();
        e.violation_type = t;
        e
    }

    #[test]
    fn unknown_camera_only_when_required() {
        let e = event(ViolationType::RedLight, "2026-01-01T10:00:00+07:00");
        assert_eq!(check(None, &e, true).unwrap_err().code, "unknown_camera");
        assert!(check(None, &e, false).is_ok());
        assert!(check(Some(&camera()), &e, true).is_ok());
    }

    #[test]
    fn speeding_from_an_unknown_camera_is_refused_whatever_the_flag() {
        let e = event(ViolationType::Speeding, "2026-01-01T10:00:00+07:00");
        assert_eq!(
            check(None, &e, false).unwrap_err().code,
            "certification_missing"
        );
    }

    #[test]
    fn retired_refuses_events_after_retirement_only() {
        let mut c = camera();
        let e = event(ViolationType::RedLight, "2026-01-01T10:00:00+07:00");
        let at = i64::try_from(e.event_time.unix_timestamp_nanos() / 1_000_000).unwrap();
        c.retired_at = Some(at + 1);
        assert!(check(Some(&c), &e, true).is_ok(), "made before retirement");
        c.retired_at = Some(at);
        assert_eq!(
            check(Some(&c), &e, false).unwrap_err().code,
            "retired_camera"
        );
    }

    #[test]
    fn rules_and_speed_certification() {
        let mut c = camera();
        c.enabled_rules = Some(vec![ViolationType::RedLight, ViolationType::Speeding]);
        let wrong = event(ViolationType::WrongWay, "2026-01-01T10:00:00+07:00");
        let r = check(Some(&c), &wrong, true).unwrap_err();
        assert_eq!(r.code, "rule_not_enabled");
        assert!(r.message.contains("wrong_way"), "{}", r.message);
        // The last valid day counts in Vietnam time: 23:30 on 30 June in
        // Hanoi is still in force, 00:30 on 1 July is not (even though it is
        // 30 June in UTC).
        let last = event(ViolationType::Speeding, "2026-06-30T23:30:00+07:00");
        assert!(check(Some(&c), &last, true).is_ok());
        let after = event(ViolationType::Speeding, "2026-06-30T17:30:00Z");
        assert_eq!(
            check(Some(&c), &after, true).unwrap_err().code,
            "certification_expired"
        );
        c.certified_until = None;
        assert_eq!(
            check(Some(&c), &last, true).unwrap_err().code,
            "certification_missing"
        );
        // Other types do not need the certificate.
        let red = event(ViolationType::RedLight, "2030-01-01T10:00:00+07:00");
        assert!(check(Some(&c), &red, true).is_ok());
    }
}
