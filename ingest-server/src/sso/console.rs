//! The review console's client (`[sso]`): `GET /console/sso/login` and
//! `GET /console/sso/callback`; the flow is the shared one of [`super`].
//! What a verified sign-in becomes:
//!
//! 5. The role claim (`role_claim`, a dotted path; from the ID token, or
//!    from the userinfo endpoint when the token does not carry it) is
//!    mapped through `role_map`. No mapped role: 403, audited, no account
//!    made. Two different mapped roles: 403 too, since an operator who is
//!    also police would break the two-person rule.
//! 6. [`accounts::upsert_sso_user`] finds or makes the account by (issuer,
//!    subject), with the role of this sign-in; a disabled account is
//!    refused; [`accounts::start_session`] starts the session, whose cookie
//!    is set on a small page that moves the browser on to `/console/`. (A
//!    page rather than a 303: the session cookie is `SameSite=Strict`, and
//!    browsers leave it off a request reached through a redirect chain that
//!    started at the provider's site, so the console would not see it.)
//!
//! A refusal is `sso.failed` in the audit log, a sign-in `sso.login`.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::error::{self, anonymous, refuse};
use super::{Client, Kind, Oidc, SsoError, account};
use crate::accounts::{self, User};
use crate::audit::{self, Who};
use crate::config::SsoConfig;
use crate::db::now_ms;
use crate::web::ApiContext;

/// The console's configured provider with its client and caches.
pub struct Sso {
    cfg: SsoConfig,
    oidc: Oidc,
}

impl Sso {
    /// The provider of the configuration (nothing is fetched yet).
    pub fn new(cfg: &SsoConfig) -> Sso {
        let oidc = Oidc::new(Client {
            kind: Kind::Console,
            issuer: &cfg.issuer,
            client_id: &cfg.client_id,
            secret: cfg.secret(),
            redirect_url: &cfg.redirect_url,
            extra_scopes: &cfg.extra_scopes,
            ca_file: &cfg.ca_file,
        });
        Sso {
            cfg: cfg.clone(),
            oidc,
        }
    }

    /// The text of the sign-in link.
    pub fn button_label(&self) -> &str {
        &self.cfg.button_label
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        self.oidc.issuer()
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
    let who = anonymous("");
    let Some(sso) = ctx.sso.clone() else {
        return refuse(&db, Kind::Console, SsoError::NotConfigured, &who, json!({})).await;
    };
    match sso.oidc.login(&db, ctx.secure_cookies).await {
        Ok(r) => r,
        Err(e) => {
            let seen = json!({"issuer": sso.issuer(), "step": "login"});
            refuse(&db, Kind::Console, e, &who, seen).await
        }
    }
}

async fn callback(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let db = ctx.ingestor.context().db.clone();
    let Some(sso) = ctx.sso.clone() else {
        let who = anonymous("");
        return refuse(&db, Kind::Console, SsoError::NotConfigured, &who, json!({})).await;
    };
    let mut seen = json!({"issuer": sso.issuer(), "step": "callback"});
    let outcome: Result<(User, accounts::NewSession, Vec<String>), SsoError> = async {
        let wanted = [sso.cfg.role_claim.as_str()];
        let claims = sso
            .oidc
            .callback(&db, &headers, q.as_deref(), &wanted, &mut seen)
            .await?;
        seen["username_claim"] = claims
            .get("preferred_username")
            .cloned()
            .unwrap_or(Value::Null);
        let (theirs, role) = account::map_role(&sso.cfg, &claims)?;
        let (user, session) = account::sign_in(&db, sso.issuer(), &claims, role).await?;
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
                let who = anonymous("");
                let e = SsoError::Internal("audit".into());
                return refuse(&db, Kind::Console, e, &who, seen).await;
            }
            let mut h = error::no_store();
            h.append(
                header::SET_COOKIE,
                crate::console::session_cookie(&session.token, ctx.secure_cookies),
            );
            h.append(header::SET_COOKIE, sso.oidc.clear_cookie());
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
            refuse(&db, Kind::Console, e, &anonymous(&claimed), seen).await
        }
    }
}
