//! Web Push subscriptions from the citizen app: the app asks for the
//! server's VAPID public key, subscribes through the browser's push service,
//! and hands the subscription to the server, which keeps it under the
//! signed-in citizen's national ID number so notices of their vehicles reach
//! this device (the notices worker encrypts each one for it, RFC 8291).
//! The subscription POST carries the session's CSRF token in a header.
//!
//! A subscription is tied to the session that registered it and goes when
//! that session is signed out (not when it merely expires: a notice comes
//! days later, which is what Web Push is for). Signing in with this
//! browser moves the signed-in citizen's subscriptions it names to the new
//! session and deletes anyone else's ([`signed_in_browser`]): on a shared
//! phone the next person to sign in ends the previous one's notices.
//!
//! Signing out forgets this browser's subscriptions, so that on a shared
//! phone the next person does not get the previous one's notices: the
//! server remembers the ids it stored for this browser in a cookie
//! (`tv_push`, HttpOnly) and removes them at `POST /app/logout`; the page's
//! script also unsubscribes the browser from its push service and sends
//! the endpoint with the sign-out form. `POST /app/push/unsubscribe` (JSON
//! `{"endpoint"}`, header `X-CSRF-Token`) removes one subscription.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};

use super::{AppError, Citizen};
use crate::console::cookie;
use crate::db::{Db, DbError, now_ms};
use crate::notices::webpush::{MAX_SUBSCRIPTIONS, SubscribeError};
use crate::web::ApiContext;

/// The cookie with the ids of the subscriptions this browser registered.
pub const PUSH_COOKIE: &str = "tv_push";

/// The subscription ids in this browser's [`PUSH_COOKIE`] (UUIDs only).
fn browser_ids(headers: &HeaderMap) -> Vec<&str> {
    cookie(headers, PUSH_COOKIE)
        .unwrap_or("")
        .split('.')
        .filter(|id| id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
        .collect()
}

/// The [`PUSH_COOKIE`] holding `ids` (empty: removed). `SameSite=Lax`,
/// not Strict: the sign-in ends with the identity provider's redirect to
/// `/app/sso/callback`, a cross-site navigation a Strict cookie does not
/// follow, and that is where the previous person's subscriptions are
/// found ([`signed_in_browser`]). It names subscriptions, grants nothing:
/// every push route also needs the session and its CSRF token.
pub(crate) fn push_cookie(ids: &[&str], secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let age = if ids.is_empty() { 0 } else { 365 * 86_400 };
    HeaderValue::from_str(&format!(
        "{PUSH_COOKIE}={}; Path=/app; HttpOnly; SameSite=Lax; Max-Age={age}{secure}",
        ids.join(".")
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("tv_push=; Path=/app; Max-Age=0"))
}

/// At sign-out: removes the citizen's subscriptions this browser registered
/// (the cookie's, and `endpoint` when the page's script sent it).
pub(super) async fn forget_browser(
    db: &Db,
    citizen: &Citizen,
    headers: &HeaderMap,
    endpoint: &str,
) -> Result<(), DbError> {
    let nid = &citizen.national_id;
    crate::notices::webpush::unsubscribe_ids(db, nid, &browser_ids(headers)).await?;
    if !endpoint.is_empty() {
        crate::notices::unsubscribe(db, nid, endpoint).await?;
    }
    Ok(())
}

/// Deletes the subscriptions the session `session_sha256` registered (or
/// took over at sign-in): run in the transaction that signs it out.
pub(super) async fn forget_session(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    session_sha256: &str,
) -> Result<u64, DbError> {
    Ok(
        sqlx::query("DELETE FROM push_subscriptions WHERE session_sha256 = $1")
            .bind(session_sha256)
            .execute(&mut **tx)
            .await?
            .rows_affected(),
    )
}

/// At sign-in (`sso/citizen.rs`), with the new session's cookie `token`:
/// the subscriptions this browser's [`PUSH_COOKIE`] names that belong to
/// someone else (the previous person on a shared phone) are deleted; the
/// signed-in citizen's own move to the new session. Returns the ids the
/// cookie keeps.
pub(crate) async fn signed_in_browser(
    db: &Db,
    national_id: &str,
    token: &str,
    headers: &HeaderMap,
) -> Result<Vec<String>, DbError> {
    let session = crate::accounts::sessions::token_digest(token);
    let mut kept = Vec::new();
    for id in browser_ids(headers) {
        sqlx::query(
            "DELETE FROM push_subscriptions WHERE subscription_id = $1 AND national_id <> $2",
        )
        .bind(id)
        .bind(national_id)
        .execute(db.pool())
        .await?;
        let mine = sqlx::query(
            "UPDATE push_subscriptions SET session_sha256 = $1 \
             WHERE subscription_id = $2 AND national_id = $3",
        )
        .bind(&session)
        .bind(id)
        .bind(national_id)
        .execute(db.pool())
        .await?
        .rows_affected();
        if mine > 0 {
            kept.push(id.to_string());
        }
    }
    Ok(kept)
}

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
        Ok(id) => {
            // Tied to this session: it goes when the session is signed
            // out ([`forget_session`]).
            sqlx::query(
                "UPDATE push_subscriptions SET session_sha256 = $1 WHERE subscription_id = $2",
            )
            .bind(crate::accounts::sessions::token_digest(&citizen.token))
            .bind(&id)
            .execute(db.pool())
            .await?;
            // The owner's notices not yet out (confirmed, no channel through,
            // e.g. none reached them before) get a delivery to this browser.
            match crate::notices::outbox::enqueue_unissued(
                db,
                Some(&citizen.national_id),
                now_ms(),
                100,
            )
            .await
            {
                Ok(n) if n > 0 => tracing::info!(n, "push subscription: notices enqueued"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "push subscription: enqueueing notices"),
            }
            let mut ids = browser_ids(&headers);
            ids.retain(|i| *i != id);
            ids.push(&id);
            let keep = &ids[ids.len().saturating_sub(MAX_SUBSCRIPTIONS)..];
            let set = [(header::SET_COOKIE, push_cookie(keep, ctx.secure_cookies))];
            Ok((
                StatusCode::CREATED,
                set,
                Json(serde_json::json!({"id": id})),
            )
                .into_response())
        }
        Err(SubscribeError::Invalid(m)) => Err(AppError::Refused(format!(
            "Đăng ký nhận thông báo không hợp lệ: {m}"
        ))),
        Err(SubscribeError::Db(e)) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
struct Endpoint {
    endpoint: String,
}

/// `POST /app/push/unsubscribe` (JSON `{"endpoint"}`, or the whole
/// `PushSubscription`; header `X-CSRF-Token`): removes the citizen's
/// subscription with that endpoint. 200 `{"removed": bool}`.
pub async fn unsubscribe(
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
    let e = serde_json::from_slice::<Endpoint>(&body)
        .ok()
        .filter(|e| body.len() <= 8192 && !e.endpoint.is_empty())
        .ok_or_else(|| AppError::Refused("Yêu cầu huỷ nhận thông báo không hợp lệ.".into()))?;
    let db = &ctx.ingestor.context().db;
    let removed = crate::notices::unsubscribe(db, &citizen.national_id, &e.endpoint).await?;
    Ok(Json(serde_json::json!({"removed": removed})).into_response())
}

/// The page frame's script: before the sign-out form goes, this browser is
/// unsubscribed from its push service and the endpoint sent along (the
/// server removes it, and the ids of its cookie). At most 3 s, then the
/// form goes anyway.
pub const LOGOUT_SCRIPT: &str = r#"<script>(()=>{const f=document.getElementById('logout');if(!f)return;let sent=false;
const go=()=>{if(!sent){sent=true;f.submit();}};
f.addEventListener('submit',e=>{e.preventDefault();setTimeout(go,3000);(async()=>{try{
const reg=await navigator.serviceWorker.getRegistration('/app/');const s=reg&&await reg.pushManager.getSubscription();
if(s){f.elements.endpoint.value=s.endpoint;await s.unsubscribe();}}catch(_){}go();})();});})();</script>"#;

/// The list page's button and script: subscribe this device.
pub const SUBSCRIBE_SNIPPET: &str = r#"<button class="secondary" id="push" hidden>Nhận thông báo vi phạm trên thiết bị này</button>
<script>(async()=>{if(!('serviceWorker' in navigator)||!('PushManager' in window))return;
const r=await fetch('/app/push/key');if(!r.ok)return;const {publicKey}=await r.json();
const b=document.getElementById('push');b.hidden=false;
b.onclick=async()=>{const reg=await navigator.serviceWorker.register('/app/sw.js',{scope:'/app/'});
const pad='='.repeat((4-publicKey.length%4)%4);const raw=atob((publicKey+pad).replace(/-/g,'+').replace(/_/g,'/'));
const key=Uint8Array.from(raw,c=>c.charCodeAt(0));
const send=async()=>{const sub=await reg.pushManager.subscribe({userVisibleOnly:true,applicationServerKey:key});
return [sub,await fetch('/app/push/subscribe',{method:'POST',headers:{'Content-Type':'application/json','X-CSRF-Token':b.dataset.csrf},body:JSON.stringify(sub)})];};
let [sub,res]=await send();
if(res.status===409){await sub.unsubscribe();[sub,res]=await send();}
b.textContent=res.ok?'Đã bật thông báo trên thiết bị này':'Không bật được thông báo';b.disabled=true;};})();</script>"#;
