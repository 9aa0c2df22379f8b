//! The two ACL languages of deploy/ read and evaluated: Mosquitto's
//! `acl_file` (`user`, `topic`, `pattern` lines) and EMQX's `acl.conf`
//! (Erlang terms `{Permission, Who, Action, Topics}.`), so the same table of
//! cases can be asked of both and their answers compared.

/// What a client wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Publish on a topic.
    Publish,
    /// Subscribe to a filter.
    Subscribe,
}

/// Whether topic filter `filter` (with `+`, `#`) covers `topic`, which for a
/// subscription is itself a filter (then its wildcards must be covered by
/// wildcards). A `$share/{group}/` prefix of a subscription is taken off
/// first, as both brokers do before checking.
pub fn covers(filter: &str, topic: &str) -> bool {
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    for (i, fl) in f.iter().enumerate() {
        if *fl == "#" {
            // `#` does not match a leading `$` level.
            return !(i == 0 && t.first().is_some_and(|l| l.starts_with('$')));
        }
        let Some(tl) = t.get(i) else { return false };
        if *fl == "+" {
            if i == 0 && tl.starts_with('$') {
                return false;
            }
            if *tl == "#" {
                return false;
            }
            continue;
        }
        if fl != tl {
            return false;
        }
    }
    f.len() == t.len()
}

/// `$share/{group}/{filter}` → `{filter}`.
pub fn unshare(topic: &str) -> &str {
    topic
        .strip_prefix("$share/")
        .and_then(|r| r.split_once('/'))
        .map(|(_, f)| f)
        .unwrap_or(topic)
}

/// Checks a topic filter's wildcards are where MQTT allows them.
pub fn valid_filter(f: &str) -> Result<(), String> {
    if f.is_empty() {
        return Err("empty topic".into());
    }
    let levels: Vec<&str> = f.split('/').collect();
    for (i, l) in levels.iter().enumerate() {
        if l.contains('#') && (*l != "#" || i + 1 != levels.len()) {
            return Err(format!("{f:?}: # must be a whole last level"));
        }
        if l.contains('+') && *l != "+" {
            return Err(format!("{f:?}: + must be a whole level"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- Mosquitto

/// One Mosquitto ACL entry.
#[derive(Debug, Clone)]
pub struct MosqRule {
    /// `None`: the anonymous/general block; `Some(user)`: after `user`.
    pub user: Option<String>,
    /// `pattern` (with %u/%c) rather than `topic`.
    pub pattern: bool,
    /// read, write, readwrite or deny.
    pub access: String,
    /// The topic filter.
    pub topic: String,
}

/// Parses an ACL file; every line must be a comment, blank, `user X`,
/// `topic [access] T` or `pattern [access] T`.
pub fn parse_mosquitto(text: &str) -> Result<Vec<MosqRule>, String> {
    let mut user = None;
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = |m: String| format!("line {}: {m}", n + 1);
        match words.as_slice() {
            ["user", name] => user = Some(name.to_string()),
            [kind @ ("topic" | "pattern"), rest @ ..] => {
                let (access, topic) = match rest {
                    [t] => ("readwrite", *t),
                    [a, t] => (*a, *t),
                    _ => return Err(at(format!("{line:?}: expected `{kind} [access] TOPIC`"))),
                };
                if !["read", "write", "readwrite", "deny"].contains(&access) {
                    return Err(at(format!("{access:?} is not read/write/readwrite/deny")));
                }
                valid_filter(topic).map_err(at)?;
                out.push(MosqRule {
                    user: user.clone(),
                    pattern: *kind == "pattern",
                    access: access.to_owned(),
                    topic: topic.to_owned(),
                });
            }
            _ => return Err(at(format!("{line:?} is not an ACL line"))),
        }
    }
    Ok(out)
}

/// Mosquitto's decision for an authenticated `user` (client id = user).
pub fn mosquitto_allows(rules: &[MosqRule], user: &str, op: Op, topic: &str) -> bool {
    let topic = unshare(topic);
    let want = match op {
        Op::Publish => "write",
        Op::Subscribe => "read",
    };
    let applies = |r: &MosqRule| {
        if r.pattern {
            true
        } else {
            r.user.as_deref() == Some(user)
        }
    };
    let filter = |r: &MosqRule| r.topic.replace("%u", user).replace("%c", user);
    let matches = |r: &MosqRule| {
        let f = filter(r);
        covers(&f, topic)
    };
    if rules
        .iter()
        .any(|r| applies(r) && r.access == "deny" && matches(r))
    {
        return false;
    }
    rules
        .iter()
        .any(|r| applies(r) && (r.access == want || r.access == "readwrite") && matches(r))
}

// --------------------------------------------------------------------- EMQX

/// An Erlang term, as far as `acl.conf` uses them.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    Atom(String),
    Str(String),
    Tuple(Vec<Term>),
    List(Vec<Term>),
}

/// Parses a file of `Term.` forms with `%` comments.
pub fn parse_terms(text: &str) -> Result<Vec<Term>, String> {
    let s: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut line = 1;
    let mut out = Vec::new();
    loop {
        skip(&s, &mut i, &mut line);
        if i >= s.len() {
            return Ok(out);
        }
        let t = term(&s, &mut i, &mut line)?;
        skip(&s, &mut i, &mut line);
        if s.get(i) != Some(&'.') {
            return Err(format!("line {line}: a form must end with `.`"));
        }
        i += 1;
        out.push(t);
    }
}

fn skip(s: &[char], i: &mut usize, line: &mut usize) {
    while let Some(&c) = s.get(*i) {
        if c == '%' {
            while s.get(*i).is_some_and(|c| *c != '\n') {
                *i += 1;
            }
        } else if c.is_whitespace() {
            if c == '\n' {
                *line += 1;
            }
            *i += 1;
        } else {
            break;
        }
    }
}

fn term(s: &[char], i: &mut usize, line: &mut usize) -> Result<Term, String> {
    skip(s, i, line);
    let Some(&c) = s.get(*i) else {
        return Err(format!("line {line}: expected a term, found the end"));
    };
    let seq = |i: &mut usize, line: &mut usize, close: char| -> Result<Vec<Term>, String> {
        *i += 1;
        let mut items = Vec::new();
        skip(s, i, line);
        if s.get(*i) == Some(&close) {
            *i += 1;
            return Ok(items);
        }
        loop {
            items.push(term(s, i, line)?);
            skip(s, i, line);
            match s.get(*i) {
                Some(',') => *i += 1,
                Some(c) if *c == close => {
                    *i += 1;
                    return Ok(items);
                }
                _ => return Err(format!("line {line}: expected `,` or `{close}`")),
            }
        }
    };
    match c {
        '{' => Ok(Term::Tuple(seq(i, line, '}')?)),
        '[' => Ok(Term::List(seq(i, line, ']')?)),
        '"' | '\'' => {
            *i += 1;
            let mut v = String::new();
            loop {
                match s.get(*i) {
                    None | Some('\n') => return Err(format!("line {line}: unterminated {c}")),
                    Some(&q) if q == c => {
                        *i += 1;
                        break;
                    }
                    Some('\\') => {
                        v.push(*s.get(*i + 1).unwrap_or(&'\\'));
                        *i += 2;
                    }
                    Some(&ch) => {
                        v.push(ch);
                        *i += 1;
                    }
                }
            }
            Ok(if c == '"' {
                Term::Str(v)
            } else {
                Term::Atom(v)
            })
        }
        c if c.is_ascii_lowercase() => {
            let mut v = String::new();
            while let Some(&ch) = s.get(*i) {
                if ch.is_ascii_alphanumeric() || ch == '_' || ch == '@' {
                    v.push(ch);
                    *i += 1;
                } else {
                    break;
                }
            }
            Ok(Term::Atom(v))
        }
        other => Err(format!("line {line}: unexpected {other:?}")),
    }
}

/// Who a rule is for.
#[derive(Debug, Clone)]
pub enum Who {
    All,
    Username(String),
    UsernameRe(String),
    Clientid(String),
    /// By address: never a device or server login here.
    Ip,
    And(Vec<Who>),
    Or(Vec<Who>),
}

/// One EMQX rule.
#[derive(Debug, Clone)]
pub struct EmqxRule {
    pub allow: bool,
    pub who: Who,
    /// `None`: both publish and subscribe (`all`).
    pub action: Option<Op>,
    /// `(eq, filter)`.
    pub topics: Vec<(bool, String)>,
}

fn atom(t: &Term) -> Option<&str> {
    match t {
        Term::Atom(a) => Some(a),
        _ => None,
    }
}

fn who(t: &Term) -> Result<Who, String> {
    if atom(t) == Some("all") {
        return Ok(Who::All);
    }
    let Term::Tuple(v) = t else {
        return Err(format!("{t:?}: expected all or a {{kind, value}} tuple"));
    };
    let [k, val] = v.as_slice() else {
        return Err(format!("{t:?}: expected a pair"));
    };
    let s = |x: &Term| match x {
        Term::Str(s) => Ok(s.clone()),
        _ => Err(format!("{x:?}: expected a string")),
    };
    match (atom(k), val) {
        (Some("user" | "username"), Term::Tuple(re))
            if re.len() == 2 && atom(&re[0]) == Some("re") =>
        {
            Ok(Who::UsernameRe(s(&re[1])?))
        }
        (Some("user" | "username"), v) => Ok(Who::Username(s(v)?)),
        (Some("client" | "clientid"), v) => Ok(Who::Clientid(s(v)?)),
        (Some("ipaddr"), v) => s(v).map(|_| Who::Ip),
        (Some("ipaddrs"), Term::List(l)) => {
            l.iter().try_for_each(|x| s(x).map(drop)).map(|_| Who::Ip)
        }
        (Some("and"), Term::List(l)) => Ok(Who::And(l.iter().map(who).collect::<Result<_, _>>()?)),
        (Some("or"), Term::List(l)) => Ok(Who::Or(l.iter().map(who).collect::<Result<_, _>>()?)),
        _ => Err(format!("{t:?}: not a client specification EMQX knows")),
    }
}

/// Checks every form is an EMQX rule and returns them.
pub fn parse_emqx(text: &str) -> Result<Vec<EmqxRule>, String> {
    let mut out = Vec::new();
    for t in parse_terms(text)? {
        let Term::Tuple(v) = &t else {
            return Err(format!("{t:?}: a rule is a tuple"));
        };
        let allow = match v.first().and_then(atom) {
            Some("allow") => true,
            Some("deny") => false,
            _ => return Err(format!("{t:?}: a rule starts with allow or deny")),
        };
        if v.len() == 2 {
            if atom(&v[1]) != Some("all") {
                return Err(format!(
                    "{t:?}: the two-element rule is {{allow|deny, all}}"
                ));
            }
            out.push(EmqxRule {
                allow,
                who: Who::All,
                action: None,
                topics: vec![(false, "#".into())],
            });
            continue;
        }
        let [_, w, a, topics] = v.as_slice() else {
            return Err(format!(
                "{t:?}: expected {{Permission, Who, Action, Topics}}"
            ));
        };
        let action_atom = match a {
            Term::Tuple(x) if x.len() == 2 => atom(&x[0]),
            _ => atom(a),
        };
        let action = match action_atom {
            Some("publish") => Some(Op::Publish),
            Some("subscribe") => Some(Op::Subscribe),
            Some("all") => None,
            _ => return Err(format!("{a:?}: action is publish, subscribe or all")),
        };
        let Term::List(tl) = topics else {
            return Err(format!("{topics:?}: topics are a list"));
        };
        let mut ts = Vec::new();
        for x in tl {
            match x {
                Term::Str(f) => {
                    valid_filter(f)?;
                    ts.push((false, f.clone()));
                }
                Term::Tuple(p) if p.len() == 2 && atom(&p[0]) == Some("eq") => match &p[1] {
                    Term::Str(f) => ts.push((true, f.clone())),
                    o => return Err(format!("{o:?}: {{eq, \"topic\"}}")),
                },
                o => return Err(format!("{o:?}: a topic is a string or {{eq, String}}")),
            }
        }
        if ts.is_empty() {
            return Err(format!("{t:?}: no topics"));
        }
        out.push(EmqxRule {
            allow,
            who: who(w)?,
            action,
            topics: ts,
        });
    }
    Ok(out)
}

fn who_matches(w: &Who, user: &str) -> bool {
    match w {
        Who::All => true,
        Who::Username(u) | Who::Clientid(u) => u == user,
        // No regex engine here: only anchored literals are understood.
        Who::UsernameRe(re) => re.trim_start_matches('^').trim_end_matches('$') == user,
        Who::Ip => false,
        Who::And(v) => v.iter().all(|w| who_matches(w, user)),
        Who::Or(v) => v.iter().any(|w| who_matches(w, user)),
    }
}

/// EMQX's decision (first matching rule; `no_match = deny`) for `user`,
/// whose client id is the same. Shared subscriptions are checked as
/// written (a rule may list the `$share/...` form) and, failing that,
/// without the share prefix.
pub fn emqx_allows(rules: &[EmqxRule], user: &str, op: Op, topic: &str) -> bool {
    for r in rules {
        if !who_matches(&r.who, user) || r.action.is_some_and(|a| a != op) {
            continue;
        }
        let hit = r.topics.iter().any(|(eq, f)| {
            if *eq {
                return f == topic;
            }
            let f = f.replace("${username}", user).replace("${clientid}", user);
            covers(&f, topic) || covers(&f, unshare(topic))
        });
        if hit {
            return r.allow;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_matching() {
        assert!(covers("tv/v1/+/d1/events", "tv/v1/s/d1/events"));
        assert!(!covers("tv/v1/+/d1/events", "tv/v1/s/d2/events"));
        assert!(covers("tv/v1/#", "tv/v1/+/+/events"));
        assert!(!covers("tv/v1/+/d1/ack", "tv/v1/+/+/ack"));
        assert!(!covers("#", "$SYS/x"));
        assert_eq!(unshare("$share/g/a/b"), "a/b");
        assert!(valid_filter("a/#/b").is_err());
        assert!(valid_filter("a+/b").is_err());
    }

    #[test]
    fn terms() {
        let t = parse_terms(
            "%% c\n{allow, {user, \"a\"}, publish, [\"x/#\", {eq, \"#\"}]}.\n{deny, all}.",
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert!(parse_terms("{allow, all}").is_err());
        assert!(parse_emqx("{allow, {user, \"a\"}, publsh, [\"x\"]}.").is_err());
        assert!(parse_emqx("{maybe, all}.").is_err());
    }
}
