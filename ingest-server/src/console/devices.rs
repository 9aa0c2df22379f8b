//! Edge devices and their cameras in the console, for administrators: the
//! list with each device's state, enrolment (the device's MQTT password is
//! shown once, on the answer page, with the server keys its configuration
//! needs), revocation, and camera enrolment and retirement.
//!
//! The same operations exist in the admin API and the CLI; here they are
//! made by a signed-in person, so each audit entry names that person
//! (`device.enrol`, `device.revoke`, `camera.enrol`, `camera.retire`).

use std::fmt::Write as _;

use axum::Form;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::html::esc;
use super::{ConsoleError, Lang, Viewer};
use crate::cameras::{self, CameraError};
use crate::devices::{self, DeviceError};
use crate::web::ApiContext;
use crate::workflow::Role;

fn device_error(lang: Lang, e: DeviceError) -> ConsoleError {
    match e {
        DeviceError::Db(e) => ConsoleError::Internal(lang, e.to_string()),
        e => ConsoleError::Refused(lang, e.to_string()),
    }
}

fn camera_error(lang: Lang, e: CameraError) -> ConsoleError {
    match e {
        CameraError::Db(e) => ConsoleError::Internal(lang, e.to_string()),
        e => ConsoleError::Refused(lang, e.to_string()),
    }
}

fn hidden_csrf(csrf: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">")
}

/// `GET /console/devices`: devices, their cameras, and the forms.
pub async fn page(State(ctx): State<ApiContext>, viewer: Viewer) -> Result<Response, ConsoleError> {
    viewer.require(&[Role::Admin])?;
    let lang = viewer.lang;
    let db = &ctx.ingestor.context().db;
    let csrf = hidden_csrf(&esc(&viewer.session.csrf));
    let devices = devices::list(db).await.map_err(|e| device_error(lang, e))?;
    let cams = cameras::list(db).await.map_err(|e| camera_error(lang, e))?;
    let mut rows = String::new();
    for d in &devices {
        let state = match (&d.revoked_at, &d.revoked_reason) {
            (Some(_), reason) => format!(
                "{}: {}",
                lang.t("đã thu hồi", "revoked"),
                esc(reason.as_deref().unwrap_or(""))
            ),
            (None, _) => format!(
                "{active} <form method=\"post\" action=\"/console/devices/revoke\" class=\"inline\">{csrf}\
                 <input type=\"hidden\" name=\"device_id\" value=\"{id}\">\
                 <input type=\"text\" name=\"reason\" placeholder=\"{why}\" required>\
                 <button>{revoke}</button></form>",
                active = lang.t("hoạt động", "active"),
                id = esc(&d.device_id),
                why = lang.t("Lý do", "Reason"),
                revoke = lang.t("Thu hồi", "Revoke"),
            ),
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td><code>{}…</code></td><td>{state}</td></tr>",
            esc(&d.device_id),
            esc(&d.site),
            esc(&d.public_key[..d.public_key.len().min(16)]),
        );
    }
    let mut cam_rows = String::new();
    for v in &cams {
        let c = &v.camera;
        let action = if c.retired_at.is_some() {
            lang.t("đã ngừng", "retired").to_string()
        } else {
            format!(
                "<form method=\"post\" action=\"/console/cameras/retire\" class=\"inline\">{csrf}\
                 <input type=\"hidden\" name=\"device_id\" value=\"{}\">\
                 <input type=\"hidden\" name=\"camera_id\" value=\"{}\">\
                 <input type=\"text\" name=\"reason\" placeholder=\"{}\" required>\
                 <button>{}</button></form>",
                esc(&c.device_id),
                esc(&c.camera_id),
                lang.t("Lý do", "Reason"),
                lang.t("Ngừng dùng", "Retire"),
            )
        };
        let _ = write!(
            cam_rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
            esc(&c.device_id),
            esc(&c.camera_id),
            esc(&c.site),
            esc(&c.description),
            esc(c.certified_until.as_deref().unwrap_or("–")),
        );
    }
    let body = format!(
        "<h1>{title}</h1><table id=\"devices\"><tr><th>{id}</th><th>{site}</th><th>{key}</th><th>{state}</th></tr>{rows}</table>\
         <h2>{enrol}</h2><form method=\"post\" action=\"/console/devices\" class=\"filters\">{csrf}\
         <label>{id}<input type=\"text\" name=\"device_id\" required></label>\
         <label>{site}<input type=\"text\" name=\"site\" required></label>\
         <label>{key} (Ed25519, hex)<input type=\"text\" name=\"public_key\" minlength=\"64\" maxlength=\"64\" required></label>\
         <button class=\"primary\">{enrol_btn}</button></form>\
         <h1>{cameras}</h1><table id=\"cameras\"><tr><th>{id}</th><th>{camera}</th><th>{site}</th><th>{desc}</th><th>{cert}</th><th></th></tr>{cam_rows}</table>\
         <h2>{add_camera}</h2><form method=\"post\" action=\"/console/cameras\" class=\"filters\">{csrf}\
         <label>{id}<input type=\"text\" name=\"device_id\" required></label>\
         <label>{camera}<input type=\"text\" name=\"camera_id\" required></label>\
         <label>{site}<input type=\"text\" name=\"site\" required></label>\
         <label>{desc}<input type=\"text\" name=\"description\" required></label>\
         <label>{cert_no}<input type=\"text\" name=\"certificate_no\"></label>\
         <label>{cert}<input type=\"date\" name=\"certified_until\"></label>\
         <button class=\"primary\">{enrol_btn}</button></form>",
        title = lang.t("Thiết bị biên", "Edge devices"),
        id = lang.t("Thiết bị", "Device"),
        site = lang.t("Nút giao", "Site"),
        key = lang.t("Khoá công khai", "Public key"),
        state = lang.t("Trạng thái", "State"),
        enrol = lang.t("Đăng ký thiết bị", "Enrol a device"),
        enrol_btn = lang.t("Đăng ký", "Enrol"),
        cameras = lang.t("Camera", "Cameras"),
        camera = lang.t("Camera", "Camera"),
        desc = lang.t("Mô tả", "Description"),
        cert = lang.t("Kiểm định đến", "Certified until"),
        cert_no = lang.t("Số giấy kiểm định", "Certificate no."),
        add_camera = lang.t("Đăng ký camera", "Enrol a camera"),
    );
    Ok(viewer.page(lang.t("Thiết bị biên", "Edge devices"), &body))
}

#[derive(Deserialize)]
pub struct NewDevice {
    csrf: String,
    device_id: String,
    site: String,
    public_key: String,
}

/// `POST /console/devices`: enrols, and answers with the device's MQTT
/// login (the password only this once) and the server keys to trust.
pub async fn enrol(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
    Form(f): Form<NewDevice>,
) -> Result<Response, ConsoleError> {
    viewer.check_csrf(&f.csrf)?;
    viewer.require(&[Role::Admin])?;
    let lang = viewer.lang;
    let db = &ctx.ingestor.context().db;
    let (id, site, key) = (f.device_id.trim(), f.site.trim(), f.public_key.trim());
    let e = devices::enrol_with_credentials(db, id, site, key)
        .await
        .map_err(|e| device_error(lang, e))?;
    let detail = json!({"site": site, "public_key": e.device.public_key});
    viewer.audit(db, "device.enrol", id, detail).await?;
    let keys: String = e
        .server_public_keys
        .iter()
        .map(|k| format!("<li><code>{}</code></li>", esc(k)))
        .collect();
    let body = format!(
        "<h1>{title}</h1><p>{once}</p><dl>\
         <dt>[mqtt] username</dt><dd><code id=\"mqtt-username\">{user}</code></dd>\
         <dt>[mqtt] password_file</dt><dd><code id=\"mqtt-password\">{password}</code></dd>\
         <dt>[server] public_keys</dt><dd><ul>{keys}</ul></dd></dl>\
         <p><a href=\"/console/devices\">{back}</a></p>",
        title = lang.t("Đã đăng ký thiết bị", "Device enrolled"),
        once = lang.t(
            "Mật khẩu MQTT chỉ hiển thị một lần: ghi vào tệp password_file của thiết bị ngay bây giờ.",
            "The MQTT password is shown this once: put it in the device's password_file now.",
        ),
        user = esc(&e.mqtt_username),
        password = esc(&e.mqtt_password),
        back = lang.t("Quay lại danh sách", "Back to the list"),
    );
    Ok(viewer.page(lang.t("Đã đăng ký thiết bị", "Device enrolled"), &body))
}

#[derive(Deserialize)]
pub struct Revocation {
    csrf: String,
    device_id: String,
    reason: String,
}

/// `POST /console/devices/revoke`: its events are refused from now on.
pub async fn revoke(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
    Form(f): Form<Revocation>,
) -> Result<Response, ConsoleError> {
    viewer.check_csrf(&f.csrf)?;
    viewer.require(&[Role::Admin])?;
    let lang = viewer.lang;
    let reason = f.reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 {
        return Err(ConsoleError::Refused(
            lang,
            lang.t("Lý do 1–200 ký tự.", "A reason of 1-200 characters.")
                .into(),
        ));
    }
    let db = &ctx.ingestor.context().db;
    let (_, changed) = devices::revoke(db, &f.device_id, reason)
        .await
        .map_err(|e| device_error(lang, e))?;
    if changed {
        viewer
            .audit(
                db,
                "device.revoke",
                &f.device_id,
                json!({ "reason": reason }),
            )
            .await?;
    }
    Ok(Redirect::to("/console/devices").into_response())
}

#[derive(Deserialize)]
pub struct NewCamera {
    csrf: String,
    device_id: String,
    camera_id: String,
    site: String,
    description: String,
    #[serde(default)]
    certificate_no: String,
    #[serde(default)]
    certified_until: String,
}

/// `POST /console/cameras`: enrols a camera of an enrolled device, checked
/// like the API's (`cameras::NewCamera::from_json`).
pub async fn enrol_camera(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
    Form(f): Form<NewCamera>,
) -> Result<Response, ConsoleError> {
    viewer.check_csrf(&f.csrf)?;
    viewer.require(&[Role::Admin])?;
    let lang = viewer.lang;
    let mut fields = json!({
        "device_id": f.device_id.trim(),
        "camera_id": f.camera_id.trim(),
        "site": f.site.trim(),
        "description": f.description.trim(),
    });
    for (k, v) in [
        ("certificate_no", f.certificate_no.trim()),
        ("certified_until", f.certified_until.trim()),
    ] {
        if !v.is_empty() {
            fields[k] = json!(v);
        }
    }
    let new = cameras::NewCamera::from_json(&fields).map_err(|e| camera_error(lang, e))?;
    let db = &ctx.ingestor.context().db;
    let c = cameras::enrol(db, &new)
        .await
        .map_err(|e| camera_error(lang, e))?;
    let subject = format!("{}/{}", c.device_id, c.camera_id);
    viewer
        .audit(db, "camera.enrol", &subject, json!({}))
        .await?;
    Ok(Redirect::to("/console/devices").into_response())
}

#[derive(Deserialize)]
pub struct CameraRetirement {
    csrf: String,
    device_id: String,
    camera_id: String,
    reason: String,
}

/// `POST /console/cameras/retire`: its later events are refused.
pub async fn retire_camera(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
    Form(f): Form<CameraRetirement>,
) -> Result<Response, ConsoleError> {
    viewer.check_csrf(&f.csrf)?;
    viewer.require(&[Role::Admin])?;
    let lang = viewer.lang;
    let db = &ctx.ingestor.context().db;
    let reason = f.reason.trim();
    let (_, changed) = cameras::retire(db, &f.device_id, &f.camera_id, reason)
        .await
        .map_err(|e| camera_error(lang, e))?;
    if changed {
        let subject = format!("{}/{}", f.device_id, f.camera_id);
        viewer
            .audit(db, "camera.retire", &subject, json!({ "reason": reason }))
            .await?;
    }
    Ok(Redirect::to("/console/devices").into_response())
}
