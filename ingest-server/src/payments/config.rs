//! The `[payments]` configuration section: which payment gateway the
//! deployment collects fines through, with what merchant credentials.
//!
//! Fines are state revenue, so the gateway and its merchant account are set
//! per deployment (the city's collection arrangement with the State
//! Treasury); nothing here has a default that could send a citizen's money
//! somewhere by accident. No `[payments.vnpay]` section (and no
//! `INGEST_VNPAY_*` variable): online payment is off and its routes say so.
//! Checked once at start, like the rest of [`crate::config`]; errors name
//! the field (`payments.vnpay.return_url`) or the variable.

use std::net::IpAddr;

use serde::Deserialize;

use crate::config::ConfigError;

/// `[payments]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    /// The VNPay gateway (protocol 2.1.0); absent: payments off.
    pub vnpay: Option<VnPayConfig>,
}

/// `[payments.vnpay]`: the merchant account at VNPay.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VnPayConfig {
    /// The merchant's terminal code (`vnp_TmnCode`), given by VNPay.
    pub tmn_code: String,
    /// The shared secret for `vnp_SecureHash` (or `hash_secret_file`, not
    /// both).
    pub hash_secret: String,
    /// A file holding the secret (first line, trimmed).
    pub hash_secret_file: String,
    /// The payment page, e.g.
    /// `https://sandbox.vnpayment.vn/paymentv2/vpcpay.html`.
    pub pay_url: String,
    /// The merchant API (`querydr`), e.g.
    /// `https://sandbox.vnpayment.vn/merchant_webapi/api/transaction`.
    pub api_url: String,
    /// Where the gateway sends the person back: this server's
    /// `https://{host}/pay/vnpay/return`.
    pub return_url: String,
    /// Addresses the IPN may come from (VNPay publishes its own); empty:
    /// any (the hash is checked in any case). Behind a proxy (the
    /// Kubernetes ingress) the source is the address it forwards, when the
    /// proxy is listed in `http.trusted_proxies`.
    pub ipn_allowed_ips: Vec<String>,
    /// How long the person has to pay once sent to the gateway
    /// (`vnp_ExpireDate`), minutes.
    pub order_expiry_minutes: u32,
    /// A payment still pending after this many minutes is asked about
    /// (`querydr`) by the reconciler. With `reconcile_interval_s`, no more
    /// than `order_expiry_minutes` + 60 minutes: every order is asked about
    /// before it is an hour past its expiry.
    pub reconcile_after_minutes: u32,
    /// How often the reconciler runs, seconds, 10..=86400. It cannot be
    /// turned off: payments whose IPN was lost are found only by it, and
    /// the 20-day deadline check waits for the orders it settles.
    pub reconcile_interval_s: u64,
    /// The payment page's language, `vn` or `en`.
    pub locale: String,
}

impl Default for VnPayConfig {
    fn default() -> Self {
        VnPayConfig {
            tmn_code: String::new(),
            hash_secret: String::new(),
            hash_secret_file: String::new(),
            pay_url: String::new(),
            api_url: String::new(),
            return_url: String::new(),
            ipn_allowed_ips: Vec::new(),
            order_expiry_minutes: 15,
            reconcile_after_minutes: 20,
            reconcile_interval_s: 300,
            locale: "vn".into(),
        }
    }
}

/// Never prints the secret.
impl std::fmt::Debug for VnPayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VnPayConfig")
            .field("tmn_code", &self.tmn_code)
            .field("hash_secret", &"***")
            .field("hash_secret_file", &self.hash_secret_file)
            .field("pay_url", &self.pay_url)
            .field("api_url", &self.api_url)
            .field("return_url", &self.return_url)
            .field("ipn_allowed_ips", &self.ipn_allowed_ips)
            .field("order_expiry_minutes", &self.order_expiry_minutes)
            .field("reconcile_after_minutes", &self.reconcile_after_minutes)
            .field("reconcile_interval_s", &self.reconcile_interval_s)
            .field("locale", &self.locale)
            .finish()
    }
}

/// The route the gateway sends the person back to.
pub const RETURN_PATH: &str = "/pay/vnpay/return";

impl VnPayConfig {
    /// The secret: configured, or read from `hash_secret_file`.
    pub fn secret(&self) -> Result<String, String> {
        if self.hash_secret_file.is_empty() {
            return Ok(self.hash_secret.clone());
        }
        let s = std::fs::read_to_string(&self.hash_secret_file)
            .map_err(|e| format!("cannot read `{}`: {e}", self.hash_secret_file))?;
        let s = s.lines().next().unwrap_or_default().trim();
        if s.is_empty() {
            return Err(format!("`{}` is empty", self.hash_secret_file));
        }
        Ok(s.to_string())
    }

    /// The IPN allow-list, parsed.
    pub fn allowed_ips(&self) -> Result<Vec<IpAddr>, String> {
        self.ipn_allowed_ips
            .iter()
            .map(|s| {
                s.trim()
                    .parse::<IpAddr>()
                    .map_err(|e| format!("`{s}` is not an IP address ({e})"))
            })
            .collect()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            field: format!("payments.vnpay.{field}"),
            message,
        };
        let t = &self.tmn_code;
        if t.is_empty() || t.len() > 20 || !t.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid(
                "tmn_code",
                "the terminal code VNPay gave (1-20 letters and digits)".into(),
            ));
        }
        match (
            self.hash_secret.is_empty(),
            self.hash_secret_file.is_empty(),
        ) {
            (true, true) => {
                return Err(invalid(
                    "hash_secret",
                    "set hash_secret or hash_secret_file".into(),
                ));
            }
            (false, false) => {
                return Err(invalid(
                    "hash_secret",
                    "set hash_secret or hash_secret_file, not both".into(),
                ));
            }
            _ => {}
        }
        let secret = self.secret().map_err(|m| invalid("hash_secret_file", m))?;
        if secret.len() < 8 {
            return Err(invalid(
                "hash_secret",
                "at least 8 characters (VNPay's secrets are 32)".into(),
            ));
        }
        gateway_url(&self.pay_url).map_err(|m| invalid("pay_url", m))?;
        gateway_url(&self.api_url).map_err(|m| invalid("api_url", m))?;
        let ret = gateway_url(&self.return_url).map_err(|m| invalid("return_url", m))?;
        if ret.path() != RETURN_PATH || ret.query().is_some() {
            return Err(invalid(
                "return_url",
                format!(
                    "`{}`: must be this server's {RETURN_PATH}, without a query",
                    self.return_url
                ),
            ));
        }
        self.allowed_ips()
            .map_err(|m| invalid("ipn_allowed_ips", m))?;
        if !(1..=1440).contains(&self.order_expiry_minutes) {
            return Err(invalid("order_expiry_minutes", "within 1..=1440".into()));
        }
        // The reconciler must run: it is what finds a payment whose IPN
        // was lost, and the 20-day deadline check holds a case whose
        // payment order is pending until the order is settled.
        if !(10..=86_400).contains(&self.reconcile_interval_s) {
            return Err(invalid(
                "reconcile_interval_s",
                "within 10..=86400: the reconciler must run (it finds payments whose \
                 notification was lost)"
                    .into(),
            ));
        }
        // Every order is asked about before it is past its expiry and the
        // grace after it (`payments::PENDING_GRACE_MS`): asked no later than
        // `reconcile_after_minutes` plus one interval after it was made.
        let grace_s = super::PENDING_GRACE_MS / 1000;
        let latest_s = i64::from(self.order_expiry_minutes) * 60 + grace_s;
        let asked_s = i64::from(self.reconcile_after_minutes) * 60
            + i64::try_from(self.reconcile_interval_s).unwrap_or(i64::MAX);
        if self.reconcile_after_minutes == 0 || asked_s > latest_s {
            return Err(invalid(
                "reconcile_after_minutes",
                format!(
                    "at least 1, and {after} min plus one reconcile_interval_s ({every} s) at \
                     most order_expiry_minutes + {grace} min ({expiry} + {grace}): every order \
                     is asked about before it is {grace} minutes past its expiry",
                    after = self.reconcile_after_minutes,
                    every = self.reconcile_interval_s,
                    expiry = self.order_expiry_minutes,
                    grace = grace_s / 60,
                ),
            ));
        }
        if !matches!(self.locale.as_str(), "vn" | "en") {
            return Err(invalid("locale", "`vn` or `en`".into()));
        }
        Ok(())
    }
}

/// A gateway or return URL: `https://`, or `http://` on a loopback host (the
/// sandbox, tests); a host; no fragment.
fn gateway_url(s: &str) -> Result<url::Url, String> {
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

impl PaymentsConfig {
    /// Environment overrides `INGEST_VNPAY_TMN_CODE`, `_HASH_SECRET`,
    /// `_HASH_SECRET_FILE`, `_PAY_URL`, `_API_URL`, `_RETURN_URL`,
    /// `_IPN_ALLOWED_IPS` (comma- or space-separated), `_ORDER_EXPIRY_MINUTES`,
    /// `_RECONCILE_AFTER_MINUTES`, `_RECONCILE_INTERVAL_S`, `_LOCALE`; any
    /// of them turns VNPay on.
    pub fn apply_env(&mut self, get: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        const VARS: [&str; 11] = [
            "INGEST_VNPAY_TMN_CODE",
            "INGEST_VNPAY_HASH_SECRET",
            "INGEST_VNPAY_HASH_SECRET_FILE",
            "INGEST_VNPAY_PAY_URL",
            "INGEST_VNPAY_API_URL",
            "INGEST_VNPAY_RETURN_URL",
            "INGEST_VNPAY_IPN_ALLOWED_IPS",
            "INGEST_VNPAY_ORDER_EXPIRY_MINUTES",
            "INGEST_VNPAY_RECONCILE_AFTER_MINUTES",
            "INGEST_VNPAY_RECONCILE_INTERVAL_S",
            "INGEST_VNPAY_LOCALE",
        ];
        for var in VARS {
            let Some(v) = get(var) else { continue };
            let number = |v: &str| -> Result<u64, ConfigError> {
                v.trim().parse().map_err(|_| ConfigError::Env {
                    var: var.into(),
                    message: format!("`{v}` is not a whole number"),
                })
            };
            let small = |v: &str| -> Result<u32, ConfigError> {
                u32::try_from(number(v)?).map_err(|_| ConfigError::Env {
                    var: var.into(),
                    message: format!("`{v}` is too large"),
                })
            };
            let c = self.vnpay.get_or_insert_with(VnPayConfig::default);
            match var {
                "INGEST_VNPAY_TMN_CODE" => c.tmn_code = v,
                "INGEST_VNPAY_HASH_SECRET" => c.hash_secret = v,
                "INGEST_VNPAY_HASH_SECRET_FILE" => c.hash_secret_file = v,
                "INGEST_VNPAY_PAY_URL" => c.pay_url = v,
                "INGEST_VNPAY_API_URL" => c.api_url = v,
                "INGEST_VNPAY_RETURN_URL" => c.return_url = v,
                "INGEST_VNPAY_IPN_ALLOWED_IPS" => {
                    c.ipn_allowed_ips = v
                        .split([',', ' '])
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect();
                }
                "INGEST_VNPAY_ORDER_EXPIRY_MINUTES" => c.order_expiry_minutes = small(&v)?,
                "INGEST_VNPAY_RECONCILE_AFTER_MINUTES" => c.reconcile_after_minutes = small(&v)?,
                "INGEST_VNPAY_RECONCILE_INTERVAL_S" => c.reconcile_interval_s = number(&v)?,
                _ => c.locale = v,
            }
        }
        Ok(())
    }

    /// Checks every field; the error names it (`payments.vnpay.…`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.vnpay {
            Some(v) => v.validate(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn good() -> VnPayConfig {
        VnPayConfig {
            tmn_code: "TVHN0001".into(),
            hash_secret: "SECRETKEY0123456789ABCDEF".into(),
            pay_url: "https://sandbox.vnpayment.vn/paymentv2/vpcpay.html".into(),
            api_url: "https://sandbox.vnpayment.vn/merchant_webapi/api/transaction".into(),
            return_url: "https://ioc.example.gov.vn/pay/vnpay/return".into(),
            ..VnPayConfig::default()
        }
    }

    fn field_of(c: VnPayConfig) -> String {
        match (PaymentsConfig { vnpay: Some(c) }).validate() {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn vnpay_section_parses_and_is_off_by_default() {
        assert!(Config::default().payments.vnpay.is_none());
        let cfg = Config::parse(
            "[payments.vnpay]\ntmn_code = \"TVHN0001\"\nhash_secret = \"SECRETKEY0123\"\n\
             pay_url = \"https://pay.example/paymentv2/vpcpay.html\"\n\
             api_url = \"https://pay.example/merchant_webapi/api/transaction\"\n\
             return_url = \"https://ioc.example/pay/vnpay/return\"\n\
             ipn_allowed_ips = [\"113.160.92.202\"]\norder_expiry_minutes = 10\n",
            "t.toml",
        )
        .unwrap();
        cfg.validate().unwrap();
        let v = cfg.payments.vnpay.as_ref().unwrap();
        assert_eq!(v.order_expiry_minutes, 10);
        assert_eq!(v.reconcile_after_minutes, 20);
        assert!(
            !format!("{cfg:?}").contains("SECRETKEY0123"),
            "secret printed"
        );
        let err = Config::parse("[payments.vnpay]\nsecret = \"x\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("secret"), "{err}");
    }

    #[test]
    fn vnpay_errors_name_the_field() {
        assert_eq!(field_of(good()), "Ok(())");
        let with = |f: fn(&mut VnPayConfig)| {
            let mut c = good();
            f(&mut c);
            field_of(c)
        };
        assert_eq!(
            with(|c| c.tmn_code = "a b".into()),
            "payments.vnpay.tmn_code"
        );
        assert_eq!(
            with(|c| c.hash_secret.clear()),
            "payments.vnpay.hash_secret"
        );
        assert_eq!(
            with(|c| c.hash_secret = "short".into()),
            "payments.vnpay.hash_secret"
        );
        assert_eq!(
            with(|c| {
                c.hash_secret.clear();
                c.hash_secret_file = "/nonexistent/secret".into();
            }),
            "payments.vnpay.hash_secret_file"
        );
        assert_eq!(
            with(|c| c.pay_url = "http://pay.example/x".into()),
            "payments.vnpay.pay_url"
        );
        assert_eq!(
            with(|c| c.pay_url = "http://127.0.0.1:9/paymentv2/vpcpay.html".into()),
            "Ok(())"
        );
        assert_eq!(with(|c| c.api_url.clear()), "payments.vnpay.api_url");
        assert_eq!(
            with(|c| c.return_url = "https://ioc.example/elsewhere".into()),
            "payments.vnpay.return_url"
        );
        assert_eq!(
            with(|c| c.ipn_allowed_ips = vec!["not-an-ip".into()]),
            "payments.vnpay.ipn_allowed_ips"
        );
        assert_eq!(
            with(|c| c.order_expiry_minutes = 0),
            "payments.vnpay.order_expiry_minutes"
        );
        assert_eq!(
            with(|c| c.reconcile_interval_s = 5),
            "payments.vnpay.reconcile_interval_s"
        );
        // The reconciler cannot be turned off.
        assert_eq!(
            with(|c| c.reconcile_interval_s = 0),
            "payments.vnpay.reconcile_interval_s"
        );
        // Every order is asked about before it is past its expiry and the
        // hour's grace: 15 min + 1 h = 4500 s.
        assert_eq!(
            with(|c| {
                c.reconcile_after_minutes = 70;
                c.reconcile_interval_s = 300;
            }),
            "Ok(())"
        );
        assert_eq!(
            with(|c| {
                c.reconcile_after_minutes = 71;
                c.reconcile_interval_s = 300;
            }),
            "payments.vnpay.reconcile_after_minutes"
        );
        assert_eq!(
            with(|c| {
                c.reconcile_after_minutes = 20;
                c.reconcile_interval_s = 3600;
            }),
            "payments.vnpay.reconcile_after_minutes"
        );
        assert_eq!(
            with(|c| c.reconcile_after_minutes = 10_080),
            "payments.vnpay.reconcile_after_minutes"
        );
        assert_eq!(
            with(|c| c.reconcile_after_minutes = 0),
            "payments.vnpay.reconcile_after_minutes"
        );
        assert_eq!(with(|c| c.locale = "fr".into()), "payments.vnpay.locale");
    }

    #[test]
    fn vnpay_env_overrides() {
        let mut c = Config::default();
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "FILESECRET0123\n").unwrap();
        let path = secret.display().to_string();
        c.apply_env(|k| match k {
            "INGEST_VNPAY_TMN_CODE" => Some("TVHN0001".into()),
            "INGEST_VNPAY_HASH_SECRET_FILE" => Some(path.clone()),
            "INGEST_VNPAY_PAY_URL" => Some("https://pay.example/paymentv2/vpcpay.html".into()),
            "INGEST_VNPAY_API_URL" => Some("https://pay.example/api".into()),
            "INGEST_VNPAY_RETURN_URL" => Some("https://ioc.example/pay/vnpay/return".into()),
            "INGEST_VNPAY_IPN_ALLOWED_IPS" => Some("113.160.92.202, 203.171.19.146".into()),
            "INGEST_VNPAY_ORDER_EXPIRY_MINUTES" => Some("30".into()),
            _ => None,
        })
        .unwrap();
        c.validate().unwrap();
        let v = c.payments.vnpay.as_ref().unwrap();
        assert_eq!(v.secret().unwrap(), "FILESECRET0123");
        assert_eq!(v.allowed_ips().unwrap().len(), 2);
        assert_eq!(v.order_expiry_minutes, 30);
        let err = c
            .apply_env(|k| (k == "INGEST_VNPAY_ORDER_EXPIRY_MINUTES").then(|| "soon".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("INGEST_VNPAY_ORDER_EXPIRY_MINUTES"), "{err}");
    }
}
