//! The plain-text files of the evidence package: `SHA256SUMS` (in the
//! format `sha256sum -c` reads, with the signed manifest's hashes as comment
//! lines so files the server never received are still accounted for),
//! `signature.txt` (the signature check, machine-readable `key: value`
//! lines with RFC 3339 times, plus the result in Vietnamese) and
//! `README.txt` (what each file of the package is).

use protocol::{ViolationEvent, sha256_hex};
use time::OffsetDateTime;

use super::{Parts, record};

/// `sha256sum` lines for every file, then the signed manifest as comments.
pub(super) fn sums(
    files: &[(String, Vec<u8>)],
    event: &ViolationEvent,
    originals: &[(record::EvidenceRow, Vec<u8>)],
) -> String {
    let mut s =
        String::from("# SHA-256 of every file in this package; check: sha256sum -c SHA256SUMS\n");
    for (name, bytes) in files {
        s.push_str(&format!("{}  {name}\n", sha256_hex(bytes)));
    }
    s.push_str(
        "# Evidence hashes in the device's signed manifest (event.json, payload.evidence):\n",
    );
    for item in &event.evidence {
        let stored = originals.iter().any(|(r, _)| r.name == item.name);
        s.push_str(&format!(
            "# {}  {} ({}, {} bytes, {})\n",
            item.sha256,
            item.name,
            crate::ingest::enum_text(&item.role),
            item.size_bytes,
            if stored {
                "in originals/"
            } else {
                "not received by the server"
            }
        ));
    }
    s
}

pub(super) fn signature(p: &Parts) -> String {
    let s = &p.signature;
    let d = s.device.as_ref();
    let ms = |v: Option<i64>| v.map_or("-".to_string(), rfc3339_ms);
    let signing = p
        .signed
        .signing_bytes()
        .map_or_else(|e| format!("(not computable: {e})"), |b| sha256_hex(&b));
    format!(
        "Ed25519 signature of event.json, checked by the server\n\
         Kiểm tra chữ ký số Ed25519 của event.json\n\n\
         result: {}\nkết quả: {}\ndetail: {}\nchecked_at: {}\n\n\
         event_id: {}\ndevice_id: {}\ndevice_site: {}\npublic_key_ed25519_hex: {}\n\
         enrolled_at: {}\nrevoked_at: {}\nrevoked_reason: {}\n\n\
         signature_hex: {}\nsigned_bytes_sha256: {}\nevent_json_sha256: {}\n\n\
         The signature covers the canonical JSON (RFC 8785) of the envelope in event.json\n\
         without its \"signature\" member; the payload lists every evidence file's SHA-256.\n\
         Verify with any Ed25519 implementation: verify(public_key, canonical_bytes, signature).\n",
        s.result_en(),
        s.result_vi(),
        s.detail,
        rfc3339(s.checked_at),
        p.loaded.case.event_id,
        p.signed.device_id(),
        d.map_or("-", |d| d.site.as_str()),
        s.key_hex.as_deref().unwrap_or("-"),
        ms(d.map(|d| d.enrolled_at)),
        d.and_then(|d| d.revoked_at)
            .map_or("not revoked".to_string(), rfc3339_ms),
        d.and_then(|d| d.revoked_reason.clone())
            .unwrap_or_else(|| "-".into()),
        p.signed.signature_hex(),
        signing,
        sha256_hex(p.loaded.case.signed_json.as_bytes()),
    )
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn rfc3339_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_or_else(|_| ms.to_string(), rfc3339)
}

/// What each file of the package is.
pub(super) fn readme(event_id: &str) -> String {
    format!(
        "Evidence package of case {event_id} / Gói chứng cứ của vụ việc {event_id}\n\n\
         summary.pdf       printable summary in Vietnamese / bản tóm tắt để in\n\
         event.json        the event as the camera's device signed it, unchanged\n\
         signature.txt     the device signature checked with its enrolled key\n\
         originals/        the evidence files as the device sent them (hashes in event.json)\n\
         annotated/        copies of the full-frame stills with the vehicle marked by the server:\n\
         \x20                 yellow = signed track, red ring = estimated position at the event time,\n\
         \x20                 red box = vehicle (found from the vehicle crop; none when not found).\n\
         \x20                 Not evidence by themselves: compare with originals/.\n\
         audit.jsonl       the case's audit-log entries, then the check of the whole log's hash chain\n\
         transitions.json  every state change of the case (who, role, when, why)\n\
         SHA256SUMS        SHA-256 of every file here: sha256sum -c SHA256SUMS\n\n\
         Personal data of the vehicle's owner is not included; the court obtains it from the\n\
         police through the vehicle registration database.\n\
         Không có dữ liệu cá nhân của chủ phương tiện; Tòa án nhận thông tin đó từ cơ quan Công an.\n"
    )
}
