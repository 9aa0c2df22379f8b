//! The owner's side of a case page: the case's owner and the vehicle
//! record (personal data: each view goes to `registry_access_log` and the
//! audit log), the owner lookup's status, and whether the case has an owner
//! its notice can go to; and the owner's contests.
//!
//! The owner shown is the case's own (`events.owner_id`, the person its
//! notice goes to), read from our copy of the registry: never a fresh
//! lookup of the plate, which after a transfer or a re-import would show
//! police someone else (and read a third person's data against a case not
//! about them). Only a case without an owner is looked up afresh, and the
//! panel says so: that person is not on the case and gets no notice.

use std::fmt::Write;

use sqlx::Row;

use super::Viewer;
use super::case_page::CaseDetail;
use super::html::{Lang, esc, local_time};
use crate::audit;
use crate::db::{Db, DbError, now_ms};
use crate::registry::{
    AccessOutcome, Owner, Purpose, RESOLVED, Registration, RegistryError, Vehicle, log_access,
};
use crate::web::ApiContext;
use crate::workflow::CaseState;

/// The owner shown beside a case.
#[derive(Debug, Clone)]
pub enum CaseOwner {
    /// The case's own owner (`events.owner_id`), with the plate's vehicle
    /// record if there is one; `moved`: that record now names another
    /// owner (transferred, or re-imported since the case was resolved).
    OfCase {
        owner: Owner,
        vehicle: Option<Vehicle>,
        moved: bool,
    },
    /// The case's owner id names no owner we hold any more.
    Missing { owner_id: String },
    /// The case has no owner: a lookup of its plate made for this view,
    /// not recorded on the case.
    Fresh(Option<Registration>),
}

fn registry_db(e: RegistryError) -> DbError {
    match e {
        RegistryError::Db(d) => d,
        other => DbError::Sqlx(sqlx::Error::Protocol(other.to_string())),
    }
}

/// The owner of a case for a police officer or auditor (see the module
/// documentation): logged in `registry_access_log` under the viewer's id
/// and in the audit log (`owner.view`).
pub async fn owner_for(
    ctx: &ApiContext,
    viewer: &Viewer,
    case: &CaseDetail,
) -> Result<CaseOwner, DbError> {
    let ic = ctx.ingestor.context();
    let db = &ic.db;
    let plate = case.plate().unwrap_or("");
    let role = viewer.session.user.role;
    let mut purpose = Purpose {
        actor: viewer.session.user.user_id.clone(),
        reason: format!("{role} reviewing the case in the console: the case's owner of record"),
        event_id: uuid::Uuid::parse_str(&case.event_id).ok(),
    };
    let (shown, source, found) = match &case.owner_id {
        Some(owner_id) => {
            let shown = of_case(db, owner_id, plate).await?;
            let found = matches!(shown, CaseOwner::OfCase { .. });
            let outcome = if found {
                AccessOutcome::Found
            } else {
                AccessOutcome::NotFound
            };
            log_access(db, plate, &purpose, outcome)
                .await
                .map_err(registry_db)?;
            (shown, "case", found)
        }
        None => {
            purpose.reason = format!(
                "{role} reviewing the case in the console: the case has no owner, fresh lookup"
            );
            let found = match (ic.registry.as_ref(), case.plate()) {
                // By the number alone, as the case's own lookup: several
                // registrations show none (the status says why).
                (Some(registry), Some(plate)) => registry
                    .find(plate, &purpose)
                    .await
                    .map(|l| l.into_one())
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "owner lookup for the console failed");
                        None
                    }),
                _ => None,
            };
            let any = found.is_some();
            (CaseOwner::Fresh(found), "fresh_lookup", any)
        }
    };
    audit::record(
        db,
        now_ms(),
        &viewer.who(),
        "owner.view",
        &format!("case:{}", case.event_id),
        &serde_json::json!({"plate": plate, "found": found, "source": source}),
    )
    .await?;
    Ok(shown)
}

/// The owner `owner_id` from our tables, and the record of the vehicle
/// with `plate`, preferring the one registered to that owner. Not narrowed
/// by the camera's plate colour: the case was resolved by the number alone
/// (`registry::resolve`), and a white registration the camera called
/// yellow is still the vehicle of record.
async fn of_case(db: &Db, owner_id: &str, plate: &str) -> Result<CaseOwner, DbError> {
    let Some(o) = sqlx::query(
        "SELECT owner_id, full_name, national_id, address, email, vneid FROM owners \
         WHERE owner_id = $1",
    )
    .bind(owner_id)
    .fetch_optional(db.pool())
    .await?
    else {
        return Ok(CaseOwner::Missing {
            owner_id: owner_id.to_string(),
        });
    };
    let owner = Owner {
        owner_id: o.try_get(0)?,
        full_name: o.try_get(1)?,
        national_id: o.try_get(2)?,
        address: o.try_get(3)?,
        email: o.try_get(4)?,
        vneid: o.try_get(5)?,
    };
    let vehicle = sqlx::query(
        "SELECT plate_text, plate_colour, vehicle_type, make, colour, registration_status, \
         owner_id FROM vehicles WHERE plate_text = $1 \
         ORDER BY CASE WHEN owner_id = $2 THEN 0 ELSE 1 END, plate_colour LIMIT 1",
    )
    .bind(plate)
    .bind(owner_id)
    .fetch_optional(db.pool())
    .await?
    .map(|v| -> Result<Vehicle, sqlx::Error> {
        Ok(Vehicle {
            plate_text: v.try_get(0)?,
            plate_colour: v.try_get(1)?,
            vehicle_type: v.try_get(2)?,
            make: v.try_get(3)?,
            colour: v.try_get(4)?,
            registration_status: v.try_get(5)?,
            owner_id: v.try_get(6)?,
        })
    })
    .transpose()?;
    let moved = vehicle.as_ref().is_some_and(|v| v.owner_id != owner_id);
    Ok(CaseOwner::OfCase {
        owner,
        vehicle,
        moved,
    })
}

fn vehicle_line(lang: Lang, v: &Vehicle) -> String {
    format!(
        "{}: {} {} · {} · {}",
        lang.t("Xe", "Vehicle"),
        esc(&v.vehicle_type),
        esc(&v.make),
        esc(&v.colour),
        esc(&v.registration_status),
    )
}

fn moved_note(lang: Lang) -> &'static str {
    lang.t(
        "Đăng ký của biển số này hiện ghi một chủ khác (đã sang tên, hoặc dữ liệu đăng ký được nhập lại sau khi tra cứu); vụ việc vẫn thuộc chủ phương tiện ở trên.",
        "This plate's registration now names another owner (transferred, or re-imported since the lookup); the case stays with the owner above.",
    )
}

fn fresh_note(lang: Lang) -> String {
    format!(
        "<strong class=\"warn\" id=\"owner-fresh\">{}</strong>",
        lang.t(
            "Vụ việc chưa có chủ phương tiện được ghi nhận. Kết quả dưới đây là tra cứu mới theo biển số, chỉ để tham khảo: người này không được ghi vào vụ việc và không nhận thông báo.",
            "The case has no owner of record. Below is a fresh lookup of the plate, for reference only: this person is not on the case and gets no notice.",
        )
    )
}

/// The owner panel of a case page.
pub(super) fn owner_panel(lang: Lang, shown: &CaseOwner) -> String {
    let registered = |r_owner: &Owner, vehicle: Option<&Vehicle>, note: String| {
        format!(
            "<div class=\"panel pii\" id=\"owner\"><strong>{}</strong> <span class=\"muted\">({})</span><br>{note}\
             {}: {}<br>{}: {}<br>{}</div>",
            lang.t("Chủ phương tiện", "Registered owner"),
            lang.t("truy cập được ghi nhật ký", "access is logged"),
            lang.t("Họ tên", "Name"),
            esc(&r_owner.full_name),
            lang.t("Địa chỉ", "Address"),
            esc(&r_owner.address),
            vehicle.map(|v| vehicle_line(lang, v)).unwrap_or_default(),
        )
    };
    match shown {
        CaseOwner::OfCase {
            owner,
            vehicle,
            moved,
        } => {
            let note = if *moved {
                format!(
                    "<span class=\"muted\" id=\"owner-moved\">{}</span><br>",
                    moved_note(lang)
                )
            } else {
                String::new()
            };
            registered(owner, vehicle.as_ref(), note)
        }
        CaseOwner::Missing { owner_id } => format!(
            "<div class=\"panel pii\" id=\"owner\">{} ({})</div>",
            lang.t(
                "Chủ phương tiện của vụ việc không còn trong dữ liệu đăng ký",
                "The case's owner is no longer in the registry data"
            ),
            esc(owner_id)
        ),
        CaseOwner::Fresh(Some(r)) => registered(
            &r.owner,
            Some(&r.vehicle),
            format!("{}<br>", fresh_note(lang)),
        ),
        CaseOwner::Fresh(None) => format!(
            "<div class=\"panel pii\" id=\"owner\">{}<br>{}</div>",
            fresh_note(lang),
            lang.t(
                "Không tìm thấy chủ phương tiện trong cơ sở dữ liệu đăng ký.",
                "No registered owner found."
            )
        ),
    }
}

/// The owner in one cell of the confirmation list.
pub(super) fn owner_brief(lang: Lang, shown: &CaseOwner) -> String {
    match shown {
        CaseOwner::OfCase {
            owner,
            vehicle,
            moved,
        } => {
            let mut s = format!("{}<br>{}", esc(&owner.full_name), esc(&owner.address));
            if let Some(v) = vehicle {
                let _ = write!(
                    s,
                    "<br>{} {} · {}",
                    esc(&v.vehicle_type),
                    esc(&v.make),
                    esc(&v.colour)
                );
            }
            if *moved {
                let _ = write!(s, "<br><span class=\"muted\">{}</span>", moved_note(lang));
            }
            s
        }
        CaseOwner::Missing { .. } => lang
            .t(
                "Chủ phương tiện của vụ việc không còn trong dữ liệu đăng ký",
                "The case's owner is no longer in the registry data",
            )
            .to_string(),
        CaseOwner::Fresh(found) => {
            let mut s = fresh_note(lang);
            match found {
                Some(r) => {
                    let _ = write!(
                        s,
                        "<br>{}<br>{}",
                        esc(&r.owner.full_name),
                        esc(&r.owner.address)
                    );
                }
                None => {
                    let _ = write!(
                        s,
                        "<br>{}",
                        lang.t("Không tìm thấy chủ phương tiện", "No registered owner")
                    );
                }
            }
            s
        }
    }
}

/// The owner lookup's status for people: the ones that leave a case
/// without an owner to notify (`registry::deliverable_owner`) are spelled
/// out and marked.
pub(super) fn owner_status_label(lang: Lang, status: &str) -> String {
    let warn = |vi: &str, en: &str| format!("<strong class=\"warn\">{}</strong>", lang.t(vi, en));
    match status {
        "vehicle_mismatch" => warn(
            "đăng ký là loại xe khác với xe trong ảnh: biển có thể bị đọc sai hoặc bị làm giả",
            "registered to another kind of vehicle than the one seen: misread or cloned plate?",
        ),
        "vehicle_type_unknown" => warn(
            "không đọc được loại xe trong đăng ký: đối chiếu đăng ký với ảnh trước khi xử lý",
            "the registration's vehicle type could not be read: compare it with the stills",
        ),
        "registration_ambiguous" => warn(
            "số biển này được đăng ký nhiều lần (khác màu biển): màu biển do camera đoán không đủ để chọn chủ xe",
            "this number is registered more than once (different plate colours): the camera's colour guess cannot pick the owner",
        ),
        "registration_not_active" => warn(
            "đăng ký không còn hiệu lực (thu hồi, mất cắp, hết hạn)",
            "registration not active (deregistered, stolen, expired)",
        ),
        "error" => warn(
            "tra cứu chủ xe bị lỗi (hệ thống đăng ký không trả lời); hệ thống tự thử lại",
            "owner lookup failed (registry unavailable); retried automatically",
        ),
        "unresolved" => warn(
            "không tìm thấy đăng ký của biển số này",
            "no registration found for this plate",
        ),
        "pending" => warn("đang tra cứu chủ xe", "owner lookup under way"),
        other => esc(other),
    }
}

/// For a case about to be confirmed (`accepted`) or confirmed, whose
/// owner lookup is not [`RESOLVED`]: what confirming does (or did) to its
/// notice. `None` for other cases.
///
/// Confirming such a case is allowed (police may send a paper notice, or
/// the owner may be found later), but its notice is written without
/// deliveries: nobody is told automatically, the 10-day check flags it
/// (`notice_late_at`) and lists it among the late notices for a person to
/// send on paper. A lookup that failed or is under way is retried; a case
/// confirmed before it succeeds still gets no deliveries.
pub(super) fn notice_hold(lang: Lang, status: &str, state: CaseState) -> Option<String> {
    if status == RESOLVED {
        return None;
    }
    let retried = matches!(status, "error" | "pending");
    let text = match state {
        CaseState::Accepted => {
            let mut t = lang
                .t(
                    "Chưa có chủ phương tiện để gửi thông báo. Nếu xác nhận lúc này, thông báo được lập nhưng không gửi tự động cho ai: vụ việc bị đánh dấu quá hạn thông báo sau 10 ngày kể từ khi phát hiện và cần gửi thông báo giấy.",
                    "No owner to send the notice to. If confirmed now, the notice is written but sent to no one automatically: the case is flagged 10 days after detection and needs a paper notice.",
                )
                .to_string();
            if retried {
                t.push(' ');
                t.push_str(lang.t(
                    "Tra cứu chủ xe sẽ được thử lại: nên chờ kết quả rồi mới xác nhận.",
                    "The owner lookup is retried: better wait for it before confirming.",
                ));
            }
            t
        }
        CaseState::Confirmed => lang
            .t(
                "Thông báo không được gửi tự động: vụ việc không có chủ phương tiện đã xác định. Cần gửi thông báo giấy trong hạn 10 ngày kể từ khi phát hiện.",
                "The notice is not sent automatically: the case has no identified owner. A paper notice is needed within 10 days of detection.",
            )
            .to_string(),
        _ => return None,
    };
    Some(format!(
        "<div class=\"flash error\" id=\"owner-hold\">{}</div>",
        esc(&text)
    ))
}

/// The owner's contests of the case, with their photos.
pub(super) async fn contests_panel(lang: Lang, db: &Db, id: &str) -> Result<String, DbError> {
    let rows = sqlx::query(
        "SELECT created_at, reason, photo_sha256 FROM contests WHERE event_id = $1 ORDER BY created_at",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await?;
    if rows.is_empty() {
        return Ok(String::new());
    }
    let mut p = format!(
        "<div class=\"panel\" id=\"contests\"><strong>{}</strong>",
        lang.t("Khiếu nại của chủ xe", "Owner's contest")
    );
    for r in &rows {
        let at: i64 = r.try_get(0)?;
        let reason: String = r.try_get(1)?;
        let photo: Option<String> = r.try_get(2)?;
        let _ = write!(p, "<p>{} — {}</p>", local_time(at), esc(&reason));
        if let Some(sha) = photo {
            // The server serves it for inline display only when its header
            // gives a bounded size (`files::contest_photo`); otherwise it is
            // a download and the image shows nothing.
            let _ = write!(
                p,
                "<a href=\"/console/cases/{id}/contest-photo/{sha}\"><img style=\"max-width:100%\" \
                 src=\"/console/cases/{id}/contest-photo/{sha}\" alt=\"{alt}\"></a>",
                id = esc(id),
                sha = esc(&sha),
                alt = lang.t(
                    "Ảnh chủ xe gửi kèm khiếu nại",
                    "Photo sent by the owner with the contest"
                ),
            );
        }
    }
    p.push_str("</div>");
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_that_asks_for_a_person_is_spelled_out_and_marked() {
        let l = owner_status_label(Lang::En, "vehicle_mismatch");
        assert!(
            l.contains("class=\"warn\"") && l.contains("cloned plate"),
            "{l}"
        );
        assert!(owner_status_label(Lang::Vi, "registration_not_active").contains("mất cắp"));
        let l = owner_status_label(Lang::En, "registration_ambiguous");
        assert!(
            l.contains("class=\"warn\"") && l.contains("registered more than once"),
            "{l}"
        );
        let l = owner_status_label(Lang::Vi, "vehicle_type_unknown");
        assert!(l.contains("class=\"warn\"") && l.contains("loại xe"), "{l}");
        assert_eq!(owner_status_label(Lang::En, "resolved"), "resolved");
        assert_eq!(owner_status_label(Lang::En, "<x>"), "&lt;x&gt;");
        assert!(owner_status_label(Lang::En, "error").contains("retried automatically"));
    }

    #[test]
    fn confirming_a_case_without_an_owner_to_notify_is_warned() {
        assert_eq!(notice_hold(Lang::En, "resolved", CaseState::Accepted), None);
        assert_eq!(notice_hold(Lang::En, "error", CaseState::New), None);
        let w = notice_hold(Lang::En, "error", CaseState::Accepted).unwrap();
        assert!(w.contains("10 days") && w.contains("better wait"), "{w}");
        let w = notice_hold(Lang::Vi, "vehicle_mismatch", CaseState::Confirmed).unwrap();
        assert!(w.contains("thông báo giấy"), "{w}");
    }
}
