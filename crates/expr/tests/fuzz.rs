//! Malformed expressions never panic: the path, intrinsic and JSONata parsers
//! return errors, and whatever parses also evaluates without panicking.

use proptest::prelude::*;
use serde_json::json;
use shoal_expr::intrinsic::Call;
use shoal_expr::{Path, Scope, SplitMix};

/// Inputs that once broke parsers of this kind; kept as a fixed corpus.
const CORPUS: &[&str] = &[
    "$",
    "$$",
    "$.",
    "$..",
    "$[",
    "$[]",
    "$['",
    "$[''']",
    "$[?(",
    "$[?(@.a==)]",
    "$[1:2:0]",
    "$[-9223372036854775808]",
    "$.a.length()",
    "$[?(!@.x)]",
    "$['a','b']",
    "$.é",
    "$\u{0}",
    "States.Format(",
    "States.Format('{}'",
    "States.Array(States.Array(",
    "States.MathAdd(1,)",
    "States.Hash('x', 'NOPE')",
    "States.Format('\\",
    "States.ArrayRange(0, 100000, 1)",
    "States.StringToJson(\u{1f574}$.result)",
    "$.[0]",
    "$.a[?(@.b == $.c)]",
    "$.a[?(@.b == word)]",
    "$.a[?(@.b == wörd)]",
    "$['a','b'].c",
    "$.[*].['a','b']",
    "$.a ",
];

fn exercise(s: &str) {
    let input = json!({"a": [1, {"b": "c"}], "x": "y"});
    let ctx = json!({});
    let e = SplitMix::new(0);
    let scope = Scope {
        input: &input,
        context: &ctx,
        vars: &(),
        entropy: &e,
    };
    if let Ok(p) = Path::parse(s) {
        let _ = scope.resolve(&p);
        let mut target = input.clone();
        if p.is_reference() {
            let _ = p.set(&mut target, json!(1));
        }
    }
    if let Ok(c) = Call::parse(s) {
        let _ = c.eval(&scope);
    }
    let _ = shoal_expr::jsonata::compile(&format!("{{% {s} %}}"));
}

#[test]
fn corpus_does_not_panic() {
    for s in CORPUS {
        exercise(s);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text(s in "\\PC{0,40}") {
        exercise(&s);
    }

    #[test]
    fn path_like(s in "\\$[a-z.\\[\\]'*?@()=<>!&|0-9:,-]{0,30}") {
        exercise(&s);
    }

    #[test]
    fn call_like(s in "States\\.(Format|Array|MathAdd|ArrayRange|Hash|StringSplit)\\(['$a-z0-9., ()]{0,30}") {
        exercise(&s);
    }
}
