//! Web Push subscriptions from the citizen app: the app asks for the
//! server's VAPID public key, subscribes through the browser's push service,
//! and hands the subscription to the server, which keeps it under the
//! signed-in citizen's national ID number so notices of their vehicles reach
//! this device (the notices worker encrypts each one for it, RFC 8291).
//! The subscription POST carries the session's CSRF token in a header.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};

use super::{AppError, Citizen};
use crate::notices::webpush::SubscribeError;
use crate::web::ApiContext;

/// `GET /app/push/key`: the VAPID public key (base64url), 404 when Web
/// Push is off.
pub async fn key(State(ctx): State<ApiContext>, _citizen: Citizen) -> Response {
    match ctx.notices.vapid_public_key() {
        Some(k) => Json(serde_json::json!({"publicKey": k})).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `POST /app/push/subscribe` (JSON `PushSubscription`, header
/// `X-CSRF-Token`).
pub async fn subscribe(
    State(ctx): State<ApiContext>,
    citizen: Citizen,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let token = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    citizen.check_csrf(token)?;
    if body.len() > 8192 {
        return Err(AppError::Refused("Đăng ký nhận thông báo quá lớn.".into()));
    }
    let json = std::str::from_utf8(&body)
        .map_err(|_| AppError::Refused("Đăng ký nhận thông báo không hợp lệ.".into()))?;
    let db = &ctx.ingestor.context().db;
    let vapid = ctx.notices.vapid_config();
    match crate::notices::subscribe(db, vapid, &citizen.national_id, json).await {
        Ok(id) => Ok((StatusCode::CREATED, Json(serde_json::json!({"id": id}))).into_response()),
        Err(SubscribeError::Invalid(m)) => Err(AppError::Refused(format!(
            "Đăng ký nhận thông báo không hợp lệ: {m}"
        ))),
        Err(SubscribeError::Db(e)) => Err(e.into()),
    }
}

/// The list page's button and script: subscribe this device.
pub const SUBSCRIBE_SNIPPET: &str = r#"<button class="secondary" id="push" hidden>Nhận thông báo vi phạm trên thiết bị này</button>
<script>(async()=>{if(!('serviceWorker' in navigator)||!('PushManager' in window))return;
const r=await fetch('/app/push/key');if(!r.ok)return;const {publicKey}=await r.json();
const b=document.getElementById('push');b.hidden=false;
b.onclick=async()=>{const reg=await navigator.serviceWorker.register('/app/sw.js',{scope:'/app/'});
const pad='='.repeat((4-publicKey.length%4)%4);const raw=atob((publicKey+pad).replace(/-/g,'+').replace(/_/g,'/'));
const key=Uint8Array.from(raw,c=>c.charCodeAt(0));
const sub=await reg.pushManager.subscribe({userVisibleOnly:true,applicationServerKey:key});
const res=await fetch('/app/push/subscribe',{method:'POST',headers:{'Content-Type':'application/json','X-CSRF-Token':b.dataset.csrf},body:JSON.stringify(sub)});
b.textContent=res.ok?'Đã bật thông báo trên thiết bị này':'Không bật được thông báo';b.disabled=true;};})();</script>"#;
