//! One request to the Step Functions API handler: the first line names the operation
//! (`X-Amz-Target: AWSStepFunctions.<line>`), the rest is the body. Never a panic, and
//! never a 5xx.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

struct World {
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    server: Arc<shoal_server::Server>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let db = shoal_store::Db::open(dir.path()).unwrap();
        let server = rt.block_on(async {
            let runtime = shoal_runtime::Runtime::new(shoal_runtime::Options {
                buckets: None,
                tasks: shoal_tasks::Tasks::new(Default::default()),
                seed: 3,
                db: Some(db.clone()),
                fleet: None,
            });
            shoal_server::Server::new(shoal_server::Options {
                fleet: None,
                runtime,
                db,
                token: None,
                mocks: None,
            })
        });
        World {
            rt,
            _dir: dir,
            server,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let text = String::from_utf8_lossy(data);
    let (op, body) = text.split_once('\n').unwrap_or(("StartExecution", &text));
    let headers = vec![("x-amz-target".to_string(), format!("AWSStepFunctions.{op}"))];
    let r =
        w.rt.block_on(w.server.handle("POST", "/", &headers, body.as_bytes()));
    assert!(
        r.status < 500,
        "{op}: {} {:?}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
});
