//! The `shoal` binary as a user runs it: exit codes, stdout and stderr.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn shoal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .output()
        .expect("shoal runs")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn validate_reports_every_problem_with_pointers() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "good.json",
        r#"{"StartAt":"A","States":{"A":{"Type":"Succeed"}}}"#,
    );
    let o = shoal(&["validate", &good]);
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout.is_empty());

    let bad = write(
        dir.path(),
        "bad.json",
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"B","Extra":1},"C":{"Type":"Succeed"}}}"#,
    );
    let o = shoal(&["validate", &bad]);
    assert_eq!(o.status.code(), Some(1));
    let lines: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    assert_eq!(
        lines,
        [
            "/States/A/Extra: field \"Extra\" is not supported in a Pass state",
            "/States/A/Next: missing transition target \"B\"",
            "/States/C: state \"C\" is not reachable",
        ]
    );

    let broken = write(dir.path(), "broken.json", "{\n  \"StartAt\": }");
    let o = shoal(&["validate", &broken]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("line 2 column 14"), "{}", stdout(&o));

    let o = shoal(&["validate", &bad, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["result"], "FAIL");
    assert_eq!(v["diagnostics"][0]["location"], "/States/A/Extra");

    // A callback is valid in a STANDARD machine and not in an EXPRESS one.
    let callback = write(
        dir.path(),
        "callback.json",
        r#"{"StartAt":"W","States":{"W":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage.waitForTaskToken","End":true}}}"#,
    );
    assert_eq!(shoal(&["validate", &callback]).status.code(), Some(0));
    let o = shoal(&["validate", &callback, "--express"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o).trim_end(),
        "/States/W/Resource: Express state machine does not support '.waitForTaskToken' service integration"
    );
}

#[test]
fn run_prints_output_and_uses_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let def = write(
        dir.path(),
        "d.json",
        r#"{"StartAt":"P","States":{"P":{"Type":"Pass","Parameters":{"sum.$":"States.MathAdd($.a, $.b)"},"End":true}}}"#,
    );
    let o = shoal(&["run", &def, "--input", r#"{"a":1,"b":2}"#]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o).trim(), r#"{"sum":3}"#);

    let input = write(dir.path(), "in.json", r#"{"a":5,"b":5}"#);
    let o = shoal(&["run", &def, "--input", &format!("@{input}"), "--json"]);
    assert_eq!(
        stdout(&o).trim(),
        r#"{"status":"SUCCEEDED","output":{"sum":10}}"#
    );

    let fail = write(
        dir.path(),
        "f.json",
        r#"{"StartAt":"F","States":{"F":{"Type":"Fail","Error":"E","Cause":"C"}}}"#,
    );
    let o = shoal(&["run", &fail, "--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o).trim(),
        r#"{"status":"FAILED","error":"E","cause":"C"}"#
    );

    let invalid = write(dir.path(), "i.json", r#"{"StartAt":"X","States":{}}"#);
    let o = shoal(&["run", &invalid]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/States: States must hold at least one state")
    );

    let o = shoal(&["run", &def, "--input", "{not json"]);
    assert_eq!(o.status.code(), Some(2));
    let o = shoal(&["run"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn waits_fast_forward_and_yaml_definitions_run() {
    let dir = tempfile::tempdir().unwrap();
    let def = write(
        dir.path(),
        "w.yaml",
        "StartAt: W\nStates:\n  W:\n    Type: Wait\n    Seconds: 3600\n    End: true\n",
    );
    let start = std::time::Instant::now();
    let o = shoal(&["run", &def, "--input", "[1]", "--fast-forward"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o).trim(), "[1]");
    assert!(start.elapsed().as_secs() < 60);
}

/// `--fast-forward` jumps the execution's own clock, not tokio's: a function called
/// after an hour-long Wait keeps its real 30 s timeout and takes its real 0.5 s.
#[test]
fn fast_forward_keeps_function_timeouts_real() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("shoal.toml"),
        common::testfn_registry("timeout_seconds = 30\n"),
    )
    .unwrap();
    let def = write(
        dir.path(),
        "w.json",
        r#"{"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":3600,"Next":"F"},
            "F":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","OutputPath":"$.Payload",
                 "Parameters":{"FunctionName":"testfn","Payload":{"op":"sleep","ms":500}},"End":true}}}"#,
    );
    let start = std::time::Instant::now();
    let config = dir.path().join("shoal.toml");
    let o = shoal(&[
        "run",
        &def,
        "--fast-forward",
        "--ephemeral",
        "--config",
        config.to_str().unwrap(),
        "--json",
    ]);
    let took = start.elapsed();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{} {}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout(&o).contains("SUCCEEDED"), "{}", stdout(&o));
    assert!(took.as_secs_f64() < 5.0, "took {took:?}");
    assert!(
        took.as_millis() >= 500,
        "the function's sleep is real: {took:?}"
    );
}

#[test]
fn distributed_map_reads_items_from_a_local_bucket() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("b/in")).unwrap();
    std::fs::write(dir.path().join("b/in/rows.csv"), "name;n\n\"a;b\";1\nc;2\n").unwrap();
    let def = write(
        dir.path(),
        "m.json",
        r#"{"StartAt":"M","States":{"M":{"Type":"Map","End":true,
            "ItemReader":{"Resource":"arn:aws:states:::s3:getObject","Parameters":{"Bucket":"b","Key":"in/rows.csv"},
              "ReaderConfig":{"InputType":"CSV","CSVHeaderLocation":"FIRST_ROW","CSVDelimiter":"SEMICOLON"}},
            "ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"EXPRESS"},"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}}}}"#,
    );
    let buckets = dir.path().to_string_lossy().into_owned();
    let o = shoal(&["run", &def, "--buckets", &buckets]);
    assert_eq!(
        stdout(&o).trim(),
        r#"[{"name":"a;b","n":"1"},{"name":"c","n":"2"}]"#,
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    let escape = def.replace("m.json", "e.json");
    std::fs::write(
        &escape,
        std::fs::read_to_string(&def)
            .unwrap()
            .replace("in/rows.csv", "../../etc/passwd"),
    )
    .unwrap();
    let o = shoal(&["run", &escape, "--buckets", &buckets, "--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("States.ItemReaderFailed") && stdout(&o).contains("invalid key"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_failed_map_run_names_its_first_failed_child_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    // Items 0-5; the children fail on 3 and 5, with their own Error and Cause.
    let def = write(
        dir.path(),
        "m.json",
        r#"{"StartAt":"M","States":{"M":{"Type":"Map","End":true,"MaxConcurrency":1,"ToleratedFailureCount":1,
            "ItemsPath":"$.items",
            "ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"EXPRESS"},"StartAt":"C",
              "States":{"C":{"Type":"Choice","Choices":[{"Variable":"$.bad","BooleanEquals":true,"Next":"F"}],"Default":"P"},
                "P":{"Type":"Pass","End":true},
                "F":{"Type":"Fail","Error":"Photo.Corrupt","CausePath":"$.why"}}}}}}"#,
    );
    let items: Vec<String> = (0..6)
        .map(|i| {
            format!(
                r#"{{"bad":{},"why":"item {i} is corrupt"}}"#,
                i == 3 || i == 5
            )
        })
        .collect();
    let input = format!(r#"{{"items":[{}]}}"#, items.join(","));
    let o = shoal(&["run", &def, "--input", &input, "--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("States.ExceedToleratedFailureThreshold"),
        "{}",
        stdout(&o)
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(
            "2 items failed; the first, child execution 3: Photo.Corrupt: item 3 is corrupt"
        ),
        "{stderr}"
    );
}

/// Runs a Distributed Map reading `bucket/key` as `input_type`; returns the `--json` result.
fn read_items(buckets: &Path, bucket: &str, key: &str, input_type: &str) -> serde_json::Value {
    let def = write(
        buckets,
        "read.json",
        &format!(
            r#"{{"StartAt":"M","States":{{"M":{{"Type":"Map","End":true,
            "ItemReader":{{"Resource":"arn:aws:states:::s3:getObject","Parameters":{{"Bucket":"{bucket}","Key":"{key}"}},
              "ReaderConfig":{{"InputType":"{input_type}"}}}},
            "ItemProcessor":{{"ProcessorConfig":{{"Mode":"DISTRIBUTED","ExecutionType":"EXPRESS"}},"StartAt":"P","States":{{"P":{{"Type":"Pass","End":true}}}}}}}}}}}}"#
        ),
    );
    let o = shoal(&[
        "run",
        &def,
        "--buckets",
        buckets.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        o.status.code() == Some(0) || o.status.code() == Some(1),
        "{o:?}"
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn bad_item_sources_fail_clearly_and_name_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(b.join("bad.csv"), "h1,h2\nok,1\n\"open,2\nmore\n").unwrap();
    std::fs::write(b.join("obj.json"), r#"{"not": "an array"}"#).unwrap();
    std::fs::write(b.join("lines.jsonl"), "{\"a\":1}\n{\"a\":\n").unwrap();
    std::fs::write(b.join("empty.json"), "").unwrap();
    std::fs::write(b.join("empty.csv"), "").unwrap();
    std::fs::write(b.join("empty.jsonl"), "").unwrap();
    let big = format!("{{\"a\":1}}\n{{\"pad\":\"{}\"}}\n", "x".repeat(300_000));
    std::fs::write(b.join("big.jsonl"), big).unwrap();

    let cases = [
        (
            "b",
            "bad.csv",
            "CSV",
            "States.ItemReaderFailed",
            "s3://b/bad.csv row starting at line 3: unterminated quoted field",
        ),
        (
            "b",
            "obj.json",
            "JSON",
            "States.ItemReaderFailed",
            "Attempting to map over non-iterable node.",
        ),
        (
            "b",
            "lines.jsonl",
            "JSONL",
            "States.ItemReaderFailed",
            "s3://b/lines.jsonl line 2: invalid JSON",
        ),
        (
            "b",
            "missing.json",
            "JSON",
            "States.ItemReaderFailed",
            "the object s3://b/missing.json does not exist",
        ),
        (
            "nobucket",
            "x.json",
            "JSON",
            "States.ItemReaderFailed",
            "the bucket \"nobucket\" does not exist",
        ),
        (
            "b",
            "empty.json",
            "JSON",
            "States.ItemReaderFailed",
            "s3://b/empty.json is empty",
        ),
        (
            "b",
            "empty.csv",
            "CSV",
            "States.ItemReaderFailed",
            "s3://b/empty.csv is empty: expected a CSV header row",
        ),
        (
            "b",
            "big.jsonl",
            "JSONL",
            "States.DataLimitExceeded",
            "s3://b/big.jsonl line 2: the item is 300010 bytes",
        ),
    ];
    for (bucket, key, kind, error, cause) in cases {
        let r = read_items(dir.path(), bucket, key, kind);
        assert_eq!(r["status"], "FAILED", "{key}: {r}");
        assert_eq!(r["error"], error, "{key}: {r}");
        assert!(r["cause"].as_str().unwrap().contains(cause), "{key}: {r}");
    }
    // An empty JSONL object is a valid, empty list of items.
    let r = read_items(dir.path(), "b", "empty.jsonl", "JSONL");
    assert_eq!(r["output"], serde_json::json!([]), "{r}");
}

#[test]
fn s3_inventory_and_athena_manifests_list_their_files_rows() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv/src/cfg/data");
    std::fs::create_dir_all(&inv).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"\"src\",\"a/1.jpg\",\"10\"\n\"src\",\"a/2.jpg\",\"20\"\n")
        .unwrap();
    std::fs::write(inv.join("part-0.csv.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(
        dir.path().join("inv/src/cfg/manifest.json"),
        r#"{"sourceBucket":"src","destinationBucket":"arn:aws:s3:::inv","fileFormat":"CSV",
            "fileSchema":"Bucket, Key, Size","files":[{"key":"src/cfg/data/part-0.csv.gz","size":1}]}"#,
    )
    .unwrap();
    let r = read_items(dir.path(), "inv", "src/cfg/manifest.json", "MANIFEST");
    assert_eq!(
        r["output"],
        serde_json::json!([
            {"Bucket": "src", "Key": "a/1.jpg", "Size": "10"},
            {"Bucket": "src", "Key": "a/2.jpg", "Size": "20"},
        ]),
        "{r}"
    );

    std::fs::write(dir.path().join("inv/one.jsonl"), "{\"n\":1}\n").unwrap();
    std::fs::write(dir.path().join("inv/two.jsonl"), "{\"n\":2}\n").unwrap();
    std::fs::write(
        dir.path().join("inv/athena.csv"),
        "s3://inv/one.jsonl\ns3://inv/two.jsonl\n",
    )
    .unwrap();
    let def = write(
        dir.path(),
        "athena.json",
        r#"{"StartAt":"M","States":{"M":{"Type":"Map","End":true,
            "ItemReader":{"Resource":"arn:aws:states:::s3:getObject","Parameters":{"Bucket":"inv","Key":"athena.csv"},
              "ReaderConfig":{"ManifestType":"ATHENA_DATA","InputType":"JSONL"}},
            "ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"EXPRESS"},"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}}}}"#,
    );
    let o = shoal(&["run", &def, "--buckets", dir.path().to_str().unwrap()]);
    assert_eq!(stdout(&o).trim(), r#"[{"n":1},{"n":2}]"#, "{o:?}");
}

#[test]
fn http_task_calls_a_real_server_and_maps_status_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.json"), r#"{"ok":true}"#).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs http.server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "http.server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let def = write(
        dir.path(),
        "h.json",
        &format!(
            r#"{{"StartAt":"Get","States":{{
            "Get":{{"Type":"Task","Resource":"arn:aws:states:::http:invoke","Parameters":{{"ApiEndpoint":"http://127.0.0.1:{port}/data.json","Method":"GET","QueryParameters":{{"a":["1","2"]}}}},
              "ResultSelector":{{"body.$":"$.ResponseBody","code.$":"$.StatusCode"}},"ResultPath":"$.got","Next":"Missing"}},
            "Missing":{{"Type":"Task","Resource":"arn:aws:states:::http:invoke","Parameters":{{"ApiEndpoint":"http://127.0.0.1:{port}/nope","Method":"GET"}},
              "Catch":[{{"ErrorEquals":["States.Http.StatusCode.404"],"ResultPath":"$.missing","Next":"Closed"}}],"End":true}},
            "Closed":{{"Type":"Task","Resource":"arn:aws:states:::http:invoke","Parameters":{{"ApiEndpoint":"http://127.0.0.1:1/x","Method":"GET"}},
              "Catch":[{{"ErrorEquals":["States.Http.Socket"],"ResultPath":"$.closed","Next":"Done"}}],"End":true}},
            "Done":{{"Type":"Succeed"}}}}}}"#
        ),
    );
    let o = shoal(&["run", &def, "--json"]);
    let _ = server.kill();
    let _ = server.wait();
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["status"], "SUCCEEDED", "{r}");
    assert_eq!(
        r["output"]["got"],
        serde_json::json!({"body": {"ok": true}, "code": 200})
    );
    assert_eq!(
        r["output"]["missing"]["Error"],
        "States.Http.StatusCode.404"
    );
    assert_eq!(r["output"]["closed"]["Error"], "States.Http.Socket");
}
