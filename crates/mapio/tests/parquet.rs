//! InputType PARQUET against files that pyarrow writes: every item, field by field,
//! as pyarrow reads it back (shaped by the same rules), and damaged files.
#![cfg(feature = "parquet")]

use serde_json::{json, Value};
use shoal_asl::{InputType, ManifestType, ReaderConfig, ReaderResource};
use shoal_buckets::Buckets;
use shoal_expr::Failure;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Python from `target/lambda-venv` (scripts/test.sh installs pyarrow there), or
/// `SHOAL_TEST_PYTHON`.
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("SHOAL_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    // target/release/deps/parquet-xxxx → target/lambda-venv/bin/python
    exe.ancestors()
        .nth(3)
        .unwrap()
        .join("lambda-venv/bin/python")
}

/// Writes `table.parquet` (three row groups) into `dir` with pyarrow and returns
/// what pyarrow reads back, shaped as the reader shapes items, and where row group
/// 1's first column chunk lies.
const WRITE: &str = r#"
import base64, datetime, decimal, json, math, sys
import pyarrow as pa, pyarrow.parquet as pq

path = sys.argv[1]
utc = datetime.timezone.utc
ts = lambda s: datetime.datetime.fromisoformat(s)
rows = 8
table = pa.table({
    "id": pa.array(range(rows), pa.int64()),
    "small": pa.array([i - 4 for i in range(rows)], pa.int8()),
    "u32": pa.array([2**32 - 1 - i for i in range(rows)], pa.uint32()),
    "f32": pa.array([0.5 * i if i != 3 else None for i in range(rows)], pa.float32()),
    "f64": pa.array([1.0 / (i + 1) if i != 5 else float("nan") for i in range(rows)]),
    "ok": pa.array([i % 2 == 0 if i != 2 else None for i in range(rows)]),
    "name": pa.array([f"row é {i}" if i != 4 else None for i in range(rows)]),
    "blob": pa.array([bytes([i, 255, 0]) for i in range(rows)], pa.binary()),
    "price": pa.array([decimal.Decimal(f"{i * 1234 - 5000}.{i:02d}") if i != 6 else None
                       for i in range(rows)], pa.decimal128(10, 2)),
    "day": pa.array([datetime.date(2024, 2, 27) + datetime.timedelta(days=i) for i in range(rows)],
                    pa.date32()),
    "at_ms": pa.array([ts("2024-03-01T12:00:00") + datetime.timedelta(milliseconds=1001 * i)
                       for i in range(rows)], pa.timestamp("ms")),
    "at_us": pa.array([ts("1969-12-31T23:59:59.999999") + datetime.timedelta(microseconds=i)
                       for i in range(rows)], pa.timestamp("us", tz="UTC")),
    "clock": pa.array([datetime.time(12, 34, 56, i) for i in range(rows)], pa.time64("us")),
    "tags": pa.array([[f"t{j}" for j in range(i % 3)] if i != 7 else None for i in range(rows)],
                     pa.list_(pa.string())),
    "point": pa.array([{"x": i, "y": {"z": f"z{i}", "w": None}} if i != 1 else None
                       for i in range(rows)],
                      pa.struct([("x", pa.int32()), ("y", pa.struct([("z", pa.string()), ("w", pa.float64())]))])),
    "parts": pa.array([[{"k": f"k{j}", "n": j} for j in range(i % 2 + 1)] for i in range(rows)],
                      pa.list_(pa.struct([("k", pa.string()), ("n", pa.int16())]))),
    "attrs": pa.array([[("a", i), ("b", None)] for i in range(rows)], pa.map_(pa.string(), pa.int64())),
})
pq.write_table(table, path, row_group_size=3, compression="snappy")

epoch = datetime.datetime(1970, 1, 1, tzinfo=utc)
def shape(v):
    if v is None: return None
    if isinstance(v, bool): return v
    if isinstance(v, float): return None if math.isnan(v) else v
    if isinstance(v, decimal.Decimal): return float(v)
    if isinstance(v, datetime.datetime):
        v = v if v.tzinfo else v.replace(tzinfo=utc)
        return (v - epoch) // datetime.timedelta(milliseconds=1)
    if isinstance(v, (datetime.date, datetime.time)): return v.isoformat()
    if isinstance(v, bytes): return base64.b64encode(v).decode()
    if isinstance(v, dict): return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        if v and all(isinstance(e, tuple) for e in v):
            return {k: shape(x) for k, x in v}
        return [shape(e) for e in v]
    return v

back = pq.read_table(path).to_pylist()
rg = pq.ParquetFile(path).metadata.row_group(1).column(0)
start = rg.dictionary_page_offset or rg.data_page_offset
print(json.dumps({"items": [shape(r) for r in back],
                  "chunk": [start, rg.total_compressed_size]}))
"#;

fn pyarrow_writes(dir: &Path) -> Value {
    let py = python();
    let out = std::process::Command::new(&py)
        .args(["-c", WRITE])
        .arg(dir.join("b/table.parquet"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): scripts/test.sh installs pyarrow in target/lambda-venv",
                py.display()
            )
        });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn items(
    store: &Arc<Buckets>,
    params: Value,
    config: ReaderConfig,
) -> Result<Vec<Value>, Failure> {
    let mut rx = shoal_mapio::items::read(
        Some(store.clone()),
        ReaderResource::GetObject,
        params,
        Arc::new(config),
        None,
    );
    let mut out = Vec::new();
    while let Some(chunk) = rx.recv().await {
        out.extend(chunk?);
    }
    Ok(out)
}

fn parquet() -> ReaderConfig {
    ReaderConfig {
        input_type: Some(InputType::Parquet),
        ..ReaderConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_read_as_pyarrow_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("b")).unwrap();
    let want = pyarrow_writes(dir.path());
    let store = Arc::new(Buckets::local(dir.path()));
    let got = items(
        &store,
        json!({"Bucket": "b", "Key": "table.parquet"}),
        parquet(),
    )
    .await
    .unwrap();
    let want = want["items"].as_array().unwrap();
    assert_eq!(got.len(), 8);
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.as_object().unwrap(), w.as_object().unwrap());
        assert_eq!(
            g.keys().collect::<Vec<_>>(),
            w.keys().collect::<Vec<_>>(),
            "row {i}"
        );
        for (k, wv) in w {
            assert_eq!(&g[k], wv, "row {i} column {k}");
        }
    }
    // A few by hand, so the shapes are pinned and not only equal to the script's.
    assert_eq!(got[0]["price"], json!(-5000.0));
    assert_eq!(got[2]["price"], json!(-2532.02));
    assert_eq!(got[6]["price"], Value::Null);
    assert_eq!(got[0]["at_ms"], json!(1_709_294_400_000_i64));
    assert_eq!(got[0]["at_us"], json!(-1));
    assert_eq!(got[1]["at_us"], json!(0));
    assert_eq!(got[2]["day"], json!("2024-02-29"));
    assert_eq!(
        got[0]["point"],
        json!({"x": 0, "y": {"z": "z0", "w": null}})
    );
    assert_eq!(got[1]["point"], Value::Null);
    assert_eq!(got[2]["tags"], json!(["t0", "t1"]));
    assert_eq!(got[5]["f64"], Value::Null);
    assert_eq!(
        got[1]["parts"],
        json!([{"k": "k0", "n": 0}, {"k": "k1", "n": 1}])
    );
    assert_eq!(got[3]["attrs"], json!({"a": 3, "b": null}));
    assert_eq!(got[0]["blob"], json!("AP8A"));

    // A manifest of Parquet files: each one's rows, in the manifest's order.
    std::fs::copy(
        dir.path().join("b/table.parquet"),
        dir.path().join("b/two.parquet"),
    )
    .unwrap();
    store
        .put(
            "b",
            "manifest.csv",
            b"s3://b/two.parquet\ns3://b/table.parquet\n".to_vec(),
        )
        .await
        .unwrap();
    let config = ReaderConfig {
        manifest_type: Some(ManifestType::AthenaData),
        ..parquet()
    };
    let both = items(
        &store,
        json!({"Bucket": "b", "Key": "manifest.csv"}),
        config,
    )
    .await
    .unwrap();
    assert_eq!(both.len(), 16);
    assert_eq!(both[..8], got[..]);
    assert_eq!(both[8..], got[..]);

    // The reader's progress over the manifest: both files' bytes, a row group at a time.
    let progress = Arc::new(shoal_mapio::items::ReadProgress::default());
    let mut rx = shoal_mapio::items::read_tracked(
        Some(store.clone()),
        ReaderResource::GetObject,
        json!({"Bucket": "b", "Key": "manifest.csv"}),
        Arc::new(ReaderConfig {
            manifest_type: Some(ManifestType::AthenaData),
            ..parquet()
        }),
        None,
        progress.clone(),
    );
    while let Some(chunk) = rx.recv().await {
        chunk.unwrap();
    }
    let size = std::fs::metadata(dir.path().join("b/table.parquet"))
        .unwrap()
        .len();
    let b = progress.snapshot().bytes.unwrap();
    assert_eq!((b.read, b.total, b.total_known), (2 * size, 2 * size, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_file_names_the_object_and_the_row_group() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("b")).unwrap();
    let written = pyarrow_writes(dir.path());
    let store = Arc::new(Buckets::local(dir.path()));
    let path = dir.path().join("b/table.parquet");
    let good = std::fs::read(&path).unwrap();
    let (start, len) = (
        written["chunk"][0].as_u64().unwrap() as usize,
        written["chunk"][1].as_u64().unwrap() as usize,
    );
    // Row group 1's first column chunk overwritten: its pages are garbage.
    let mut bad = good.clone();
    for (i, b) in bad[start..start + len].iter_mut().enumerate() {
        *b = (i * 7 + 13) as u8;
    }
    std::fs::write(&path, &bad).unwrap();
    let mut rx = shoal_mapio::items::read(
        Some(store.clone()),
        ReaderResource::GetObject,
        json!({"Bucket": "b", "Key": "table.parquet"}),
        Arc::new(parquet()),
        None,
    );
    let mut n = 0;
    let err = loop {
        match rx.recv().await.unwrap() {
            Ok(c) => n += c.len(),
            Err(e) => break e,
        }
    };
    // Row group 0 (3 rows) came through before the damage.
    assert_eq!(n, 3);
    assert_eq!(err.error, "States.ItemReaderFailed");
    let cause = err.cause.unwrap();
    assert!(
        cause.starts_with("s3://b/table.parquet row group 1 is damaged: "),
        "{cause}"
    );

    // No footer: the whole object is named.
    std::fs::write(&path, &good[..good.len() - 10]).unwrap();
    let err = items(
        &store,
        json!({"Bucket": "b", "Key": "table.parquet"}),
        parquet(),
    )
    .await
    .unwrap_err();
    assert!(
        err.cause
            .as_deref()
            .unwrap()
            .starts_with("s3://b/table.parquet is not a readable Parquet file: "),
        "{err:?}"
    );
}
