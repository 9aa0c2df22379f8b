//! Security headers on every answer of the HTTP server.
//!
//! The console shows personal data to police and the citizen app shows a
//! person their fines: neither may be framed by another site (clickjacking
//! a "confirm" or "pay" button), nor run a script the server did not
//! write. So every HTML page carries a `Content-Security-Policy`:
//!
//! - `frame-ancestors 'none'` (and `X-Frame-Options: DENY` for browsers
//!   that predate it);
//! - scripts from this origin, and inline only those the pages are built
//!   with, each allowed by its SHA-256 ([`inline_scripts`]; the console's
//!   and the app's `inline_scripts()` list them). An injected `<script>`
//!   or `on…=` attribute does not run. A new inline script must be listed
//!   there, or browsers refuse it (`tests/hardening.rs` checks the pages);
//! - styles from this origin and inline (the console's page frame carries
//!   its style sheet, and a few elements a `style` attribute: a style
//!   cannot run code);
//! - everything else from this origin only, no plugins, no `<base>`.
//!
//! `form-action` is left out on purpose: Chrome applies it to the redirect
//! that follows a form, and the citizen's "pay" form is answered with a
//! redirect to the payment gateway.
//!
//! Every answer also gets `X-Content-Type-Options: nosniff` (an uploaded
//! contest photo or evidence file is never read as HTML or script) and,
//! unless the handler chose a stricter one, `Referrer-Policy: same-origin`
//! (a case id in the address does not leave the site).

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::Response;
use base64::Engine;
use sha2::{Digest, Sha256};

/// The policy of HTML pages (see the module comment).
static POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
    let hashes: String = crate::console::inline_scripts()
        .into_iter()
        .chain(crate::citizen::inline_scripts())
        .map(|s| format!(" 'sha256-{}'", script_hash(s)))
        .collect();
    let policy = format!(
        "default-src 'self'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; \
object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    );
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"))
});

/// The base64 SHA-256 of an inline script's text, as a CSP source names it.
pub fn script_hash(script: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(script.as_bytes()))
}

/// The texts of the inline `<script>` elements of an HTML fragment (those
/// without attributes, the only kind the pages write).
pub fn inline_scripts(html: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script>") {
        let after = &rest[start + "<script>".len()..];
        let Some(end) = after.find("</script>") else {
            break;
        };
        found.push(&after[..end]);
        rest = &after[end..];
    }
    found
}

/// Adds the security headers to an answer (see the module comment).
pub(crate) fn protect(mut res: Response) -> Response {
    let html = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"));
    let h = res.headers_mut();
    if html && !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, POLICY.clone());
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::REFERRER_POLICY) {
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_script_is_allowed_by_its_hash() {
        let policy = POLICY.to_str().unwrap().to_string();
        let scripts: Vec<&str> = crate::console::inline_scripts()
            .into_iter()
            .chain(crate::citizen::inline_scripts())
            .collect();
        assert!(scripts.len() >= 6, "{scripts:?}");
        for s in scripts {
            assert!(!s.trim().is_empty() && !s.contains("<script"), "{s}");
            assert!(policy.contains(&script_hash(s)), "{s}");
        }
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert_eq!(
            inline_scripts("a<script>x()</script>b<script>y()</script>"),
            ["x()", "y()"]
        );
    }
}
