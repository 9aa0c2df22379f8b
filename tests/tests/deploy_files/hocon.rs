//! A small HOCON reader, enough for EMQX's `emqx.conf`: objects (`key { }`,
//! `key = { }`), dotted keys (`a.b.c = 1`, merged into nested objects),
//! arrays, quoted and unquoted strings, `#` and `//` comments, `=` or `:`,
//! commas or newlines between members. Values stay strings (numbers, sizes
//! and durations as written); substitutions and includes are refused, so a
//! file using them fails loudly instead of being half-read.

use serde_json::{Map, Value};

/// Parses a whole file into a JSON object.
pub fn parse(text: &str) -> Result<Value, String> {
    let mut p = Parser {
        s: text.chars().collect(),
        i: 0,
        line: 1,
    };
    let obj = p.members(None)?;
    p.skip_ws(true)?;
    if p.i < p.s.len() {
        return Err(p.err("unexpected text after the last member"));
    }
    Ok(Value::Object(obj))
}

struct Parser {
    s: Vec<char>,
    i: usize,
    line: usize,
}

impl Parser {
    fn err(&self, m: &str) -> String {
        format!("line {}: {m}", self.line)
    }

    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    /// Skips blanks and comments; newlines too when `newlines`. Returns
    /// whether a newline was skipped.
    fn skip_ws(&mut self, newlines: bool) -> Result<bool, String> {
        let mut saw = false;
        while let Some(c) = self.peek() {
            if c == '#' || (c == '/' && self.s.get(self.i + 1) == Some(&'/')) {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.bump();
                }
            } else if c == '\n' {
                if !newlines {
                    return Ok(saw);
                }
                saw = true;
                self.bump();
            } else if c.is_whitespace() {
                self.bump();
            } else {
                break;
            }
        }
        Ok(saw)
    }

    /// Members until `close` (or the end of the text when `None`).
    fn members(&mut self, close: Option<char>) -> Result<Map<String, Value>, String> {
        let mut obj = Map::new();
        loop {
            self.skip_ws(true)?;
            match self.peek() {
                None if close.is_none() => return Ok(obj),
                None => return Err(self.err("unclosed object")),
                Some(c) if Some(c) == close => {
                    self.bump();
                    return Ok(obj);
                }
                Some(',') => {
                    self.bump();
                    continue;
                }
                _ => {}
            }
            let path = self.key()?;
            self.skip_ws(false)?;
            let value = match self.peek() {
                Some('{') => {
                    self.bump();
                    Value::Object(self.members(Some('}'))?)
                }
                Some('=') | Some(':') => {
                    self.bump();
                    self.skip_ws(false)?;
                    self.value()?
                }
                _ => return Err(self.err(&format!("expected `=`, `:` or `{{` after {path:?}"))),
            };
            insert(&mut obj, &path, value).map_err(|m| self.err(&m))?;
        }
    }

    fn key(&mut self) -> Result<Vec<String>, String> {
        let mut parts = Vec::new();
        loop {
            let part = if self.peek() == Some('"') {
                self.quoted()?
            } else {
                let mut k = String::new();
                while let Some(c) = self.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        k.push(c);
                        self.bump();
                    } else {
                        break;
                    }
                }
                k
            };
            if part.is_empty() {
                return Err(self.err("expected a key"));
            }
            parts.push(part);
            if self.peek() == Some('.') {
                self.bump();
            } else {
                return Ok(parts);
            }
        }
    }

    fn quoted(&mut self) -> Result<String, String> {
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None | Some('\n') => return Err(self.err("unterminated string")),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(c) => out.push(c),
                    None => return Err(self.err("unterminated string")),
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        match self.peek() {
            Some('{') => {
                self.bump();
                Ok(Value::Object(self.members(Some('}'))?))
            }
            Some('[') => {
                self.bump();
                let mut items = Vec::new();
                loop {
                    self.skip_ws(true)?;
                    match self.peek() {
                        Some(']') => {
                            self.bump();
                            return Ok(Value::Array(items));
                        }
                        Some(',') => {
                            self.bump();
                        }
                        None => return Err(self.err("unclosed array")),
                        _ => items.push(self.value()?),
                    }
                }
            }
            Some('"') => Ok(Value::String(self.quoted()?)),
            Some('$') => Err(self.err("substitutions (${...}) are not supported here")),
            Some(_) => {
                let mut v = String::new();
                while let Some(c) = self.peek() {
                    if c == '\n' || c == ',' || c == '}' || c == ']' || c == '#' {
                        break;
                    }
                    if c == '/' && self.s.get(self.i + 1) == Some(&'/') {
                        break;
                    }
                    v.push(c);
                    self.bump();
                }
                let v = v.trim().to_owned();
                if v.is_empty() {
                    return Err(self.err("expected a value"));
                }
                if v.starts_with("include") {
                    return Err(self.err("includes are not supported here"));
                }
                Ok(Value::String(v))
            }
            None => Err(self.err("expected a value, found the end")),
        }
    }
}

/// Puts `value` at `path`, merging objects met on the way (HOCON's rule for
/// a key given twice: objects merge, anything else is replaced).
fn insert(obj: &mut Map<String, Value>, path: &[String], value: Value) -> Result<(), String> {
    let (first, rest) = path.split_first().expect("a key has at least one part");
    if rest.is_empty() {
        match (obj.get_mut(first), value) {
            (Some(Value::Object(old)), Value::Object(new)) => {
                for (k, v) in new {
                    insert(old, std::slice::from_ref(&k), v)?;
                }
            }
            (_, v) => {
                obj.insert(first.clone(), v);
            }
        }
        return Ok(());
    }
    let slot = obj
        .entry(first.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    match slot {
        Value::Object(inner) => insert(inner, rest, value),
        _ => Err(format!("{first} is not an object")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_shapes_emqx_conf_uses() {
        let v = super::parse(
            "a { b = 1, c = \"x y\" }  # comment\n a.d = [\"p\", q]\n e: { f { g = on } }\n// c\nh = 17MB\n",
        )
        .unwrap();
        assert_eq!(v["a"]["b"], "1");
        assert_eq!(v["a"]["c"], "x y");
        assert_eq!(v["a"]["d"][1], "q");
        assert_eq!(v["e"]["f"]["g"], "on");
        assert_eq!(v["h"], "17MB");
        assert!(super::parse("a = ${b}").is_err());
        assert!(super::parse("a { b = 1").is_err());
        assert!(super::parse("a b").is_err());
    }
}
