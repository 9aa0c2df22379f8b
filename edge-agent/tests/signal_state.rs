//! Signal reading from pixels, hysteresis, durations and the external feed.

use edge_agent::signal::{
    ExternalFeed, FrameView, LampConfig, PixelFormat, SignalBoard, SignalFilter, SignalSource,
    SignalState, read_lamps,
};
use edge_agent::site::{FrameSize, LampRegions, Rect, SiteConfig};
use edge_agent::track::FrameInfo;

const W: u32 = 64;
const H: u32 = 100;

fn lamps() -> LampRegions {
    LampRegions {
        red: Rect {
            x: 20,
            y: 10,
            w: 20,
            h: 20,
        },
        yellow: Rect {
            x: 20,
            y: 40,
            w: 20,
            h: 20,
        },
        green: Rect {
            x: 20,
            y: 70,
            w: 20,
            h: 20,
        },
    }
}

/// A dark-grey frame (stride padded by 7 bytes) with the given lamp
/// rectangles filled with `rgb`, written in `format` order.
fn frame_with(lit: &[(Rect, [u8; 3])], format: PixelFormat, background: [u8; 3]) -> Vec<u8> {
    let stride = W as usize * 3 + 7;
    let mut data = vec![0u8; stride * H as usize];
    for y in 0..H as usize {
        for x in 0..W as usize {
            let mut px = background;
            for (r, rgb) in lit {
                if (r.x as usize..(r.x + r.w) as usize).contains(&x)
                    && (r.y as usize..(r.y + r.h) as usize).contains(&y)
                {
                    px = *rgb;
                }
            }
            if format == PixelFormat::Bgr8 {
                px.reverse();
            }
            data[y * stride + x * 3..y * stride + x * 3 + 3].copy_from_slice(&px);
        }
    }
    data
}

fn view(data: &[u8], format: PixelFormat) -> FrameView<'_> {
    FrameView {
        data,
        width: W,
        height: H,
        stride: W as usize * 3 + 7,
        format,
    }
}

const SIZE: FrameSize = FrameSize {
    width: W,
    height: H,
};
const DARK: [u8; 3] = [30, 30, 30];

#[test]
fn reads_each_lamp_in_rgb_and_bgr() {
    let l = lamps();
    let cases = [
        (l.red, [255, 40, 30], SignalState::Red),
        (l.yellow, [255, 190, 0], SignalState::Yellow),
        (l.green, [0, 230, 160], SignalState::Green),
    ];
    for format in [PixelFormat::Rgb8, PixelFormat::Bgr8] {
        for (rect, rgb, want) in cases {
            let data = frame_with(&[(rect, rgb)], format, DARK);
            let r = read_lamps(&view(&data, format), &l, SIZE, &LampConfig::default());
            assert_eq!(r.state, want, "{format:?} {rgb:?} shares {:?}", r.shares);
        }
    }
}

#[test]
fn dark_washed_out_or_ambiguous_heads_read_unknown() {
    let l = lamps();
    let cfg = LampConfig::default();
    let dark = frame_with(&[], PixelFormat::Rgb8, DARK);
    assert_eq!(
        read_lamps(&view(&dark, PixelFormat::Rgb8), &l, SIZE, &cfg).state,
        SignalState::Unknown
    );
    // Sunlight: everything bright but white.
    let sun = frame_with(&[], PixelFormat::Rgb8, [240, 240, 235]);
    assert_eq!(
        read_lamps(&view(&sun, PixelFormat::Rgb8), &l, SIZE, &cfg).state,
        SignalState::Unknown
    );
    // Red and green both lit equally: not believable.
    let both = frame_with(
        &[(l.red, [255, 30, 30]), (l.green, [0, 230, 160])],
        PixelFormat::Rgb8,
        DARK,
    );
    assert_eq!(
        read_lamps(&view(&both, PixelFormat::Rgb8), &l, SIZE, &cfg).state,
        SignalState::Unknown
    );
    // A red lamp with a faint green reflection still reads red.
    let mut refl = l.green;
    refl.h = 3;
    let one = frame_with(
        &[(l.red, [255, 30, 30]), (refl, [0, 230, 160])],
        PixelFormat::Rgb8,
        DARK,
    );
    assert_eq!(
        read_lamps(&view(&one, PixelFormat::Rgb8), &l, SIZE, &cfg).state,
        SignalState::Red
    );
}

#[test]
fn short_or_inconsistent_buffers_read_unknown() {
    let l = lamps();
    let data = vec![255u8; 100];
    let v = FrameView {
        data: &data,
        width: W,
        height: H,
        stride: W as usize * 3,
        format: PixelFormat::Rgb8,
    };
    assert_eq!(
        read_lamps(&v, &l, SIZE, &LampConfig::default()).state,
        SignalState::Unknown
    );
    let v = FrameView {
        data: &data,
        width: 10,
        height: 1,
        stride: 5,
        format: PixelFormat::Rgb8,
    };
    assert!(!v.is_consistent());
    // Rectangles configured for a larger frame are scaled, not overrun.
    let full = frame_with(&[(l.red, [255, 30, 30])], PixelFormat::Rgb8, DARK);
    let twice = FrameSize {
        width: W * 2,
        height: H * 2,
    };
    let big = LampRegions {
        red: Rect {
            x: 40,
            y: 20,
            w: 40,
            h: 40,
        },
        yellow: Rect {
            x: 40,
            y: 80,
            w: 40,
            h: 40,
        },
        green: Rect {
            x: 40,
            y: 140,
            w: 40,
            h: 40,
        },
    };
    let r = read_lamps(
        &view(&full, PixelFormat::Rgb8),
        &big,
        twice,
        &LampConfig::default(),
    );
    assert_eq!(r.state, SignalState::Red);
}

#[test]
fn hysteresis_and_durations() {
    let t = |frame: i64| 1_000_000 + frame * 100_000; // 10 fps
    let mut f = SignalFilter::new(3, t(0));
    use SignalState::*;
    let seq = [
        Green, Green, Green, // believed green at frame 2, since frame 0
        Red,   // one-frame flicker: ignored
        Green, Unknown, Green, // a dark frame: ignored
        Yellow, Unknown, Yellow, Yellow, // yellow, with a dark frame inside the run
        Yellow, Yellow, Red, Red, Red, Red,
    ];
    let mut states = Vec::new();
    for (i, s) in seq.iter().enumerate() {
        states.push(f.observe(*s, t(i as i64)));
    }
    assert_eq!(states[1].state, Unknown);
    assert_eq!(states[2].state, Green);
    assert_eq!(states[2].since_us, t(0));
    assert!(!states[2].transition_seen, "green was on before we looked");
    assert!(states[3..=9].iter().all(|s| s.state == Green));
    assert_eq!(states[10].state, Yellow);
    assert_eq!(
        states[10].since_us,
        t(7),
        "back-dated to the first yellow frame"
    );
    assert!(states[10].transition_seen);
    assert_eq!(states[14].state, Yellow);
    assert_eq!(states[15].state, Red);
    assert_eq!(states[15].since_us, t(13));
    assert_eq!(states[16].red_for_ms(t(16)), Some(300));
    assert_eq!(states[16].observation(t(20)).red_for_ms, Some(700));
    // A long dark spell becomes unknown (4 × confirm frames).
    for i in 17..28 {
        f.observe(Unknown, t(i));
    }
    assert_eq!(f.status().state, Red);
    f.observe(Unknown, t(28));
    assert_eq!(f.status().state, Unknown);
    // Red again after unknown: duration not known to be complete.
    for i in 29..32 {
        f.observe(Red, t(i));
    }
    assert_eq!(f.status().state, Red);
    assert_eq!(f.status().red_for_ms(t(40)), None);
    assert_eq!(f.status().elapsed_ms(t(40)), 1100);
}

#[test]
fn external_feed_and_board() {
    let mut feed = ExternalFeed::new();
    assert_eq!(feed.status("g"), None);
    feed.set("g", SignalState::Green, 1_000);
    feed.set("g", SignalState::Yellow, 5_000_000);
    feed.set("g", SignalState::Red, 8_000_000);
    feed.set("g", SignalState::Red, 9_000_000); // repeat keeps the start
    let s = feed.status("g").unwrap();
    assert_eq!(
        (s.state, s.since_us, s.transition_seen),
        (SignalState::Red, 8_000_000, true)
    );
    assert_eq!(s.red_for_ms(10_500_000), Some(2500));

    let text = format!(
        "camera_id = \"c\"\nframe = {{ width = {W}, height = {H} }}\n\
         [[signals]]\ngroup = \"lamp\"\nconfirm_frames = 2\n[signals.lamps]\n\
         red = [20, 10, 20, 20]\nyellow = [20, 40, 20, 20]\ngreen = [20, 70, 20, 20]\n\
         [[signals]]\ngroup = \"feed\"\nmqtt_topic = \"sig/feed\"\ncontroller_key = \"ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c\"\n"
    );
    let site = SiteConfig::from_toml_str(&text, "t.toml").unwrap();
    let mut board = SignalBoard::from_site(&site, LampConfig::default(), 0);
    assert_eq!(
        board.feed_topics(),
        &[("feed".to_owned(), "sig/feed".to_owned())]
    );
    let red = frame_with(&[(lamps().red, [255, 30, 30])], PixelFormat::Rgb8, DARK);
    for n in 0..2u64 {
        board.observe_frame(
            FrameInfo::new(n, n as i64 * 40_000),
            &view(&red, PixelFormat::Rgb8),
        );
    }
    assert_eq!(board.status("lamp").unwrap().state, SignalState::Red);
    assert_eq!(board.last_reading("lamp").unwrap().state, SignalState::Red);
    assert_eq!(board.status("feed").unwrap().state, SignalState::Unknown);
    assert!(board.set_external("feed", SignalState::Green, 50_000));
    assert!(
        !board.set_external("lamp", SignalState::Green, 50_000),
        "lamp groups are read, not set"
    );
    assert_eq!(board.status("feed").unwrap().state, SignalState::Green);
    assert_eq!(board.status("nope"), None);
}

#[test]
fn green_straight_to_red_is_not_believed_from_a_moment() {
    // A red bus passes in front of a green head for three frames: the
    // lamps read red, but the light never goes from green to red without
    // yellow. Never red.
    let t = |frame: i64| 1_000_000 + frame * 100_000; // 10 fps
    use SignalState::*;
    let mut f = SignalFilter::new(3, t(0));
    let seq = [Green, Green, Green, Red, Red, Red, Green, Green, Green];
    for (i, s) in seq.iter().enumerate() {
        let status = f.observe(*s, t(i as i64));
        assert_ne!(status.state, Red, "frame {i}");
    }
    assert_eq!(f.status().state, Green);
    // Red that lasts (a head with no yellow, or a yellow not seen) is
    // believed after ten times the confirmation, from then: not back-dated
    // to its first sighting, and its start not known.
    let mut f = SignalFilter::new(3, t(0));
    for i in 0..3 {
        f.observe(Green, t(i));
    }
    for i in 3..32 {
        assert_eq!(f.observe(Red, t(i)).state, Green, "frame {i}");
    }
    let s = f.observe(Red, t(32));
    assert_eq!((s.state, s.since_us), (Red, t(32)));
    assert!(!s.transition_seen);
    assert_eq!(s.red_for_ms(t(40)), None);
}
