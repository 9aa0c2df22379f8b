//! Single sign-on settings: `[sso]`, the review console's login through the
//! city's OpenID Connect provider (used by `src/sso.rs`), and
//! `[citizen_sso]`, citizens' login to the citizen app through the national
//! identity provider (`src/sso/citizen.rs`).
//!
//! Part of [`crate::config`], which re-exports both sections: the two are
//! OpenID Connect clients alike, so their shared checks (issuer and redirect
//! URLs, the client secret or its file, scopes, CA file, claim paths) and
//! their environment overrides (`INGEST_SSO_*`, `INGEST_CITIZEN_SSO_*`,
//! applied by [`Config::apply_env`]) live here, next to each other, while
//! `config` keeps the file loading and the other sections.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Config, ConfigError};

/// Single sign-on for the review console through an OpenID Connect
/// provider (`src/sso.rs`). Env overrides `INGEST_SSO_*` (see
/// [`Config::apply_env`]).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SsoConfig {
    /// The provider's issuer identifier, exactly as its discovery document
    /// writes it (`https://…`; `http://` only on loopback, for tests).
    pub issuer: String,
    /// This server's client id at the provider.
    pub client_id: String,
    /// The client secret (or `client_secret_file`, not both).
    pub client_secret: String,
    /// A file holding the client secret (trimmed).
    pub client_secret_file: String,
    /// `https://{console host}/console/sso/callback`, as registered at the
    /// provider.
    pub redirect_url: String,
    /// The claim that carries the person's roles: a name, or a dotted path
    /// into nested objects (`realm_access.roles`); an array of strings or
    /// one string.
    pub role_claim: String,
    /// Provider role name → ours (operator, police, supervisor, auditor,
    /// admin). Provider roles not listed give no access.
    pub role_map: BTreeMap<String, String>,
    /// Scopes asked for besides `openid profile`.
    pub extra_scopes: Vec<String>,
    /// The text of the sign-in link on the console's login page.
    pub button_label: String,
    /// A PEM file of extra CA certificates to trust for the provider (an
    /// internal CA); the system's roots are trusted in any case.
    pub ca_file: String,
}

impl Default for SsoConfig {
    fn default() -> Self {
        SsoConfig {
            issuer: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            client_secret_file: String::new(),
            redirect_url: String::new(),
            role_claim: "roles".into(),
            role_map: BTreeMap::new(),
            extra_scopes: Vec::new(),
            button_label: "Đăng nhập bằng SSO".into(),
            ca_file: String::new(),
        }
    }
}

/// Never prints the client secret.
impl std::fmt::Debug for SsoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("client_secret_file", &self.client_secret_file)
            .field("redirect_url", &self.redirect_url)
            .field("role_claim", &self.role_claim)
            .field("role_map", &self.role_map)
            .field("extra_scopes", &self.extra_scopes)
            .field("button_label", &self.button_label)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl SsoConfig {
    /// The client secret: configured, or read from `client_secret_file`.
    pub fn secret(&self) -> Result<String, String> {
        read_secret(&self.client_secret, &self.client_secret_file)
    }

    /// Checks every field; the error names it (`sso.…`).
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            field: format!("sso.{field}"),
            message,
        };
        OidcClientFields {
            section: "sso",
            issuer: &self.issuer,
            client_id: &self.client_id,
            client_secret: &self.client_secret,
            client_secret_file: &self.client_secret_file,
            redirect_url: &self.redirect_url,
            callback: "/console/sso/callback",
            extra_scopes: &self.extra_scopes,
            ca_file: &self.ca_file,
        }
        .validate()?;
        if !is_claim_path(&self.role_claim) {
            return Err(invalid(
                "role_claim",
                "a claim name or a dotted path (realm_access.roles)".into(),
            ));
        }
        if self.role_map.is_empty() {
            return Err(invalid(
                "role_map",
                "map at least one provider role to operator, police, supervisor, auditor or admin"
                    .into(),
            ));
        }
        for (theirs, ours) in &self.role_map {
            if crate::workflow::Role::parse(ours).is_none() {
                return Err(invalid(
                    &format!("role_map.{theirs}"),
                    format!("`{ours}` is not one of operator, police, supervisor, auditor, admin"),
                ));
            }
        }
        let label = self.button_label.trim();
        if label.is_empty() || label.chars().count() > 60 {
            return Err(invalid("button_label", "1-60 characters".into()));
        }
        Ok(())
    }
}

/// Citizens' sign-in to the citizen app (`/app/`) through the national
/// identity provider (VNeID), OpenID Connect (`src/sso/citizen.rs`). Env
/// overrides `INGEST_CITIZEN_SSO_*` (see [`Config::apply_env`]).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CitizenSsoConfig {
    /// The provider's issuer identifier, exactly as its discovery document
    /// writes it (`https://…`; `http://` only on loopback, for tests).
    pub issuer: String,
    /// This server's client id at the provider.
    pub client_id: String,
    /// The client secret (or `client_secret_file`, not both).
    pub client_secret: String,
    /// A file holding the client secret (trimmed).
    pub client_secret_file: String,
    /// `https://{public host}/app/sso/callback`, as registered at the
    /// provider.
    pub redirect_url: String,
    /// The claim that carries the national ID number (12 digits, a
    /// string): a name or a dotted path into nested objects.
    pub national_id_claim: String,
    /// The claim that carries the citizen's name (a name or a dotted path).
    pub name_claim: String,
    /// Scopes asked for besides `openid profile`.
    pub extra_scopes: Vec<String>,
    /// A PEM file of extra CA certificates to trust for the provider.
    pub ca_file: String,
}

impl Default for CitizenSsoConfig {
    fn default() -> Self {
        CitizenSsoConfig {
            issuer: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            client_secret_file: String::new(),
            redirect_url: String::new(),
            national_id_claim: "national_id".into(),
            name_claim: "name".into(),
            extra_scopes: Vec::new(),
            ca_file: String::new(),
        }
    }
}

/// Never prints the client secret.
impl std::fmt::Debug for CitizenSsoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CitizenSsoConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("client_secret_file", &self.client_secret_file)
            .field("redirect_url", &self.redirect_url)
            .field("national_id_claim", &self.national_id_claim)
            .field("name_claim", &self.name_claim)
            .field("extra_scopes", &self.extra_scopes)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl CitizenSsoConfig {
    /// The client secret: configured, or read from `client_secret_file`.
    pub fn secret(&self) -> Result<String, String> {
        read_secret(&self.client_secret, &self.client_secret_file)
    }

    /// Checks every field; the error names it (`citizen_sso.…`).
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        OidcClientFields {
            section: "citizen_sso",
            issuer: &self.issuer,
            client_id: &self.client_id,
            client_secret: &self.client_secret,
            client_secret_file: &self.client_secret_file,
            redirect_url: &self.redirect_url,
            callback: "/app/sso/callback",
            extra_scopes: &self.extra_scopes,
            ca_file: &self.ca_file,
        }
        .validate()?;
        for (field, path) in [
            ("national_id_claim", &self.national_id_claim),
            ("name_claim", &self.name_claim),
        ] {
            if !is_claim_path(path) {
                return Err(ConfigError::Invalid {
                    field: format!("citizen_sso.{field}"),
                    message: "a claim name or a dotted path (vneid.cccd)".into(),
                });
            }
        }
        Ok(())
    }
}

/// The fields every OpenID Connect client section has (`[sso]`,
/// `[citizen_sso]`), checked alike.
struct OidcClientFields<'a> {
    section: &'a str,
    issuer: &'a str,
    client_id: &'a str,
    client_secret: &'a str,
    client_secret_file: &'a str,
    redirect_url: &'a str,
    /// The path the redirect URL must end in.
    callback: &'a str,
    extra_scopes: &'a [String],
    ca_file: &'a str,
}

impl OidcClientFields<'_> {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            field: format!("{}.{field}", self.section),
            message,
        };
        provider_url(self.issuer).map_err(|m| invalid("issuer", m))?;
        if self.client_id.is_empty() {
            return Err(invalid("client_id", "must not be empty".into()));
        }
        match (
            self.client_secret.is_empty(),
            self.client_secret_file.is_empty(),
        ) {
            (true, true) => {
                return Err(invalid(
                    "client_secret",
                    "set client_secret or client_secret_file".into(),
                ));
            }
            (false, false) => {
                return Err(invalid(
                    "client_secret",
                    "set client_secret or client_secret_file, not both".into(),
                ));
            }
            _ => {}
        }
        read_secret(self.client_secret, self.client_secret_file)
            .map_err(|m| invalid("client_secret_file", m))?;
        let redirect = provider_url(self.redirect_url).map_err(|m| invalid("redirect_url", m))?;
        if !redirect.path().ends_with(self.callback) {
            return Err(invalid(
                "redirect_url",
                format!(
                    "`{}`: must end in {} (the route that takes the answer)",
                    self.redirect_url, self.callback
                ),
            ));
        }
        for s in self.extra_scopes {
            // RFC 6749 §3.3 scope-token.
            let ok = !s.is_empty()
                && s.bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
            if !ok {
                return Err(invalid(
                    "extra_scopes",
                    format!("`{s}` is not a scope (printable ASCII, no spaces, quotes or \\)"),
                ));
            }
        }
        if !self.ca_file.is_empty() {
            crate::sso::load_ca_file(self.ca_file).map_err(|m| invalid("ca_file", m))?;
        }
        Ok(())
    }
}

/// A client secret: `secret`, or read from `file` (trimmed) when set.
fn read_secret(secret: &str, file: &str) -> Result<String, String> {
    if file.is_empty() {
        return Ok(secret.to_string());
    }
    let s = std::fs::read_to_string(file).map_err(|e| format!("cannot read `{file}`: {e}"))?;
    let s = s.trim();
    if s.is_empty() {
        return Err(format!("`{file}` is empty"));
    }
    Ok(s.to_string())
}

/// A claim name or a dotted path (`realm_access.roles`).
fn is_claim_path(p: &str) -> bool {
    !p.is_empty() && !p.split('.').any(str::is_empty)
}

/// A provider or callback URL: `https://`, or `http://` on a loopback
/// host; no fragment.
fn provider_url(s: &str) -> Result<url::Url, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    let u = url::Url::parse(s).map_err(|e| format!("`{s}`: {e}"))?;
    match u.scheme() {
        "https" => {}
        "http" if crate::sso::is_loopback(&u) => {}
        _ => {
            return Err(format!(
                "`{s}`: must be https:// (http:// only on loopback)"
            ));
        }
    }
    if u.fragment().is_some() || u.host().is_none() {
        return Err(format!("`{s}`: a host and no #fragment"));
    }
    Ok(u)
}

impl Config {
    /// The `INGEST_SSO_*` overrides of `[sso]`, then those of
    /// `[citizen_sso]` (see [`Config::apply_env`]).
    pub(super) fn apply_sso_env(
        &mut self,
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        const VARS: [&str; 10] = [
            "INGEST_SSO_ISSUER",
            "INGEST_SSO_CLIENT_ID",
            "INGEST_SSO_CLIENT_SECRET",
            "INGEST_SSO_CLIENT_SECRET_FILE",
            "INGEST_SSO_REDIRECT_URL",
            "INGEST_SSO_ROLE_CLAIM",
            "INGEST_SSO_ROLE_MAP",
            "INGEST_SSO_EXTRA_SCOPES",
            "INGEST_SSO_BUTTON_LABEL",
            "INGEST_SSO_CA_FILE",
        ];
        for var in VARS {
            let Some(v) = get(var) else { continue };
            let c = self.sso.get_or_insert_with(SsoConfig::default);
            match var {
                "INGEST_SSO_ISSUER" => c.issuer = v,
                "INGEST_SSO_CLIENT_ID" => c.client_id = v,
                "INGEST_SSO_CLIENT_SECRET" => c.client_secret = v,
                "INGEST_SSO_CLIENT_SECRET_FILE" => c.client_secret_file = v,
                "INGEST_SSO_REDIRECT_URL" => c.redirect_url = v,
                "INGEST_SSO_ROLE_CLAIM" => c.role_claim = v,
                "INGEST_SSO_ROLE_MAP" => {
                    let mut map = BTreeMap::new();
                    for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                        let (theirs, ours) =
                            pair.split_once('=').ok_or_else(|| ConfigError::Env {
                                var: var.into(),
                                message: format!("`{pair}`: expected provider-role=our-role"),
                            })?;
                        map.insert(theirs.trim().to_string(), ours.trim().to_string());
                    }
                    c.role_map = map;
                }
                "INGEST_SSO_EXTRA_SCOPES" => {
                    c.extra_scopes = v
                        .split([' ', ','])
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect();
                }
                "INGEST_SSO_BUTTON_LABEL" => c.button_label = v,
                _ => c.ca_file = v,
            }
        }
        self.apply_citizen_sso_env(get)
    }

    /// The `INGEST_CITIZEN_SSO_*` overrides of `[citizen_sso]`.
    fn apply_citizen_sso_env(
        &mut self,
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        const VARS: [&str; 9] = [
            "INGEST_CITIZEN_SSO_ISSUER",
            "INGEST_CITIZEN_SSO_CLIENT_ID",
            "INGEST_CITIZEN_SSO_CLIENT_SECRET",
            "INGEST_CITIZEN_SSO_CLIENT_SECRET_FILE",
            "INGEST_CITIZEN_SSO_REDIRECT_URL",
            "INGEST_CITIZEN_SSO_NATIONAL_ID_CLAIM",
            "INGEST_CITIZEN_SSO_NAME_CLAIM",
            "INGEST_CITIZEN_SSO_EXTRA_SCOPES",
            "INGEST_CITIZEN_SSO_CA_FILE",
        ];
        for var in VARS {
            let Some(v) = get(var) else { continue };
            let c = self
                .citizen_sso
                .get_or_insert_with(CitizenSsoConfig::default);
            match var {
                "INGEST_CITIZEN_SSO_ISSUER" => c.issuer = v,
                "INGEST_CITIZEN_SSO_CLIENT_ID" => c.client_id = v,
                "INGEST_CITIZEN_SSO_CLIENT_SECRET" => c.client_secret = v,
                "INGEST_CITIZEN_SSO_CLIENT_SECRET_FILE" => c.client_secret_file = v,
                "INGEST_CITIZEN_SSO_REDIRECT_URL" => c.redirect_url = v,
                "INGEST_CITIZEN_SSO_NATIONAL_ID_CLAIM" => c.national_id_claim = v,
                "INGEST_CITIZEN_SSO_NAME_CLAIM" => c.name_claim = v,
                "INGEST_CITIZEN_SSO_EXTRA_SCOPES" => {
                    c.extra_scopes = v
                        .split([' ', ','])
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect();
                }
                _ => c.ca_file = v,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> SsoConfig {
        SsoConfig {
            issuer: "https://login.example.gov.vn/realms/ioc".into(),
            client_id: "tv-console".into(),
            client_secret: "s3cret".into(),
            redirect_url: "https://ioc.example.gov.vn/console/sso/callback".into(),
            role_map: [("ioc-police".to_string(), "police".to_string())].into(),
            ..SsoConfig::default()
        }
    }

    fn field_of(sso: SsoConfig) -> String {
        let cfg = Config {
            sso: Some(sso),
            ..Config::default()
        };
        match cfg.validate() {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn sso_section_parses_and_validates() {
        let cfg = Config::parse(
            "[sso]\nissuer = \"https://idp.example\"\nclient_id = \"tv\"\n\
             client_secret = \"x\"\nredirect_url = \"https://ioc.example/console/sso/callback\"\n\
             role_claim = \"realm_access.roles\"\nextra_scopes = [\"roles\"]\n\
             [sso.role_map]\n\"CSGT\" = \"police\"\n\"ioc-op\" = \"operator\"\n",
            "t.toml",
        )
        .unwrap();
        cfg.validate().unwrap();
        let sso = cfg.sso.as_ref().unwrap();
        assert_eq!(sso.role_map["CSGT"], "police");
        assert_eq!(sso.button_label, "Đăng nhập bằng SSO");
        assert!(!format!("{cfg:?}").contains("\"x\""), "secret printed");
        assert!(Config::default().sso.is_none());
    }

    #[test]
    fn sso_errors_name_the_field() {
        assert_eq!(field_of(good()), "Ok(())");
        let with = |f: fn(&mut SsoConfig)| {
            let mut c = good();
            f(&mut c);
            field_of(c)
        };
        assert_eq!(
            with(|c| c.issuer = "http://idp.example".into()),
            "sso.issuer"
        );
        assert_eq!(
            with(|c| c.issuer = "http://127.0.0.1:4000".into()),
            "Ok(())"
        );
        assert_eq!(with(|c| c.client_id.clear()), "sso.client_id");
        assert_eq!(with(|c| c.client_secret.clear()), "sso.client_secret");
        assert_eq!(
            with(|c| c.client_secret_file = "/nonexistent/secret".into()),
            "sso.client_secret"
        );
        assert_eq!(
            with(|c| {
                c.client_secret.clear();
                c.client_secret_file = "/nonexistent/secret".into();
            }),
            "sso.client_secret_file"
        );
        assert_eq!(
            with(|c| c.redirect_url = "https://ioc.example/elsewhere".into()),
            "sso.redirect_url"
        );
        assert_eq!(with(|c| c.role_claim = "a..b".into()), "sso.role_claim");
        assert_eq!(with(|c| c.role_map.clear()), "sso.role_map");
        assert_eq!(
            with(|c| {
                c.role_map.insert("x".into(), "god".into());
            }),
            "sso.role_map.x"
        );
        assert_eq!(
            with(|c| c.extra_scopes = vec!["two words".into()]),
            "sso.extra_scopes"
        );
        assert_eq!(with(|c| c.button_label = " ".into()), "sso.button_label");
        assert_eq!(
            with(|c| c.ca_file = "/nonexistent.pem".into()),
            "sso.ca_file"
        );
    }

    #[test]
    fn sso_env_overrides() {
        let mut c = Config::default();
        c.apply_env(|k| match k {
            "INGEST_SSO_ISSUER" => Some("https://idp.example".into()),
            "INGEST_SSO_CLIENT_ID" => Some("tv".into()),
            "INGEST_SSO_CLIENT_SECRET" => Some("x".into()),
            "INGEST_SSO_REDIRECT_URL" => Some("https://ioc.example/console/sso/callback".into()),
            "INGEST_SSO_ROLE_MAP" => Some("CSGT=police, ioc-op=operator".into()),
            "INGEST_SSO_EXTRA_SCOPES" => Some("roles groups".into()),
            _ => None,
        })
        .unwrap();
        c.validate().unwrap();
        let sso = c.sso.as_ref().unwrap();
        assert_eq!(sso.role_map["ioc-op"], "operator");
        assert_eq!(sso.extra_scopes, ["roles", "groups"]);
        let err = c
            .apply_env(|k| (k == "INGEST_SSO_ROLE_MAP").then(|| "police".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("INGEST_SSO_ROLE_MAP"), "{err}");
    }
}
