//! The Distributed Map ResultWriter: `manifest.json` plus `SUCCEEDED_n` / `FAILED_n` files.

use crate::LocalBuckets;
use serde_json::{json, Value};
use shoal_expr::{errors, Failure};

fn writer_failed(cause: impl Into<String>) -> Failure {
    Failure::new(errors::RESULT_WRITER_FAILED, cause)
}

/// Writes `entries` (AWS's NONE-shaped child results) and returns `{Bucket, Key}` of the manifest.
pub fn write(
    buckets: Option<&LocalBuckets>,
    params: &Value,
    config: &Value,
    map_run_arn: &str,
    entries: Vec<Value>,
) -> Result<Value, Failure> {
    let buckets = buckets.ok_or_else(|| writer_failed(crate::Error::NoBuckets.to_string()))?;
    let bucket = params
        .get("Bucket")
        .and_then(Value::as_str)
        .ok_or_else(|| writer_failed("the ResultWriter Parameters need a string Bucket"))?;
    let prefix = params
        .get("Prefix")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim_end_matches('/');
    let run_id = map_run_arn.rsplit(':').next().unwrap_or("run");
    let dir = if prefix.is_empty() {
        run_id.to_string()
    } else {
        format!("{prefix}/{run_id}")
    };
    let jsonl = config.get("OutputType").and_then(Value::as_str) == Some("JSONL");
    let transformation = config
        .get("Transformation")
        .and_then(Value::as_str)
        .unwrap_or("NONE");
    let (succeeded, failed): (Vec<Value>, Vec<Value>) = entries
        .into_iter()
        .partition(|e| e["Status"] == "SUCCEEDED");
    let succeeded: Vec<Value> = match transformation {
        "COMPACT" | "FLATTEN" => {
            let outputs = succeeded.iter().map(|e| {
                e["Output"]
                    .as_str()
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or(Value::Null)
            });
            if transformation == "FLATTEN" {
                outputs
                    .flat_map(|o| match o {
                        Value::Array(a) => a,
                        other => vec![other],
                    })
                    .collect()
            } else {
                outputs.collect()
            }
        }
        _ => succeeded,
    };
    let ext = if jsonl { "jsonl" } else { "json" };
    let mut files = json!({"FAILED": [], "PENDING": [], "SUCCEEDED": []});
    for (status, items) in [("SUCCEEDED", succeeded), ("FAILED", failed)] {
        if items.is_empty() {
            continue;
        }
        let body = if jsonl {
            items
                .iter()
                .map(|v| shoal_expr::compact(v) + "\n")
                .collect::<String>()
        } else {
            shoal_expr::compact(&Value::Array(items))
        };
        let key = format!("{dir}/{status}_0.{ext}");
        buckets
            .put(bucket, &key, body.as_bytes())
            .map_err(|e| writer_failed(e.to_string()))?;
        files[status] = json!([{"Key": key, "Size": body.len()}]);
    }
    let manifest_key = format!("{dir}/manifest.json");
    let manifest =
        json!({"DestinationBucket": bucket, "MapRunArn": map_run_arn, "ResultFiles": files});
    buckets
        .put(
            bucket,
            &manifest_key,
            shoal_expr::compact(&manifest).as_bytes(),
        )
        .map_err(|e| writer_failed(e.to_string()))?;
    Ok(json!({"Bucket": bucket, "Key": manifest_key}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_manifest_and_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        let b = LocalBuckets::new(dir.path());
        let entries = vec![
            json!({"Status": "SUCCEEDED", "Output": "[1]"}),
            json!({"Status": "FAILED", "Error": "E", "Cause": "c"}),
        ];
        let arn = "arn:aws:states:us-east-1:1:mapRun:sm/M:abc";
        let d = write(
            Some(&b),
            &json!({"Bucket": "out", "Prefix": "runs/"}),
            &json!({}),
            arn,
            entries,
        )
        .unwrap();
        assert_eq!(d, json!({"Bucket": "out", "Key": "runs/abc/manifest.json"}));
        let manifest: Value =
            serde_json::from_slice(&b.get("out", "runs/abc/manifest.json").unwrap()).unwrap();
        assert_eq!(manifest["MapRunArn"], arn);
        assert_eq!(
            manifest["ResultFiles"]["SUCCEEDED"][0]["Key"],
            "runs/abc/SUCCEEDED_0.json"
        );
        let failed: Value =
            serde_json::from_slice(&b.get("out", "runs/abc/FAILED_0.json").unwrap()).unwrap();
        assert_eq!(failed[0]["Error"], "E");
        let flat = write(
            Some(&b),
            &json!({"Bucket": "out"}),
            &json!({"Transformation": "FLATTEN", "OutputType": "JSONL"}),
            "x:run2",
            vec![json!({"Status": "SUCCEEDED", "Output": "[1,2]"})],
        )
        .unwrap();
        assert_eq!(flat["Key"], "run2/manifest.json");
        assert_eq!(b.get("out", "run2/SUCCEEDED_0.jsonl").unwrap(), b"1\n2\n");
    }
}
