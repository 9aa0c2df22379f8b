//! The fine schedule as data: one TOML table per decree (`fines/*.toml`,
//! embedded in the binary), each with its validity dates and, per violation
//! type and vehicle category, the amount range and licence points; speeding
//! rows carry their band of km/h over the limit. The schedule in force on the
//! date of the violation (Vietnam time) applies, so a later decree is a new
//! file and old cases keep the price of their day.
//!
//! A case gets its quote on ingest. The amount is a range: the officer who
//! confirms the case picks the figure; nothing here issues a penalty.

use protocol::{PlateColour, VehicleClass, ViolationEvent, ViolationType};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::{Date, UtcOffset, macros::format_description};

/// The schedules shipped with this build.
const SCHEDULES: &[(&str, &str)] = &[(
    "fines/decree-168-2024.toml",
    include_str!("../fines/decree-168-2024.toml"),
)];

/// Vietnam's offset, used to take the violation's calendar date.
const VIETNAM: UtcOffset = match UtcOffset::from_hms(7, 0, 0) {
    Ok(o) => o,
    Err(_) => UtcOffset::UTC,
};

/// Which article of a decree applies to the vehicle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Cars and similar (Art. 6 of Decree 168): cars, buses, trucks.
    Car,
    /// Motorbikes and mopeds (Art. 7).
    Motorbike,
}

/// The category from the vehicle class and plate colour. `None` for a red
/// (military) plate: outside civil enforcement, left to a person.
pub fn category(class: VehicleClass, colour: PlateColour) -> Option<Category> {
    if colour == PlateColour::Red {
        return None;
    }
    Some(match class {
        VehicleClass::Motorcycle => Category::Motorbike,
        VehicleClass::Car | VehicleClass::Bus | VehicleClass::Truck => Category::Car,
    })
}

/// Whether the canonical plate `plate` is a foreign mission's: the white
/// plate of two digits, a series `NG` (diplomatic), `QT` (international
/// organisation) or `CV` (a mission's administrative and technical staff),
/// and five digits (`80NG12345`). Their holders have immunity from the
/// receiving state's administrative jurisdiction under the Vienna
/// Conventions, which the Law on Handling Administrative Violations puts
/// first (Art. 5: international treaties prevail): such a case is not
/// priced, and a person handles it through the foreign-affairs channel.
/// `NN` (other foreign organisations and persons) has no immunity and is
/// priced as any plate.
pub fn immune_series(plate: &str) -> bool {
    let b = plate.as_bytes();
    b.len() == 9
        && b[..2].iter().all(u8::is_ascii_digit)
        && matches!(&b[2..4], b"NG" | b"QT" | b"CV")
        && b[4..].iter().all(u8::is_ascii_digit)
}

/// The fact that decides between rows of one behaviour that the decree
/// puts under different points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// One person on the motorbike (`track.riders` = 1): the rider is the
    /// one without a helmet.
    RiderAlone,
    /// A passenger without a helmet: never established by a camera event
    /// (no per-person helmet result); a person decides.
    PassengerWithoutHelmet,
}

impl Condition {
    /// Whether the event's facts establish the condition.
    fn holds(self, event: &ViolationEvent) -> bool {
        match self {
            Condition::RiderAlone => event.track.riders == Some(1),
            Condition::PassengerWithoutHelmet => false,
        }
    }
}

/// Whether `article` names exactly one provision: `article.clause` or
/// `article.clause.point`, a point being one letter (`a`…`z`, `đ`), never a
/// list (`h/i`, `đ,e`).
pub fn single_provision(article: &str) -> bool {
    let parts: Vec<&str> = article.split('.').collect();
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match parts.as_slice() {
        [a, k] => number(a) && number(k),
        [a, k, p] => {
            number(a)
                && number(k)
                && {
                    let mut c = p.chars();
                    matches!((c.next(), c.next()), (Some(l), None) if l.is_ascii_lowercase() || l == 'đ')
                }
        }
        _ => false,
    }
}

/// One row of a schedule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FineRow {
    violation: ViolationType,
    category: Category,
    min_vnd: i64,
    max_vnd: i64,
    points: i64,
    article: String,
    /// What decides this row over another of the same behaviour.
    condition: Option<Condition>,
    over_min_kmh: Option<f64>,
    #[serde(default = "yes")]
    over_min_inclusive: bool,
    over_max_kmh: Option<f64>,
    #[serde(default = "yes")]
    over_max_inclusive: bool,
}

fn yes() -> bool {
    true
}

impl FineRow {
    fn band_contains(&self, over: f64) -> bool {
        let above_min = match self.over_min_kmh {
            None => true,
            Some(m) if self.over_min_inclusive => over >= m,
            Some(m) => over > m,
        };
        let below_max = match self.over_max_kmh {
            None => true,
            Some(m) if self.over_max_inclusive => over <= m,
            Some(m) => over < m,
        };
        above_min && below_max
    }
}

/// One decree's schedule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Id stored on each priced case, e.g. `decree-168-2024`.
    pub id: String,
    /// Title.
    pub title: String,
    /// First day in force (`YYYY-MM-DD`).
    pub valid_from: String,
    /// Last day in force, if replaced.
    pub valid_until: Option<String>,
    #[serde(rename = "fine")]
    rows: Vec<FineRow>,
}

/// The price of one case.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "fine_status", rename_all = "snake_case")]
pub enum Quote {
    /// A row applies.
    Priced {
        /// Schedule id.
        schedule: String,
        /// Article reference.
        article: String,
        /// Lowest amount, VND.
        min_vnd: i64,
        /// Highest amount, VND.
        max_vnd: i64,
        /// Licence points deducted.
        points: i64,
    },
    /// Nothing to fine (speeding under the lowest band).
    NoFine,
    /// No row for this violation and vehicle (e.g. military plate, helmet on
    /// a car), or the facts do not say which of several points applies (a
    /// helmet case with a passenger); a person decides.
    NotApplicable,
    /// No schedule in force on that date.
    NoSchedule,
}

impl Quote {
    /// The status word stored on the case.
    pub fn status(&self) -> &'static str {
        match self {
            Quote::Priced { .. } => "priced",
            Quote::NoFine => "no_fine",
            Quote::NotApplicable => "not_applicable",
            Quote::NoSchedule => "no_schedule",
        }
    }
}

/// A schedule file that cannot be used.
#[derive(Debug, Error)]
#[error("fine schedule {origin}: {message}")]
pub struct ScheduleError {
    origin: String,
    message: String,
}

/// Every schedule, each with its dates.
#[derive(Debug, Clone)]
pub struct FineTable {
    schedules: Vec<(Date, Option<Date>, Schedule)>,
}

fn parse_date(origin: &str, s: &str) -> Result<Date, ScheduleError> {
    Date::parse(s, format_description!("[year]-[month]-[day]")).map_err(|e| ScheduleError {
        origin: origin.into(),
        message: format!("bad date {s:?}: {e}"),
    })
}

impl FineTable {
    /// The schedules shipped with this build.
    pub fn builtin() -> Result<Self, ScheduleError> {
        Self::from_sources(
            SCHEDULES
                .iter()
                .map(|(o, t)| (o.to_string(), t.to_string())),
        )
    }

    /// Schedules from `(origin, toml text)` pairs, validated.
    pub fn from_sources(
        sources: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ScheduleError> {
        let mut schedules = Vec::new();
        for (origin, text) in sources {
            let s: Schedule = toml::from_str(&text).map_err(|e| ScheduleError {
                origin: origin.clone(),
                message: e.to_string(),
            })?;
            let from = parse_date(&origin, &s.valid_from)?;
            let until = s
                .valid_until
                .as_deref()
                .map(|u| parse_date(&origin, u))
                .transpose()?;
            for r in &s.rows {
                if !single_provision(&r.article) {
                    return Err(ScheduleError {
                        origin: origin.clone(),
                        message: format!(
                            "row {} {:?}: the article must name exactly one point \
                             (split the row by `condition`)",
                            r.article, r.violation
                        ),
                    });
                }
                if r.min_vnd < 0 || r.min_vnd > r.max_vnd || !(0..=12).contains(&r.points) {
                    return Err(ScheduleError {
                        origin: origin.clone(),
                        message: format!(
                            "row {} {:?}: bad amounts or points",
                            r.article, r.violation
                        ),
                    });
                }
            }
            schedules.push((from, until, s));
        }
        schedules.sort_by_key(|(from, _, _)| *from);
        Ok(Self { schedules })
    }

    /// The schedule in force on `date`: the latest one that started on or
    /// before it and had not ended.
    pub fn in_force(&self, date: Date) -> Option<&Schedule> {
        self.schedules
            .iter()
            .rev()
            .find(|(from, until, _)| *from <= date && until.is_none_or(|u| date <= u))
            .map(|(_, _, s)| s)
    }

    /// The quote for a verified event.
    pub fn quote(&self, event: &ViolationEvent) -> Quote {
        // Validated to lie within 1970..=2199; checked all the same, as a
        // shift out of range would panic the committer.
        let Some(date) = event
            .event_time
            .checked_to_offset(VIETNAM)
            .map(|t| t.date())
        else {
            return Quote::NoSchedule;
        };
        let Some(schedule) = self.in_force(date) else {
            return Quote::NoSchedule;
        };
        let Some(cat) = category(event.vehicle_class, event.plate.colour) else {
            return Quote::NotApplicable;
        };
        if event.plate.text.as_deref().is_some_and(immune_series) {
            return Quote::NotApplicable;
        }
        let mut rows = schedule
            .rows
            .iter()
            .filter(|r| r.violation == event.violation_type && r.category == cat)
            .peekable();
        if rows.peek().is_none() {
            return Quote::NotApplicable;
        }
        let row = if event.violation_type == ViolationType::Speeding {
            let Some(speed) = &event.speed else {
                return Quote::NotApplicable;
            };
            // Priced on the speed the measurement vouches for: less two of
            // its σ where the device sent one (as the edge judged it), so
            // a driver is not put in a higher band by the error bar.
            let vouched = speed.measured_kmh
                - 2.0
                    * speed
                        .uncertainty_kmh
                        .filter(|u| u.is_finite())
                        .unwrap_or(0.0);
            let over = vouched - f64::from(speed.limit_kmh);
            match rows.find(|r| r.band_contains(over)) {
                Some(r) => r,
                None => return Quote::NoFine,
            }
        } else {
            // One row, or the one row whose condition the event's facts
            // establish; otherwise the basis is for a person to decide.
            let rows: Vec<&FineRow> = rows.collect();
            let chosen: Vec<&FineRow> = match rows.as_slice() {
                [only] if only.condition.is_none() => vec![*only],
                _ => rows
                    .iter()
                    .copied()
                    .filter(|r| r.condition.is_some_and(|c| c.holds(event)))
                    .collect(),
            };
            match chosen.as_slice() {
                [r] => *r,
                _ => return Quote::NotApplicable,
            }
        };
        Quote::Priced {
            schedule: schedule.id.clone(),
            article: row.article.clone(),
            min_vnd: row.min_vnd,
            max_vnd: row.max_vnd,
            points: row.points,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::Speed;

    fn event(v: ViolationType, class: VehicleClass, speed: Option<(f64, u16)>) -> ViolationEvent {
        let mut e: ViolationEvent = serde_json::from_value(serde_json::json!({
            "schema_version": "1.0",
            "event_id": "6f1c2a4e-8b3d-4c5f-9a7b-1e2d3c4b5a69",
            "device_id": "d", "camera_id": "c", "site": "s",
            "event_time": "2025-03-14T08:15:30+07:00",
            "clock": {"status": "synced"},
            "violation_type": "red_light", "vehicle_class": "car",
            "plate": {"readable": false, "colour": "white"},
            "track": {"track_id": 1, "first_seen": "2025-03-14T08:15:29+07:00",
                      "last_seen": "2025-03-14T08:15:30+07:00", "frame_count": 1, "points": []},
            "evidence": [], "software_version": "t"
        }))
        .unwrap();
        e.violation_type = v;
        e.vehicle_class = class;
        e.speed = speed.map(|(m, l)| Speed {
            measured_kmh: m,
            limit_kmh: l,
            uncertainty_kmh: None,
        });
        e
    }

    fn priced(q: Quote) -> (String, i64, i64, i64) {
        match q {
            Quote::Priced {
                article,
                min_vnd,
                max_vnd,
                points,
                ..
            } => (article, min_vnd, max_vnd, points),
            other => panic!("not priced: {other:?}"),
        }
    }

    #[test]
    fn red_light_prices_by_category() {
        let t = FineTable::builtin().unwrap();
        let car = priced(t.quote(&event(ViolationType::RedLight, VehicleClass::Car, None)));
        assert_eq!(car, ("6.9.b".into(), 18_000_000, 20_000_000, 4));
        let bike = priced(t.quote(&event(
            ViolationType::RedLight,
            VehicleClass::Motorcycle,
            None,
        )));
        assert_eq!(bike, ("7.7.c".into(), 4_000_000, 6_000_000, 4));
        let truck = priced(t.quote(&event(ViolationType::RedLight, VehicleClass::Truck, None)));
        assert_eq!(truck.0, "6.9.b");
    }

    #[test]
    fn speeding_picks_its_band() {
        let t = FineTable::builtin().unwrap();
        let q = |m, class| t.quote(&event(ViolationType::Speeding, class, Some((m, 50))));
        assert_eq!(q(53.0, VehicleClass::Car), Quote::NoFine);
        assert_eq!(priced(q(55.0, VehicleClass::Car)).0, "6.3.a");
        assert_eq!(priced(q(60.0, VehicleClass::Car)).0, "6.5.đ");
        assert_eq!(priced(q(70.0, VehicleClass::Car)).0, "6.5.đ");
        assert_eq!(priced(q(70.5, VehicleClass::Car)).0, "6.6.a");
        assert_eq!(priced(q(85.0, VehicleClass::Car)).0, "6.6.a");
        assert_eq!(
            priced(q(86.0, VehicleClass::Car)),
            ("6.7.a".into(), 12_000_000, 14_000_000, 6)
        );
        assert_eq!(priced(q(100.0, VehicleClass::Motorcycle)).0, "7.8.a");
        // 70.5 ± 1 km/h: 68.5 is vouched for, the 10–20 band, not 20–35.
        let mut e = event(ViolationType::Speeding, VehicleClass::Car, Some((70.5, 50)));
        if let Some(s) = e.speed.as_mut() {
            s.uncertainty_kmh = Some(1.0);
        }
        assert_eq!(priced(t.quote(&e)).0, "6.5.đ");
    }

    #[test]
    fn date_and_category_gaps_are_not_priced() {
        let t = FineTable::builtin().unwrap();
        let mut e = event(ViolationType::RedLight, VehicleClass::Car, None);
        // 31 Dec 2024 23:30 in Hà Nội: before the decree.
        e.event_time = time::macros::datetime!(2024-12-31 16:30 UTC);
        assert_eq!(t.quote(&e), Quote::NoSchedule);
        // 1 Jan 2025 00:30 in Hà Nội is still 31 Dec in UTC: in force.
        e.event_time = time::macros::datetime!(2024-12-31 17:30 UTC);
        assert!(matches!(t.quote(&e), Quote::Priced { .. }));
        // A time whose shift to Vietnam time is out of range (no valid
        // event has one: `protocol` bounds the year) is not priced, and
        // does not panic the committer that prices redeliveries.
        e.event_time = time::macros::datetime!(9999-12-31 23:59:59 UTC);
        assert_eq!(t.quote(&e), Quote::NoSchedule);
        assert_eq!(
            t.quote(&event(ViolationType::NoHelmet, VehicleClass::Car, None)),
            Quote::NotApplicable
        );
        let mut mil = event(ViolationType::RedLight, VehicleClass::Car, None);
        mil.plate.colour = PlateColour::Red;
        assert_eq!(t.quote(&mil), Quote::NotApplicable);
    }

    /// A foreign mission's plate (NG, QT, CV) is not priced: immunity is
    /// for a person to handle. NN (other foreigners) and ordinary plates
    /// are.
    #[test]
    fn a_missions_plate_is_not_priced() {
        let t = FineTable::builtin().unwrap();
        let quote = |plate: &str| {
            let mut e = event(ViolationType::RedLight, VehicleClass::Car, None);
            e.plate.text = Some(plate.into());
            t.quote(&e)
        };
        for immune in ["80NG12345", "80QT01201", "80CV12345"] {
            assert_eq!(quote(immune), Quote::NotApplicable, "{immune}");
        }
        for priced in ["80NN12345", "30A12345", "30NG1234", "29LD12345"] {
            assert!(matches!(quote(priced), Quote::Priced { .. }), "{priced}");
        }
    }

    #[test]
    fn a_row_must_name_one_point() {
        for ok in ["6.9.b", "6.3.e", "7.2.h", "6.5.đ", "6.9"] {
            assert!(single_provision(ok), "{ok}");
        }
        for bad in ["7.2.h/i", "6.3.đ/e", "6.3.đ,e", "6", "a.b.c", "6.3.hh", ""] {
            assert!(!single_provision(bad), "{bad}");
        }
        let row = |article: &str| {
            format!(
                "id = \"t\"\ntitle = \"t\"\nvalid_from = \"2025-01-01\"\n[[fine]]\n\
                 violation = \"no_helmet\"\ncategory = \"motorbike\"\nmin_vnd = 1\nmax_vnd = 2\n\
                 points = 0\narticle = \"{article}\"\n"
            )
        };
        assert!(FineTable::from_sources([("t".to_string(), row("7.2.h"))]).is_ok());
        let e = FineTable::from_sources([("t".to_string(), row("7.2.h/i"))]).unwrap_err();
        assert!(e.to_string().contains("exactly one point"), "{e}");
    }

    #[test]
    fn later_decree_applies_from_its_date() {
        let old = include_str!("../fines/decree-168-2024.toml").replace(
            "valid_from = \"2025-01-01\"",
            "valid_from = \"2025-01-01\"\nvalid_until = \"2030-06-30\"",
        );
        let new = old
            .replace("decree-168-2024", "decree-999-2030")
            .replace("valid_from = \"2025-01-01\"", "valid_from = \"2030-07-01\"")
            .replace("valid_until = \"2030-06-30\"\n", "");
        let t = FineTable::from_sources([("old".into(), old), ("new".into(), new)]).unwrap();
        let mut e = event(ViolationType::RedLight, VehicleClass::Car, None);
        e.event_time = time::macros::datetime!(2030-07-01 08:00 +07:00);
        assert!(
            matches!(t.quote(&e), Quote::Priced { schedule, .. } if schedule == "decree-999-2030")
        );
        e.event_time = time::macros::datetime!(2030-06-30 08:00 +07:00);
        assert!(
            matches!(t.quote(&e), Quote::Priced { schedule, .. } if schedule == "decree-168-2024")
        );
    }
}
