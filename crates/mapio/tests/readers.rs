//! The ItemReader through its public entry point, over a local bucket.

use serde_json::{json, Value};
use shoal_asl::{InputType, ReaderConfig, ReaderResource, ReaderTransformation};
use shoal_buckets::Buckets;
use shoal_expr::Failure;
use std::sync::Arc;

fn bucket(files: &[(&str, &[u8])]) -> (tempfile::TempDir, Arc<Buckets>) {
    let dir = tempfile::tempdir().unwrap();
    for (k, body) in files {
        let p = dir.path().join("b").join(k);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("b")).unwrap();
    let store = Arc::new(Buckets::local(dir.path()));
    (dir, store)
}

async fn items(
    store: &Arc<Buckets>,
    resource: ReaderResource,
    params: Value,
    config: ReaderConfig,
    max: Option<Value>,
) -> Result<Vec<Value>, Failure> {
    let mut rx =
        shoal_mapio::items::read(Some(store.clone()), resource, params, Arc::new(config), max);
    let mut out = Vec::new();
    while let Some(chunk) = rx.recv().await {
        out.extend(chunk?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_comes_in_s3_key_order() {
    let (_dir, store) = bucket(&[
        ("in/a/b", b"1"),
        ("in/a-b", b"22"),
        ("in/a0", b"333"),
        ("in/a/c", b"4"),
        ("other", b"5"),
    ]);
    let got = items(
        &store,
        ReaderResource::ListObjectsV2,
        json!({"Bucket": "b", "Prefix": "in/"}),
        ReaderConfig::default(),
        None,
    )
    .await
    .unwrap();
    let keys: Vec<&str> = got.iter().map(|m| m["Key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["in/a-b", "in/a/b", "in/a/c", "in/a0"]);
    assert_eq!(got[0]["Size"], 2);
    assert_eq!(got[0]["StorageClass"], "STANDARD");
    assert!(got[0]["Etag"].is_string() && got[0]["LastModified"].is_i64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_and_flatten_reads_each_object_in_key_order() {
    let (_dir, store) = bucket(&[
        ("d/2.json", b"[3, 4]"),
        ("d/1.json", b"{\"x\": [1, 2]}"),
        ("d/10.json", b"{\"x\": [9]}"),
    ]);
    let config = ReaderConfig {
        input_type: Some(InputType::Json),
        transformation: ReaderTransformation::LoadAndFlatten,
        ..ReaderConfig::default()
    };
    // 1.json and 10.json are objects, not arrays: the run stops at the first.
    let err = items(
        &store,
        ReaderResource::ListObjectsV2,
        json!({"Bucket": "b", "Prefix": "d/"}),
        config.clone(),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.cause.as_deref(),
        Some("Attempting to map over non-iterable node.")
    );
    let config = ReaderConfig {
        items_pointer: Some("/x".into()),
        ..config
    };
    store
        .put("b", "d/2.json", b"{\"x\": [3, 4]}".to_vec())
        .await
        .unwrap();
    let got = items(
        &store,
        ReaderResource::ListObjectsV2,
        json!({"Bucket": "b", "Prefix": "d/"}),
        config.clone(),
        Some(json!(4)),
    )
    .await
    .unwrap();
    assert_eq!(got, [json!(1), json!(2), json!(9), json!(3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_json_array_fails_naming_the_object_byte_and_item() {
    let (_dir, store) = bucket(&[("big.json", b"[{\"a\": 1}, {\"a\": 2}, {\"a\"")]);
    let mut rx = shoal_mapio::items::read(
        Some(store.clone()),
        ReaderResource::GetObject,
        json!({"Bucket": "b", "Key": "big.json"}),
        Arc::new(ReaderConfig::default()),
        None,
    );
    // The items before the damage arrive; then the failure.
    let first = rx.recv().await.unwrap().unwrap();
    assert_eq!(first, [json!({"a": 1}), json!({"a": 2})]);
    let err = rx.recv().await.unwrap().unwrap_err();
    assert_eq!(err.error, "States.ItemReaderFailed");
    assert_eq!(
        err.cause.as_deref(),
        Some(
            "s3://b/big.json is truncated at byte 25, in item index 2: \
             EOF while parsing an object at line 1 column 25"
        )
    );
    assert!(rx.recv().await.is_none());
}

/// Reads with a progress tracker, sampling it after each chunk.
async fn sampled(
    store: &Arc<Buckets>,
    resource: ReaderResource,
    params: Value,
    config: ReaderConfig,
) -> (usize, Vec<shoal_mapio::items::ReadSnapshot>) {
    let progress = Arc::new(shoal_mapio::items::ReadProgress::default());
    let mut rx = shoal_mapio::items::read_tracked(
        Some(store.clone()),
        resource,
        params,
        Arc::new(config),
        None,
        progress.clone(),
    );
    let (mut n, mut seen) = (0, vec![progress.snapshot()]);
    while let Some(chunk) = rx.recv().await {
        n += chunk.unwrap().len();
        seen.push(progress.snapshot());
    }
    seen.push(progress.snapshot());
    (n, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_reports_bytes_read_out_of_the_object_size() {
    let body: String = format!(
        "[{}]",
        (0..100_000)
            .map(|i| format!("{{\"n\":{i}}}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let size = body.len() as u64;
    let (_dir, store) = bucket(&[("big.json", body.as_bytes())]);
    let (n, seen) = sampled(
        &store,
        ReaderResource::GetObject,
        json!({"Bucket": "b", "Key": "big.json"}),
        ReaderConfig::default(),
    )
    .await;
    assert_eq!(n, 100_000);
    let bytes: Vec<_> = seen.iter().filter_map(|s| s.bytes).collect();
    assert!(
        bytes.windows(2).all(|w| w[0].read <= w[1].read),
        "bytes read never go back: {bytes:?}"
    );
    // The reader holds back while its items wait: progress shows it part-way.
    assert!(
        bytes
            .iter()
            .any(|b| b.read > 0 && b.read < size / 2 && b.total == size && b.total_known),
        "{size} bytes: {bytes:?}"
    );
    let last = seen.last().unwrap();
    assert!(last.done && last.keys_listed.is_none());
    assert_eq!(
        last.bytes,
        Some(shoal_mapio::items::Bytes {
            read: size,
            total: size,
            total_known: true
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_reports_keys_listed_and_the_bytes_of_what_it_loads() {
    let (_dir, store) = bucket(&[("d/1.json", b"[1, 2]"), ("d/2.json", b"[3]")]);
    let (n, seen) = sampled(
        &store,
        ReaderResource::ListObjectsV2,
        json!({"Bucket": "b", "Prefix": "d/"}),
        ReaderConfig::default(),
    )
    .await;
    assert_eq!(n, 2);
    let last = seen.last().unwrap();
    assert_eq!(
        (last.keys_listed, last.bytes, last.done),
        (Some(2), None, true)
    );
    let (n, seen) = sampled(
        &store,
        ReaderResource::ListObjectsV2,
        json!({"Bucket": "b", "Prefix": "d/"}),
        ReaderConfig {
            input_type: Some(InputType::Json),
            transformation: ReaderTransformation::LoadAndFlatten,
            ..ReaderConfig::default()
        },
    )
    .await;
    assert_eq!(n, 3);
    let last = seen.last().unwrap();
    assert_eq!(last.keys_listed, Some(2));
    assert_eq!(
        last.bytes,
        Some(shoal_mapio::items::Bytes {
            read: 9,
            total: 9,
            total_known: true
        })
    );
}
