//! `aws-sdk:s3` over `--buckets` folders: a definition written for S3 puts, lists and
//! reads objects in local folders, with no S3 endpoint and no credentials.

mod common;

use serde_json::json;
use std::process::Command;

#[test]
fn aws_sdk_s3_reads_and_writes_bucket_folders() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("buckets/data")).unwrap();
    let def = json!({"StartAt": "Put", "States": {
        "Put": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:putObject",
                "Parameters": {"Bucket": "data", "Key": "in/a.json", "Body.$": "$"}, "ResultPath": "$.put", "Next": "List"},
        "List": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:listObjectsV2",
                 "Parameters": {"Bucket": "data", "Prefix": "in/"}, "ResultSelector": {"keys.$": "$.Contents[*].Key", "n.$": "$.KeyCount"},
                 "ResultPath": "$.list", "Next": "Get"},
        "Get": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:getObject",
                "Parameters": {"Bucket": "data", "Key": "in/a.json"}, "ResultSelector": {"body.$": "States.StringToJson($.Body)"},
                "ResultPath": "$.get", "Next": "Missing"},
        "Missing": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:getObject",
                    "Parameters": {"Bucket": "data", "Key": "nope"},
                    "Catch": [{"ErrorEquals": ["S3.NoSuchKeyException"], "ResultPath": "$.missing", "Next": "Done"}], "End": true},
        "Done": {"Type": "Pass", "End": true}}});
    std::fs::write(dir.path().join("def.json"), def.to_string()).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .current_dir(dir.path())
        .args([
            "run",
            "def.json",
            "--buckets",
            "buckets",
            "--json",
            "--ephemeral",
            "--input",
            r#"{"n": 7}"#,
        ])
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_S3")
        .output()
        .unwrap();
    let out = common::json_output(&o);
    assert_eq!(out["status"], "SUCCEEDED", "{out}");
    let o = &out["output"];
    assert_eq!(o["list"], json!({"keys": ["in/a.json"], "n": 1}), "{o}");
    assert_eq!(o["get"]["body"], json!({"n": 7}), "{o}");
    assert_eq!(o["missing"]["Error"], "S3.NoSuchKeyException", "{o}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("buckets/data/in/a.json")).unwrap(),
        r#"{"n":7}"#
    );
}
