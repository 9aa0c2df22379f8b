//! Wrong way and illegal stopping where the picture, not the vehicle, moves:
//! a box that grows or shrinks at one end as something passes in front, a
//! vehicle hidden now and then while it waits at a red light, a motorbike
//! waiting at the kerb beside its lane; and a car parked at the kerb while
//! its old lane's light flashes yellow, which nothing holds.

mod rules_support;

use edge_agent::geometry::{BBox, Point};
use edge_agent::signal::SignalState::{Green, Red, Yellow};
use protocol::VehicleClass::{Car, Motorcycle};
use protocol::ViolationType;
use rules_support::*;

/// A car standing in lane s2 (which heads up the image), its box 120×90
/// with the bottom at y = 900 — except that from frame 10 to 13 its bottom
/// edge reaches 25 px further down each frame (a motorbike passing just
/// below it merges into its box), then stays there until frame 30 and
/// comes back. Its anchor (the bottom centre) goes 100 px against the lane
/// in four even steps; its top edge never moves.
fn standing_with_a_box_that_grows_down() -> Vehicle {
    Vehicle::boxed(1, Car, |n| {
        let grown = match n {
            0..=9 => 0.0,
            10..=13 => 25.0 * (n - 9) as f64,
            14..=29 => 100.0,
            _ => 0.0,
        };
        Some(BBox::from_xywh(840.0, 810.0, 120.0, 90.0 + grown))
    })
}

#[test]
fn a_box_growing_at_one_end_is_not_wrong_way() {
    let out = run(
        SITE,
        &[standing_with_a_box_that_grows_down()],
        |_| Green,
        50,
    );
    assert_eq!(out.summary(), vec![]);
}

#[test]
fn driving_the_wrong_way_towards_the_camera_is_still_caught() {
    // Down lane s2 at 10 px a frame, the box growing as it nears the
    // camera (top edge 8 px a frame, bottom 10): both ends move against
    // the lane, the nearer one faster.
    let car = Vehicle::boxed(2, Car, |n| {
        let n = n as f64;
        let (top, bottom) = (700.0 + 8.0 * n, 780.0 + 10.0 * n);
        Some(BBox::from_xywh(840.0, top, 120.0, bottom - top))
    });
    let out = run(SITE, &[car], |_| Green, 30);
    assert_eq!(out.summary(), vec![(2, ViolationType::WrongWay)]);
}

/// The test site with a no-stopping zone over lane s3 before the stop line
/// (y 650–950), 3 s of dwell allowed.
fn site_with_a_zone_over_s3() -> String {
    SITE.replace(
        "[rules]\n",
        "[[no_stopping_zones]]\nid = \"s3-mouth\"\n\
         polygon = [[1100, 650], [1500, 650], [1500, 950], [1100, 950]]\n\
         max_dwell_s = 3\n\n[rules]\n",
    )
}

#[test]
fn waiting_at_red_while_hidden_now_and_then_is_no_illegal_stopping() {
    // A motorbike waits at red in s3 for 15 s; a bus passing in the next
    // lane hides it for 0.6 s of every second. The time it is hidden is
    // time held by the red like the rest, not dwell.
    let moto = Vehicle::new(1, Motorcycle, |n| {
        (n % 10 < 4 || n >= 150)
            .then(|| Point::new(1300.0, 800.0 - 20.0 * n.saturating_sub(155) as f64))
    });
    let out = run(
        &site_with_a_zone_over_s3(),
        &[moto],
        |n| if n < 150 { Red } else { Green },
        200,
    );
    assert_eq!(out.summary(), vec![]);
}

#[test]
fn a_motorbike_stopping_on_green_in_the_zone_is_still_fined() {
    let moto = Vehicle::new(1, Motorcycle, |n| {
        Some(Point::new(1300.0, (940.0 - 20.0 * n as f64).max(800.0)))
    });
    let out = run(&site_with_a_zone_over_s3(), &[moto], |_| Green, 120);
    assert_eq!(out.summary(), vec![(1, ViolationType::IllegalStopping)]);
}

#[test]
fn waiting_at_red_at_the_kerb_beside_the_lane_is_no_illegal_stopping() {
    // Up lane s3, then onto the kerb just right of it (x 1540, outside
    // every lane, inside the bus-stop zone) to wait out 15 s of red, and on
    // up when it turns green. The light it waits for is its lane's.
    let moto = Vehicle::new(1, Motorcycle, |n| {
        let x = if n < 5 { 1460.0 } else { 1540.0 };
        let y = (1000.0 - 20.0 * n as f64).max(850.0) - 20.0 * n.saturating_sub(155) as f64;
        Some(Point::new(x, y))
    });
    let out = run(SITE, &[moto], |n| if n < 150 { Red } else { Green }, 200);
    assert_eq!(out.summary(), vec![]);
}

#[test]
fn parking_in_the_bus_bay_while_the_light_flashes_yellow_is_illegal_stopping() {
    // Up lane s3 for half a second (too short to be in the wrong lane),
    // then into the bus-stop zone right of it (x 1700, outside every lane)
    // to park for a minute, while the light flashes yellow all night. Only
    // a red holds a vehicle outside the lanes: yellow (or an unknown
    // signal) at a kerb is no light to wait for, and held by it every kerb
    // parker went unfined.
    let car = Vehicle::new(1, Car, |n| {
        let x = if n < 5 { 1460.0 } else { 1700.0 };
        Some(Point::new(x, (1000.0 - 20.0 * n as f64).max(850.0)))
    });
    let out = run(SITE, &[car], |_| Yellow, 600);
    assert_eq!(out.summary(), vec![(1, ViolationType::IllegalStopping)]);
}
