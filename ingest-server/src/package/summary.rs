//! The printable summary of a case (`summary.pdf` in the evidence package),
//! in Vietnamese: what happened, where and when, the plate (and the machine
//! read when a person corrected it), the fine (its legal range and, once
//! confirmed, the amount charged), who accepted and who confirmed, the
//! device and its signature, the hashes, the audit chain and the overview
//! picture with the vehicle marked. It is a reading aid for the court; the
//! package's files are the evidence, and the summary says so.
//!
//! This module only words and lays out facts that `mod.rs` has already
//! checked; the PDF itself is written by `pdf.rs`.

use protocol::ViolationEvent;
use time::OffsetDateTime;

use super::annotate::Overlay;
use super::font::Font;
use super::pdf::{Doc, Jpeg, PAGE_W};
use super::record::{FileState, Loaded};
use super::{SignatureCheck, vi};
use crate::audit::Verification;

/// Everything the summary shows.
pub struct Facts<'a> {
    /// The case from the database.
    pub loaded: &'a Loaded,
    /// The signed event (parsed; see `signature` for whether it verified).
    pub event: &'a ViolationEvent,
    /// The signature check.
    pub signature: &'a SignatureCheck,
    /// The whole audit chain's check.
    pub chain: &'a Verification,
    /// Entries about this case in the audit log.
    pub case_entries: usize,
    /// The overview picture (original file), its name and hash, and overlay.
    pub overview: Option<(Jpeg, String, String, Overlay)>,
    /// When the package was made.
    pub made_at: OffsetDateTime,
    /// The server's public key (hex) that signs the package's `SHA256SUMS`.
    pub server_key: &'a str,
}

/// The summary PDF.
pub fn render(font: Font, f: Facts<'_>) -> Result<Vec<u8>, String> {
    let c = &f.loaded.case;
    let ev = f.event;
    let mut d = Doc::new(font);
    d.title("BIÊN BẢN TÓM TẮT HỒ SƠ VI PHẠM GIAO THÔNG", 15.0);
    d.title(
        "Ghi nhận bằng thiết bị kỹ thuật nghiệp vụ — kèm theo gói chứng cứ điện tử",
        10.0,
    );
    d.para(
        "Tài liệu do hệ thống tạo ra từ dữ liệu đã lưu, để đọc kèm các tệp của gói chứng cứ; \
         không thay thế biên bản vi phạm hành chính do người có thẩm quyền lập.",
        8.5,
        true,
    );

    d.heading("1. Vụ việc");
    d.field("Mã vụ việc", &c.event_id);
    let (plate, read) = plate_lines(f.loaded, ev);
    d.field_with("Biển số", &plate, 10.5, true);
    d.field("Thiết bị đọc", &read);
    d.field(
        "Màu biển, loại xe",
        &format!(
            "{}; {}",
            vi::colour(&c.plate_colour),
            vi::vehicle(&c.vehicle_class)
        ),
    );
    let kind = c.reviewed_type.as_deref().unwrap_or(&c.violation_type);
    let mut behaviour = vi::violation(kind).to_string();
    if c.reviewed_type.is_some() {
        behaviour.push_str(&format!(
            " (đã sửa khi xem xét; thiết bị ghi: {})",
            vi::violation(&c.violation_type)
        ));
    }
    d.field("Hành vi vi phạm", &behaviour);
    d.field(
        "Thời gian",
        &format!(
            "{} ({})",
            vi::time_text(&c.event_time),
            vi::clock(&ev.clock)
        ),
    );
    d.field(
        "Địa điểm",
        &format!("Nút giao {}, camera {}", c.site, c.camera_id),
    );
    if let Some(s) = &ev.signal {
        d.field("Đèn tín hiệu", &vi::signal(s));
    }
    if let Some(s) = &ev.speed {
        d.field(
            "Tốc độ",
            &format!(
                "{} km/h, tốc độ cho phép {} km/h",
                vi::decimal(s.measured_kmh, 1),
                s.limit_kmh
            ),
        );
    }
    d.field("Mức phạt", &vi::fine(c));
    // The range alone is not what the owner was asked to pay: once
    // confirmed, the amount the notice and the payment carry is stated.
    let decided = vi::Decided::of(&f.loaded.transitions);
    if let Some(charged) = vi::charged(c, decided.as_ref()) {
        d.field("Số tiền phạt", &charged);
    }
    d.field(
        "Trạng thái",
        crate::workflow::CaseState::parse(&c.state).map_or(c.state.as_str(), |s| s.label_vi()),
    );
    if let Some(code) = &c.reject_code {
        d.field("Lý do loại", code);
    }

    if let Some((jpeg, name, sha, ov)) = f.overview {
        d.heading(&format!("2. Ảnh toàn cảnh ({name})"));
        let (iw, ih) = (f64::from(jpeg.width), f64::from(jpeg.height));
        let overlay = ov.clone();
        d.image(
            jpeg,
            PAGE_W - 2.0 * super::pdf::MARGIN,
            270.0,
            move |x, y, w, h| vector_overlay(&overlay, (x, y, w, h), (iw, ih)),
        );
        d.para(
            &format!(
                "Ảnh là tệp gốc {name} (SHA-256 {sha}), không xử lý lại. Hình vẽ thêm: \
                 đường vàng là quỹ đạo xe do thiết bị ký; vòng đỏ là vị trí ước tính lúc vi phạm; \
                 khung đỏ (nếu có) là vị trí xe. {}",
                ov.note
            ),
            8.0,
            true,
        );
    }

    d.heading("3. Xem xét và xác nhận");
    let person = |id: &Option<String>| match id {
        None => "—".to_string(),
        Some(id) => match f.loaded.people.get(id) {
            Some((name, role)) => format!("{name} ({}; mã {id})", vi::role(role)),
            None => format!("mã người dùng {id} (không còn trong danh sách)"),
        },
    };
    d.field("Người chấp nhận (IOC)", &person(&c.accepted_by));
    d.field("CSGT xác nhận", &person(&c.confirmed_by));
    d.para("Diễn biến xử lý:", 8.5, true);
    for t in &f.loaded.transitions {
        let who = f
            .loaded
            .people
            .get(&t.actor)
            .map_or(t.actor.clone(), |(n, _)| n.clone());
        let mut line = format!(
            "{} — {who} ({}): {} ({} → {})",
            vi::ms_text(t.at),
            vi::role(&t.role),
            vi::action(&t.action),
            vi::state(&t.from_state),
            vi::state(&t.to_state)
        );
        if let Some(r) = t.reason.as_deref().filter(|r| !r.is_empty()) {
            line.push_str(&format!("; lý do: {r}"));
        }
        d.para(&line, 8.5, false);
    }

    d.heading("4. Thiết bị và chữ ký số");
    let s = f.signature;
    d.field(
        "Thiết bị",
        &format!("{} (phần mềm: {})", c.device_id, ev.software_version),
    );
    d.field("Ghi danh", &s.enrolment_text());
    // The site file (stop lines, lanes, calibration) the device judged by,
    // as it signed it: the city's copy of that file is the one to produce.
    d.field_with(
        "Tệp cấu hình điểm (SHA-256)",
        ev.site_config_sha256
            .as_deref()
            .unwrap_or("— (thiết bị không ghi)"),
        8.0,
        false,
    );
    d.field_with(
        "Khóa công khai Ed25519",
        s.key_hex.as_deref().unwrap_or("—"),
        8.0,
        false,
    );
    d.field(
        "Chữ ký số",
        &format!(
            "{} — kiểm tra lúc {} (tệp event.json, signature.txt)",
            s.result_vi(),
            vi::datetime(s.checked_at.to_offset(vi::VN))
        ),
    );
    d.field(
        "Máy chủ nhận",
        &format!(
            "{} qua {}",
            vi::ms_text(c.received_at),
            c.source.to_uppercase()
        ),
    );

    d.heading("5. Giá trị băm SHA-256 của chứng cứ (manifest đã ký)");
    for item in &ev.evidence {
        let state = match f.loaded.file_state(&item.name) {
            FileState::Stored => "đã lưu, khớp giá trị băm khi đọc lại".to_string(),
            FileState::Purged {
                received_at,
                purged_at,
            } => format!(
                "máy chủ đã nhận lúc {}, đã xóa theo chính sách lưu trữ lúc {}",
                vi::ms_text(received_at),
                vi::ms_text(purged_at)
            ),
            FileState::NotReceived => "máy chủ chưa nhận được tệp".to_string(),
        };
        let shown = crate::integrity::frame_text(item, true)
            .map(|t| format!("; {t}"))
            .unwrap_or_default();
        d.para(
            &format!(
                "{} ({}, {} byte{shown}) — {state}\n{}",
                item.name,
                vi::role_of_file(&crate::ingest::enum_text(&item.role)),
                vi::grouped(item.size_bytes as i64),
                item.sha256
            ),
            8.5,
            false,
        );
    }
    d.para(
        &format!(
            "Kiểm tra mọi tệp của gói: sha256sum -c SHA256SUMS. Tệp SHA256SUMS được máy chủ ký \
             (Ed25519, SHA256SUMS.sig) bằng khóa công khai {}; đối chiếu khóa này với khóa máy chủ \
             mà thành phố đã công bố (cách kiểm tra: VERIFY.txt).",
            f.server_key
        ),
        8.0,
        true,
    );

    d.heading("6. Nhật ký kiểm toán");
    let chain = match f.chain {
        Verification::Intact { entries, head } => {
            format!("nguyên vẹn: {entries} mục, mã băm cuối {head}")
        }
        Verification::Broken { seq, problem } => {
            format!("BỊ PHÁ VỠ tại mục {seq}: {problem}")
        }
    };
    d.field_with("Chuỗi nhật ký", &chain, 8.5, false);
    d.field(
        "Của vụ việc này",
        &format!(
            "{} mục (audit.jsonl); {} lần chuyển trạng thái (transitions.json)",
            f.case_entries,
            f.loaded.transitions.len()
        ),
    );

    d.heading("7. Dữ liệu cá nhân");
    d.para(
        "Gói này không chứa thông tin cá nhân của chủ phương tiện (họ tên, số định danh, địa chỉ). \
         Tòa án nhận các thông tin đó từ cơ quan Công an qua cơ sở dữ liệu đăng ký xe \
         (Nghị định 13/2023/NĐ-CP về bảo vệ dữ liệu cá nhân).",
        9.0,
        false,
    );

    let footer = format!(
        "Vụ việc {} — lập lúc {} — Trang {{page}}/{{pages}}",
        c.event_id,
        vi::datetime(f.made_at)
    );
    let created = f
        .made_at
        .format(&time::macros::format_description!(
            "D:[year][month][day][hour][minute][second]Z"
        ))
        .unwrap_or_default();
    d.finish(
        &format!("Biên bản tóm tắt vụ việc {}", c.event_id),
        &footer,
        &created,
    )
}

/// The plate (the reviewed one if set, else the read) and what the device
/// read, each printed from its canonical form for the case's vehicle class
/// as the notice prints it (`vi::plate_display_for`): never the edge's own
/// display string, which is the plate grammar's first fitting layout (a
/// car's two-line `30A/123.45` comes as motorbike `30-A1 2345`).
fn plate_lines(l: &Loaded, ev: &ViolationEvent) -> (String, String) {
    let c = &l.case;
    let read = c
        .plate_text
        .as_deref()
        .map(|p| vi::plate_display_for(p, &c.vehicle_class))
        .unwrap_or_else(|| "không đọc được".into());
    let confidence = c
        .plate_confidence
        .or(ev.plate.confidence)
        .map(|p| format!("độ tin cậy {}%", vi::decimal(p * 100.0, 0)))
        .unwrap_or_else(|| "không có độ tin cậy".into());
    match &c.reviewed_plate {
        Some(p) => (
            format!(
                "{} (đã sửa khi xem xét)",
                vi::plate_display_for(p, &c.vehicle_class)
            ),
            format!("{read} ({confidence}); người xem xét đã sửa"),
        ),
        None => (read, format!("{confidence}; người xem xét giữ nguyên")),
    }
}

/// PDF drawing operators for the overlay on a picture placed at `(x, y, w,
/// h)` points whose pixels are `iw × ih`.
fn vector_overlay(
    ov: &Overlay,
    (x, y, w, h): (f64, f64, f64, f64),
    (iw, ih): (f64, f64),
) -> String {
    let px = |(u, v): (u32, u32)| (x + f64::from(u) * w / iw, y + h - f64::from(v) * h / ih);
    let mut s = String::from("q 1 J 1 j\n");
    // Clip to the picture.
    s.push_str(&format!("{x:.2} {y:.2} {w:.2} {h:.2} re W n\n"));
    if ov.path.len() > 1 {
        for (colour, width) in [("0 0 0 RG", 2.6), ("1 0.86 0 RG", 1.4)] {
            s.push_str(&format!("{colour} {width} w "));
            for (i, p) in ov.path.iter().enumerate() {
                let (a, b) = px(*p);
                s.push_str(&format!(
                    "{a:.2} {b:.2} {} ",
                    if i == 0 { "m" } else { "l" }
                ));
            }
            s.push_str("S\n");
        }
    }
    if let Some(m) = ov.marker {
        let (a, b) = px(m);
        let r = 6.0;
        let k = r * 0.5523;
        for (colour, width) in [("0 0 0 RG", 2.6), ("0.9 0.08 0.08 RG", 1.4)] {
            s.push_str(&format!(
                "{colour} {width} w {:.2} {b:.2} m {:.2} {:.2} {:.2} {:.2} {a:.2} {:.2} c \
                 {:.2} {:.2} {:.2} {:.2} {:.2} {b:.2} c {:.2} {:.2} {:.2} {:.2} {a:.2} {:.2} c \
                 {:.2} {:.2} {:.2} {:.2} {:.2} {b:.2} c S\n",
                a + r,
                a + r,
                b + k,
                a + k,
                b + r,
                b + r,
                a - k,
                b + r,
                a - r,
                b + k,
                a - r,
                a - r,
                b - k,
                a - k,
                b - r,
                b - r,
                a + k,
                b - r,
                a + r,
                b - k,
                a + r
            ));
        }
    }
    if let Some((bx, by, bw, bh)) = ov.vehicle_box {
        let (a, b) = px((bx, by + bh));
        let (bw, bh) = (f64::from(bw) * w / iw, f64::from(bh) * h / ih);
        for (colour, width) in [("0 0 0 RG", 2.8), ("0.9 0.08 0.08 RG", 1.5)] {
            s.push_str(&format!(
                "{colour} {width} w {a:.2} {b:.2} {bw:.2} {bh:.2} re S\n"
            ));
        }
    }
    s.push_str("Q\n");
    s
}
