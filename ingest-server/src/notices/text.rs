//! The notice itself, in Vietnamese: what the owner is told, whatever the
//! channel. Facts come from the case row as confirmed (the plate as
//! reviewed, the violation as reviewed, the amount fixed at confirmation,
//! `fine_amount_vnd`) and from the notice row (its deadline to respond:
//! moved on by each attempt until one gets through,
//! `outbox::respond_by_at_send`, so it is the deadline the system enforces,
//! `deadlines::effective_deadline`, and fixed from then on); rendering is
//! a pure function of them, so every channel and every retry after the
//! notice went out says exactly the same thing.
//!
//! The place is the camera's description from the camera registry
//! (`cameras.description`: the intersection and direction, as enrolled)
//! when it has one ([`place`]); the site and camera ids only otherwise.
//!
//! Personal data: the text names no one and gives no address. Only the
//! e-mail, which goes to the registered owner's own mailbox, is addressed
//! to them by name (the caller passes it); push and webhook texts carry
//! the plate, which is already public for camera notices (Circular
//! 73/2024/TT-BCA publishes plate, time, place and violation).

/// Wording shared with the court package's summary (`package::vi`), so a
/// notice and the evidence package describe a case in the same words.
pub use crate::package::vi::{
    article, colour as colour_text, grouped, plate_display, plate_display_for,
    vehicle as vehicle_text, violation as violation_text,
};

use sqlx::Row;
use time::{OffsetDateTime, UtcOffset};

use crate::db::{Db, DbError};

/// Vietnam time.
pub const VN: UtcOffset = time::macros::offset!(+7);

/// What a notice says, read from the database.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NoticeFacts {
    /// The notice.
    pub notice_id: String,
    /// The case.
    pub event_id: String,
    /// The registered owner (registry id), if resolved.
    #[serde(skip)]
    pub owner_id: Option<String>,
    /// Canonical plate (reviewed if corrected).
    pub plate: String,
    /// The plate as printed (`30A-123.45`).
    pub plate_display: String,
    /// Plate colour code.
    pub plate_colour: String,
    /// Vehicle class code.
    pub vehicle_class: String,
    /// Violation type code (reviewed if corrected).
    pub violation: String,
    /// Site id.
    pub site: String,
    /// Camera id.
    pub camera: String,
    /// Where, for people ([`place`]): the camera's description, else the
    /// site and camera ids.
    pub place: String,
    /// When, Unix ms.
    pub detected_at: i64,
    /// Schedule id (`decree-168-2024`).
    pub fine_schedule: Option<String>,
    /// Article (`6.9.b`).
    pub fine_ref: Option<String>,
    /// The amount fixed at confirmation, VND.
    pub amount_vnd: Option<i64>,
    /// Licence points deducted.
    pub licence_points: Option<i64>,
    /// Measured speed, km/h (speeding).
    pub speed_kmh: Option<f64>,
    /// Posted limit, km/h.
    pub speed_limit_kmh: Option<i64>,
    /// The deadline to respond, Unix ms: the one enforced once the notice
    /// is out (`outbox::respond_by_at_send`).
    pub respond_by: i64,
}

/// Reads the facts of the notice of case `event_id`.
pub async fn load(db: &Db, event_id: &str) -> Result<Option<NoticeFacts>, DbError> {
    let sql = format!(
        "SELECT n.notice_id, n.event_id, e.owner_id, COALESCE(e.reviewed_plate, e.plate_text, ''), \
         e.plate_colour, e.vehicle_class, COALESCE(e.reviewed_type, e.violation_type), e.site, \
         e.camera_id, e.event_time_ms, e.fine_schedule, e.fine_ref, e.fine_amount_vnd, \
         e.licence_points, e.speed_kmh, e.speed_limit_kmh, n.respond_by, {CAMERA_DESCRIPTION_SQL} \
         FROM notices n JOIN events e ON e.event_id = n.event_id WHERE n.event_id = $1",
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(event_id)
        .fetch_optional(db.pool())
        .await?;
    let Some(r) = row else { return Ok(None) };
    let plate: String = r.try_get(3)?;
    let vehicle_class: String = r.try_get(5)?;
    let (site, camera): (String, String) = (r.try_get(7)?, r.try_get(8)?);
    let description: Option<String> = r.try_get(17)?;
    Ok(Some(NoticeFacts {
        notice_id: r.try_get(0)?,
        event_id: r.try_get(1)?,
        owner_id: r.try_get(2)?,
        plate_display: plate_display_for(&plate, &vehicle_class),
        plate,
        plate_colour: r.try_get(4)?,
        vehicle_class,
        violation: r.try_get(6)?,
        place: place(&site, &camera, description.as_deref()),
        site,
        camera,
        detected_at: r.try_get(9)?,
        fine_schedule: r.try_get(10)?,
        fine_ref: r.try_get(11)?,
        amount_vnd: r.try_get(12)?,
        licence_points: r.try_get(13)?,
        speed_kmh: r.try_get(14)?,
        speed_limit_kmh: r.try_get(15)?,
        respond_by: r.try_get(16)?,
    }))
}

/// The description of the camera that saw a case (`cameras.description`),
/// as an SQL expression over a case row aliased `e`: of the camera's
/// enrolment in service at the case's time, else of its latest one; NULL
/// when the camera is not enrolled or its description is empty.
pub const CAMERA_DESCRIPTION_SQL: &str = "COALESCE(\
     (SELECT c.description FROM cameras c WHERE c.device_id = e.device_id \
     AND c.camera_id = e.camera_id AND c.description <> '' \
     AND c.created_at <= e.event_time_ms \
     AND (c.retired_at IS NULL OR c.retired_at > e.event_time_ms) \
     ORDER BY c.created_at DESC LIMIT 1), \
     (SELECT c.description FROM cameras c WHERE c.device_id = e.device_id \
     AND c.camera_id = e.camera_id AND c.description <> '' \
     ORDER BY c.created_at DESC LIMIT 1))";

/// Where a case was seen, as its owner reads it: the camera's description
/// (trimmed) when the camera registry has one, else `{site}, camera
/// {camera}`.
pub fn place(site: &str, camera: &str, description: Option<&str>) -> String {
    match description.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => d.to_string(),
        None => format!("{site}, camera {camera}"),
    }
}

/// The legal basis of a case's fine: the article in the case's own fine
/// schedule ([`article`]); the decree alone when the case has no article.
pub fn basis(fine_ref: Option<&str>, fine_schedule: Option<&str>) -> String {
    match fine_ref {
        Some(r) => article(r, fine_schedule),
        None => "Nghị định 168/2024/NĐ-CP".to_string(),
    }
}

/// The rendered notice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NoticeText {
    /// One line: e-mail subject, push title.
    pub title: String,
    /// The full notice (plain text, lines separated by `\n`).
    pub body: String,
    /// Two or three lines for a push notification.
    pub short: String,
    /// The case page in the citizen app.
    pub url: String,
}

/// The case page of the citizen app.
pub fn case_url(base_url: &str, event_id: &str) -> String {
    format!("{}/app/cases/{event_id}", base_url.trim_end_matches('/'))
}

/// Renders the notice. `addressee` is the owner's name (e-mail only).
pub fn render(
    f: &NoticeFacts,
    authority: &str,
    base_url: &str,
    addressee: Option<&str>,
) -> NoticeText {
    let url = case_url(base_url, &f.event_id);
    let when = datetime(f.detected_at);
    let deadline = date(f.respond_by);
    let amount = f.amount_vnd.map_or_else(
        || "theo quyết định xử phạt".to_string(),
        |a| format!("{} đồng", grouped(a)),
    );
    let basis = basis(f.fine_ref.as_deref(), f.fine_schedule.as_deref());
    let points = match f.licence_points {
        Some(p) if p > 0 => format!("Trừ {p} điểm giấy phép lái xe"),
        _ => "Không trừ điểm giấy phép lái xe".to_string(),
    };
    let mut violation = violation_text(&f.violation).to_string();
    if let (Some(v), Some(l)) = (f.speed_kmh, f.speed_limit_kmh) {
        violation.push_str(&format!(
            " (tốc độ đo được {} km/h, tốc độ cho phép {l} km/h)",
            decimal1(v)
        ));
    }
    let greeting = match addressee {
        Some(name) => format!(
            "Kính gửi Ông/Bà {name}, chủ phương tiện mang biển số {}.",
            f.plate_display
        ),
        None => format!("Kính gửi chủ phương tiện mang biển số {}.", f.plate_display),
    };
    let title = format!("Thông báo vi phạm giao thông: xe {}", f.plate_display);
    let body = [
        "THÔNG BÁO VI PHẠM HÀNH CHÍNH VỀ TRẬT TỰ, AN TOÀN GIAO THÔNG ĐƯỜNG BỘ".to_string(),
        "(phát hiện qua hệ thống camera giám sát)".to_string(),
        String::new(),
        greeting,
        String::new(),
        format!(
            "{authority} thông báo: phương tiện dưới đây đã bị phát hiện vi phạm và cán bộ \
             Cảnh sát giao thông đã xác nhận vi phạm."
        ),
        String::new(),
        format!(
            "- Phương tiện: {}, biển số {} ({})",
            vehicle_text(&f.vehicle_class),
            f.plate_display,
            colour_text(&f.plate_colour)
        ),
        format!("- Thời gian vi phạm: {when} (giờ Việt Nam)"),
        format!("- Địa điểm: {}", f.place),
        format!("- Hành vi vi phạm: {violation}"),
        format!("- Căn cứ xử phạt: {basis}"),
        format!("- Mức phạt: {amount}"),
        format!("- {points}"),
        format!("- Mã vụ việc: {}", f.event_id),
        String::new(),
        format!(
            "Thời hạn: chậm nhất đến hết ngày {deadline}, đề nghị chủ phương tiện nộp phạt, \
             khiếu nại, hoặc đến trụ sở {authority} để giải quyết. Chủ phương tiện có trách \
             nhiệm phối hợp xác định người điều khiển phương tiện. Quá thời hạn này mà không \
             giải quyết, phương tiện sẽ được thông báo đến cơ quan đăng kiểm để cảnh báo \
             (Điều 24 Thông tư 73/2024/TT-BCA)."
        ),
        String::new(),
        "Cách nộp phạt: mở đường dẫn bên dưới và chọn «Nộp phạt» để thanh toán trực tuyến; \
         hoặc nộp qua Cổng Dịch vụ công quốc gia, hoặc tại trụ sở cơ quan xử lý vi phạm."
            .to_string(),
        "Cách khiếu nại: mở đường dẫn bên dưới và chọn «Khiếu nại», nêu lý do và gửi kèm hình \
         ảnh nếu có; hoặc khiếu nại trực tiếp tại trụ sở cơ quan xử lý vi phạm. Khi khiếu nại \
         đang được giải quyết, chưa phải nộp phạt."
            .to_string(),
        String::new(),
        format!("Xem hình ảnh, video và chi tiết vụ việc: {url}"),
        String::new(),
        "Lưu ý: thông báo được gửi tự động từ hệ thống; cơ quan chức năng không bao giờ yêu cầu \
         chuyển tiền vào tài khoản cá nhân hay cung cấp mật khẩu, mã OTP."
            .to_string(),
    ]
    .join("\n");
    let short = format!(
        "Xe {} — {} lúc {when}, tại {}. Mức phạt: {amount}. Hạn giải quyết: {deadline}.",
        f.plate_display,
        short_violation(&f.violation),
        f.place
    );
    NoticeText {
        title,
        body,
        short,
        url,
    }
}

fn short_violation(code: &str) -> &str {
    match code {
        "red_light" => "vượt đèn đỏ",
        "stop_line" => "không dừng trước vạch dừng",
        "wrong_lane" => "đi sai làn đường",
        "wrong_way" => "đi ngược chiều",
        "speeding" => "chạy quá tốc độ",
        "illegal_stopping" => "dừng, đỗ xe sai quy định",
        "no_helmet" => "không đội mũ bảo hiểm",
        other => other,
    }
}

fn decimal1(v: f64) -> String {
    format!("{v:.1}").replace('.', ",")
}

fn vn(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .map(|t| t.to_offset(VN))
}

/// Unix ms as `dd/mm/yyyy hh:mm:ss` in Vietnam time.
pub fn datetime(ms: i64) -> String {
    let f = time::macros::format_description!("[day]/[month]/[year] [hour]:[minute]:[second]");
    vn(ms)
        .and_then(|t| t.format(&f).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// Unix ms as `dd/mm/yyyy` in Vietnam time.
pub fn date(ms: i64) -> String {
    let f = time::macros::format_description!("[day]/[month]/[year]");
    vn(ms)
        .and_then(|t| t.format(&f).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// Unix ms as RFC 3339 in Vietnam time (`2025-03-01T14:05:09+07:00`).
pub fn rfc3339(ms: i64) -> String {
    vn(ms)
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> NoticeFacts {
        NoticeFacts {
            notice_id: "n1".into(),
            event_id: "0b4c1a52-93a4-4e0e-9a58-4f1f4b7f0e11".into(),
            owner_id: Some("o1".into()),
            plate: "30A12345".into(),
            plate_display: plate_display("30A12345"),
            plate_colour: "white".into(),
            vehicle_class: "car".into(),
            violation: "speeding".into(),
            site: "hn-hoankiem-trangtien".into(),
            camera: "cam-north".into(),
            place: place("hn-hoankiem-trangtien", "cam-north", None),
            // 2025-03-01 07:05:09 UTC = 14:05:09 in Hà Nội.
            detected_at: 1_740_812_709_000,
            fine_schedule: Some("decree-168-2024".into()),
            fine_ref: Some("6.5.đ".into()),
            amount_vnd: Some(5_000_000),
            licence_points: Some(2),
            speed_kmh: Some(71.4),
            speed_limit_kmh: Some(60),
            respond_by: 1_740_812_709_000 + 20 * 86_400_000,
        }
    }

    #[test]
    fn notice_says_what_the_law_asks() {
        let t = render(&facts(), "Phòng CSGT Hà Nội", "https://app.example/", None);
        for want in [
            "30A-123.45",
            "biển nền trắng",
            "01/03/2025 14:05:09 (giờ Việt Nam)",
            "hn-hoankiem-trangtien, camera cam-north",
            "Điều khiển xe chạy quá tốc độ quy định (tốc độ đo được 71,4 km/h, tốc độ cho phép 60 km/h)",
            "điểm đ khoản 5 Điều 6 Nghị định 168/2024/NĐ-CP",
            "Mức phạt: 5.000.000 đồng",
            "Trừ 2 điểm giấy phép lái xe",
            "chậm nhất đến hết ngày 21/03/2025",
            "«Nộp phạt»",
            "«Khiếu nại»",
            "https://app.example/app/cases/0b4c1a52-93a4-4e0e-9a58-4f1f4b7f0e11",
            "Phòng CSGT Hà Nội",
        ] {
            assert!(t.body.contains(want), "missing {want:?} in\n{}", t.body);
        }
        assert!(t.body.contains("Kính gửi chủ phương tiện"));
        assert_eq!(t.title, "Thông báo vi phạm giao thông: xe 30A-123.45");
        assert!(t.short.contains("chạy quá tốc độ") && t.short.contains("21/03/2025"));
        let named = render(&facts(), "X", "https://a", Some("Hoàng Thị Giang"));
        assert!(named.body.contains("Kính gửi Ông/Bà Hoàng Thị Giang"));
    }

    #[test]
    fn the_place_is_the_cameras_description_when_there_is_one() {
        let desc = "Ngã tư Tràng Tiền – Hàng Bài, hướng Bắc";
        assert_eq!(place("s", "c", Some(&format!(" {desc} "))), desc);
        assert_eq!(place("s", "c", Some("  ")), "s, camera c");
        assert_eq!(place("s", "c", None), "s, camera c");
        let f = NoticeFacts {
            place: place("s", "c", Some(desc)),
            ..facts()
        };
        let t = render(&f, "X", "https://a", None);
        assert!(
            t.body.contains(&format!("- Địa điểm: {desc}\n")),
            "{}",
            t.body
        );
        assert!(t.short.contains(desc) && !t.body.contains("camera cam-north"));
        assert_eq!(
            basis(Some("6.9.b"), Some("decree-168-2024")),
            "điểm b khoản 9 Điều 6 Nghị định 168/2024/NĐ-CP"
        );
        assert_eq!(basis(None, None), "Nghị định 168/2024/NĐ-CP");
    }

    #[test]
    fn times_are_vietnam_time() {
        assert_eq!(rfc3339(1_740_812_709_000), "2025-03-01T14:05:09+07:00");
        assert_eq!(date(1_740_848_400_000), "02/03/2025");
        assert_eq!(grouped(19_000_000), "19.000.000");
    }
}
