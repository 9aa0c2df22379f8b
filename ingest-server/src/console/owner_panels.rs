//! The owner's side of a case page: what the registry says of the vehicle
//! and its owner (personal data: the page that shows it logs the access),
//! whether the lookup asks a person to look, and the owner's contests.

use std::fmt::Write;

use sqlx::Row;

use super::html::{Lang, esc, local_time};
use crate::db::{Db, DbError};
use crate::registry::Registration;

/// The registered owner and vehicle, or that none was found.
pub(super) fn owner_panel(lang: Lang, found: Option<Registration>) -> String {
    match found {
        Some(r) => format!(
            "<div class=\"panel pii\" id=\"owner\"><strong>{}</strong> <span class=\"muted\">({})</span><br>\
             {}: {}<br>{}: {}<br>{}: {} {} · {} · {}</div>",
            lang.t("Chủ phương tiện", "Registered owner"),
            lang.t("truy cập được ghi nhật ký", "access is logged"),
            lang.t("Họ tên", "Name"),
            esc(&r.owner.full_name),
            lang.t("Địa chỉ", "Address"),
            esc(&r.owner.address),
            lang.t("Xe", "Vehicle"),
            esc(&r.vehicle.vehicle_type),
            esc(&r.vehicle.make),
            esc(&r.vehicle.colour),
            esc(&r.vehicle.registration_status),
        ),
        None => format!(
            "<div class=\"panel pii\" id=\"owner\">{}</div>",
            lang.t(
                "Không tìm thấy chủ phương tiện trong cơ sở dữ liệu đăng ký.",
                "No registered owner found."
            )
        ),
    }
}

/// The owner lookup's status for people: the two that ask a person to
/// look (`registry::registration_status`) are spelled out and marked.
pub(super) fn owner_status_label(lang: Lang, status: &str) -> String {
    let warn = |vi: &str, en: &str| format!("<strong class=\"warn\">{}</strong>", lang.t(vi, en));
    match status {
        "vehicle_mismatch" => warn(
            "đăng ký là loại xe khác với xe trong ảnh: biển có thể bị đọc sai hoặc bị làm giả",
            "registered to another kind of vehicle than the one seen: misread or cloned plate?",
        ),
        "registration_not_active" => warn(
            "đăng ký không còn hiệu lực (thu hồi, mất cắp, hết hạn)",
            "registration not active (deregistered, stolen, expired)",
        ),
        other => esc(other),
    }
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
            let _ = write!(
                p,
                "<img style=\"max-width:100%\" src=\"/console/cases/{}/contest-photo/{}\" alt=\"photo\">",
                esc(id),
                esc(&sha)
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
        assert_eq!(owner_status_label(Lang::En, "resolved"), "resolved");
        assert_eq!(owner_status_label(Lang::En, "<x>"), "&lt;x&gt;");
    }
}
