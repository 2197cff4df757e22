//! Comparing what a case did with what it expected; each difference is a line a
//! person can act on, with a JSON pointer into the value that differed.

use crate::suite::{CauseMatch, Expect, Status};
use serde_json::Value;
use std::collections::HashMap;

/// What a case's execution did.
#[derive(Debug, Clone)]
pub struct Observed {
    pub status: Status,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// States entered, in order.
    pub path: Vec<String>,
    /// Each state's output the last time it exited.
    pub state_outputs: HashMap<String, Value>,
}

/// Every way `observed` differs from `expect`; empty when the case passes.
pub fn check(expect: &Expect, observed: &Observed) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(s) = expect.status {
        if s != observed.status {
            let mut line = format!(
                "status: expected {}, got {}",
                s.as_str(),
                observed.status.as_str()
            );
            if let Some(e) = &observed.error {
                line.push_str(&format!(
                    " ({e}: {})",
                    observed.cause.as_deref().unwrap_or("")
                ));
            }
            out.push(line);
        }
    }
    if let Some(want) = &expect.output {
        match &observed.output {
            Some(got) => diff("output", want, got, false, &mut out),
            None => out.push("output: expected one, but the execution did not succeed".into()),
        }
    }
    if let Some(want) = &expect.output_contains {
        match &observed.output {
            Some(got) => diff("outputContains", want, got, true, &mut out),
            None => out.push(
                "outputContains: expected an output, but the execution did not succeed".into(),
            ),
        }
    }
    if let Some(want) = &expect.error {
        if observed.error.as_ref() != Some(want) {
            out.push(format!(
                "error: expected {want:?}, got {}",
                shown(observed.error.as_deref())
            ));
        }
    }
    match (&expect.cause, observed.cause.as_deref()) {
        (Some(CauseMatch::Exact(want)), got) if got != Some(want.as_str()) => {
            out.push(format!("cause: expected {want:?}, got {}", shown(got)))
        }
        (Some(CauseMatch::Regex(re)), got) if !got.is_some_and(|c| re.is_match(c)) => {
            out.push(format!(
                "cause: expected a match of /{}/, got {}",
                re.as_str(),
                shown(got)
            ))
        }
        _ => {}
    }
    if let Some(want) = &expect.path {
        if *want != observed.path {
            out.push(format!(
                "path: expected [{}], got [{}]",
                want.join(", "),
                observed.path.join(", ")
            ));
        }
    }
    if let Some(want) = &expect.path_includes {
        let missing: Vec<&str> = want
            .iter()
            .filter(|s| !observed.path.contains(s))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            out.push(format!(
                "pathIncludes: never entered [{}]; the path was [{}]",
                missing.join(", "),
                observed.path.join(", ")
            ));
        }
    }
    for (state, want) in &expect.state_outputs {
        match observed.state_outputs.get(state) {
            Some(got) => diff(&format!("stateOutputs.{state}"), want, got, false, &mut out),
            None => out.push(format!("stateOutputs.{state}: the state never exited")),
        }
    }
    out
}

fn shown(v: Option<&str>) -> String {
    v.map_or_else(|| "none".to_string(), |s| format!("{s:?}"))
}

/// Numbers compare by value: YAML's `1.0` is JSON's `1`.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Lines for each place `got` differs from `want`; with `contains`, keys `want` does
/// not name are not compared.
fn diff(field: &str, want: &Value, got: &Value, contains: bool, out: &mut Vec<String>) {
    let mut lines = Vec::new();
    walk("", want, got, contains, &mut lines);
    if !lines.is_empty() {
        out.push(format!("{field}: differs from what was expected"));
        out.extend(lines.into_iter().map(|l| format!("  {l}")));
    }
}

fn walk(at: &str, want: &Value, got: &Value, contains: bool, out: &mut Vec<String>) {
    let here = if at.is_empty() { "/" } else { at };
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                match g.get(k) {
                    Some(gv) => walk(&p, wv, gv, contains, out),
                    None => out.push(format!("{p}: missing; expected {wv}")),
                }
            }
            if !contains {
                for (k, gv) in g {
                    if !w.contains_key(k) {
                        let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                        out.push(format!("{p}: not expected; got {gv}"));
                    }
                }
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                walk(&format!("{at}/{i}"), wv, gv, contains, out);
            }
        }
        (Value::Array(w), Value::Array(g)) => out.push(format!(
            "{here}: expected {} items, got {}: {got}",
            w.len(),
            g.len()
        )),
        _ if same(want, got) => {}
        _ => out.push(format!("{here}: expected {want}, got {got}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn observed(output: Value) -> Observed {
        Observed {
            status: Status::Succeeded,
            output: Some(output),
            error: None,
            cause: None,
            path: vec!["A".into(), "B".into()],
            state_outputs: HashMap::new(),
        }
    }

    #[test]
    fn differences_are_named_by_pointer() {
        let expect = Expect {
            output: Some(json!({"a": {"b": 1, "c": [1, 2]}, "gone": true})),
            ..Default::default()
        };
        let lines = check(
            &expect,
            &observed(json!({"a": {"b": 2.0, "c": [1, 2]}, "extra": 1})),
        );
        assert_eq!(
            lines,
            [
                "output: differs from what was expected",
                "  /a/b: expected 1, got 2.0",
                "  /gone: missing; expected true",
                "  /extra: not expected; got 1"
            ]
        );
        let same_number = Expect {
            output: Some(json!({"n": 1.0})),
            ..Default::default()
        };
        assert!(check(&same_number, &observed(json!({"n": 1}))).is_empty());
    }

    #[test]
    fn contains_ignores_other_keys_and_paths_compare_in_order() {
        let expect = Expect {
            output_contains: Some(json!({"a": {"b": 1}})),
            path: Some(vec!["B".into(), "A".into()]),
            path_includes: Some(vec!["C".into()]),
            status: Some(Status::Failed),
            ..Default::default()
        };
        let lines = check(&expect, &observed(json!({"a": {"b": 1, "x": 2}, "y": 3})));
        assert_eq!(
            lines,
            [
                "status: expected FAILED, got SUCCEEDED",
                "path: expected [B, A], got [A, B]",
                "pathIncludes: never entered [C]; the path was [A, B]"
            ]
        );
    }

    #[test]
    fn causes_match_exactly_or_by_regex() {
        let mut o = observed(json!(null));
        o.status = Status::Failed;
        o.output = None;
        o.error = Some("Ship.Busy".into());
        o.cause = Some("busy for 3 s".into());
        let re = Expect {
            cause: Some(CauseMatch::Regex(
                regex::Regex::new("^busy for \\d+ s$").unwrap(),
            )),
            error: Some("Ship.Busy".into()),
            ..Default::default()
        };
        assert!(check(&re, &o).is_empty());
        let exact = Expect {
            cause: Some(CauseMatch::Exact("busy".into())),
            ..Default::default()
        };
        assert_eq!(
            check(&exact, &o),
            ["cause: expected \"busy\", got \"busy for 3 s\""]
        );
    }
}
