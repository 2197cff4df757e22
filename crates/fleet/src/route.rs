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
    let names = functions.iter().cloned().collect::<Vec<_>>().join(",");
    format!("f{}", &address(names.as_bytes())[..32])
}

/// The content address of a text: the hex SHA-256 of its bytes, so two different
/// definitions never share a key in the definitions bucket.
pub(crate) fn address(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_the_content() {
        let a = address(br#"{"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}}"#);
        let b = address(br#"{"StartAt":"B","States":{"B":{"Type":"Pass","End":true}}}"#);
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(
            a,
            address(br#"{"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}}"#)
        );
        // SHA-256 itself, not some other digest.
        assert_eq!(
            address(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(set_key(&set(&[])), "any");
        assert_ne!(set_key(&set(&["a"])), set_key(&set(&["b"])));
        assert_eq!(set_key(&set(&["a", "b"])).len(), 33);
    }
}
