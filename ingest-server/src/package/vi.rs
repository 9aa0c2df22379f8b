//! Vietnamese wording for the case summary: labels of the stored codes
//! (violation types, vehicle classes, plate colours, roles, actions,
//! states), the fine as a reader expects it (`điểm b khoản 9 Điều 6 Nghị
//! định 168/2024/NĐ-CP`) and the amount fixed at confirmation, numbers
//! with `.` between thousands and `,` before decimals, and times in Vietnam
//! time (UTC+07:00) as `dd/mm/yyyy hh:mm:ss`.
//! Unknown codes are shown as they are stored rather than guessed.

use protocol::{ClockSync, ClockSyncStatus, SignalObservation, SignalState};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::record::{CaseRecord, Transition};
use crate::review::Circumstance;

/// Vietnam time.
pub const VN: UtcOffset = time::macros::offset!(+7);

/// A violation type.
pub fn violation(code: &str) -> &str {
    match code {
        "red_light" => "Không chấp hành hiệu lệnh của đèn tín hiệu giao thông (vượt đèn đỏ)",
        "stop_line" => "Không dừng trước vạch dừng khi có tín hiệu đèn đỏ",
        "wrong_lane" => "Đi không đúng làn đường quy định",
        "wrong_way" => "Đi ngược chiều của đường một chiều hoặc đường cấm đi ngược chiều",
        "speeding" => "Điều khiển xe chạy quá tốc độ quy định",
        "illegal_stopping" => "Dừng xe, đỗ xe không đúng quy định",
        "no_helmet" => "Không đội mũ bảo hiểm khi điều khiển xe mô tô, xe gắn máy",
        other => other,
    }
}

/// A vehicle class.
pub fn vehicle(code: &str) -> &str {
    match code {
        "car" => "ô tô",
        "motorcycle" => "mô tô, xe gắn máy",
        "bus" => "xe khách, xe buýt",
        "truck" => "xe tải",
        other => other,
    }
}

/// A plate colour.
pub fn colour(code: &str) -> &str {
    match code {
        "white" => "biển nền trắng",
        "yellow" => "biển nền vàng",
        "blue" => "biển nền xanh",
        "red" => "biển nền đỏ",
        _ => "màu biển không xác định",
    }
}

/// An evidence file's role.
pub fn role_of_file(code: &str) -> &str {
    match code {
        "overview" => "ảnh toàn cảnh",
        "plate_crop" => "ảnh biển số",
        "vehicle_crop" => "ảnh phương tiện",
        "signal_crop" => "ảnh đèn tín hiệu",
        "clip" => "đoạn video",
        "frame" => "ảnh khung hình",
        other => other,
    }
}

/// A person's role.
pub fn role(code: &str) -> &str {
    match code {
        "system" => crate::workflow::Role::System.label_vi(),
        other => crate::workflow::Role::parse(other).map_or(other, |r| r.label_vi()),
    }
}

/// A case state.
pub fn state(code: &str) -> &str {
    crate::workflow::CaseState::parse(code).map_or(code, |s| s.label_vi())
}

/// A review action.
pub fn action(code: &str) -> &str {
    match code {
        "claim" => "nhận xem xét",
        "release" => "trả lại hàng chờ",
        "accept" => "chấp nhận vi phạm",
        "reject" => "loại",
        "correct_plate" => "sửa biển số",
        "correct_type" => "sửa hành vi vi phạm",
        "confirm" => "xác nhận xử phạt",
        "send_back" => "trả về xem xét lại",
        "reopen" => "mở lại",
        "issue_notice" => "gửi thông báo vi phạm",
        "pay" => "nộp phạt",
        "contest" => "khiếu nại",
        "uphold" => "giữ nguyên quyết định",
        "mark_overdue" => "quá hạn",
        "close" => "đóng hồ sơ",
        other => other,
    }
}

/// `18000000` → `18.000.000`.
pub fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A decimal with a comma: `4.2` → `4,2`.
pub fn decimal(v: f64, places: usize) -> String {
    format!("{v:.places$}").replace('.', ",")
}

/// A time as `dd/mm/yyyy hh:mm:ss (UTC+07:00)` in its own offset.
pub fn datetime(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!(
        "[day]/[month]/[year] [hour]:[minute]:[second] (UTC[offset_hour sign:mandatory]:[offset_minute])"
    );
    t.format(&f).unwrap_or_else(|_| t.to_string())
}

/// Unix ms in Vietnam time.
pub fn ms_text(ms: i64) -> String {
    match OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => datetime(t.to_offset(VN)),
        Err(_) => ms.to_string(),
    }
}

/// The device's RFC 3339 event time, in the offset it was sent with.
pub fn time_text(rfc3339: &str) -> String {
    OffsetDateTime::parse(rfc3339, &Rfc3339).map_or_else(|_| rfc3339.to_string(), datetime)
}

/// The device clock's state.
pub fn clock(c: &ClockSync) -> String {
    if c.is_recording() {
        return "CẢNH BÁO: thời gian lấy từ bản ghi phát lại, không phải đồng hồ thiết bị lúc vi phạm"
            .to_string();
    }
    let mut s = match c.status {
        ClockSyncStatus::Synced => "đồng hồ thiết bị đã đồng bộ".to_string(),
        ClockSyncStatus::Unsynced => "CẢNH BÁO: đồng hồ thiết bị chưa đồng bộ".to_string(),
        ClockSyncStatus::Unknown => "không rõ đồng hồ thiết bị có đồng bộ không".to_string(),
    };
    if let Some(src) = &c.source {
        s.push_str(&format!(" với {src}"));
    }
    if let Some(ms) = c.offset_ms {
        s.push_str(&format!(", lệch {ms} ms"));
    }
    s
}

/// The signal as observed.
pub fn signal(s: &SignalObservation) -> String {
    let state = match s.state {
        SignalState::Red => "đèn đỏ",
        SignalState::Yellow => "đèn vàng",
        SignalState::Green => "đèn xanh",
        SignalState::Unknown => "không xác định",
    };
    match s.red_for_ms {
        Some(ms) => format!("{state}, đã đỏ {} giây", decimal(ms as f64 / 1000.0, 1)),
        None => state.to_string(),
    }
}

/// `6.9.b` of `decree-168-2024` → `điểm b khoản 9 Điều 6 Nghị định
/// 168/2024/NĐ-CP`.
pub fn article(reference: &str, schedule: Option<&str>) -> String {
    let parts: Vec<&str> = reference.split('.').collect();
    let mut s = match parts.as_slice() {
        [a, k, p] => format!("điểm {p} khoản {k} Điều {a}"),
        [a, k] => format!("khoản {k} Điều {a}"),
        _ => format!("mục {reference}"),
    };
    if let Some(id) = schedule {
        let bits: Vec<&str> = id.split('-').collect();
        match bits.as_slice() {
            ["decree", n, y] => s.push_str(&format!(" Nghị định {n}/{y}/NĐ-CP")),
            _ => s.push_str(&format!(" ({id})")),
        }
    }
    s
}

/// The fine of a case.
pub fn fine(c: &CaseRecord) -> String {
    match (c.fine_status.as_str(), c.fine_min_vnd, c.fine_max_vnd) {
        ("priced", Some(lo), Some(hi)) => {
            let mut s = format!("Từ {} đến {} đồng", grouped(lo), grouped(hi));
            if let Some(r) = &c.fine_ref {
                s.push_str(&format!(" — {}", article(r, c.fine_schedule.as_deref())));
            }
            match c.licence_points {
                Some(p) if p > 0 => s.push_str(&format!("; trừ {p} điểm giấy phép lái xe")),
                _ => s.push_str("; không trừ điểm giấy phép lái xe"),
            }
            s
        }
        ("not_applicable", ..) => {
            "Chưa xác định tự động: cán bộ xác định căn cứ xử phạt (biển số quân sự, hoặc \
             hành vi mà dữ liệu ghi nhận chưa đủ để chọn một điểm của nghị định)"
                .into()
        }
        ("no_fine", ..) => "Biểu phạt không có mức phạt cho hành vi này".into(),
        ("no_schedule", ..) => "Không có biểu phạt có hiệu lực vào ngày vi phạm".into(),
        (other, ..) => format!("Chưa xác định ({other})"),
    }
}

/// The fine police fixed when confirming the case, once they have: the
/// amount the notice states and the owner pays, which the court must read
/// as such rather than infer from the range `fine` gives, and why it is
/// not the middle of the range where it is not (`decided`: the
/// confirmation's circumstance, the middle and the reason the officer
/// stated, [`Decided::of`]). `None` before confirmation.
pub fn charged(c: &CaseRecord, decided: Option<&Decided>) -> Option<String> {
    c.fine_amount_vnd.map(|amount| {
        let why = match decided {
            Some(d) if d.circumstance != Circumstance::None => format!(
                "{} mức trung bình của khung tiền phạt ({} đồng) do có tình tiết {}: {}",
                if d.circumstance == Circumstance::Mitigating {
                    "thấp hơn"
                } else {
                    "cao hơn"
                },
                grouped(d.middle),
                if d.circumstance == Circumstance::Mitigating {
                    "giảm nhẹ"
                } else {
                    "tăng nặng"
                },
                d.reason
            ),
            _ => "mức trung bình của khung tiền phạt".into(),
        };
        format!(
            "{} đồng — mức phạt cụ thể quyết định khi CSGT xác nhận ({why}); thông báo vi phạm và \
             khoản nộp phạt dùng số tiền này",
            grouped(amount)
        )
    })
}

/// How the officer decided the amount at the case's (last) confirmation,
/// as its transition recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// None, mitigating or aggravating.
    pub circumstance: Circumstance,
    /// The middle of the range at confirmation.
    pub middle: i64,
    /// The reason the officer stated.
    pub reason: String,
}

impl Decided {
    /// From the case's transitions: the last confirmation's detail
    /// (`circumstance`, `fine_middle_vnd`) and reason. `None` when there is
    /// none or it predates the record of a circumstance.
    pub fn of(transitions: &[Transition]) -> Option<Decided> {
        let t = transitions.iter().rev().find(|t| t.action == "confirm")?;
        let detail: serde_json::Value = serde_json::from_str(t.detail.as_deref()?).ok()?;
        Some(Decided {
            circumstance: Circumstance::parse(detail["circumstance"].as_str()?)?,
            middle: detail["fine_middle_vnd"].as_i64()?,
            reason: t.reason.clone().unwrap_or_default(),
        })
    }
}

/// A canonical plate in its printed form (`30A12345` → `30A-123.45`).
pub fn plate_display(canonical: &str) -> String {
    plate_ocr::plate::PlateGrammar::try_builtin()
        .ok()
        .and_then(|g| g.parse(canonical).ok())
        .map_or_else(|| canonical.to_string(), |p| p.display)
}

/// The display form of a canonical plate on a vehicle of the event's class
/// (`motorcycle`, `car`, `bus`, `truck`): `29B11234` is motorbike
/// `29-B1 1234` but car `29B-112.34`; a notice prints the one it is about.
pub fn plate_display_for(canonical: &str, vehicle_class: &str) -> String {
    use plate_ocr::plate::VehicleKind;
    let kind = if vehicle_class == "motorcycle" {
        VehicleKind::Motorbike
    } else {
        VehicleKind::Car
    };
    plate_ocr::plate::PlateGrammar::try_builtin()
        .ok()
        .and_then(|g| g.display_for(canonical, kind))
        .unwrap_or_else(|| canonical.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_numbers_and_times() {
        assert_eq!(grouped(18_000_000), "18.000.000");
        assert_eq!(grouped(600_000), "600.000");
        assert_eq!(grouped(999), "999");
        assert_eq!(decimal(4.2, 1), "4,2");
        assert_eq!(
            article("6.9.b", Some("decree-168-2024")),
            "điểm b khoản 9 Điều 6 Nghị định 168/2024/NĐ-CP"
        );
        assert_eq!(
            time_text("2025-03-14T08:15:30.250+07:00"),
            "14/03/2025 08:15:30 (UTC+07:00)"
        );
        assert_eq!(ms_text(0), "01/01/1970 07:00:00 (UTC+07:00)");
        assert_eq!(plate_display("30A12345"), "30A-123.45");
        assert_eq!(plate_display_for("30A12345", "car"), "30A-123.45");
        assert_eq!(plate_display_for("30A12345", "motorcycle"), "30-A1 2345");
        assert_eq!(plate_display_for("garbage", "car"), "garbage");
        assert_eq!(violation("something_new"), "something_new");
    }
}
