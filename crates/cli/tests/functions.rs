//! Unmodified Lambda handlers run through shoal's Lambda Runtime API: a Rust function on
//! the `lambda_runtime` crate (`functions/testfn`, built by `scripts/test.sh`) and a
//! Python one under `awslambdaric` (a venv made by `scripts/test.sh`), and a Node one
//! under `aws-lambda-ric` 3.3.0 from npm (built by `scripts/test.sh` in target/node-ric).

mod common;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn functions_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../functions")
        .join(name)
        .canonicalize()
        .unwrap()
}

/// Each runtime under test: its name, its command, its folder, and the errorType its
/// `fail` op reports (Python and Node name it after the exception class).
fn runtimes() -> Vec<(&'static str, Vec<String>, PathBuf, &'static str)> {
    let rust = target_dir().join("shoal-testfn");
    assert!(
        rust.exists(),
        "{} is missing: cargo build --release -p shoal-testfn (scripts/test.sh does)",
        rust.display()
    );
    let python = std::env::var("SHOAL_TEST_PYTHON").unwrap_or_else(|_| {
        target_dir()
            .join("../lambda-venv/bin/python")
            .to_string_lossy()
            .into_owned()
    });
    let ok = Command::new(&python)
        .args(["-c", "import awslambdaric"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{python} cannot import awslambdaric: scripts/test.sh makes target/lambda-venv"
    );
    let node_ric = target_dir().join("../node-ric/node_modules/.bin/aws-lambda-ric");
    assert!(
        node_ric.exists(),
        "{} is missing: scripts/test.sh installs aws-lambda-ric@3.3.0 there",
        node_ric.display()
    );
    vec![
        (
            "rust",
            vec![rust.to_string_lossy().into_owned()],
            functions_dir("testfn"),
            "Custom.Failure",
        ),
        (
            "python",
            vec![
                python,
                "-m".into(),
                "awslambdaric".into(),
                "handler.handler".into(),
            ],
            functions_dir("testfn-py"),
            "CustomFailure",
        ),
        (
            "node",
            vec![
                node_ric.to_string_lossy().into_owned(),
                "index.handler".into(),
            ],
            functions_dir("testfn-node"),
            "CustomFailure",
        ),
    ]
}

fn config(dir: &Path, command: &[String], cwd: &Path, timeout: f64, concurrency: usize) -> PathBuf {
    let quoted: Vec<String> = command.iter().map(|c| format!("{c:?}")).collect();
    let text = format!(
        "[functions.testfn]\ncommand = [{}]\ncwd = {:?}\ntimeout_seconds = {timeout}\nconcurrency = {concurrency}\n",
        quoted.join(", "),
        cwd.display().to_string(),
    );
    let p = dir.join("shoal.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn run(dir: &Path, cfg: &Path, definition: Value, input: Value) -> (Value, Output) {
    let def = dir.join("def.json");
    std::fs::write(&def, definition.to_string()).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["run", def.to_str().unwrap(), "--json", "--config"])
        .arg(cfg)
        .args(["--input", &input.to_string()])
        .output()
        .unwrap();
    (common::json_output(&o), o)
}

fn task(extra: Value) -> Value {
    let mut t = json!({
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:testfn", "Payload.$": "$"},
        "OutputPath": "$.Payload",
        "End": true,
    });
    for (k, v) in extra.as_object().unwrap() {
        t[k] = v.clone();
    }
    json!({"StartAt": "T", "States": {"T": t}})
}

#[test]
fn lambda_handlers_succeed_fail_time_out_and_crash() {
    for (name, command, cwd, error) in runtimes() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), &command, &cwd, 30.0, 2);

        // Success, through lambda:invoke and through the plain function ARN.
        let (r, _) = run(
            dir.path(),
            &cfg,
            task(json!({})),
            json!({"op": "echo", "x": 1}),
        );
        assert_eq!(r["output"], json!({"op": "echo", "x": 1}), "{name}: {r}");
        let plain = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "End": true,
            "Resource": "arn:aws:lambda:us-east-1:123456789012:function:testfn"}}});
        let (r, _) = run(dir.path(), &cfg, plain, json!({"y": [1, 2]}));
        assert_eq!(r["output"], json!({"y": [1, 2]}), "{name}: {r}");

        // LogType Tail: LogResult is base64 of the invocation's log, with what it printed.
        let mut def = task(json!({}));
        def["States"]["T"]["Parameters"]["LogType"] = json!("Tail");
        def["States"]["T"]
            .as_object_mut()
            .unwrap()
            .remove("OutputPath");
        let (r, _) = run(
            dir.path(),
            &cfg,
            def,
            json!({"print": "hello from the handler"}),
        );
        use base64::Engine;
        let log = base64::engine::general_purpose::STANDARD
            .decode(r["output"]["LogResult"].as_str().unwrap_or_default())
            .unwrap();
        let log = String::from_utf8(log).unwrap();
        let id = r["output"]["SdkResponseMetadata"]["RequestId"]
            .as_str()
            .unwrap();
        assert!(
            log.starts_with(&format!("START RequestId: {id} Version: $LATEST\n"))
                && log.contains("hello from the handler\n")
                && log.contains(&format!(
                    "END RequestId: {id}\nREPORT RequestId: {id}\tDuration: "
                )),
            "{name}: {log}"
        );
        assert_eq!(
            r["output"]["SdkHttpMetadata"]["HttpHeaders"]["X-Amz-Log-Result"],
            r["output"]["LogResult"],
            "{name}"
        );

        // A handler error: Retry sees it by name (two calls), then Catch does.
        let log = dir.path().join("calls.log");
        let def = task(json!({
            "Retry": [{"ErrorEquals": [error], "IntervalSeconds": 1, "MaxAttempts": 1}],
            "Catch": [{"ErrorEquals": [error], "ResultPath": "$.caught", "Next": "Done"}],
            "End": null, "Next": "Never",
        }));
        let mut def = def;
        def["States"]["T"].as_object_mut().unwrap().remove("End");
        def["States"]["Done"] = json!({"Type": "Pass", "End": true});
        def["States"]["Never"] = json!({"Type": "Fail", "Error": "NotReached"});
        let (r, _) = run(
            dir.path(),
            &cfg,
            def,
            json!({"op": "fail", "log": log.to_str().unwrap()}),
        );
        assert_eq!(r["status"], "SUCCEEDED", "{name}: {r}");
        let caught = &r["output"]["caught"];
        assert_eq!(caught["Error"], error, "{name}: {r}");
        let cause: Value = serde_json::from_str(caught["Cause"].as_str().unwrap()).unwrap();
        assert_eq!(
            cause["errorMessage"], "the handler failed on purpose",
            "{name}"
        );
        assert_eq!(
            std::fs::read_to_string(&log).unwrap().lines().count(),
            2,
            "{name}: one call and one retry"
        );

        // The Task's timeout: States.Timeout, and the process is killed.
        let (r, _) = run(
            dir.path(),
            &cfg,
            task(json!({"TimeoutSeconds": 1})),
            json!({"op": "sleep", "ms": 10000}),
        );
        assert_eq!(
            (r["status"].as_str(), r["error"].as_str()),
            (Some("FAILED"), Some("States.Timeout")),
            "{name}: {r}"
        );
        // The function's own timeout: Lambda.Unknown, as AWS reports it.
        let short = config(dir.path(), &command, &cwd, 1.0, 2);
        let (r, _) = run(
            dir.path(),
            &short,
            task(json!({})),
            json!({"op": "sleep", "ms": 10000}),
        );
        assert_eq!(r["error"], "Lambda.Unknown", "{name}: {r}");
        assert!(
            r["cause"]
                .as_str()
                .unwrap()
                .contains("Task timed out after 1.00 seconds"),
            "{name}: {r}"
        );

        // A crash mid-invocation: Lambda.Unknown with the runtime-exit cause.
        let (r, _) = run(dir.path(), &cfg, task(json!({})), json!({"op": "crash"}));
        assert_eq!(r["error"], "Lambda.Unknown", "{name}: {r}");
        assert!(
            r["cause"]
                .as_str()
                .unwrap()
                .contains("Runtime exited with error: exit status: 3"),
            "{name}: {r}"
        );
    }
}

#[test]
fn processes_are_reused_and_never_exceed_concurrency() {
    let (_, command, cwd, _) = runtimes().remove(0);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &command, &cwd, 30.0, 3);
    let def = json!({"StartAt": "M", "States": {"M": {
        "Type": "Map",
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
            "StartAt": "T",
            "States": {"T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:testfn", "End": true}}
        },
        "ResultSelector": {"n.$": "States.ArrayLength($)"},
        "End": true
    }}});
    let items: Vec<Value> = (0..10_000).map(|i| json!(i)).collect();
    let (r, o) = run(dir.path(), &cfg, def, Value::Array(items));
    assert_eq!(r["output"], json!({"n": 10_000}), "{r}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("shoal: function testfn:"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let nums: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|t| t.parse().ok())
        .collect();
    assert_eq!(nums[0], 10_000, "{line}");
    assert!(nums[1] <= 3 && nums[2] <= 3, "{line}");
}
