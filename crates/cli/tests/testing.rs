//! `shoal test`: the order workflow of `examples/testing` passes with full coverage
//! and JUnit XML; a failing case exits 1 with what differed, the same on every run
//! (fixed clock and ids, no wall time for Waits); bad suites are refused with the
//! place of the problem; a state no case mocks calls its real function.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn shoal_test(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .current_dir(dir)
        .arg("test")
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_order_example_passes_with_full_coverage() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/testing");
    let out = tempfile::tempdir().unwrap();
    let (cov, junit) = (out.path().join("c.json"), out.path().join("j.xml"));
    let o = shoal_test(
        &example,
        &[
            "order.test.yaml",
            "--coverage",
            cov.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.matches("PASS  ").count(), 6, "{stdout}");
    assert!(stdout.contains("6 passed, 0 failed"), "{stdout}");
    let c: serde_json::Value = serde_json::from_slice(&std::fs::read(&cov).unwrap()).unwrap();
    let m = &c["stateMachines"][0];
    for kind in [
        "states",
        "transitions",
        "choiceRules",
        "catchers",
        "retriers",
    ] {
        assert_eq!(m[kind]["percent"], 100.0, "{kind}: {m}");
        assert!(m[kind]["total"].as_u64().unwrap() > 0, "{kind}: {m}");
    }
    let j = std::fs::read_to_string(&junit).unwrap();
    assert!(j.contains(r#"tests="6" failures="0""#), "{j}");
    assert_eq!(j.matches("<testcase ").count(), 6, "{j}");

    // --filter runs some cases only; coverage then shows what they missed.
    let o = shoal_test(
        &example,
        &[
            "order.test.yaml",
            "--filter",
            "happy",
            "--coverage",
            cov.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let c: serde_json::Value = serde_json::from_slice(&std::fs::read(&cov).unwrap()).unwrap();
    let missed = &c["stateMachines"][0]["states"]["missed"];
    assert_eq!(
        missed,
        &serde_json::json!(["RejectOrder", "NotifyFailure", "OrderFailed"])
    );
}

#[test]
fn a_failing_case_shows_what_differed_the_same_on_every_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("s.yaml"),
        r#"
definition:
  StartAt: W
  States:
    W: {Type: Wait, Seconds: 3600, Next: U}
    U: {Type: Pass, Parameters: {"id.$": "States.UUID()", "t.$": "$$.Execution.StartTime", "now.$": "$$.State.EnteredTime"}, End: true}
cases:
  - name: wrong output
    expect:
      output: {"id": "x"}
      path: [W]
  - name: right status
    expect: {status: SUCCEEDED}
"#,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let first = shoal_test(dir.path(), &["s.yaml"]);
    assert!(
        started.elapsed().as_secs() < 30,
        "an hour's Wait takes no time"
    );
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    let out = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(out.contains("FAIL  s.yaml › wrong output"), "{out}");
    assert!(out.contains("PASS  s.yaml › right status"), "{out}");
    assert!(out.contains(r#"/id: expected "x", got ""#), "{out}");
    assert!(
        out.contains(r#"/t: not expected; got "2024-01-01T00:00:00.000Z""#),
        "{out}"
    );
    assert!(
        out.contains(r#"/now: not expected; got "2024-01-01T01:00:00.000Z""#),
        "the Wait moved the case's own clock by an hour: {out}"
    );
    assert!(out.contains("path: expected [W], got [W, U]"), "{out}");
    let strip = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.contains(" in ") || !l.contains(" s"))
            .map(|l| l.split(" (").next().unwrap_or(l).to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let second = shoal_test(dir.path(), &["s.yaml"]);
    assert_eq!(
        strip(&out),
        strip(&String::from_utf8_lossy(&second.stdout)),
        "UUIDs and times are the same on every run"
    );
}

#[test]
fn bad_suites_are_refused_naming_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let def = r#"{"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}}"#;
    let cases = [
        (
            format!("definition: {def}\ncases:\n  - name: x\n    expect: {{}}\n"),
            "/cases/0/expect: the case expects nothing",
        ),
        (
            format!("definition: {def}\ncases:\n  - name: x\n    mocks: {{B: {{Return: 1}}}}\n    expect: {{status: SUCCEEDED}}\n"),
            "/cases/0/mocks/B: the state machine has no state \"B\"",
        ),
        (
            format!("definition: {def}\ncases:\n  - name: x\n    mocks: {{A: [{{Retrun: 1}}]}}\n    expect: {{status: SUCCEEDED}}\n"),
            "/cases/0/mocks/A/0/Retrun",
        ),
        (
            format!("definition: {def}\ncases:\n  - name: x\n    expect: {{stauts: SUCCEEDED}}\n"),
            "unknown field `stauts`",
        ),
        (
            "definition: {\"StartAt\": \"Nope\", \"States\": {}}\ncases: []\n".to_string(),
            "is not valid",
        ),
    ];
    for (i, (suite, want)) in cases.iter().enumerate() {
        let f = format!("s{i}.yaml");
        std::fs::write(dir.path().join(&f), suite).unwrap();
        let o = shoal_test(dir.path(), &[&f]);
        assert_eq!(o.status.code(), Some(2), "{suite}: {}", text(&o));
        assert!(
            text(&o).contains(want),
            "{suite}: want {want:?} in {}",
            text(&o)
        );
    }
}

/// A state no case mocks runs its real function; the mocked one does not.
#[test]
fn unmocked_states_call_their_real_function() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("shoal.toml"), common::testfn_registry("")).unwrap();
    std::fs::write(
        dir.path().join("s.yaml"),
        r#"
definition:
  StartAt: Real
  States:
    Real: {Type: Task, Resource: "arn:aws:states:::lambda:invoke", Parameters: {FunctionName: testfn, Payload: {echo: 1}}, OutputPath: $.Payload, Next: Mocked}
    Mocked: {Type: Task, Resource: "arn:aws:states:::lambda:invoke", Parameters: {FunctionName: nowhere, "Payload.$": "$"}, OutputPath: $.Payload, End: true}
cases:
  - name: hybrid
    mocks:
      Mocked: {Return: {StatusCode: 200, Payload: {mocked: true}}}
    expect:
      output: {mocked: true}
      stateOutputs: {Real: {echo: 1}}
"#,
    )
    .unwrap();
    let o = shoal_test(dir.path(), &["s.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
