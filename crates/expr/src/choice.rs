//! Choice rules (JSONPath comparisons) and their evaluation.

use crate::{Failure, Path, Scope};
use chrono::{DateTime, FixedOffset};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Numeric,
    Boolean,
    Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
}

/// The comparison operators, as named in ASL.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Compare(Kind, Cmp, Operand),
    StringMatches(String),
    IsNull(bool),
    IsPresent(bool),
    IsNumeric(bool),
    IsString(bool),
    IsBoolean(bool),
    IsTimestamp(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Literal(Value),
    Path(Path),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    And(Vec<Rule>),
    Or(Vec<Rule>),
    Not(Box<Rule>),
    Test { variable: Path, test: Test },
}

/// Maps an operator name to its test shape: (kind, cmp, is_path_form).
pub fn operator(name: &str) -> Option<(Option<(Kind, Cmp)>, bool)> {
    let (base, is_path) = match name.strip_suffix("Path") {
        Some(b) if b != "Is" && !b.is_empty() => (b, true),
        _ => (name, false),
    };
    let (kind, rest) = [
        ("String", Kind::String),
        ("Numeric", Kind::Numeric),
        ("Boolean", Kind::Boolean),
        ("Timestamp", Kind::Timestamp),
    ]
    .into_iter()
    .find_map(|(p, k)| base.strip_prefix(p).map(|r| (k, r)))?;
    let cmp = match rest {
        "Equals" => Cmp::Eq,
        "LessThan" => Cmp::Lt,
        "GreaterThan" => Cmp::Gt,
        "LessThanEquals" => Cmp::Le,
        "GreaterThanEquals" => Cmp::Ge,
        _ => return None,
    };
    if kind == Kind::Boolean && cmp != Cmp::Eq {
        return None;
    }
    Some((Some((kind, cmp)), is_path))
}

/// Parses an ISO-8601 timestamp as Step Functions accepts it (RFC 3339 with a `T`).
pub fn parse_timestamp(s: &str) -> Option<DateTime<FixedOffset>> {
    if !s.contains('T') {
        return None;
    }
    DateTime::parse_from_rfc3339(s).ok()
}

fn glob_match(pattern: &str, s: &str) -> bool {
    // Split on unescaped `*`; `\*` and `\\` are literals.
    let mut parts: Vec<String> = vec![String::new()];
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        let lit = match c {
            '\\' => it.next(),
            '*' => {
                parts.push(String::new());
                None
            }
            c => Some(c),
        };
        if let (Some(ch), Some(p)) = (lit, parts.last_mut()) {
            p.push(ch);
        }
    }
    if parts.len() == 1 {
        return parts[0] == s;
    }
    let (first, last) = (&parts[0], &parts[parts.len() - 1]);
    if !s.starts_with(first.as_str())
        || s.len() < first.len() + last.len()
        || !s.ends_with(last.as_str())
    {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid.as_str()) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

fn order<T: PartialOrd>(a: T, b: T, c: Cmp) -> bool {
    match c {
        Cmp::Eq => a == b,
        Cmp::Lt => a < b,
        Cmp::Gt => a > b,
        Cmp::Le => a <= b,
        Cmp::Ge => a >= b,
    }
}

fn compare(kind: Kind, cmp: Cmp, v: &Value, rhs: &Value) -> bool {
    match kind {
        Kind::String => match (v.as_str(), rhs.as_str()) {
            (Some(a), Some(b)) => order(a, b, cmp),
            _ => false,
        },
        Kind::Numeric => match (v.as_f64(), rhs.as_f64()) {
            (Some(a), Some(b)) if v.is_number() && rhs.is_number() => order(a, b, cmp),
            _ => false,
        },
        Kind::Boolean => matches!((v, rhs), (Value::Bool(a), Value::Bool(b)) if a == b),
        Kind::Timestamp => match (
            v.as_str().and_then(parse_timestamp),
            rhs.as_str().and_then(parse_timestamp),
        ) {
            (Some(a), Some(b)) => order(a, b, cmp),
            _ => false,
        },
    }
}

impl Rule {
    pub fn eval(&self, scope: &Scope) -> Result<bool, Failure> {
        match self {
            Rule::And(rules) => {
                for r in rules {
                    if !r.eval(scope)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Rule::Or(rules) => {
                for r in rules {
                    if r.eval(scope)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Rule::Not(r) => Ok(!r.eval(scope)?),
            Rule::Test { variable, test } => {
                if let Some(why) = variable.unevaluable() {
                    return Err(Failure::runtime(format!(
                        "Invalid path '{}' : {why}",
                        variable.text()
                    )));
                }
                let v = scope.resolve(variable);
                if let Test::IsPresent(want) = test {
                    return Ok(v.is_some() == *want);
                }
                let Some(v) = v else {
                    return Err(Failure::runtime(format!(
                        "Invalid path '{}': The choice state's condition path references an invalid value.",
                        variable.text()
                    )));
                };
                Ok(match test {
                    Test::Compare(kind, cmp, Operand::Literal(rhs)) => {
                        compare(*kind, *cmp, &v, rhs)
                    }
                    Test::Compare(kind, cmp, Operand::Path(p)) => {
                        let rhs = scope.resolve(p).ok_or_else(|| {
                            Failure::runtime(format!("Invalid path '{}': The choice state's condition path references an invalid value.", p.text()))
                        })?;
                        compare(*kind, *cmp, &v, &rhs)
                    }
                    Test::StringMatches(pat) => v.as_str().is_some_and(|s| glob_match(pat, s)),
                    Test::IsNull(w) => v.is_null() == *w,
                    Test::IsNumeric(w) => v.is_number() == *w,
                    Test::IsString(w) => v.is_string() == *w,
                    Test::IsBoolean(w) => v.is_boolean() == *w,
                    Test::IsTimestamp(w) => v.as_str().and_then(parse_timestamp).is_some() == *w,
                    Test::IsPresent(_) => unreachable!("handled above"),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.log", "a.log"));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("a*b*c", "aXc"));
        assert!(glob_match("a\\*", "a*"));
        assert!(!glob_match("a\\*", "ab"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn operators() {
        assert_eq!(
            operator("NumericLessThanEqualsPath"),
            Some((Some((Kind::Numeric, Cmp::Le)), true))
        );
        assert_eq!(
            operator("StringEquals"),
            Some((Some((Kind::String, Cmp::Eq)), false))
        );
        assert_eq!(operator("BooleanLessThan"), None);
        assert!(parse_timestamp("2016-03-14T01:59:00Z").is_some());
        assert!(parse_timestamp("2016-03-14 01:59:00Z").is_none());
    }
}
