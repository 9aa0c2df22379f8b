//! The plain-text files of the evidence package: `SHA256SUMS` (in the
//! format `sha256sum -c` reads, with the signed manifest's hashes as comment
//! lines so files not in the package are still accounted for: never
//! received, or deleted under retention), `signature.txt` (the signature
//! check, machine-readable `key: value` lines with RFC 3339 times, plus the
//! result in Vietnamese), `VERIFY.txt` (how to check the package offline:
//! the server's key and signature over `SHA256SUMS`, and what the audit
//! chain does and does not prove) and `README.txt` (what each file of the
//! package is).

use protocol::{ViolationEvent, sha256_hex};
use time::OffsetDateTime;

use super::Parts;
use super::record::{FileState, Loaded};

/// `sha256sum` lines for every file, then the signed manifest as comments.
pub(super) fn sums(files: &[(String, Vec<u8>)], event: &ViolationEvent, loaded: &Loaded) -> String {
    let mut s =
        String::from("# SHA-256 of every file in this package; check: sha256sum -c SHA256SUMS\n");
    for (name, bytes) in files {
        s.push_str(&format!("{}  {name}\n", sha256_hex(bytes)));
    }
    if let Some(h) = &event.site_config_sha256 {
        s.push_str(&format!(
            "# Site file the device judged by (stop lines, lanes, calibration), as signed: sha256 {h}\n"
        ));
    }
    s.push_str(
        "# Evidence hashes in the device's signed manifest (event.json, payload.evidence):\n",
    );
    for item in &event.evidence {
        let shown = crate::integrity::frame_text(item, false)
            .map(|t| format!(", {t}"))
            .unwrap_or_default();
        s.push_str(&format!(
            "# {}  {} ({}, {} bytes{shown}, {})\n",
            item.sha256,
            item.name,
            crate::ingest::enum_text(&item.role),
            item.size_bytes,
            file_state_en(loaded.file_state(&item.name)),
        ));
    }
    s
}

/// Where a manifest's file is, in English.
pub(super) fn file_state_en(state: FileState) -> String {
    match state {
        FileState::Stored => "in originals/".into(),
        FileState::Purged {
            received_at,
            purged_at,
        } => format!(
            "received by the server at {}, deleted under the retention policy at {}",
            rfc3339_ms(received_at),
            rfc3339_ms(purged_at)
        ),
        FileState::NotReceived => "not received by the server".into(),
    }
}

/// How to check the package offline (`VERIFY.txt`), for the server key
/// `key_hex` that signed its `SHA256SUMS`.
pub(super) fn verify(key_hex: &str) -> String {
    format!(
        "How to check this package without the server\n\
         Cách kiểm tra gói chứng cứ này mà không cần máy chủ\n\n\
         1. Files. sha256sum -c SHA256SUMS checks every file of the package but SHA256SUMS\n\
         \x20  and SHA256SUMS.sig against the hashes listed in SHA256SUMS.\n\n\
         2. The server's signature. SHA256SUMS.sig is an Ed25519 signature (RFC 8032), hex-encoded,\n\
         \x20  over the exact bytes of the file SHA256SUMS, made when the package was exported, with\n\
         \x20  the key of the server that holds the case:\n\n\
         \x20  server_public_key_ed25519_hex: {key_hex}\n\n\
         \x20  The key is worth only what it is checked against: compare it with the server key the\n\
         \x20  city published (`ingest-server key show` on its server; the key every camera device is\n\
         \x20  given at installation). A package signed with another key proves nothing.\n\
         \x20  With OpenSSL 3 and xxd, in the unpacked package:\n\
         \x20    echo 302a300506032b6570032100{key_hex} | xxd -r -p > server.der\n\
         \x20    openssl pkey -pubin -inform DER -in server.der -out server.pem\n\
         \x20    xxd -r -p SHA256SUMS.sig > SHA256SUMS.sig.bin\n\
         \x20    openssl pkeyutl -verify -pubin -inkey server.pem -rawin -in SHA256SUMS \\\n\
         \x20      -sigfile SHA256SUMS.sig.bin\n\
         \x20  (\"Signature Verified Successfully\"). With 1 and 2, a file changed after the export\n\
         \x20  (a transition, an audit line, a picture) is found, even with SHA256SUMS computed again.\n\
         \x20  The signature says what the server exported, not that its database was right: for the\n\
         \x20  event and its files that is the device's own signature (3).\n\n\
         3. The device's signature: signature.txt (event.json signed with the camera device's key;\n\
         \x20  the manifest in event.json lists every evidence file's SHA-256).\n\n\
         4. The audit trail. Each line of audit.jsonl but the last is an entry of the server's\n\
         \x20  hash-chained audit log. Its hash is the SHA-256 of the compact JSON array\n\
         \x20  [seq, at, actor, role, action, subject, detail, prev_hash] (UTF-8, no spaces, detail as\n\
         \x20  the string it is; Python: json.dumps(a, separators=(',', ':'), ensure_ascii=False)),\n\
         \x20  so each entry can be checked against its own hash here. prev_hash is the hash of the\n\
         \x20  entry before it in the whole log (seq - 1), which mostly concerns other cases and is\n\
         \x20  not in the package: only where two entries of this case are consecutive (seq n and\n\
         \x20  n + 1) can the link be checked here. So the package alone does not show that no entry\n\
         \x20  of this case was removed or added. The last line is the server's check of the whole\n\
         \x20  chain at the export (entries, head hash): compare that head hash with one written down\n\
         \x20  elsewhere, or have the log checked on the server (`ingest-server audit verify`).\n\
         \x20  transitions.json is not chained: it is the case's state changes as the database holds\n\
         \x20  them, each made together with an audit entry of the same action.\n"
    )
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
         VERIFY.txt        how to check the package offline: the server's key, what the audit chain proves\n\
         SHA256SUMS        SHA-256 of every file here: sha256sum -c SHA256SUMS\n\
         SHA256SUMS.sig    the server's Ed25519 signature over SHA256SUMS (see VERIFY.txt)\n\n\
         Personal data of the vehicle's owner is not included; the court obtains it from the\n\
         police through the vehicle registration database.\n\
         Không có dữ liệu cá nhân của chủ phương tiện; Tòa án nhận thông tin đó từ cơ quan Công an.\n"
    )
}
