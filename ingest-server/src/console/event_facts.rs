//! What the console shows straight from the signed event (the record the
//! device signed, kept as received): the signal as observed, the
//! trajectory over the overview, where the plate was read and who rode the
//! vehicle. These are read from the stored signed event (parsed once per
//! page) rather than from columns because they are the device's own
//! statement, shown as it made it; an event that cannot be read back
//! (`None`) shows "—", never an error page.

use super::html::Lang;
use protocol::ViolationEvent;

pub(super) fn signal_text(lang: Lang, event: Option<&ViolationEvent>) -> String {
    match event.and_then(|e| e.signal.as_ref()) {
        Some(s) => {
            let state = crate::ingest::enum_text(&s.state);
            let red = s
                .red_for_ms
                .map(|ms| {
                    format!(
                        " ({} {:.1} s)",
                        lang.t("đỏ được", "red for"),
                        ms as f64 / 1000.0
                    )
                })
                .unwrap_or_default();
            format!("{state}{red}")
        }
        None => "—".into(),
    }
}

/// The device clock's state when it stamped the event, for beside the
/// violation time (`id="clock-sync"`): synchronised, or a warning badge
/// for a clock that was not (with its offset) or whose state is unknown.
pub(super) fn clock_sync_html(lang: Lang, event: Option<&ViolationEvent>) -> String {
    use crate::integrity::{clock_en, clock_synced, clock_vi};
    match event {
        Some(e) if clock_synced(e) => format!(
            "<span class=\"muted\" id=\"clock-sync\">{}</span>",
            super::html::esc(lang.t(&clock_vi(e), &clock_en(e)))
        ),
        Some(e) => format!(
            "<span class=\"badge late\" id=\"clock-sync\">{}</span>",
            super::html::esc(lang.t(&clock_vi(e), &clock_en(e)))
        ),
        None => format!(
            "<span class=\"badge late\" id=\"clock-sync\">{}</span>",
            lang.t(
                "không đọc được trạng thái đồng hồ",
                "clock state unreadable"
            )
        ),
    }
}

/// The trajectory as SVG points (full-frame pixel coordinates).
pub(super) fn trajectory(event: Option<&ViolationEvent>) -> String {
    let Some(e) = event else {
        return String::new();
    };
    let pts: Vec<String> = e
        .track
        .points
        .iter()
        .map(|p| format!("{},{}", p.x, p.y))
        .collect();
    pts.join(" ")
}

/// Where the plate was read (schema 1.1 `plate.source`): the frame and the
/// plate's box inside the violator's box, so the reviewer can match the
/// `plate_vehicle.jpg` still to the read. Empty for an older event or an
/// unreadable plate.
pub(super) fn plate_source_text(lang: Lang, event: Option<&ViolationEvent>) -> String {
    let Some(s) = event.and_then(|e| e.plate.source) else {
        return String::new();
    };
    let [px, py, pw, ph] = s.plate_box;
    let [vx, vy, vw, vh] = s.vehicle_box;
    format!(
        "{} {} · {} {pw}×{ph} @ ({px}, {py}) · {} {vw}×{vh} @ ({vx}, {vy})",
        lang.t("Đọc biển ở khung hình", "Plate read on frame"),
        s.frame,
        lang.t("biển", "plate"),
        lang.t("trong khung xe vi phạm", "inside the violator's box"),
    )
}

/// The people the device saw riding the vehicle (schema 1.2
/// `track.riders`), after the vehicle's class: "· 2 riders seen". An
/// observation for the reviewer (a passenger, three on one motorbike),
/// not a charge. Empty when the device saw none or is older.
pub(super) fn riders_text(lang: Lang, event: Option<&ViolationEvent>) -> String {
    match event.and_then(|e| e.track.riders) {
        Some(n) => format!(
            " · {n} {}",
            lang.t("người trên xe (camera thấy)", "riding (as the camera saw)")
        ),
        None => String::new(),
    }
}

/// The speed's measurement uncertainty as the device stated it (schema
/// 1.2), after the measured speed: " ± 0.6". Empty for older events.
pub(super) fn speed_uncertainty_text(event: Option<&ViolationEvent>) -> String {
    event
        .and_then(|e| e.speed.as_ref())
        .and_then(|s| s.uncertainty_kmh)
        .map(|u| format!(" ± {u:.1}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn motorbike(riders: Option<u8>) -> ViolationEvent {
        let at = "2026-01-01T10:00:00+07:00";
        let mut track = serde_json::json!({"track_id": 1, "first_seen": at, "last_seen": at,
                                           "frame_count": 1, "points": []});
        if let Some(n) = riders {
            track["riders"] = n.into();
        }
        serde_json::from_value(serde_json::json!({
            "schema_version": "1.2", "event_id": uuid::Uuid::new_v4(), "device_id": "edge-1",
            "camera_id": "cam-north", "site": "site-1", "event_time": at,
            "clock": {"status": "synced"}, "violation_type": "wrong_way",
            "vehicle_class": "motorcycle",
            "plate": {"readable": false, "colour": "unknown"},
            "track": track, "evidence": [], "software_version": "t"
        }))
        .unwrap()
    }

    #[test]
    fn riders_are_shown_only_when_the_device_saw_them() {
        let two = motorbike(Some(2));
        assert_eq!(
            riders_text(Lang::En, Some(&two)),
            " · 2 riding (as the camera saw)"
        );
        assert!(riders_text(Lang::Vi, Some(&two)).starts_with(" · 2 người"));
        assert_eq!(riders_text(Lang::En, Some(&motorbike(None))), "");
        assert_eq!(riders_text(Lang::En, None), "");
    }

    #[test]
    fn a_speed_shows_its_uncertainty_when_the_device_gave_it() {
        let mut e = motorbike(None);
        assert_eq!(speed_uncertainty_text(Some(&e)), "");
        e.speed = Some(protocol::Speed {
            measured_kmh: 57.6,
            limit_kmh: 50,
            uncertainty_kmh: Some(0.602),
        });
        assert_eq!(speed_uncertainty_text(Some(&e)), " ± 0.6");
    }
}
