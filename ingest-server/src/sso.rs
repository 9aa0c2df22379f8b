//! Sign-in through an OpenID Connect provider: the authorization code flow
//! with PKCE (RFC 7636, S256), `state` and `nonce`. Two clients share this
//! flow and differ only in what a verified sign-in becomes:
//!
//! - the review console ([`console`], `[sso]`, `/console/sso/…`): a city's
//!   identity provider (Keycloak, Azure AD/Entra ID, ADFS, a ministry's own
//!   IdP); the person's console role comes from a configured claim, and the
//!   sign-in becomes a console account and session;
//! - the citizen app ([`citizen`], `[citizen_sso]`, `/app/sso/…`): the
//!   national identity provider (VNeID); the citizen's national ID number
//!   (12 digits) and name come from configured claims, and the sign-in
//!   becomes a citizen session bound to that number.
//!
//! The flow, and why each check is there (`{prefix}` is `/console/sso` or
//! `/app/sso`):
//!
//! 1. `GET {prefix}/login` reads the provider's discovery document
//!    (`{issuer}/.well-known/openid-configuration`, cached for an hour; its
//!    `issuer` must equal ours exactly, so a document served for another
//!    provider is not believed), makes a random `state`, `nonce` and PKCE
//!    verifier, stores them in `sso_logins` (so the answer may land on any
//!    server replica) with the digest of a random cookie given to this
//!    browser (`tv_sso`, for the citizen app `tv_sso_app`), and answers 303
//!    to the authorization endpoint. The citizen client stores its states
//!    under a digest of another form, so a state begun for one client is
//!    unknown to the other's callback.
//! 2. The person signs in at the provider, which sends the browser to
//!    `GET {prefix}/callback?code&state`.
//!    - `state` must be one we issued, not used before and not older than
//!      10 minutes; it is marked used in the statement that reads it, so a
//!      replayed answer (a link from the history, a leaked URL) fails even
//!      when two replicas race. The browser cookie must be the one given to
//!      the browser that started: otherwise an attacker could start a
//!      sign-in for their own account and make a victim finish it (login
//!      CSRF), and the victim would work, and sign fines, as the attacker
//!      (or, in the citizen app, see the attacker's fines and pay them).
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
//! 5. The claims the client needs (console: the role claim; citizen app:
//!    the national ID and name claims) are taken from the ID token, or from
//!    the userinfo endpoint when the token does not carry them, whose `sub`
//!    must then match. What happens next is the client's: see [`console`]
//!    and [`citizen`].
//!
//! Every refusal is an audit entry (`sso.failed` for the console,
//! `citizen.login_failed` for the citizen app: reason, check, what the
//! provider said) and a page that says what happened. Nothing here panics
//! on outside input.

mod account;
pub mod citizen;
pub mod console;
mod error;
mod http;
mod token;

pub use citizen::CitizenSso;
pub use console::Sso;
pub use error::SsoError;
pub use http::{is_loopback, load_ca_file};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};
use sqlx::Row;

use crate::db::{Db, now_ms};

/// How long a started sign-in may take.
pub const STATE_TTL_MS: i64 = 10 * 60 * 1000;
/// The cookie that binds a console sign-in to the browser that started it.
pub const BROWSER_COOKIE: &str = "tv_sso";
/// The cookie that binds a citizen sign-in to the browser that started it.
pub const CITIZEN_BROWSER_COOKIE: &str = "tv_sso_app";
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
const JWKS_TTL: Duration = Duration::from_secs(3600);

/// Which client a flow serves: where its routes and cookie live, how its
/// states are stored and how its refusals are audited and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The review console (`[sso]`).
    Console,
    /// The citizen app (`[citizen_sso]`).
    Citizen,
}

impl Kind {
    /// The routes' common prefix, also the browser cookie's path.
    fn prefix(self) -> &'static str {
        match self {
            Kind::Console => "/console/sso/",
            Kind::Citizen => "/app/sso/",
        }
    }

    /// The browser-binding cookie's name.
    pub(crate) fn cookie(self) -> &'static str {
        match self {
            Kind::Console => BROWSER_COOKIE,
            Kind::Citizen => CITIZEN_BROWSER_COOKIE,
        }
    }

    /// How a state is stored in `sso_logins` (the console's as it always
    /// was; the citizen app's in a form the console never looks up).
    fn state_key(self, state: &str) -> String {
        match self {
            Kind::Console => token::digest(state),
            Kind::Citizen => token::digest(&format!("citizen\n{state}")),
        }
    }

    /// The audit action of a refused sign-in.
    pub(crate) fn failed_action(self) -> &'static str {
        match self {
            Kind::Console => "sso.failed",
            Kind::Citizen => "citizen.login_failed",
        }
    }

    /// The subject as written to the audit log: the console's as the
    /// provider sends it; a citizen's as a keyed digest
    /// ([`citizen::audited_subject`]), since a national provider's subject
    /// may well be the ID number itself.
    fn audited_sub(self, sub: &str) -> Value {
        match self {
            Kind::Console => Value::String(sub.into()),
            Kind::Citizen => Value::String(citizen::audited_subject(sub)),
        }
    }
}

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

/// What a client is, at its provider.
pub(crate) struct Client<'a> {
    /// Which of ours.
    pub kind: Kind,
    /// The provider's issuer identifier.
    pub issuer: &'a str,
    /// Our client id.
    pub client_id: &'a str,
    /// The client secret, or why it could not be read.
    pub secret: Result<String, String>,
    /// Our callback, as registered.
    pub redirect_url: &'a str,
    /// Scopes besides `openid profile`.
    pub extra_scopes: &'a [String],
    /// Extra CA certificates (PEM file; empty: none).
    pub ca_file: &'a str,
}

/// One OpenID Connect client (relying party) at one provider, with its
/// HTTP client and caches: the flow both of our clients share.
pub(crate) struct Oidc {
    kind: Kind,
    issuer: String,
    client_id: String,
    redirect_url: String,
    extra_scopes: Vec<String>,
    secret: Result<String, String>,
    client: http::Client,
    discovery: Cached<Discovery>,
    jwks: Cached<token::Jwks>,
}

impl Oidc {
    /// The client (nothing is fetched yet).
    pub(crate) fn new(c: Client<'_>) -> Oidc {
        if let Err(e) = &c.secret {
            tracing::error!(client = ?c.kind, error = %e, "sso: client secret unavailable; sign-ins will fail");
        }
        Oidc {
            kind: c.kind,
            issuer: c.issuer.into(),
            client_id: c.client_id.into(),
            redirect_url: c.redirect_url.into(),
            extra_scopes: c.extra_scopes.to_vec(),
            secret: c.secret,
            client: http::Client::new(c.ca_file),
            discovery: Mutex::new(None),
            jwks: Mutex::new(None),
        }
    }

    /// The configured issuer.
    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
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
            self.issuer.trim_end_matches('/')
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
        if d.issuer != self.issuer {
            return Err(SsoError::Provider(format!(
                "the discovery document is for issuer `{}`, not `{}`",
                d.issuer, self.issuer
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
        .bind(self.kind.state_key(&state))
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
        for s in &self.extra_scopes {
            scope.push(' ');
            scope.push_str(s);
        }
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_url)
            .append_pair("scope", &scope)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &token::s256(&verifier))
            .append_pair("code_challenge_method", "S256");
        Ok((url.into(), browser))
    }

    /// Step 1 as an answer: 303 to the provider, with the browser-binding
    /// cookie (`secure`: marked `Secure`).
    pub(crate) async fn login(&self, db: &Db, secure: bool) -> Result<Response, SsoError> {
        let (url, browser) = self.begin(db).await?;
        let secure = if secure { "; Secure" } else { "" };
        // Lax, not Strict: it must come back on the provider's redirect.
        let cookie = format!(
            "{}={browser}; Path={}; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            self.kind.cookie(),
            self.kind.prefix(),
            STATE_TTL_MS / 1000
        );
        let mut h = HeaderMap::new();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match (HeaderValue::from_str(&url), HeaderValue::from_str(&cookie)) {
            (Ok(loc), Ok(c)) => {
                h.insert(header::LOCATION, loc);
                h.insert(header::SET_COOKIE, c);
                Ok((StatusCode::SEE_OTHER, h).into_response())
            }
            _ => Err(SsoError::Provider(
                "authorization URL is not a valid header".into(),
            )),
        }
    }

    /// The `Set-Cookie` that removes the browser-binding cookie.
    pub(crate) fn clear_cookie(&self) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "{}=; Path={}; HttpOnly; SameSite=Lax; Max-Age=0",
            self.kind.cookie(),
            self.kind.prefix()
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("tv_sso=; Max-Age=0"))
    }

    /// Marks the state used and returns (nonce, verifier), or why not.
    async fn take_state(
        &self,
        db: &Db,
        state: &str,
        browser: Option<&str>,
    ) -> Result<(String, String), SsoError> {
        let now = now_ms();
        let key = self.kind.state_key(state);
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
            return Err(SsoError::BrowserMismatch(self.kind.cookie()));
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
            ("redirect_uri", self.redirect_url.as_str()),
            ("code_verifier", verifier),
        ];
        let basic = if methods.iter().any(|m| m == "client_secret_basic") {
            Some((self.client_id.as_str(), secret))
        } else if methods.iter().any(|m| m == "client_secret_post") {
            form.push(("client_id", &self.client_id));
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
            issuer: &self.issuer,
            client_id: &self.client_id,
            nonce,
            now_s: now_ms() / 1000,
        };
        token::check_claims(&jwt.claims, &want).map_err(bad)?;
        Ok((jwt.claims, body["access_token"].as_str().map(String::from)))
    }

    /// Step 5a: the claims, with userinfo's added when the ID token lacks
    /// any of `wanted` (claim paths; userinfo's `sub` must be the token's).
    async fn with_userinfo(
        &self,
        d: &Discovery,
        mut claims: Map<String, Value>,
        access: Option<&str>,
        wanted: &[&str],
    ) -> Result<Map<String, Value>, SsoError> {
        if wanted.iter().any(|w| account::claim(&claims, w).is_none())
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

    /// Steps 2 to 5a, the callback: its query and the browser's cookies to
    /// the verified claims, with userinfo's when the ID token lacks any of
    /// `wanted`. The subject goes into `seen` (for the audit entry) as
    /// soon as it is known.
    pub(crate) async fn callback(
        &self,
        db: &Db,
        headers: &HeaderMap,
        query: Option<&str>,
        wanted: &[&str],
        seen: &mut Value,
    ) -> Result<Map<String, Value>, SsoError> {
        let param = |name: &str| {
            url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let browser = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == self.kind.cookie())
            .map(|(_, v)| v.to_string());
        let state = param("state").ok_or(SsoError::StateUnknown)?;
        let (nonce, verifier) = self.take_state(db, &state, browser.as_deref()).await?;
        if let Some(error) = param("error") {
            let desc = param("error_description").unwrap_or_default();
            return Err(SsoError::Denied(
                format!("{error} {desc}").trim().chars().take(300).collect(),
            ));
        }
        let d = self.discovery().await?;
        match param("iss") {
            Some(iss) if iss != self.issuer => {
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
        let (claims, access) = self.redeem(&d, &code, &nonce, &verifier).await?;
        if let Some(sub) = claims.get("sub").and_then(Value::as_str) {
            seen["sub"] = self.kind.audited_sub(sub);
        }
        self.with_userinfo(&d, claims, access.as_deref(), wanted)
            .await
    }
}
