//! Single sign-on, steps 5 and 6: the provider's role claim mapped to a
//! console role, and the account and session of the person.

use serde_json::{Map, Value};
use sqlx::Row;

use super::{SsoError, token};
use crate::accounts::{self, AccountError, User};
use crate::config::SsoConfig;
use crate::db::{Db, now_ms};
use crate::workflow::Role;

/// Step 5b: the provider's roles and the one console role they map to.
pub(super) fn map_role(
    cfg: &SsoConfig,
    claims: &Map<String, Value>,
) -> Result<(Vec<String>, Role), SsoError> {
    let theirs: Vec<String> = match claim(claims, &cfg.role_claim) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    let mut ours: Vec<Role> = theirs
        .iter()
        .filter_map(|r| cfg.role_map.get(r))
        .filter_map(|r| Role::parse(r))
        .collect();
    ours.sort_by_key(|r| r.as_str());
    ours.dedup();
    match ours.as_slice() {
        [one] => Ok((theirs, *one)),
        [] => Err(SsoError::NoRole {
            claim: cfg.role_claim.clone(),
            found: theirs,
        }),
        _ => Err(SsoError::SeveralRoles(theirs)),
    }
}

/// A claim by dotted path (`realm_access.roles`).
pub(super) fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut v = claims.get(parts.next()?)?;
    for p in parts {
        v = v.get(p)?;
    }
    Some(v)
}

/// A username for a new account: `preferred_username` (or the e-mail's
/// local part) folded to what local usernames allow, else one made from the
/// subject.
fn username_of(claims: &Map<String, Value>, issuer: &str, sub: &str) -> (String, String) {
    let tag = &token::digest(&format!("{issuer}\n{sub}"))[..10];
    let wanted = claims
        .get("preferred_username")
        .and_then(Value::as_str)
        .or_else(|| {
            claims
                .get("email")
                .and_then(Value::as_str)
                .and_then(|e| e.split('@').next())
        })
        .unwrap_or_default();
    let folded: String = wanted
        .to_lowercase()
        .chars()
        .map(|c| match fold_vietnamese(c) {
            c if c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c) => c,
            _ => '-',
        })
        .take(53)
        .collect();
    let folded = folded.trim_matches('-').to_string();
    if folded.len() >= 3 {
        (folded.clone(), format!("{folded}-{tag}"))
    } else {
        (format!("sso-{tag}"), format!("sso-{tag}-2"))
    }
}

/// A lower-case Vietnamese letter without its marks (`ễ` → `e`, `đ` → `d`).
fn fold_vietnamese(c: char) -> char {
    const GROUPS: [(char, &str); 7] = [
        ('a', "àáảãạăằắẳẵặâầấẩẫậ"),
        ('e', "èéẻẽẹêềếểễệ"),
        ('i', "ìíỉĩị"),
        ('o', "òóỏõọôồốổỗộơờớởỡợ"),
        ('u', "ùúủũụưừứửữự"),
        ('y', "ỳýỷỹỵ"),
        ('d', "đ"),
    ];
    GROUPS
        .iter()
        .find(|(_, marked)| marked.contains(c))
        .map_or(c, |(plain, _)| *plain)
}

/// Step 6: the account and the session.
pub(super) async fn sign_in(
    db: &Db,
    issuer: &str,
    claims: &Map<String, Value>,
    role: Role,
) -> Result<(User, accounts::NewSession), SsoError> {
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let disabled =
        sqlx::query("SELECT disabled_at FROM users WHERE sso_issuer = $1 AND sso_subject = $2")
            .bind(issuer)
            .bind(sub)
            .fetch_optional(db.pool())
            .await?;
    if let Some(r) = disabled
        && r.try_get::<Option<i64>, _>(0)?.is_some()
    {
        return Err(SsoError::Disabled);
    }
    let (first, second) = username_of(claims, issuer, sub);
    let name: String = claims
        .get("name")
        .and_then(Value::as_str)
        .or_else(|| claims.get("preferred_username").and_then(Value::as_str))
        .unwrap_or(&first)
        .trim()
        .chars()
        .take(100)
        .collect();
    let name = if name.is_empty() { first.clone() } else { name };
    let user = match accounts::upsert_sso_user(db, issuer, sub, &first, &name, role).await {
        Err(AccountError::Exists(_)) => {
            accounts::upsert_sso_user(db, issuer, sub, &second, &name, role).await
        }
        other => other,
    }
    .map_err(|e| SsoError::Internal(format!("account: {e}")))?;
    let session = accounts::start_session(db, &user, now_ms()).await?;
    Ok((user, session))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_by_path_and_usernames() {
        let c: Map<String, Value> = serde_json::from_value(json!({
            "sub": "abc", "preferred_username": "Nguyễn.Văn.A@CA.HN",
            "realm_access": {"roles": ["ioc-police"]}
        }))
        .unwrap();
        assert_eq!(
            claim(&c, "realm_access.roles"),
            Some(&json!(["ioc-police"]))
        );
        assert_eq!(claim(&c, "realm_access.nothing"), None);
        let (first, second) = username_of(&c, "https://idp", "abc");
        assert_eq!(first, "nguyen.van.a-ca.hn");
        assert!(second.starts_with("nguyen.van.a-ca.hn-") && second.len() == first.len() + 11);
        let d: Map<String, Value> =
            serde_json::from_value(json!({"preferred_username": "Đặng Thùy"})).unwrap();
        assert_eq!(username_of(&d, "https://idp", "x").0, "dang-thuy");
        let none = Map::new();
        assert!(
            username_of(&none, "https://idp", "abc")
                .0
                .starts_with("sso-")
        );
        assert!(crate::sso::is_loopback(
            &url::Url::parse("http://127.0.0.1:9/").unwrap()
        ));
        assert!(crate::sso::is_loopback(
            &url::Url::parse("http://[::1]:9/").unwrap()
        ));
        assert!(!crate::sso::is_loopback(
            &url::Url::parse("http://10.0.0.1/").unwrap()
        ));
        assert_eq!(
            super::super::error::esc("<a href='x'>&"),
            "&lt;a href=&#39;x&#39;&gt;&amp;"
        );
    }
}
