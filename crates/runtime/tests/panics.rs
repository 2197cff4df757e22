//! Work that panics never hangs anything: a Task whose call panics fails with
//! `States.Runtime` naming the panic, and a map run's child that panics is counted as
//! failed, so the run's tolerance decides and the parent ends. The panicking builtin
//! exists only in this test.

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use shoal_buckets::Buckets;
use shoal_engine::{ExecutionInfo, Outcome, SplitMix};
use shoal_lambda::registry::{FunctionDef, Registry};
use shoal_lambda::Reply;
use shoal_runtime::{Options, Runtime};
use shoal_tasks::{Builtin, Builtins, Functions, Tasks};
use std::sync::Arc;

/// Panics when its payload says `"boom": true`; else answers `"fine"`.
struct Panics;

impl Builtin for Panics {
    fn invoke<'a>(&'a self, payload: Bytes, _: Option<&'a Arc<Buckets>>) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            let v: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
            if v["boom"] == json!(true) {
                panic!("the test builtin was told to panic");
            }
            Reply::Ok(Bytes::from_static(b"\"fine\""))
        })
    }
}

async fn run(definition: Value, input: Value) -> Outcome {
    let mut builtins = Builtins::new();
    builtins.insert("panics".into(), Arc::new(Panics));
    let mut registry = Registry::default();
    registry
        .functions
        .insert("p".into(), FunctionDef::Builtin("panics".into()));
    let functions = Functions::new(registry, &builtins).unwrap();
    let rt = Runtime::new(Options {
        buckets: None,
        tasks: Tasks::new(functions),
        seed: 1,
        db: None,
        fleet: None,
    });
    let parsed = shoal_asl::parse(&definition.to_string());
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let info = ExecutionInfo::local("sm", "e", rt.now_ms(), false, &SplitMix::new(1));
    let run = rt.run(Arc::new(parsed.machine.unwrap()), info, input);
    tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .expect("a panic must not hang the execution")
}

const FUNCTION: &str = "arn:aws:lambda:us-east-1:123456789012:function:p";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_call_panics_fails_with_states_runtime() {
    let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": FUNCTION, "End": true}}});
    match run(def, json!({"boom": true})).await {
        Outcome::Failed(f) => {
            assert_eq!(f.error, "States.Runtime");
            let cause = f.cause.unwrap_or_default();
            assert!(
                cause.contains("the test builtin was told to panic"),
                "{cause}"
            );
        }
        other => panic!("{other:?}"),
    }
}

fn map(tolerated: u64) -> Value {
    json!({"StartAt": "M", "States": {"M": {
        "Type": "Map", "ItemsPath": "$.items", "ToleratedFailureCount": tolerated,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "T", "States": {"T": {"Type": "Task", "Resource": FUNCTION, "End": true}}},
        "End": true}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_child_that_panics_is_a_failed_child_and_the_tolerance_decides() {
    let items = json!({"items": [{"boom": false}, {"boom": true}, {"boom": false}]});
    match run(map(1), items.clone()).await {
        Outcome::Succeeded(v) => assert_eq!(v.as_array().map(Vec::len), Some(3), "{v}"),
        other => panic!("within tolerance: {other:?}"),
    }
    match run(map(0), items).await {
        Outcome::Failed(f) => assert_eq!(f.error, "States.ExceedToleratedFailureThreshold"),
        other => panic!("over tolerance: {other:?}"),
    }
}
