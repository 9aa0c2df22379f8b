//! The demo registry: the SQL registry, plus — for `make demo` only, when
//! `registry.demo_mode` is on — a made-up registration for any plate it
//! does not know, so a demo run's cases reach the demo's citizens. The
//! invented vehicle belongs to one of the fictitious owners imported with
//! ids starting `demo-` (chosen by the plate, so the same plate always gets
//! the same owner), and is marked `fictitious-demo` in its registration
//! status and make; every lookup is logged like any other. Nothing is
//! invented when there are no `demo-` owners.

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{PlateLookup, Purpose, Registration, Registry, RegistryError, SqlRegistry};
use crate::db::Db;

/// Registration status of invented vehicles.
pub const FICTITIOUS: &str = "fictitious-demo";

/// See the module documentation.
pub struct DemoRegistry {
    db: Db,
    sql: SqlRegistry,
}

impl DemoRegistry {
    /// Over the registry tables of `db`.
    pub fn new(db: Db) -> Self {
        DemoRegistry {
            sql: SqlRegistry::new(db.clone()),
            db,
        }
    }

    async fn invent(&self, plate: &str, colour: Option<&str>) -> Result<bool, RegistryError> {
        let owners: Vec<String> = sqlx::query(
            "SELECT owner_id FROM owners WHERE owner_id LIKE 'demo-%' ORDER BY owner_id",
        )
        .fetch_all(self.db.pool())
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
        if owners.is_empty() {
            return Ok(false);
        }
        let digest = Sha256::digest(plate.as_bytes());
        let pick = usize::from(digest[0]) % owners.len();
        sqlx::query(
            "INSERT INTO vehicles (plate_text, plate_colour, vehicle_type, make, colour, \
             registration_status, owner_id) VALUES ($1, $2, 'unknown', $3, '-', $4, $5) \
             ON CONFLICT (plate_text, plate_colour) DO NOTHING",
        )
        .bind(plate)
        .bind(colour.unwrap_or("white"))
        .bind("Xe giả lập (DỮ LIỆU THỬ, tự tạo)")
        .bind(FICTITIOUS)
        .bind(&owners[pick])
        .execute(self.db.pool())
        .await?;
        tracing::warn!(
            plate,
            owner = owners[pick],
            "demo registry: invented a FICTITIOUS registration"
        );
        Ok(true)
    }
}

#[async_trait]
impl Registry for DemoRegistry {
    async fn lookup(
        &self,
        plate: &str,
        colour: Option<&str>,
        purpose: &Purpose,
    ) -> Result<Option<Registration>, RegistryError> {
        if let Some(found) = self.sql.lookup(plate, colour, purpose).await? {
            return Ok(Some(found));
        }
        if self.invent(plate, colour).await? {
            return self.sql.lookup(plate, colour, purpose).await;
        }
        Ok(None)
    }

    async fn find(&self, plate: &str, purpose: &Purpose) -> Result<PlateLookup, RegistryError> {
        let found = self.sql.find(plate, purpose).await?;
        if found != PlateLookup::NotFound {
            return Ok(found);
        }
        if self.invent(plate, None).await? {
            return self.sql.find(plate, purpose).await;
        }
        Ok(PlateLookup::NotFound)
    }
}
