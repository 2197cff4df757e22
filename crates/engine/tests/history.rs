//! The history events the engine records, as AWS's GetExecutionHistory names them.

mod support;

use serde_json::json;

fn kinds(run: &support::Run) -> Vec<&'static str> {
    run.history.iter().map(|(k, _)| *k).collect()
}

#[test]
fn a_retried_then_caught_task_fails_each_attempt_and_enters_once() {
    let def = r#"{"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::test:fail:E",
        "Retry": [{"ErrorEquals": ["E"], "MaxAttempts": 1}],
        "Catch": [{"ErrorEquals": ["E"], "Next": "C"}], "End": true}, "C": {"Type": "Succeed"}}}"#;
    let run = support::run(def, json!({}));
    assert_eq!(
        kinds(&run),
        [
            "ExecutionStarted",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskStarted",
            "TaskFailed",
            "TaskScheduled",
            "TaskStarted",
            "TaskFailed",
            "TaskStateExited",
            "SucceedStateEntered",
            "SucceedStateExited",
            "ExecutionSucceeded",
        ]
    );
    let (_, scheduled) = &run.history[2];
    assert_eq!(scheduled["resourceType"], "test");
    assert_eq!(scheduled["resource"], "fail:E");
    assert_eq!(scheduled["region"], "us-east-1");
    let (_, failed) = &run.history[4];
    assert_eq!(
        failed,
        &json!({"resourceType": "test", "resource": "fail:E", "error": "E", "cause": "always fails"})
    );
}

#[test]
fn a_function_arn_gets_lambda_function_events() {
    let def = r#"{"StartAt": "T", "States": {"T": {"Type": "Task",
        "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f", "TimeoutSeconds": 7, "End": true}}}"#;
    let run = support::run(def, json!({"a": 1}));
    assert_eq!(
        kinds(&run),
        [
            "ExecutionStarted",
            "TaskStateEntered",
            "LambdaFunctionScheduled",
            "LambdaFunctionStarted",
            "LambdaFunctionFailed",
            "ExecutionFailed",
        ]
    );
    assert_eq!(
        run.history[2].1,
        json!({"resource": "arn:aws:lambda:us-east-1:123456789012:function:f",
               "input": "{\"a\":1}", "timeoutInSeconds": 7})
    );
}

#[test]
fn the_machine_timeout_ends_with_execution_timed_out() {
    let def = r#"{"TimeoutSeconds": 1, "StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 5, "End": true}}}"#;
    let run = support::run(def, json!({}));
    let (kind, details) = run.history.last().unwrap();
    assert_eq!(*kind, "ExecutionTimedOut");
    assert_eq!(details, &json!({"error": "States.Timeout"}));
    assert!(!kinds(&run).contains(&"ExecutionFailed"));
}

#[test]
fn a_retried_map_starts_again_without_entering_and_fails_once() {
    let def = r#"{"StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrency": 1,
        "ItemProcessor": {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E"}}},
        "Retry": [{"ErrorEquals": ["E"], "MaxAttempts": 1}], "End": true}}}"#;
    let run = support::run(def, json!([1]));
    assert_eq!(
        kinds(&run),
        [
            "ExecutionStarted",
            "MapStateEntered",
            "MapStateStarted",
            "MapIterationStarted",
            "FailStateEntered",
            "MapIterationFailed",
            "MapStateStarted",
            "MapIterationStarted",
            "FailStateEntered",
            "MapIterationFailed",
            "MapStateFailed",
            "ExecutionFailed",
        ]
    );
}

#[test]
fn an_empty_assign_and_an_empty_fail_leave_no_empty_fields() {
    let def = r#"{"StartAt": "P", "States": {"P": {"Type": "Pass", "Assign": {}, "Next": "F"}, "F": {"Type": "Fail"}}}"#;
    let run = support::run(def, json!({}));
    assert!(run.history[2].1.get("assignedVariables").is_none());
    assert_eq!(run.history.last().unwrap(), &("ExecutionFailed", json!({})));
}
