//! Administration in the console: accounts (administrators create and
//! disable them) and the managed list of rejection reasons (supervisors and
//! administrators add and retire them). Every change is audited; retired
//! reasons stay in the database so past rejections keep their meaning.

use std::fmt::Write as _;

use axum::Form;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sqlx::Row;

use super::html::esc;
use super::{ConsoleError, Viewer};
use crate::accounts::{self, AccountError};
use crate::audit;
use crate::db::now_ms;
use crate::web::ApiContext;
use crate::workflow::Role;

/// `GET /console/admin`: accounts and rejection reasons.
pub async fn page(State(ctx): State<ApiContext>, viewer: Viewer) -> Result<Response, ConsoleError> {
    viewer.require(&[Role::Admin, Role::Supervisor])?;
    let lang = viewer.lang;
    let db = &ctx.ingestor.context().db;
    let dberr = |e| ConsoleError::from((lang, e));
    let csrf = esc(&viewer.session.csrf);
    let mut body = String::new();
    if viewer.session.user.role == Role::Admin {
        let mut rows = String::new();
        for u in accounts::list(db).await.map_err(dberr)? {
            let action = if u.disabled {
                lang.t("đã khoá", "disabled").to_string()
            } else {
                format!(
                    "<form method=\"post\" action=\"/console/admin/users/disable\" class=\"inline\">\
                     <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"username\" value=\"{}\">\
                     <button>{}</button></form>",
                    esc(&u.username),
                    lang.t("Khoá", "Disable")
                )
            };
            let _ = write!(
                rows,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
                esc(&u.username),
                esc(&u.display_name),
                esc(u.role.label_vi())
            );
        }
        let mut roles = String::new();
        for r in Role::PEOPLE {
            let _ = write!(
                roles,
                "<option value=\"{}\">{}</option>",
                r.as_str(),
                esc(r.label_vi())
            );
        }
        let _ = write!(
            body,
            "<h1>{users}</h1><table id=\"users\">{rows}</table>\
             <h2>{new}</h2><form method=\"post\" action=\"/console/admin/users\" class=\"filters\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label>{un}<input type=\"text\" name=\"username\" required></label>\
             <label>{dn}<input type=\"text\" name=\"display_name\" required></label>\
             <label>{role}<select name=\"role\">{roles}</select></label>\
             <label>{pw}<input type=\"password\" name=\"password\" minlength=\"12\" required></label>\
             <button class=\"primary\">{create}</button></form>",
            users = lang.t("Tài khoản", "Accounts"),
            new = lang.t("Tạo tài khoản", "New account"),
            un = lang.t("Tên đăng nhập", "Username"),
            dn = lang.t("Họ tên", "Full name"),
            role = lang.t("Vai trò", "Role"),
            pw = lang.t("Mật khẩu (≥ 12 ký tự)", "Password (≥ 12 characters)"),
            create = lang.t("Tạo", "Create"),
        );
    }
    let reasons =
        sqlx::query("SELECT code, label_vi, label_en, active FROM rejection_reasons ORDER BY code")
            .fetch_all(db.pool())
            .await
            .map_err(|e| ConsoleError::Internal(lang, e.to_string()))?;
    let mut rows = String::new();
    for r in &reasons {
        let get = |i| r.try_get::<String, _>(i).unwrap_or_default();
        let active: i64 = r.try_get(3).unwrap_or(0);
        let toggle = if active == 1 {
            format!(
                "<form method=\"post\" action=\"/console/admin/reasons/retire\" class=\"inline\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"code\" value=\"{}\">\
                 <button>{}</button></form>",
                esc(&get(0)),
                lang.t("Ngừng dùng", "Retire")
            )
        } else {
            lang.t("đã ngừng", "retired").to_string()
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{toggle}</td></tr>",
            esc(&get(0)),
            esc(&get(1)),
            esc(&get(2))
        );
    }
    let _ = write!(
        body,
        "<h1>{title}</h1><table id=\"reasons\">{rows}</table>\
         <form method=\"post\" action=\"/console/admin/reasons\" class=\"filters\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label>{code}<input type=\"text\" name=\"code\" pattern=\"[a-z_]{{3,40}}\" required></label>\
         <label>Tiếng Việt<input type=\"text\" name=\"label_vi\" required></label>\
         <label>English<input type=\"text\" name=\"label_en\" required></label>\
         <button class=\"primary\">{add}</button></form>",
        title = lang.t("Lý do loại vụ việc", "Rejection reasons"),
        code = lang.t("Mã", "Code"),
        add = lang.t("Thêm", "Add"),
    );
    Ok(viewer.page(lang.t("Quản trị", "Administration"), &body))
}

#[derive(Deserialize)]
pub struct NewUser {
    csrf: String,
    username: String,
    display_name: String,
    role: String,
    password: String,
}

/// `POST /console/admin/users`.
pub async fn create_user(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
    Form(f): Form<NewUser>,
) -> Result<Response, ConsoleError> {
    viewer.check_csrf(&f.csrf)?;
    viewer.require(&[Role::Admin])?;
    let lang = viewer.lang;
    let role = Role::parse(&f.role)
        .ok_or_else(|| ConsoleError::Refused(lang, format!("role {:?}", f.role)))?;
    match accounts::create(
        &ctx.ingestor.context().db,
        f.username.trim(),
        &f.display_name,
        role,
        Some(&f.password),
        &viewer.who(),
    )
    .await
    {
        Ok(_) => Ok(Redirect::to("/console/admin").into_response()),
        Err(AccountError::Db(e)) => Err(ConsoleError::Internal(lang, e.to_string())),
        Err(e) => Err(ConsoleError::Refused(lang, e.to_string())),
    }
}

#[derive(Deserialize)]
pub struct Username {
    csrf: String,
    username: String,
}

/// `POST /console/admin/users/disable`.
pub async fn disable_user(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
    Form(f): Form<Username>,
) -> Result<Response, ConsoleError> {
    viewer.check_csrf(&f.csrf)?;
    viewer.require(&[Role::Admin])?;
    let lang = viewer.lang;
    if f.username == viewer.session.user.username {
        return Err(ConsoleError::Refused(
            lang,
            lang.t(
                "Không thể tự khoá tài khoản của mình.",
                "You cannot disable your own account.",
            )
            .into(),
        ));
    }
    match accounts::disable(&ctx.ingestor.context().db, &f.username, &viewer.who()).await {
        Ok(_) => Ok(Redirect::to("/console/admin").into_response()),
        Err(AccountError::Db(e)) => Err(ConsoleError::Internal(lang, e.to_string())),
        Err(e) => Err(ConsoleError::Refused(lang, e.to_string())),
    }
}

#[derive(Deserialize)]
pub struct NewReason {
    csrf: String,
    code: String,
    label_vi: String,
    label_en: String,
}

/// `POST /console/admin/reasons`.
pub async fn add_reason(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
    Form(f): Form<NewReason>,
) -> Result<Response, ConsoleError> {
    viewer.check_csrf(&f.csrf)?;
    viewer.require(&[Role::Admin, Role::Supervisor])?;
    let lang = viewer.lang;
    let ok_code = (3..=40).contains(&f.code.len())
        && f.code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    let (vi, en) = (f.label_vi.trim(), f.label_en.trim());
    if !ok_code
        || vi.is_empty()
        || en.is_empty()
        || vi.chars().count() > 200
        || en.chars().count() > 200
    {
        return Err(ConsoleError::Refused(
            lang,
            lang.t(
                "Mã 3–40 ký tự a-z và _, nhãn 1–200 ký tự.",
                "Code: 3-40 of a-z and _; labels 1-200 characters.",
            )
            .into(),
        ));
    }
    let db = &ctx.ingestor.context().db;
    let ierr = |e: String| ConsoleError::Internal(lang, e);
    let mut tx = audit::begin(db).await.map_err(|e| ierr(e.to_string()))?;
    let exists = sqlx::query("SELECT 1 FROM rejection_reasons WHERE code = $1")
        .bind(&f.code)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| ierr(e.to_string()))?;
    if exists.is_some() {
        return Err(ConsoleError::Refused(
            lang,
            format!("{} {}", lang.t("Mã đã có:", "Code exists:"), f.code),
        ));
    }
    sqlx::query(
        "INSERT INTO rejection_reasons (code, label_vi, label_en, active) VALUES ($1, $2, $3, 1)",
    )
    .bind(&f.code)
    .bind(vi)
    .bind(en)
    .execute(&mut *tx)
    .await
    .map_err(|e| ierr(e.to_string()))?;
    audit::append(
        &mut tx,
        now_ms(),
        &viewer.who(),
        "reason.add",
        &format!("reason:{}", f.code),
        &serde_json::json!({"vi": vi, "en": en}),
    )
    .await
    .map_err(|e| ierr(e.to_string()))?;
    tx.commit().await.map_err(|e| ierr(e.to_string()))?;
    Ok(Redirect::to("/console/admin").into_response())
}

#[derive(Deserialize)]
pub struct Code {
    csrf: String,
    code: String,
}

/// `POST /console/admin/reasons/retire`.
pub async fn retire_reason(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
    Form(f): Form<Code>,
) -> Result<Response, ConsoleError> {
    viewer.check_csrf(&f.csrf)?;
    viewer.require(&[Role::Admin, Role::Supervisor])?;
    let lang = viewer.lang;
    let db = &ctx.ingestor.context().db;
    let ierr = |e: String| ConsoleError::Internal(lang, e);
    let mut tx = audit::begin(db).await.map_err(|e| ierr(e.to_string()))?;
    let n = sqlx::query("UPDATE rejection_reasons SET active = 0 WHERE code = $1")
        .bind(&f.code)
        .execute(&mut *tx)
        .await
        .map_err(|e| ierr(e.to_string()))?
        .rows_affected();
    if n == 0 {
        return Err(ConsoleError::NotFound(lang, f.code));
    }
    audit::append(
        &mut tx,
        now_ms(),
        &viewer.who(),
        "reason.retire",
        &format!("reason:{}", f.code),
        &serde_json::json!({}),
    )
    .await
    .map_err(|e| ierr(e.to_string()))?;
    tx.commit().await.map_err(|e| ierr(e.to_string()))?;
    Ok(Redirect::to("/console/admin").into_response())
}
