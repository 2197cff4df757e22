//! Which variables each state reads (`variableReferences` of DescribeStateMachine):
//! `$name` in JSONPath fields and intrinsics (`.$` keys, `*Path` fields, Choice
//! rules) and in JSONata `{% %}` expressions. `$$`, `$.` and `$states` are not variables.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// State name to the sorted names of the variables it reads; states reading none are left out.
/// Nested states (Map processors, Parallel branches) are listed under their own names.
pub fn variable_references(definition: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    states(definition, &mut out);
    out
}

fn states(machine: &Value, out: &mut BTreeMap<String, BTreeSet<String>>) {
    let Some(all) = machine.get("States").and_then(Value::as_object) else {
        return;
    };
    for (name, state) in all {
        let mut vars = BTreeSet::new();
        if let Some(fields) = state.as_object() {
            for (k, v) in fields {
                match k.as_str() {
                    "ItemProcessor" | "Iterator" => states(v, out),
                    "Branches" => v
                        .as_array()
                        .into_iter()
                        .flatten()
                        .for_each(|b| states(b, out)),
                    _ => field(k, v, &mut vars),
                }
            }
        }
        if !vars.is_empty() {
            out.insert(name.clone(), vars);
        }
    }
}

/// One field of a state (or of something inside it) with its value.
fn field(key: &str, v: &Value, vars: &mut BTreeSet<String>) {
    match v {
        Value::String(s) if s.starts_with("{%") => jsonata(s, vars),
        Value::String(s) if key.ends_with(".$") || key.ends_with("Path") || key == "Variable" => {
            path(s, vars)
        }
        Value::Object(m) => m.iter().for_each(|(k, x)| field(k, x, vars)),
        Value::Array(a) => a.iter().for_each(|x| field("", x, vars)),
        _ => {}
    }
}

fn ident(bytes: &[u8], start: usize) -> usize {
    let mut end = start;
    while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
        end += 1;
    }
    end
}

/// `$name` in a reference path or an intrinsic call.
fn path(s: &str, vars: &mut BTreeSet<String>) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            if b.get(i + 1) == Some(&b'$') {
                i += 2;
                continue;
            }
            let end = ident(b, i + 1);
            if end > i + 1 {
                vars.insert(s[i + 1..end].to_string());
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
}

/// `$name` in a JSONata expression that is not a function call nor `$states`.
fn jsonata(s: &str, vars: &mut BTreeSet<String>) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let end = ident(b, i + 1);
            let name = &s[i + 1..end];
            if !name.is_empty() && name != "states" && b.get(end) != Some(&b'(') {
                vars.insert(name.to_string());
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_variables_in_paths_intrinsics_choices_and_nested_states() {
        let def = json!({"StartAt": "A", "States": {
            "A": {"Type": "Pass", "Assign": {"x": 1}, "Parameters": {"lit": "$notavar", "p.$": "States.Format($t, $$.Map.Item.Value, $.a)"}, "Next": "C"},
            "C": {"Type": "Choice", "Choices": [{"Variable": "$g", "StringEqualsPath": "$a.b", "Next": "M"}]},
            "M": {"Type": "Map", "ItemsPath": "$list", "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {"q.$": "$q"}, "End": true}}}, "End": true},
            "J": {"Type": "Pass", "Output": "{% $states.input.v & $v & $string($w) %}", "End": true}
        }});
        let r = variable_references(&def);
        let got: Vec<(String, Vec<String>)> = r
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().collect()))
            .collect();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                ("A".to_string(), s(&["t"])),
                ("C".to_string(), s(&["a", "g"])),
                ("J".to_string(), s(&["v", "w"])),
                ("M".to_string(), s(&["list"])),
                ("P".to_string(), s(&["q"])),
            ]
        );
    }
}
