//! Page building blocks: escaping, the page frame with its role-dependent
//! navigation, the two languages, and formatting of money, times and the
//! legal clock. Pages are plain strings built with `format!`; everything
//! that comes from data goes through [`esc`].

use std::fmt::Write as _;

use time::{OffsetDateTime, UtcOffset};

use crate::accounts::Session;
use crate::workflow::Role;

/// Vietnam's offset (UTC+7, no daylight saving).
pub const VIETNAM: UtcOffset = match UtcOffset::from_hms(7, 0, 0) {
    Ok(o) => o,
    Err(_) => UtcOffset::UTC,
};

/// Days a violation can be penalised (limitation period; the one source
/// is [`crate::workflow::LIMITATION_DAYS`]).
pub const LIMITATION_DAYS: i64 = crate::workflow::LIMITATION_DAYS;

/// HTML-escapes text for element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The console's language: Vietnamese first, English second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Tiếng Việt (default).
    Vi,
    /// English.
    En,
}

impl Lang {
    /// From the `tv_lang` cookie value.
    pub fn from_cookie(v: Option<&str>) -> Lang {
        match v {
            Some("en") => Lang::En,
            _ => Lang::Vi,
        }
    }

    /// Picks the text in this language.
    pub fn t<'a>(self, vi: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Vi => vi,
            Lang::En => en,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Lang::Vi => "vi",
            Lang::En => "en",
        }
    }
}

/// Formats VND with dot thousands separators, as Vietnamese write it.
pub fn vnd(amount: i64) -> String {
    let digits = amount.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    if amount < 0 {
        out.insert(0, '-');
    }
    out + " ₫"
}

/// Unix ms as local Vietnamese time, `dd/mm/yyyy HH:MM:SS`.
pub fn local_time(ms: i64) -> String {
    let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return "?".into();
    };
    let t = t.to_offset(VIETNAM);
    format!(
        "{:02}/{:02}/{} {:02}:{:02}:{:02}",
        t.day(),
        u8::from(t.month()),
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The legal-clock badge of a case: whole days to the notice deadline,
/// the end of the 10th day after detection in Vietnam time
/// (`notices::outbox::notify_until`, what the 10-day check flags by);
/// negative once past it.
pub fn clock_badge(lang: Lang, event_ms: i64, now_ms: i64) -> String {
    let d = (crate::notices::outbox::notify_until(event_ms) - now_ms).div_euclid(86_400_000);
    let class = if d < 0 {
        "late"
    } else if d <= 2 {
        "soon"
    } else {
        "ok"
    };
    let text = if d < 0 {
        format!("{} {}", lang.t("quá hạn", "overdue by"), -d)
    } else {
        format!("{d} {}", lang.t("ngày", "days"))
    };
    format!(
        "<span class=\"clock {class}\" title=\"{}\">{}</span>",
        lang.t("Hạn gửi thông báo (10 ngày)", "Notice deadline (10 days)"),
        esc(&text)
    )
}

/// The deadline badge of a case in `state`: the 10-day notice clock
/// ([`clock_badge`]) until the notice is out; once it is (`notice_issued`)
/// the owner's deadline to respond, `reply_by` (Unix ms,
/// `notices::deadlines::held_to`, the one the 20-day check enforces and
/// the citizen app shows; none while police's answer to a contest has not
/// reached the owner); nothing in any other state (no
/// clock runs against the authority then).
pub fn deadline_badge(
    lang: Lang,
    state: crate::workflow::CaseState,
    event_ms: i64,
    reply_by: Option<i64>,
    now_ms: i64,
) -> String {
    use crate::workflow::CaseState as S;
    match state {
        S::New | S::InReview | S::Accepted | S::Confirmed => clock_badge(lang, event_ms, now_ms),
        S::NoticeIssued => reply_by
            .map(|by| reply_badge(lang, by, now_ms))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Days left to the owner's deadline to respond, `by` (Unix ms).
fn reply_badge(lang: Lang, by: i64, now_ms: i64) -> String {
    let d = (by - now_ms).div_euclid(86_400_000);
    let class = if by < now_ms {
        "late"
    } else if d <= 2 {
        "soon"
    } else {
        "ok"
    };
    let text = if by < now_ms {
        lang.t("quá hạn trả lời", "reply overdue").to_string()
    } else {
        format!("{d} {}", lang.t("ngày", "days"))
    };
    format!(
        "<span class=\"clock reply {class}\" title=\"{} {}\">{}</span>",
        lang.t(
            "Hạn chủ phương tiện trả lời thông báo (20 ngày):",
            "The owner's deadline to respond to the notice (20 days):"
        ),
        local_time(by),
        esc(&text)
    )
}

/// A violation type's label.
pub fn violation_label(lang: Lang, t: &str) -> String {
    let (vi, en) = match t {
        "red_light" => ("Vượt đèn đỏ", "Red light"),
        "stop_line" => ("Vượt vạch dừng", "Stop line"),
        "wrong_lane" => ("Sai làn đường", "Wrong lane"),
        "wrong_way" => ("Đi ngược chiều", "Wrong way"),
        "speeding" => ("Quá tốc độ", "Speeding"),
        "illegal_stopping" => ("Dừng, đỗ sai quy định", "Illegal stopping"),
        "no_helmet" => ("Không đội mũ bảo hiểm", "No helmet"),
        other => (other, other),
    };
    lang.t(vi, en).to_string()
}

/// Every violation type's wire name (for filters and corrections).
pub const VIOLATION_TYPES: [&str; 7] = [
    "red_light",
    "stop_line",
    "wrong_lane",
    "wrong_way",
    "speeding",
    "illegal_stopping",
    "no_helmet",
];

const STYLE: &str = include_str!("console.css");

/// The page frame: head, header with the user and navigation, content.
pub fn page(lang: Lang, title: &str, session: Option<&Session>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(u) = session.map(|s| &s.user) {
        let mut link = |href: &str, vi: &str, en: &str| {
            let _ = write!(nav, "<a href=\"{href}\">{}</a>", lang.t(vi, en));
        };
        if u.role.reviews() {
            link("/console/queue", "Hàng đợi xem xét", "Review queue");
        }
        if u.role == Role::Police {
            link("/console/confirm", "Xác nhận xử phạt", "Confirm fines");
        }
        if matches!(u.role, Role::Police | Role::Supervisor | Role::Auditor) {
            link("/console/cases", "Tất cả vụ việc", "All cases");
            link(
                "/console/deadlines",
                "Thời hạn thông báo",
                "Notice deadlines",
            );
        }
        link(
            "/console/health",
            "Thiết bị & thống kê",
            "Devices & statistics",
        );
        // Quarantined messages and audit entries carry plates: case data,
        // which administrators do not see.
        if matches!(u.role, Role::Supervisor | Role::Auditor) {
            link("/console/quarantine", "Cách ly", "Quarantine");
            link("/console/audit", "Nhật ký kiểm toán", "Audit log");
        }
        if matches!(u.role, Role::Admin | Role::Supervisor) {
            link("/console/admin", "Quản trị", "Administration");
        }
        if u.role == Role::Admin {
            link("/console/devices", "Thiết bị biên", "Edge devices");
        }
        if matches!(u.role, Role::Supervisor | Role::Auditor) {
            link(
                "/console/export/labels.zip",
                "Tải nhãn biển số",
                "Plate labels",
            );
        }
    }
    let who = session
        .map(|s| {
            let u = &s.user;
            format!(
                "<span class=\"who\">{} · {}</span><form method=\"post\" action=\"/console/logout\" class=\"inline\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>{}</button></form>",
                esc(&u.display_name),
                esc(u.role.label_vi()),
                esc(&s.csrf),
                lang.t("Đăng xuất", "Sign out")
            )
        })
        .unwrap_or_default();
    let other = match lang {
        Lang::Vi => "<a href=\"/console/lang?to=en\">English</a>",
        Lang::En => "<a href=\"/console/lang?to=vi\">Tiếng Việt</a>",
    };
    format!(
        "<!doctype html><html lang=\"{code}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · TV-Enforce</title><style>{STYLE}</style></head><body>\
         <header><strong>TV-Enforce IOC</strong><nav>{nav}</nav><span class=\"spacer\"></span>{other}{who}</header>\
         <main>{body}</main></body></html>",
        code = lang.code(),
        title = esc(title),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn formats_money_and_days() {
        assert_eq!(vnd(4_000_000), "4.000.000 ₫");
        assert_eq!(vnd(800), "800 ₫");
        assert_eq!(local_time(0), "01/01/1970 07:00:00");
    }

    /// The notice badge counts to the end of the 10th day after detection,
    /// Vietnam time, as the 10-day check flags: a case detected at 09:00
    /// is not late at 10:00 ten days on.
    #[test]
    fn the_notice_badge_runs_to_the_end_of_the_tenth_day() {
        let day = 86_400_000;
        // 01/03/2026 09:00 in Vietnam (02:00 UTC).
        let detected = 1_772_330_400_000;
        assert_eq!(local_time(detected), "01/03/2026 09:00:00");
        let until = crate::notices::outbox::notify_until(detected);
        assert_eq!(local_time(until), "11/03/2026 23:59:59");
        let at_ten = clock_badge(Lang::En, detected, detected + 10 * day + 3_600_000);
        assert!(
            at_ten.contains(">0 days<") && at_ten.contains("soon"),
            "{at_ten}"
        );
        let after = clock_badge(Lang::En, detected, until + 1);
        assert!(
            after.contains("overdue by 1") && after.contains("late"),
            "{after}"
        );
        let fresh = clock_badge(Lang::En, detected, detected);
        assert!(
            fresh.contains(">10 days<") && fresh.contains("ok"),
            "{fresh}"
        );
    }
}
