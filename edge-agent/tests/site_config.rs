//! Site configuration: the documented example loads, and every kind of bad
//! file is refused with the file, line and field named.

use edge_agent::site::{Manoeuvre, SiteConfig, SiteError};
use protocol::VehicleClass;
use std::io::Write;

fn example_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/site.toml")
}

/// A small valid site; tests break one line of it.
/// A controller's public key (of the Ed25519 secret `[7; 32]`).
const KEY: &str = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";

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

[[lanes]]
id = "b"
polygon = [[500, 400], [900, 400], [900, 800], [500, 800]]
classes = ["motorcycle"]
group = "g"
stop_line = "s"

[[signals]]
group = "g"
mqtt_topic = "signals/g"
controller_key = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"
"#;

fn load(text: &str) -> Result<SiteConfig, SiteError> {
    SiteConfig::from_toml_str(text, "site.toml")
}

fn error(text: &str) -> (Option<usize>, String, String, String) {
    let err = load(text).expect_err("config should be rejected");
    let display = err.to_string();
    let loc = err.located().expect("located error").clone();
    assert_eq!(loc.file, "site.toml");
    (loc.line, loc.field, loc.message, display)
}

#[test]
fn example_site_loads() {
    let site = SiteConfig::load(example_path()).expect("example site.toml is valid");
    assert_eq!(site.camera_id, "hn-caugiay-xuanthuy-cam1");
    assert_eq!((site.frame.width, site.frame.height), (1920, 1080));
    assert_eq!(site.lanes.len(), 4);
    let moto = &site.lanes[2];
    assert_eq!(moto.classes, vec![VehicleClass::Motorcycle]);
    assert!(moto.right_turn_on_red);
    assert_eq!(moto.directions, vec![Manoeuvre::Straight, Manoeuvre::Right]);
    assert_eq!(
        moto.speed_limit_kmh.for_class(VehicleClass::Motorcycle),
        Some(40)
    );
    assert_eq!(
        site.lanes[1].speed_limit_kmh.for_class(VehicleClass::Truck),
        Some(40)
    );
    assert_eq!(
        site.lanes[1].speed_limit_kmh.for_class(VehicleClass::Car),
        Some(50)
    );
    assert!(site.signal("south-main").and_then(|s| s.lamps).is_some());
    assert_eq!(
        site.signal("east-west")
            .and_then(|s| s.mqtt_topic.as_deref()),
        Some("signals/v1/hn-caugiay/east-west")
    );
    let speed = site
        .speed
        .as_ref()
        .and_then(|s| s.two_lines.as_ref())
        .unwrap();
    assert_eq!(speed.distance_m, 15.0);
    assert!(site.rules.red_light.enabled && site.rules.illegal_stopping.enabled);
    assert_eq!(site.rules.after_frames, 5);
    assert_eq!(site.no_stopping_zones[0].max_dwell_s, 30.0);
    assert_eq!(site.privacy_masks.len(), 1);
    assert_eq!(site.detection.motorbike_min_aspect, None);
    let gate = site
        .detection
        .static_gate
        .expect("the example gates the detector");
    assert_eq!((gate.threshold, gate.max_skip_s), (6.0, 1.0));
}

#[test]
fn static_gate_is_off_unless_set_and_its_tuning_is_checked() {
    assert_eq!(load(BASE).unwrap().detection.static_gate, None);
    let on = format!("{BASE}\n[detection.static_gate]\n");
    let gate = load(&on).unwrap().detection.static_gate;
    assert_eq!(gate, Some(edge_agent::detect::GateConfig::default()));
    let bad = format!("{BASE}\n[detection.static_gate]\nmax_skip_s = 60\n");
    let (_, field, message, _) = error(&bad);
    assert_eq!(field, "detection.static_gate");
    assert!(message.contains("max_skip_s"), "{message}");
}

#[test]
fn base_is_valid_and_defaults_apply() {
    let site = load(BASE).unwrap();
    assert_eq!(site.lanes[0].directions.len(), 4);
    assert_eq!(site.lanes[0].classes.len(), 4);
    assert!(
        !site.rules.red_light.enabled,
        "rules are off unless enabled"
    );
    assert_eq!(site.signals[0].confirm_frames, 3);
    assert_eq!(site.signals[0].yellow_s, [3.0, 5.0]);
}

#[test]
fn the_yellows_length_is_checked() {
    let with = |v: &str| {
        BASE.replace(
            "mqtt_topic = \"signals/g\"",
            &format!("mqtt_topic = \"signals/g\"\nyellow_s = {v}"),
        )
    };
    assert_eq!(
        load(&with("[4.0, 6.0]")).unwrap().signals[0].yellow_s,
        [4.0, 6.0]
    );
    for bad in ["[5.0, 3.0]", "[0.2, 5.0]", "[3.0, 60.0]", "[nan, 5.0]"] {
        let (_, field, message, _) = error(&with(bad));
        assert_eq!(field, "signals[0].yellow_s", "{bad}");
        assert!(message.contains("shortest"), "{bad}: {message}");
    }
}

#[test]
fn unknown_field_names_line_and_field() {
    let text = BASE.replace(
        "stop_line = \"s\"\n\n[[lanes]]",
        "stop_line = \"s\"\ncolour = \"red\"\n\n[[lanes]]",
    );
    let (line, field, message, display) = error(&text);
    assert_eq!(line, Some(14));
    assert_eq!(field, "lanes[0].colour");
    assert!(message.contains("unknown field `colour`"), "{message}");
    assert!(
        display.starts_with("site.toml:14:1: lanes[0].colour: unknown field"),
        "{display}"
    );
}

#[test]
fn syntax_error_names_line() {
    let text = BASE.replace("approach_deg = -90", "approach_deg = ");
    let (line, _, _, display) = error(&text);
    assert_eq!(line, Some(7));
    assert!(display.starts_with("site.toml:7:"), "{display}");
}

#[test]
fn wrong_type_names_field() {
    let text = BASE.replace("classes = [\"motorcycle\"]", "classes = [\"tractor\"]");
    let (line, field, message, _) = error(&text);
    assert_eq!(line, Some(18));
    assert_eq!(field, "lanes[1].classes[0]");
    assert!(message.contains("tractor"), "{message}");
}

#[test]
fn lane_outside_frame_names_the_point() {
    let text = BASE.replace("[900, 800], [500, 800]]", "[900, 850], [500, 800]]");
    let (line, field, message, display) = error(&text);
    assert_eq!(field, "lanes[1].polygon[2]");
    assert_eq!(line, Some(17));
    assert!(message.contains("outside the 1000x800 frame"), "{message}");
    assert!(display.starts_with("site.toml:17:"), "{display}");
}

#[test]
fn polygon_with_two_points() {
    let text = BASE.replace(
        "polygon = [[100, 400], [500, 400], [500, 800], [100, 800]]",
        "polygon = [[100, 400], [500, 400]]",
    );
    let (line, field, message, _) = error(&text);
    assert_eq!(field, "lanes[0].polygon");
    assert_eq!(line, Some(11));
    assert!(message.contains("at least 3 points, got 2"), "{message}");
}

#[test]
fn degenerate_polygon() {
    let text = BASE.replace(
        "polygon = [[100, 400], [500, 400], [500, 800], [100, 800]]",
        "polygon = [[100, 400], [300, 500], [500, 600]]",
    );
    let (_, field, message, _) = error(&text);
    assert_eq!(field, "lanes[0].polygon");
    assert!(message.contains("degenerate"), "{message}");
}

#[test]
fn missing_signal_for_lane_group() {
    let text = BASE.replacen(
        "group = \"g\"\nstop_line",
        "group = \"north\"\nstop_line",
        1,
    );
    let (line, field, message, _) = error(&text);
    assert_eq!(field, "lanes[0].group");
    assert_eq!(line, Some(12));
    assert!(
        message.contains("\"north\" has no entry in [[signals]]"),
        "{message}"
    );
}

#[test]
fn unknown_stop_line_reference() {
    let text = BASE.replacen("stop_line = \"s\"", "stop_line = \"t\"", 1);
    let (_, field, _, _) = error(&text);
    assert_eq!(field, "lanes[0].stop_line");
}

#[test]
fn bad_homography() {
    let text = format!(
        "{BASE}\n[speed.homography]\nimage = [[100, 100], [200, 200], [300, 300], [100, 500]]\n\
         ground_m = [[0, 0], [7, 0], [7, 30], [0, 30]]\n"
    );
    let (line, field, message, _) = error(&text);
    assert_eq!(field, "speed.homography");
    assert_eq!(line, Some(27), "the [speed.homography] header");
    assert!(message.contains("collinear"), "{message}");
}

#[test]
fn speed_needs_exactly_one_method_and_positive_limits() {
    let both = format!(
        "{BASE}\n[speed.homography]\nimage = [[100, 100], [900, 100], [900, 700], [100, 700]]\n\
         ground_m = [[0, 0], [7, 0], [7, 30], [0, 30]]\n\
         [speed.two_lines]\nlines = [[[100, 500], [900, 500]], [[100, 700], [900, 700]]]\ndistance_m = 10\n"
    );
    assert_eq!(error(&both).1, "speed");
    let zero = BASE.replacen(
        "stop_line = \"s\"",
        "stop_line = \"s\"\nspeed_limit_kmh = { car = 0 }",
        1,
    );
    assert_eq!(error(&zero).1, "lanes[0].speed_limit_kmh.car");
}

#[test]
fn signal_needs_one_source_and_lamps_inside_frame() {
    let none = BASE.replace("mqtt_topic = \"signals/g\"\n", "");
    assert_eq!(error(&none).1, "signals[0]");
    let lamps = BASE.replace(
        &format!("mqtt_topic = \"signals/g\"\ncontroller_key = \"{KEY}\"\n"),
        "[signals.lamps]\nred = [990, 10, 20, 20]\nyellow = [10, 40, 20, 20]\ngreen = [10, 70, 20, 20]\n",
    );
    let (_, field, message, _) = error(&lamps);
    assert_eq!(field, "signals[0].lamps.red");
    assert!(message.contains("outside"), "{message}");
}

#[test]
fn a_signal_feed_is_off_the_devices_topics_and_its_silence_is_bounded() {
    let (_, field, message, _) = error(&BASE.replace("signals/g", "tv/v1/site/signals/g"));
    assert_eq!(field, "signals[0].mqtt_topic");
    assert!(message.contains("signals/v1"), "{message}");
    let slow = BASE.replace(
        "mqtt_topic = \"signals/g\"\n",
        "mqtt_topic = \"signals/g\"\nfeed_silence_s = 120\n",
    );
    assert_eq!(error(&slow).1, "signals[0].feed_silence_s");
    let twice = format!(
        "{BASE}\n[[signals]]\ngroup = \"h\"\nmqtt_topic = \"signals/g\"\ncontroller_key = \"{KEY}\"\n"
    );
    assert_eq!(error(&twice).1, "signals[1].mqtt_topic");
    // No key, or not a key: unsigned phases are never believed.
    let keyless = BASE.replace(&format!("controller_key = \"{KEY}\"\n"), "");
    assert_eq!(error(&keyless).1, "signals[0].controller_key");
    let bad = BASE.replace(KEY, "not-hex");
    assert_eq!(error(&bad).1, "signals[0].controller_key");
    let gate = load(BASE).unwrap().fed_signals();
    assert_eq!(
        (gate[0].group.as_str(), gate[0].topic.as_str()),
        ("g", "signals/g")
    );
    let late = BASE.replace(
        "mqtt_topic = \"signals/g\"\n",
        "mqtt_topic = \"signals/g\"\npicture_delay_ms = 9000\n",
    );
    assert_eq!(error(&late).1, "signals[0].picture_delay_ms");
    assert_eq!(load(BASE).unwrap().signals[0].picture_delay_ms, 500);
    assert_eq!(load(BASE).unwrap().signals[0].feed_silence_s, 3.0);
}

#[test]
fn a_camera_id_follows_the_protocols_id_rules() {
    for bad in ["cam 1", "cam/1", "kamera-đ", ""] {
        let (_, field, _, _) =
            error(&BASE.replace("camera_id = \"cam-1\"", &format!("camera_id = {bad:?}")));
        assert_eq!(field, "camera_id", "{bad:?}");
    }
}

#[test]
fn approach_along_the_line_is_refused() {
    let text = BASE.replace("approach_deg = -90", "approach_deg = 180");
    assert_eq!(error(&text).1, "stop_lines[0].approach_deg");
}

#[test]
fn load_from_file_and_missing_file() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(BASE.as_bytes()).unwrap();
    assert!(SiteConfig::load(f.path()).is_ok());
    let err = SiteConfig::load("/nonexistent/site.toml").unwrap_err();
    assert!(matches!(err, SiteError::Io { .. }));
    assert!(
        err.to_string()
            .starts_with("/nonexistent/site.toml: cannot read")
    );
    // A semantic error in a file names the file's path.
    let mut bad = tempfile::NamedTempFile::new().unwrap();
    bad.write_all(BASE.replace("id = \"b\"", "id = \"a\"").as_bytes())
        .unwrap();
    let err = SiteConfig::load(bad.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}:16:6:", bad.path().display())),
        "{msg}"
    );
    assert!(msg.contains("lanes[1].id: duplicate id \"a\""), "{msg}");
}

#[test]
fn motorbike_aspect_is_off_by_default_and_bounded() {
    let base = edge_agent::site::SiteConfig::from_toml_str(BASE, "t.toml").unwrap();
    assert_eq!(base.detection.motorbike_min_aspect, None, "off unless set");
    let set = format!("{BASE}\n[detection]\nmotorbike_min_aspect = 1.5\n");
    let site = edge_agent::site::SiteConfig::from_toml_str(&set, "t.toml").unwrap();
    assert_eq!(site.detection.motorbike_min_aspect, Some(1.5));
    for bad in ["0.9", "4.5", "nan"] {
        let text = format!("{BASE}\n[detection]\nmotorbike_min_aspect = {bad}\n");
        assert_eq!(error(&text).1, "detection.motorbike_min_aspect", "{bad}");
    }
}

#[test]
fn red_light_confirmation_defaults_to_clearly_past_the_line_and_has_a_floor() {
    let site = load(BASE).unwrap();
    assert_eq!(site.rules.red_light.confirm_past_px, 30.0);
    let with =
        |v: &str| format!("{BASE}\n[rules.red_light]\nenabled = true\nconfirm_past_px = {v}\n");
    for bad in ["0", "0.0", "9.5", "-5", "nan"] {
        let (line, field, message, _) = error(&with(bad));
        assert_eq!(field, "rules.red_light.confirm_past_px", "{bad}");
        assert_eq!(line, Some(29), "{bad}");
        assert!(message.contains("at least 10 px"), "{message}");
        assert!(message.contains("jitter"), "{message}");
    }
    assert_eq!(
        load(&with("10")).unwrap().rules.red_light.confirm_past_px,
        10.0
    );
}

#[test]
fn a_lane_heading_against_its_stop_line_is_refused() {
    let heading = |h: &str| {
        BASE.replacen(
            "stop_line = \"s\"",
            &format!("stop_line = \"s\"\nheading_deg = {h}"),
            1,
        )
    };
    // The line is approached up the image (-90); the lane says down (90).
    let (line, field, message, _) = error(&heading("90"));
    assert_eq!(field, "lanes[0].heading_deg");
    assert_eq!(line, Some(14));
    assert!(message.contains("lane \"a\""), "{message}");
    assert!(
        message.contains("90°") && message.contains("-90°"),
        "{message}"
    );
    assert!(message.contains("wrong-way"), "{message}");
    assert_eq!(error(&heading("150")).1, "lanes[0].heading_deg");
    // Bending up to 90° off the approach (a curving lane) is allowed; 270
    // is -90.
    for ok in ["-90", "-30", "0", "270"] {
        assert!(load(&heading(ok)).is_ok(), "{ok}");
    }
}

#[test]
fn speed_error_terms_may_not_be_zero() {
    let speed = |px: &str, ms: &str| {
        format!(
            "{BASE}\n[speed]\npixel_error_px = {px}\ntime_error_ms = {ms}\n\
             [speed.two_lines]\nlines = [[[100, 500], [900, 500]], [[100, 700], [900, 700]]]\n\
             distance_m = 10\n"
        )
    };
    assert!(load(&speed("2.0", "2.0")).is_ok());
    assert!(load(&speed("1", "1")).is_ok());
    let (_, field, message, _) = error(&speed("0", "2.0"));
    assert_eq!(field, "speed.pixel_error_px");
    assert!(message.contains("at least 1 px"), "{message}");
    assert_eq!(error(&speed("0.5", "2.0")).1, "speed.pixel_error_px");
    let (_, field, message, _) = error(&speed("2.0", "0"));
    assert_eq!(field, "speed.time_error_ms");
    assert!(message.contains("at least 1 ms"), "{message}");
}

#[test]
fn speed_calibration_error_and_camera_height_are_bounded() {
    let homography = |extra: &str| {
        format!(
            "{BASE}\n[speed]\n{extra}\n[speed.homography]\nimage = [[100, 100], [900, 100], [900, 700], [100, 700]]\n\
             ground_m = [[0, 0], [8, 0], [8, 30], [0, 30]]\n"
        )
    };
    let site = load(&homography("")).unwrap();
    assert_eq!(
        site.speed.unwrap().homography.unwrap().calibration_error,
        0.02
    );
    let cal = |e: &str| {
        homography("").replace(
            "[0, 30]]\n",
            &format!("[0, 30]]\ncalibration_error = {e}\n"),
        )
    };
    assert!(load(&cal("0.005")).is_ok());
    for bad in ["0", "0.001", "0.2", "-0.05"] {
        assert_eq!(
            error(&cal(bad)).1,
            "speed.homography.calibration_error",
            "{bad}"
        );
    }
    assert!(load(&homography("camera_height_m = 6.5")).is_ok());
    for bad in ["0", "1.5", "80"] {
        let text = homography(&format!("camera_height_m = {bad}"));
        assert_eq!(error(&text).1, "speed.camera_height_m", "{bad}");
    }
}
