//! The owner's answers to a notice: accepting the violation, and
//! contesting it with a reason and an optional photo.
//!
//! Accepting records that the owner does not dispute the violation; it is
//! not a response that stops the 20-day clock (Circular 73/2024/TT-BCA,
//! Art. 24): the fine must still be paid by the deadline, and the page says
//! so with the date. Contesting follows one rule, shared with the page that
//! offers the form ([`super::mine::MyCase::contest_open`]): only while the
//! notice stands, unanswered, and not past its deadline (end of the 20th
//! day, Vietnam time); a contest after it is refused.
//!
//! A contest photo is checked before anything is stored: JPEG or PNG by its
//! first bytes, at most [`MAX_PHOTO`] bytes (a larger body is answered 413
//! with "Ảnh quá lớn"), and at most [`MAX_SIDE`] pixels a side and
//! [`MAX_PIXELS`] in all, read from the header alone ([`photo_dimensions`]),
//! so that a small file that would decode into gigabytes never reaches the
//! police console.

use axum::Form;
use axum::extract::multipart::MultipartError;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::mine::{MyCase, citizen_actor_id, one};
use super::pages::CsrfForm;
use super::{AppError, Citizen};
use crate::audit::{self, Who};
use crate::console::html::{local_time, vnd};
use crate::db::now_ms;
use crate::review::Reviewer;
use crate::web::ApiContext;
use crate::workflow::{Actor, Role};

/// Longest contest reason: what the workflow keeps as the reason of a
/// state change (`review.rs`), so the form may not promise more.
const MAX_CONTEST_REASON: usize = 1000;

/// Largest contest photo accepted (5 MiB).
pub(crate) const MAX_PHOTO: usize = 5 * 1024 * 1024;
/// Largest side of a contest photo, in pixels.
pub const MAX_SIDE: u32 = 8000;
/// Largest contest photo in pixels (40 megapixels).
pub const MAX_PIXELS: u64 = 40_000_000;

/// The width and height of a JPEG or PNG, read from its header only
/// (nothing is decoded: PNG's IHDR, JPEG's first frame header); `None`
/// when the header cannot be read.
pub fn photo_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let be16 = |i: usize| {
        Some(u32::from(u16::from_be_bytes([
            *bytes.get(i)?,
            *bytes.get(i + 1)?,
        ])))
    };
    let be32 = |i: usize| Some(u32::from_be_bytes(bytes.get(i..i + 4)?.try_into().ok()?));
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        // The first chunk must be IHDR: width, height.
        return (bytes.get(12..16)? == b"IHDR").then_some((be32(16)?, be32(20)?));
    }
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return None;
        }
        let marker = bytes[i + 1];
        match marker {
            // Fill bytes, and markers without a length.
            0xFF => {
                i += 1;
                continue;
            }
            0x01 | 0xD0..=0xD7 => {
                i += 2;
                continue;
            }
            // Start of a frame (baseline, progressive, lossless,
            // arithmetic; not DHT C4, JPG C8, DAC CC): height, width.
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                return Some((be16(i + 7)?, be16(i + 5)?));
            }
            // Start of scan or end of image before any frame header.
            0xDA | 0xD9 => return None,
            _ => i += 2 + usize::try_from(be16(i + 2)?).ok()?,
        }
    }
    None
}

/// Whether a photo of these dimensions is small enough to show.
pub fn dimensions_allowed((w, h): (u32, u32)) -> bool {
    w > 0 && h > 0 && w <= MAX_SIDE && h <= MAX_SIDE && u64::from(w) * u64::from(h) <= MAX_PIXELS
}

/// What the page says once the owner has accepted: the fine must still be
/// paid, by when.
pub(super) fn accepted_note(c: &MyCase) -> String {
    let amount = c.amount.map(vnd).unwrap_or_default();
    match c.deadline() {
        Some(d) => format!(
            "Bạn đã xác nhận vi phạm. Xác nhận không thay cho việc nộp phạt: bạn vẫn phải nộp \
             phạt {amount} chậm nhất đến {}. Quá thời hạn này mà chưa nộp, phương tiện sẽ bị \
             cảnh báo tới cơ quan đăng kiểm.",
            local_time(d)
        ),
        None => format!(
            "Bạn đã xác nhận vi phạm. Xác nhận không thay cho việc nộp phạt: bạn vẫn phải nộp \
             phạt {amount}."
        ),
    }
}

/// `POST /app/cases/{id}/accept`: the owner accepts the violation. The
/// 20-day clock runs on: the fine is still to be paid by the deadline.
pub async fn accept(
    State(ctx): State<ApiContext>,
    citizen: Citizen,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, AppError> {
    citizen.check_csrf(f.csrf())?;
    let db = &ctx.ingestor.context().db;
    let c = one(db, &citizen, &id).await?;
    match c.response.as_deref() {
        Some("accepted") => return Err(AppError::Refused(accepted_note(&c))),
        Some(_) => {
            return Err(AppError::Refused(
                "Bạn đã khiếu nại vụ việc này; không thể xác nhận vi phạm.".into(),
            ));
        }
        None => {}
    }
    if !c.payable() {
        return Err(AppError::Refused(
            "Vụ việc này chưa thể xác nhận ở trạng thái hiện tại.".into(),
        ));
    }
    let now = now_ms();
    let mut tx = audit::begin(db).await?;
    // As read above, under the case lock: still unanswered and payable (a
    // contest, a payment or a withdrawal since is not overwritten).
    let done = sqlx::query(
        "UPDATE events SET owner_response = 'accepted', owner_response_at = $1 \
         WHERE event_id = $2 AND owner_response IS NULL AND state IN ('notice_issued', 'overdue')",
    )
    .bind(now)
    .bind(&id)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        return Err(AppError::Refused(
            "Vụ việc này vừa thay đổi (đã được trả lời, nộp phạt hoặc thu hồi); vui lòng tải lại \
             trang."
                .into(),
        ));
    }
    audit::append(
        &mut tx,
        now,
        &Who::new(citizen_actor_id(&citizen), Role::System),
        "citizen.accept",
        &format!("case:{id}"),
        &serde_json::json!({"owner_id": c.owner_id}),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/app/cases/{id}")).into_response())
}

/// A form that could not be read: a body over the limit is the photo
/// being too large; anything else the form being broken, said in
/// Vietnamese (the parser's own words are logged, not shown).
fn form_error(e: &MultipartError) -> AppError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::TooLarge
    } else {
        tracing::info!(error = %e, "citizen contest form unreadable");
        AppError::Refused("Biểu mẫu bị lỗi hoặc gửi chưa hết. Vui lòng gửi lại.".into())
    }
}

/// Why the page refuses a contest the rule does not allow.
fn contest_refusal(c: &MyCase) -> AppError {
    let why = match (c.state.as_str(), c.response.as_deref()) {
        (_, Some("accepted")) => "Bạn đã xác nhận vi phạm này nên không thể khiếu nại.".to_string(),
        ("overdue", _) => {
            "Đã quá thời hạn khiếu nại trực tuyến của vụ việc này. Vui lòng nộp phạt hoặc liên \
             hệ trực tiếp cơ quan Công an nơi xử lý vi phạm."
                .to_string()
        }
        ("notice_issued", None) => match c.deadline() {
            Some(d) => format!(
                "Đã quá thời hạn khiếu nại trực tuyến (đến {}). Vui lòng nộp phạt hoặc liên hệ \
                 trực tiếp cơ quan Công an nơi xử lý vi phạm.",
                local_time(d)
            ),
            None => "Vụ việc này không thể khiếu nại ở trạng thái hiện tại.".to_string(),
        },
        _ => "Vụ việc này không thể khiếu nại ở trạng thái hiện tại.".to_string(),
    };
    AppError::Refused(why)
}

/// `POST /app/cases/{id}/contest` (multipart: csrf, reason, optional photo):
/// the case goes back to police, who answer in the console.
pub async fn contest(
    State(ctx): State<ApiContext>,
    citizen: Citizen,
    Path(id): Path<String>,
    mut form: Multipart,
) -> Result<Response, AppError> {
    let (mut csrf, mut reason, mut photo) =
        (String::new(), String::new(), None::<(Vec<u8>, String)>);
    while let Some(field) = form.next_field().await.map_err(|e| form_error(&e))? {
        let name = field.name().unwrap_or("").to_string();
        let data = field.bytes().await.map_err(|e| form_error(&e))?;
        match name.as_str() {
            "csrf" => csrf = String::from_utf8_lossy(&data).into_owned(),
            "reason" => reason = String::from_utf8_lossy(&data).trim().to_string(),
            "photo" if !data.is_empty() => {
                if data.len() > MAX_PHOTO {
                    return Err(AppError::TooLarge);
                }
                let kind = match (data.get(..3), data.get(..8)) {
                    (Some([0xFF, 0xD8, 0xFF]), _) => "image/jpeg",
                    (_, Some(b"\x89PNG\r\n\x1a\n")) => "image/png",
                    _ => return Err(AppError::Refused("Ảnh phải là JPEG hoặc PNG.".into())),
                };
                match photo_dimensions(&data) {
                    Some(d) if dimensions_allowed(d) => {}
                    Some(_) => {
                        return Err(AppError::Refused(format!(
                            "Ảnh có kích thước quá lớn (tối đa {MAX_SIDE} điểm ảnh mỗi chiều \
                             và {} triệu điểm ảnh). Vui lòng chụp lại hoặc thu nhỏ ảnh.",
                            MAX_PIXELS / 1_000_000
                        )));
                    }
                    None => {
                        return Err(AppError::Refused(
                            "Không đọc được ảnh. Ảnh phải là JPEG hoặc PNG.".into(),
                        ));
                    }
                }
                photo = Some((data.to_vec(), kind.to_string()));
            }
            _ => {}
        }
    }
    citizen.check_csrf(&csrf)?;
    if reason.is_empty() || reason.chars().count() > MAX_CONTEST_REASON {
        return Err(AppError::Refused(
            "Vui lòng nêu lý do khiếu nại (tối đa 1000 ký tự).".into(),
        ));
    }
    let ic = ctx.ingestor.context();
    let c = one(&ic.db, &citizen, &id).await?;
    // One answer per notice, within its deadline: the rule the page offers
    // the form by.
    if !c.contest_open(now_ms()) {
        return Err(contest_refusal(&c));
    }
    // Nor is a fine being paid, or paid: the money would arrive for a
    // contested case (or stay with a cancelled one). A payment still
    // pending after its order expired may yet complete at the bank: it
    // counts until the reconciler settles it, or for an hour past expiry.
    let paying: Option<String> = sqlx::query_scalar(
        "SELECT state FROM payments WHERE event_id = $1 AND (state IN ('paid', $3) \
         OR (state = 'pending' AND expires_at >= $2)) LIMIT 1",
    )
    .bind(&id)
    .bind(now_ms().saturating_sub(crate::payments::PENDING_GRACE_MS))
    .bind(crate::payments::NEEDS_PERSON)
    .fetch_optional(ic.db.pool())
    .await?;
    if let Some(state) = paying {
        return Err(AppError::Refused(match state.as_str() {
            "paid" => "Phạt tiền của vụ việc này đã được nộp: không thể khiếu nại.".into(),
            "pending" => {
                "Vụ việc này đang được thanh toán: vui lòng chờ kết quả thanh toán rồi thử lại."
                    .into()
            }
            _ => "Cổng thanh toán đã báo nhận (hoặc có thể đã nhận) tiền nộp phạt của vụ việc \
                  này; cán bộ đang kiểm tra khoản tiền đó. Không thể khiếu nại trong thời gian \
                  này; nếu cần, liên hệ cơ quan xử lý vi phạm."
                .into(),
        }));
    }
    let stored = match &photo {
        Some((bytes, kind)) => Some((
            ic.evidence
                .put(bytes::Bytes::from(bytes.clone()))
                .await
                .map_err(|e| AppError::Internal(e.to_string()))?,
            kind.clone(),
        )),
        None => None,
    };
    let now = now_ms();
    let reviewer = Reviewer {
        db: &ic.db,
        grammar: ic.grammar,
        fines: &ic.fines,
        registry: ic.registry.as_deref(),
    };
    let actor = Actor {
        id: citizen_actor_id(&citizen),
        role: Role::System,
    };
    // The contest row, the case's change and the owner's answer commit
    // together: a contested case always has its reason, and a refused
    // contest leaves nothing behind. The owner's words are personal data:
    // they stay in `contests` (shown to the police and auditors in the
    // contest panel, each view logged). The case's history and the audit
    // log, which supervisors and admins read and the court package copies,
    // name the contest, not its text.
    let contest_id = uuid::Uuid::new_v4().to_string();
    let recorded: Result<(), AppError> = async {
        let mut tx = audit::begin(&ic.db).await?;
        sqlx::query(
            "INSERT INTO contests (id, event_id, owner_id, reason, photo_sha256, photo_type, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&contest_id)
        .bind(&id)
        .bind(&c.owner_id)
        .bind(&reason)
        .bind(stored.as_ref().map(|s| s.0.clone()))
        .bind(stored.as_ref().map(|s| s.1.clone()))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let reference = format!("contest {contest_id}");
        reviewer
            .contest_in(&mut tx, &id, &actor, &reference, now)
            .await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    // A refused contest's photo is named by nothing: it goes, unless the
    // same bytes back something else (content-addressed store).
    if let (Err(_), Some((digest, _))) = (&recorded, &stored)
        && let Err(e) = crate::retention::remove_unreferenced(&ic.db, &ic.evidence, digest).await
    {
        tracing::warn!(error = %e, "contest refused: its photo could not be deleted");
    }
    recorded?;
    Ok(Redirect::to(&format!("/app/cases/{id}")).into_response())
}
