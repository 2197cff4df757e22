//! The dashboard in a real browser: headless Chromium (Debian's `chromium`) driven by
//! Playwright (`playwright-core` from npm; scripts/test.sh installs both) watches a
//! running map run, opens a failed item, and saves a screenshot checked here; and
//! answers tasks that wait for an activity worker from the dashboard's waiting list.
//! The ItemReader's progress, which the dashboard shows, is polled through its API
//! action while a map run reads a JSON array.

use serde_json::{json, Value};
mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

fn post(addr: &str, op: &str, body: &Value) -> Value {
    post_to(addr, &format!("AWSStepFunctions.{op}"), body)
}

fn post_to(addr: &str, target: &str, body: &Value) -> Value {
    let body = body.to_string();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Amz-Target: {target}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let json = text.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn the_dashboard_shows_a_live_map_run_and_its_failed_items() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let playwright = root.join("target/browser/node_modules/playwright-core");
    assert!(
        playwright.exists() && Path::new("/usr/bin/chromium").exists(),
        "needs Debian's chromium and target/browser/node_modules/playwright-core: scripts/test.sh installs them"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("buckets/in")).unwrap();
    let items: Vec<String> = (1..=80)
        .map(|i| json!({"id": i, "bad": i % 10 == 0}).to_string())
        .collect();
    std::fs::write(dir.path().join("buckets/in/items.jsonl"), items.join("\n")).unwrap();

    let serve = common::serve(dir.path(), &[]);
    let addr = serve.addr.clone();

    // 80 one-second children, 8 at a time: about 10 s, and every tenth item fails.
    let definition = json!({"StartAt": "Map", "States": {"Map": {
        "Type": "Map", "MaxConcurrency": 8, "ToleratedFailurePercentage": 50,
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSONL"},
                       "Parameters": {"Bucket": "in", "Key": "items.jsonl"}},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"}, "StartAt": "Which",
            "States": {
                "Which": {"Type": "Choice", "Choices": [{"Variable": "$.bad", "BooleanEquals": true, "Next": "Broken"}], "Default": "Work"},
                "Broken": {"Type": "Fail", "Error": "Item.Broken", "Cause": "this item is broken on purpose"},
                "Work": {"Type": "Wait", "Seconds": 1, "End": true}}},
        "End": true}}});
    let sm = post(
        &addr,
        "CreateStateMachine",
        &json!({"name": "photos", "definition": definition.to_string(), "roleArn": "r"}),
    );
    let ex = post(
        &addr,
        "StartExecution",
        &json!({"stateMachineArn": sm["stateMachineArn"], "name": "watched"}),
    );
    let arn = ex["executionArn"].as_str().unwrap().to_string();

    let shot = std::env::var_os("SHOAL_DASHBOARD_SHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("dashboard.jpg"));
    let o = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard.cjs"))
        .arg(format!("http://{addr}"))
        .arg(&arn)
        .arg(&shot)
        .env("PLAYWRIGHT_CORE", &playwright)
        .output()
        .unwrap();
    drop(serve);
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let seen: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        seen["later"].as_u64() > seen["first"].as_u64(),
        "the counters moved: {seen}"
    );
    assert!(
        seen["cause"]
            .as_str()
            .unwrap()
            .contains("Item.Broken: this item is broken on purpose"),
        "{seen}"
    );
    assert_eq!(seen["graphNodes"], 1, "{seen}");
    // The reader's line: the whole object read, out of its size.
    let size = std::fs::metadata(dir.path().join("buckets/in/items.jsonl"))
        .unwrap()
        .len();
    assert_eq!(seen["bytesRead"], json!(size.to_string()), "{seen}");
    assert_eq!(seen["bytesTotal"], json!(size.to_string()), "{seen}");
    assert_eq!(seen["errors"], json!([]), "no script errors: {seen}");

    // Not blank: the screenshot has the page's size and real contrast.
    let img = image::open(&shot).unwrap().to_luma8();
    assert_eq!((img.width(), img.height()), (1200, 1400));
    let px: Vec<f64> = img.pixels().map(|p| p.0[0] as f64).collect();
    let mean = px.iter().sum::<f64>() / px.len() as f64;
    let var = px.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / px.len() as f64;
    let dark = px.iter().filter(|p| **p < 100.0).count();
    assert!(
        var > 100.0 && dark > 2000,
        "a blank-looking screenshot: variance {var:.0}, {dark} dark pixels"
    );
}

/// Two executions wait on an activity task; the dashboard lists both, approves one with
/// a JSON output and rejects the other with an error and cause.
#[test]
fn the_dashboard_answers_waiting_tasks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let playwright = root.join("target/browser/node_modules/playwright-core");
    assert!(
        playwright.exists() && Path::new("/usr/bin/chromium").exists(),
        "needs Debian's chromium and target/browser/node_modules/playwright-core: scripts/test.sh installs them"
    );
    let dir = tempfile::tempdir().unwrap();
    let serve = common::serve(dir.path(), &[]);
    let addr = serve.addr.clone();
    let activity = post(&addr, "CreateActivity", &json!({"name": "approval"}));
    let definition = json!({"StartAt": "Approve", "States": {
        "Approve": {"Type": "Task", "Resource": activity["activityArn"], "TimeoutSeconds": 120,
                    "Catch": [{"ErrorEquals": ["Rejected"], "Next": "No"}], "End": true},
        "No": {"Type": "Pass", "End": true}}});
    let sm = post(
        &addr,
        "CreateStateMachine",
        &json!({"name": "approvals", "definition": definition.to_string(), "roleArn": "r"}),
    );
    let start = |name: &str| {
        post(
            &addr,
            "StartExecution",
            &json!({"stateMachineArn": sm["stateMachineArn"], "name": name, "input": "{}"}),
        )["executionArn"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (yes, no) = (start("yes"), start("no"));
    let o = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard_answer.cjs"))
        .arg(format!("http://{addr}"))
        .arg(&yes)
        .arg(&no)
        .env("PLAYWRIGHT_CORE", &playwright)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let seen: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(seen["before"], 2, "{seen}");
    assert_eq!(seen["after"], 0, "{seen}");
    assert!(
        seen["waitsFor"]
            .as_str()
            .unwrap()
            .contains("activity approval"),
        "{seen}"
    );
    assert_eq!(seen["errors"], json!([]), "no script errors: {seen}");
    let ended = |arn: &str| {
        for _ in 0..100 {
            let d = post(&addr, "DescribeExecution", &json!({"executionArn": arn}));
            if d["status"] != "RUNNING" {
                return d;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("{arn} did not end");
    };
    let d = ended(&yes);
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let out: Value = serde_json::from_str(d["output"].as_str().unwrap()).unwrap();
    assert_eq!(out, json!({"approved": true, "by": "dashboard"}));
    let d = ended(&no);
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let out: Value = serde_json::from_str(d["output"].as_str().unwrap()).unwrap();
    assert_eq!(out, json!({"Error": "Rejected", "Cause": "not this time"}));
    drop(serve);
}

/// A map run over a JSON array of a few MB with children that take a second: the
/// ItemReader's bytes read, polled through `Shoal.DescribeItemReader` as the dashboard
/// polls it, rise step by step to the object's size while items are still being read,
/// and DescribeMapRun's itemCounts.total grows with them.
#[test]
fn the_reader_reports_bytes_read_while_a_map_run_reads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("buckets/in")).unwrap();
    let n = 120_000;
    let items: Vec<String> = (0..n)
        .map(|i| json!({"id": i, "pad": "abcdefghijklmnopqrstuvwxyz"}).to_string())
        .collect();
    let body = format!("[{}]", items.join(","));
    let size = body.len() as u64;
    std::fs::write(dir.path().join("buckets/in/items.json"), &body).unwrap();
    let serve = common::serve(dir.path(), &[]);
    let addr = serve.addr.clone();
    // 3,000 batches of 40, 500 at a time for a second each: about 6 s. The reader
    // stays ahead by the run's look-ahead (256 batches) and its channel, about 1 MB.
    let definition = json!({"StartAt": "Map", "States": {"Map": {
        "Type": "Map", "MaxConcurrency": 500,
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
                       "Parameters": {"Bucket": "in", "Key": "items.json"}},
        "ItemBatcher": {"MaxItemsPerBatch": 40},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
            "StartAt": "Slow", "States": {"Slow": {"Type": "Wait", "Seconds": 1, "End": true}}},
        "ResultSelector": {"done": true}, "End": true}}});
    let sm = post(
        &addr,
        "CreateStateMachine",
        &json!({"name": "reading", "definition": definition.to_string(), "roleArn": "r"}),
    );
    let ex = post(
        &addr,
        "StartExecution",
        &json!({"stateMachineArn": sm["stateMachineArn"], "name": "read"}),
    );
    let arn = ex["executionArn"].as_str().unwrap().to_string();
    let run = loop {
        let runs = post(&addr, "ListMapRuns", &json!({"executionArn": arn}));
        if let Some(r) = runs["mapRuns"][0]["mapRunArn"].as_str() {
            break r.to_string();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // (bytes read, bytes total, total known, done, itemCounts.total)
    let mut seen: Vec<(u64, u64, bool, bool, u64)> = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        assert!(std::time::Instant::now() < deadline, "no end: {seen:?}");
        let r = post_to(
            &addr,
            "Shoal.DescribeItemReader",
            &json!({"mapRunArn": run}),
        );
        assert_eq!(r["live"], true, "{r}");
        let m = post(&addr, "DescribeMapRun", &json!({"mapRunArn": run}));
        let x = &r["reader"];
        if let Some(read) = x["bytesRead"].as_u64() {
            seen.push((
                read,
                x["bytesTotal"].as_u64().unwrap(),
                x["bytesTotalKnown"] == true,
                x["done"] == true,
                m["itemCounts"]["total"].as_u64().unwrap(),
            ));
        }
        if m["status"] != "RUNNING" {
            assert_eq!(m["status"], "SUCCEEDED", "{m}");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(serve);
    assert!(
        seen.windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].4 <= w[1].4),
        "bytes read and items counted never go back: {seen:?}"
    );
    assert!(
        seen.iter().all(|s| s.1 == size && s.2),
        "the total is the object's size from the start: {seen:?}"
    );
    let partway: std::collections::BTreeSet<u64> = seen
        .iter()
        .filter(|s| s.0 > 0 && s.0 < size && !s.3 && s.4 < n)
        .map(|s| s.0)
        .collect();
    assert!(
        partway.len() >= 3,
        "the reader seen at 3 points or more part-way through {size} bytes: {seen:?}"
    );
    assert_eq!(
        seen.last().map(|s| (s.0, s.3, s.4)),
        Some((size, true, n)),
        "{seen:?}"
    );
}
