//! Durations that come from an execution's input or from far-off limits reach the
//! runtime's clock only within what it can hold: an out-of-range value fails its state
//! with States.Runtime, and a far-off deadline simply never fires. The clock is
//! tokio's paused one.

use serde_json::{json, Value};
use shoal_engine::{Execution, ExecutionInfo, Outcome, SplitMix};
use shoal_runtime::{Options, Runtime};
use std::sync::Arc;

async fn run(definition: Value, input: Value) -> Outcome {
    let rt = Runtime::new(Options {
        buckets: None,
        tasks: shoal_tasks::Tasks::new(Default::default()),
        seed: 1,
        db: None,
        fleet: None,
    });
    let parsed = shoal_asl::parse(&definition.to_string());
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let machine = Arc::new(parsed.machine.unwrap());
    let entropy = SplitMix::new(1);
    let info = ExecutionInfo::local("sm", "e", rt.now_ms(), false, &entropy);
    let mut exec = Execution::new(machine, info, input, Box::new(entropy));
    rt.drive(&mut exec).await
}

fn runtime_error(o: &Outcome) -> String {
    match o {
        Outcome::Failed(f) if f.error == "States.Runtime" => f.cause.clone().unwrap_or_default(),
        other => panic!("expected States.Runtime, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn out_of_range_durations_fail_their_state_and_far_deadlines_never_fire() {
    for (field, value) in [
        ("TimeoutSecondsPath", json!(1e20)),
        ("TimeoutSecondsPath", json!(-1)),
        ("HeartbeatSecondsPath", json!(1e300)),
    ] {
        let definition = json!({"StartAt": "T", "States": {"T": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "f"}, field: "$.v", "End": true}}});
        let cause = runtime_error(&run(definition, json!({"v": value})).await);
        assert!(cause.contains(field), "{cause}");
    }
    let wait = json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "SecondsPath": "$.v", "End": true}}});
    let cause = runtime_error(&run(wait, json!({"v": 1e20})).await);
    assert!(cause.contains("SecondsPath"), "{cause}");
    let far = json!({"StartAt": "P", "TimeoutSeconds": 1e19, "States": {"P": {"Type": "Pass", "End": true}}});
    assert_eq!(
        run(far, json!({"a": 1})).await,
        Outcome::Succeeded(json!({"a": 1}))
    );
}
