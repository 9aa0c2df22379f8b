//! The files of a case as the console serves them: its evidence (stills,
//! clip), by the hash in the signed manifest (`integrity::manifest_file`)
//! and checked against it on the way out, and a photo the owner
//! sent with a contest. Every read is audited (`console.evidence.read`,
//! `contest.photo_view`), and nothing in a file runs in the browser
//! (`nosniff`, a sandboxing content security policy).

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use sqlx::Row;

use super::{ConsoleError, Viewer};
use crate::audit;
use crate::db::now_ms;
use crate::integrity::FileRefusal;
use crate::web::ApiContext;
use crate::workflow::Role;

/// `GET /console/cases/{id}/contest-photo/{sha256}`: a photo the owner sent
/// with a contest of this case.
pub async fn contest_photo(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
    Path((id, sha)): Path<(String, String)>,
) -> Result<Response, ConsoleError> {
    viewer.require(&[Role::Police, Role::Auditor])?;
    let lang = viewer.lang;
    let ic = ctx.ingestor.context();
    audit::record(
        &ic.db,
        now_ms(),
        &viewer.who(),
        "contest.photo_view",
        &format!("case:{id}"),
        &serde_json::json!({"sha256": sha}),
    )
    .await
    .map_err(|e| ConsoleError::Internal(lang, e.to_string()))?;
    let row =
        sqlx::query("SELECT photo_type FROM contests WHERE event_id = $1 AND photo_sha256 = $2")
            .bind(&id)
            .bind(&sha)
            .fetch_optional(ic.db.pool())
            .await
            .map_err(|e| ConsoleError::Internal(lang, e.to_string()))?
            .ok_or_else(|| ConsoleError::NotFound(lang, format!("{id}/{sha}")))?;
    let media: Option<String> = row
        .try_get(0)
        .map_err(|e| ConsoleError::Internal(lang, e.to_string()))?;
    let bytes = ic
        .evidence
        .get(&sha)
        .await
        .map_err(|e| ConsoleError::Internal(lang, e.to_string()))?;
    // Shown in the page only when its header says a size the browser can
    // decode without harm (the upload checks it too; a photo stored before
    // that check is a download, never decoded inline).
    let inline = crate::citizen::photo_dimensions(&bytes)
        .is_some_and(crate::citizen::dimensions_allowed)
        && matches!(media.as_deref(), Some("image/jpeg" | "image/png"));
    let (media, disposition) = match media {
        Some(m) if inline => (m, "inline"),
        _ => (
            "application/octet-stream".to_string(),
            "attachment; filename=\"contest-photo\"",
        ),
    };
    Ok((
        [
            (header::CONTENT_TYPE, media),
            (header::CONTENT_DISPOSITION, disposition.to_string()),
            (
                header::HeaderName::from_static("x-content-type-options"),
                "nosniff".to_string(),
            ),
            // Whatever type a device declared, nothing in it runs here.
            (
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'".to_string(),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /console/cases/{id}/evidence/{name}`: one evidence file, checked
/// against its hash on the way out.
pub async fn evidence(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ConsoleError> {
    viewer.require(&[
        Role::Operator,
        Role::Supervisor,
        Role::Police,
        Role::Auditor,
    ])?;
    let lang = viewer.lang;
    let ic = ctx.ingestor.context();
    if viewer.session.user.role == Role::Operator {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM events WHERE event_id = $1")
                .bind(&id)
                .fetch_optional(ic.db.pool())
                .await
                .map_err(|e| ConsoleError::Internal(lang, e.to_string()))?;
        let seen = state.as_deref().and_then(crate::workflow::CaseState::parse);
        if !seen.is_some_and(|s| super::case_page::operator_may_see(Role::Operator, s)) {
            return Err(ConsoleError::NotFound(lang, format!("{id}/{name}")));
        }
    }
    // By the hash the device signed, not the evidence row's copy of it:
    // a row pointed at other stored bytes is refused, logged and audited.
    let file = match crate::integrity::manifest_file(&ic.db, &id, &name).await {
        Ok(f) => f,
        Err(FileRefusal::NotFound) => {
            return Err(ConsoleError::NotFound(lang, format!("{id}/{name}")));
        }
        Err(FileRefusal::Db(e)) => return Err(ConsoleError::Internal(lang, e.to_string())),
        Err(FileRefusal::Mismatch(why)) => {
            crate::integrity::record_mismatch(&ic.db, &viewer.who(), &id, &name, &why).await;
            return Err(ConsoleError::Internal(
                lang,
                format!(
                    "{}: {why}",
                    lang.t(
                        "Lỗi toàn vẹn bằng chứng: tệp không khớp với danh mục thiết bị đã ký",
                        "Evidence integrity error: the file does not match the signed manifest"
                    )
                ),
            ));
        }
    };
    let (sha, media) = (file.sha256, file.media_type);
    // Every read of evidence through the console is audited, as the API's
    // (`api.evidence.read`): pictures of a vehicle and its plate are
    // personal data.
    audit::record(
        &ic.db,
        now_ms(),
        &viewer.who(),
        "console.evidence.read",
        &format!("case:{id}"),
        &serde_json::json!({"name": name, "sha256": sha}),
    )
    .await
    .map_err(|e| ConsoleError::Internal(lang, e.to_string()))?;
    let bytes = ic
        .evidence
        .get(&sha)
        .await
        .map_err(|e| ConsoleError::Internal(lang, format!("evidence {sha}: {e}")))?;
    let media = if media.is_empty() {
        "application/octet-stream".to_string()
    } else {
        media
    };
    Ok((
        [
            (header::CONTENT_TYPE, media),
            (header::CACHE_CONTROL, "private, no-store".to_string()),
            (
                header::HeaderName::from_static("x-content-type-options"),
                "nosniff".to_string(),
            ),
            // Whatever type a device declared, nothing in it runs here.
            (
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'".to_string(),
            ),
        ],
        bytes,
    )
        .into_response())
}
