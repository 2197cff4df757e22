//! Journals written by past versions of shoal, replayed by this one. Each file in
//! `tests/journals/` is an execution cut off mid-run: its stored row, its journal (each
//! event with the effects it made), and the end it reached when it was written. This
//! test loads each into a store, resumes it, and checks it ends the same way; a change
//! that can no longer replay an old execution fails here.
//!
//! To write them again (after a deliberate change of the journal format):
//! `SHOAL_BLESS=1 cargo test -p shoal-runtime --test journals`. That runs each case in
//! [`cases`] up to its cut, exports what the store holds, resumes the export and
//! records its end, after checking it equals an uninterrupted run's.

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use shoal_buckets::Buckets;
use shoal_engine::{ExecutionInfo, Outcome, SplitMix};
use shoal_lambda::registry::{FunctionDef, Registry};
use shoal_lambda::Reply;
use shoal_runtime::callbacks::Answer;
use shoal_runtime::{Options, Runtime};
use shoal_store::{ExecutionRecord, ExecutionStatus, JournalEntry, Store};
use shoal_tasks::{Builtin, Functions, Tasks};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Fails with `Flaky.Error` the first time a runtime calls it, then echoes.
struct Flaky(std::sync::atomic::AtomicU64);

impl Builtin for Flaky {
    fn invoke<'a>(&'a self, payload: Bytes, _: Option<&'a Arc<Buckets>>) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            if self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 1 {
                return Reply::HandlerError {
                    error_type: "Flaky.Error".into(),
                    body: Bytes::from_static(
                        br#"{"errorType":"Flaky.Error","errorMessage":"not yet"}"#,
                    ),
                };
            }
            Reply::Ok(payload)
        })
    }
}

/// Always fails with `Broken.Error`.
struct Broken;

impl Builtin for Broken {
    fn invoke<'a>(&'a self, _: Bytes, _: Option<&'a Arc<Buckets>>) -> BoxFuture<'a, Reply> {
        Box::pin(async {
            Reply::HandlerError {
                error_type: "Broken.Error".into(),
                body: Bytes::from_static(
                    br#"{"errorType":"Broken.Error","errorMessage":"always"}"#,
                ),
            }
        })
    }
}

fn function(name: &str) -> String {
    format!("arn:aws:lambda:us-east-1:123456789012:function:{name}")
}

fn runtime(db: Arc<dyn Store>, buckets: &Path, seed: u64) -> Arc<Runtime> {
    let mut builtins = shoal_tasks::builtin::standard();
    builtins.insert("flaky".into(), Arc::new(Flaky(Default::default())));
    builtins.insert("broken".into(), Arc::new(Broken));
    let mut registry = Registry::default();
    for (name, builtin) in [
        ("echo", "identity"),
        ("flaky", "flaky"),
        ("broken", "broken"),
    ] {
        registry
            .functions
            .insert(name.into(), FunctionDef::Builtin(builtin.into()));
    }
    let functions = Functions::new(registry, &builtins).unwrap();
    Runtime::new(Options {
        buckets: Some(Buckets::local(buckets)),
        tasks: Tasks::new(functions),
        seed,
        db: Some(db),
        fleet: None,
    })
}

/// What each checked-in journal was made from: a name, a definition, its input, and
/// how many (virtual) seconds it ran before it was cut off.
fn cases() -> Vec<(&'static str, Value, Value, u64)> {
    let echo = function("echo");
    vec![
        (
            "task_wait_choice",
            json!({"StartAt": "Echo", "States": {
                "Echo": {"Type": "Task", "Resource": echo, "ResultPath": "$.echoed", "Next": "Pause"},
                "Pause": {"Type": "Wait", "Seconds": 10, "Next": "Pick"},
                "Pick": {"Type": "Choice", "Choices": [
                    {"Variable": "$.echoed.n", "NumericGreaterThan": 2, "Next": "Big"}],
                    "Default": "Small"},
                "Big": {"Type": "Pass", "Result": "big", "ResultPath": "$.size", "End": true},
                "Small": {"Type": "Pass", "Result": "small", "ResultPath": "$.size", "End": true}}}),
            json!({"n": 3}),
            5,
        ),
        (
            "parallel_inline_map",
            json!({"StartAt": "Both", "States": {
                "Both": {"Type": "Parallel", "Next": "Each",
                    "ResultSelector": {"a.$": "$[0]", "id.$": "$[1].id", "b.$": "$[1].b"}, "Branches": [
                    {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 5, "Next": "A"},
                        "A": {"Type": "Pass", "Result": "a", "End": true}}},
                    {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": echo,
                        "Parameters": {"id.$": "States.UUID()", "b.$": "States.ArrayRange(1, 3, 1)"}, "End": true}}}]},
                "Each": {"Type": "Map", "ItemsPath": "$.b", "ItemSelector": {"c.$": "$$.Map.Item.Value"},
                    "ItemProcessor": {"StartAt": "Wi", "States": {
                        "Wi": {"Type": "Wait", "Seconds": 3, "Next": "Ti"},
                        "Ti": {"Type": "Task", "Resource": echo, "End": true}}},
                    "ResultPath": "$.chars", "End": true}}}),
            json!({}),
            7,
        ),
        (
            "distributed_map_result_writer",
            json!({"StartAt": "Items", "States": {
                "Items": {"Type": "Pass", "Parameters": {"items.$": "States.ArrayRange(1, 12, 1)"}, "Next": "Pause"},
                "Pause": {"Type": "Wait", "Seconds": 4, "Next": "Dist"},
                "Dist": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 3,
                    "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
                        "StartAt": "W", "States": {
                            "W": {"Type": "Wait", "Seconds": 1, "Next": "T"},
                            "T": {"Type": "Task", "Resource": echo, "End": true}}},
                    "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
                        "Parameters": {"Bucket": "out", "Prefix": "runs"}},
                    "ResultPath": "$.written", "Next": "After"},
                "After": {"Type": "Wait", "Seconds": 20, "End": true}}}),
            json!({}),
            2,
        ),
        (
            "distributed_map_done_then_cut",
            json!({"StartAt": "Items", "States": {
                "Items": {"Type": "Pass", "Parameters": {"items.$": "States.ArrayRange(1, 6, 1)"}, "Next": "Dist"},
                "Dist": {"Type": "Map", "ItemsPath": "$.items",
                    "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                        "StartAt": "T", "States": {"T": {"Type": "Task", "Resource": echo, "End": true}}},
                    "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
                        "Parameters": {"Bucket": "out", "Prefix": "done"}},
                    "ResultPath": "$.written", "Next": "After"},
                "After": {"Type": "Wait", "Seconds": 20, "End": true}}}),
            json!({}),
            10,
        ),
        (
            "retry_catch",
            json!({"StartAt": "Flaky", "States": {
                "Flaky": {"Type": "Task", "Resource": function("flaky"), "ResultPath": "$.flaky",
                    "Retry": [{"ErrorEquals": ["Flaky.Error"], "IntervalSeconds": 2, "MaxAttempts": 3, "BackoffRate": 2}],
                    "Next": "Broken"},
                "Broken": {"Type": "Task", "Resource": function("broken"),
                    "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 1}],
                    "Catch": [{"ErrorEquals": ["Broken.Error"], "ResultPath": "$.caught", "Next": "Handled"}],
                    "End": true},
                "Handled": {"Type": "Pass", "End": true}}}),
            json!({"x": 1}),
            1,
        ),
        (
            "jsonata_millis_then_wait",
            json!({"QueryLanguage": "JSONata", "StartAt": "Stamp", "States": {
                "Stamp": {"Type": "Pass", "Assign": {"t": "{% $millis() %}"}, "Next": "Pause"},
                "Pause": {"Type": "Wait", "Seconds": 30, "Next": "Tell"},
                "Tell": {"Type": "Pass", "Output": {"t": "{% $t %}", "later": "{% $millis() > $t %}"}, "End": true}}}),
            json!({}),
            10,
        ),
        (
            "callback_token",
            json!({"StartAt": "Ask", "States": {
                "Ask": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                    "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token"}},
                    "ResultPath": "$.answer", "Next": "Pause"},
                "Pause": {"Type": "Wait", "Seconds": 2, "End": true}}}),
            json!({"q": "?"}),
            5,
        ),
    ]
}

/// What an exported execution must reach.
fn outcome_json(o: &Outcome) -> Value {
    match o {
        Outcome::Succeeded(v) => json!({"status": "SUCCEEDED", "output": v}),
        Outcome::Failed(f) => json!({"status": "FAILED", "error": f.error, "cause": f.cause}),
    }
}

/// Runs `fut` to its end, answering every callback token it waits on.
async fn answering(rt: &Arc<Runtime>, fut: impl std::future::Future<Output = Outcome>) -> Outcome {
    let answer = async {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            for token in rt.callbacks().waiting() {
                let _ = rt
                    .callbacks()
                    .answer(&token, Answer::Success(json!({"answered": true})));
            }
        }
    };
    tokio::select! {
        o = fut => o,
        _ = answer => unreachable!(),
    }
}

fn journals_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/journals")
}

/// Loads an exported execution into a fresh store, resumes it, and returns its end.
async fn replay(file: &Value) -> Result<Outcome, shoal_runtime::Error> {
    let db: Arc<dyn Store> = Arc::new(shoal_store::Memory::new());
    let e = &file["execution"];
    let s = |k: &str| {
        e[k].as_str()
            .unwrap_or_else(|| panic!("execution.{k}"))
            .to_string()
    };
    let n = |k: &str| e[k].as_i64().unwrap_or_else(|| panic!("execution.{k}"));
    db.create_execution(&ExecutionRecord {
        arn: s("arn"),
        name: s("name"),
        state_machine_arn: s("state_machine_arn"),
        state_machine_name: s("state_machine_name"),
        definition: e["definition"].to_string(),
        input: e["input"].to_string(),
        seed: e["seed"].as_u64().expect("execution.seed"),
        status: ExecutionStatus::Running,
        start_ms: n("start_ms"),
        stop_ms: None,
        output: None,
        error: None,
        cause: None,
        redrive_count: 0,
        redrive_ms: None,
        history_offset: 0,
    })?;
    let journal = file["journal"]
        .as_array()
        .expect("journal")
        .iter()
        .map(|j| JournalEntry {
            seq: j["seq"].as_u64().expect("seq"),
            at_ms: j["at_ms"].as_i64().expect("at_ms"),
            event: j["event"].to_string(),
            effects: Some(j["effects"].to_string()),
        })
        .collect();
    db.append(&s("arn"), journal, Vec::new());
    let buckets = tempfile::tempdir().unwrap();
    std::fs::create_dir(buckets.path().join("out")).unwrap();
    let rt = runtime(db.clone(), buckets.path(), 99);
    let name = s("name");
    let resumed = async { rt.resume(&name, false).await };
    let mut err = None;
    let out = answering(&rt, async {
        match resumed.await {
            Ok(o) => o,
            Err(e) => {
                err = Some(e);
                Outcome::Succeeded(Value::Null)
            }
        }
    })
    .await;
    if let Some(e) = err {
        return Err(e);
    }
    db.flush()?;
    assert_eq!(
        db.execution(&name)?.status.to_string(),
        outcome_json(&out)["status"],
        "the stored status is the outcome's"
    );
    Ok(out)
}

#[tokio::test(start_paused = true)]
async fn checked_in_journals_replay_to_the_end_they_reached() {
    if std::env::var_os("SHOAL_BLESS").is_some() {
        bless().await;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(journals_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut expected: Vec<&str> = cases().iter().map(|c| c.0).collect();
    expected.sort();
    assert_eq!(names, expected, "one journal per case");
    for path in files {
        let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(
            file["journal"].as_array().is_some_and(|j| !j.is_empty()),
            "{}: cut off after it started",
            path.display()
        );
        let out = replay(&file)
            .await
            .unwrap_or_else(|e| panic!("{} does not replay: {e}", path.display()));
        assert_eq!(outcome_json(&out), file["end"], "{}", path.display());
        if file["case"] == "jsonata_millis_then_wait" {
            // `$millis()` assigned before the cut is the time of the first run's start,
            // not the resume's.
            let Outcome::Succeeded(v) = &out else {
                panic!("{out:?}")
            };
            assert_eq!(v["t"], file["journal"][0]["at_ms"]);
            assert_eq!(v["later"], json!(true));
        }
    }
}

/// Writes `tests/journals/<case>.json` for every case.
async fn bless() {
    for (name, definition, input, cut) in cases() {
        let db: Arc<dyn Store> = Arc::new(shoal_store::Memory::new());
        let buckets = tempfile::tempdir().unwrap();
        std::fs::create_dir(buckets.path().join("out")).unwrap();
        let machine = Arc::new(shoal_asl::parse(&definition.to_string()).machine.unwrap());
        let rt = runtime(db.clone(), buckets.path(), 7);
        let info = ExecutionInfo::local("journals", name, rt.now_ms(), false, &SplitMix::new(3));
        let arn = info.execution_arn.clone();
        let text = definition.to_string();
        let run = rt.start(machine.clone(), &text, info, input.clone());
        // Callbacks go unanswered until the cut: the replay answers them.
        let cut_off = tokio::time::timeout(Duration::from_secs(cut), run).await;
        assert!(cut_off.is_err(), "{name} still runs at {cut} s");
        db.flush().unwrap();
        let rec = db.execution(&arn).unwrap();
        let journal: Vec<Value> = db
            .journal(&arn)
            .unwrap()
            .into_iter()
            .map(|j| {
                json!({
                    "seq": j.seq, "at_ms": j.at_ms,
                    "event": serde_json::from_str::<Value>(&j.event).unwrap(),
                    "effects": serde_json::from_str::<Value>(j.effects.as_deref().unwrap()).unwrap(),
                })
            })
            .collect();
        let mut file = json!({
            "case": name,
            "execution": {
                "arn": rec.arn, "name": rec.name, "state_machine_arn": rec.state_machine_arn,
                "state_machine_name": rec.state_machine_name, "seed": rec.seed,
                "start_ms": rec.start_ms, "definition": definition, "input": input,
            },
            "journal": journal,
        });
        let end = replay(&file).await.unwrap();
        // The oracle: the same execution, uninterrupted.
        let db2: Arc<dyn Store> = Arc::new(shoal_store::Memory::new());
        let rt2 = runtime(db2, buckets.path(), 7);
        let info = ExecutionInfo::local("journals", name, rec.start_ms, false, &SplitMix::new(3));
        let whole = rt2.start(machine, &text, info, input);
        let whole = answering(&rt2, async { whole.await.unwrap() }).await;
        if name != "jsonata_millis_then_wait" {
            assert_eq!(
                end, whole,
                "{name}: the replay ends as an uninterrupted run"
            );
        }
        file["end"] = outcome_json(&end);
        let path = journals_dir().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&file).unwrap() + "\n").unwrap();
    }
}
