//! The HTTP surface: one axum router over one shared state. Later parts
//! (ingest API, review console, citizen app) mount their routes here.

use axum::{Json, Router, routing::get};
use serde_json::json;

/// The router of the whole server.
pub fn router() -> Router {
    Router::new().route("/healthz", get(healthz))
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
