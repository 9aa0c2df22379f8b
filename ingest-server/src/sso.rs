//! Single sign-on for the review console through an OpenID Connect
//! provider (Keycloak, Azure AD/Entra ID, ADFS, a ministry's own IdP):
//! the authorization code flow with PKCE (RFC 7636, S256), `state` and
//! `nonce`, the person's console role taken from a configured claim.
//!
//! The flow, and why each check is there:
//!
//! 1. `GET /console/sso/login` reads the provider's discovery document
//!    (`{issuer}/.well-known/openid-configuration`, cached for an hour; its
//!    `issuer` must equal ours exactly, so a document served for another
//!    provider is not believed), makes a random `state`, `nonce` and PKCE
//!    verifier, stores them in `sso_logins` (so the answer may land on any
//!    server replica) with the digest of a random cookie given to this
//!    browser (`tv_sso`), and answers 303 to the authorization endpoint.
//! 2. The person signs in at the provider, which sends the browser to
//!    `GET /console/sso/callback?code&state`.
//!    - `state` must be one we issued, not used before and not older than
//!      10 minutes; it is marked used in the statement that reads it, so a
//!      replayed answer (a link from the history, a leaked URL) fails even
//!      when two replicas race. The `tv_sso` cookie must be the one given to
//!      the browser that started: otherwise an attacker could start a
//!      sign-in for their own account and make a victim finish it (login
//!      CSRF), and the victim would work, and sign fines, as the attacker.
//!    - `iss`, when present (RFC 9207) or announced, must be our issuer:
//!      with several providers an answer could be mixed up with another's.
//! 3. The code is exchanged at the token endpoint with the client secret
//!    (`client_secret_basic`, or `_post` when that is all the provider
//!    offers) and the PKCE verifier: a code stolen on its way through the
//!    browser is useless without the verifier that never left the server.
//! 4. The ID token is verified ([`token`]): RS256 signature against the
//!    provider's JWKS (cached; fetched again once when the `kid` is
//!    unknown, the provider may have rotated keys); `iss` ours; `aud` has
//!    our client id (and `azp` is ours when there are several audiences),
//!    so a token issued to another application cannot be replayed here;
//!    `exp`/`iat` within two minutes of leeway; `nonce` the one stored in
//!    step 1, which binds the token to this sign-in and defeats token
//!    injection.
//! 5. The role claim (`role_claim`, a dotted path; from the ID token, or
//!    from the userinfo endpoint when the token does not carry it, whose
//!    `sub` must then match) is mapped through `role_map`. No mapped role:
//!    403, audited, no account made. Two different mapped roles: 403 too,
//!    since an operator who is also police would break the two-person rule.
//! 6. [`accounts::upsert_sso_user`] finds or makes the account by (issuer,
//!    subject), with the role of this sign-in; a disabled account is
//!    refused; [`accounts::start_session`] starts the session, whose cookie
//!    is set on a small page that moves the browser on to `/console/`. (A
//!    page rather than a 303: the session cookie is `SameSite=Strict`, and
//!    browsers leave it off a request reached through a redirect chain that
//!    started at the provider's site, so the console would not see it.)
//!
//! Every refusal is an entry `sso.failed` in the audit log (reason, check,
//! what the provider said) and a page that says what happened; a sign-in is
//! `sso.login`. Nothing here panics on outside input.

mod account;
mod error;
mod http;
mod token;

pub use error::SsoError;
pub use http::{is_loopback, load_ca_file};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sqlx::Row;

use crate::accounts::{self, User};
use crate::audit::{self, Who};
use crate::config::SsoConfig;
use crate::db::{Db, now_ms};
use crate::web::ApiContext;
use error::refuse;

/// How long a started sign-in may take.
pub const STATE_TTL_MS: i64 = 10 * 60 * 1000;
/// The cookie that binds a sign-in to the browser that started it.
pub const BROWSER_COOKIE: &str = "tv_sso";
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
const JWKS_TTL: Duration = Duration::from_secs(3600);

/// The parts of the discovery document used here.
#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

type Cached<T> = Mutex<Option<(Instant, Arc<T>)>>;

/// The configured provider with its client and caches.
pub struct Sso {
    cfg: SsoConfig,
    secret: Result<String, String>,
    client: http::Client,
    discovery: Cached<Discovery>,
    jwks: Cached<token::Jwks>,
}

fn fresh<T>(cache: &Cached<T>, ttl: Duration) -> Option<Arc<T>> {
    let guard = cache.lock().unwrap_or_else(|e| e.into_inner());
    guard
        .as_ref()
        .filter(|(at, _)| at.elapsed() < ttl)
        .map(|(_, v)| v.clone())
}

fn store<T>(cache: &Cached<T>, v: T) -> Arc<T> {
    let v = Arc::new(v);
    *cache.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), v.clone()));
    v
}

impl Sso {
    /// The provider of the configuration (nothing is fetched yet).
    pub fn new(cfg: &SsoConfig) -> Sso {
        let secret = cfg.secret();
        if let Err(e) = &secret {
            tracing::error!(error = %e, "sso: client secret unavailable; sign-ins will fail");
        }
        Sso {
            cfg: cfg.clone(),
            secret,
            client: http::Client::new(&cfg.ca_file),
            discovery: Mutex::new(None),
            jwks: Mutex::new(None),
        }
    }

    /// The text of the sign-in link.
    pub fn button_label(&self) -> &str {
        &self.cfg.button_label
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.cfg.issuer
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<T, SsoError> {
        let a = self
            .client
            .get(url, bearer)
            .await
            .map_err(SsoError::Provider)?;
        if a.status != 200 {
            return Err(SsoError::Provider(format!("{url} answered {}", a.status)));
        }
        if a.content_type.contains("jwt") {
            return Err(SsoError::Provider(format!(
                "{url} answered `{}`: signed or encrypted answers are not supported",
                a.content_type
            )));
        }
        serde_json::from_slice(&a.body)
            .map_err(|e| SsoError::Provider(format!("{url}: not the JSON expected: {e}")))
    }

    async fn discovery(&self) -> Result<Arc<Discovery>, SsoError> {
        if let Some(d) = fresh(&self.discovery, DISCOVERY_TTL) {
            return Ok(d);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.issuer.trim_end_matches('/')
        );
        let d: Discovery = match self.get_json(&url, None).await {
            Ok(d) => d,
            Err(e) => {
                // A provider briefly down: keep using what it said before.
                if let Some((_, old)) = &*self.discovery.lock().unwrap_or_else(|p| p.into_inner()) {
                    tracing::warn!(error = %e, "sso: discovery failed; using the cached document");
                    return Ok(old.clone());
                }
                return Err(e);
            }
        };
        if d.issuer != self.cfg.issuer {
            return Err(SsoError::Provider(format!(
                "the discovery document is for issuer `{}`, not `{}`",
                d.issuer, self.cfg.issuer
            )));
        }
        if d.code_challenge_methods_supported
            .as_ref()
            .is_some_and(|m| !m.iter().any(|m| m == "S256"))
        {
            return Err(SsoError::Provider(
                "the provider does not offer PKCE S256".into(),
            ));
        }
        for u in [&d.authorization_endpoint, &d.token_endpoint, &d.jwks_uri]
            .into_iter()
            .chain(d.userinfo_endpoint.as_ref())
        {
            let ok = url::Url::parse(u)
                .is_ok_and(|p| p.scheme() == "https" || (p.scheme() == "http" && is_loopback(&p)));
            if !ok {
                return Err(SsoError::Provider(format!(
                    "endpoint `{u}` is not https://"
                )));
            }
        }
        Ok(store(&self.discovery, d))
    }

    async fn jwks(
        &self,
        d: &Discovery,
        refetch: bool,
    ) -> Result<(Arc<token::Jwks>, bool), SsoError> {
        if !refetch && let Some(k) = fresh(&self.jwks, JWKS_TTL) {
            return Ok((k, false));
        }
        let k: token::Jwks = self.get_json(&d.jwks_uri, None).await?;
        Ok((store(&self.jwks, k), true))
    }

    /// Step 1: records a new sign-in; the provider URL to send the browser
    /// to and the browser-binding cookie value.
    async fn begin(&self, db: &Db) -> Result<(String, String), SsoError> {
        let d = self.discovery().await?;
        let (state, nonce, verifier, browser) = (
            token::random(),
            token::random(),
            token::random(),
            token::random(),
        );
        let now = now_ms();
        // Expired sign-ins are kept a day, to tell a late answer from a forged one.
        sqlx::query("DELETE FROM sso_logins WHERE expires_at < $1")
            .bind(now - 24 * 3600 * 1000)
            .execute(db.pool())
            .await?;
        sqlx::query(
            "INSERT INTO sso_logins (state_sha256, nonce, code_verifier, browser_sha256, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token::digest(&state))
        .bind(&nonce)
        .bind(&verifier)
        .bind(token::digest(&browser))
        .bind(now)
        .bind(now + STATE_TTL_MS)
        .execute(db.pool())
        .await?;
        let mut url = url::Url::parse(&d.authorization_endpoint)
            .map_err(|e| SsoError::Provider(format!("authorization_endpoint: {e}")))?;
        let mut scope = String::from("openid profile");
        for s in &self.cfg.extra_scopes {
            scope.push(' ');
            scope.push_str(s);
        }
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.cfg.client_id)
            .append_pair("redirect_uri", &self.cfg.redirect_url)
            .append_pair("scope", &scope)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &token::s256(&verifier))
            .append_pair("code_challenge_method", "S256");
        Ok((url.into(), browser))
    }

    /// Marks the state used and returns (nonce, verifier), or why not.
    async fn take_state(
        &self,
        db: &Db,
        state: &str,
        browser: Option<&str>,
    ) -> Result<(String, String), SsoError> {
        let now = now_ms();
        let key = token::digest(state);
        let row = sqlx::query(
            "UPDATE sso_logins SET used_at = $1 WHERE state_sha256 = $2 AND used_at IS NULL \
             AND expires_at > $3 RETURNING nonce, code_verifier, browser_sha256",
        )
        .bind(now)
        .bind(&key)
        .bind(now)
        .fetch_optional(db.pool())
        .await?;
        let Some(row) = row else {
            let old = sqlx::query("SELECT used_at FROM sso_logins WHERE state_sha256 = $1")
                .bind(&key)
                .fetch_optional(db.pool())
                .await?;
            return Err(match old {
                None => SsoError::StateUnknown,
                Some(r) if r.try_get::<Option<i64>, _>(0)?.is_some() => SsoError::StateReplayed,
                Some(_) => SsoError::StateExpired,
            });
        };
        let bound: String = row.try_get(2)?;
        if browser.map(token::digest).as_deref() != Some(bound.as_str()) {
            return Err(SsoError::BrowserMismatch);
        }
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Steps 3 and 4: the code for tokens; the verified ID token's claims
    /// and the access token.
    async fn redeem(
        &self,
        d: &Discovery,
        code: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<(Map<String, Value>, Option<String>), SsoError> {
        let secret = self
            .secret
            .as_deref()
            .map_err(|e| SsoError::Internal(format!("client secret: {e}")))?;
        let methods = d
            .token_endpoint_auth_methods_supported
            .clone()
            .unwrap_or_else(|| vec!["client_secret_basic".into()]);
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.cfg.redirect_url.as_str()),
            ("code_verifier", verifier),
        ];
        let basic = if methods.iter().any(|m| m == "client_secret_basic") {
            Some((self.cfg.client_id.as_str(), secret))
        } else if methods.iter().any(|m| m == "client_secret_post") {
            form.push(("client_id", &self.cfg.client_id));
            form.push(("client_secret", secret));
            None
        } else {
            return Err(SsoError::Provider(format!(
                "the token endpoint offers {methods:?}, neither client_secret_basic nor client_secret_post"
            )));
        };
        let a = self
            .client
            .post_form(&d.token_endpoint, &form, basic)
            .await
            .map_err(SsoError::Provider)?;
        let body: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
        if a.status != 200 {
            return Err(SsoError::Provider(format!(
                "the token endpoint answered {}: {} {}",
                a.status,
                body["error"].as_str().unwrap_or("?"),
                body["error_description"].as_str().unwrap_or_default()
            )));
        }
        let Some(id_token) = body["id_token"].as_str() else {
            return Err(SsoError::Provider(
                "the token endpoint sent no id_token".into(),
            ));
        };
        let bad = |r: token::Rejected| SsoError::IdToken {
            check: r.check,
            detail: r.detail,
        };
        let jwt = token::parse(id_token).map_err(bad)?;
        let (mut keys, mut just_fetched) = self.jwks(d, false).await?;
        let key = loop {
            match token::find_key(&keys, jwt.kid.as_deref()) {
                Some(k) => break k,
                None if !just_fetched => (keys, just_fetched) = self.jwks(d, true).await?,
                None => {
                    return Err(SsoError::IdToken {
                        check: "unknown_key",
                        detail: format!("no RS256 key {:?} in the provider's JWKS", jwt.kid),
                    });
                }
            }
        };
        token::verify_signature(&jwt, &key).map_err(bad)?;
        let want = token::Expected {
            issuer: &self.cfg.issuer,
            client_id: &self.cfg.client_id,
            nonce,
            now_s: now_ms() / 1000,
        };
        token::check_claims(&jwt.claims, &want).map_err(bad)?;
        Ok((jwt.claims, body["access_token"].as_str().map(String::from)))
    }

    /// Step 5a: the claims, with userinfo's added when the ID token lacks
    /// the role claim (its `sub` must be the token's).
    async fn with_userinfo(
        &self,
        d: &Discovery,
        mut claims: Map<String, Value>,
        access: Option<&str>,
    ) -> Result<Map<String, Value>, SsoError> {
        if account::claim(&claims, &self.cfg.role_claim).is_none()
            && let (Some(ep), Some(at)) = (&d.userinfo_endpoint, access)
        {
            let info: Map<String, Value> = self.get_json(ep, Some(at)).await?;
            if info.get("sub") != claims.get("sub") {
                return Err(SsoError::Provider(
                    "userinfo is about another subject".into(),
                ));
            }
            for (k, v) in info {
                claims.entry(k).or_insert(v);
            }
        }
        Ok(claims)
    }
}

/// The routes: `GET /console/sso/login`, `GET /console/sso/callback`.
pub fn routes() -> Router<ApiContext> {
    Router::new()
        .route("/console/sso/login", get(login))
        .route("/console/sso/callback", get(callback))
}

async fn login(State(ctx): State<ApiContext>) -> Response {
    let db = ctx.ingestor.context().db.clone();
    let Some(sso) = ctx.sso.clone() else {
        return refuse(&db, SsoError::NotConfigured, "", json!({})).await;
    };
    match sso.begin(&db).await {
        Ok((url, browser)) => {
            let secure = if ctx.secure_cookies { "; Secure" } else { "" };
            // Lax, not Strict: it must come back on the provider's redirect.
            let cookie = format!(
                "{BROWSER_COOKIE}={browser}; Path=/console/sso/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
                STATE_TTL_MS / 1000
            );
            let mut h = HeaderMap::new();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if let (Ok(loc), Ok(c)) = (HeaderValue::from_str(&url), HeaderValue::from_str(&cookie))
            {
                h.insert(header::LOCATION, loc);
                h.insert(header::SET_COOKIE, c);
                return (StatusCode::SEE_OTHER, h).into_response();
            }
            refuse(
                &db,
                SsoError::Provider("authorization URL is not a valid header".into()),
                "",
                json!({"issuer": sso.issuer()}),
            )
            .await
        }
        Err(e) => refuse(&db, e, "", json!({"issuer": sso.issuer(), "step": "login"})).await,
    }
}

async fn callback(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let db = ctx.ingestor.context().db.clone();
    let Some(sso) = ctx.sso.clone() else {
        return refuse(&db, SsoError::NotConfigured, "", json!({})).await;
    };
    let param = |name: &str| {
        url::form_urlencoded::parse(q.as_deref().unwrap_or_default().as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let browser = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == BROWSER_COOKIE)
        .map(|(_, v)| v.to_string());
    let mut seen = json!({"issuer": sso.issuer(), "step": "callback"});
    let outcome: Result<(User, accounts::NewSession, Vec<String>), SsoError> = async {
        let state = param("state").ok_or(SsoError::StateUnknown)?;
        let (nonce, verifier) = sso.take_state(&db, &state, browser.as_deref()).await?;
        if let Some(error) = param("error") {
            let desc = param("error_description").unwrap_or_default();
            return Err(SsoError::Denied(
                format!("{error} {desc}").trim().chars().take(300).collect(),
            ));
        }
        let d = sso.discovery().await?;
        match param("iss") {
            Some(iss) if iss != sso.cfg.issuer => {
                return Err(SsoError::Provider(format!(
                    "the answer is from issuer `{iss}` (mix-up)"
                )));
            }
            None if d.authorization_response_iss_parameter_supported => {
                return Err(SsoError::Provider(
                    "the answer has no iss, which the provider announces".into(),
                ));
            }
            _ => {}
        }
        let code =
            param("code").ok_or_else(|| SsoError::Provider("the answer has no code".into()))?;
        let (claims, access) = sso.redeem(&d, &code, &nonce, &verifier).await?;
        seen["sub"] = claims.get("sub").cloned().unwrap_or(Value::Null);
        let claims = sso.with_userinfo(&d, claims, access.as_deref()).await?;
        seen["username_claim"] = claims
            .get("preferred_username")
            .cloned()
            .unwrap_or(Value::Null);
        let (theirs, role) = account::map_role(&sso.cfg, &claims)?;
        let (user, session) = account::sign_in(&db, &sso.cfg.issuer, &claims, role).await?;
        Ok((user, session, theirs))
    }
    .await;
    match outcome {
        Ok((user, session, theirs)) => {
            let detail = json!({"method": "oidc", "issuer": sso.issuer(), "sub": seen["sub"], "provider_roles": theirs, "role": user.role.as_str()});
            let who = Who::new(user.user_id.clone(), user.role);
            if let Err(e) = audit::record(
                &db,
                now_ms(),
                &who,
                "sso.login",
                &format!("user:{}", user.user_id),
                &detail,
            )
            .await
            {
                tracing::error!(error = %e, "sso: audit of a sign-in failed; session not handed out");
                let _ = accounts::end_session(&db, &session.token).await;
                return refuse(&db, SsoError::Internal("audit".into()), "", seen).await;
            }
            let mut h = error::no_store();
            h.append(
                header::SET_COOKIE,
                crate::console::session_cookie(&session.token, ctx.secure_cookies),
            );
            h.append(
                header::SET_COOKIE,
                HeaderValue::from_static(
                    "tv_sso=; Path=/console/sso/; HttpOnly; SameSite=Lax; Max-Age=0",
                ),
            );
            let body = format!(
                "<h1>Đăng nhập thành công</h1><p>Xin chào {}. <a href=\"/console/\">Vào bảng điều khiển</a></p>",
                error::esc(&user.display_name)
            );
            (
                StatusCode::OK,
                h,
                error::page("Đăng nhập thành công", Some("/console/"), &body),
            )
                .into_response()
        }
        Err(e) => {
            if let SsoError::NoRole { found, .. } | SsoError::SeveralRoles(found) = &e {
                seen["provider_roles"] = json!(found);
            }
            let claimed = seen["username_claim"]
                .as_str()
                .or(seen["sub"].as_str())
                .unwrap_or_default()
                .to_string();
            refuse(&db, e, &claimed, seen).await
        }
    }
}
