//! The definition parser never panics, on any text or any JSON shape.

use proptest::prelude::*;
use serde_json::{json, Value};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..100).prop_map(|n| json!(n)),
        prop_oneof![
            Just("Pass"),
            Just("Task"),
            Just("Choice"),
            Just("Wait"),
            Just("Map"),
            Just("Parallel"),
            Just("Fail"),
            Just("Succeed"),
            Just("A"),
            Just("B"),
            Just("$.x"),
            Just("$$"),
            Just("States.ALL"),
            Just("{% 1 %}"),
            Just("JSONata"),
            Just("DISTRIBUTED")
        ]
        .prop_map(|s| json!(s)),
    ];
    let keys = prop_oneof![
        Just("Type"),
        Just("Next"),
        Just("End"),
        Just("StartAt"),
        Just("States"),
        Just("A"),
        Just("B"),
        Just("Choices"),
        Just("Variable"),
        Just("Retry"),
        Just("Catch"),
        Just("ErrorEquals"),
        Just("Branches"),
        Just("ItemProcessor"),
        Just("Parameters"),
        Just("x.$"),
        Just("ResultPath"),
        Just("Seconds"),
        Just("QueryLanguage"),
        Just("Default"),
        Just("And"),
        Just("Not"),
        Just("ItemReader"),
        Just("MaxConcurrency")
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..6).prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn any_json_shape(v in arb_json()) {
        let parsed = shoal_asl::parse_value(&v);
        // Every problem has a pointer that starts at the root.
        for d in &parsed.diagnostics {
            prop_assert!(d.pointer.is_empty() || d.pointer.starts_with('/'));
        }
    }

    #[test]
    fn any_text(s in "\\PC{0,60}") {
        let _ = shoal_asl::parse(&s);
    }
}
