//! Map runs on the real runtime: the concurrency limit, the tolerance boundary and
//! the counters. Time is tokio's paused clock, so Wait states take no real time.

use serde_json::{json, Value};
use shoal_engine::{ExecutionInfo, Failure, Outcome, SplitMix};
use shoal_runtime::{Options, Runtime};
use std::sync::Arc;

async fn run(definition: Value, input: Value) -> (Arc<Runtime>, Outcome) {
    let parsed = shoal_asl::parse(&definition.to_string());
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let rt = Runtime::new(Options {
        buckets: None,
        tasks: shoal_tasks::Tasks::new(Default::default()),
        seed: 1,
        db: None,
        fleet: None,
    });
    let info = ExecutionInfo::local("sm", "exec", rt.now_ms(), false, &SplitMix::new(1));
    let out = rt.run(Arc::new(parsed.machine.unwrap()), info, input).await;
    (rt, out)
}

fn map(processor: Value, extra: Value) -> Value {
    let mut m = json!({
        "Type": "Map",
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "P",
            "States": processor,
        },
        "End": true,
    });
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    json!({"StartAt": "M", "States": {"M": m}})
}

#[tokio::test(start_paused = true)]
async fn max_concurrency_is_never_exceeded() {
    let def = map(
        json!({"P": {"Type": "Wait", "Seconds": 1, "End": true}}),
        json!({"MaxConcurrency": 7}),
    );
    let items: Vec<Value> = (0..100).map(|i| json!(i)).collect();
    let start = tokio::time::Instant::now();
    let (rt, out) = run(def, Value::Array(items.clone())).await;
    assert_eq!(out, Outcome::Succeeded(Value::Array(items)));
    let runs = rt.map_runs();
    let p = &runs[0];
    // Counted by the children themselves as they run: the limit is reached, never passed.
    assert_eq!(p.peak(), 7);
    assert_eq!(p.live(), 0);
    // 100 one-second children, 7 at a time: 15 waves.
    assert_eq!(start.elapsed().as_secs(), 15);
    let t = p.tally();
    assert_eq!(t.executions.succeeded, 100);
    assert_eq!(t.items.total, 100);
    assert_eq!(t.status.as_str(), "SUCCEEDED");
}

#[tokio::test(start_paused = true)]
async fn no_limit_means_aws_cap_of_ten_thousand() {
    let def = map(
        json!({"P": {"Type": "Wait", "Seconds": 1, "End": true}}),
        json!({}),
    );
    let items: Vec<Value> = (0..10_050).map(|i| json!(i)).collect();
    let (rt, out) = run(def, Value::Array(items)).await;
    assert!(matches!(out, Outcome::Succeeded(_)));
    assert_eq!(rt.map_runs()[0].peak(), 10_000);
}

/// 20 items; those with an id below `bad` fail.
async fn tolerance(bad: i64, extra: Value) -> Outcome {
    let def = map(
        json!({
            "P": {"Type": "Choice", "Choices": [{"Variable": "$", "NumericLessThan": bad, "Next": "F"}], "Default": "S"},
            "F": {"Type": "Fail", "Error": "Bad", "Cause": "below"},
            "S": {"Type": "Succeed"}
        }),
        extra,
    );
    let items: Vec<Value> = (0..20).map(|i| json!(i)).collect();
    run(def, Value::Array(items)).await.1
}

fn exceeded(o: &Outcome) -> bool {
    matches!(o, Outcome::Failed(Failure { error, .. }) if error == "States.ExceedToleratedFailureThreshold")
}

#[tokio::test(start_paused = true)]
async fn tolerated_failures_trip_exactly_past_the_boundary() {
    // Count: 3 failures are tolerated by 3, not by 2.
    let ok = tolerance(3, json!({"ToleratedFailureCount": 3})).await;
    let Outcome::Succeeded(v) = &ok else {
        panic!("{ok:?}")
    };
    assert_eq!(v[0], json!({"Error": "Bad", "Cause": "below"}));
    assert_eq!(v[3], json!(3));
    assert!(exceeded(
        &tolerance(3, json!({"ToleratedFailureCount": 2})).await
    ));
    // Percentage: 4 of 20 is 20 %.
    assert!(matches!(
        tolerance(4, json!({"ToleratedFailurePercentage": 20})).await,
        Outcome::Succeeded(_)
    ));
    assert!(exceeded(
        &tolerance(4, json!({"ToleratedFailurePercentage": 19.9})).await
    ));
    // Both: exceeding either one fails the run.
    assert!(exceeded(
        &tolerance(
            4,
            json!({"ToleratedFailureCount": 10, "ToleratedFailurePercentage": 10})
        )
        .await
    ));
    // None set: the threshold is 0 %, so the first failure fails the run (AWS's
    // "maprun-fail-threshold" page).
    assert!(exceeded(&tolerance(1, json!({})).await));
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_fails_all_its_items() {
    let batched = |count: u32| {
        map(
            json!({
                "P": {"Type": "Choice", "Choices": [{"Variable": "$.Items[0]", "NumericEquals": 0, "Next": "F"}], "Default": "S"},
                "F": {"Type": "Fail", "Error": "Bad"},
                "S": {"Type": "Succeed"}
            }),
            json!({"ToleratedFailureCount": count, "ItemBatcher": {"MaxItemsPerBatch": 5}}),
        )
    };
    let items = Value::Array((0..20).map(|i| json!(i)).collect());
    let (rt, out) = run(batched(5), items.clone()).await;
    assert!(matches!(out, Outcome::Succeeded(_)), "{out:?}");
    let t = rt.map_runs()[0].tally();
    assert_eq!((t.items.failed, t.executions.failed), (5, 1));
    assert!(exceeded(&run(batched(4), items).await.1));
}

#[tokio::test(start_paused = true)]
async fn map_output_over_256_kib_is_a_data_limit_failure() {
    let def = map(
        json!({"P": {"Type": "Pass", "Parameters": {"pad.$": "States.ArrayRange(1, 300, 1)"}, "End": true}}),
        json!({}),
    );
    let items: Vec<Value> = (0..300).map(|i| json!(i)).collect();
    let (_, out) = run(def, Value::Array(items)).await;
    assert!(
        matches!(&out, Outcome::Failed(Failure { error, .. }) if error == "States.DataLimitExceeded"),
        "{out:?}"
    );
}
