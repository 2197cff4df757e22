//! One object read by an ItemReader from a local bucket, shared by the `items_*`
//! targets: items or a failure, never a panic or a hang.
use shoal_asl::{InputType, ReaderConfig, ReaderResource};
use std::sync::{Arc, OnceLock};

struct World {
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    store: Arc<shoal_buckets::Buckets>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        World {
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap(),
            store: Arc::new(shoal_buckets::Buckets::local(dir.path())),
            dir,
        }
    })
}

/// Reads `data` as an object of `input_type` to its end; panics if the reader hangs.
pub fn read_object(data: &[u8], input_type: InputType) {
    let w = world();
    std::fs::write(w.dir.path().join("b/o"), data).unwrap();
    let config = ReaderConfig {
        input_type: Some(input_type),
        ..ReaderConfig::default()
    };
    w.rt.block_on(async {
        let mut rx = shoal_mapio::items::read(
            Some(w.store.clone()),
            ReaderResource::GetObject,
            serde_json::json!({"Bucket": "b", "Key": "o"}),
            Arc::new(config),
            None,
        );
        let all = async {
            while let Some(chunk) = rx.recv().await {
                if chunk.is_err() {
                    break;
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), all)
            .await
            .expect("the reader hung");
    });
}
