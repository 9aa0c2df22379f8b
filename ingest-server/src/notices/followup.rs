//! Messages to an owner after the fine notice, through the notice's own
//! outbox and channels: the contest was not accepted (police upheld the
//! fine: [`contest_rejected`], with the officer's reason and the new
//! deadline to respond, the one the 20-day check then enforces, counted
//! from when the answer reached the owner: an answer no channel can carry
//! is posted by a person, `paper::record_paper_answer`), or the fine was
//! withdrawn ([`withdrawn`], with the reason).
//!
//! A message is a row of `notice_messages` (migration 0020) and one
//! delivery per channel and target in `notice_deliveries`, with
//! `message_id` set and an idempotency key of its own; both are written in
//! the transaction that moves the case (`review::Reviewer::act`), as the
//! notice is with the confirmation. The worker (`super::Notices`) sends
//! them like the notice's deliveries, but never moves the case on their
//! account, and never moves the notice's deadline.
//!
//! Who is told: the owner the notice was addressed to (`notices.owner_id`).
//! A notice that names nobody has no one to tell; a withdrawal tells the
//! owner only if the notice may have reached them (issued, a delivery
//! sent, or one being sent right now), and drops every delivery not sent
//! or in flight.

use sqlx::{Any, Row, Transaction};

use super::outbox::{OwnerRow, add_deliveries};
use super::text::{
    NoticeFacts, NoticeText, case_url, colour_text, date, datetime, grouped, vehicle_text,
    violation_text,
};
use crate::db::{Db, DbError};

/// Kind of a message telling the owner that police upheld the fine after
/// their contest.
pub const CONTEST_REJECTED: &str = "contest_rejected";
/// Kind of a message telling the owner that the fine was withdrawn.
pub const WITHDRAWN: &str = "withdrawn";

/// A message about a fine, as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Message {
    /// Row id (the deliveries' `message_id`).
    pub message_id: String,
    /// [`CONTEST_REJECTED`] or [`WITHDRAWN`].
    pub kind: String,
    /// The officer's reason, told to the owner.
    pub reason: String,
    /// The new deadline to respond (contest not accepted), Unix ms.
    pub respond_by: Option<i64>,
    /// When it was written, Unix ms.
    pub created_at: i64,
}

/// Reads one message.
pub async fn load(db: &Db, message_id: &str) -> Result<Option<Message>, DbError> {
    let row = sqlx::query(
        "SELECT message_id, kind, reason, respond_by, created_at FROM notice_messages \
         WHERE message_id = $1",
    )
    .bind(message_id)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        Ok(Message {
            message_id: r.try_get(0)?,
            kind: r.try_get(1)?,
            reason: r.try_get(2)?,
            respond_by: r.try_get(3)?,
            created_at: r.try_get(4)?,
        })
    })
    .transpose()
}

/// Tells the owner of case `event_id` that their contest was not accepted
/// (police upheld the fine at `now`, for `reason`), with the new deadline:
/// [`super::deadlines::effective_deadline`] of the notice's date and
/// `now`, the time the case enters `notice_issued` again. Returns the
/// message id and how many deliveries were written for it (0: no channel
/// reaches the owner, and the answer is for a person to post:
/// `paper::answers_needing_paper`), `None` when the notice names no owner.
pub async fn contest_rejected(
    tx: &mut Transaction<'static, Any>,
    event_id: &str,
    reason: &str,
    now: i64,
) -> Result<Option<(String, usize)>, DbError> {
    let Some(n) = addressed_notice(tx, event_id).await? else {
        return Ok(None);
    };
    let deadline = super::deadlines::effective_deadline(n.respond_by, now);
    let written = write(
        tx,
        &n,
        event_id,
        CONTEST_REJECTED,
        reason,
        Some(deadline),
        now,
    )
    .await?;
    Ok(Some(written))
}

/// What withdrawing a fine did to its notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Withdrawal {
    /// Deliveries not yet sent (nor in flight) that were dropped.
    pub dropped: u64,
    /// Whether a message tells the owner the fine was withdrawn.
    pub told: bool,
    /// Whether a live warning to the inspection register was withdrawn.
    pub warning_withdrawn: bool,
    /// A message for the owner was written but no channel carries it: a
    /// person posts it (`paper::answers_needing_paper`).
    pub paper_needed: bool,
}

/// The fine of case `event_id` was withdrawn at `now` for `reason`: drops
/// the deliveries not sent and not in flight (`dropped`, the reason in
/// `last_error`), withdraws a live warning to the inspection register
/// (row kept, `withdrawn_reason`), and tells the owner if the notice may
/// have reached them (issued, a delivery sent or under way, or the owner
/// answered it: accepted or contested).
pub async fn withdrawn(
    tx: &mut Transaction<'static, Any>,
    event_id: &str,
    reason: &str,
    now: i64,
) -> Result<Withdrawal, DbError> {
    let reached: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM notices n WHERE n.event_id = $1 AND (n.issued_at IS NOT NULL \
         OR EXISTS (SELECT 1 FROM events e WHERE e.event_id = n.event_id \
          AND e.owner_response IS NOT NULL) \
         OR EXISTS (SELECT 1 FROM notice_deliveries d WHERE d.notice_id = n.notice_id \
         AND (d.state = 'sent' OR (d.state IN ('pending', 'failed') AND d.lease_until > $2))))",
    )
    .bind(event_id)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    let dropped = sqlx::query(
        "UPDATE notice_deliveries SET state = 'dropped', last_error = $1 \
         WHERE event_id = $2 AND state IN ('pending', 'failed') \
         AND (lease_until IS NULL OR lease_until <= $3)",
    )
    .bind(format!("not sent: the fine was withdrawn ({reason})"))
    .bind(event_id)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let warning = sqlx::query(
        "UPDATE inspection_warnings SET withdrawn_at = $1, withdrawn_reason = $2 \
         WHERE event_id = $3 AND withdrawn_at IS NULL",
    )
    .bind(now)
    .bind(format!("the fine was withdrawn: {reason}"))
    .bind(event_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let (mut told, mut paper_needed) = (false, false);
    if reached > 0
        && let Some(n) = addressed_notice(tx, event_id).await?
    {
        let deliveries = write(tx, &n, event_id, WITHDRAWN, reason, None, now)
            .await?
            .1;
        told = deliveries > 0;
        paper_needed = deliveries == 0;
    }
    Ok(Withdrawal {
        dropped,
        told,
        warning_withdrawn: warning > 0,
        paper_needed,
    })
}

/// The notice of a case and the owner it was addressed to.
struct Addressed {
    notice_id: String,
    respond_by: i64,
    plate: String,
    owner: OwnerRow,
}

async fn addressed_notice(
    tx: &mut Transaction<'static, Any>,
    event_id: &str,
) -> Result<Option<Addressed>, DbError> {
    let row = sqlx::query(
        "SELECT n.notice_id, n.respond_by, COALESCE(e.reviewed_plate, e.plate_text, ''), \
         o.owner_id, o.national_id, o.email FROM notices n \
         JOIN events e ON e.event_id = n.event_id \
         LEFT JOIN owners o ON o.owner_id = n.owner_id \
         WHERE n.event_id = $1 AND n.owner_id IS NOT NULL",
    )
    .bind(event_id)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| {
        Ok(Addressed {
            notice_id: r.try_get(0)?,
            respond_by: r.try_get(1)?,
            plate: r.try_get(2)?,
            owner: OwnerRow {
                found: r.try_get::<Option<String>, _>(3)?.is_some(),
                national_id: r.try_get(4)?,
                email: r.try_get(5)?,
            },
        })
    })
    .transpose()
}

async fn write(
    tx: &mut Transaction<'static, Any>,
    n: &Addressed,
    event_id: &str,
    kind: &str,
    reason: &str,
    respond_by: Option<i64>,
    now: i64,
) -> Result<(String, usize), DbError> {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO notice_messages (message_id, notice_id, event_id, kind, reason, respond_by, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(&n.notice_id)
    .bind(event_id)
    .bind(kind)
    .bind(reason)
    .bind(respond_by)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let deliveries = add_deliveries(
        tx,
        &n.notice_id,
        Some(&id),
        event_id,
        &n.plate,
        &n.owner,
        now,
    )
    .await?;
    Ok((id, deliveries))
}

/// The webhook `type` of a message (`contest_rejected`, `fine_withdrawn`).
pub fn webhook_type(m: &Message) -> &'static str {
    if m.kind == WITHDRAWN {
        "fine_withdrawn"
    } else {
        "contest_rejected"
    }
}

/// Renders a message about the fine of `f`, like `text::render` renders
/// the notice: the same facts, the officer's reason, and for a contest not
/// accepted the new deadline. `addressee` is the owner's name (e-mail only).
pub fn render(
    f: &NoticeFacts,
    m: &Message,
    authority: &str,
    base_url: &str,
    addressee: Option<&str>,
) -> NoticeText {
    let url = case_url(base_url, &f.event_id);
    let when = datetime(f.detected_at);
    let amount = f.amount_vnd.map_or_else(
        || "theo quyết định xử phạt".to_string(),
        |a| format!("{} đồng", grouped(a)),
    );
    let greeting = match addressee {
        Some(name) => format!(
            "Kính gửi Ông/Bà {name}, chủ phương tiện mang biển số {}.",
            f.plate_display
        ),
        None => format!("Kính gửi chủ phương tiện mang biển số {}.", f.plate_display),
    };
    let facts = [
        format!(
            "- Phương tiện: {}, biển số {} ({})",
            vehicle_text(&f.vehicle_class),
            f.plate_display,
            colour_text(&f.plate_colour)
        ),
        format!("- Thời gian vi phạm: {when} (giờ Việt Nam)"),
        format!("- Địa điểm: {}", f.place),
        format!("- Hành vi vi phạm: {}", violation_text(&f.violation)),
        format!("- Mức phạt: {amount}"),
        format!("- Mã vụ việc: {}", f.event_id),
    ];
    let reason = m.reason.trim();
    let (title, heading, lead, after, short) = if m.kind == WITHDRAWN {
        (
            format!("Huỷ thông báo vi phạm giao thông: xe {}", f.plate_display),
            "THÔNG BÁO HUỶ BỎ THÔNG BÁO VI PHẠM GIAO THÔNG",
            format!(
                "{authority} thông báo: việc xử phạt đối với vụ vi phạm dưới đây đã được huỷ bỏ. \
                 Chủ phương tiện không phải nộp phạt và không cần làm gì thêm đối với thông báo \
                 trước đó."
            ),
            format!("- Lý do huỷ bỏ: {reason}"),
            format!(
                "Xe {}: thông báo vi phạm lúc {when} đã được huỷ bỏ, không phải nộp phạt. Lý do: \
                 {reason}.",
                f.plate_display
            ),
        )
    } else {
        let deadline = date(m.respond_by.unwrap_or(f.respond_by));
        (
            format!("Khiếu nại không được chấp nhận: xe {}", f.plate_display),
            "THÔNG BÁO KẾT QUẢ GIẢI QUYẾT KHIẾU NẠI",
            format!(
                "{authority} đã xem xét khiếu nại của chủ phương tiện về vụ vi phạm dưới đây: \
                 khiếu nại không được chấp nhận, giữ nguyên việc xử phạt."
            ),
            format!(
                "- Lý do: {reason}\n\nThời hạn mới: chậm nhất đến hết ngày {deadline}, đề nghị \
                 chủ phương tiện nộp phạt hoặc đến trụ sở {authority} để giải quyết. Quá thời \
                 hạn này mà không giải quyết, phương tiện sẽ được thông báo đến cơ quan đăng \
                 kiểm để cảnh báo (Điều 24 Thông tư 73/2024/TT-BCA)."
            ),
            format!(
                "Xe {}: khiếu nại không được chấp nhận. Lý do: {reason}. Hạn giải quyết mới: \
                 {deadline}.",
                f.plate_display
            ),
        )
    };
    let mut body = vec![heading.to_string(), String::new(), greeting, String::new()];
    body.push(lead);
    body.push(String::new());
    body.extend(facts);
    body.push(after);
    body.extend([
        String::new(),
        format!("Xem chi tiết vụ việc: {url}"),
        String::new(),
        "Lưu ý: thông báo được gửi tự động từ hệ thống; cơ quan chức năng không bao giờ yêu cầu \
         chuyển tiền vào tài khoản cá nhân hay cung cấp mật khẩu, mã OTP."
            .to_string(),
    ]);
    NoticeText {
        title,
        body: body.join("\n"),
        short,
        url,
    }
}
