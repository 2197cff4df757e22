//! AWS's payload limit inside the engine.

mod support;

use shoal_engine::Outcome;

/// A Pass state's Result over 256 KiB fails with States.DataLimitExceeded, which a
/// Catch on States.ALL does catch (as AWS's recorded runs show for results).
#[test]
fn a_pass_result_over_the_payload_limit_fails_the_state() {
    let big = "x".repeat(262_144);
    let def = serde_json::json!({"StartAt": "P", "States": {
        "P": {"Type": "Pass", "Result": big, "End": true}}});
    let run = support::run(&def.to_string(), serde_json::json!({}));
    match run.outcome {
        Outcome::Failed(f) => {
            assert_eq!(f.error, "States.DataLimitExceeded");
            assert!(f.cause.unwrap().contains("'P'"));
        }
        other => panic!("{other:?}"),
    }
    let fits = serde_json::json!({"StartAt": "P", "States": {
        "P": {"Type": "Pass", "Result": "x".repeat(262_000), "End": true}}});
    let run = support::run(&fits.to_string(), serde_json::json!({}));
    assert!(matches!(run.outcome, Outcome::Succeeded(_)));
}

/// States.Runtime from I/O processing is terminal: a Catch that names it does not
/// catch it, nor does States.ALL.
#[test]
fn states_runtime_is_never_caught() {
    let def = serde_json::json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::test:echo", "OutputPath": "$.nope",
              "Retry": [{"ErrorEquals": ["States.Runtime"], "MaxAttempts": 3}],
              "Catch": [{"ErrorEquals": ["States.Runtime"], "Next": "Caught"},
                        {"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
              "End": true},
        "Caught": {"Type": "Succeed"}}});
    let run = support::run(&def.to_string(), serde_json::json!({"a": 1}));
    match run.outcome {
        Outcome::Failed(f) => assert_eq!(f.error, "States.Runtime"),
        other => panic!("{other:?}"),
    }
    assert_eq!(run.invocations, 1, "no retry");
}
