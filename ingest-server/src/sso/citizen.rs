//! The citizen app's client (`[citizen_sso]`): citizens sign in through the
//! national identity provider (VNeID) with `GET /app/sso/login` and
//! `GET /app/sso/callback`; the flow is the shared one of [`super`]. What a
//! verified sign-in becomes:
//!
//! 5. The national ID number is read from the claim `national_id_claim`
//!    (default `national_id`, a dotted path allowed) and the name from
//!    `name_claim` (default `name`), from the ID token or else from
//!    userinfo. The number must be a string of exactly 12 digits (the
//!    citizen identity number, CCCD); a missing one, a JSON number (whose
//!    leading zeros are gone) or anything else is refused with a page that
//!    says so, and no session is started. A missing name is not a reason
//!    to refuse: the app then says "Công dân".
//! 6. [`citizen::start_session`] starts a session bound to that number, its
//!    cookie ([`citizen::session_cookie`], `SameSite=Lax`) is set and the
//!    browser is sent on with a 303 to where the sign-in began (the case a
//!    notice linked to: `GET /app/sso/login?next=/app/…` keeps it in the
//!    cookie `tv_app_next`, checked by [`citizen::safe_next`] when set and
//!    when read), else to `/app/`. (A redirect is enough here,
//!    unlike the console's `SameSite=Strict` cookie: browsers send a Lax
//!    cookie on a top-level GET navigation even when the redirect chain
//!    began at the provider's site.)
//!
//! Audit: a sign-in is `citizen.login`, a refusal `citizen.login_failed`
//! (with `reason`, e.g. `no_national_id`, `malformed_national_id`,
//! `state_replayed`). The citizen appears as `citizen:` and the first 16
//! hex digits of an HMAC-SHA256 of the national ID number under a key the
//! server keeps in its database ([`actor_id`]; a plain digest of a 12-digit
//! number can be reversed by trying them all), the same actor the citizen
//! app writes (`citizen_actor_id` in `src/citizen/pages.rs`); the number
//! itself is never written to the log, and the provider's subject (which
//! may be that number) only as a keyed digest too ([`audited_subject`]).

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::error::{self, refuse};
use super::{Client, Kind, Oidc, SsoError, account};
use crate::audit::{self, Who};
use crate::citizen;
use crate::config::CitizenSsoConfig;
use crate::db::{Db, now_ms};
use crate::web::ApiContext;
use crate::workflow::Role;

/// The name shown when the provider gives none.
const NO_NAME: &str = "Công dân";
/// The actor of a refusal when no national ID number is known.
const UNKNOWN: &str = "citizen-sso";

/// The citizen app's configured provider with its client and caches.
pub struct CitizenSso {
    cfg: CitizenSsoConfig,
    oidc: Oidc,
}

impl CitizenSso {
    /// The provider of the configuration (nothing is fetched yet).
    pub fn new(cfg: &CitizenSsoConfig) -> CitizenSso {
        let oidc = Oidc::new(Client {
            kind: Kind::Citizen,
            issuer: &cfg.issuer,
            client_id: &cfg.client_id,
            secret: cfg.secret(),
            redirect_url: &cfg.redirect_url,
            extra_scopes: &cfg.extra_scopes,
            ca_file: &cfg.ca_file,
        });
        CitizenSso {
            cfg: cfg.clone(),
            oidc,
        }
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        self.oidc.issuer()
    }
}

/// The routes: `GET /app/sso/login`, `GET /app/sso/callback`.
pub fn routes() -> Router<ApiContext> {
    Router::new()
        .route("/app/sso/login", get(login))
        .route("/app/sso/callback", get(callback))
}

/// How a citizen appears in the audit log: a keyed digest, not the ID
/// number (the same as the citizen app's `citizen_actor_id`). The key is
/// the database's ([`load_actor_key`], at start); before that (a tool that
/// never started the server) a key of this process alone, so nothing
/// reversible is ever written.
pub fn actor_id(national_id: &str) -> String {
    format!("citizen:{}", keyed(national_id.as_bytes()))
}

/// The provider's subject as the audit log names it: `hmac:` and a keyed
/// digest under the key of [`actor_id`] (its input set apart, so it never
/// equals an actor). A plain SHA-256 would not do: VNeID's subject may be
/// the 12-digit ID number, and all 10^12 of those are hashed in minutes.
pub fn audited_subject(sub: &str) -> String {
    format!("hmac:{}", keyed(format!("oidc-sub\n{sub}").as_bytes()))
}

/// The first 16 hex digits of the HMAC-SHA256 of `data` under the key of
/// [`load_actor_key`].
fn keyed(data: &[u8]) -> String {
    let key = ACTOR_KEY.get_or_init(|| {
        let bytes: [u8; 32] = rand::random();
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes)
    });
    let tag = ring::hmac::sign(key, data);
    hex::encode(tag.as_ref())[..16].to_string()
}

/// The key of [`actor_id`], once loaded.
static ACTOR_KEY: std::sync::OnceLock<ring::hmac::Key> = std::sync::OnceLock::new();

/// Loads (making it on the first start) the key that names citizens in the
/// audit log, shared by every replica through the database.
pub async fn load_actor_key(db: &Db) -> Result<(), crate::db::DbError> {
    let fresh: [u8; 32] = rand::random();
    sqlx::query(
        "INSERT INTO server_secrets (name, value, created_at) VALUES ('citizen_actor_id', $1, $2) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(hex::encode(fresh))
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    let value: String =
        sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = 'citizen_actor_id'")
            .fetch_one(db.pool())
            .await?;
    let bytes = hex::decode(value.trim()).unwrap_or_default();
    if bytes.len() < 32 {
        tracing::error!(
            "the stored citizen actor key is unusable; citizens are named under this process's own key"
        );
        return Ok(());
    }
    let _ = ACTOR_KEY.set(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes));
    Ok(())
}

/// Whether `s` is a citizen identity number: exactly 12 ASCII digits.
pub fn is_national_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The national ID number of the claims, or the refusal and, when the
/// claim held a string, that string (to be audited as a digest only).
fn national_id(
    claims: &Map<String, Value>,
    path: &str,
) -> Result<String, (SsoError, Option<String>)> {
    let bad = |what: String, raw: Option<String>| {
        Err((
            SsoError::BadNationalId {
                claim: path.into(),
                what,
            },
            raw,
        ))
    };
    match account::claim(claims, path) {
        None | Some(Value::Null) => Err((SsoError::NoNationalId(path.into()), None)),
        Some(Value::String(s)) if s.is_empty() => Err((SsoError::NoNationalId(path.into()), None)),
        Some(Value::String(s)) if is_national_id(s) => Ok(s.clone()),
        Some(Value::String(s)) => {
            let n = s.chars().count();
            let digits = s.chars().all(|c| c.is_ascii_digit());
            let what = if digits {
                format!("{n} digits")
            } else {
                format!("{n} characters, not all digits")
            };
            bad(what, Some(s.clone()))
        }
        Some(Value::Number(_)) => bad(
            "a JSON number, not a string: its leading zeros are lost".into(),
            None,
        ),
        Some(_) => bad("not a string".into(), None),
    }
}

/// The citizen's name from the claims: trimmed, no control characters, at
/// most 100 characters; [`NO_NAME`] when there is none.
fn display_name(claims: &Map<String, Value>, path: &str) -> String {
    let name: String = account::claim(claims, path)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .chars()
        .take(100)
        .collect();
    if name.is_empty() {
        NO_NAME.into()
    } else {
        name
    }
}

#[derive(serde::Deserialize)]
struct NextQuery {
    #[serde(default)]
    next: String,
}

/// The cookie that carries `next` to the callback (`citizen::NEXT_COOKIE`,
/// only the sign-in's routes see it); `None` to remove it.
fn next_cookie(next: Option<&str>, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    let (value, age) = next.map_or(("", 0), |n| (n, 600));
    HeaderValue::from_str(&format!(
        "{}={value}; Path=/app/sso/; HttpOnly; SameSite=Lax; Max-Age={age}{secure}",
        citizen::NEXT_COOKIE
    ))
    .ok()
}

async fn login(
    State(ctx): State<ApiContext>,
    axum::extract::Query(q): axum::extract::Query<NextQuery>,
) -> Response {
    let db = ctx.ingestor.context().db.clone();
    let who = Who::anonymous(UNKNOWN);
    let Some(sso) = ctx.citizen_sso.clone() else {
        return refuse(&db, Kind::Citizen, SsoError::NotConfigured, &who, json!({})).await;
    };
    match sso.oidc.login(&db, ctx.secure_cookies).await {
        // Where the citizen was going (a path of this app only), kept for
        // the callback.
        Ok(mut r) => {
            let next = citizen::safe_next(&q.next);
            if let Some(c) = next_cookie(next, ctx.secure_cookies) {
                r.headers_mut().append(header::SET_COOKIE, c);
            }
            r
        }
        Err(e) => {
            let seen = json!({"issuer": sso.issuer(), "step": "login"});
            refuse(&db, Kind::Citizen, e, &who, seen).await
        }
    }
}

async fn callback(
    State(ctx): State<ApiContext>,
    headers: axum::http::HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let db = ctx.ingestor.context().db.clone();
    let Some(sso) = ctx.citizen_sso.clone() else {
        let who = Who::anonymous(UNKNOWN);
        return refuse(&db, Kind::Citizen, SsoError::NotConfigured, &who, json!({})).await;
    };
    let mut seen = json!({"issuer": sso.issuer(), "step": "callback"});
    // The string the provider gave as the ID number, when refused.
    let mut given: Option<String> = None;
    let outcome: Result<(String, String), SsoError> = async {
        let wanted = [
            sso.cfg.national_id_claim.as_str(),
            sso.cfg.name_claim.as_str(),
        ];
        let claims = sso
            .oidc
            .callback(&db, &headers, q.as_deref(), &wanted, &mut seen)
            .await?;
        let nid = national_id(&claims, &sso.cfg.national_id_claim).map_err(|(e, raw)| {
            given = raw;
            e
        })?;
        Ok((nid, display_name(&claims, &sso.cfg.name_claim)))
    }
    .await;
    let (nid, name) = match outcome {
        Ok(v) => v,
        Err(e) => {
            let who = Who::anonymous(&given.as_deref().map_or(UNKNOWN.into(), actor_id));
            return refuse(&db, Kind::Citizen, e, &who, seen).await;
        }
    };
    match signed_in(&db, &nid, &name, &seen, &headers).await {
        Ok((token, push_ids)) => {
            let mut h = error::no_store();
            h.append(
                header::SET_COOKIE,
                citizen::session_cookie(&token, ctx.secure_cookies),
            );
            // The browser's push cookie, rewritten to the ids it keeps;
            // left alone when none came (never cleared on a guess).
            if crate::console::cookie(&headers, citizen::PUSH_COOKIE).is_some() {
                let ids: Vec<&str> = push_ids.iter().map(String::as_str).collect();
                h.append(
                    header::SET_COOKIE,
                    citizen::push_cookie(&ids, ctx.secure_cookies),
                );
            }
            h.append(header::SET_COOKIE, sso.oidc.clear_cookie());
            // Back to the case the notice linked to, when the sign-in began
            // there: a path of this app only, checked again here.
            let next = crate::console::cookie(&headers, citizen::NEXT_COOKIE)
                .and_then(citizen::safe_next)
                .unwrap_or("/app/");
            if let Some(c) = next_cookie(None, ctx.secure_cookies) {
                h.append(header::SET_COOKIE, c);
            }
            h.insert(
                header::LOCATION,
                HeaderValue::from_str(next).unwrap_or(HeaderValue::from_static("/app/")),
            );
            (StatusCode::SEE_OTHER, h).into_response()
        }
        Err(e) => {
            let who = Who::anonymous(&actor_id(&nid));
            refuse(&db, Kind::Citizen, e, &who, seen).await
        }
    }
}

/// Step 6: the session and its audit entry (a session whose sign-in could
/// not be audited is removed again); the browser's push subscriptions of
/// someone else deleted, its own moved to the new session
/// ([`citizen::signed_in_browser`]); the cookie token and the push ids the
/// browser keeps.
async fn signed_in(
    db: &Db,
    nid: &str,
    name: &str,
    seen: &Value,
    headers: &axum::http::HeaderMap,
) -> Result<(String, Vec<String>), SsoError> {
    let now = now_ms();
    let session = citizen::start_session(db, nid, name, now).await?;
    let actor = actor_id(nid);
    let detail = json!({"method": "oidc", "issuer": seen["issuer"], "sub": seen["sub"]});
    let who = Who::new(actor.clone(), Role::System);
    let pushed = match citizen::signed_in_browser(db, nid, &session.token, headers).await {
        Ok(ids) => Ok(ids),
        Err(e) => Err(e.to_string()),
    };
    let recorded = match &pushed {
        Ok(_) => audit::record(db, now, &who, "citizen.login", &actor, &detail)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!("push subscriptions: {e}")),
    };
    if let Err(e) = recorded {
        tracing::error!(error = %e, "citizen sso: sign-in failed; session not handed out");
        let _ = sqlx::query("DELETE FROM citizen_sessions WHERE token_sha256 = $1")
            .bind(hex::encode(Sha256::digest(session.token.as_bytes())))
            .execute(db.pool())
            .await;
        return Err(SsoError::Internal("audit".into()));
    }
    Ok((session.token, pushed.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError};

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn check(v: Value) -> Result<String, &'static str> {
        national_id(&claims(v), "national_id").map_err(|(e, _)| e.reason())
    }

    #[test]
    fn national_id_is_exactly_twelve_digits() {
        assert_eq!(
            check(json!({"national_id": "001199012345"})),
            Ok("001199012345".into())
        );
        assert_eq!(check(json!({})), Err("no_national_id"));
        assert_eq!(check(json!({"national_id": null})), Err("no_national_id"));
        assert_eq!(check(json!({"national_id": ""})), Err("no_national_id"));
        for bad in [
            json!("00119901234"),
            json!("0011990123456"),
            json!("00119901234a"),
            json!(" 01199012345"),
            json!("００１１９９０１２３４５"),
            json!(1199012345),
            json!(["001199012345"]),
        ] {
            assert_eq!(
                check(json!({ "national_id": bad })),
                Err("malformed_national_id"),
                "{bad}"
            );
        }
        // The refusal never carries the number.
        let (e, raw) =
            national_id(&claims(json!({"national_id": "12345"})), "national_id").unwrap_err();
        assert!(!e.to_string().contains("12345"), "{e}");
        assert_eq!(raw.as_deref(), Some("12345"));
        // A dotted path.
        let nested = claims(json!({"vneid": {"cccd": "079203001122"}}));
        assert_eq!(
            national_id(&nested, "vneid.cccd").map_err(|_| ()),
            Ok("079203001122".into())
        );
    }

    #[test]
    fn names_and_actors() {
        let c = claims(json!({"name": "  Hoàng Thị\u{0} Giang ", "given": 3}));
        assert_eq!(display_name(&c, "name"), "Hoàng Thị Giang");
        assert_eq!(display_name(&c, "given"), NO_NAME);
        assert_eq!(display_name(&c, "missing"), NO_NAME);
        let a = actor_id("001199012345");
        assert!(a.starts_with("citizen:") && a.len() == 8 + 16, "{a}");
        assert!(!a.contains("001199012345"));
        assert_ne!(a, actor_id("001088054321"));
    }

    fn good() -> CitizenSsoConfig {
        CitizenSsoConfig {
            issuer: "https://sso.dichvucong.gov.vn".into(),
            client_id: "tv-citizen".into(),
            client_secret: "s3cret".into(),
            redirect_url: "https://phatnguoi.example.gov.vn/app/sso/callback".into(),
            ..CitizenSsoConfig::default()
        }
    }

    fn field_of(c: CitizenSsoConfig) -> String {
        let cfg = Config {
            citizen_sso: Some(c),
            ..Config::default()
        };
        match cfg.validate() {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn citizen_sso_section_parses_and_validates() {
        let cfg = Config::parse(
            "[citizen_sso]\nissuer = \"https://vneid.example\"\nclient_id = \"tv\"\n\
             client_secret = \"x\"\nredirect_url = \"https://pn.example/app/sso/callback\"\n\
             national_id_claim = \"vneid.cccd\"\nextra_scopes = [\"citizen\"]\n",
            "t.toml",
        )
        .unwrap();
        cfg.validate().unwrap();
        let c = cfg.citizen_sso.as_ref().unwrap();
        assert_eq!(c.national_id_claim, "vneid.cccd");
        assert_eq!(c.name_claim, "name");
        assert!(!format!("{cfg:?}").contains("\"x\""), "secret printed");
        assert!(Config::default().citizen_sso.is_none());
        assert_eq!(CitizenSsoConfig::default().national_id_claim, "national_id");
    }

    #[test]
    fn citizen_sso_errors_name_the_field() {
        assert_eq!(field_of(good()), "Ok(())");
        let with = |f: fn(&mut CitizenSsoConfig)| {
            let mut c = good();
            f(&mut c);
            field_of(c)
        };
        assert_eq!(
            with(|c| c.issuer = "http://vneid.example".into()),
            "citizen_sso.issuer"
        );
        assert_eq!(with(|c| c.client_id.clear()), "citizen_sso.client_id");
        assert_eq!(
            with(|c| c.client_secret.clear()),
            "citizen_sso.client_secret"
        );
        assert_eq!(
            with(|c| {
                c.client_secret.clear();
                c.client_secret_file = "/nonexistent/secret".into();
            }),
            "citizen_sso.client_secret_file"
        );
        assert_eq!(
            with(|c| c.redirect_url = "https://pn.example/console/sso/callback".into()),
            "citizen_sso.redirect_url"
        );
        assert_eq!(
            with(|c| c.national_id_claim = "a..b".into()),
            "citizen_sso.national_id_claim"
        );
        assert_eq!(with(|c| c.name_claim.clear()), "citizen_sso.name_claim");
        assert_eq!(
            with(|c| c.extra_scopes = vec!["two words".into()]),
            "citizen_sso.extra_scopes"
        );
        assert_eq!(
            with(|c| c.ca_file = "/nonexistent.pem".into()),
            "citizen_sso.ca_file"
        );
    }

    #[test]
    fn citizen_sso_env_overrides() {
        let mut c = Config::default();
        c.apply_env(|k| match k {
            "INGEST_CITIZEN_SSO_ISSUER" => Some("http://127.0.0.1:8081".into()),
            "INGEST_CITIZEN_SSO_CLIENT_ID" => Some("tv-citizen".into()),
            "INGEST_CITIZEN_SSO_CLIENT_SECRET" => Some("x".into()),
            "INGEST_CITIZEN_SSO_REDIRECT_URL" => {
                Some("http://127.0.0.1:8080/app/sso/callback".into())
            }
            "INGEST_CITIZEN_SSO_NATIONAL_ID_CLAIM" => Some("cccd".into()),
            "INGEST_CITIZEN_SSO_NAME_CLAIM" => Some("full_name".into()),
            "INGEST_CITIZEN_SSO_EXTRA_SCOPES" => Some("national_id, phone".into()),
            _ => None,
        })
        .unwrap();
        c.validate().unwrap();
        assert!(c.sso.is_none(), "the console's SSO stays off");
        let s = c.citizen_sso.as_ref().unwrap();
        assert_eq!(s.national_id_claim, "cccd");
        assert_eq!(s.name_claim, "full_name");
        assert_eq!(s.extra_scopes, ["national_id", "phone"]);
    }

    #[test]
    fn a_citizen_is_named_by_a_keyed_digest_that_cannot_be_reversed_by_trying_numbers() {
        let nid = "001199012345";
        let plain = format!(
            "citizen:{}",
            &hex::encode(Sha256::digest(nid.as_bytes()))[..16]
        );
        assert_ne!(actor_id(nid), plain, "not the bare SHA-256 of the number");
        assert_eq!(actor_id(nid), actor_id(nid), "stable within a server");
        assert_ne!(actor_id(nid), actor_id("001199012346"));
        assert!(!actor_id(nid).contains(nid));
        // A subject that is the number: keyed too, and not its actor.
        let sub = audited_subject(nid);
        assert!(!sub.contains(&plain[8..]) && !sub.contains(nid), "{sub}");
        assert_ne!(sub[5..], actor_id(nid)[8..]);
    }
}
