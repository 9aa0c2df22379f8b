//! Vehicles standing nose to tail in a jam are not stopping illegally,
//! whatever the light shows and whether or not their lane has a heading;
//! a lone vehicle standing in a no-stopping zone still is.

mod rules_support;

use edge_agent::geometry::Point;
use edge_agent::signal::SignalState::Green;
use protocol::VehicleClass::Car;
use protocol::ViolationType;
use rules_support::*;

/// The test site with a no-stopping zone over lane s2 200 px before the
/// stop line (y 700–900, 60 s of dwell allowed), and a lane `bay` at the
/// left (x 0–400) with neither a heading nor a stop line, under a zone
/// (y 700–900, 60 s) too.
fn site() -> String {
    SITE.replace(
        "[[signals]]\n",
        "[[lanes]]\nid = \"bay\"\n\
         polygon = [[0, 600], [400, 600], [400, 1080], [0, 1080]]\n\
         directions = [\"straight\"]\n\
         classes = [\"car\", \"bus\", \"truck\", \"motorcycle\"]\n\n[[signals]]\n",
    )
    .replace(
        "[rules]\n",
        "[[no_stopping_zones]]\nid = \"s2-mid\"\n\
         polygon = [[700, 700], [1100, 700], [1100, 900], [700, 900]]\n\
         max_dwell_s = 60\n\n\
         [[no_stopping_zones]]\nid = \"bay\"\n\
         polygon = [[0, 700], [400, 700], [400, 900], [0, 900]]\n\
         max_dwell_s = 60\n\n[rules]\n",
    )
}

/// Up the image at `x` at 20 px a frame from y = 1000 to `stop_y`, then
/// standing there.
fn standing(id: u64, x: f64, stop_y: f64) -> Vehicle {
    Vehicle::new(id, Car, up_then_stop(x, 1000.0, 20.0, stop_y))
}

fn stoppings(out: &Outcome) -> Vec<u64> {
    out.summary()
        .into_iter()
        .filter(|(_, t)| *t == ViolationType::IllegalStopping)
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn a_car_jammed_behind_another_through_a_long_green_is_not_stopping_illegally() {
    // Gridlock: green for 200 s, the car ahead standing just outside the
    // zone (y = 650), the one behind it in the zone (y = 760, 110 px
    // behind) for 200 s, more than three times the zone's 60 s.
    let out = run(
        &site(),
        &[standing(1, 900.0, 650.0), standing(2, 900.0, 760.0)],
        |_| Green,
        2000,
    );
    assert_eq!(stoppings(&out), Vec::<u64>::new());
    // Alone there, it stopped by choice: fined.
    let out = run(&site(), &[standing(2, 900.0, 760.0)], |_| Green, 2000);
    assert_eq!(stoppings(&out), vec![2]);
}

#[test]
fn cars_standing_nose_to_tail_in_a_lane_without_a_heading_are_a_queue() {
    // Lane `bay` has no heading: which car is in front cannot be told, so
    // each holds the other (a jam); a lone car is fined.
    let out = run(
        &site(),
        &[standing(1, 200.0, 740.0), standing(2, 200.0, 850.0)],
        |_| Green,
        1000,
    );
    assert_eq!(stoppings(&out), Vec::<u64>::new());
    let lone = Vehicle::new(3, Car, |_| Some(Point::new(200.0, 800.0)));
    let out = run(&site(), &[lone], |_| Green, 1000);
    assert_eq!(stoppings(&out), vec![3]);
}
