//! Semantic checks of a parsed site file. Each failure is the field path
//! and a message; [`super::SiteError::semantic`] adds file, line and column.

use super::{FrameSize, Manoeuvre, Rect, SiteConfig};
use crate::geometry::{Homography, Point, Polygon, Segment, angle_diff_deg};
use std::collections::HashSet;

type Check = Result<(), (String, String)>;

/// Smallest `speed.pixel_error_px` a site may claim.
const MIN_PIXEL_ERROR_PX: f64 = 1.0;
/// Smallest `speed.time_error_ms` a site may claim.
const MIN_TIME_ERROR_MS: f64 = 1.0;
/// Smallest `speed.homography.calibration_error` a site may claim.
const MIN_CALIBRATION_ERROR: f64 = 0.005;
/// `speed.homography.calibration_error` must be below this.
const MAX_CALIBRATION_ERROR: f64 = 0.2;
/// The range of `speed.camera_height_m`, metres.
const CAMERA_HEIGHT_M: std::ops::RangeInclusive<f64> = 3.0..=60.0;

fn fail<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T, (String, String)> {
    Err((field.into(), message.into()))
}

pub(super) fn validate(c: &SiteConfig) -> Check {
    // The camera id names the camera in signed events, heartbeats, thread
    // names and files: the protocol's id rules, not just "not empty".
    if let Some(why) = protocol::topics::id_problem(&c.camera_id) {
        return fail("camera_id", why);
    }
    let frame = c.frame;
    if frame.width == 0 || frame.height == 0 {
        return fail("frame", "width and height must be positive");
    }
    if let Some(a) = c.detection.motorbike_min_aspect
        && !(1.2..=4.0).contains(&a)
    {
        return fail(
            "detection.motorbike_min_aspect",
            "must be 1.2 to 4.0 (height over width of a box)",
        );
    }
    if let Some(p) = c.detection.static_gate.and_then(|g| g.problem()) {
        return fail("detection.static_gate", p);
    }
    let mut ids = HashSet::new();
    for (i, s) in c.stop_lines.iter().enumerate() {
        let f = format!("stop_lines[{i}]");
        check_id(&f, &s.id, &mut ids)?;
        check_segment(&format!("{f}.points"), s.points, frame)?;
        if !s.approach_deg.is_finite() {
            return fail(
                format!("{f}.approach_deg"),
                "must be a finite number of degrees",
            );
        }
        let along = s.points.b.minus(s.points.a);
        let sin = along.cross(Point::from_heading(s.approach_deg)).abs() / along.norm();
        if sin < 0.25 {
            return fail(
                format!("{f}.approach_deg"),
                "the approach direction runs along the line; it must cross it",
            );
        }
    }
    ids.clear();
    for (i, g) in c.signals.iter().enumerate() {
        let f = format!("signals[{i}]");
        if !ids.insert(g.group.as_str()) {
            return fail(
                format!("{f}.group"),
                format!("lane group {:?} has two signals", g.group),
            );
        }
        match (&g.lamps, &g.mqtt_topic) {
            (Some(l), None) => {
                check_rect(&format!("{f}.lamps.red"), l.red, frame)?;
                check_rect(&format!("{f}.lamps.yellow"), l.yellow, frame)?;
                check_rect(&format!("{f}.lamps.green"), l.green, frame)?;
            }
            (None, Some(t)) => {
                if t.is_empty() || t.contains(['+', '#', '\0']) {
                    return fail(
                        format!("{f}.mqtt_topic"),
                        "must be a topic name without wildcards",
                    );
                }
                if c.signals[..i]
                    .iter()
                    .any(|o| o.mqtt_topic.as_deref() == Some(t))
                {
                    return fail(
                        format!("{f}.mqtt_topic"),
                        "another lane group's topic: each group has its own",
                    );
                }
                if t.starts_with("tv/") || t.starts_with('$') {
                    return fail(
                        format!("{f}.mqtt_topic"),
                        "tv/… is the devices' and the server's; use signals/v1/{site}/{group}",
                    );
                }
                match g
                    .controller_key
                    .as_deref()
                    .map(crate::config::parse_public_key)
                {
                    None => {
                        return fail(
                            format!("{f}.controller_key"),
                            "a fed group needs its controller's public key (64 hex characters): unsigned phases are not believed",
                        );
                    }
                    Some(Err(why)) => return fail(format!("{f}.controller_key"), why),
                    Some(Ok(_)) => {}
                }
                if g.picture_delay_ms > 5000 {
                    return fail(
                        format!("{f}.picture_delay_ms"),
                        "must be 0 to 5000 milliseconds",
                    );
                }
                if !(g.feed_silence_s.is_finite() && (0.5..=30.0).contains(&g.feed_silence_s)) {
                    return fail(format!("{f}.feed_silence_s"), "must be 0.5 to 30 seconds");
                }
            }
            _ => return fail(f, "needs exactly one of `lamps` and `mqtt_topic`"),
        }
        if !(1..=100).contains(&g.confirm_frames) {
            return fail(format!("{f}.confirm_frames"), "must be 1 to 100");
        }
        let [short, long] = g.yellow_s;
        if !(short.is_finite() && long.is_finite() && 1.0 <= short && short <= long && long <= 10.0)
        {
            return fail(
                format!("{f}.yellow_s"),
                format!(
                    "must be [shortest, longest] yellow in seconds, 1 <= shortest <= longest <= 10, got [{short}, {long}]"
                ),
            );
        }
    }
    ids.clear();
    for (i, lane) in c.lanes.iter().enumerate() {
        let f = format!("lanes[{i}]");
        check_id(&f, &lane.id, &mut ids)?;
        check_polygon(&format!("{f}.polygon"), &lane.polygon, frame)?;
        if lane.heading_deg.is_some_and(|h| !h.is_finite()) {
            return fail(format!("{f}.heading_deg"), "must be finite");
        }
        if lane.directions.is_empty() {
            return fail(
                format!("{f}.directions"),
                "must allow at least one direction",
            );
        }
        if lane.classes.is_empty() {
            return fail(
                format!("{f}.classes"),
                "must allow at least one vehicle class",
            );
        }
        if let Some(g) = &lane.group
            && c.signal(g).is_none()
        {
            return fail(
                format!("{f}.group"),
                format!("lane group {g:?} has no entry in [[signals]]"),
            );
        }
        if let Some(s) = &lane.stop_line {
            let Some(line) = c.stop_lines.iter().find(|l| &l.id == s) else {
                return fail(
                    format!("{f}.stop_line"),
                    format!("no stop line with id {s:?}"),
                );
            };
            // A lane runs towards its stop line: a heading against the
            // line's approach makes every lawful vehicle in it wrong-way.
            if let Some(h) = lane.heading_deg
                && angle_diff_deg(line.approach_deg, h).abs() > 90.0
            {
                return fail(
                    format!("{f}.heading_deg"),
                    format!(
                        "lane {:?} heads {h}°, more than 90° from the approach_deg {}° of its stop line {s:?}: every vehicle driving lawfully to the line would be wrong-way",
                        lane.id, line.approach_deg
                    ),
                );
            }
        }
        if lane.right_turn_on_red && !lane.directions.contains(&Manoeuvre::Right) {
            return fail(
                format!("{f}.right_turn_on_red"),
                "the lane does not allow right turns at all",
            );
        }
        let l = &lane.speed_limit_kmh;
        for (name, v) in [
            ("default", l.default),
            ("car", l.car),
            ("motorcycle", l.motorcycle),
            ("bus", l.bus),
            ("truck", l.truck),
        ] {
            if v == Some(0) {
                return fail(format!("{f}.speed_limit_kmh.{name}"), "must be positive");
            }
        }
    }
    if let Some(s) = &c.speed {
        check_speed(s, frame)?;
    }
    ids.clear();
    for (i, z) in c.no_stopping_zones.iter().enumerate() {
        let f = format!("no_stopping_zones[{i}]");
        check_id(&f, &z.id, &mut ids)?;
        check_polygon(&format!("{f}.polygon"), &z.polygon, frame)?;
        if !(z.max_dwell_s.is_finite() && z.max_dwell_s > 0.0) {
            return fail(format!("{f}.max_dwell_s"), "must be positive");
        }
    }
    for (i, m) in c.privacy_masks.iter().enumerate() {
        check_polygon(&format!("privacy_masks[{i}].polygon"), &m.polygon, frame)?;
    }
    check_rules(c)
}

fn check_speed(s: &super::SpeedCalibration, frame: FrameSize) -> Check {
    // The errors make the σ a speeding case must clear the limit by 2σ
    // of: none, or less than is real, takes that margin from the driver.
    if !(s.pixel_error_px.is_finite() && s.pixel_error_px >= MIN_PIXEL_ERROR_PX) {
        return fail(
            "speed.pixel_error_px",
            format!(
                "must be at least {MIN_PIXEL_ERROR_PX} px: a detector's box edge is never surer than a pixel, and the speed's uncertainty (the 2σ margin a driver is given) is made from it"
            ),
        );
    }
    if !(s.time_error_ms.is_finite() && s.time_error_ms >= MIN_TIME_ERROR_MS) {
        return fail(
            "speed.time_error_ms",
            format!(
                "must be at least {MIN_TIME_ERROR_MS} ms: frame times are never surer than that, and the speed's uncertainty (the 2σ margin a driver is given) is made from it"
            ),
        );
    }
    if let Some(h) = s.camera_height_m
        && !(h.is_finite() && CAMERA_HEIGHT_M.contains(&h))
    {
        return fail(
            "speed.camera_height_m",
            format!(
                "must be {} to {} m (the camera's height above the road)",
                CAMERA_HEIGHT_M.start(),
                CAMERA_HEIGHT_M.end()
            ),
        );
    }
    match (&s.two_lines, &s.homography) {
        (Some(t), None) => {
            for (i, l) in t.lines.iter().enumerate() {
                check_segment(&format!("speed.two_lines.lines[{i}]"), *l, frame)?;
            }
            let [a, b] = t.lines;
            if a.crossing(b.a, b.b).is_some() || b.crossing(a.a, a.b).is_some() {
                return fail("speed.two_lines.lines", "the two lines must not cross");
            }
            if !(t.distance_m.is_finite() && t.distance_m > 0.0) {
                return fail("speed.two_lines.distance_m", "must be positive");
            }
            if !(t.distance_error_m.is_finite()
                && (0.0..t.distance_m).contains(&t.distance_error_m))
            {
                return fail(
                    "speed.two_lines.distance_error_m",
                    "must be zero or positive and below distance_m",
                );
            }
            Ok(())
        }
        (None, Some(h)) => {
            for (i, p) in h.image.iter().enumerate() {
                check_point(&format!("speed.homography.image[{i}]"), *p, frame)?;
            }
            if h.window_ms == 0 {
                return fail("speed.homography.window_ms", "must be positive");
            }
            if !(h.calibration_error.is_finite()
                && (MIN_CALIBRATION_ERROR..MAX_CALIBRATION_ERROR).contains(&h.calibration_error))
            {
                return fail(
                    "speed.homography.calibration_error",
                    format!(
                        "must be at least {MIN_CALIBRATION_ERROR} and below {MAX_CALIBRATION_ERROR}: no survey of four ground points is surer, and the speed's uncertainty (the 2σ margin a driver is given) is made from it"
                    ),
                );
            }
            match Homography::from_points(&h.image, &h.ground_m) {
                Ok(_) => Ok(()),
                Err(e) => fail("speed.homography", format!("not a usable homography: {e}")),
            }
        }
        _ => fail(
            "speed",
            "needs exactly one of [speed.two_lines] and [speed.homography]",
        ),
    }
}

fn check_rules(c: &SiteConfig) -> Check {
    let r = &c.rules;
    let positive = [
        ("rules.motion.stationary_px_s", r.motion.stationary_px_s),
        ("rules.motion.heading_px", r.motion.heading_px),
        ("rules.stop_line.max_past_px", r.stop_line.max_past_px),
        ("rules.wrong_lane.decide_px", r.wrong_lane.decide_px),
        (
            "rules.wrong_way.min_distance_px",
            r.wrong_way.min_distance_px,
        ),
        (
            "rules.wrong_lane.straight_max_deg",
            r.wrong_lane.straight_max_deg,
        ),
    ];
    for (f, v) in positive {
        if !(v.is_finite() && v > 0.0) {
            return fail(f, "must be positive");
        }
    }
    let min_past = super::RedLightRule::MIN_CONFIRM_PAST_PX;
    if !(r.red_light.confirm_past_px.is_finite() && r.red_light.confirm_past_px >= min_past) {
        return fail(
            "rules.red_light.confirm_past_px",
            format!(
                "must be at least {min_past} px: a run is the vehicle clearly past the line, and a car standing at the line on red whose box jitters a few pixels over it must not be fined (default {} px)",
                super::RedLightRule::DEFAULT_CONFIRM_PAST_PX
            ),
        );
    }
    let non_negative = [
        ("rules.stop_line.min_past_px", r.stop_line.min_past_px),
        ("rules.speeding.tolerance_kmh", r.speeding.tolerance_kmh),
        (
            "rules.speeding.tolerance_fraction",
            r.speeding.tolerance_fraction,
        ),
        (
            "rules.speeding.max_uncertainty_kmh",
            r.speeding.max_uncertainty_kmh,
        ),
    ];
    for (f, v) in non_negative {
        if !(v.is_finite() && v >= 0.0) {
            return fail(f, "must be zero or positive");
        }
    }
    if r.motion.speed_window_ms == 0 {
        return fail("rules.motion.speed_window_ms", "must be positive");
    }
    check_rule_bounds(r)?;
    let wl = &r.wrong_lane;
    if !(wl.u_turn_min_deg.is_finite()
        && wl.u_turn_min_deg > wl.straight_max_deg
        && wl.u_turn_min_deg <= 180.0)
    {
        return fail(
            "rules.wrong_lane.u_turn_min_deg",
            "must be above straight_max_deg and at most 180",
        );
    }
    if r.speeding.enabled && c.speed.is_none() {
        return fail(
            "rules.speeding.enabled",
            "speeding needs a [speed] calibration",
        );
    }
    if r.illegal_stopping.enabled && c.no_stopping_zones.is_empty() {
        return fail(
            "rules.illegal_stopping.enabled",
            "needs at least one [[no_stopping_zones]]",
        );
    }
    Ok(())
}

/// The most frames a case may wait for its "after" frame: the evidence
/// ring keeps 7 s (or 250 frames) by default, 5 s of it before the case,
/// so at 30 fps some 60 frames after it are still there when it is
/// reported.
pub const MAX_AFTER_FRAMES: u32 = 60;

/// The longest `red_light.grace_ms`: Vietnam's shortest yellow (3 s). A
/// longer grace would let red-light runs go by the whole of a short red.
pub const MAX_GRACE_MS: u32 = 3000;

/// `stop_line.min_stopped_ms` bounds: shorter than half a second is a
/// vehicle slowing over the line, not standing beyond it; longer than a
/// minute outlasts most reds (no case would ever be made).
pub const STOPPED_MS: std::ops::RangeInclusive<u32> = 500..=60_000;

/// The shortest `wrong_way.min_distance_px`: less is box jitter.
pub const MIN_WRONG_WAY_PX: f64 = 20.0;

/// The fastest `motion.stationary_px_s` (px/s) still "standing": faster
/// would take slow traffic (a queue creeping on) for standing vehicles.
pub const MAX_STATIONARY_PX_S: f64 = 100.0;

/// Bounds of the rules' settings that a value of the right type may still
/// break (each error names the setting).
fn check_rule_bounds(r: &super::RulesConfig) -> Check {
    let ring = crate::evidence::RingLimits::default();
    let max_after = MAX_AFTER_FRAMES.min(u32::try_from(ring.max_frames).unwrap_or(u32::MAX));
    if r.after_frames > max_after {
        return fail(
            "rules.after_frames",
            format!(
                "must be at most {max_after}: the case's frames must still be in the evidence ring ({} s, {} frames) when it is reported",
                ring.max_age.as_secs(),
                ring.max_frames
            ),
        );
    }
    if r.red_light.grace_ms > MAX_GRACE_MS {
        return fail(
            "rules.red_light.grace_ms",
            format!("must be at most {MAX_GRACE_MS} ms (the shortest yellow)"),
        );
    }
    if !STOPPED_MS.contains(&r.stop_line.min_stopped_ms) {
        return fail(
            "rules.stop_line.min_stopped_ms",
            format!("must be {} to {} ms", STOPPED_MS.start(), STOPPED_MS.end()),
        );
    }
    // Both finite (checked above).
    if r.stop_line.min_past_px >= r.stop_line.max_past_px {
        return fail(
            "rules.stop_line.min_past_px",
            "must be less than rules.stop_line.max_past_px",
        );
    }
    if r.wrong_class.min_dwell_ms == 0 {
        return fail("rules.wrong_class.min_dwell_ms", "must be positive");
    }
    if r.wrong_class.min_observations == 0 {
        return fail("rules.wrong_class.min_observations", "must be positive");
    }
    if r.wrong_way.min_distance_px < MIN_WRONG_WAY_PX {
        return fail(
            "rules.wrong_way.min_distance_px",
            format!("must be at least {MIN_WRONG_WAY_PX} px (less is box jitter)"),
        );
    }
    if r.motion.stationary_px_s > MAX_STATIONARY_PX_S {
        return fail(
            "rules.motion.stationary_px_s",
            format!("must be at most {MAX_STATIONARY_PX_S} px/s"),
        );
    }
    Ok(())
}

fn check_id<'a>(field: &str, id: &'a str, seen: &mut HashSet<&'a str>) -> Check {
    if id.trim().is_empty() {
        return fail(format!("{field}.id"), "must not be empty");
    }
    if !seen.insert(id) {
        return fail(format!("{field}.id"), format!("duplicate id {id:?}"));
    }
    Ok(())
}

fn check_point(field: &str, p: Point, frame: FrameSize) -> Check {
    if !p.is_finite() {
        return fail(field, "coordinates must be finite numbers");
    }
    let (w, h) = (f64::from(frame.width), f64::from(frame.height));
    if !(0.0..=w).contains(&p.x) || !(0.0..=h).contains(&p.y) {
        return fail(
            field,
            format!(
                "point [{}, {}] is outside the {}x{} frame",
                p.x, p.y, frame.width, frame.height
            ),
        );
    }
    Ok(())
}

fn check_segment(field: &str, s: Segment, frame: FrameSize) -> Check {
    check_point(&format!("{field}[0]"), s.a, frame)?;
    check_point(&format!("{field}[1]"), s.b, frame)?;
    if s.length() < 2.0 {
        return fail(field, "the two ends must be at least 2 px apart");
    }
    Ok(())
}

fn check_polygon(field: &str, poly: &Polygon, frame: FrameSize) -> Check {
    if poly.points.len() < 3 {
        return fail(
            field,
            format!(
                "a polygon needs at least 3 points, got {}",
                poly.points.len()
            ),
        );
    }
    for (i, p) in poly.points.iter().enumerate() {
        check_point(&format!("{field}[{i}]"), *p, frame)?;
    }
    if poly.area() < 1.0 {
        return fail(field, "the polygon is degenerate (zero area)");
    }
    Ok(())
}

fn check_rect(field: &str, r: Rect, frame: FrameSize) -> Check {
    if r.w == 0 || r.h == 0 {
        return fail(field, "width and height must be positive");
    }
    if u64::from(r.x) + u64::from(r.w) > u64::from(frame.width)
        || u64::from(r.y) + u64::from(r.h) > u64::from(frame.height)
    {
        return fail(
            field,
            format!(
                "the rectangle is outside the {}x{} frame",
                frame.width, frame.height
            ),
        );
    }
    Ok(())
}
