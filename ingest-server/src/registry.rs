//! Owner resolution: the [`Registry`] trait (plate, and plate colour where
//! a caller gives one → vehicle and registered owner; cases are resolved by
//! the plate number alone, [`Registry::find`]) and its SQL implementation, whose tables
//! are filled by `ingest-server registry import vehicles.csv owners.csv`
//! (`registry/import.rs`).
//!
//! Owner data is personal data (Decree 13/2023): every lookup, found or not,
//! is written to `registry_access_log` with who asked, why, and for which
//! case. Resolution (`registry/resolve.rs`) runs after a case is committed
//! and never blocks ingest; a plate that is not found leaves the case
//! `unresolved` for a person to handle, and a registry that fails leaves it
//! `error`, looked up again by the sweeper with a backoff. Only an owner
//! whose lookup is `resolved` is told of a case and sees it in the citizen
//! app ([`deliverable_owner`]).
//!
//! Two implementations: [`SqlRegistry`] (our own tables; with
//! [`DemoRegistry`] on top for `make demo`) and [`HttpRegistry`] (the
//! national data-exchange gateway, `src/registry/http.rs`), chosen by
//! `registry.backend`. Both write the access log through [`log_access`].
//! Neither keeps a phone number: no channel uses one (minimum collection).
//! The gateway's answers are copied into the same `owners` and `vehicles`
//! tables, marked by `copied_at` (migration 0019) so that retention can
//! delete a copy no kept case needs while leaving the imported registry
//! alone.

mod demo;
pub mod http;
mod import;
pub mod kind;
mod resolve;

pub use demo::{DemoRegistry, FICTITIOUS};
pub use http::{GatewayError, HttpRegistry};
pub use import::{ImportError, ImportProblem, import};
pub use resolve::{
    ACTIVE_STATUSES, AMBIGUOUS, DELIVERABLE_OWNER_SQL, PENDING_GRACE_MS, RESOLVED, RETRY_BASE_MS,
    RETRY_MAX_MS, SWEEP_EVERY, deliverable_owner, registration_status, resolve_due, resolve_for,
    resolve_owners, resolve_pending, retry_wait_ms, spawn_sweeper,
};

use async_trait::async_trait;
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

/// A registered owner. No phone: no channel reaches an owner by phone, so
/// none is read or kept (a `phone` column of `owners.csv` is read past).
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

/// What a lookup of a plate's number alone came to ([`Registry::find`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlateLookup {
    /// Exactly one registration carries the number (whatever its colour).
    One(Box<Registration>),
    /// None does.
    NotFound,
    /// Several do, under different plate colours (the registry is keyed on
    /// plate and colour): which one the case is about is for a person to
    /// say, not the camera's colour guess.
    Several,
}

impl PlateLookup {
    /// The registration when there is exactly one.
    pub fn into_one(self) -> Option<Registration> {
        match self {
            PlateLookup::One(r) => Some(*r),
            PlateLookup::NotFound | PlateLookup::Several => None,
        }
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

    /// Looks up a canonical plate by its number alone, never narrowed by a
    /// colour: what owner resolution uses, since the plate colour of a case
    /// is the camera's guess (an HSV step that sodium light or dirt fools)
    /// and no person confirms it. Tells "several registrations" apart from
    /// "none". The default, for registries that cannot tell them apart,
    /// is [`Registry::lookup`] without a colour (several read as none).
    async fn find(&self, plate: &str, purpose: &Purpose) -> Result<PlateLookup, RegistryError> {
        Ok(match self.lookup(plate, None, purpose).await? {
            Some(r) => PlateLookup::One(Box::new(r)),
            None => PlateLookup::NotFound,
        })
    }
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
        Ok(self.select(plate, colour, purpose).await?.into_one())
    }

    async fn find(&self, plate: &str, purpose: &Purpose) -> Result<PlateLookup, RegistryError> {
        self.select(plate, None, purpose).await
    }
}

impl SqlRegistry {
    /// The registrations of `plate` (of `colour` only, when given), and the
    /// access log's row.
    async fn select(
        &self,
        plate: &str,
        colour: Option<&str>,
        purpose: &Purpose,
    ) -> Result<PlateLookup, RegistryError> {
        let rows = sqlx::query(
            "SELECT v.plate_text, v.plate_colour, v.vehicle_type, v.make, v.colour, \
             v.registration_status, v.owner_id, o.full_name, o.national_id, o.address, \
             o.email, o.vneid FROM vehicles v JOIN owners o ON o.owner_id = v.owner_id \
             WHERE v.plate_text = $1 AND ($2 = '' OR v.plate_colour = $2)",
        )
        .bind(plate)
        .bind(colour.unwrap_or(""))
        .fetch_all(self.db.pool())
        .await?;
        let mut all = Vec::with_capacity(rows.len());
        for r in &rows {
            all.push(Registration {
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
                    email: r.try_get(10)?,
                    vneid: r.try_get(11)?,
                },
            });
        }
        let found = one_registration(all);
        let outcome = match &found {
            PlateLookup::One(_) => AccessOutcome::Found,
            PlateLookup::NotFound => AccessOutcome::NotFound,
            PlateLookup::Several => AccessOutcome::Ambiguous,
        };
        log_access(&self.db, plate, purpose, outcome).await?;
        Ok(found)
    }
}

/// The registration a number stands for among `all` of its rows: the only
/// one; or, of several (under different plate colours), the only one
/// still active (a vehicle re-plated from white to yellow keeps its number,
/// the old row deregistered); else [`PlateLookup::Several`], for a person.
fn one_registration(mut all: Vec<Registration>) -> PlateLookup {
    if all.len() > 1 {
        all.retain(|r| {
            resolve::ACTIVE_STATUSES
                .contains(&kind::normalise(&r.vehicle.registration_status).as_str())
        });
        if all.len() != 1 {
            return PlateLookup::Several;
        }
    }
    match all.pop() {
        Some(r) => PlateLookup::One(Box::new(r)),
        None => PlateLookup::NotFound,
    }
}

/// What a lookup came to, as written in `registry_access_log.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessOutcome {
    /// A registration was given (`found`).
    Found,
    /// No such vehicle (`not_found`).
    NotFound,
    /// Several vehicles (plate colours) for a plate looked up without a
    /// colour (`ambiguous`).
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

/// Writes `owner` (new, or replacing the record with its id). The `phone`
/// column is left empty, and emptied on a record that had one.
/// `copied_at`: when the gateway answered with it (a copy, which retention
/// deletes once no kept case names it), or `None` for the registry's own
/// record (the import's, never deleted); the last writer decides.
pub(crate) async fn upsert_owner(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    o: &Owner,
    copied_at: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO owners (owner_id, full_name, national_id, address, phone, email, vneid, \
         copied_at) VALUES ($1, $2, $3, $4, NULL, $5, $6, $7) ON CONFLICT (owner_id) DO UPDATE \
         SET full_name = excluded.full_name, national_id = excluded.national_id, \
         address = excluded.address, phone = NULL, email = excluded.email, \
         vneid = excluded.vneid, copied_at = excluded.copied_at",
    )
    .bind(&o.owner_id)
    .bind(&o.full_name)
    .bind(&o.national_id)
    .bind(&o.address)
    .bind(o.email.as_deref())
    .bind(o.vneid.as_deref())
    .bind(copied_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes `v` (new, or replacing the record of its plate and colour);
/// `copied_at` as for [`upsert_owner`].
pub(crate) async fn upsert_vehicle(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    v: &Vehicle,
    copied_at: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO vehicles (plate_text, plate_colour, vehicle_type, make, colour, \
         registration_status, owner_id, copied_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (plate_text, plate_colour) DO UPDATE SET \
         vehicle_type = excluded.vehicle_type, make = excluded.make, colour = excluded.colour, \
         registration_status = excluded.registration_status, owner_id = excluded.owner_id, \
         copied_at = excluded.copied_at",
    )
    .bind(&v.plate_text)
    .bind(&v.plate_colour)
    .bind(&v.vehicle_type)
    .bind(&v.make)
    .bind(&v.colour)
    .bind(&v.registration_status)
    .bind(&v.owner_id)
    .bind(copied_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The plate colours a registration may have.
pub(crate) const COLOURS: &[&str] = &["white", "yellow", "blue", "red"];
