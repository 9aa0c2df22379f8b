//! The review console: the web pages IOC operators, police officers,
//! supervisors, auditors and administrators use all day, served by the
//! ingest server itself (server-rendered HTML, a little JavaScript for the
//! keyboard; no build step, so the console works wherever the binary runs).
//!
//! Access: every page and action checks the signed-in session and the
//! role on the server; every form carries the session's CSRF token and
//! every state-changing request is a POST that checks it. Owners' personal
//! data appears only for police and auditors, and each view is logged.

mod actions;
mod admin;
mod case_page;
mod confirm;
mod deadlines;
mod devices;
mod event_facts;
mod exports;
mod files;
pub mod html;
mod login;
mod ops;
mod owner_panels;
mod queue;
pub mod throttle;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::accounts::{self, Session};
use crate::db::now_ms;
use crate::web::ApiContext;
use crate::workflow::{Actor, Role};
use html::{Lang, esc};

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
        .route("/console", get(home))
        .route("/console/", get(home))
        .route("/console/login", get(login::form).post(login::submit))
        .route("/console/logout", post(login::logout))
        .route("/console/lang", get(login::language))
        .route("/console/queue", get(queue::review_queue))
        .route("/console/queue/next", post(actions::next_case))
        .route("/console/cases", get(queue::all_cases))
        .route("/console/cases/{id}", get(case_page::show))
        .route("/console/cases/{id}/action", post(actions::act))
        .route("/console/cases/{id}/evidence/{name}", get(files::evidence))
        .route(
            "/console/cases/{id}/package.zip",
            get(exports::case_package),
        )
        .route(
            "/console/cases/{id}/contest-photo/{sha}",
            get(files::contest_photo),
        )
        .route("/console/export/labels.zip", get(exports::labels))
        .route("/console/confirm", get(confirm::queue).post(confirm::batch))
        .route("/console/deadlines", get(deadlines::page))
        .route(
            "/console/cases/{id}/paper-notice",
            post(deadlines::paper_notice),
        )
        .route(
            "/console/cases/{id}/paper-answer",
            post(deadlines::paper_answer),
        )
        .route("/console/health", get(ops::health))
        .route("/console/quarantine", get(ops::quarantine))
        .route("/console/audit", get(ops::audit))
        .route("/console/audit/anchor", get(ops::audit_anchor))
        .route("/console/admin", get(admin::page))
        .route("/console/devices", get(devices::page).post(devices::enrol))
        .route("/console/devices/revoke", post(devices::revoke))
        .route("/console/cameras", post(devices::enrol_camera))
        .route("/console/cameras/retire", post(devices::retire_camera))
        .route("/console/admin/users", post(admin::create_user))
        .route("/console/admin/users/disable", post(admin::disable_user))
        .route("/console/admin/reasons", post(admin::add_reason))
        .route("/console/admin/reasons/retire", post(admin::retire_reason))
        .layer(axum::middleware::map_response(
            crate::web::no_store_unless_set,
        ))
}

/// Every inline script the console's pages carry: the security policy
/// allows these, by hash, and no other (`crate::headers`).
pub(crate) fn inline_scripts() -> Vec<&'static str> {
    vec![case_page::KEYS_JS, queue::KEYS_JS, confirm::SELECT_ALL_JS]
}

/// Where each role starts.
async fn home(viewer: Viewer) -> Redirect {
    Redirect::to(match viewer.session.user.role {
        Role::Operator | Role::Supervisor => "/console/queue",
        Role::Police => "/console/confirm",
        Role::Auditor => "/console/cases",
        Role::Admin | Role::System => "/console/health",
    })
}

/// Reads one cookie.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The signed-in person behind a request, with their language. Extracting
/// it is the authentication check: without a live session a page request
/// is sent to the sign-in page.
pub struct Viewer {
    /// The session (user and CSRF token).
    pub session: Session,
    /// Their language.
    pub lang: Lang,
}

impl Viewer {
    /// The workflow actor.
    pub fn actor(&self) -> Actor {
        Actor {
            id: self.session.user.user_id.clone(),
            role: self.session.user.role,
        }
    }

    /// The viewer as the audit log names them.
    pub fn who(&self) -> crate::audit::Who {
        crate::audit::Who::new(self.session.user.user_id.clone(), self.session.user.role)
    }

    /// Records a change this viewer just made.
    pub async fn audit(
        &self,
        db: &crate::db::Db,
        action: &str,
        subject: &str,
        detail: serde_json::Value,
    ) -> Result<(), ConsoleError> {
        crate::audit::record_now(db, &self.who(), action, subject, detail)
            .await
            .map_err(|e| ConsoleError::from((self.lang, e)))
    }

    /// Refuses unless the viewer has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ConsoleError> {
        if roles.contains(&self.session.user.role) {
            Ok(())
        } else {
            Err(ConsoleError::Forbidden(self.lang))
        }
    }

    /// Checks a form's CSRF token against the session's (constant time).
    pub fn check_csrf(&self, given: &str) -> Result<(), ConsoleError> {
        let want = self.session.csrf.as_bytes();
        let same = given.len() == want.len()
            && given
                .bytes()
                .zip(want.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(ConsoleError::Csrf(self.lang))
        }
    }

    /// A page in the frame, for this viewer.
    pub fn page(&self, title: &str, body: &str) -> Response {
        axum::response::Html(html::page(self.lang, title, Some(&self.session), body))
            .into_response()
    }
}

impl FromRequestParts<ApiContext> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        let lang = Lang::from_cookie(cookie(&parts.headers, "tv_lang"));
        let token = cookie(&parts.headers, SESSION_COOKIE).unwrap_or("");
        let db = &ctx.ingestor.context().db;
        let session = accounts::session(db, token, now_ms(), ctx.console_idle_ms)
            .await
            .map_err(|e| ConsoleError::Internal(lang, e.to_string()).into_response())?;
        match session {
            Some(session) => Ok(Viewer { session, lang }),
            None if parts.method == axum::http::Method::GET => {
                Err(Redirect::to("/console/login").into_response())
            }
            None => Err(ConsoleError::SignedOut(lang).into_response()),
        }
    }
}

/// What a console request can fail with; shown as a page, never leaking
/// internals (those are logged).
#[derive(Debug)]
pub enum ConsoleError {
    /// Not signed in (a POST without a session).
    SignedOut(Lang),
    /// Role does not allow it.
    Forbidden(Lang),
    /// CSRF token missing or wrong.
    Csrf(Lang),
    /// No such thing.
    NotFound(Lang, String),
    /// Refused with a reason the user can act on.
    Refused(Lang, String),
    /// Our side failed.
    Internal(Lang, String),
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (lang, status, msg) = match self {
            ConsoleError::SignedOut(l) => (
                l,
                StatusCode::UNAUTHORIZED,
                l.t(
                    "Phiên đăng nhập đã hết. Hãy đăng nhập lại.",
                    "Your session has ended. Sign in again.",
                )
                .to_string(),
            ),
            ConsoleError::Forbidden(l) => (
                l,
                StatusCode::FORBIDDEN,
                l.t(
                    "Vai trò của bạn không được phép làm việc này.",
                    "Your role may not do this.",
                )
                .to_string(),
            ),
            ConsoleError::Csrf(l) => (
                l,
                StatusCode::FORBIDDEN,
                l.t(
                    "Biểu mẫu không hợp lệ (CSRF). Tải lại trang.",
                    "Invalid form (CSRF). Reload the page.",
                )
                .to_string(),
            ),
            ConsoleError::NotFound(l, what) => (
                l,
                StatusCode::NOT_FOUND,
                format!("{}: {what}", l.t("Không tìm thấy", "Not found")),
            ),
            ConsoleError::Refused(l, why) => (l, StatusCode::CONFLICT, why),
            ConsoleError::Internal(l, detail) => {
                tracing::error!(detail, "console request failed");
                (
                    l,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    l.t(
                        "Lỗi máy chủ; đã ghi nhật ký.",
                        "Server error; it was logged.",
                    )
                    .to_string(),
                )
            }
        };
        let body = format!(
            "<div class=\"flash error\" id=\"error\">{}</div><p><a href=\"/console/\">{}</a></p>",
            esc(&msg),
            lang.t("Về trang chính", "Back to the console")
        );
        (
            status,
            axum::response::Html(html::page(lang, &msg, None, &body)),
        )
            .into_response()
    }
}

impl From<(Lang, crate::db::DbError)> for ConsoleError {
    fn from((l, e): (Lang, crate::db::DbError)) -> Self {
        ConsoleError::Internal(l, e.to_string())
    }
}
