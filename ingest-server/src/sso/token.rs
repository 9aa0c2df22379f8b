//! ID tokens (OpenID Connect Core §3.1.3.7): the compact JWT is split, its
//! RS256 signature checked against the provider's published keys (JWKS)
//! with `ring`, and only then are its claims read and checked.
//!
//! Only RS256 is accepted: it is the algorithm every provider must support,
//! and a fixed list closes the classic JWT holes (`alg: none`, or an HMAC
//! "signed" with the public key). A token whose `kid` is not among the
//! cached keys makes the caller fetch the JWKS once more (the provider may
//! have rotated its keys), never more than once per token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Clock difference allowed between us and the provider (seconds).
pub(crate) const LEEWAY_S: i64 = 120;
/// A token issued longer ago than this is refused (seconds): a sign-in
/// takes minutes, not hours.
pub(crate) const MAX_AGE_S: i64 = 10 * 60;

/// Why a token was refused: a stable check name (`bad_signature`,
/// `nonce_mismatch`, ...) and the particulars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejected {
    /// Which check failed.
    pub check: &'static str,
    /// What was found.
    pub detail: String,
}

fn rejected(check: &'static str, detail: impl Into<String>) -> Rejected {
    Rejected {
        check,
        detail: detail.into(),
    }
}

/// The provider's published keys; entries are kept as JSON so that keys of
/// other kinds (EC, encryption keys) do not spoil the set.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Jwks {
    #[serde(default)]
    keys: Vec<Value>,
}

/// A parsed, not yet verified, compact JWT.
#[derive(Debug)]
pub(crate) struct Jwt {
    /// Header `alg`.
    pub alg: String,
    /// Header `kid`.
    pub kid: Option<String>,
    /// The claims (read them only after [`verify_signature`]).
    pub claims: Map<String, Value>,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

/// Splits and decodes a compact JWT.
pub(crate) fn parse(token: &str) -> Result<Jwt, Rejected> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, s] = parts.as_slice() else {
        return Err(rejected(
            "malformed",
            format!(
                "{} parts (an encrypted ID token is not supported)",
                parts.len()
            ),
        ));
    };
    let json = |part: &str, what: &str| -> Result<Value, Rejected> {
        let bytes = B64
            .decode(part)
            .map_err(|e| rejected("malformed", format!("{what}: {e}")))?;
        serde_json::from_slice(&bytes).map_err(|e| rejected("malformed", format!("{what}: {e}")))
    };
    let header = json(h, "header")?;
    let Value::Object(claims) = json(p, "payload")? else {
        return Err(rejected("malformed", "payload is not a JSON object"));
    };
    let signature = B64
        .decode(s)
        .map_err(|e| rejected("malformed", format!("signature: {e}")))?;
    Ok(Jwt {
        alg: header["alg"].as_str().unwrap_or_default().to_string(),
        kid: header["kid"].as_str().map(String::from),
        claims,
        signing_input: format!("{h}.{p}").into_bytes(),
        signature,
    })
}

/// The RSA signing key for `kid` (or the only one, when the token names
/// none).
pub(crate) fn find_key(jwks: &Jwks, kid: Option<&str>) -> Option<RsaPublicKeyComponents<Vec<u8>>> {
    let candidates: Vec<(&Value, RsaPublicKeyComponents<Vec<u8>>)> = jwks
        .keys
        .iter()
        .filter(|k| k["kty"] == "RSA")
        .filter(|k| k.get("use").is_none_or(|u| u == "sig"))
        .filter(|k| k.get("alg").is_none_or(|a| a == "RS256"))
        .filter_map(|k| {
            let part = |name: &str| -> Option<Vec<u8>> {
                let b = B64.decode(k[name].as_str()?).ok()?;
                // Big-endian without leading zeros, as ring wants it.
                let first = b.iter().position(|&x| x != 0)?;
                Some(b[first..].to_vec())
            };
            Some((
                k,
                RsaPublicKeyComponents {
                    n: part("n")?,
                    e: part("e")?,
                },
            ))
        })
        .collect();
    match kid {
        Some(kid) => candidates
            .into_iter()
            .find(|(k, _)| k["kid"] == kid)
            .map(|(_, c)| c),
        None if candidates.len() == 1 => candidates.into_iter().next().map(|(_, c)| c),
        None => None,
    }
}

/// Checks the algorithm and the signature.
pub(crate) fn verify_signature(
    jwt: &Jwt,
    key: &RsaPublicKeyComponents<Vec<u8>>,
) -> Result<(), Rejected> {
    if jwt.alg != "RS256" {
        return Err(rejected(
            "alg_not_allowed",
            format!("`{}` (only RS256 is accepted)", jwt.alg),
        ));
    }
    key.verify(
        &RSA_PKCS1_2048_8192_SHA256,
        &jwt.signing_input,
        &jwt.signature,
    )
    .map_err(|_| {
        rejected(
            "bad_signature",
            format!(
                "the signature does not verify with the provider's key {}",
                jwt.kid.as_deref().unwrap_or("(no kid)")
            ),
        )
    })
}

/// What the claims must say.
pub(crate) struct Expected<'a> {
    /// Our configured issuer.
    pub issuer: &'a str,
    /// Our client id.
    pub client_id: &'a str,
    /// The nonce we sent with this sign-in.
    pub nonce: &'a str,
    /// Now, Unix seconds.
    pub now_s: i64,
}

fn seconds(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

/// The claim checks of OpenID Connect Core §3.1.3.7 (after the signature).
pub(crate) fn check_claims(c: &Map<String, Value>, want: &Expected<'_>) -> Result<(), Rejected> {
    let iss = c.get("iss").and_then(Value::as_str).unwrap_or_default();
    if iss != want.issuer {
        return Err(rejected(
            "issuer_mismatch",
            format!("iss `{iss}`, expected `{}`", want.issuer),
        ));
    }
    let aud: Vec<&str> = match c.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !aud.contains(&want.client_id) {
        return Err(rejected(
            "audience_mismatch",
            format!("aud {aud:?} does not include `{}`", want.client_id),
        ));
    }
    match c.get("azp").map(|v| v.as_str()) {
        Some(Some(azp)) if azp == want.client_id => {}
        Some(azp) => {
            return Err(rejected(
                "azp_mismatch",
                format!("azp {azp:?}, expected `{}`", want.client_id),
            ));
        }
        None if aud.len() > 1 => {
            return Err(rejected(
                "azp_missing",
                format!("several audiences {aud:?} and no azp"),
            ));
        }
        None => {}
    }
    let exp = c
        .get("exp")
        .and_then(seconds)
        .ok_or_else(|| rejected("malformed", "no exp"))?;
    if want.now_s > exp.saturating_add(LEEWAY_S) {
        return Err(rejected(
            "expired",
            format!("expired {} s ago", want.now_s.saturating_sub(exp)),
        ));
    }
    let iat = c
        .get("iat")
        .and_then(seconds)
        .ok_or_else(|| rejected("malformed", "no iat"))?;
    if iat > want.now_s.saturating_add(LEEWAY_S) {
        return Err(rejected(
            "issued_in_future",
            format!(
                "iat is {} s ahead of our clock",
                iat.saturating_sub(want.now_s)
            ),
        ));
    }
    if iat < want.now_s.saturating_sub(MAX_AGE_S + LEEWAY_S) {
        return Err(rejected(
            "too_old",
            format!("issued {} s ago", want.now_s.saturating_sub(iat)),
        ));
    }
    let nonce = c.get("nonce").and_then(Value::as_str);
    if nonce != Some(want.nonce) {
        return Err(rejected(
            "nonce_mismatch",
            match nonce {
                Some(_) => "the nonce is not the one this sign-in sent",
                None => "no nonce",
            },
        ));
    }
    match c.get("sub").and_then(Value::as_str) {
        Some(s) if !s.is_empty() && s.len() <= 255 => Ok(()),
        _ => Err(rejected("malformed", "no usable sub")),
    }
}

/// A random URL-safe token of 32 bytes (state, nonce, PKCE verifier,
/// browser binding).
pub(crate) fn random() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    B64.encode(b)
}

/// The PKCE S256 challenge of a verifier (RFC 7636 §4.2).
pub(crate) fn s256(verifier: &str) -> String {
    B64.encode(Sha256::digest(verifier.as_bytes()))
}

/// Hex SHA-256, how states and browser bindings are stored.
pub(crate) fn digest(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pkce_s256_matches_rfc_7636() {
        // RFC 7636 Appendix B.
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(random().len(), 43);
        assert_ne!(random(), random());
    }

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn claims_are_checked() {
        let want = Expected {
            issuer: "https://idp.example",
            client_id: "tv",
            nonce: "n1",
            now_s: 1_000_000,
        };
        let good = json!({"iss": "https://idp.example", "aud": "tv", "exp": 1_000_300,
                          "iat": 999_990, "nonce": "n1", "sub": "u1"});
        assert_eq!(check_claims(&claims(good.clone()), &want), Ok(()));
        let with = |k: &str, v: Value| {
            let mut c = claims(good.clone());
            c.insert(k.into(), v);
            check_claims(&c, &want).map_err(|r| r.check)
        };
        assert_eq!(with("iss", json!("https://evil")), Err("issuer_mismatch"));
        assert_eq!(with("aud", json!("other")), Err("audience_mismatch"));
        assert_eq!(with("aud", json!(["tv", "other"])), Err("azp_missing"));
        let mut multi = claims(good.clone());
        multi.insert("aud".into(), json!(["tv", "other"]));
        multi.insert("azp".into(), json!("tv"));
        assert_eq!(check_claims(&multi, &want), Ok(()));
        assert_eq!(with("azp", json!("other")), Err("azp_mismatch"));
        assert_eq!(with("exp", json!(999_000)), Err("expired"));
        assert_eq!(with("exp", json!(999_900)), Ok(()), "within the leeway");
        assert_eq!(with("iat", json!(1_001_000)), Err("issued_in_future"));
        assert_eq!(with("iat", json!(990_000)), Err("too_old"));
        assert_eq!(with("nonce", json!("n2")), Err("nonce_mismatch"));
        assert_eq!(with("sub", json!("")), Err("malformed"));
        let mut no_nonce = claims(good);
        no_nonce.remove("nonce");
        assert_eq!(
            check_claims(&no_nonce, &want).map_err(|r| r.check),
            Err("nonce_mismatch")
        );
    }

    #[test]
    fn keys_are_chosen_by_kid() {
        let jwks: Jwks = serde_json::from_value(json!({"keys": [
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "a", "use": "sig", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
        ]}))
        .unwrap();
        assert!(find_key(&jwks, Some("a")).is_some());
        assert!(find_key(&jwks, Some("enc")).is_none());
        assert!(find_key(&jwks, Some("ec")).is_none());
        assert!(find_key(&jwks, None).is_some(), "the only RSA signing key");
        assert!(find_key(&Jwks::default(), None).is_none());
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        assert_eq!(parse("a.b").unwrap_err().check, "malformed");
        assert_eq!(parse("a.b.c.d.e").unwrap_err().check, "malformed");
        let h = B64.encode(br#"{"alg":"none"}"#);
        let p = B64.encode(br#"{"sub":"x"}"#);
        let jwt = parse(&format!("{h}.{p}.")).unwrap();
        let key = RsaPublicKeyComponents {
            n: vec![1u8; 256],
            e: vec![1, 0, 1],
        };
        assert_eq!(
            verify_signature(&jwt, &key).unwrap_err().check,
            "alg_not_allowed"
        );
    }
}
