//! Canonical bytes: the one deterministic serialisation of a JSON value that
//! signatures are computed over. It is the JSON Canonicalization Scheme of
//! RFC 8785 (JCS) with one restriction: integers must lie within
//! ±(2^53 − 1), so that every number means the same thing to every parser.
//!
//! * objects: members sorted by key, compared as sequences of UTF-16 code
//!   units; no whitespace anywhere; `{"a":1,"b":[true,null]}`.
//! * strings: `"` and `\` escaped as `\"` and `\\`; U+0008, U+0009, U+000A,
//!   U+000C, U+000D as `\b \t \n \f \r`; other characters below U+0020 as
//!   `\u00xx` (lowercase hex); everything else written as raw UTF-8.
//! * numbers: written as ECMAScript's `Number.prototype.toString` writes the
//!   IEEE-754 double (shortest digits that read back as the same double;
//!   plain notation for 1e-6 <= |x| < 1e21, otherwise `d.ddde±n`; `-0` is
//!   `0`). So `52.0` is `52`, `0.1` is `0.1`, `1e30` is `1e+30`.
//!
//! Use [`canonical_bytes`] on a parsed [`Value`] (what a receiver does, so
//! unknown fields are kept) or [`canonical_bytes_of`] on a typed message.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Number, Value};
use thiserror::Error;

/// The largest integer magnitude allowed in a canonical value, 2^53 − 1
/// (JavaScript's `Number.MAX_SAFE_INTEGER`).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// How deeply arrays and objects may nest (the same limit serde_json's parser
/// applies), so canonicalising a hostile value cannot exhaust the stack.
pub const MAX_DEPTH: usize = 128;

/// A value that has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CanonicalError {
    /// An integer outside ±(2^53 − 1): not every parser reads it exactly.
    #[error("integer {0} is outside ±(2^53 - 1) and has no canonical form")]
    UnsafeInteger(String),
    /// A number that is not finite (cannot normally occur in a `Value`).
    #[error("number {0} is not finite and has no canonical form")]
    NonFinite(String),
    /// Arrays/objects nested deeper than [`MAX_DEPTH`].
    #[error("value nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The typed value could not be turned into JSON at all (for example a
    /// date outside the years RFC 3339 can write).
    #[error("cannot serialise to JSON: {0}")]
    Serialize(String),
}

/// The canonical bytes of a JSON value (see the module docs for the rule).
pub fn canonical_bytes(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = String::new();
    write_value(&mut out, value, 0)?;
    Ok(out.into_bytes())
}

/// The canonical bytes of any serialisable value: serialises it to a
/// [`Value`] first, then applies [`canonical_bytes`].
pub fn canonical_bytes_of<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let value =
        serde_json::to_value(value).map_err(|e| CanonicalError::Serialize(e.to_string()))?;
    canonical_bytes(&value)
}

fn write_value(out: &mut String, value: &Value, depth: usize) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            let depth = deeper(depth)?;
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item, depth)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let depth = deeper(depth)?;
            out.push('{');
            for (i, (key, item)) in sorted_members(map).into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_value(out, item, depth)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn deeper(depth: usize) -> Result<usize, CanonicalError> {
    if depth >= MAX_DEPTH {
        Err(CanonicalError::TooDeep)
    } else {
        Ok(depth + 1)
    }
}

/// Members sorted by key as UTF-16 code units (RFC 8785 §3.2.3). This is not
/// the order of Rust's `str` (UTF-8 bytes) for keys mixing characters above
/// U+FFFF with ones in U+E000..U+FFFF, and `Map` may keep insertion order
/// when serde_json's `preserve_order` is on, so sort explicitly.
fn sorted_members(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    members
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{0C}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_number(out: &mut String, n: &Number) -> Result<(), CanonicalError> {
    if let Some(u) = n.as_u64() {
        if u > MAX_SAFE_INTEGER {
            return write_large_integer(out, u as f64, &u.to_string());
        }
        let _ = write!(out, "{u}");
    } else if let Some(i) = n.as_i64() {
        if i.unsigned_abs() > MAX_SAFE_INTEGER {
            return write_large_integer(out, i as f64, &i.to_string());
        }
        let _ = write!(out, "{i}");
    } else if let Some(f) = n.as_f64() {
        write_f64(out, f)?;
    } else {
        // Only reachable with serde_json's `arbitrary_precision`: a number
        // that fits none of u64, i64, f64.
        return Err(CanonicalError::UnsafeInteger(n.to_string()));
    }
    Ok(())
}

/// An integer beyond ±(2^53 − 1) is accepted only when it is exactly the
/// text ECMAScript prints for the double it rounds to: that is how a large
/// double (say 3.1e16) reads back after canonicalisation, so canonical bytes
/// stay canonical when parsed again (found by `make fuzz`). Any other large
/// integer would lose digits as a double — two payloads with one canonical
/// form — and is refused.
fn write_large_integer(out: &mut String, as_double: f64, text: &str) -> Result<(), CanonicalError> {
    let mut printed = String::new();
    write_f64(&mut printed, as_double)?;
    if printed != text {
        return Err(CanonicalError::UnsafeInteger(text.to_string()));
    }
    out.push_str(&printed);
    Ok(())
}

/// Writes a finite double as ECMAScript `Number.prototype.toString` does
/// (ECMA-262 §6.1.6.1.20), which is what RFC 8785 prescribes.
fn write_f64(out: &mut String, f: f64) -> Result<(), CanonicalError> {
    if !f.is_finite() {
        return Err(CanonicalError::NonFinite(f.to_string()));
    }
    if f == 0.0 {
        out.push('0'); // also -0.0
        return Ok(());
    }
    if f < 0.0 {
        out.push('-');
    }
    let (digits, exponent) =
        shortest_digits(f.abs()).ok_or_else(|| CanonicalError::NonFinite(f.to_string()))?;
    // ECMAScript's terms: value = 0.d1d2..dk * 10^n, so n = exponent + 1.
    let k = digits.len() as i32;
    let n = exponent + 1;
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let e = n - 1;
        let _ = write!(out, "e{}{}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    Ok(())
}

/// The ECMAScript digit string of a positive finite double: the shortest
/// digits `d1..dk` (and exponent `e`, value ≈ d1.d2..dk × 10^e) that read
/// back as the same double; of several that short, the closest; of two
/// equally close, the one with an even last digit.
///
/// Rust's `{:e}` already gives the shortest, closest digits but breaks an
/// exact tie upwards (1424953923781206.25 → `...206.3`, where ECMAScript
/// says `...206.2`), so ties are detected from the exact decimal expansion
/// and resolved to even.
fn shortest_digits(x: f64) -> Option<(String, i32)> {
    let (digits, exponent) = split_scientific(&format!("{x:e}"))?;
    let last = digits.bytes().last()? - b'0';
    if last.is_multiple_of(2) {
        return Some((digits, exponent));
    }
    // A tie needs x to lie exactly halfway between two k-digit neighbours,
    // i.e. its exact expansion is k digits then a single 5. A double has at
    // most 767 significant decimal digits, so 800 of them are exact.
    let (exact, exact_exponent) = split_scientific(&format!("{x:.800e}"))?;
    let exact = exact.trim_end_matches('0');
    if exact_exponent != exponent || exact.len() != digits.len() + 1 || !exact.ends_with('5') {
        return Some((digits, exponent));
    }
    let head = &digits[..digits.len() - 1];
    for alt_last in [last - 1, last + 1] {
        if alt_last > 9 {
            continue;
        }
        let lo = alt_last.min(last);
        let midpoint = format!("{head}{lo}5");
        let alt = format!("{head}{alt_last}");
        if exact == midpoint && reads_back(&alt, exponent) == Some(x) {
            let alt = alt.trim_end_matches('0');
            if !alt.is_empty() {
                return Some((alt.to_owned(), exponent));
            }
        }
    }
    Some((digits, exponent))
}

/// `d.ddd` and `e` from Rust's `{:e}` output `d.ddde-7`, as (`dddd`, -7).
fn split_scientific(sci: &str) -> Option<(String, i32)> {
    let (mantissa, exponent) = sci.split_once('e')?;
    let exponent: i32 = exponent.parse().ok()?;
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits, exponent))
}

fn reads_back(digits: &str, exponent: i32) -> Option<f64> {
    let (first, rest) = digits.split_at(1);
    format!("{first}.{rest}0e{exponent}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        String::from_utf8(canonical_bytes(v).unwrap()).unwrap()
    }

    fn num(bits: u64) -> String {
        canon(&json!(f64::from_bits(bits)))
    }

    /// RFC 8785 Appendix B sample values.
    #[test]
    fn rfc8785_number_samples() {
        let samples: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for (bits, want) in samples {
            assert_eq!(num(*bits), *want, "bits {bits:#018x}");
        }
    }

    #[test]
    fn rfc8785_example_object() {
        let input = r#"{
            "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        let value: Value = serde_json::from_str(input).unwrap();
        assert_eq!(
            canon(&value),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    /// RFC 8785 §3.2.3: keys sort by UTF-16 code units, not UTF-8 bytes.
    #[test]
    fn rfc8785_key_order() {
        let input = r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#;
        let value: Value = serde_json::from_str(input).unwrap();
        let out = canon(&value);
        let order: Vec<&str> = [
            "Carriage Return",
            "One",
            "Control",
            "Latin Small",
            "Euro Sign",
            "Emoji",
            "Hebrew",
        ]
        .to_vec();
        let positions: Vec<usize> = order.iter().map(|w| out.find(w).unwrap()).collect();
        assert!(positions.windows(2).all(|p| p[0] < p[1]), "{out}");
    }

    #[test]
    fn integers_plain_and_bounded() {
        assert_eq!(
            canon(&json!([0, -1, 52, 9007199254740991_u64])),
            "[0,-1,52,9007199254740991]"
        );
        assert_eq!(canon(&json!(-9007199254740991_i64)), "-9007199254740991");
        // 2^53 + 1 has no double: refused. 2^53 is exactly a double, and
        // prints as ECMAScript prints that double: kept.
        assert!(matches!(
            canonical_bytes(&json!(9007199254740993_u64)),
            Err(CanonicalError::UnsafeInteger(_))
        ));
        assert_eq!(canon(&json!(9007199254740992_u64)), "9007199254740992");
        // A large double reads back as an integer and canonicalises the same.
        let big = canon(&json!(-3.1275530691500276e16));
        assert_eq!(canon(&serde_json::from_str(&big).unwrap()), big);
        assert!(matches!(
            canonical_bytes(&json!(i64::MIN)),
            Err(CanonicalError::UnsafeInteger(_))
        ));
        // A float that happens to be integral prints like the integer.
        assert_eq!(canon(&json!(52.0)), "52");
    }

    #[test]
    fn control_characters_escaped() {
        assert_eq!(
            canon(&json!("\u{1}\u{1f}\u{7f}é")),
            "\"\\u0001\\u001f\u{7f}é\""
        );
    }

    #[test]
    fn depth_is_bounded() {
        let mut v = json!(1);
        for _ in 0..MAX_DEPTH {
            v = json!([v]);
        }
        assert!(canonical_bytes(&v).is_ok());
        let v = json!([v]);
        assert_eq!(canonical_bytes(&v), Err(CanonicalError::TooDeep));
    }
}
