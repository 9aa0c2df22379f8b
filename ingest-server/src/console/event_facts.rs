//! What the console shows straight from the signed event (the record the
//! device signed, kept as received): the signal as observed, the
//! trajectory over the overview, and where the plate was read. These are
//! read from the stored signed event (parsed once per page) rather than
//! from columns because they are the device's own statement, shown as it
//! made it; an event that cannot be read back (`None`) shows "—", never an
//! error page.

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
