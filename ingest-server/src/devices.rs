//! The registry of edge devices the server accepts events from: each device
//! id with its site and its Ed25519 public key, enrolled by an administrator
//! (CLI `ingest-server device add|list|revoke` or the admin API) and revoked
//! when a box is stolen, replaced or decommissioned. Verification looks the
//! key up here; an unknown or revoked device's events go to quarantine.

use serde::Serialize;
use sqlx::Row;
use thiserror::Error;

use crate::db::{Db, DbError, now_ms};
use protocol::VerifyingKey;

/// One enrolled device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// Device id (as in topics).
    pub device_id: String,
    /// The site it is installed at.
    pub site: String,
    /// Ed25519 public key, 64 hex characters.
    pub public_key: String,
    /// When it was enrolled (Unix ms).
    pub enrolled_at: i64,
    /// When it was revoked (Unix ms), if it was.
    pub revoked_at: Option<i64>,
    /// Why it was revoked.
    pub revoked_reason: Option<String>,
}

impl Device {
    /// The verifying key (checked at enrolment, so this only fails if the
    /// database was edited by hand).
    pub fn verifying_key(&self) -> Result<VerifyingKey, DeviceError> {
        parse_public_key(&self.public_key)
    }

    /// Whether events from it are refused.
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

/// What can go wrong managing devices.
#[derive(Debug, Error)]
pub enum DeviceError {
    /// The id is not a valid topic id.
    #[error("invalid device id or site: {0}")]
    InvalidId(String),
    /// The key is not 32 bytes of hex or not a valid Ed25519 point.
    #[error("invalid public key: {0}")]
    InvalidKey(String),
    /// A device with that id exists already.
    #[error("device `{0}` is already enrolled")]
    Exists(String),
    /// No such device.
    #[error("device `{0}` is not enrolled")]
    NotFound(String),
    /// Database failure.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for DeviceError {
    fn from(e: sqlx::Error) -> Self {
        DeviceError::Db(DbError::Sqlx(e))
    }
}

/// Parses a 64-hex-character Ed25519 public key.
pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, DeviceError> {
    let bytes = hex::decode(hex_key.trim()).map_err(|e| DeviceError::InvalidKey(e.to_string()))?;
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| DeviceError::InvalidKey(format!("expected 32 bytes, got {}", bytes.len())))?;
    VerifyingKey::from_bytes(&arr).map_err(|e| DeviceError::InvalidKey(e.to_string()))
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<Device, sqlx::Error> {
    Ok(Device {
        device_id: row.try_get(0)?,
        site: row.try_get(1)?,
        public_key: row.try_get(2)?,
        enrolled_at: row.try_get(3)?,
        revoked_at: row.try_get(4)?,
        revoked_reason: row.try_get(5)?,
    })
}

/// Enrols a device. The key is checked to be a valid Ed25519 public key.
pub async fn enrol(
    db: &Db,
    device_id: &str,
    site: &str,
    public_key_hex: &str,
) -> Result<Device, DeviceError> {
    protocol::topics::validate_id("device", device_id)
        .map_err(|e| DeviceError::InvalidId(e.to_string()))?;
    protocol::topics::validate_id("site", site)
        .map_err(|e| DeviceError::InvalidId(e.to_string()))?;
    let key = parse_public_key(public_key_hex)?;
    let device = Device {
        device_id: device_id.to_owned(),
        site: site.to_owned(),
        public_key: hex::encode(key.to_bytes()),
        enrolled_at: now_ms(),
        revoked_at: None,
        revoked_reason: None,
    };
    let done = sqlx::query(
        "INSERT INTO devices (device_id, site, public_key, enrolled_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (device_id) DO NOTHING",
    )
    .bind(&device.device_id)
    .bind(&device.site)
    .bind(&device.public_key)
    .bind(device.enrolled_at)
    .execute(db.pool())
    .await?;
    if done.rows_affected() == 0 {
        return Err(DeviceError::Exists(device_id.to_owned()));
    }
    tracing::info!(device_id, site, "device enrolled");
    Ok(device)
}

/// Revokes a device: its events are refused from now on (events already
/// stored stay).
pub async fn revoke(db: &Db, device_id: &str, reason: &str) -> Result<Device, DeviceError> {
    let done = sqlx::query(
        "UPDATE devices SET revoked_at = $1, revoked_reason = $2 \
         WHERE device_id = $3 AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(reason)
    .bind(device_id)
    .execute(db.pool())
    .await?;
    let device = get(db, device_id)
        .await?
        .ok_or_else(|| DeviceError::NotFound(device_id.to_owned()))?;
    if done.rows_affected() > 0 {
        tracing::warn!(device_id, reason, "device revoked");
    }
    Ok(device)
}

/// One device, if enrolled (revoked or not).
pub async fn get(db: &Db, device_id: &str) -> Result<Option<Device>, DeviceError> {
    let row = sqlx::query(
        "SELECT device_id, site, public_key, enrolled_at, revoked_at, revoked_reason \
         FROM devices WHERE device_id = $1",
    )
    .bind(device_id)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| from_row(&r)).transpose()?)
}

/// Every device, by id.
pub async fn list(db: &Db) -> Result<Vec<Device>, DeviceError> {
    let rows = sqlx::query(
        "SELECT device_id, site, public_key, enrolled_at, revoked_at, revoked_reason \
         FROM devices ORDER BY device_id",
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}
