//! The definition parser never panics, on any text or any JSON shape, and never takes
//! a second. Besides random shapes, it is fed the definitions of the validator corpus
//! (`corpus/validator-cases`) and of `tests/fixtures`, mutated.

use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The seed definitions: every JSON file of the corpus and of the fixtures, as text.
fn seeds() -> &'static [String] {
    static SEEDS: OnceLock<Vec<String>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut out = Vec::new();
        for dir in [
            "../../corpus/validator-cases/valid",
            "../../corpus/validator-cases/invalid",
            "../../corpus/validator-cases/disputed",
            "tests/fixtures/valid",
            "tests/fixtures/invalid",
        ] {
            let mut files: Vec<_> = std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("{dir}: {e}"))
                .map(|e| e.expect("a directory entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            files.sort();
            out.extend(
                files
                    .iter()
                    .map(|f| std::fs::read_to_string(f).expect("a seed file")),
            );
        }
        assert!(out.len() > 250, "only {} seeds", out.len());
        out
    })
}

/// Parses, and fails when it takes a second or more.
fn parse_in_time(what: &str, f: impl FnOnce() -> shoal_asl::Parsed) -> shoal_asl::Parsed {
    let started = Instant::now();
    let parsed = f();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "{what}: parsing took {took:?}"
    );
    parsed
}

/// Every node of `v`, as JSON pointers, in document order.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                pointers(
                    c,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                )
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                pointers(c, format!("{at}/{i}"), out)
            }
        }
        _ => {}
    }
    out.push(at);
}

/// One edit at the node `pick` chooses: replace it, remove it, or add a field to it.
fn mutate(doc: &mut Value, pick: usize, how: u8, key: &str, new: Value) {
    let mut all = Vec::new();
    pointers(doc, String::new(), &mut all);
    let at = &all[pick % all.len()];
    match how % 3 {
        0 => {
            if let Some(node) = doc.pointer_mut(at) {
                *node = new;
            }
        }
        1 => {
            let (parent, last) = at.rsplit_once('/').unwrap_or(("", ""));
            match doc.pointer_mut(parent) {
                Some(Value::Object(m)) => {
                    m.shift_remove(&last.replace("~1", "/").replace("~0", "~"));
                }
                Some(Value::Array(a)) => {
                    if let Ok(i) = last.parse::<usize>() {
                        if i < a.len() {
                            a.remove(i);
                        }
                    }
                }
                _ => {}
            }
        }
        _ => {
            if let Some(Value::Object(m)) = doc.pointer_mut(at) {
                m.insert(key.to_string(), new);
            }
        }
    }
}

fn arb_keys() -> impl Strategy<Value = &'static str> + Clone {
    prop_oneof![
        Just("Type"),
        Just("Next"),
        Just("End"),
        Just("StartAt"),
        Just("States"),
        Just("A"),
        Just("Credentials"),
        Just("RoleArn"),
        Just("RoleArn.$"),
        Just("x.$"),
        Just("x"),
        Just("ErrorPath"),
        Just("Branches"),
        Just("ItemProcessor"),
        Just("ProcessorConfig"),
        Just("Parameters"),
        Just("QueryLanguage"),
    ]
}

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
            Just("DISTRIBUTED"),
            Just("$.[0]"),
            Just("$.a[?(@.b == $.c)]"),
            Just("$.a[?(@.b == word)]"),
            Just("$['a','b'].c"),
            Just("States.MathAdd($.a, 1)"),
            Just("arn:aws:states:::lambda:invoke")
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A corpus definition with up to four edits anywhere in it.
    #[test]
    fn mutated_seed(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), arb_keys(), arb_json()), 1..5),
    ) {
        let seeds = seeds();
        let text = &seeds[seed.index(seeds.len())];
        let mut doc: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => return Ok(()),
        };
        for (pick, how, key, new) in edits {
            mutate(&mut doc, pick, how, key, new);
        }
        let parsed = parse_in_time("a mutated seed", || shoal_asl::parse_value(&doc));
        for d in &parsed.diagnostics {
            prop_assert!(d.pointer.is_empty() || d.pointer.starts_with('/'));
        }
    }

    /// A corpus definition cut short, or with a few bytes of noise spliced in.
    #[test]
    fn damaged_seed_text(
        seed in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        noise in "\\PC{0,8}",
    ) {
        let seeds = seeds();
        let text = &seeds[seed.index(seeds.len())];
        let mut at = cut.index(text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let spliced = format!("{}{noise}{}", &text[..at], &text[at..]);
        parse_in_time("spliced text", || shoal_asl::parse(&spliced));
        parse_in_time("cut text", || shoal_asl::parse(&text[..at]));
    }
}

#[test]
fn every_seed_parses_in_time() {
    for (i, text) in seeds().iter().enumerate() {
        parse_in_time(&format!("seed {i}"), || shoal_asl::parse(text));
    }
}
