//! Durable executions: a Distributed Map over 100,000 items killed with SIGKILL at
//! several moments and resumed each time, a redrive that runs only what failed, and a
//! state folder that is full or read-only.

mod common;

use common::{map, task, walk, Setup};

use serde_json::json;
use std::collections::HashSet;

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_map_run_killed_five_times_resumes_with_every_item_exactly_once() {
    const ITEMS: u64 = 100_000;
    const BATCHES: usize = 1_000;
    let log = "calls.log";
    let processor = json!({
        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
        "StartAt": "T",
        "States": {"T": task(json!({"op": "sleep", "ms": 25, "log": log, "Items.$": "$.Items"}), "")}
    });
    let def = map(
        processor,
        json!({"ItemBatcher": {"MaxItemsPerBatch": 100}, "MaxConcurrency": 8}),
    );
    let s = Setup::new((0..ITEMS).map(|i| json!({"id": i})), def, 8);
    // The function logs to a path relative to its working folder, the config's folder.
    // Kill points spread over the run, shifted by the clock so each CI run differs.
    let jitter = Instant::now().elapsed().subsec_nanos() as u64 % 150;
    let mut progress = Vec::new();
    for (i, ms) in [350u64, 500, 650, 420, 580].into_iter().enumerate() {
        let after = Duration::from_millis(ms + (jitter * (i as u64 + 1)) % 150);
        if i == 0 {
            s.kill_after(&["run", "def.json", "--name", "crashy"], after);
        } else {
            s.kill_after(&["resume", "crashy"], after);
        }
        let d = s.describe("crashy");
        assert_eq!(d["status"], "RUNNING", "killed mid-run: {d}");
        progress.push(s.calls());
    }
    assert!(
        progress.windows(2).all(|w| w[1] > w[0]) && *progress.last().unwrap() < BATCHES,
        "every attempt made progress and none finished: calls after each kill {progress:?}"
    );
    let (v, o) = s.run(&["resume", "crashy"]);
    assert_eq!(
        v["status"],
        "SUCCEEDED",
        "{v} {}",
        String::from_utf8_lossy(&o.stderr)
    );

    s.exactly_once(&v, ITEMS);

    let d = s.describe("crashy");
    assert_eq!(d["status"], "SUCCEEDED");
    let run = &d["mapRuns"][0];
    assert_eq!(run["status"], "SUCCEEDED");
    let items = &run["itemCounts"];
    assert_eq!(
        (
            items["succeeded"].as_u64(),
            items["total"].as_u64(),
            items["resultsWritten"].as_u64()
        ),
        (Some(ITEMS), Some(ITEMS), Some(ITEMS)),
        "{run}"
    );
    for k in ["failed", "pending", "running", "aborted"] {
        assert_eq!(items[k], 0, "{k}: {run}");
    }
    let execs = &run["executionCounts"];
    assert_eq!(execs["succeeded"], BATCHES as u64, "{run}");
    assert_eq!(execs["total"], BATCHES as u64, "{run}");

    // Batches that ran again: only those in flight (8 at a time) or ended within the
    // last checkpoint interval at each of the 5 kills.
    let calls = s.calls();
    let again = calls - BATCHES;
    eprintln!("{calls} invocations for {BATCHES} batches: {again} ran again over 5 kills");
    assert!(again <= 5 * 16, "{again} batches ran again");
    // Nothing half-written stays behind.
    let leftovers: Vec<_> = walk(&s.path("buckets/out"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("shoal-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn redrive_runs_only_the_failed_and_pending_children() {
    let processor = json!({
        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
        "StartAt": "Which",
        "States": {
            "Which": {"Type": "Choice", "Choices": [{"Variable": "$.Items[0].flaky", "BooleanEquals": true, "Next": "Flaky"}], "Default": "Fine"},
            "Flaky": task(json!({"op": "flaky", "path": "broken", "log": "calls.log", "Items.$": "$.Items"}), ""),
            "Fine": task(json!({"op": "echo", "log": "calls.log", "Items.$": "$.Items"}), ""),
        }
    });
    let def = map(
        processor,
        json!({"ItemBatcher": {"MaxItemsPerBatch": 2}, "MaxConcurrency": 4, "ToleratedFailureCount": 5}),
    );
    let items = (0..400).map(|i| json!({"id": i, "flaky": i % 40 == 0}));
    let s = Setup::new(items, def, 4);
    std::fs::write(s.path("broken"), "").unwrap();
    let (v, _) = s.run(&["run", "def.json", "--name", "flaky"]);
    assert_eq!(v["status"], "FAILED", "{v}");
    assert_eq!(v["error"], "States.ExceedToleratedFailureThreshold");
    let first = s.describe("flaky");
    assert_eq!(first["redriveStatus"], "REDRIVABLE");
    let counts = first["mapRuns"][0]["executionCounts"].clone();
    // ToleratedFailureCount counts items: the third failed batch of 2 breaks it.
    assert_eq!(counts["failed"], 3, "{counts}");
    let succeeded = counts["succeeded"].as_u64().unwrap() as usize;
    let calls_before = s.calls();

    std::fs::remove_file(s.path("broken")).unwrap();
    let (v, o) = s.run(&["redrive", "flaky"]);
    assert_eq!(
        v["status"],
        "SUCCEEDED",
        "{v} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        s.calls() - calls_before,
        200 - succeeded,
        "the redrive ran exactly the children that had not succeeded"
    );
    let d = s.describe("flaky");
    assert_eq!(d["redriveCount"], 1);
    let run = &d["mapRuns"][0];
    assert_eq!(run["itemCounts"]["succeeded"], 400, "{run}");
    assert_eq!(run["itemCounts"]["failed"], 0, "{run}");
    assert_eq!(run["itemCounts"]["resultsWritten"], 400, "{run}");

    let key = v["output"]["ResultWriterDetails"]["Key"].as_str().unwrap();
    let (manifest, lines) = s.results(key);
    assert!(
        manifest["ResultFiles"]["FAILED"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{manifest}"
    );
    let ids: HashSet<u64> = lines
        .iter()
        .map(|(_, l)| l["id"].as_u64().unwrap())
        .collect();
    assert_eq!((lines.len(), ids.len()), (400, 400));
    let stale: Vec<_> = walk(&s.path("buckets/out"))
        .into_iter()
        .filter(|p| {
            p.to_string_lossy().contains("FAILED") || p.to_string_lossy().contains("PENDING")
        })
        .collect();
    assert!(
        stale.is_empty(),
        "the first attempt's FAILED/PENDING files are gone: {stale:?}"
    );

    // A succeeded execution cannot be redriven; the history says what happened.
    let o = s
        .command(&["redrive", "flaky"])
        .args(s.env_args())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("SUCCEEDED"));
}

/// Mounts need root; the sandbox and CI run tests as root.
fn mount(args: &[&str]) -> bool {
    Command::new("mount")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_full_or_read_only_state_folder_is_a_clear_error() {
    let s = Setup::new(
        std::iter::once(json!({"id": 1})),
        json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}),
        1,
    );
    // Full: a 256 KiB tmpfs with room for the database but not for a 200 KB input.
    let full = s.path("full");
    std::fs::create_dir(&full).unwrap();
    if !mount(&[
        "-t",
        "tmpfs",
        "-o",
        "size=256k",
        "tmpfs",
        full.to_str().unwrap(),
    ]) {
        panic!(
            "cannot mount a tmpfs here: this test needs root (CI and scripts/test.sh run as root)"
        );
    }
    let big = json!({"blob": "x".repeat(200_000)}).to_string();
    std::fs::write(s.path("big.json"), &big).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .current_dir(s.dir.path())
        .args(["run", "def.json", "--input", "@big.json", "--state-dir"])
        .arg(&full)
        .output()
        .unwrap();
    let _ = Command::new("umount").arg(&full).status();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("full") && err.contains("shoal.db"), "{err}");
    assert!(o.stdout.is_empty(), "no output pretends it ran");

    // Read-only: a store that exists but cannot be written.
    let ro = s.path("ro");
    let (v, _) = s.run(&["run", "def.json", "--name", "before"]);
    assert_eq!(v["status"], "SUCCEEDED");
    std::fs::create_dir(&ro).unwrap();
    assert!(mount(&[
        "--bind",
        "-o",
        "ro",
        s.path("state").to_str().unwrap(),
        ro.to_str().unwrap()
    ]));
    let o = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .current_dir(s.dir.path())
        .args(["run", "def.json", "--state-dir"])
        .arg(&ro)
        .output()
        .unwrap();
    let _ = Command::new("umount").arg(&ro).status();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.to_lowercase().contains("read-only"), "{err}");
    assert!(err.contains("ro"), "names the place: {err}");
    // The store itself is intact.
    let d = s.describe("before");
    assert_eq!(d["status"], "SUCCEEDED");
}
