//! People riding motorcycles: which detected person sits on which
//! detected motorcycle.
//!
//! YOLOX-Nano finds people as well as vehicles (COCO class 0). A rider's
//! box and the motorcycle's overlap in a typical way: the person's upper
//! body rises above the motorcycle's box, their seat and legs lie inside it
//! and their feet are on the footrests, not below the wheels. A pedestrian
//! beside a motorbike stands on the ground (their box ends at or below the
//! motorbike's), and one walking behind it does not reach into its lower
//! half. The count per motorcycle is an observation for the reviewer (two,
//! three people on one bike) and the anchor of later helmet work (a
//! helmet classifier looks at the top of the rider's box); it never makes
//! a violation on its own.
//!
//! Measured on the shared street recording (`thanglm20_nguoc_chieu.mp4`,
//! every 6th frame, two tiles): 45 of 119 motorcycle boxes got a rider;
//! the far, small ones get none, because the detector does not find
//! people that small. Only 1 of 266 "car" boxes had a rider on it, so a
//! rider is not used to correct a car into a motorbike.

use super::nms::suppress;
use crate::track::Detection;
use protocol::{MAX_RIDERS, VehicleClass};

/// A detected person, full-frame pixels `[x, y, w, h]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Person {
    pub bbox: [f32; 4],
    pub score: f32,
}

/// How far off centre a rider may sit, as a share of the motorcycle's
/// width, for a match (the lower the better); `None`: this person is not
/// riding this motorcycle.
fn rider_cost(p: &[f32; 4], v: &[f32; 4]) -> Option<f32> {
    let [px, py, pw, ph] = *p;
    let [vx, vy, vw, vh] = *v;
    if !p.iter().chain(v).all(|x| x.is_finite()) || pw <= 0.0 || ph <= 0.0 || vw <= 0.0 || vh <= 0.0
    {
        return None;
    }
    // Side by side: at least half of the narrower box over the other.
    let overlap = ((px + pw).min(vx + vw) - px.max(vx)).max(0.0);
    if overlap < 0.5 * pw.min(vw) {
        return None;
    }
    // Seated: the person ends in the bike's lower half (legs on the
    // footrests), above its bottom (wheels). On the street recording the
    // riders found end at 23–95% of the bike's height, nearly all above
    // 45%; someone behind the bike, further away, ends higher up.
    let bottom = py + ph;
    if bottom < vy + 0.45 * vh || bottom > vy + 0.95 * vh {
        return None;
    }
    // Upright above it: the head is above the bike's upper part.
    if py > vy + 0.2 * vh {
        return None;
    }
    // Of a person's size for this vehicle (not a crowd's box, not a speck).
    if ph < 0.5 * vh || ph > 4.0 * vh {
        return None;
    }
    Some(((px + pw / 2.0) - (vx + vw / 2.0)).abs() / vw)
}

/// Keeps the highest-scoring person of every group overlapping above
/// `iou_max` (the two tiles see the people in their overlap twice).
pub fn nms_persons(persons: Vec<Person>, iou_max: f32) -> Vec<Person> {
    suppress(persons, iou_max, |p| (&p.bbox, p.score))
}

/// Sets [`Detection::riders`] of every motorcycle in `vehicles`: each person
/// goes to the motorcycle it sits on best (at most one), at most
/// [`MAX_RIDERS`] per motorcycle. Other classes keep 0.
pub fn attach_riders(vehicles: &mut [Detection], persons: &[Person]) {
    for v in vehicles.iter_mut() {
        v.riders = 0;
    }
    for p in persons {
        let best = vehicles
            .iter()
            .enumerate()
            .filter(|(_, v)| v.class == VehicleClass::Motorcycle)
            .filter_map(|(i, v)| rider_cost(&p.bbox, &v.bbox).map(|c| (i, c)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, _)) = best {
            let v = &mut vehicles[i];
            v.riders = (v.riders + 1).min(MAX_RIDERS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vehicle(class: VehicleClass, bbox: [f32; 4]) -> Detection {
        Detection {
            bbox,
            score: 0.8,
            class,
            riders: 0,
        }
    }

    fn person(bbox: [f32; 4]) -> Person {
        Person { bbox, score: 0.6 }
    }

    /// Boxes from a frame of the street recording: a motorbike seen from
    /// behind and the rider YOLOX found on it.
    const BIKE: [f32; 4] = [1153.0, 451.0, 46.0, 79.0];
    const RIDER: [f32; 4] = [1146.0, 379.0, 54.0, 117.0];

    #[test]
    fn a_rider_on_a_motorbike_is_counted() {
        let mut v = vec![vehicle(VehicleClass::Motorcycle, BIKE)];
        attach_riders(&mut v, &[person(RIDER)]);
        assert_eq!(v[0].riders, 1);
        // A passenger behind: a second, slightly taller box.
        attach_riders(
            &mut v,
            &[person(RIDER), person([1150.0, 370.0, 50.0, 120.0])],
        );
        assert_eq!(v[0].riders, 2);
    }

    #[test]
    fn a_pedestrian_beside_or_behind_is_not_a_rider() {
        let mut v = vec![vehicle(VehicleClass::Motorcycle, BIKE)];
        let standing_beside = [1205.0, 420.0, 30.0, 112.0];
        let standing_in_front = [1150.0, 440.0, 40.0, 110.0]; // feet below the wheels
        let far_behind = [1160.0, 300.0, 20.0, 45.0]; // small, ends above the bike
        let walking_behind = [1158.0, 390.0, 30.0, 80.0]; // ends in the bike's upper part
        attach_riders(
            &mut v,
            &[
                person(standing_beside),
                person(standing_in_front),
                person(far_behind),
                person(walking_behind),
                person([f32::NAN, 380.0, 50.0, 110.0]),
            ],
        );
        assert_eq!(v[0].riders, 0);
    }

    #[test]
    fn riders_go_to_one_bike_and_only_to_motorcycles() {
        let beside = [1199.0, 451.0, 46.0, 79.0];
        let mut v = vec![
            vehicle(VehicleClass::Motorcycle, BIKE),
            vehicle(VehicleClass::Motorcycle, beside),
            vehicle(VehicleClass::Car, [1100.0, 430.0, 160.0, 110.0]),
        ];
        attach_riders(&mut v, &[person(RIDER)]);
        assert_eq!(
            (v[0].riders, v[1].riders, v[2].riders),
            (1, 0, 0),
            "the rider is centred over the first bike"
        );
        let crowd: Vec<Person> = (0..10).map(|_| person(RIDER)).collect();
        attach_riders(&mut v, &crowd);
        assert_eq!(v[0].riders, MAX_RIDERS);
    }
}
