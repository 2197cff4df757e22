//! Drains an ItemReader and reports how long the first items and all items took; the
//! bench scripts measure its peak RSS. Usage:
//! `read_items <buckets-dir> <bucket> json <key> | list <prefix> | parquet <key>`

use serde_json::json;
use shoal_asl::{InputType, ReaderConfig, ReaderResource};
use shoal_buckets::Buckets;
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, root, bucket, mode, what] = &args[..] else {
        eprintln!("usage: read_items <buckets-dir> <bucket> json|list|parquet <key-or-prefix>");
        std::process::exit(2);
    };
    let (resource, params, input_type) = match mode.as_str() {
        "list" => (
            ReaderResource::ListObjectsV2,
            json!({"Bucket": bucket, "Prefix": what}),
            None,
        ),
        "json" => (
            ReaderResource::GetObject,
            json!({"Bucket": bucket, "Key": what}),
            Some(InputType::Json),
        ),
        _ => (
            ReaderResource::GetObject,
            json!({"Bucket": bucket, "Key": what}),
            Some(InputType::Parquet),
        ),
    };
    let config = Arc::new(ReaderConfig {
        input_type,
        ..ReaderConfig::default()
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = Arc::new(Buckets::local(root));
    let start = Instant::now();
    let (n, first, last_key) = rt.block_on(async move {
        let mut rx = shoal_mapio::items::read(Some(store), resource, params, config, None);
        let (mut n, mut first, mut last_key) = (0u64, None, None::<String>);
        while let Some(chunk) = rx.recv().await {
            let chunk = chunk.unwrap_or_else(|f| panic!("{f:?}"));
            first.get_or_insert_with(|| start.elapsed());
            // A listing must come in key order, each key once.
            for item in &chunk {
                if let Some(k) = item.get("Key").and_then(|k| k.as_str()) {
                    if let Some(prev) = &last_key {
                        assert!(prev.as_str() < k, "{prev} then {k}");
                    }
                    last_key = Some(k.to_string());
                }
            }
            n += chunk.len() as u64;
        }
        (n, first, last_key)
    });
    let total = start.elapsed().as_secs_f64();
    println!(
        "items={n} first_items_s={:.3} total_s={total:.2} items_per_s={:.0} last_key={}",
        first.map_or(f64::NAN, |d| d.as_secs_f64()),
        n as f64 / total,
        last_key.unwrap_or_default()
    );
}
