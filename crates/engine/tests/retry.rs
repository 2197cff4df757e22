//! Retry backoff on the injected clock: no real sleeps.

mod support;

use shoal_engine::Outcome;

#[test]
fn backoff_grows_and_is_capped() {
    let def = r#"{"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::test:fail:E",
        "Retry": [{"ErrorEquals": ["E"], "IntervalSeconds": 2, "MaxAttempts": 4, "BackoffRate": 3, "MaxDelaySeconds": 30}], "End": true}}}"#;
    let run = support::run(def, serde_json::json!({}));
    let times: Vec<i64> = run.timers.iter().map(|t| t.0).collect();
    // Delays 2, 6, 18, then 54 capped at 30 seconds, each from the previous failure.
    assert_eq!(times, vec![2_000, 8_000, 26_000, 56_000]);
    assert_eq!(run.invocations, 5);
    assert!(matches!(run.outcome, Outcome::Failed(ref f) if f.error == "E"));
}

#[test]
fn full_jitter_stays_within_the_interval() {
    let def = r#"{"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::test:fail:E",
        "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 10, "MaxAttempts": 3, "BackoffRate": 1, "JitterStrategy": "FULL"}], "End": true}}}"#;
    let run = support::run(def, serde_json::json!({}));
    let mut prev = 0;
    for (at, _) in &run.timers {
        assert!(
            (0..=10_000).contains(&(at - prev)),
            "delay {} out of range",
            at - prev
        );
        prev = *at;
    }
    assert_eq!(run.timers.len(), 3);
}

#[test]
fn max_attempts_zero_never_retries_and_retriers_count_separately() {
    let def = r#"{"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::test:fail:E",
        "Retry": [{"ErrorEquals": ["E"], "MaxAttempts": 0}, {"ErrorEquals": ["States.ALL"], "MaxAttempts": 5}], "End": true}}}"#;
    let run = support::run(def, serde_json::json!({}));
    // The first matching retrier decides: it allows no retry, so the next one is not consulted.
    assert_eq!(run.invocations, 1);
    assert!(run.timers.is_empty());
}

#[test]
fn runtime_errors_are_not_retried_by_states_all() {
    let def = r#"{"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::test:fail:States.Runtime",
        "Retry": [{"ErrorEquals": ["States.ALL"]}], "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "C"}], "End": true}, "C": {"Type": "Succeed"}}}"#;
    let run = support::run(def, serde_json::json!({}));
    assert_eq!(run.invocations, 1);
    assert!(matches!(run.outcome, Outcome::Failed(ref f) if f.error == "States.Runtime"));
}
