//! The store never stalls a runtime thread: while SQLite waits for a lock another
//! process holds, the other tasks on the same (single) thread go on.

use serde_json::json;
use shoal_engine::{ExecutionInfo, Outcome, SplitMix};
use shoal_runtime::{Options, Runtime};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "current_thread")]
async fn a_store_waiting_for_a_lock_leaves_the_runtime_thread_free() {
    let dir = tempfile::tempdir().unwrap();
    let db = shoal_store::Db::open(dir.path()).unwrap();
    let rt = Runtime::new(Options {
        buckets: None,
        tasks: shoal_tasks::Tasks::new(Default::default()),
        seed: 1,
        db: Some(db.clone()),
        fleet: None,
    });
    // Another program holds the write lock for 600 ms: the execution's insert and its
    // final flush wait for it.
    let path = dir.path().join("shoal.db");
    let (locked, is_locked) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let mut conn = rusqlite::Connection::open(path).unwrap();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        locked.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(600));
        tx.commit().unwrap();
    });
    is_locked.recv().unwrap();

    let ticks = Arc::new(AtomicU64::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": 1, "End": true}}});
    let machine = Arc::new(shoal_asl::parse(&def.to_string()).machine.unwrap());
    let info = ExecutionInfo::local("sm", "locked", rt.now_ms(), false, &SplitMix::new(1));
    let started = Instant::now();
    let out = rt.start(machine, &def.to_string(), info, json!({})).await;
    let waited = started.elapsed();
    let ticked = ticks.load(Ordering::Relaxed);
    ticker.abort();
    holder.join().unwrap();
    assert_eq!(out.unwrap(), Outcome::Succeeded(json!(1)));
    assert!(
        waited >= Duration::from_millis(400),
        "it waited for the lock: {waited:?}"
    );
    // About 50 ticks of 10 ms fit in the wait; a blocked thread gets none.
    assert!(
        ticked >= 10,
        "the timer on the same thread ticked {ticked} times while the store waited {waited:?}"
    );
}
