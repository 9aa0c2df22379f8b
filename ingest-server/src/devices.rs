//! The registry of edge devices the server accepts events from: each device
//! id with its site and its Ed25519 public key, enrolled by an administrator
//! (CLI `ingest-server device add|list|revoke` or the admin API) and revoked
//! when a box is stolen, replaced or decommissioned. Verification looks the
//! key up here; an unknown or revoked device's events go to quarantine.
//!
//! Each device also gets an MQTT password for the embedded broker
//! ([`issue_mqtt_secret`], shown once) of which only a SHA-256 hash is kept;
//! the broker asks [`check_mqtt_login`] on every connection, so a revoked
//! device can no longer log in. A plain hash is enough (and Argon2 would be
//! wrong here): the secret is 256 random bits, not a person's password, so
//! no dictionary exists to slow down, while a slow hash would let anyone
//! make the server burn CPU per connection attempt and would slow the
//! reconnection storm of a thousand edges after an outage.

use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
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
    /// The device is revoked (no new MQTT secret for it).
    #[error("device `{0}` is revoked")]
    Revoked(String),
    /// The server's key registry failed.
    #[error("server keys: {0}")]
    ServerKeys(String),
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
/// stored stay). Says whether this call revoked it (`false`: it already
/// was, and its first revocation's time and reason stand), so callers
/// audit only real changes.
pub async fn revoke(db: &Db, device_id: &str, reason: &str) -> Result<(Device, bool), DeviceError> {
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
    let changed = done.rows_affected() > 0;
    if changed {
        tracing::warn!(device_id, reason, "device revoked");
    }
    Ok((device, changed))
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

/// What an enrolment hands back: the device, its broker login (the
/// password is shown this once) and the server keys its acks are signed
/// with, for the edge's configuration (`[mqtt] username`/`password_file`,
/// `[server] public_keys`).
#[derive(Debug, Clone, Serialize)]
pub struct Enrolment {
    /// The enrolled device.
    #[serde(flatten)]
    pub device: Device,
    /// Username on the embedded broker: the device id.
    pub mqtt_username: String,
    /// Password on the embedded broker (64 hex characters; not stored).
    pub mqtt_password: String,
    /// Ed25519 public keys (64 hex) the server signs acks with.
    pub server_public_keys: Vec<String>,
}

/// Enrols a device ([`enrol`]), issues its MQTT password and lists the
/// server keys to trust.
pub async fn enrol_with_credentials(
    db: &Db,
    device_id: &str,
    site: &str,
    public_key_hex: &str,
) -> Result<Enrolment, DeviceError> {
    let device = enrol(db, device_id, site, public_key_hex).await?;
    let mqtt_password = issue_mqtt_secret(db, device_id).await?;
    let server_public_keys = crate::server_key::trusted(db)
        .await
        .map_err(|e| DeviceError::ServerKeys(e.to_string()))?;
    Ok(Enrolment {
        mqtt_username: device.device_id.clone(),
        device,
        mqtt_password,
        server_public_keys,
    })
}

/// `sha256:<hex>` of an MQTT secret, as stored.
fn secret_hash(secret: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(secret.as_bytes())))
}

/// Makes a new MQTT password for an enrolled, active device (replacing any
/// earlier one, which stops working at once) and returns it; only its hash
/// is stored.
pub async fn issue_mqtt_secret(db: &Db, device_id: &str) -> Result<String, DeviceError> {
    let device = get(db, device_id)
        .await?
        .ok_or_else(|| DeviceError::NotFound(device_id.to_owned()))?;
    if device.is_revoked() {
        return Err(DeviceError::Revoked(device_id.to_owned()));
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    sqlx::query(
        "UPDATE devices SET mqtt_secret_hash = $1 WHERE device_id = $2 AND revoked_at IS NULL",
    )
    .bind(secret_hash(&secret))
    .bind(device_id)
    .execute(db.pool())
    .await?;
    tracing::info!(device_id, "MQTT secret issued");
    Ok(secret)
}

/// The answer to a device's broker login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttLogin {
    /// Enrolled, active, and the password matches.
    Accepted,
    /// No such device (or the username is not a device id).
    UnknownDevice,
    /// The device is revoked.
    Revoked,
    /// Enrolled without an MQTT secret (issue one).
    NoSecret,
    /// The password does not match.
    WrongPassword,
}

/// Checks a broker login: `username` is the device id, `password` its MQTT
/// secret.
pub async fn check_mqtt_login(
    db: &Db,
    username: &str,
    password: &str,
) -> Result<MqttLogin, DeviceError> {
    if protocol::topics::validate_id("device", username).is_err() {
        return Ok(MqttLogin::UnknownDevice);
    }
    let row = sqlx::query("SELECT revoked_at, mqtt_secret_hash FROM devices WHERE device_id = $1")
        .bind(username)
        .fetch_optional(db.pool())
        .await?;
    let Some(row) = row else {
        return Ok(MqttLogin::UnknownDevice);
    };
    let revoked_at: Option<i64> = row.try_get(0)?;
    let stored: Option<String> = row.try_get(1)?;
    Ok(match (revoked_at, stored) {
        (Some(_), _) => MqttLogin::Revoked,
        (None, None) => MqttLogin::NoSecret,
        (None, Some(stored)) if same(&stored, &secret_hash(password)) => MqttLogin::Accepted,
        (None, Some(_)) => MqttLogin::WrongPassword,
    })
}

/// Compares two strings in time that depends only on their lengths.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
