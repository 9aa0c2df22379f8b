//! Console sessions: server-side, so one can be ended at once (sign-out,
//! account disabled); the cookie carries only a random token, the database
//! its SHA-256. A session lasts one shift at most and ends sooner when
//! unused (`http.console_idle_minutes`): a console left open on an
//! unattended desk shows personal data and can confirm fines. Expired
//! rows are deleted by retention ([`delete_expired_sessions`]).

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{User, user_of};
use crate::db::{Db, DbError};

/// How long a session lasts (one 12-hour shift), however busy; one
/// unused for `http.console_idle_minutes` ends sooner ([`session`]).
pub const SESSION_MS: i64 = 12 * 60 * 60 * 1000;
/// Minutes a session may go unused unless `http.console_idle_minutes`
/// says otherwise.
pub const DEFAULT_IDLE_MINUTES: u32 = 30;
/// How often, at most, a session's `last_seen_at` is written (ms): the
/// idle limit needs minutes, not every request's write.
pub const SEEN_EVERY_MS: i64 = 60_000;

/// A new session: the cookie token (given to the browser once) and the
/// CSRF token its forms carry.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Cookie value.
    pub token: String,
    /// CSRF token.
    pub csrf: String,
}

/// A signed-in session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who.
    pub user: User,
    /// Its CSRF token.
    pub csrf: String,
}

/// 32 random bytes from the OS, hex: a session's cookie token or its CSRF
/// token (the citizen app's sessions use it too).
pub(crate) fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// What the database keeps of a cookie token: its SHA-256, hex.
pub(crate) fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Starts a session for a user who just signed in.
pub async fn start_session(db: &Db, user: &User, now: i64) -> Result<NewSession, DbError> {
    let s = NewSession {
        token: random_token(),
        csrf: random_token(),
    };
    sqlx::query(
        "INSERT INTO sessions (token_sha256, user_id, csrf_token, created_at, expires_at, \
         last_seen_at) VALUES ($1, $2, $3, $4, $5, $4)",
    )
    .bind(token_digest(&s.token))
    .bind(&user.user_id)
    .bind(&s.csrf)
    .bind(now)
    .bind(now + SESSION_MS)
    .execute(db.pool())
    .await?;
    Ok(s)
}

/// The live session of a cookie token, if any: not past its 12 hours, and
/// used within the last `idle_ms` (its use noted at most once a
/// [`SEEN_EVERY_MS`], so a page read is not a write every time).
pub async fn session(
    db: &Db,
    token: &str,
    now: i64,
    idle_ms: i64,
) -> Result<Option<Session>, DbError> {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let digest = token_digest(token);
    let row = sqlx::query(
        "SELECT u.user_id, u.username, u.display_name, u.role, u.disabled_at, s.csrf_token, \
         COALESCE(s.last_seen_at, s.created_at) \
         FROM sessions s JOIN users u ON u.user_id = s.user_id \
         WHERE s.token_sha256 = $1 AND s.expires_at > $2 \
         AND COALESCE(s.last_seen_at, s.created_at) > $3",
    )
    .bind(&digest)
    .bind(now)
    .bind(now.saturating_sub(idle_ms))
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let user = user_of(&row)?;
    if user.disabled {
        return Ok(None);
    }
    let seen: i64 = row.try_get(6)?;
    if now.saturating_sub(seen) >= SEEN_EVERY_MS {
        sqlx::query(
            "UPDATE sessions SET last_seen_at = $1 WHERE token_sha256 = $2 \
             AND (last_seen_at IS NULL OR last_seen_at < $1)",
        )
        .bind(now)
        .bind(&digest)
        .execute(db.pool())
        .await?;
    }
    Ok(Some(Session {
        user,
        csrf: row.try_get(5)?,
    }))
}

/// Ends a session (sign-out).
pub async fn end_session(db: &Db, token: &str) -> Result<(), DbError> {
    sqlx::query("DELETE FROM sessions WHERE token_sha256 = $1")
        .bind(token_digest(token))
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Deletes the sessions past their whole life at `now` (an idle one is
/// refused at once and goes when its life ends). Returns how many.
pub async fn delete_expired_sessions(db: &Db, now: i64) -> Result<u64, DbError> {
    let gone = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(db.pool())
        .await?
        .rows_affected();
    Ok(gone)
}
