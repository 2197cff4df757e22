//! Which workers may take a processor's children: the functions it names.

use super::*;

/// The functions a processor calls by a name known before it runs. A name computed at
/// run time cannot be routed on; a worker without it fails that Task as Lambda would.
pub fn required_functions(m: &StateMachine) -> BTreeSet<String> {
    pub(crate) fn literal_name(t: &Template) -> Option<&str> {
        match t {
            Template::Literal(Value::Object(o)) => o.get("FunctionName")?.as_str(),
            Template::Object(fields) => fields.iter().find_map(|(k, v)| match v {
                Template::Literal(Value::String(s)) if k == "FunctionName" => Some(s.as_str()),
                _ => None,
            }),
            _ => None,
        }
    }
    pub(crate) fn walk(m: &StateMachine, out: &mut BTreeSet<String>) {
        for st in m.states.values() {
            match &st.kind {
                Kind::Task {
                    resource,
                    parameters,
                    ..
                } => {
                    let name = match &**resource {
                        Resource::LambdaFunction { arn } => Some(arn.as_str()),
                        Resource::LambdaInvoke { .. } => parameters.as_ref().and_then(literal_name),
                        _ => None,
                    };
                    if let Some(n) = name {
                        out.insert(shoal_tasks::lambda::function_name(n).to_string());
                    }
                }
                Kind::Parallel { branches, .. } => branches.iter().for_each(|b| walk(b, out)),
                Kind::Map(map) => walk(&map.processor, out),
                _ => {}
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(m, &mut out);
    out
}

/// A subject token for a set of functions.
pub(crate) fn set_key(functions: &BTreeSet<String>) -> String {
    if functions.is_empty() {
        return "any".into();
    }
    format!(
        "f{:016x}",
        fnv(functions
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(",")
            .as_bytes())
    )
}

pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
