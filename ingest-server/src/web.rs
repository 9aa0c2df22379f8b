//! The HTTP surface: one axum router over one shared state ([`ApiContext`])
//! and one error type ([`ApiError`]) that maps to HTTP statuses and a JSON
//! body `{"error": {"code", "message"}}` with a stable code, never leaking
//! internals (those are logged).
//!
//! - `GET /healthz`, `GET /readyz` (database reachable), `GET /metrics`
//!   (Prometheus);
//! - `POST /api/v1/violations`: an event bundle (`application/vnd.tv.bundle`)
//!   from an edge that cannot use MQTT; answers with the protocol's `Ack`;
//! - admin (bearer: an administrator's personal token, `api_tokens.rs`, or
//!   the shared `admin.token`): `GET|POST /api/v1/devices`, `POST
//!   /api/v1/devices/{id}/revoke`, `GET|POST /api/v1/cameras`, `POST
//!   /api/v1/cameras/{device_id}/{camera_id}/retire`, `GET /api/v1/quarantine`,
//!   `GET /api/v1/cases` (paged, by state or device),
//!   `GET /api/v1/cases/{event_id}`, `GET /api/v1/heartbeats`,
//!   `GET /api/v1/evidence/{sha256}` (bytes checked against their hash).
//!   Every change made through it (device enrolled or revoked, camera
//!   enrolled or retired) is written to the audit log as the token's
//!   person, or as `admin-api` for the shared token.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use protocol::{AckStatus, Message};
use serde::Deserialize;
use serde_json::json;

use crate::audit::{self, Who};
use crate::cameras::{self, CameraError};
use crate::cases;
use crate::devices::{self, DeviceError};
use crate::evidence::{EvidenceStore, EvidenceStoreError};
use crate::ingest::{Ingestor, Source};
use crate::quarantine;

/// The OpenAPI document of this API (checked against [`ROUTES`] and the
/// error codes by the tests).
pub const OPENAPI: &str = include_str!("../api/openapi.json");

/// Every route (method, path template) of the API the router serves, with
/// the payment gateway's two (its IPN and the browser's return); the
/// console's and the citizen portal's HTML pages are not listed.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
    ("post", "/api/v1/violations"),
    ("get", "/api/v1/devices"),
    ("post", "/api/v1/devices"),
    ("post", "/api/v1/devices/{id}/revoke"),
    ("get", "/api/v1/cameras"),
    ("post", "/api/v1/cameras"),
    ("post", "/api/v1/cameras/{device_id}/{camera_id}/retire"),
    ("get", "/api/v1/quarantine"),
    ("get", "/api/v1/cases"),
    ("get", "/api/v1/cases/{event_id}"),
    ("get", "/api/v1/heartbeats"),
    ("get", "/api/v1/evidence/{sha256}"),
    ("get", "/api/v1/notices/overdue"),
    ("get", "/api/v1/payments/vnpay/ipn"),
    ("get", "/pay/vnpay/return"),
];

/// Media type of an event bundle.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.tv.bundle";

/// What every handler sees.
#[derive(Clone)]
pub struct ApiContext {
    /// The ingest pipeline (and through it the database and evidence).
    pub ingestor: Ingestor,
    /// Admin bearer token; `None` disables the admin API.
    pub admin_token: Option<String>,
    /// Bearer token for `GET /metrics`; `None`: local clients only.
    pub metrics_token: Option<String>,
    /// Session cookies carry `Secure`.
    pub secure_cookies: bool,
    /// Single sign-on through OpenID Connect, when `[sso]` is configured.
    pub sso: Option<std::sync::Arc<crate::sso::Sso>>,
    /// Citizens' sign-in through the national identity provider, when
    /// `[citizen_sso]` is configured.
    pub citizen_sso: Option<std::sync::Arc<crate::sso::CitizenSso>>,
    /// Online payment of fines, when `[payments.vnpay]` is configured.
    pub payments: Option<std::sync::Arc<crate::payments::Payments>>,
    /// Fine notices: the VAPID key for the citizen app's push subscriptions.
    pub notices: std::sync::Arc<crate::notices::Notices>,
    /// How long (ms) a console session may go unused
    /// (`http.console_idle_minutes`).
    pub console_idle_ms: i64,
    /// Failed console sign-ins per source address.
    pub sign_in_throttle: std::sync::Arc<crate::console::throttle::SignInThrottle>,
    /// The reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: std::sync::Arc<[crate::console::throttle::ProxyNet]>,
    /// Bundles read over HTTP at once ([`MAX_UPLOADS`]): each may be 16
    /// MiB, buffered before any check, and the route is open to anyone.
    pub uploads: std::sync::Arc<tokio::sync::Semaphore>,
    /// The key that signs acks; it signs court packages too.
    pub server_key: std::sync::Arc<crate::server_key::ServerKey>,
}

/// Bundles `POST /api/v1/violations` reads at once; more are answered 503
/// (devices deliver over MQTT and retry; this route is the fallback).
pub const MAX_UPLOADS: usize = 8;

/// Longest a bundle upload may take once its slot is held.
const UPLOAD_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Every error an API call can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is wrong (`code` says how).
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// Detail.
        message: String,
    },
    /// Missing or wrong admin token.
    #[error("admin token required")]
    Unauthorized,
    /// The admin API is not configured.
    #[error(
        "no shared admin token configured (admin.token, INGEST_ADMIN_TOKEN); \
         use an administrator's personal token (`ingest-server user token`)"
    )]
    AdminDisabled,
    /// No such thing.
    #[error("{0} not found")]
    NotFound(String),
    /// Already exists.
    #[error("{0}")]
    Conflict(String),
    /// The body could not be read (too large, cut off).
    #[error("request body: {0}")]
    PayloadTooLarge(String),
    /// Wrong content type.
    #[error("expected Content-Type {0}")]
    UnsupportedMediaType(&'static str),
    /// Something on our side failed; details are in the log.
    #[error("internal error")]
    Internal(String),
    /// Temporarily unable (database down, ...); retry later.
    #[error("service unavailable, retry later")]
    Unavailable(String),
}

impl ApiError {
    /// Every code an error can carry (the OpenAPI document lists them).
    pub const CODES: &'static [&'static str] = &[
        "malformed",
        "unsupported_version",
        "rejected",
        "invalid_json",
        "invalid_id",
        "invalid_key",
        "invalid_field",
        "unknown_device",
        "bad_digest",
        "bad_state",
        "bad_cursor",
        "bad_limit",
        "unknown_parameter",
        "unauthorized",
        "admin_disabled",
        "not_found",
        "conflict",
        "payload_too_large",
        "unsupported_media_type",
        "internal",
        "unavailable",
    ];

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::AdminDisabled => (StatusCode::SERVICE_UNAVAILABLE, "admin_disabled"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) | ApiError::Unavailable(detail) = &self {
            tracing::error!(detail, "request failed");
        }
        let (status, code) = self.parts();
        (
            status,
            Json(json!({"error": {"code": code, "message": self.to_string()}})),
        )
            .into_response()
    }
}

impl From<DeviceError> for ApiError {
    fn from(e: DeviceError) -> Self {
        match e {
            DeviceError::InvalidId(m) => ApiError::BadRequest {
                code: "invalid_id",
                message: m,
            },
            DeviceError::InvalidKey(m) => ApiError::BadRequest {
                code: "invalid_key",
                message: m,
            },
            DeviceError::Exists(id) => {
                ApiError::Conflict(format!("device `{id}` is already enrolled"))
            }
            DeviceError::NotFound(id) => ApiError::NotFound(format!("device `{id}`")),
            DeviceError::Revoked(id) => ApiError::Conflict(format!("device `{id}` is revoked")),
            DeviceError::Db(e) => ApiError::Unavailable(e.to_string()),
            DeviceError::ServerKeys(e) => ApiError::Unavailable(e),
        }
    }
}

impl From<CameraError> for ApiError {
    fn from(e: CameraError) -> Self {
        let message = e.to_string();
        match e {
            CameraError::InvalidId { .. } => ApiError::BadRequest {
                code: "invalid_id",
                message,
            },
            CameraError::Invalid { .. } => ApiError::BadRequest {
                code: "invalid_field",
                message,
            },
            CameraError::UnknownDevice(_) => ApiError::BadRequest {
                code: "unknown_device",
                message,
            },
            CameraError::Exists(..) => ApiError::Conflict(message),
            CameraError::NotFound(d, c) => ApiError::NotFound(format!("camera `{c}` of `{d}`")),
            CameraError::Db(e) => ApiError::Unavailable(e.to_string()),
        }
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

/// The router of the whole server.
pub fn router(ctx: ApiContext) -> Router {
    let hsts = ctx.secure_cookies;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .route(
            "/api/v1/violations",
            post(post_violation).layer(DefaultBodyLimit::max(crate::broker::MAX_PAYLOAD)),
        )
        .route("/api/v1/devices", get(list_devices).post(add_device))
        .route("/api/v1/devices/{id}/revoke", post(revoke_device))
        .route("/api/v1/cameras", get(list_cameras).post(add_camera))
        .route(
            "/api/v1/cameras/{device_id}/{camera_id}/retire",
            post(retire_camera),
        )
        .route("/api/v1/quarantine", get(list_quarantine))
        .route("/api/v1/cases", get(list_cases))
        .route("/api/v1/cases/{event_id}", get(get_case))
        .route("/api/v1/heartbeats", get(list_heartbeats))
        .route("/api/v1/evidence/{sha256}", get(get_evidence))
        .merge(crate::console::routes())
        .merge(crate::citizen::routes())
        .merge(crate::sso::console::routes())
        .merge(crate::sso::citizen::routes())
        .merge(crate::notices::routes())
        .merge(crate::payments::routes())
        .fallback(|| async { ApiError::NotFound("route".into()) })
        .with_state(ctx)
        .layer(axum::middleware::map_response(
            move |res: Response| async move {
                crate::headers::protect(strict_transport(res, hsts))
            },
        ))
}

/// With `Secure` cookies (the server is reached over HTTPS, through the TLS
/// proxy) every answer tells the browser to use HTTPS only for a year
/// (`Strict-Transport-Security`), so a later `http://` link or typed
/// address never goes out in clear; browsers ignore it over plain HTTP.
fn strict_transport(mut res: Response, on: bool) -> Response {
    if on {
        res.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            header::HeaderValue::from_static("max-age=31536000"),
        );
    }
    res
}

/// Pages with personal data (the console's owner panels, a citizen's
/// notices) must not stay in a shared workstation's browser cache, where
/// the next person's Back button would find them after sign-out: every
/// response that does not say otherwise (the citizen app's static files)
/// gets `Cache-Control: no-store`.
pub(crate) async fn no_store_unless_set(mut res: Response) -> Response {
    if !res.headers().contains_key(header::CACHE_CONTROL) {
        res.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    res
}

/// Liveness: answers when the process serves requests.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "service": "ingest-server",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": protocol_version(),
    }))
}

fn protocol_version() -> String {
    protocol::version::SchemaVersion::CURRENT.to_string()
}

/// Readiness: the database answers.
///
/// Answers within [`READY_TIMEOUT`] either way: the pool waits far longer
/// for a connection while the database is down, and a probe that hangs is
/// read by a load balancer or Kubernetes as a dead process, not as "not
/// ready".
async fn readyz(State(ctx): State<ApiContext>) -> Result<Json<serde_json::Value>, ApiError> {
    let probe = sqlx::query("SELECT 1").execute(ctx.ingestor.context().db.pool());
    match tokio::time::timeout(READY_TIMEOUT, probe).await {
        Ok(Ok(_)) => Ok(Json(json!({"status": "ready"}))),
        Ok(Err(e)) => Err(ApiError::Unavailable(e.to_string())),
        Err(_) => Err(ApiError::Unavailable(format!(
            "database did not answer within {READY_TIMEOUT:?}"
        ))),
    }
}

/// How long `/readyz` waits for the database.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Prometheus text exposition.
async fn metrics(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
) -> Response {
    let peer = ext
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if !crate::metrics::scrape_allowed(ctx.metrics_token.as_deref(), peer, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "metrics need http.metrics_token (INGEST_METRICS_TOKEN) as a bearer token\n",
        )
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.ingestor.context().metrics.render(),
    )
        .into_response()
}

async fn post_violation(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.split(';').next().map(str::trim) != Some(BUNDLE_MEDIA_TYPE) {
        return Err(ApiError::UnsupportedMediaType(BUNDLE_MEDIA_TYPE));
    }
    // A slot before the body is read: the bytes are held from here on.
    let _slot = ctx.uploads.clone().try_acquire_owned().map_err(|_| {
        ApiError::Unavailable("too many bundles being uploaded at once; retry shortly".into())
    })?;
    // A client that sends slowly holds a slot: it gets a bounded time.
    let read = axum::body::to_bytes(body, crate::broker::MAX_PAYLOAD);
    let body = tokio::time::timeout(UPLOAD_READ_TIMEOUT, read)
        .await
        .map_err(|_| ApiError::BadRequest {
            code: "slow_upload",
            message: format!(
                "the bundle was not sent within {} s",
                UPLOAD_READ_TIMEOUT.as_secs()
            ),
        })?
        .map_err(|e| {
            ApiError::PayloadTooLarge(format!(
                "the bundle could not be read within {} bytes: {e}",
                crate::broker::MAX_PAYLOAD
            ))
        })?;
    let outcome = ctx
        .ingestor
        .submit(body, Source::Http)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    match (outcome.ack, outcome.rejection) {
        (Some(ack), _) => {
            let status = match ack.status {
                AckStatus::Stored => StatusCode::CREATED,
                AckStatus::Duplicate => StatusCode::OK,
                AckStatus::Rejected { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let body = ack
                .to_json()
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            Ok((status, [(header::CONTENT_TYPE, "application/json")], body).into_response())
        }
        (None, Some((code, message))) => Err(ApiError::BadRequest {
            code: match code.as_str() {
                "malformed" => "malformed",
                "unsupported_version" => "unsupported_version",
                _ => "rejected",
            },
            message,
        }),
        (None, None) => Err(ApiError::Internal("no outcome".into())),
    }
}

/// Who the admin API request is from: an administrator's personal token
/// (`tvat.…`, [`crate::api_tokens`]) names that person; the shared
/// `admin.token` names only `admin-api`. Anything else is refused.
pub(crate) async fn require_admin(ctx: &ApiContext, headers: &HeaderMap) -> Result<Who, ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if given.starts_with("tvat.") {
        let db = &ctx.ingestor.context().db;
        return match crate::api_tokens::admin_of(db, given).await? {
            Some(user) => Ok(Who::new(user.user_id, crate::workflow::Role::Admin)),
            None => Err(ApiError::Unauthorized),
        };
    }
    let Some(token) = &ctx.admin_token else {
        return Err(ApiError::AdminDisabled);
    };
    if same_secret(given, token) {
        Ok(Who::new("admin-api", crate::workflow::Role::Admin))
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Constant-time comparison of a presented secret with the expected one
/// (time depends only on their lengths).
pub(crate) fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn list_devices(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
) -> Result<Json<Vec<devices::Device>>, ApiError> {
    require_admin(&ctx, &headers).await?;
    Ok(Json(devices::list(&ctx.ingestor.context().db).await?))
}

#[derive(Deserialize)]
struct NewDevice {
    device_id: String,
    site: String,
    public_key: String,
}

/// Reads a JSON body into `T` (after the token check, with our error shape).
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest {
        code: "invalid_json",
        message: e.to_string(),
    })
}

async fn add_device(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<devices::Enrolment>), ApiError> {
    let who = require_admin(&ctx, &headers).await?;
    let d: NewDevice = json_body(&body)?;
    // The device with its broker login (password shown this once) and the
    // server keys its acks are signed with.
    let dev = devices::enrol_with_credentials(
        &ctx.ingestor.context().db,
        &d.device_id,
        &d.site,
        &d.public_key,
    )
    .await?;
    let detail = json!({"site": d.site, "public_key": dev.device.public_key});
    audit::record_now(
        &ctx.ingestor.context().db,
        &who,
        "device.enrol",
        &d.device_id,
        detail,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(dev)))
}

#[derive(Deserialize, Default)]
struct Revocation {
    #[serde(default)]
    reason: String,
}

async fn revoke_device(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<devices::Device>, ApiError> {
    let who = require_admin(&ctx, &headers).await?;
    let reason = optional_reason(&body)?;
    let (device, changed) = devices::revoke(&ctx.ingestor.context().db, &id, &reason).await?;
    if changed {
        audit::record_now(
            &ctx.ingestor.context().db,
            &who,
            "device.revoke",
            &id,
            json!({ "reason": reason }),
        )
        .await?;
    }
    Ok(Json(device))
}

/// The `{"reason": ...}` body of a revocation or retirement; none given is
/// an empty reason.
fn optional_reason(body: &Bytes) -> Result<String, ApiError> {
    if body.is_empty() {
        return Ok(String::new());
    }
    Ok(json_body::<Revocation>(body)?.reason)
}

async fn list_cameras(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
) -> Result<Json<Vec<cameras::CameraView>>, ApiError> {
    require_admin(&ctx, &headers).await?;
    Ok(Json(cameras::list(&ctx.ingestor.context().db).await?))
}

async fn add_camera(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<cameras::Camera>), ApiError> {
    let who = require_admin(&ctx, &headers).await?;
    let new = cameras::NewCamera::from_json(&json_body::<serde_json::Value>(&body)?)?;
    let camera = cameras::enrol(&ctx.ingestor.context().db, &new).await?;
    let subject = format!("{}/{}", camera.device_id, camera.camera_id);
    audit::record_now(
        &ctx.ingestor.context().db,
        &who,
        "camera.enrol",
        &subject,
        json!({}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(camera)))
}

async fn retire_camera(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    Path((device_id, camera_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<cameras::Camera>, ApiError> {
    let who = require_admin(&ctx, &headers).await?;
    let reason = optional_reason(&body)?;
    let (camera, changed) =
        cameras::retire(&ctx.ingestor.context().db, &device_id, &camera_id, &reason).await?;
    if changed {
        let subject = format!("{device_id}/{camera_id}");
        audit::record_now(
            &ctx.ingestor.context().db,
            &who,
            "camera.retire",
            &subject,
            json!({ "reason": reason }),
        )
        .await?;
    }
    Ok(Json(camera))
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<i64>,
}

async fn list_quarantine(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    Query(q): Query<Limit>,
) -> Result<Json<Vec<quarantine::QuarantineEntry>>, ApiError> {
    require_admin(&ctx, &headers).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(
        quarantine::list(&ctx.ingestor.context().db, limit).await?,
    ))
}

async fn get_case(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    Path(event_id): Path<String>,
) -> Result<Json<cases::CaseSummary>, ApiError> {
    let who = require_admin(&ctx, &headers).await?;
    let db = &ctx.ingestor.context().db;
    // A case holds a plate and a place and time: personal data, each read
    // logged like the console's.
    audit::record_now(
        db,
        &who,
        "api.case.read",
        &format!("case:{event_id}"),
        serde_json::json!({}),
    )
    .await?;
    cases::case(db, &event_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("case {event_id}")))
}

/// `GET /api/v1/cases?state=&device_id=&after=&limit=`: a page of cases in
/// the order they were stored; every parameter is checked, and an unknown
/// one is an error rather than silently ignored (a typo must not widen a
/// query over personal data).
async fn list_cases(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<Json<cases::CasePage>, ApiError> {
    let who = require_admin(&ctx, &headers).await?;
    let bad = |code: &'static str, message: String| ApiError::BadRequest { code, message };
    let mut filter = cases::CaseFilter {
        limit: 100,
        ..cases::CaseFilter::default()
    };
    for (k, v) in &q {
        match k.as_str() {
            "state" => {
                filter.state = Some(
                    crate::workflow::CaseState::parse(v)
                        .ok_or_else(|| bad("bad_state", format!("unknown case state {v:?}")))?,
                )
            }
            "device_id" => filter.device_id = Some(v.clone()),
            "after" => {
                filter.after = Some(
                    cases::Cursor::parse(v)
                        .ok_or_else(|| bad("bad_cursor", format!("not a cursor: {v:?}")))?,
                )
            }
            "limit" => {
                filter.limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=cases::MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        bad(
                            "bad_limit",
                            format!("limit must be 1..={}, got {v:?}", cases::MAX_PAGE),
                        )
                    })?
            }
            other => {
                return Err(bad(
                    "unknown_parameter",
                    format!("unknown query parameter {other:?}"),
                ));
            }
        }
    }
    let db = &ctx.ingestor.context().db;
    let page = cases::list(db, &filter).await?;
    audit::record_now(
        db,
        &who,
        "api.cases.list",
        "cases",
        serde_json::json!({"query": q, "returned": page.cases.len()}),
    )
    .await?;
    Ok(Json(page))
}

async fn list_heartbeats(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
) -> Result<Json<Vec<crate::heartbeats::LatestHeartbeat>>, ApiError> {
    require_admin(&ctx, &headers).await?;
    Ok(Json(
        crate::heartbeats::latest(&ctx.ingestor.context().db).await?,
    ))
}

async fn get_evidence(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    Path(sha256): Path<String>,
) -> Result<Response, ApiError> {
    let who = require_admin(&ctx, &headers).await?;
    if let Err(EvidenceStoreError::BadDigest(d)) = EvidenceStore::key_for(&sha256) {
        return Err(ApiError::BadRequest {
            code: "bad_digest",
            message: format!("not a sha256 digest: {d:?}"),
        });
    }
    audit::record_now(
        &ctx.ingestor.context().db,
        &who,
        "api.evidence.read",
        &format!("evidence:{sha256}"),
        serde_json::json!({}),
    )
    .await?;
    let store: &EvidenceStore = &ctx.ingestor.context().evidence;
    match store.get(&sha256).await {
        Ok(bytes) => {
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
        }
        Err(EvidenceStoreError::BadDigest(d)) => Err(ApiError::BadRequest {
            code: "bad_digest",
            message: format!("not a sha256 digest: {d:?}"),
        }),
        Err(EvidenceStoreError::Store(object_store::Error::NotFound { .. })) => {
            Err(ApiError::NotFound(format!("evidence {sha256}")))
        }
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn openapi_lists_exactly_the_routes_served() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        let served: BTreeSet<_> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn openapi_lists_every_error_code() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let codes: BTreeSet<String> = doc["components"]["schemas"]["Error"]["properties"]["error"]
            ["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        let ours: BTreeSet<String> = ApiError::CODES.iter().map(|c| c.to_string()).collect();
        assert_eq!(codes, ours);
        for e in [
            ApiError::Unauthorized,
            ApiError::AdminDisabled,
            ApiError::NotFound(String::new()),
            ApiError::Conflict(String::new()),
            ApiError::PayloadTooLarge(String::new()),
            ApiError::UnsupportedMediaType(BUNDLE_MEDIA_TYPE),
            ApiError::Internal(String::new()),
            ApiError::Unavailable(String::new()),
        ] {
            assert!(ApiError::CODES.contains(&e.parts().1), "{e:?}");
        }
    }
}
