//! Sign-in through OpenID Connect: why a sign-in failed, and the pages that
//! say so (each refusal audited: `sso.failed` for the console,
//! `citizen.login_failed` for the citizen app).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Kind;
use crate::audit::{self, Who};
use crate::db::{Db, DbError, now_ms};

/// Why a sign-in failed.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// `[sso]` (or `[citizen_sso]`) is not configured.
    #[error("single sign-on is not configured on this server")]
    NotConfigured,
    /// No state, or one we never issued.
    #[error("the answer's state is missing or was not issued by this server")]
    StateUnknown,
    /// The state was used already.
    #[error("this sign-in answer was already used (replayed)")]
    StateReplayed,
    /// The state is older than ten minutes.
    #[error("the sign-in was started more than 10 minutes ago")]
    StateExpired,
    /// Another browser started this sign-in (the cookie's name).
    #[error("the sign-in was started in another browser (cookie {0} missing or different)")]
    BrowserMismatch(&'static str),
    /// The provider answered with an error (the person cancelled, ...).
    #[error("the identity provider refused: {0}")]
    Denied(String),
    /// The provider could not be reached or answered wrongly.
    #[error("identity provider: {0}")]
    Provider(String),
    /// The ID token failed a check.
    #[error("ID token refused ({check}): {detail}")]
    IdToken {
        /// Which check.
        check: &'static str,
        /// Particulars.
        detail: String,
    },
    /// No provider role maps to a console role.
    #[error("no console role: claim `{claim}` holds {found:?}, none of which is mapped")]
    NoRole {
        /// The claim.
        claim: String,
        /// What it held.
        found: Vec<String>,
    },
    /// Provider roles map to more than one console role.
    #[error("the provider's roles {0:?} map to more than one console role")]
    SeveralRoles(Vec<String>),
    /// The account is disabled here.
    #[error("the account is disabled on this server")]
    Disabled,
    /// The citizen's token carries no national ID number.
    #[error("no national ID number: claim `{0}` is missing or empty")]
    NoNationalId(String),
    /// The citizen's national ID number is not 12 digits (the number
    /// itself is never written out).
    #[error("the national ID number in claim `{claim}` is not 12 digits ({what})")]
    BadNationalId {
        /// The claim.
        claim: String,
        /// What is wrong with it, without the value.
        what: String,
    },
    /// Our side failed (database, ...).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<DbError> for SsoError {
    fn from(e: DbError) -> Self {
        SsoError::Internal(e.to_string())
    }
}

impl From<sqlx::Error> for SsoError {
    fn from(e: sqlx::Error) -> Self {
        SsoError::Internal(e.to_string())
    }
}

impl SsoError {
    /// The stable reason written to the audit log.
    pub fn reason(&self) -> &'static str {
        match self {
            SsoError::NotConfigured => "not_configured",
            SsoError::StateUnknown => "state_unknown",
            SsoError::StateReplayed => "state_replayed",
            SsoError::StateExpired => "state_expired",
            SsoError::BrowserMismatch(_) => "browser_mismatch",
            SsoError::Denied(_) => "provider_denied",
            SsoError::Provider(_) => "provider_error",
            SsoError::IdToken { .. } => "id_token",
            SsoError::NoRole { .. } => "no_role",
            SsoError::SeveralRoles(_) => "several_roles",
            SsoError::Disabled => "account_disabled",
            SsoError::NoNationalId(_) => "no_national_id",
            SsoError::BadNationalId { .. } => "malformed_national_id",
            SsoError::Internal(_) => "internal",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            SsoError::NotConfigured => StatusCode::NOT_FOUND,
            SsoError::StateUnknown
            | SsoError::StateReplayed
            | SsoError::StateExpired
            | SsoError::BrowserMismatch(_) => StatusCode::BAD_REQUEST,
            SsoError::Denied(_) | SsoError::IdToken { .. } => StatusCode::UNAUTHORIZED,
            SsoError::NoRole { .. }
            | SsoError::SeveralRoles(_)
            | SsoError::Disabled
            | SsoError::NoNationalId(_)
            | SsoError::BadNationalId { .. } => StatusCode::FORBIDDEN,
            SsoError::Provider(_) => StatusCode::BAD_GATEWAY,
            SsoError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The English detail shown to the person: our own failures (database,
    /// secrets) and the provider's transport errors are logged and audited
    /// in full but shown only as what they are — their text can name
    /// tables, hosts or files.
    fn public_text(&self) -> String {
        match self {
            SsoError::Internal(_) => "internal error on this server".into(),
            SsoError::Provider(_) => {
                "the identity provider could not be reached or answered wrongly".into()
            }
            other => other.to_string(),
        }
    }

    /// What the person is told, in Vietnamese (the English detail follows).
    fn vi(&self) -> &'static str {
        match self {
            SsoError::NotConfigured => "Máy chủ này chưa cấu hình đăng nhập một lần (SSO).",
            SsoError::StateUnknown | SsoError::StateReplayed | SsoError::StateExpired => {
                "Liên kết đăng nhập không hợp lệ, đã dùng hoặc đã hết hạn. Hãy đăng nhập lại."
            }
            SsoError::BrowserMismatch(_) => {
                "Phiên đăng nhập được bắt đầu ở trình duyệt khác. Hãy đăng nhập lại từ trình duyệt này."
            }
            SsoError::Denied(_) => "Nhà cung cấp định danh đã từ chối đăng nhập.",
            SsoError::Provider(_) => {
                "Không liên lạc được với nhà cung cấp định danh, hoặc câu trả lời không hợp lệ."
            }
            SsoError::IdToken { .. } => {
                "Mã định danh (ID token) không hợp lệ; đăng nhập bị từ chối."
            }
            SsoError::NoRole { .. } | SsoError::SeveralRoles(_) => {
                "Tài khoản của bạn chưa được cấp đúng một vai trò trên hệ thống này. Hãy liên hệ quản trị viên."
            }
            SsoError::Disabled => "Tài khoản đã bị vô hiệu hoá.",
            SsoError::NoNationalId(_) => {
                "Tài khoản định danh điện tử không cung cấp số định danh cá nhân (số CCCD), \
                 nên không thể xác định phương tiện của bạn. Đăng nhập bị từ chối."
            }
            SsoError::BadNationalId { .. } => {
                "Số định danh cá nhân do nhà cung cấp định danh gửi không hợp lệ \
                 (phải gồm đúng 12 chữ số). Đăng nhập bị từ chối."
            }
            SsoError::Internal(_) => "Lỗi hệ thống. Hãy thử lại sau.",
        }
    }
}

pub(super) fn no_store() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The callback's URL holds the code: never hand it on as a Referer.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h
}

/// Audits a failure of a `kind` sign-in by `who` and answers with a page
/// that says what happened.
pub(super) async fn refuse(
    db: &Db,
    kind: Kind,
    e: SsoError,
    who: &Who,
    mut detail: Value,
) -> Response {
    detail["reason"] = json!(e.reason());
    detail["message"] = json!(e.to_string());
    if let SsoError::IdToken { check, .. } = &e {
        detail["check"] = json!(check);
    }
    tracing::warn!(client = ?kind, reason = e.reason(), error = %e, "sso: sign-in refused");
    let (subject, back) = match kind {
        Kind::Console => ("sso:login", "/console/login"),
        Kind::Citizen => ("citizen:login", "/app/login"),
    };
    let reference =
        match audit::record(db, now_ms(), who, kind.failed_action(), subject, &detail).await {
            Ok(entry) => format!("<p>Mã tham chiếu nhật ký: {}</p>", entry.seq),
            Err(err) => {
                tracing::error!(error = %err, "sso: could not audit a refused sign-in");
                String::new()
            }
        };
    let heading = match kind {
        Kind::Console => "Không đăng nhập được bằng SSO",
        Kind::Citizen => "Không đăng nhập được",
    };
    let body = format!(
        "<h1>{heading}</h1><p id=\"reason\">{}</p><p lang=\"en\"><small>{}</small></p>{reference}\
         <p><a href=\"{back}\">Quay lại trang đăng nhập</a></p>",
        e.vi(),
        esc(&e.public_text())
    );
    let page = match kind {
        Kind::Console => page("Đăng nhập SSO thất bại", None, &body),
        // The citizen app's own frame, with its style sheet.
        Kind::Citizen => crate::citizen::page("Đăng nhập thất bại", None, &body),
    };
    (e.status(), no_store(), page).into_response()
}

/// Who a console sign-in was, for a refusal: the name the provider gave,
/// else `sso`.
pub(super) fn anonymous(claimed: &str) -> Who {
    Who::anonymous(if claimed.is_empty() { "sso" } else { claimed })
}

/// A whole page; `then` moves the browser on to that same-site address.
pub(super) fn page(title: &str, then: Option<&str>, body: &str) -> String {
    let refresh = then
        .map(|to| {
            format!(
                "<meta http-equiv=\"refresh\" content=\"0; url={}\">",
                esc(to)
            )
        })
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"vi\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <meta name=\"viewport\" content=\"width=device-width\">{refresh}</head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\">{body}</body></html>"
    )
}

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_and_transport_details_are_not_shown() {
        let db = SsoError::Internal("UNIQUE constraint failed: accounts.username".into());
        assert!(!db.public_text().contains("accounts"));
        let net = SsoError::Provider("connect to 10.1.2.3:8443: refused".into());
        assert!(!net.public_text().contains("10.1.2.3"));
        let role = SsoError::SeveralRoles(vec!["police".into(), "operator".into()]);
        assert_eq!(
            role.public_text(),
            role.to_string(),
            "what the person can act on stays"
        );
    }
}
