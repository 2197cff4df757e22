//! Tasks that wait for a token, and nested executions, driven from outside by boto3
//! (`callbacks_client.py`, in the venv that scripts/test.sh makes) against `shoal serve`:
//! SendTaskSuccess, SendTaskFailure caught by a Catch, heartbeats and
//! States.HeartbeatTimeout, AWS's token errors, a token answered after the server was
//! killed with SIGKILL and restarted, and a parent catching its `.sync:2` child's failure.
//! Activities: a boto3 worker (GetActivityTask → SendTaskHeartbeat → SendTaskSuccess),
//! a worker's failure caught, TimeoutSeconds with no worker, a silent worker's
//! heartbeat timeout, the 60 s long poll, and a taken activity task answered after a
//! SIGKILL and restart.

mod common;

use common::{serve, Serve};
use std::path::Path;
use std::process::Command;

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("buckets")).unwrap();
    let testfn = Path::new(env!("CARGO_BIN_EXE_shoal"))
        .parent()
        .unwrap()
        .join("shoal-testfn");
    std::fs::write(
        dir.path().join("shoal.toml"),
        format!(
            "[functions.testfn]\ncommand = [{:?}]\n",
            testfn.display().to_string()
        ),
    )
    .unwrap();
    dir
}

fn client(s: &Serve, dir: &Path, args: &[&str]) -> String {
    let python = Path::new(env!("CARGO_BIN_EXE_shoal"))
        .parent()
        .unwrap()
        .join("../lambda-venv/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/callbacks_client.py");
    let o = Command::new(&python)
        .arg(script)
        .arg(s.url())
        .arg(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/test.sh makes the venv)", python.display()));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "client {args:?} failed:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

#[test]
fn tokens_heartbeats_and_nested_executions_through_boto3() {
    let dir = setup();
    let s = serve(dir.path(), &["--config", "shoal.toml"]);
    let out = client(&s, dir.path(), &["main"]);
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn a_token_is_answered_after_the_server_was_killed_and_restarted() {
    let dir = setup();
    let s = serve(dir.path(), &["--config", "shoal.toml"]);
    client(&s, dir.path(), &["start", "survivor"]);
    drop(s); // SIGKILL while the task waits for its token
    let s = serve(dir.path(), &["--config", "shoal.toml"]);
    let out = client(&s, dir.path(), &["answer", "survivor"]);
    assert!(
        out.starts_with("SUCCEEDED {\"after\":\"restart\"}"),
        "{out}"
    );
}

#[test]
fn activity_workers_through_boto3() {
    let dir = setup();
    let s = serve(dir.path(), &["--config", "shoal.toml"]);
    let out = client(&s, dir.path(), &["activities"]);
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn a_taken_activity_task_is_answered_after_the_server_was_killed_and_restarted() {
    let dir = setup();
    let s = serve(dir.path(), &["--config", "shoal.toml"]);
    client(&s, dir.path(), &["activity-start", "worked"]);
    drop(s); // SIGKILL while the worker holds the task
    let s = serve(dir.path(), &["--config", "shoal.toml"]);
    let out = client(&s, dir.path(), &["answer", "worked"]);
    assert!(
        out.starts_with("SUCCEEDED {\"after\":\"restart\"}"),
        "{out}"
    );
    // The worker already had it: the restarted server did not hand it out again.
    assert!(out.contains("activity-started=1"), "{out}");
}

/// A 10,000-item Distributed Map whose children each wait for an activity task that 8
/// boto3 worker processes answer: it finishes with every item answered exactly once.
#[test]
fn ten_thousand_map_children_wait_for_workers() {
    let dir = setup();
    let s = serve(dir.path(), &["--config", "shoal.toml"]);
    let out = client(&s, dir.path(), &["bigmap", "10000"]);
    assert!(out.contains("all checks passed"), "{out}");
    eprintln!(
        "{}",
        out.lines().find(|l| l.starts_with("bigmap:")).unwrap_or("")
    );
}

/// `shoal run` waits for its token and says how to answer it; `shoal task success`
/// answers, and the run ends with that output.
#[test]
fn shoal_run_waits_for_a_token_that_shoal_task_answers() {
    use std::io::{BufRead, BufReader};
    let dir = setup();
    let def = serde_json::json!({"StartAt": "Approve", "States": {"Approve": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": "testfn", "Payload": {"token.$": "$$.Task.Token"}},
        "TimeoutSeconds": 60, "End": true}}});
    std::fs::write(dir.path().join("def.json"), def.to_string()).unwrap();
    let mut run = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .current_dir(dir.path())
        .args([
            "run",
            "def.json",
            "--config",
            "shoal.toml",
            "--json",
            "--ephemeral",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(run.stderr.take().unwrap()).lines();
    let command = loop {
        let line = lines.next().expect("shoal run says how to answer").unwrap();
        if let Some(c) = line.trim().strip_prefix("shoal task success ") {
            break c.to_string();
        }
    };
    let args: Vec<&str> = command.split_whitespace().collect();
    let (endpoint, token) = (args[1], args[args.len() - 1]);
    let bogus = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["task", "heartbeat", "--endpoint", endpoint, "not-a-token"])
        .output()
        .unwrap();
    assert!(!bogus.status.success());
    assert!(String::from_utf8_lossy(&bogus.stderr).contains("InvalidToken"));
    let answered = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args([
            "task",
            "success",
            "--endpoint",
            endpoint,
            "--output",
            r#"{"ok":1}"#,
            token,
        ])
        .status()
        .unwrap();
    assert!(answered.success());
    let out = run.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"status": "SUCCEEDED", "output": {"ok": 1}})
    );
}
