//! Downloads from the console: a case's court evidence package (police,
//! supervisors, auditors) and the labelled plate crops that people checked,
//! for fine-tuning the recogniser on the city's own cameras (supervisors,
//! auditors). Both are built by `package` and `labels`; every download is
//! audited with the hash of what was handed out.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::{ConsoleError, Viewer};
use crate::audit;
use crate::db::now_ms;
use crate::package::{self, PackageError};
use crate::web::ApiContext;
use crate::workflow::Role;

fn zip(name: &str, bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "private, no-store".to_string()),
        ],
        bytes,
    )
        .into_response()
}

/// `GET /console/cases/{id}/package.zip`.
pub async fn case_package(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    viewer.require(&[Role::Police, Role::Supervisor, Role::Auditor])?;
    let lang = viewer.lang;
    let ic = ctx.ingestor.context();
    let bytes = match package::build(&ic.db, &ic.evidence, &id, &ctx.server_key).await {
        Ok(b) => b,
        Err(PackageError::NotFound(what)) => return Err(ConsoleError::NotFound(lang, what)),
        // A corrupt or missing file must stop the export loudly.
        Err(
            e @ (PackageError::EvidenceCorrupt { .. }
            | PackageError::EvidenceMissing { .. }
            | PackageError::ManifestMismatch { .. }
            | PackageError::RecordAltered { .. }),
        ) => {
            tracing::error!(case = %id, error = %e, "evidence package refused");
            return Err(ConsoleError::Refused(lang, e.to_string()));
        }
        Err(e) => return Err(ConsoleError::Internal(lang, e.to_string())),
    };
    audit::record(
        &ic.db,
        now_ms(),
        &viewer.who(),
        "case.export_package",
        &format!("case:{id}"),
        &serde_json::json!({"zip_sha256": hex::encode(Sha256::digest(&bytes)), "bytes": bytes.len()}),
    )
    .await
    .map_err(|e| ConsoleError::Internal(lang, e.to_string()))?;
    Ok(zip(&format!("ho-so-{id}.zip"), bytes))
}

/// `GET /console/export/labels.zip`.
pub async fn labels(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
) -> Result<Response, ConsoleError> {
    viewer.require(&[Role::Supervisor, Role::Auditor])?;
    let lang = viewer.lang;
    let ic = ctx.ingestor.context();
    let (bytes, report) = crate::labels::export_zip_report(&ic.db, &ic.evidence)
        .await
        .map_err(|e| ConsoleError::Internal(lang, e.to_string()))?;
    audit::record(
        &ic.db,
        now_ms(),
        &viewer.who(),
        "labels.export",
        "labels",
        &serde_json::json!({"written": report.written, "corrected": report.corrected, "skipped": report.skipped.len(),
            "zip_sha256": hex::encode(Sha256::digest(&bytes))}),
    )
    .await
    .map_err(|e| ConsoleError::Internal(lang, e.to_string()))?;
    Ok(zip("plate-labels.zip", bytes))
}
