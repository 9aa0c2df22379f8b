//! Sanity checks for message fields and the limits they enforce. Each check
//! takes the field's JSON path and returns a [`ValidationError`] that names
//! it and says why it failed. Messages run these in their `validate` method;
//! the helpers are public so edge and server code can check values early.

use crate::canonical::MAX_SAFE_INTEGER;
use crate::error::ValidationError;
use crate::topics;

/// Most evidence files one event may list.
pub const MAX_EVIDENCE_ITEMS: usize = 16;
/// Largest evidence file, bytes (512 MiB; a clip is a few MiB).
pub const MAX_EVIDENCE_BYTES: u64 = 512 * 1024 * 1024;
/// Most points in a track summary.
pub const MAX_TRACK_POINTS: usize = 64;
/// Most cameras one heartbeat may report.
pub const MAX_CAMERAS: usize = 32;
/// Most alarms one heartbeat may carry.
pub const MAX_ALARMS: usize = 32;
/// Longest short text field (software version, clock source, alarm code).
pub const MAX_SHORT_TEXT: usize = 64;
/// Longest free-text message (an ack's reject message), in characters.
pub const MAX_MESSAGE_TEXT: usize = 512;

/// An identifier that also appears in topics (device, site, camera): 1 to
/// [`topics::MAX_ID_LEN`] characters from `A-Z a-z 0-9 - _ .`.
pub fn check_id(field: &str, value: &str) -> Result<(), ValidationError> {
    match topics::id_problem(value) {
        None => Ok(()),
        Some(why) => Err(ValidationError::new(field, why)),
    }
}

/// Non-empty printable ASCII (U+0020..U+007E), at most `max` characters.
pub fn check_ascii_text(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters, got {}", value.len()),
        ));
    }
    if let Some(c) = value.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(ValidationError::new(
            field,
            format!("must be printable ASCII, found {c:?}"),
        ));
    }
    Ok(())
}

/// Any Unicode text without control characters, at most `max` characters
/// (may be empty).
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    let count = value.chars().count();
    if count > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters, got {count}"),
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(ValidationError::new(
            field,
            format!("must not contain control characters, found {c:?}"),
        ));
    }
    Ok(())
}

/// A finite number within `min..=max`.
pub fn check_range(field: &str, value: f64, min: f64, max: f64) -> Result<(), ValidationError> {
    if !value.is_finite() {
        return Err(ValidationError::new(
            field,
            format!("must be a finite number, got {value}"),
        ));
    }
    if value < min || value > max {
        return Err(ValidationError::new(
            field,
            format!("must be within {min}..={max}, got {value}"),
        ));
    }
    Ok(())
}

/// A confidence or probability: finite, within `0..=1`.
pub fn check_unit_interval(field: &str, value: f64) -> Result<(), ValidationError> {
    check_range(field, value, 0.0, 1.0)
}

/// An integer small enough to be canonical (at most 2^53 − 1).
pub fn check_safe_integer(field: &str, value: u64) -> Result<(), ValidationError> {
    if value > MAX_SAFE_INTEGER {
        return Err(ValidationError::new(
            field,
            format!("must be at most 2^53 - 1, got {value}"),
        ));
    }
    Ok(())
}

/// A time a device reports: within the years 1970 to 2199. A device clock
/// may be wrong, but a time outside these years is no clock at all, and
/// would overflow the date arithmetic downstream (a time zone shift of
/// 9999-12-31T23:00Z is out of range).
pub fn check_time(field: &str, value: time::OffsetDateTime) -> Result<(), ValidationError> {
    if !(1970..=2199).contains(&value.year()) {
        return Err(ValidationError::new(
            field,
            format!("must be within the years 1970 to 2199, got {value}"),
        ));
    }
    Ok(())
}

/// A list with at most `max` items (and at least `min`).
pub fn check_count(field: &str, len: usize, min: usize, max: usize) -> Result<(), ValidationError> {
    if len < min || len > max {
        return Err(ValidationError::new(
            field,
            format!("must have {min} to {max} items, got {len}"),
        ));
    }
    Ok(())
}

/// A SHA-256 digest written as exactly 64 lowercase hex characters.
pub fn check_sha256_hex(field: &str, value: &str) -> Result<(), ValidationError> {
    let ok = value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!(
                "must be 64 lowercase hex characters (a SHA-256 digest), got {:?}",
                truncate(value, 80)
            ),
        ))
    }
}

/// At most `max` characters of `s`, for echoing untrusted text in errors.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_interval() {
        assert!(check_unit_interval("c", 0.0).is_ok());
        assert!(check_unit_interval("c", 1.0).is_ok());
        let err = check_unit_interval("plate.confidence", 1.2).unwrap_err();
        assert_eq!(err.field, "plate.confidence");
        assert!(err.reason.contains("1.2"));
        assert!(check_unit_interval("c", f64::NAN).is_err());
        assert!(check_unit_interval("c", -0.01).is_err());
    }

    #[test]
    fn sha256() {
        let good = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(check_sha256_hex("h", good).is_ok());
        assert!(check_sha256_hex("h", &good.to_uppercase()).is_err());
        assert!(check_sha256_hex("h", &good[1..]).is_err());
        assert!(check_sha256_hex("h", &format!("{}g", &good[1..])).is_err());
    }

    #[test]
    fn text() {
        assert!(check_ascii_text("v", "edge-agent 1.4.2", 64).is_ok());
        assert!(check_ascii_text("v", "", 64).is_err());
        assert!(check_ascii_text("v", "é", 64).is_err());
        assert!(check_text("m", "Biển số không hợp lệ", 64).is_ok());
        assert!(check_text("m", "a\nb", 64).is_err());
        assert_eq!(truncate("abcdef", 3), "abc…");
    }
}
