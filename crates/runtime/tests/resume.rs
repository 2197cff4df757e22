//! Durable executions in-process: a run cut off mid-way (its future dropped, as a crash
//! would) and resumed from the store ends exactly as an uninterrupted run does, with
//! one history and no event twice. The clock is tokio's paused one.

use serde_json::{json, Value};
use shoal_engine::{ExecutionInfo, Outcome, SplitMix};
use shoal_runtime::{Options, Runtime};
use shoal_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Each runtime seeds differently, as separate processes do (time and pid).
fn runtime(db: Option<Arc<dyn Store>>) -> Arc<Runtime> {
    static SEEDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    Runtime::new(Options {
        buckets: None,
        tasks: shoal_tasks::Tasks::new(Default::default()),
        seed: SEEDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) * 7919,
        db,
        fleet: None,
    })
}

/// Waits, an inline Map, a Distributed Map over inline items, and a UUID (randomness
/// must replay the same).
fn definition() -> Value {
    json!({
        "StartAt": "Id",
        "States": {
            "Id": {"Type": "Pass", "Parameters": {"id.$": "States.UUID()", "items.$": "States.ArrayRange(1, 50, 1)"}, "Next": "Wait1"},
            "Wait1": {"Type": "Wait", "Seconds": 10, "Next": "Dist"},
            "Dist": {
                "Type": "Map", "ItemsPath": "$.items", "ResultPath": "$.doubled", "MaxConcurrency": 5,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
                    "StartAt": "W", "States": {
                        "W": {"Type": "Wait", "Seconds": 1, "Next": "D"},
                        "D": {"Type": "Pass", "Parameters": {"v.$": "States.MathAdd($, $)"}, "End": true}
                    }
                },
                "Next": "Wait2"
            },
            "Wait2": {"Type": "Wait", "Seconds": 10, "Next": "Inline"},
            "Inline": {"Type": "Map", "ItemsPath": "$.doubled", "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}, "ResultPath": "$.again", "End": true}
        }
    })
}

async fn start(rt: &Arc<Runtime>, name: &str) -> Result<Outcome, shoal_runtime::Error> {
    let def = definition();
    let machine = Arc::new(shoal_asl::parse(&def.to_string()).machine.unwrap());
    let info = ExecutionInfo::local("sm", name, rt.now_ms(), false, &SplitMix::new(1));
    rt.start(machine, &def.to_string(), info, json!({})).await
}

#[tokio::test(start_paused = true)]
async fn a_cut_off_execution_resumes_to_the_same_end() {
    let dir = tempfile::tempdir().unwrap();
    cut_off_and_resume(shoal_store::Db::open(dir.path()).unwrap()).await;
}

/// The same with the store in memory: the runtime needs no SQLite to be durable within
/// a process.
#[tokio::test(start_paused = true)]
async fn a_cut_off_execution_resumes_from_the_memory_store() {
    cut_off_and_resume(Arc::new(shoal_store::Memory::new())).await;
}

async fn cut_off_and_resume(db: Arc<dyn Store>) {
    // Cut off at several moments: in the first Wait, in the map run, in the second Wait.
    for (i, cut) in [5u64, 13, 25].into_iter().enumerate() {
        let name = format!("cut{i}");
        let rt = runtime(Some(db.clone()));
        let r = tokio::time::timeout(Duration::from_secs(cut), start(&rt, &name)).await;
        assert!(r.is_err(), "still running at {cut}s");
        db.flush().unwrap();
        assert_eq!(
            db.execution(&name).unwrap().status,
            shoal_store::ExecutionStatus::Running
        );

        let rt = runtime(Some(db.clone()));
        let out = rt.resume(&name, false).await.unwrap();
        let Outcome::Succeeded(v) = out else {
            panic!("{out:?}")
        };
        let doubled: Vec<Value> = (1..=50).map(|n| json!({"v": 2 * n})).collect();
        assert_eq!(v["doubled"], Value::Array(doubled.clone()), "cut at {cut}s");
        assert_eq!(v["again"], Value::Array(doubled));
        let rec = db.execution(&name).unwrap();
        assert_eq!(rec.status, shoal_store::ExecutionStatus::Succeeded);
        // The UUID made before the cut is the one in the output: randomness replays.
        let out: Value = serde_json::from_str(rec.output.as_deref().unwrap()).unwrap();
        assert_eq!(out["id"], v["id"]);

        let history = db.history(&rec.arn).unwrap();
        let ids: Vec<u64> = history.iter().map(|h| h.id).collect();
        assert_eq!(
            ids,
            (1..=ids.len() as u64).collect::<Vec<_>>(),
            "ids run 1..n without gaps"
        );
        let kinds: Vec<&str> = history.iter().map(|h| h.kind.as_str()).collect();
        assert_eq!(
            kinds.iter().filter(|k| **k == "ExecutionStarted").count(),
            1,
            "cut at {cut}: {kinds:?}"
        );
        assert_eq!(
            kinds.iter().filter(|k| **k == "MapRunStarted").count(),
            1,
            "cut at {cut}: {kinds:?}"
        );
        assert_eq!(*kinds.last().unwrap(), "ExecutionSucceeded");
        db.flush().unwrap();
        let runs = db.map_runs(&rec.arn).unwrap();
        assert_eq!(runs.len(), 1, "cut at {cut}: {kinds:?}");
        assert_eq!(runs[0].status, "SUCCEEDED");
        assert!(
            runs[0].item_counts.contains("\"succeeded\":50"),
            "{}",
            runs[0].item_counts
        );
    }
}

#[tokio::test(start_paused = true)]
async fn resuming_a_finished_execution_answers_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let db = shoal_store::Db::open(dir.path()).unwrap();
    let rt = runtime(Some(db.clone()));
    let first = start(&rt, "done").await.unwrap();
    assert_eq!(rt.resume("done", false).await.unwrap(), first);
    let again = start(&rt, "done").await;
    assert!(
        matches!(
            &again,
            Err(shoal_runtime::Error::Store(
                shoal_store::Error::ExecutionAlreadyExists(_)
            ))
        ),
        "{again:?}"
    );
}

/// A map run row that does not hold what shoal wrote stops the resume before anything
/// runs or is written, with an error that names the execution.
#[tokio::test(start_paused = true)]
async fn a_damaged_map_run_row_stops_a_resume_and_is_left_as_it_is() {
    let db: Arc<dyn Store> = Arc::new(shoal_store::Memory::new());
    let rt = runtime(Some(db.clone()));
    let cut = tokio::time::timeout(Duration::from_secs(13), start(&rt, "damaged")).await;
    assert!(cut.is_err(), "still running in its map run");
    db.flush().unwrap();
    let arn = db.execution("damaged").unwrap().arn;
    let mut row = db.map_runs(&arn).unwrap().pop().expect("a map run row");
    assert_eq!(row.status, "RUNNING");
    row.checkpoint = Some("{\"done\":".into());
    db.put_map_run(row.clone());
    db.flush().unwrap();
    let journal = db.journal(&arn).unwrap();

    let err = runtime(Some(db.clone()))
        .resume("damaged", false)
        .await
        .expect_err("a damaged checkpoint is refused");
    assert!(matches!(err, shoal_runtime::Error::MapRun { .. }), "{err}");
    assert!(err.to_string().contains(&arn), "{err}");
    db.flush().unwrap();
    assert_eq!(db.journal(&arn).unwrap(), journal);
    assert_eq!(db.map_runs(&arn).unwrap(), vec![row]);
    assert_eq!(
        db.execution(&arn).unwrap().status,
        shoal_store::ExecutionStatus::Running
    );
}

/// A redrive whose stored history lost rows is refused before the journal is cut back.
#[tokio::test(start_paused = true)]
async fn a_redrive_over_a_damaged_history_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let db = shoal_store::Db::open(dir.path()).unwrap();
    let rt = runtime(Some(db.clone()));
    let def = json!({"StartAt": "P", "States": {
        "P": {"Type": "Pass", "Next": "F"},
        "F": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
              "Parameters": {"FunctionName": "nowhere"}, "End": true}}});
    let machine = Arc::new(shoal_asl::parse(&def.to_string()).machine.unwrap());
    let info = ExecutionInfo::local("sm", "lost", rt.now_ms(), false, &SplitMix::new(1));
    let arn = info.execution_arn.clone();
    let out = rt.start(machine, &def.to_string(), info, json!({})).await;
    assert!(matches!(out, Ok(Outcome::Failed(_))), "{out:?}");
    db.flush().unwrap();
    rusqlite::Connection::open(dir.path().join("shoal.db"))
        .unwrap()
        .execute("DELETE FROM history WHERE execution = ?1", [&arn])
        .unwrap();
    let journal = db.journal(&arn).unwrap();

    let err = runtime(Some(db.clone()))
        .resume("lost", true)
        .await
        .expect_err("a history shorter than the replay is refused");
    assert!(matches!(err, shoal_runtime::Error::Damaged { .. }), "{err}");
    assert!(err.to_string().contains(&arn), "{err}");
    assert_eq!(db.journal(&arn).unwrap(), journal);
    assert_eq!(
        db.execution(&arn).unwrap().status,
        shoal_store::ExecutionStatus::Failed
    );
}

/// Resume checks its replay against the journal: under a changed definition it stops
/// with an error naming the execution and the journal entry, and writes nothing; the
/// definition it ran resumes as before.
#[tokio::test(start_paused = true)]
async fn a_replay_that_differs_from_the_journal_is_not_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let db = shoal_store::Db::open(dir.path()).unwrap();
    let def = json!({"StartAt": "Pause", "States": {
        "Pause": {"Type": "Wait", "Seconds": 10, "Next": "Again"},
        "Again": {"Type": "Wait", "Seconds": 10, "Next": "Done"},
        "Done": {"Type": "Pass", "Result": "done", "End": true}}});
    let changed = [
        // Another kind of state where the journal has the Wait.
        (
            json!({"StartAt": "Pause", "States": {
                "Pause": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                          "Parameters": {"FunctionName": "Resize"}, "Next": "Again"},
                "Again": {"Type": "Wait", "Seconds": 10, "Next": "Done"},
                "Done": {"Type": "Pass", "End": true}}}),
            "at journal entry 0 the replay issued Task \"Pause\"",
        ),
        // The same states waiting longer: the timer is due at another time.
        (
            json!({"StartAt": "Pause", "States": {
                "Pause": {"Type": "Wait", "Seconds": 10, "Next": "Again"},
                "Again": {"Type": "Wait", "Seconds": 30, "Next": "Done"},
                "Done": {"Type": "Pass", "End": true}}}),
            "at journal entry 1 the replay issued a timer (effect 2)",
        ),
    ];
    for (i, (other, expected)) in changed.iter().enumerate() {
        let name = format!("nd{i}");
        let rt = runtime(Some(db.clone()));
        let machine = Arc::new(shoal_asl::parse(&def.to_string()).machine.unwrap());
        let info = ExecutionInfo::local("sm", &name, rt.now_ms(), false, &SplitMix::new(1));
        let arn = info.execution_arn.clone();
        let cut = tokio::time::timeout(
            Duration::from_secs(15),
            rt.start(machine, &def.to_string(), info, json!({})),
        )
        .await;
        assert!(cut.is_err(), "still in the second Wait");
        db.flush().unwrap();
        let journal = db.journal(&arn).unwrap();
        assert_eq!(journal.len(), 2, "{journal:?}");
        assert!(journal.iter().all(|e| e.effects.is_some()));

        let file = rusqlite::Connection::open(dir.path().join("shoal.db")).unwrap();
        let set = |d: &Value| {
            file.execute(
                "UPDATE executions SET definition = ?1 WHERE arn = ?2",
                [d.to_string(), arn.clone()],
            )
            .unwrap()
        };
        set(other);
        let err = runtime(Some(db.clone()))
            .resume(&name, false)
            .await
            .expect_err("a changed definition does not replay");
        let text = err.to_string();
        assert!(
            matches!(err, shoal_runtime::Error::Nondeterministic { .. }),
            "{text}"
        );
        assert!(
            text.starts_with(&format!("execution {arn} is not deterministic: ")),
            "{text}"
        );
        assert!(text.contains(expected), "{text}");
        assert!(
            text.contains("where the journal has a timer (effect"),
            "{text}"
        );
        db.flush().unwrap();
        assert_eq!(db.journal(&arn).unwrap(), journal, "nothing was written");
        assert_eq!(
            db.execution(&arn).unwrap().status,
            shoal_store::ExecutionStatus::Running
        );

        set(&def);
        let out = runtime(Some(db.clone()))
            .resume(&name, false)
            .await
            .unwrap();
        assert_eq!(out, Outcome::Succeeded(json!("done")));
    }

    // A tampered journal entry is caught the same way.
    let rt = runtime(Some(db.clone()));
    let machine = Arc::new(shoal_asl::parse(&def.to_string()).machine.unwrap());
    let info = ExecutionInfo::local("sm", "tampered", rt.now_ms(), false, &SplitMix::new(1));
    let arn = info.execution_arn.clone();
    let cut = tokio::time::timeout(
        Duration::from_secs(5),
        rt.start(machine, &def.to_string(), info, json!({})),
    )
    .await;
    assert!(cut.is_err());
    db.flush().unwrap();
    rusqlite::Connection::open(dir.path().join("shoal.db"))
        .unwrap()
        .execute(
            "UPDATE journal SET effects = '[{\"k\":\"MapRun\",\"id\":1,\"state\":\"Pause\"}]' WHERE execution = ?1 AND seq = 0",
            [&arn],
        )
        .unwrap();
    let err = runtime(Some(db.clone()))
        .resume("tampered", false)
        .await
        .expect_err("a tampered journal does not replay");
    let text = err.to_string();
    assert!(
        text.contains("at journal entry 0 the replay issued a timer (effect 1) for 20")
            && text.ends_with("where the journal has Map run \"Pause\" (effect 1)"),
        "{text}"
    );
}
