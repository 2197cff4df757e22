//! `aws-sdk:s3` over `--buckets` folders: getObject, putObject, headObject,
//! deleteObject and listObjectsV2 answer as S3 does (shapes, and errors named as the
//! aws-sdk integration names them), so a definition that reads and writes objects runs
//! on a laptop's folders unchanged.

use md5::{Digest, Md5};
use serde_json::{json, Map, Value};
use shoal_buckets::{Buckets, Error, LocalBuckets};
use shoal_expr::{compact, Failure};

/// The operations served from folders; any other `aws-sdk:s3` action goes to S3.
pub fn serves(action: &str) -> bool {
    matches!(
        action,
        "getObject" | "putObject" | "headObject" | "deleteObject" | "listObjectsV2"
    )
}

fn text(input: &Value, k: &str) -> Option<String> {
    input.get(k).and_then(Value::as_str).map(str::to_string)
}

fn missing(k: &str) -> Failure {
    Failure::new(
        "S3.S3Exception",
        format!("The request is missing the parameter {k}. (Service: S3, Status Code: 400, Request ID: local)"),
    )
}

fn failure(e: Error) -> Failure {
    let (name, status, message) = match &e {
        Error::NoSuchKey { .. } => (
            "S3.NoSuchKeyException",
            404,
            "The specified key does not exist.".to_string(),
        ),
        Error::NoSuchBucket(_) => (
            "S3.NoSuchBucketException",
            404,
            "The specified bucket does not exist".to_string(),
        ),
        Error::InvalidKey { .. } | Error::InvalidBucket(_) => {
            ("S3.S3Exception", 400, e.to_string())
        }
        _ => ("S3.S3Exception", 500, e.to_string()),
    };
    Failure::new(
        name,
        format!("{message} (Service: S3, Status Code: {status}, Request ID: local, Extended Request ID: local)"),
    )
}

fn iso(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn etag(body: &[u8]) -> String {
    let digest = Md5::digest(body);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

fn object(
    local: &LocalBuckets,
    bucket: &str,
    key: &str,
    with_body: bool,
) -> Result<Value, Failure> {
    let body = local.get(bucket, key).map_err(failure)?;
    let (_, meta) = local.open(bucket, key).map_err(failure)?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    let mut out = json!({
        "AcceptRanges": "bytes",
        "ContentLength": body.len(),
        "ContentType": "binary/octet-stream",
        "ETag": etag(&body),
        "LastModified": iso(modified),
        "Metadata": {},
    });
    if with_body {
        out["Body"] = Value::String(String::from_utf8_lossy(&body).into_owned());
    }
    Ok(out)
}

/// Runs one of the [`serves`] actions on the folders.
pub async fn call(buckets: &Buckets, action: &str, input: &Value) -> Result<Value, Failure> {
    let Buckets::Local(local) = buckets else {
        unreachable!("only local buckets are served here")
    };
    let bucket = text(input, "Bucket").ok_or_else(|| missing("Bucket"))?;
    let key = || text(input, "Key").ok_or_else(|| missing("Key"));
    match action {
        "getObject" => object(local, &bucket, &key()?, true),
        "headObject" => object(local, &bucket, &key()?, false),
        "putObject" => {
            // A JSON value as Body is written as its text, as Step Functions does.
            let body = match input.get("Body") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(s)) => s.clone().into_bytes(),
                Some(v) => compact(v).into_bytes(),
            };
            local.put(&bucket, &key()?, &body).map_err(failure)?;
            Ok(json!({ "ETag": etag(&body) }))
        }
        "deleteObject" => {
            let key = key()?;
            // S3 answers a delete of a missing key with success.
            match local.open(&bucket, &key) {
                Ok(_) | Err(Error::NoSuchKey { .. }) => {
                    buckets.delete(&bucket, &key).await.map_err(failure)?
                }
                Err(e) => return Err(failure(e)),
            }
            Ok(json!({}))
        }
        "listObjectsV2" => {
            let prefix = text(input, "Prefix").unwrap_or_default();
            let max = input
                .get("MaxKeys")
                .and_then(Value::as_u64)
                .unwrap_or(1000)
                .min(1000) as usize;
            // The continuation token is the last key of the page before (opaque to callers).
            let after = text(input, "ContinuationToken").or_else(|| text(input, "StartAfter"));
            let all = local.list(&bucket, &prefix).map_err(failure)?;
            let rest: Vec<_> = all
                .into_iter()
                .filter(|o| after.as_deref().is_none_or(|a| o.key.as_str() > a))
                .collect();
            let truncated = rest.len() > max;
            let page = &rest[..rest.len().min(max)];
            let contents: Vec<Value> = page
                .iter()
                .map(|o| {
                    json!({"Key": o.key, "LastModified": iso(o.last_modified), "ETag": o.etag,
                           "Size": o.size, "StorageClass": "STANDARD"})
                })
                .collect();
            let mut out = Map::new();
            if !contents.is_empty() {
                out.insert("Contents".into(), Value::Array(contents));
            }
            out.insert("IsTruncated".into(), json!(truncated));
            out.insert("KeyCount".into(), json!(page.len()));
            out.insert("MaxKeys".into(), json!(max));
            out.insert("Name".into(), json!(bucket));
            out.insert("Prefix".into(), json!(prefix));
            if let Some(t) = text(input, "ContinuationToken") {
                out.insert("ContinuationToken".into(), json!(t));
            }
            if truncated {
                if let Some(last) = page.last() {
                    out.insert("NextContinuationToken".into(), json!(last.key));
                }
            }
            Ok(Value::Object(out))
        }
        _ => unreachable!("local_s3::serves decides which actions come here"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD5_OF_A1: &str = "bb6cb5c68df4652941caf652a366f2d8";

    #[tokio::test]
    async fn objects_round_trip_with_s3_shapes_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b")).unwrap();
        let b = Buckets::local(dir.path());
        let local = &b;
        let put = call(
            local,
            "putObject",
            &json!({"Bucket": "b", "Key": "k/1.json", "Body": {"a": 1}}),
        )
        .await
        .unwrap();
        // md5 of `{"a":1}`
        assert_eq!(put["ETag"], json!(format!("\"{}\"", MD5_OF_A1)));
        let got = call(
            local,
            "getObject",
            &json!({"Bucket": "b", "Key": "k/1.json"}),
        )
        .await
        .unwrap();
        assert_eq!(got["Body"], json!("{\"a\":1}"));
        assert_eq!(got["ContentLength"], json!(7));
        assert_eq!(got["ETag"], put["ETag"]);
        call(
            local,
            "putObject",
            &json!({"Bucket": "b", "Key": "k/2", "Body": "x"}),
        )
        .await
        .unwrap();
        let page = call(
            local,
            "listObjectsV2",
            &json!({"Bucket": "b", "Prefix": "k/", "MaxKeys": 1}),
        )
        .await
        .unwrap();
        assert_eq!(page["KeyCount"], json!(1));
        assert_eq!(page["IsTruncated"], json!(true));
        let next = page["NextContinuationToken"].as_str().unwrap();
        let page2 = call(
            local,
            "listObjectsV2",
            &json!({"Bucket": "b", "Prefix": "k/", "ContinuationToken": next}),
        )
        .await
        .unwrap();
        assert_eq!(page2["Contents"][0]["Key"], json!("k/2"));
        assert_eq!(page2["IsTruncated"], json!(false));
        let e = call(local, "getObject", &json!({"Bucket": "b", "Key": "nope"}))
            .await
            .unwrap_err();
        assert_eq!(e.error, "S3.NoSuchKeyException");
        let e = call(
            local,
            "headObject",
            &json!({"Bucket": "nobucket", "Key": "x"}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.error, "S3.NoSuchBucketException");
        assert_eq!(
            call(local, "deleteObject", &json!({"Bucket": "b", "Key": "k/2"}))
                .await
                .unwrap(),
            json!({})
        );
        assert_eq!(
            call(local, "deleteObject", &json!({"Bucket": "b", "Key": "k/2"}))
                .await
                .unwrap(),
            json!({})
        );
        assert_eq!(
            call(local, "getObject", &json!({"Bucket": "b", "Key": "k/2"}))
                .await
                .unwrap_err()
                .error,
            "S3.NoSuchKeyException"
        );
    }
}
