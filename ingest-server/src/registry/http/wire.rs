//! The gateway's JSON contract (`api/registry-gateway.openapi.json`): the
//! request we send, and the checks every answer passes before anything in it
//! is used. An answer comes from outside: it is read as a `serde_json::Value`
//! and every field is checked by hand, so a wrong answer is refused with a
//! message that names the field and what was wrong (`owner.national_id:
//! expected a string, got a number`), never a panic.
//!
//! Minimum collection (Decree 13/2023): we ask for one plate and take only
//! what a notice needs; fields the gateway sends besides those (a phone
//! number, a date of birth) are ignored and never stored.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::registry::{COLOURS, Owner, Registration, Vehicle};

/// The body of `POST /v1/vehicle-lookups`.
#[derive(Debug, Serialize)]
pub(super) struct LookupRequest<'a> {
    /// Canonical plate text (`30A12345`).
    pub plate_text: &'a str,
    /// `white`, `yellow`, `blue` or `red`; left out when not known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plate_colour: Option<&'a str>,
    /// Why the owner is needed.
    pub purpose: &'a str,
    /// The case (event id), when there is one.
    pub case_reference: Option<String>,
    /// Who asks: `ingest` for automatic resolution, or a user id.
    pub requested_by: &'a str,
    /// This system (`registry.http.system_id`).
    pub requesting_system: &'a str,
}

/// Longest text field accepted in an answer, in characters.
const MAX_TEXT: usize = 512;

/// The registration in a 200 answer for `plate` (and `colour` when one was
/// asked for), checked.
pub(super) fn registration(
    body: &[u8],
    plate: &str,
    colour: Option<&str>,
) -> Result<Registration, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let top = object(&v, "the answer")?;
    let vehicle = object(top.get("vehicle").unwrap_or(&Value::Null), "vehicle")?;
    let owner = object(top.get("owner").unwrap_or(&Value::Null), "owner")?;
    let vf = Fields("vehicle", vehicle);
    let of = Fields("owner", owner);
    let r = Registration {
        vehicle: Vehicle {
            plate_text: vf.text("plate_text", true)?,
            plate_colour: vf.text("plate_colour", true)?,
            vehicle_type: vf.text("vehicle_type", true)?,
            make: vf.text("make", false)?,
            colour: vf.text("colour", false)?,
            registration_status: vf.text("registration_status", true)?,
            owner_id: vf.text("owner_id", true)?,
        },
        owner: Owner {
            owner_id: of.text("owner_id", true)?,
            full_name: of.text("full_name", true)?,
            national_id: of.text("national_id", true)?,
            address: of.text("address", true)?,
            email: of.optional("email")?,
            vneid: of.optional("vneid")?,
        },
    };
    if r.vehicle.plate_text != plate {
        return Err(format!(
            "vehicle.plate_text: `{}` answers another plate than `{plate}`",
            r.vehicle.plate_text
        ));
    }
    if !COLOURS.contains(&r.vehicle.plate_colour.as_str()) {
        return Err(format!(
            "vehicle.plate_colour: `{}` is not one of {COLOURS:?}",
            r.vehicle.plate_colour
        ));
    }
    if let Some(c) = colour
        && c != r.vehicle.plate_colour
    {
        return Err(format!(
            "vehicle.plate_colour: `{}` answers another colour than `{c}`",
            r.vehicle.plate_colour
        ));
    }
    if r.vehicle.owner_id != r.owner.owner_id {
        return Err(format!(
            "vehicle.owner_id `{}` is not owner.owner_id `{}`",
            r.vehicle.owner_id, r.owner.owner_id
        ));
    }
    let id = &r.owner.national_id;
    if !(id.len() == 12 || id.len() == 9) || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err("owner.national_id: expected 12 digits (CCCD) or 9 (CMND)".into());
    }
    if let Some(e) = &r.owner.email
        && (!e.contains('@') || e.contains(char::is_whitespace))
    {
        return Err("owner.email: not an e-mail address".into());
    }
    Ok(r)
}

/// The `error.code` of an error answer (`{"error": {"code", "message"}}`),
/// and its message; `None` when the body is not that shape.
pub(super) fn error_of(body: &[u8]) -> Option<(String, String)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    let code = e.get("code")?.as_str()?;
    let message = e.get("message").and_then(Value::as_str).unwrap_or("");
    let clip = |s: &str| s.chars().filter(|c| !c.is_control()).take(200).collect();
    Some((clip(code), clip(message)))
}

/// Whether a `Content-Type` is JSON.
pub(super) fn is_json(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, String> {
    match v {
        Value::Object(m) => Ok(m),
        Value::Null => Err(format!("{what}: missing")),
        other => Err(format!("{what}: expected an object, got {}", kind(other))),
    }
}

/// The fields of one object of the answer, named `.0` in messages.
struct Fields<'a>(&'static str, &'a Map<String, Value>);

impl Fields<'_> {
    /// A string field; `nonempty`: blank is refused too.
    fn text(&self, name: &str, nonempty: bool) -> Result<String, String> {
        match self.optional(name)? {
            Some(s) => {
                if nonempty && s.trim().is_empty() {
                    return Err(format!("{}.{name}: empty", self.0));
                }
                Ok(s)
            }
            None if !nonempty => match self.1.get(name) {
                // Present and empty: an empty make or colour is allowed.
                Some(Value::String(_)) => Ok(String::new()),
                _ => Err(format!("{}.{name}: missing", self.0)),
            },
            None => Err(format!("{}.{name}: missing", self.0)),
        }
    }

    /// A string field that may be absent, null or empty (`None`).
    fn optional(&self, name: &str) -> Result<Option<String>, String> {
        let field = format!("{}.{name}", self.0);
        match self.1.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => {
                if s.chars().count() > MAX_TEXT {
                    return Err(format!("{field}: longer than {MAX_TEXT} characters"));
                }
                if s.chars().any(char::is_control) {
                    return Err(format!("{field}: contains control characters"));
                }
                Ok((!s.is_empty()).then(|| s.clone()))
            }
            Some(other) => Err(format!("{field}: expected a string, got {}", kind(other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer() -> Value {
        json!({
            "vehicle": {"plate_text": "30A12345", "plate_colour": "white", "vehicle_type": "car",
                "make": "Toyota Vios", "colour": "", "registration_status": "active",
                "owner_id": "o1"},
            "owner": {"owner_id": "o1", "full_name": "Nguyễn Văn An",
                "national_id": "001099012345", "address": "12 Xuân Thủy, Hà Nội",
                "email": null, "phone": "0912345678", "date_of_birth": "1990-01-01"}
        })
    }

    fn check(v: &Value) -> Result<Registration, String> {
        registration(v.to_string().as_bytes(), "30A12345", Some("white"))
    }

    #[test]
    fn a_good_answer_keeps_only_what_a_notice_needs() {
        let r = check(&answer()).unwrap();
        assert_eq!(r.owner.full_name, "Nguyễn Văn An");
        assert_eq!(r.vehicle.colour, "");
        assert_eq!(r.owner.email, None);
        registration(answer().to_string().as_bytes(), "30A12345", None).unwrap();
    }

    #[test]
    fn bad_answers_name_what_is_wrong() {
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = answer();
            f(&mut v);
            check(&v).unwrap_err()
        };
        type Edit<'a> = &'a dyn Fn(&mut Value);
        let cases: Vec<(Edit, &str)> = vec![
            (
                &|v| v["owner"]["national_id"] = json!(1099012345),
                "owner.national_id: expected a string, got a number",
            ),
            (
                &|v| v["owner"]["national_id"] = json!("12345"),
                "owner.national_id: expected 12 digits",
            ),
            (
                &|v| {
                    v["owner"].as_object_mut().unwrap().remove("full_name");
                },
                "owner.full_name: missing",
            ),
            (
                &|v| v["owner"]["address"] = json!("  "),
                "owner.address: empty",
            ),
            (
                &|v| {
                    v["vehicle"].as_object_mut().unwrap().remove("make");
                },
                "vehicle.make: missing",
            ),
            (
                &|v| v["vehicle"] = json!([1]),
                "vehicle: expected an object, got an array",
            ),
            (
                &|v| {
                    v.as_object_mut().unwrap().remove("owner");
                },
                "owner: missing",
            ),
            (
                &|v| v["vehicle"]["plate_text"] = json!("51F67890"),
                "answers another plate",
            ),
            (
                &|v| v["vehicle"]["plate_colour"] = json!("yellow"),
                "answers another colour",
            ),
            (
                &|v| v["vehicle"]["plate_colour"] = json!("green"),
                "vehicle.plate_colour: `green`",
            ),
            (
                &|v| v["vehicle"]["owner_id"] = json!("o2"),
                "is not owner.owner_id",
            ),
            (
                &|v| v["owner"]["full_name"] = json!("a\u{0}b"),
                "owner.full_name: contains control",
            ),
            (
                &|v| v["owner"]["full_name"] = json!("x".repeat(600)),
                "owner.full_name: longer than 512",
            ),
            (&|v| v["owner"]["email"] = json!("nobody"), "owner.email"),
            (
                &|v| *v = json!("hello"),
                "the answer: expected an object, got a string",
            ),
        ];
        for (f, want) in cases {
            let got = with(f);
            assert!(got.contains(want), "{got:?} should contain {want:?}");
        }
        let got = registration(b"{\"vehicle\": ", "30A12345", None).unwrap_err();
        assert!(got.starts_with("not JSON"), "{got}");
    }

    /// The OpenAPI document says what this module does.
    #[test]
    fn the_openapi_document_matches_the_code() {
        let doc: Value =
            serde_json::from_str(include_str!("../../../api/registry-gateway.openapi.json"))
                .unwrap();
        assert!(doc["paths"][super::super::LOOKUP_PATH]["post"].is_object());
        let schemas = &doc["components"]["schemas"];
        let names = |v: &Value| {
            let mut n: Vec<String> = v
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .or_else(|| {
                    v.as_array().map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(String::from))
                            .collect()
                    })
                })
                .unwrap();
            n.sort();
            n
        };
        let request = serde_json::to_value(LookupRequest {
            plate_text: "30A12345",
            plate_colour: Some("white"),
            purpose: "p",
            case_reference: None,
            requested_by: "ingest",
            requesting_system: "ingest-server",
        })
        .unwrap();
        assert_eq!(
            names(&schemas["LookupRequest"]["properties"]),
            names(&request)
        );
        let good = answer();
        assert_eq!(
            names(&schemas["Vehicle"]["required"]),
            names(&good["vehicle"])
        );
        // Every field the document requires is refused when missing.
        for (object, schema) in [("vehicle", "Vehicle"), ("owner", "Owner")] {
            for field in names(&schemas[schema]["required"]) {
                let mut v = good.clone();
                v[object].as_object_mut().unwrap().remove(&field);
                let err = check(&v).unwrap_err();
                assert!(err.contains(&format!("{object}.{field}")), "{err}");
            }
        }
    }

    #[test]
    fn error_bodies_and_content_types() {
        assert_eq!(
            error_of(br#"{"error":{"code":"vehicle_not_found","message":"no such plate"}}"#),
            Some(("vehicle_not_found".into(), "no such plate".into()))
        );
        assert_eq!(error_of(b"<html>404</html>"), None);
        assert_eq!(error_of(br#"{"error":{"code":5}}"#), None);
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/problem+json"));
        assert!(!is_json("text/html"));
        assert!(!is_json(""));
    }
}
