//! Unit tests of `resolve.rs`: registration statuses, deliverable owners,
//! retry waits.

use super::*;
use unicode_normalization::UnicodeNormalization;

fn vehicle(kind: &str, status: &str) -> Vehicle {
    Vehicle {
        plate_text: "30A12345".into(),
        plate_colour: "white".into(),
        vehicle_type: kind.into(),
        make: "-".into(),
        colour: "-".into(),
        registration_status: status.into(),
        owner_id: "o1".into(),
    }
}

#[test]
fn a_registration_that_does_not_fit_what_the_camera_saw_is_for_a_person() {
    let car = vehicle("car", "active");
    assert_eq!(registration_status(&car, Some("car")), "resolved");
    assert_eq!(
        registration_status(&car, Some("truck")),
        "resolved",
        "four wheels mix"
    );
    assert_eq!(
        registration_status(&car, Some("motorcycle")),
        "vehicle_mismatch"
    );
    let bike = vehicle("Xe máy", "active");
    assert_eq!(registration_status(&bike, Some("car")), "vehicle_mismatch");
    assert_eq!(registration_status(&bike, Some("motorcycle")), "resolved");
    // The registry's own Vietnamese wording, composed or not.
    let nfd: String = "Ô tô con".nfd().collect();
    assert_ne!(nfd, "Ô tô con");
    assert_eq!(
        registration_status(&vehicle(&nfd, "active"), Some("motorcycle")),
        "vehicle_mismatch"
    );
    assert_eq!(
        registration_status(
            &vehicle("xe gắn máy", &"Còn hiệu lực".nfd().collect::<String>()),
            Some("car")
        ),
        "vehicle_mismatch"
    );
    // A type that cannot be read is no licence to fine: a person compares.
    for unread in ["unknown", "", "khác", "Loại 3"] {
        assert_eq!(
            registration_status(&vehicle(unread, "active"), Some("car")),
            "vehicle_type_unknown",
            "{unread:?}"
        );
    }
    // The demo registry's invented registrations have no type.
    assert_eq!(
        registration_status(&vehicle("unknown", FICTITIOUS), Some("car")),
        "resolved"
    );
    // Nothing to compare with when the camera gave no class.
    assert_eq!(
        registration_status(&vehicle("unknown", "active"), None),
        "resolved"
    );
    assert_eq!(registration_status(&car, None), "resolved");
    assert_eq!(
        registration_status(&vehicle("car", "Stolen"), Some("car")),
        "registration_not_active"
    );
    assert_eq!(
        registration_status(&vehicle("car", "fictitious-demo"), Some("car")),
        "resolved"
    );
}

/// Only statuses known to be active count as active: an unknown word,
/// or one that contains an active word (`inactive`, `hết hiệu lực`), is
/// held for a person.
#[test]
fn only_known_active_registration_statuses_count_as_active() {
    for active in [
        "active",
        " Active ",
        "VALID",
        "registered",
        "Còn hiệu lực",
        "hiệu lực",
        "đang hoạt động",
        "Đã đăng ký",
    ] {
        assert_eq!(
            registration_status(&vehicle("car", active), Some("car")),
            "resolved",
            "{active:?}"
        );
    }
    for not_active in [
        "inactive",
        "cancelled",
        "canceled",
        "hết hiệu lực",
        "đã hủy",
        "đã huỷ",
        "deregistered",
        "revoked",
        "expired",
        "suspended",
        "thu hồi",
        "mất cắp",
        "pending",
        "",
        "active?",
    ] {
        assert_eq!(
            registration_status(&vehicle("car", not_active), Some("car")),
            "registration_not_active",
            "{not_active:?}"
        );
    }
}

#[test]
fn only_a_resolved_lookup_gives_an_owner_to_tell() {
    let o = || Some("o1".to_string());
    assert_eq!(deliverable_owner(Some("resolved"), o()), o());
    for s in [
        "vehicle_mismatch",
        "registration_not_active",
        "pending",
        "error",
        "unresolved",
    ] {
        assert_eq!(deliverable_owner(Some(s), o()), None, "{s}");
    }
    assert_eq!(deliverable_owner(None, o()), None);
    assert_eq!(deliverable_owner(Some("resolved"), None), None);
    assert!(DELIVERABLE_OWNER_SQL.contains(&format!("e.owner_status = '{RESOLVED}'")));
}

#[test]
fn failed_lookups_wait_longer_each_time() {
    assert_eq!(retry_wait_ms(0), RETRY_BASE_MS);
    assert_eq!(retry_wait_ms(1), RETRY_BASE_MS);
    assert_eq!(retry_wait_ms(2), 2 * RETRY_BASE_MS);
    assert_eq!(retry_wait_ms(3), 4 * RETRY_BASE_MS);
    assert_eq!(retry_wait_ms(5), RETRY_MAX_MS);
    assert_eq!(retry_wait_ms(i64::MAX), RETRY_MAX_MS);
}
