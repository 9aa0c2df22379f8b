//! Rule settings of the right type but out of bounds are refused, the
//! setting named.

use edge_agent::site::SiteConfig;

const BASE: &str = r#"camera_id = "cam-1"
frame = { width = 1000, height = 800 }

[[stop_lines]]
id = "s"
points = [[100, 400], [900, 400]]
approach_deg = -90

[[lanes]]
id = "a"
polygon = [[100, 400], [500, 400], [500, 800], [100, 800]]
group = "g"
stop_line = "s"

[[signals]]
group = "g"
mqtt_topic = "signals/g"
controller_key = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"

[rules]
after_frames = 5
[rules.motion]
stationary_px_s = 15.0
[rules.red_light]
grace_ms = 0
[rules.stop_line]
min_stopped_ms = 2000
min_past_px = 5.0
max_past_px = 150.0
[rules.wrong_class]
min_dwell_ms = 1000
min_observations = 5
[rules.wrong_way]
min_distance_px = 80.0
"#;

/// The field named by the error for `BASE` with `from` replaced by `to`.
fn refused(from: &str, to: &str) -> String {
    let text = BASE.replace(from, to);
    assert_ne!(text, BASE, "{from:?} not in the base");
    let err = SiteConfig::from_toml_str(&text, "site.toml").expect_err(to);
    let loc = err.located().expect("located").clone();
    assert_eq!(loc.file, "site.toml");
    loc.field
}

#[test]
fn the_base_loads() {
    SiteConfig::from_toml_str(BASE, "site.toml").expect("valid");
}

#[test]
fn out_of_bounds_rule_settings_are_refused_by_name() {
    for (from, to, field) in [
        (
            "after_frames = 5",
            "after_frames = 400",
            "rules.after_frames",
        ),
        (
            "min_past_px = 5.0",
            "min_past_px = 150.0",
            "rules.stop_line.min_past_px",
        ),
        (
            "max_past_px = 150.0",
            "max_past_px = 3.0",
            "rules.stop_line.min_past_px",
        ),
        (
            "min_dwell_ms = 1000",
            "min_dwell_ms = 0",
            "rules.wrong_class.min_dwell_ms",
        ),
        (
            "min_observations = 5",
            "min_observations = 0",
            "rules.wrong_class.min_observations",
        ),
        (
            "grace_ms = 0",
            "grace_ms = 10000",
            "rules.red_light.grace_ms",
        ),
        (
            "min_stopped_ms = 2000",
            "min_stopped_ms = 0",
            "rules.stop_line.min_stopped_ms",
        ),
        (
            "min_stopped_ms = 2000",
            "min_stopped_ms = 600000",
            "rules.stop_line.min_stopped_ms",
        ),
        (
            "min_distance_px = 80.0",
            "min_distance_px = 2.0",
            "rules.wrong_way.min_distance_px",
        ),
        (
            "stationary_px_s = 15.0",
            "stationary_px_s = 5000.0",
            "rules.motion.stationary_px_s",
        ),
    ] {
        assert_eq!(refused(from, to), field, "{to}");
    }
}
