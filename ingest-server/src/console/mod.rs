//! The review console: the web pages IOC operators, police officers,
//! supervisors, auditors and administrators use all day, served by the
//! ingest server itself (server-rendered HTML, a little JavaScript for the
//! keyboard; no build step, so the console works wherever the binary runs).
//!
//! Access: every page and action checks the signed-in session and the
//! role on the server; every form carries the session's CSRF token and
//! every state-changing request is a POST that checks it. Owners' personal
//! data appears only for police and auditors, and each view is logged.

use axum::Router;
use axum::http::HeaderValue;

use crate::web::ApiContext;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "tv_session";

/// The `Set-Cookie` value that hands a new session token to the browser:
/// HttpOnly (no script reads it), SameSite=Strict (no cross-site request
/// carries it), path-wide, `Secure` when configured.
pub fn session_cookie(token: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        crate::accounts::SESSION_MS / 1000
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("tv_session=; Path=/; Max-Age=0"))
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("tv_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The console's routes.
pub fn routes() -> Router<ApiContext> {
    Router::new()
}
