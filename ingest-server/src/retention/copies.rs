//! Step 5 of retention ([`super::run`]): the owners and vehicles the
//! registry gateway's lookups copied into our tables (`copied_at`,
//! migration 0019; `registry/http.rs`) that no kept case needs. The
//! gateway is asked about every readable plate when its case is stored,
//! before review, so misreads and cases later rejected are copied too; a
//! copy goes once no case whose evidence is kept needs it. Rows the CSV
//! import wrote (`copied_at` empty) are the registry itself and stay.

use super::{DAY_MS, RetentionError, retention_actor};
use crate::audit;
use crate::db::Db;

/// A copy of a registration is at least this old before retention deletes
/// it: the lookup writes the copy first and the case's owner after, so a
/// copy just made may not be named by its case yet.
pub const COPY_GRACE_MS: i64 = DAY_MS;

/// Step 5: the gateway's copies of vehicles, then of owners, that no kept
/// case needs (see the module documentation). Returns (owners, vehicles)
/// deleted.
pub(super) async fn remove_owner_copies(
    db: &Db,
    now: i64,
) -> Result<(usize, usize), RetentionError> {
    let before = now.saturating_sub(COPY_GRACE_MS);
    let mut tx = audit::begin(db).await?;
    let vehicles = sqlx::query(
        "DELETE FROM vehicles WHERE copied_at IS NOT NULL AND copied_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM events e WHERE e.evidence_purged_at IS NULL \
         AND e.owner_id = vehicles.owner_id AND COALESCE(e.reviewed_plate, \
         CASE WHEN e.plate_readable <> 0 THEN e.plate_text END) = vehicles.plate_text)",
    )
    .bind(before)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let owners = sqlx::query(
        "DELETE FROM owners WHERE copied_at IS NOT NULL AND copied_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM events e WHERE e.evidence_purged_at IS NULL \
         AND e.owner_id = owners.owner_id) \
         AND NOT EXISTS (SELECT 1 FROM vehicles v WHERE v.owner_id = owners.owner_id)",
    )
    .bind(before)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let (owners, vehicles) = (
        usize::try_from(owners).unwrap_or(usize::MAX),
        usize::try_from(vehicles).unwrap_or(usize::MAX),
    );
    if owners > 0 || vehicles > 0 {
        let detail = serde_json::json!({"owners": owners, "vehicles": vehicles});
        audit::append(
            &mut tx,
            now,
            &retention_actor(),
            "registry.copy_purge",
            "registry",
            &detail,
        )
        .await?;
    }
    tx.commit().await?;
    Ok((owners, vehicles))
}
