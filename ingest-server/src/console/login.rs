//! Signing in and out, and the language switch. The sign-in form has no
//! session yet, so it is protected by SameSite=Strict cookies and by
//! checking that a browser's `Origin`, when sent, is this server; failures
//! count towards the account lock-out (see `accounts::login`) and towards
//! the source address's budget (`throttle`).

use axum::Form;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::html::{self, Lang, esc};
use super::{SESSION_COOKIE, Viewer, clear_cookie, cookie, session_cookie};
use crate::accounts::{self, LoginError};
use crate::db::now_ms;
use crate::web::ApiContext;

fn lang_of(headers: &HeaderMap) -> Lang {
    Lang::from_cookie(cookie(headers, "tv_lang"))
}

fn login_page(ctx: &ApiContext, lang: Lang, message: Option<&str>) -> String {
    let flash = message
        .map(|m| format!("<div class=\"flash error\" id=\"error\">{}</div>", esc(m)))
        .unwrap_or_default();
    let sso = if ctx.sso.is_some() {
        format!(
            "<p><a href=\"/console/sso/login\">{}</a></p>",
            lang.t("Đăng nhập bằng SSO", "Sign in with SSO")
        )
    } else {
        String::new()
    };
    let body = format!(
        "<div class=\"login\"><h1>{title}</h1>{flash}\
         <form method=\"post\" action=\"/console/login\">\
         <label>{user}<input type=\"text\" name=\"username\" id=\"username\" autocomplete=\"username\" required autofocus></label>\
         <label>{pass}<input type=\"password\" name=\"password\" id=\"password\" autocomplete=\"current-password\" required></label>\
         <button class=\"primary\" id=\"sign-in\">{go}</button></form>{sso}</div>",
        title = lang.t(
            "Đăng nhập hệ thống xử lý vi phạm",
            "Sign in to the enforcement console"
        ),
        user = lang.t("Tên đăng nhập", "Username"),
        pass = lang.t("Mật khẩu", "Password"),
        go = lang.t("Đăng nhập", "Sign in"),
    );
    html::page(lang, lang.t("Đăng nhập", "Sign in"), None, &body)
}

/// `GET /console/login`.
pub async fn form(State(ctx): State<ApiContext>, headers: HeaderMap) -> Html<String> {
    Html(login_page(&ctx, lang_of(&headers), None))
}

#[derive(Deserialize)]
pub struct Credentials {
    username: String,
    password: String,
}

/// True when a browser says the form came from another site.
fn cross_site(headers: &HeaderMap) -> bool {
    let (Some(origin), Some(host)) = (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(origin);
    origin_host != host
}

/// `POST /console/login`.
pub async fn submit(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Form(c): Form<Credentials>,
) -> Response {
    let lang = lang_of(&headers);
    let db = &ctx.ingestor.context().db;
    let peer = ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let source = super::throttle::client_address(peer, &headers, &ctx.trusted_proxies);
    if cross_site(&headers) {
        return (
            axum::http::StatusCode::FORBIDDEN,
            Html(login_page(
                &ctx,
                lang,
                Some(lang.t(
                    "Yêu cầu từ trang khác bị từ chối.",
                    "Cross-site request refused.",
                )),
            )),
        )
            .into_response();
    }
    let now = now_ms();
    // Counted before the password check (see `throttle`): parallel
    // requests cannot all pass the budget before any failure is counted.
    let attempt = match ctx.sign_in_throttle.reserve(source, now) {
        Ok(attempt) => attempt,
        Err(wait) => return held_back(&ctx, lang, source, wait),
    };
    let message = match accounts::login(db, c.username.trim(), &c.password, now).await {
        Ok(user) => {
            ctx.sign_in_throttle.give_back(attempt);
            match accounts::start_session(db, &user, now).await {
                Ok(s) => {
                    return (
                        [(
                            header::SET_COOKIE,
                            session_cookie(&s.token, ctx.secure_cookies),
                        )],
                        Redirect::to("/console/"),
                    )
                        .into_response();
                }
                Err(e) => {
                    tracing::error!(error = %e, "starting a session failed");
                    lang.t("Lỗi máy chủ; thử lại.", "Server error; try again.")
                }
            }
        }
        // One answer for both, word for word and with the same status: a
        // distinct "locked" answer after the fifth failure told which
        // usernames exist (an unknown one never locks). The lock-out and
        // its audit entry stay (`accounts::login`).
        Err(LoginError::Invalid | LoginError::Locked) => lang.t(
            "Sai tên đăng nhập hoặc mật khẩu. Sau 5 lần sai liên tiếp, tài khoản bị tạm khoá 15 phút.",
            "Wrong username or password. After 5 failures in a row an account is locked for 15 minutes.",
        ),
        Err(LoginError::Unavailable(e)) => {
            // The password was never judged: not a failure of this address.
            ctx.sign_in_throttle.give_back(attempt);
            tracing::error!(error = %e, "sign-in failed");
            lang.t("Lỗi máy chủ; thử lại.", "Server error; try again.")
        }
        // After the password may have been checked (writing the audit
        // entry, the lock-out count): the attempt stays counted, or a
        // sprayer could have guesses checked for free under contention.
        Err(LoginError::Db(e)) => {
            tracing::error!(error = %e, "sign-in failed");
            lang.t("Lỗi máy chủ; thử lại.", "Server error; try again.")
        }
    };
    (
        axum::http::StatusCode::UNAUTHORIZED,
        Html(login_page(&ctx, lang, Some(message))),
    )
        .into_response()
}

/// The answer to an address past its budget of failed sign-ins: 429 with
/// `Retry-After`, and no password check.
fn held_back(ctx: &ApiContext, lang: Lang, source: std::net::IpAddr, wait: i64) -> Response {
    tracing::warn!(
        ?source,
        "sign-in refused: too many failures from this address"
    );
    let minutes = (wait + 59_999) / 60_000;
    let message = match lang {
        Lang::Vi => {
            format!("Quá nhiều lần đăng nhập sai từ địa chỉ này. Thử lại sau {minutes} phút.")
        }
        Lang::En => {
            format!("Too many failed sign-ins from this address. Try again in {minutes} minutes.")
        }
    };
    (
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, ((wait + 999) / 1000).to_string())],
        Html(login_page(ctx, lang, Some(&message))),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    csrf: String,
}

/// `POST /console/logout`: ends the session server-side.
pub async fn logout(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, super::ConsoleError> {
    viewer.check_csrf(&f.csrf)?;
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        accounts::end_session(&ctx.ingestor.context().db, token)
            .await
            .map_err(|e| super::ConsoleError::Internal(viewer.lang, e.to_string()))?;
    }
    Ok((
        [(header::SET_COOKIE, clear_cookie())],
        Redirect::to("/console/login"),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct LangChoice {
    to: String,
}

/// `GET /console/lang?to=vi|en`: remembers the language in a cookie.
pub async fn language(headers: HeaderMap, Query(q): Query<LangChoice>) -> Response {
    let to = if q.to == "en" { "en" } else { "vi" };
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("/console").map(|i| r[i..].to_string()))
        .unwrap_or_else(|| "/console/".into());
    (
        [(
            header::SET_COOKIE,
            axum::http::HeaderValue::from_static(if to == "en" {
                "tv_lang=en; Path=/; SameSite=Lax; Max-Age=31536000"
            } else {
                "tv_lang=vi; Path=/; SameSite=Lax; Max-Age=31536000"
            }),
        )],
        Redirect::to(&back),
    )
        .into_response()
}
