//! The citizen app: a mobile-first, installable web app (PWA) served by the
//! server under `/app/`, Vietnamese first, where an owner sees the fines of
//! the vehicles registered to their national ID number, looks at the
//! evidence, accepts or contests, and pays.
//!
//! Identity: citizens sign in through the national identity provider
//! (OpenID Connect); the session is bound to the national ID number from the
//! identity token, and every query filters by it: a case of someone else's
//! vehicle answers 404 (the same as a case that does not exist) and the
//! attempt is audited. Only confirmed cases are ever shown; nothing a
//! reviewer has not passed reaches a citizen; and only to the owner the
//! case's notice goes to (an owner lookup `resolved`, not a registration
//! held back as a possible cloned plate: `mine.rs`). Sessions are
//! server-side (the SHA-256 of the cookie token is stored), cookies
//! HttpOnly and SameSite=Lax (so the payment gateway's return lands signed
//! in), and every POST carries the session's CSRF token. Signing out also
//! removes the Web Push subscriptions this browser registered (`push.rs`).

mod answers;
mod mine;
mod pages;
mod push;

pub use answers::{MAX_PIXELS, MAX_SIDE, dimensions_allowed, photo_dimensions};
pub(crate) use push::{PUSH_COOKIE, push_cookie, signed_in_browser};

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use sqlx::Row;

use crate::accounts::sessions::{random_token, token_digest};
use crate::console::cookie;
use crate::console::html::esc;
use crate::db::{Db, DbError, now_ms};
use crate::web::ApiContext;

/// Name of the citizen session cookie.
pub const CITIZEN_COOKIE: &str = "tv_citizen";
/// How long a citizen session lasts (2 hours).
pub const SESSION_MS: i64 = 2 * 60 * 60 * 1000;

/// The citizen app's routes.
pub fn routes() -> Router<ApiContext> {
    Router::new()
        .route("/app", get(|| async { Redirect::to("/app/") }))
        .route("/app/", get(pages::list))
        .route("/app/login", get(pages::login))
        .route("/app/logout", post(pages::logout))
        .route("/app/cases/{id}", get(pages::case))
        .route("/app/cases/{id}/evidence/{name}", get(pages::evidence))
        .route("/app/cases/{id}/accept", post(answers::accept))
        // The photo may be up to `MAX_PHOTO` (5 MiB), above axum's default
        // body limit of 2 MiB; the form's text and boundaries fit in the
        // rest. A larger body is answered 413 "Ảnh quá lớn"
        // (`answers::form_error`).
        .route(
            "/app/cases/{id}/contest",
            post(answers::contest).layer(axum::extract::DefaultBodyLimit::max(
                answers::MAX_PHOTO + 64 * 1024,
            )),
        )
        .route("/app/cases/{id}/pay", post(pages::pay))
        .route("/app/push/key", get(push::key))
        .route("/app/push/subscribe", post(push::subscribe))
        .route("/app/push/unsubscribe", post(push::unsubscribe))
        .route(
            "/app/app.css",
            get(|| static_file("text/css", include_str!("app.css"))),
        )
        .route(
            "/app/sw.js",
            get(|| static_file("text/javascript", include_str!("sw.js"))),
        )
        .route(
            "/app/icon.svg",
            get(|| static_file("image/svg+xml", include_str!("icon.svg"))),
        )
        .route(
            "/app/manifest.webmanifest",
            get(|| {
                static_file(
                    "application/manifest+json",
                    include_str!("manifest.webmanifest"),
                )
            }),
        )
        .layer(axum::middleware::map_response(
            crate::web::no_store_unless_set,
        ))
}

async fn static_file(media: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, media),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// A new citizen session: cookie token and CSRF token.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Cookie value.
    pub token: String,
    /// Its CSRF token.
    pub csrf: String,
}

/// Starts a session for a citizen the identity provider vouched for (and
/// first deletes every expired one: [`delete_expired_sessions`]).
pub async fn start_session(
    db: &Db,
    national_id: &str,
    display_name: &str,
    now: i64,
) -> Result<NewSession, DbError> {
    delete_expired_sessions(db, now).await?;
    let s = NewSession {
        token: random_token(),
        csrf: random_token(),
    };
    sqlx::query(
        "INSERT INTO citizen_sessions (token_sha256, national_id, display_name, csrf_token, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(token_digest(&s.token))
    .bind(national_id)
    .bind(display_name)
    .bind(&s.csrf)
    .bind(now)
    .bind(now + SESSION_MS)
    .execute(db.pool())
    .await?;
    Ok(s)
}

/// Deletes the citizen sessions expired at `now`; how many. A session row
/// holds a national ID number and a name in clear text, and most citizens
/// never sign out: without this they would stay for good. Run at every
/// sign-in and by retention (`retention::run`, which also covers a server
/// no one signs in to).
///
/// The push subscriptions those sessions registered stay: a notice comes
/// days after the two-hour session, and Web Push exists to reach the
/// citizen then. A subscription goes at sign-out ([`end_session`]), when
/// someone else signs in with that browser (`push::signed_in_browser`), or
/// when its endpoint is gone.
pub async fn delete_expired_sessions(db: &Db, now: i64) -> Result<u64, DbError> {
    let gone = sqlx::query("DELETE FROM citizen_sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(db.pool())
        .await?
        .rows_affected();
    Ok(gone)
}

/// The `Set-Cookie` value for a new citizen session.
pub fn session_cookie(token: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{CITIZEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        SESSION_MS / 1000
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("tv_citizen=; Path=/; Max-Age=0"))
}

/// Cookie that carries where to go after signing in (a path under `/app/`),
/// from `GET /app/sso/login?next=` to the provider's answer.
pub const NEXT_COOKIE: &str = "tv_app_next";

/// Where a citizen may be sent after signing in: a path of this app only.
/// It must start with `/app/` and consist of plain path characters (letters,
/// digits, `-`, `_`, `.`, `/`), with no `//`, no `..` segment, no
/// backslash, query, fragment, scheme or percent-escape, at most 200
/// characters; anything else (`//evil.example`, `https://…`,
/// `/app/../console`, `/app/%2F%2Fevil`) is `None` and the citizen goes to
/// `/app/`. A same-origin path cannot leave the site, so the notice's link
/// to a case survives the sign-in without an open redirect.
pub fn safe_next(next: &str) -> Option<&str> {
    let ok = next.len() <= 200
        && next.starts_with("/app/")
        && next
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
        && !next.contains("//")
        && !next.split('/').any(|seg| seg == ".." || seg == ".");
    ok.then_some(next)
}

/// The signed-in citizen.
#[derive(Debug, Clone)]
pub struct Citizen {
    /// National ID number from the identity token.
    pub national_id: String,
    /// Name from the identity token.
    pub display_name: String,
    /// CSRF token of the session.
    pub csrf: String,
    /// Cookie token (to end the session).
    token: String,
    /// The browser said this request came from another site
    /// (`Sec-Fetch-Site: cross-site`): a link on someone else's page, which
    /// a Lax cookie follows. What it makes the server write in the citizen's
    /// name says so (`mine::one`), so that an audit reader does not take it
    /// for the citizen's own doing. A header the client sets is no proof
    /// either way: it only labels, it never hides an entry.
    pub from_another_site: bool,
}

impl Citizen {
    /// Checks a form's CSRF token (constant time).
    pub fn check_csrf(&self, given: &str) -> Result<(), AppError> {
        let want = self.csrf.as_bytes();
        let same = given.len() == want.len()
            && given
                .bytes()
                .zip(want.iter())
                .fold(0u8, |a, (x, y)| a | (x ^ y))
                == 0;
        if same { Ok(()) } else { Err(AppError::Csrf) }
    }
}

impl FromRequestParts<ApiContext> for Citizen {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        let token = cookie(&parts.headers, CITIZEN_COOKIE)
            .unwrap_or("")
            .to_string();
        let found = if token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()) {
            sqlx::query(
                "SELECT national_id, display_name, csrf_token FROM citizen_sessions \
                 WHERE token_sha256 = $1 AND expires_at > $2",
            )
            .bind(token_digest(&token))
            .bind(now_ms())
            .fetch_optional(ctx.ingestor.context().db.pool())
            .await
            .map_err(|e| AppError::Internal(e.to_string()).into_response())?
        } else {
            None
        };
        match found {
            Some(r) => {
                let fields = (r.try_get(0), r.try_get(1), r.try_get(2));
                let (Ok(national_id), Ok(display_name), Ok(csrf)) = fields else {
                    return Err(AppError::Internal("citizen session row".into()).into_response());
                };
                let from_another_site = parts
                    .headers
                    .get("sec-fetch-site")
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
                Ok(Citizen {
                    national_id,
                    display_name,
                    csrf,
                    token,
                    from_another_site,
                })
            }
            // Back here after signing in: the case the notice linked to.
            None if parts.method == axum::http::Method::GET => {
                let to = match parts.uri.path_and_query().map(|p| p.as_str()) {
                    Some(p) if safe_next(p).is_some() && p != "/app/" => {
                        format!("/app/login?next={p}")
                    }
                    _ => "/app/login".to_string(),
                };
                Err(Redirect::to(&to).into_response())
            }
            None => Err(AppError::SignedOut.into_response()),
        }
    }
}

/// Ends a citizen's session, and the push subscriptions it registered.
pub async fn end_session(db: &Db, citizen: &Citizen) -> Result<(), DbError> {
    let mut tx = db.begin_write().await?;
    sqlx::query("DELETE FROM citizen_sessions WHERE token_sha256 = $1")
        .bind(token_digest(&citizen.token))
        .execute(&mut *tx)
        .await?;
    push::forget_session(&mut tx, &token_digest(&citizen.token)).await?;
    tx.commit().await?;
    Ok(())
}

/// What a citizen request can fail with, shown as a page in Vietnamese.
#[derive(Debug)]
pub enum AppError {
    /// No session on a POST.
    SignedOut,
    /// Bad CSRF token.
    Csrf,
    /// Not there, or not yours (the same answer on purpose).
    NotFound,
    /// Refused with a reason the citizen can act on.
    Refused(String),
    /// The request body (a contest photo) is over the limit.
    TooLarge,
    /// Our side failed (logged).
    Internal(String),
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        AppError::Internal(e.to_string())
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::Internal(e.to_string())
    }
}

/// When the workflow does not take a citizen's answer: the reason when it
/// is one they can act on (the case's state, a change meanwhile); a failure
/// on our side (the database, a stored case that does not read back) is
/// logged and answered with the generic error page, never its text.
impl From<crate::review::ReviewError> for AppError {
    fn from(e: crate::review::ReviewError) -> Self {
        use crate::review::ReviewError as E;
        match e {
            E::NotFound(_) => AppError::NotFound,
            E::Refused(_) => AppError::Refused(
                "Vụ việc này không thể thực hiện thao tác đó ở trạng thái hiện tại. Vui lòng tải \
                 lại trang để xem trạng thái mới nhất."
                    .into(),
            ),
            E::Conflict | E::Changed { .. } => AppError::Refused(
                "Vụ việc vừa được cập nhật. Vui lòng tải lại trang rồi thử lại.".into(),
            ),
            E::Invalid(_)
            | E::Db(_)
            | E::ClockNotAcknowledged(_)
            | E::RecordAltered(_)
            | E::Amount(_) => AppError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, msg) = match self {
            AppError::SignedOut => (
                StatusCode::UNAUTHORIZED,
                "Phiên đăng nhập đã hết. Vui lòng đăng nhập lại.".to_string(),
            ),
            AppError::Csrf => (
                StatusCode::FORBIDDEN,
                "Biểu mẫu không hợp lệ. Vui lòng tải lại trang.".to_string(),
            ),
            AppError::NotFound => (StatusCode::NOT_FOUND, "Không tìm thấy vụ việc.".to_string()),
            AppError::Refused(m) => (StatusCode::CONFLICT, m),
            AppError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Ảnh quá lớn (tối đa 5 MB). Vui lòng chọn ảnh nhỏ hơn.".to_string(),
            ),
            AppError::Internal(detail) => {
                tracing::error!(detail, "citizen app request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Lỗi hệ thống, vui lòng thử lại sau.".to_string(),
                )
            }
        };
        let body = format!(
            "<div class=\"flash error\" id=\"error\" role=\"alert\">{}</div><p><a href=\"/app/\">Về danh sách</a></p>",
            esc(&msg)
        );
        (status, Html(page(&msg, None, &body))).into_response()
    }
}

/// The app's page frame.
pub fn page(title: &str, citizen: Option<&Citizen>, body: &str) -> String {
    let who = citizen
        .map(|c| {
            format!(
                "<span>{}</span><form method=\"post\" action=\"/app/logout\" id=\"logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <input type=\"hidden\" name=\"endpoint\" value=\"\">\
                 <button class=\"secondary\" style=\"width:auto;padding:4px 10px;margin:0\">Thoát</button></form>{}",
                esc(&c.display_name),
                esc(&c.csrf),
                push::LOGOUT_SCRIPT
            )
        })
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"vi\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"theme-color\" content=\"#b71c1c\"><link rel=\"manifest\" href=\"/app/manifest.webmanifest\">\
         <link rel=\"icon\" href=\"/app/icon.svg\"><link rel=\"stylesheet\" href=\"/app/app.css\">\
         <title>{} · Phạt nguội</title></head><body><header><a href=\"/app/\"><strong>Phạt nguội</strong></a>\
         <span class=\"spacer\"></span>{who}</header><main>{body}</main>\
         <script>{SW_JS}</script></body></html>",
        esc(title)
    )
}

/// The page frame's script: registers the service worker (offline pages,
/// push notices).
const SW_JS: &str = "if('serviceWorker' in navigator)navigator.serviceWorker.register('/app/sw.js',{scope:'/app/'});";

/// Every inline script the app's pages carry: the security policy allows
/// these, by hash, and no other (`crate::headers`).
pub(crate) fn inline_scripts() -> Vec<&'static str> {
    let mut all = vec![SW_JS];
    all.extend(crate::headers::inline_scripts(push::LOGOUT_SCRIPT));
    all.extend(crate::headers::inline_scripts(push::SUBSCRIBE_SNIPPET));
    all
}
