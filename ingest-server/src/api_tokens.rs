//! Personal tokens for the admin API: `tvat.{token_id}.{secret}`, each
//! belonging to one administrator's account.
//!
//! The admin API also takes the one shared `admin.token` (for bootstrap and
//! provisioning scripts), but with it the audit log can only say
//! `admin-api`. A personal token makes every change through the API name
//! the person, like the console does; it stops working when the token is
//! revoked or expires, when the account is disabled, or when the account is
//! no longer an administrator. Only the SHA-256 of the secret is stored: it
//! is 32 random bytes, so a slow password hash would add nothing. Creating
//! and revoking tokens is audited (`api_token.create`, `api_token.revoke`).

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;
use thiserror::Error;

use crate::accounts::{self, User};
use crate::audit::{self, Who};
use crate::db::{Db, DbError, now_ms};
use crate::workflow::Role;

/// Prefix of a personal token, so it is recognisable in logs and scanners.
const PREFIX: &str = "tvat";

/// Token failures.
#[derive(Debug, Error)]
pub enum ApiTokenError {
    /// No such account.
    #[error("no account {0:?}")]
    NoUser(String),
    /// Only administrators get admin API tokens.
    #[error("{0:?} is not an active administrator")]
    NotAdmin(String),
    /// No such token (or already revoked).
    #[error("no active token {0:?}")]
    NoToken(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for ApiTokenError {
    fn from(e: sqlx::Error) -> Self {
        ApiTokenError::Db(DbError::Sqlx(e))
    }
}

/// A token just made: the whole token is in `token`, shown this once.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Its id (for listing and revoking; not a secret).
    pub token_id: String,
    /// The token to give the API (`Authorization: Bearer …`).
    pub token: String,
}

fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Makes a token for the administrator `username`, valid for `days` (none:
/// until revoked), audited as made `by`.
pub async fn create(
    db: &Db,
    username: &str,
    label: &str,
    days: Option<u32>,
    by: &Who,
) -> Result<NewToken, ApiTokenError> {
    let user = accounts::by_username(db, username)
        .await?
        .ok_or_else(|| ApiTokenError::NoUser(username.to_owned()))?;
    if user.disabled || user.role != Role::Admin {
        return Err(ApiTokenError::NotAdmin(username.to_owned()));
    }
    let token_id = random_hex(8);
    let secret = random_hex(32);
    let now = now_ms();
    let expires = days.map(|d| now + i64::from(d) * 86_400_000);
    let mut tx = audit::begin(db).await?;
    sqlx::query(
        "INSERT INTO api_tokens (token_id, user_id, secret_hash, label, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&token_id)
    .bind(&user.user_id)
    .bind(secret_hash(&secret))
    .bind(label)
    .bind(now)
    .bind(expires)
    .execute(&mut *tx)
    .await?;
    let detail = serde_json::json!({"token_id": token_id, "label": label, "expires_at": expires});
    let subject = format!("user:{}", user.user_id);
    audit::append(&mut tx, now, by, "api_token.create", &subject, &detail).await?;
    tx.commit().await?;
    Ok(NewToken {
        token: format!("{PREFIX}.{token_id}.{secret}"),
        token_id,
    })
}

/// Revokes a token at once, audited as done `by`.
pub async fn revoke(db: &Db, token_id: &str, by: &Who) -> Result<(), ApiTokenError> {
    let now = now_ms();
    let mut tx = audit::begin(db).await?;
    let done = sqlx::query(
        "UPDATE api_tokens SET revoked_at = $1 WHERE token_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(token_id)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(ApiTokenError::NoToken(token_id.to_owned()));
    }
    let subject = format!("api_token:{token_id}");
    audit::append(
        &mut tx,
        now,
        by,
        "api_token.revoke",
        &subject,
        &serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The account a bearer token stands for, if it is a personal token that
/// is active, of an active administrator; `None` for anything else
/// (including strings that are not personal tokens at all).
pub async fn admin_of(db: &Db, bearer: &str) -> Result<Option<User>, DbError> {
    let mut parts = bearer.splitn(3, '.');
    let (Some(PREFIX), Some(token_id), Some(secret)) = (parts.next(), parts.next(), parts.next())
    else {
        return Ok(None);
    };
    let row = sqlx::query(
        "SELECT t.secret_hash, t.expires_at, t.revoked_at, u.user_id, u.username, \
         u.display_name, u.role, u.disabled_at FROM api_tokens t \
         JOIN users u ON u.user_id = t.user_id WHERE t.token_id = $1",
    )
    .bind(token_id)
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let stored: String = row.try_get(0)?;
    let expires: Option<i64> = row.try_get(1)?;
    let revoked: Option<i64> = row.try_get(2)?;
    let role: String = row.try_get(6)?;
    let disabled: Option<i64> = row.try_get(7)?;
    let given = secret_hash(secret);
    // Constant-time comparison of the two hex digests.
    let same = stored.len() == given.len()
        && stored
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    let now = now_ms();
    if !same
        || revoked.is_some()
        || expires.is_some_and(|e| e <= now)
        || disabled.is_some()
        || Role::parse(&role) != Some(Role::Admin)
    {
        return Ok(None);
    }
    let user = User {
        user_id: row.try_get(3)?,
        username: row.try_get(4)?,
        display_name: row.try_get(5)?,
        role: Role::Admin,
        disabled: false,
    };
    sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_id = $2")
        .bind(now)
        .bind(token_id)
        .execute(db.pool())
        .await?;
    Ok(Some(user))
}
