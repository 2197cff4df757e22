//! A JSONPath (the first line) applied to a JSON document (the rest, or a fixed one):
//! parse, select and set never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (path, doc) = text.split_once('\n').unwrap_or((&text, ""));
    let doc: Value = serde_json::from_str(doc)
        .unwrap_or_else(|_| json!({"a": [1, {"b": "x"}, [2, 3]], "c": {"d": null}, "e": 1.5}));
    if let Ok(p) = shoal_expr::Path::parse(path) {
        let _ = p.select(&doc);
        let mut target = doc.clone();
        let _ = p.set(&mut target, json!("set"));
    }
});
