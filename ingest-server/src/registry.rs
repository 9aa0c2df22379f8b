//! Owner resolution: the [`Registry`] trait (plate and plate colour →
//! vehicle and registered owner) and its SQL implementation, whose tables
//! are filled by `ingest-server registry import vehicles.csv owners.csv`.
//!
//! Owner data is personal data (Decree 13/2023): every lookup, found or not,
//! is written to `registry_access_log` with who asked, why, and for which
//! case. Resolution runs after a case is committed and never blocks ingest;
//! a plate that is not found, or a registry that fails, leaves the case
//! `unresolved` / `error` for a person to handle.
//!
//! Two implementations: [`SqlRegistry`] (our own tables; with
//! [`DemoRegistry`] on top for `make demo`) and [`HttpRegistry`] (the
//! national data-exchange gateway, `src/registry/http.rs`), chosen by
//! `registry.backend`. Both write the access log through [`log_access`].
//!
//! The import is all or nothing: both files are validated line by line
//! (plate grammar, colour, national ID, owner references, duplicates), every
//! problem is reported with its file and line, and only a clean pair is
//! written, in one transaction.

mod demo;
pub mod http;

pub use demo::{DemoRegistry, FICTITIOUS};
pub use http::{GatewayError, HttpRegistry};

use std::collections::{HashMap, HashSet};
use std::path::Path;

use async_trait::async_trait;
use plate_ocr::plate::PlateGrammar;
use protocol::ViolationEvent;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use thiserror::Error;
use uuid::Uuid;

use crate::db::{Db, DbError, now_ms};

/// A registered vehicle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vehicle {
    /// Canonical plate text.
    pub plate_text: String,
    /// Plate colour (`white`, `yellow`, `blue`, `red`).
    pub plate_colour: String,
    /// Vehicle type (e.g. `car`, `motorcycle`).
    pub vehicle_type: String,
    /// Make and model.
    pub make: String,
    /// Body colour.
    pub colour: String,
    /// Registration status (e.g. `active`, `deregistered`).
    pub registration_status: String,
    /// Owner id.
    pub owner_id: String,
}

/// A registered owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Owner id (the registry's own).
    pub owner_id: String,
    /// Full name.
    pub full_name: String,
    /// National ID number (CCCD, 12 digits; older CMND, 9 digits).
    pub national_id: String,
    /// Address.
    pub address: String,
    /// Phone, if known.
    pub phone: Option<String>,
    /// E-mail, if known.
    pub email: Option<String>,
    /// VNeID account link, if known.
    pub vneid: Option<String>,
}

/// Vehicle and owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registration {
    /// The vehicle.
    pub vehicle: Vehicle,
    /// Its owner.
    pub owner: Owner,
}

/// Why a lookup is made (written to the access log).
#[derive(Debug, Clone)]
pub struct Purpose {
    /// Who asks (`ingest` for automatic resolution, or a user).
    pub actor: String,
    /// Why.
    pub reason: String,
    /// For which case.
    pub event_id: Option<Uuid>,
}

/// A registry that could not answer.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// Database failure.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Remote registry failure.
    #[error("registry unavailable: {0}")]
    Unavailable(String),
    /// The HTTP registry gateway did not answer usably (or its circuit is
    /// open).
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

impl From<sqlx::Error> for RegistryError {
    fn from(e: sqlx::Error) -> Self {
        RegistryError::Db(DbError::Sqlx(e))
    }
}

/// Plate → vehicle and owner.
#[async_trait]
pub trait Registry: Send + Sync {
    /// Looks up a canonical plate; `colour` narrows it when known. `None`
    /// when not registered (or ambiguous without a colour).
    async fn lookup(
        &self,
        plate: &str,
        colour: Option<&str>,
        purpose: &Purpose,
    ) -> Result<Option<Registration>, RegistryError>;
}

/// The registry in our own database.
pub struct SqlRegistry {
    db: Db,
}

impl SqlRegistry {
    /// Over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

#[async_trait]
impl Registry for SqlRegistry {
    async fn lookup(
        &self,
        plate: &str,
        colour: Option<&str>,
        purpose: &Purpose,
    ) -> Result<Option<Registration>, RegistryError> {
        let rows = sqlx::query(
            "SELECT v.plate_text, v.plate_colour, v.vehicle_type, v.make, v.colour, \
             v.registration_status, v.owner_id, o.full_name, o.national_id, o.address, \
             o.phone, o.email, o.vneid FROM vehicles v JOIN owners o ON o.owner_id = v.owner_id \
             WHERE v.plate_text = $1 AND ($2 = '' OR v.plate_colour = $2)",
        )
        .bind(plate)
        .bind(colour.unwrap_or(""))
        .fetch_all(self.db.pool())
        .await?;
        let found = if rows.len() == 1 {
            let r = &rows[0];
            Some(Registration {
                vehicle: Vehicle {
                    plate_text: r.try_get(0)?,
                    plate_colour: r.try_get(1)?,
                    vehicle_type: r.try_get(2)?,
                    make: r.try_get(3)?,
                    colour: r.try_get(4)?,
                    registration_status: r.try_get(5)?,
                    owner_id: r.try_get(6)?,
                },
                owner: Owner {
                    owner_id: r.try_get(6)?,
                    full_name: r.try_get(7)?,
                    national_id: r.try_get(8)?,
                    address: r.try_get(9)?,
                    phone: r.try_get(10)?,
                    email: r.try_get(11)?,
                    vneid: r.try_get(12)?,
                },
            })
        } else {
            None
        };
        let outcome = match (&found, rows.len()) {
            (Some(_), _) => AccessOutcome::Found,
            (None, 0) => AccessOutcome::NotFound,
            (None, _) => AccessOutcome::Ambiguous,
        };
        log_access(&self.db, plate, purpose, outcome).await?;
        Ok(found)
    }
}

/// What a lookup came to, as written in `registry_access_log.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessOutcome {
    /// A registration was given (`found`).
    Found,
    /// No such vehicle (`not_found`).
    NotFound,
    /// Several vehicles for a plate without a colour (`ambiguous`).
    Ambiguous,
    /// `found`, answered from a short-lived cache of an earlier lookup
    /// (`found_cached`): the owner's data was still shown to someone.
    FoundCached,
    /// `not_found` from the cache (`not_found_cached`).
    NotFoundCached,
    /// `ambiguous` from the cache (`ambiguous_cached`).
    AmbiguousCached,
    /// The registry was asked and did not answer usably (`error`).
    Error,
    /// The registry was not asked: it is known to be down (`unavailable`).
    Unavailable,
}

impl AccessOutcome {
    /// The text stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessOutcome::Found => "found",
            AccessOutcome::NotFound => "not_found",
            AccessOutcome::Ambiguous => "ambiguous",
            AccessOutcome::FoundCached => "found_cached",
            AccessOutcome::NotFoundCached => "not_found_cached",
            AccessOutcome::AmbiguousCached => "ambiguous_cached",
            AccessOutcome::Error => "error",
            AccessOutcome::Unavailable => "unavailable",
        }
    }
}

/// Writes one row of `registry_access_log` for a lookup of `plate`: who
/// asked (`purpose.actor`), when (now), why, for which case, and what came
/// of it. Every [`Registry`] implementation calls this for every lookup,
/// whether or not its answer came from a cache.
pub async fn log_access(
    db: &Db,
    plate: &str,
    purpose: &Purpose,
    outcome: AccessOutcome,
) -> Result<(), RegistryError> {
    sqlx::query(
        "INSERT INTO registry_access_log (id, at, actor, plate, purpose, event_id, outcome) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(now_ms())
    .bind(&purpose.actor)
    .bind(plate)
    .bind(&purpose.reason)
    .bind(purpose.event_id.map(|e| e.to_string()))
    .bind(outcome.as_str())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Writes `owner` (new, or replacing the record with its id).
pub(crate) async fn upsert_owner(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    o: &Owner,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO owners (owner_id, full_name, national_id, address, phone, email, vneid) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (owner_id) DO UPDATE SET \
         full_name = excluded.full_name, national_id = excluded.national_id, \
         address = excluded.address, phone = excluded.phone, email = excluded.email, \
         vneid = excluded.vneid",
    )
    .bind(&o.owner_id)
    .bind(&o.full_name)
    .bind(&o.national_id)
    .bind(&o.address)
    .bind(o.phone.as_deref())
    .bind(o.email.as_deref())
    .bind(o.vneid.as_deref())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes `v` (new, or replacing the record of its plate and colour).
pub(crate) async fn upsert_vehicle(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    v: &Vehicle,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO vehicles (plate_text, plate_colour, vehicle_type, make, colour, \
         registration_status, owner_id) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (plate_text, plate_colour) DO UPDATE SET \
         vehicle_type = excluded.vehicle_type, make = excluded.make, colour = excluded.colour, \
         registration_status = excluded.registration_status, owner_id = excluded.owner_id",
    )
    .bind(&v.plate_text)
    .bind(&v.plate_colour)
    .bind(&v.vehicle_type)
    .bind(&v.make)
    .bind(&v.colour)
    .bind(&v.registration_status)
    .bind(&v.owner_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Resolves the owners of freshly stored cases and records the result on
/// each case. Never fails: problems are logged and left on the case.
pub async fn resolve_owners(db: &Db, registry: &dyn Registry, events: &[ViolationEvent]) {
    for e in events {
        let plate = e.plate.text.as_deref().filter(|_| e.plate.readable);
        let colour = crate::ingest::enum_text(&e.plate.colour);
        resolve_one(db, registry, e.event_id, plate, &colour, "ingest").await;
    }
}

/// The plate a case is about, in SQL: the reviewer's correction, else the
/// device's read when it was readable. Every owner lookup is of this plate.
/// (A macro so the queries stay literal SQL.)
macro_rules! case_plate {
    () => {
        "COALESCE(reviewed_plate, CASE WHEN plate_readable <> 0 THEN plate_text END)"
    };
}

/// Resolves cases still `pending` (their server stopped before it looked
/// them up, or before the lookup of a reviewer's correction), oldest
/// first, at most `limit`, each by the plate it is about now. Returns how
/// many were looked at.
pub async fn resolve_pending(db: &Db, registry: &dyn Registry, limit: i64) -> usize {
    let rows = sqlx::query(concat!(
        "SELECT event_id, ",
        case_plate!(),
        ", plate_colour FROM events WHERE owner_status = 'pending' ORDER BY received_at LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(db.pool())
    .await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "listing pending owner lookups failed");
            return 0;
        }
    };
    let mut n = 0;
    for r in rows {
        let (Ok(id), Ok(plate), Ok(colour)) = (
            r.try_get::<String, _>(0),
            r.try_get::<Option<String>, _>(1),
            r.try_get::<String, _>(2),
        ) else {
            continue;
        };
        let Ok(id) = Uuid::parse_str(&id) else {
            continue;
        };
        resolve_one(db, registry, id, plate.as_deref(), &colour, "ingest").await;
        n += 1;
    }
    n
}

/// Looks the owner up again after a reviewer corrected the plate; the
/// lookup is logged under the reviewer's id.
pub async fn resolve_for(
    db: &Db,
    registry: &dyn Registry,
    event_id: Uuid,
    plate: &str,
    colour: &str,
    actor: &str,
) {
    resolve_one(db, registry, event_id, Some(plate), colour, actor).await;
}

async fn resolve_one(
    db: &Db,
    registry: &dyn Registry,
    event_id: Uuid,
    plate: Option<&str>,
    colour: &str,
    actor: &str,
) {
    let (status, owner) = match plate {
        Some(plate) => {
            let colour = (colour != "unknown").then_some(colour);
            let purpose = Purpose {
                actor: actor.into(),
                reason: "identify the registered owner of a detected violation".into(),
                event_id: Some(event_id),
            };
            match registry.lookup(plate, colour, &purpose).await {
                Ok(Some(r)) => {
                    let seen: Option<String> =
                        sqlx::query_scalar("SELECT vehicle_class FROM events WHERE event_id = $1")
                            .bind(event_id.to_string())
                            .fetch_optional(db.pool())
                            .await
                            .ok()
                            .flatten();
                    (
                        registration_status(&r.vehicle, seen.as_deref()),
                        Some(r.owner.owner_id),
                    )
                }
                Ok(None) => ("unresolved", None),
                Err(err) => {
                    tracing::warn!(%event_id, error = %err, "owner lookup failed");
                    ("error", None)
                }
            }
        }
        None => ("unresolved", None),
    };
    // Recorded only if the case is still about the plate looked up: a
    // lookup of the machine read that finishes after a reviewer corrected
    // the plate (or one left over from before a restart) must not put the
    // owner of the misread plate on the case — the notice goes to
    // `owner_id`. The correction's own lookup (or the sweep at start,
    // which reads the corrected plate) records it instead. An owner set on
    // a confirmed case is never changed: the notice went to that person.
    let done = sqlx::query(concat!(
        "UPDATE events SET owner_status = $1, owner_id = $2 WHERE event_id = $3 AND COALESCE(",
        case_plate!(),
        ", '') = COALESCE($4, '') AND (confirmed_at IS NULL OR owner_id IS NULL)"
    ))
    .bind(status)
    .bind(owner)
    .bind(event_id.to_string())
    .bind(plate)
    .execute(db.pool())
    .await;
    match done {
        Ok(r) if r.rows_affected() == 0 => {
            tracing::info!(%event_id, "owner lookup outdated (the case's plate changed, or it is confirmed); not recorded")
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(%event_id, error = %err, "recording owner status failed"),
    }
}

/// The owner status of a registration found for a case whose camera saw a
/// `seen` vehicle: `resolved`, or why a person must look before anyone is
/// fined. A plate registered to a motorbike on a car (or the other way
/// round) is a misread or a cloned plate: the registered owner may be
/// innocent. A registration the registry calls deregistered, revoked,
/// stolen, suspended or expired likewise. Types the registry or the camera leave open, and
/// confusions within four wheels (car, bus, truck: the detector mixes
/// them), are not a mismatch.
pub fn registration_status(v: &Vehicle, seen: Option<&str>) -> &'static str {
    let two_wheels = |t: &str| {
        let t = t.trim().to_lowercase();
        [
            "motorcycle",
            "motorbike",
            "moped",
            "scooter",
            "xe máy",
            "xe mô tô",
        ]
        .iter()
        .any(|k| t == *k)
    };
    let four_wheels = |t: &str| {
        let t = t.trim().to_lowercase();
        [
            "car",
            "bus",
            "truck",
            "van",
            "ô tô",
            "xe ô tô",
            "xe khách",
            "xe tải",
        ]
        .iter()
        .any(|k| t == *k)
    };
    let status = v.registration_status.trim().to_lowercase();
    let inactive = [
        "deregistered",
        "revoked",
        "stolen",
        "suspended",
        "expired",
        "thu hồi",
        "mất cắp",
    ];
    if inactive.iter().any(|w| status.contains(w)) {
        return "registration_not_active";
    }
    match seen {
        Some(seen)
            if (two_wheels(seen) && four_wheels(&v.vehicle_type))
                || (four_wheels(seen) && two_wheels(&v.vehicle_type)) =>
        {
            "vehicle_mismatch"
        }
        _ => "resolved",
    }
}

/// One problem found in an import file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportProblem {
    /// File name.
    pub file: String,
    /// 1-based line number (the header is line 1).
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ImportProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// Result of an import.
#[derive(Debug, Error)]
pub enum ImportError {
    /// The files have problems; nothing was written.
    #[error("{} problem(s); nothing imported", .0.len())]
    Invalid(Vec<ImportProblem>),
    /// A file could not be read.
    #[error("reading {path}: {message}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        message: String,
    },
    /// Database failure.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for ImportError {
    fn from(e: sqlx::Error) -> Self {
        ImportError::Db(DbError::Sqlx(e))
    }
}

/// The plate colours a registration may have.
pub(crate) const COLOURS: &[&str] = &["white", "yellow", "blue", "red"];

fn read_csv<T: for<'de> Deserialize<'de>>(
    path: &Path,
    problems: &mut Vec<ImportProblem>,
) -> Result<Vec<(u64, T)>, ImportError> {
    let file = path.display().to_string();
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| ImportError::Read {
            path: file.clone(),
            message: e.to_string(),
        })?;
    let mut out = Vec::new();
    for (i, rec) in reader.deserialize::<T>().enumerate() {
        let line = i as u64 + 2;
        match rec {
            Ok(r) => out.push((line, r)),
            Err(e) => problems.push(ImportProblem {
                file: file.clone(),
                line: e.position().map_or(line, |p| p.line()),
                message: e.to_string(),
            }),
        }
    }
    Ok(out)
}

fn empty_none(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.is_empty())
}

/// Validates and imports `vehicles.csv` and `owners.csv` (see the README for
/// the columns). Returns (vehicles, owners) written.
pub async fn import(
    db: &Db,
    grammar: &PlateGrammar,
    vehicles_csv: &Path,
    owners_csv: &Path,
) -> Result<(usize, usize), ImportError> {
    let mut problems = Vec::new();
    let owners: Vec<(u64, Owner)> = read_csv(owners_csv, &mut problems)?;
    let vehicles: Vec<(u64, Vehicle)> = read_csv(vehicles_csv, &mut problems)?;
    let of = owners_csv.display().to_string();
    let vf = vehicles_csv.display().to_string();
    let mut problem = |file: &str, line: u64, message: String| {
        problems.push(ImportProblem {
            file: file.to_owned(),
            line,
            message,
        })
    };

    let mut owner_ids = HashSet::new();
    let mut clean_owners = Vec::new();
    for (line, mut o) in owners {
        o.phone = empty_none(o.phone);
        o.email = empty_none(o.email);
        o.vneid = empty_none(o.vneid);
        if o.owner_id.is_empty() || o.full_name.is_empty() || o.address.is_empty() {
            problem(
                &of,
                line,
                "owner_id, full_name and address are required".into(),
            );
        } else if !(o.national_id.len() == 12 || o.national_id.len() == 9)
            || !o.national_id.bytes().all(|b| b.is_ascii_digit())
        {
            problem(
                &of,
                line,
                format!(
                    "national_id {:?}: expected 12 digits (CCCD) or 9 (CMND)",
                    o.national_id
                ),
            );
        } else if !owner_ids.insert(o.owner_id.clone()) {
            problem(
                &of,
                line,
                format!("owner_id {:?} appears twice", o.owner_id),
            );
        } else {
            clean_owners.push(o);
        }
    }
    let known: HashSet<String> = sqlx::query("SELECT owner_id FROM owners")
        .fetch_all(db.pool())
        .await?
        .iter()
        .filter_map(|r| r.try_get::<String, _>(0).ok())
        .collect();
    let mut plates = HashMap::new();
    let mut clean_vehicles = Vec::new();
    for (line, mut v) in vehicles {
        match grammar.parse(&v.plate_text) {
            Ok(p) => v.plate_text = p.canonical,
            Err(e) => {
                problem(&vf, line, format!("plate {:?}: {e}", v.plate_text));
                continue;
            }
        }
        v.plate_colour = v.plate_colour.to_lowercase();
        if !COLOURS.contains(&v.plate_colour.as_str()) {
            problem(
                &vf,
                line,
                format!(
                    "plate_colour {:?}: expected one of {COLOURS:?}",
                    v.plate_colour
                ),
            );
        } else if v.vehicle_type.is_empty() || v.registration_status.is_empty() {
            problem(
                &vf,
                line,
                "vehicle_type and registration_status are required".into(),
            );
        } else if !owner_ids.contains(&v.owner_id) && !known.contains(&v.owner_id) {
            problem(
                &vf,
                line,
                format!(
                    "owner_id {:?} is in neither owners file nor database",
                    v.owner_id
                ),
            );
        } else if let Some(first) =
            plates.insert((v.plate_text.clone(), v.plate_colour.clone()), line)
        {
            problem(
                &vf,
                line,
                format!(
                    "plate {} ({}) also on line {first}",
                    v.plate_text, v.plate_colour
                ),
            );
        } else {
            clean_vehicles.push(v);
        }
    }
    if !problems.is_empty() {
        return Err(ImportError::Invalid(problems));
    }

    let mut tx = db.pool().begin().await?;
    for o in &clean_owners {
        upsert_owner(&mut tx, o).await?;
    }
    for v in &clean_vehicles {
        upsert_vehicle(&mut tx, v).await?;
    }
    tx.commit().await?;
    Ok((clean_vehicles.len(), clean_owners.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vehicle(kind: &str, status: &str) -> Vehicle {
        Vehicle {
            plate_text: "30A12345".into(),
            plate_colour: "white".into(),
            vehicle_type: kind.into(),
            make: "-".into(),
            colour: "-".into(),
            registration_status: status.into(),
            owner_id: "o1".into(),
        }
    }

    #[test]
    fn a_registration_that_does_not_fit_what_the_camera_saw_is_for_a_person() {
        let car = vehicle("car", "active");
        assert_eq!(registration_status(&car, Some("car")), "resolved");
        assert_eq!(
            registration_status(&car, Some("truck")),
            "resolved",
            "four wheels mix"
        );
        assert_eq!(
            registration_status(&car, Some("motorcycle")),
            "vehicle_mismatch"
        );
        let bike = vehicle("Xe máy", "active");
        assert_eq!(registration_status(&bike, Some("car")), "vehicle_mismatch");
        assert_eq!(registration_status(&bike, Some("motorcycle")), "resolved");
        assert_eq!(
            registration_status(&vehicle("unknown", "active"), Some("car")),
            "resolved"
        );
        assert_eq!(registration_status(&car, None), "resolved");
        assert_eq!(
            registration_status(&vehicle("car", "Stolen"), Some("car")),
            "registration_not_active"
        );
        assert_eq!(
            registration_status(&vehicle("car", "fictitious-demo"), Some("car")),
            "resolved"
        );
    }
}
