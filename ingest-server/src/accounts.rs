//! Console accounts and sessions: people with one role each, local
//! passwords hashed with Argon2id (or single sign-on users, who have none),
//! sign-in with lock-out after repeated failures, and server-side sessions
//! with a per-session CSRF token.
//!
//! Why server-side sessions: a session can be ended at once (sign-out,
//! account disabled), and the cookie carries only a random token whose
//! SHA-256 is what the database keeps. Every sign-in, failure and lock-out
//! goes to the audit log.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sqlx::Row;
use thiserror::Error;
use uuid::Uuid;

use crate::audit::{self, Who};
use crate::db::{Db, DbError, now_ms};
use crate::workflow::Role;

pub(crate) mod sessions;
pub use sessions::{
    DEFAULT_IDLE_MINUTES, NewSession, SEEN_EVERY_MS, SESSION_MS, Session, delete_expired_sessions,
    end_session, session, start_session,
};

/// Failed sign-ins in a row before the account locks.
pub const MAX_FAILED_LOGINS: i64 = 5;
/// How long a lock-out lasts (15 min).
pub const LOCKOUT_MS: i64 = 15 * 60 * 1000;
/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// A console user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    /// Stable id.
    pub user_id: String,
    /// Sign-in name.
    pub username: String,
    /// Shown name.
    pub display_name: String,
    /// Role.
    #[serde(serialize_with = "role_name")]
    pub role: Role,
    /// Disabled accounts cannot sign in.
    pub disabled: bool,
}

fn role_name<S: serde::Serializer>(r: &Role, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.as_str())
}

/// Account problems.
#[derive(Debug, Error)]
pub enum AccountError {
    /// Username not acceptable.
    #[error("username must be 3-64 characters of a-z, 0-9, '.', '_' or '-'")]
    InvalidUsername,
    /// Password too weak.
    #[error("password must be at least {MIN_PASSWORD_CHARS} characters")]
    WeakPassword,
    /// Display name missing or too long.
    #[error("display name must be 1-100 characters")]
    InvalidDisplayName,
    /// Taken.
    #[error("username `{0}` is taken")]
    Exists(String),
    /// No such user.
    #[error("no user `{0}`")]
    NotFound(String),
    /// Hashing failed.
    #[error("password hashing: {0}")]
    Hash(String),
    /// Database.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for AccountError {
    fn from(e: sqlx::Error) -> Self {
        AccountError::Db(DbError::Sqlx(e))
    }
}

/// Why a sign-in failed. Deliberately coarse towards the user: the console
/// shows the same message for an unknown user and a wrong password.
#[derive(Debug, Error)]
pub enum LoginError {
    /// Unknown user, wrong password, disabled or SSO-only account.
    #[error("wrong username or password")]
    Invalid,
    /// Too many failures. The console answers it word for word as
    /// `Invalid` (only accounts that exist lock, so a distinct answer
    /// would tell which do); the audit log tells them apart.
    #[error("account locked after repeated failures; try again later")]
    Locked,
    /// The account could not be read: no password was checked.
    #[error("the accounts could not be read: {0}")]
    Unavailable(DbError),
    /// Database, after the password may have been checked.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for LoginError {
    fn from(e: sqlx::Error) -> Self {
        LoginError::Db(DbError::Sqlx(e))
    }
}

fn valid_username(u: &str) -> bool {
    (3..=64).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Hashes a password with Argon2id (the crate's default parameters: 19 MiB,
/// 2 passes), salted from the OS generator.
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccountError::WeakPassword);
    }
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

fn password_matches(hash: &str, password: &str) -> bool {
    #[cfg(test)]
    tests::CHECKED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((hash.to_owned(), password.to_owned()));
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Password checks running at once. Each costs Argon2's 19 MiB and tens
/// of milliseconds of a core; on the async threads a flood of sign-in
/// attempts would starve every other request, so they run on the blocking
/// pool, a few at a time, and the rest wait their turn here.
static PASSWORD_CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// [`password_matches`] off the async threads, bounded by
/// [`PASSWORD_CHECKS`].
async fn password_matches_bounded(hash: &str, password: &str) -> bool {
    let Ok(_permit) = PASSWORD_CHECKS.acquire().await else {
        return false;
    };
    let (hash, password) = (hash.to_owned(), password.to_owned());
    tokio::task::spawn_blocking(move || password_matches(&hash, &password))
        .await
        .unwrap_or(false)
}

/// Creates a local account (with a password) or an SSO-only one (`None`).
pub async fn create(
    db: &Db,
    username: &str,
    display_name: &str,
    role: Role,
    password: Option<&str>,
    by: &Who,
) -> Result<User, AccountError> {
    if !valid_username(username) {
        return Err(AccountError::InvalidUsername);
    }
    let display_name = display_name.trim();
    if display_name.is_empty() || display_name.chars().count() > 100 {
        return Err(AccountError::InvalidDisplayName);
    }
    let hash = password.map(hash_password).transpose()?;
    let user = User {
        user_id: Uuid::new_v4().to_string(),
        username: username.into(),
        display_name: display_name.into(),
        role,
        disabled: false,
    };
    let now = now_ms();
    let mut tx = audit::begin(db).await?;
    let taken = sqlx::query("SELECT 1 FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(&mut *tx)
        .await?;
    if taken.is_some() {
        return Err(AccountError::Exists(username.into()));
    }
    sqlx::query(
        "INSERT INTO users (user_id, username, display_name, role, password_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&user.user_id)
    .bind(username)
    .bind(&user.display_name)
    .bind(role.as_str())
    .bind(hash)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    audit::append(
        &mut tx,
        now,
        by,
        "user.create",
        &format!("user:{}", user.user_id),
        &serde_json::json!({"username": username, "role": role.as_str(), "local_password": password.is_some()}),
    )
    .await?;
    tx.commit().await?;
    Ok(user)
}

/// The columns every query of this module reads, in [`user_of`] order.
macro_rules! user_columns {
    () => {
        "user_id, username, display_name, role, disabled_at"
    };
}

fn user_of(r: &sqlx::any::AnyRow) -> Result<User, DbError> {
    let role: String = r.try_get(3)?;
    let disabled: Option<i64> = r.try_get(4)?;
    Ok(User {
        user_id: r.try_get(0)?,
        username: r.try_get(1)?,
        display_name: r.try_get(2)?,
        // An unknown stored role gives no rights beyond reading as an auditor
        // would not be safe either: treat it as disabled instead.
        role: Role::parse(&role).unwrap_or(Role::Auditor),
        disabled: disabled.is_some() || Role::parse(&role).is_none(),
    })
}

/// Every user, by username.
pub async fn list(db: &Db) -> Result<Vec<User>, DbError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users ORDER BY username"
    ))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(user_of).collect()
}

/// One user by username.
pub async fn by_username(db: &Db, username: &str) -> Result<Option<User>, DbError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE username = $1"
    ))
    .bind(username)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(user_of).transpose()
}

/// Disables an account and ends its sessions.
pub async fn disable(db: &Db, username: &str, by: &Who) -> Result<User, AccountError> {
    let user = by_username(db, username)
        .await?
        .ok_or_else(|| AccountError::NotFound(username.into()))?;
    let now = now_ms();
    let mut tx = audit::begin(db).await?;
    sqlx::query("UPDATE users SET disabled_at = $1 WHERE user_id = $2")
        .bind(now)
        .bind(&user.user_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(&user.user_id)
        .execute(&mut *tx)
        .await?;
    audit::append(
        &mut tx,
        now,
        by,
        "user.disable",
        &format!("user:{}", user.user_id),
        &serde_json::json!({"username": username}),
    )
    .await?;
    tx.commit().await?;
    Ok(User {
        disabled: true,
        ..user
    })
}

/// Checks a local password, counting failures and locking the account
/// after [`MAX_FAILED_LOGINS`]; every outcome is audited.
pub async fn login(db: &Db, username: &str, password: &str, now: i64) -> Result<User, LoginError> {
    let row = sqlx::query(
        "SELECT user_id, password_hash FROM users \
         WHERE username = $1 AND disabled_at IS NULL",
    )
    .bind(username)
    .fetch_optional(db.pool())
    .await
    .map_err(|e| LoginError::Unavailable(DbError::Sqlx(e)))?;
    let Some(row) = row else {
        // Same work as a real check, so timing does not tell who exists.
        let _ = password_matches_bounded(DUMMY_HASH, password).await;
        audit::record(
            db,
            now,
            &Who::anonymous(username),
            "login.failed",
            "user:unknown",
            &serde_json::json!({"why": "unknown user"}),
        )
        .await?;
        return Err(LoginError::Invalid);
    };
    let user_id: String = row.try_get(0)?;
    let hash: Option<String> = row.try_get(1)?;
    let subject = format!("user:{user_id}");
    // The attempt is counted as a failure *before* the password is hashed
    // (and un-counted if it is right), in one statement that also refuses
    // a locked account: a hundred guesses sent at once get at most
    // MAX_FAILED_LOGINS hashed, the rest the same "locked" answer, so
    // parallel requests neither buy more guesses nor tell a right one by
    // a different answer. The attempt that reaches the limit sets the lock
    // itself (taken back if its password is right): an attempt that dies
    // between its reservation and its verdict (a dropped connection, a
    // busy database, a restart) leaves at most the ordinary lock-out,
    // which expires, never an account locked for good. An expired lock
    // starts the count afresh.
    let reserved: Option<i64> = sqlx::query_scalar(
        "UPDATE users SET \
           failed_logins = CASE WHEN locked_until IS NOT NULL THEN 1 ELSE failed_logins + 1 END, \
           locked_until = CASE \
             WHEN (CASE WHEN locked_until IS NOT NULL THEN 1 ELSE failed_logins + 1 END) >= $3 \
             THEN $4 ELSE NULL END \
         WHERE user_id = $1 AND (locked_until IS NULL OR locked_until <= $2) \
         RETURNING failed_logins",
    )
    .bind(&user_id)
    .bind(now)
    .bind(MAX_FAILED_LOGINS)
    .bind(now + LOCKOUT_MS)
    .fetch_optional(db.pool())
    .await?;
    let Some(failed) = reserved else {
        // The same Argon2 work as any other answer: a quick "no" would tell
        // that this username exists (and is locked).
        let _ = password_matches_bounded(DUMMY_HASH, password).await;
        audit::record(
            db,
            now,
            &Who::anonymous(username),
            "login.refused_locked",
            &subject,
            &serde_json::json!({}),
        )
        .await?;
        return Err(LoginError::Locked);
    };
    // An SSO-only account (no password) is checked against the dummy hash
    // and never matches: the same work, so timing does not tell it apart.
    let checked = password_matches_bounded(hash.as_deref().unwrap_or(DUMMY_HASH), password);
    let ok = checked.await && hash.is_some();
    let mut tx = audit::begin(db).await?;
    if ok {
        // Only if no parallel guess locked the account meanwhile (this
        // attempt's own reservation reaching the limit is taken back: no
        // reservation can follow a lock, so the count is still its own);
        // the reserved failure is taken back with the rest.
        let reset = sqlx::query(
            "UPDATE users SET failed_logins = 0, locked_until = NULL \
             WHERE user_id = $1 AND (locked_until IS NULL OR locked_until <= $2 \
             OR failed_logins = $3)",
        )
        .bind(&user_id)
        .bind(now)
        .bind(failed)
        .execute(&mut *tx)
        .await?;
        if reset.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(LoginError::Locked);
        }
        audit::append(
            &mut tx,
            now,
            &Who::anonymous(username),
            "login.ok",
            &subject,
            &serde_json::json!({"method": "password"}),
        )
        .await?;
        tx.commit().await?;
        let user = by_username(db, username)
            .await?
            .ok_or(LoginError::Invalid)?;
        return Ok(user);
    }
    // Already counted (and, at the limit, locked) when reserved.
    let lock = (failed >= MAX_FAILED_LOGINS).then_some(now + LOCKOUT_MS);
    audit::append(
        &mut tx,
        now,
        &Who::anonymous(username),
        if lock.is_some() {
            "login.locked"
        } else {
            "login.failed"
        },
        &subject,
        &serde_json::json!({"failed_in_a_row": failed}),
    )
    .await?;
    tx.commit().await?;
    Err(if lock.is_some() {
        LoginError::Locked
    } else {
        LoginError::Invalid
    })
}

/// An Argon2id hash of a random password, checked against when the user
/// does not exist or has no password (SSO only).
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0Vbt3b0k8xk9q5Jr4C3c1o2nGqH0e3sV3Yc1m7oQy0I";

/// Finds or creates the account of a single sign-on user, keyed by the
/// identity provider's issuer and subject; the role comes from the
/// provider's claim on every sign-in (so a role removed there is removed
/// here at the next sign-in).
pub async fn upsert_sso_user(
    db: &Db,
    issuer: &str,
    subject: &str,
    username: &str,
    display_name: &str,
    role: Role,
) -> Result<User, AccountError> {
    let now = now_ms();
    let existing =
        sqlx::query("SELECT user_id FROM users WHERE sso_issuer = $1 AND sso_subject = $2")
            .bind(issuer)
            .bind(subject)
            .fetch_optional(db.pool())
            .await?;
    let who = Who::new(format!("sso:{issuer}"), Role::System);
    let user_id = match existing {
        Some(r) => {
            let id: String = r.try_get(0)?;
            let mut tx = audit::begin(db).await?;
            sqlx::query("UPDATE users SET role = $1, display_name = $2 WHERE user_id = $3")
                .bind(role.as_str())
                .bind(display_name)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            audit::append(
                &mut tx,
                now,
                &who,
                "login.ok",
                &format!("user:{id}"),
                &serde_json::json!({"method": "oidc", "role": role.as_str()}),
            )
            .await?;
            tx.commit().await?;
            id
        }
        None => {
            let u = create(db, username, display_name, role, None, &who).await?;
            sqlx::query("UPDATE users SET sso_issuer = $1, sso_subject = $2 WHERE user_id = $3")
                .bind(issuer)
                .bind(subject)
                .bind(&u.user_id)
                .execute(db.pool())
                .await?;
            u.user_id
        }
    };
    let row = sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE user_id = $1"
    ))
    .bind(&user_id)
    .fetch_one(db.pool())
    .await?;
    Ok(user_of(&row)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (hash, password) [`password_matches`] was asked about.
    pub(super) static CHECKED: std::sync::Mutex<Vec<(String, String)>> =
        std::sync::Mutex::new(Vec::new());

    /// Not timed (tests do not assert on timing): the dummy check is made.
    #[tokio::test]
    async fn an_sso_only_account_costs_the_same_argon2_check() {
        let dir = tempfile::tempdir().unwrap();
        let url = Db::sqlite_url(&dir.path().join("db.sqlite"));
        let db = Db::connect(&url).await.unwrap();
        let by = Who::new("test", Role::Admin);
        create(&db, "sso.only", "SSO", Role::Operator, None, &by)
            .await
            .unwrap();
        let guess = format!("guess-{}", Uuid::new_v4());
        let r = login(&db, "sso.only", &guess, now_ms()).await;
        assert!(matches!(r, Err(LoginError::Invalid)), "{r:?}");
        let checked = CHECKED
            .lock()
            .unwrap()
            .contains(&(DUMMY_HASH.into(), guess));
        assert!(checked, "the dummy hash was checked, as for unknown users");
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(password_matches(&h, "correct horse battery"));
        assert!(!password_matches(&h, "correct horse battery!"));
        assert!(matches!(
            hash_password("short"),
            Err(AccountError::WeakPassword)
        ));
        assert!(!password_matches("not a hash", "x"));
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[test]
    fn usernames_are_checked() {
        assert!(valid_username("op.nguyen-1"));
        assert!(!valid_username("Op"));
        assert!(!valid_username("a b"));
        assert!(!valid_username("ab"));
    }
}
