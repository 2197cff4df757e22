//! The durable state: executions, the journal of events each one was fed, its history
//! rows, state machines, and map runs with their checkpoints, behind the [`Store`]
//! trait. [`Db`] is the embedded SQLite store under the state folder; [`Memory`] keeps
//! the same in memory. The store keeps rows: it knows no AWS response shape.

mod memory;
mod sqlite;

pub use memory::Memory;
pub use shoal_asl::ExecutionStatus;
pub use sqlite::{Db, SCHEMA_VERSION};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot use the state folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    #[error("the state store {path} is damaged ({message}); it was left as it is: move it away to start afresh")]
    Damaged { path: String, message: String },
    #[error("the state store {path} has schema version {found}, newer than this shoal's {supported}; it was left as it is: use a newer shoal")]
    NewerSchema {
        path: String,
        found: i64,
        supported: i64,
    },
    #[error("the state store {path} failed: {message}")]
    Sqlite { path: String, message: String },
    #[error("ExecutionAlreadyExists: an execution named {0} already exists")]
    ExecutionAlreadyExists(String),
    #[error("ExecutionDoesNotExist: no execution {0} in the state store")]
    ExecutionDoesNotExist(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One execution as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRecord {
    pub arn: String,
    pub name: String,
    pub state_machine_arn: String,
    pub state_machine_name: String,
    pub definition: String,
    pub input: String,
    pub seed: u64,
    pub status: ExecutionStatus,
    pub start_ms: i64,
    pub stop_ms: Option<i64>,
    pub output: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub redrive_count: u32,
    pub redrive_ms: Option<i64>,
    /// Added to the engine's history ids: a redriven execution replays fewer events than it stored.
    pub history_offset: u64,
}

/// A state machine registered through the API.
#[derive(Debug, Clone, PartialEq)]
pub struct StateMachineRecord {
    pub arn: String,
    pub name: String,
    pub definition: String,
    pub role_arn: String,
    pub kind: String,
    pub created_ms: i64,
    pub updated_ms: Option<i64>,
    /// Set by each update that changed the machine; none before the first.
    pub revision_id: Option<String>,
    /// A version's description.
    pub description: Option<String>,
    /// The logging configuration as the API was given it (JSON text the server owns).
    pub logging: Option<String>,
    pub tracing: bool,
    /// Some when this row is a published version of another machine.
    pub version: Option<Version>,
    /// How many versions this machine has published: numbers are never reused.
    pub last_version: u32,
}

/// A published version: which machine it belongs to, and its number there.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub of: String,
    pub number: u32,
}

/// An alias of a state machine and the versions it routes to.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasRecord {
    pub arn: String,
    pub machine: String,
    pub name: String,
    pub description: Option<String>,
    pub routing: Vec<Route>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub version_arn: String,
    pub weight: u32,
}

/// What an execution was started through, when not the machine itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExecutionOrigin {
    pub version_arn: Option<String>,
    pub alias_arn: Option<String>,
}

/// One event the engine was fed, as the runtime encoded it.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    pub seq: u64,
    pub at_ms: i64,
    pub event: String,
    /// What the engine did on taking the event, as the runtime encoded it, for a
    /// replay to compare with; none on rows from before schema 5.
    pub effects: Option<String>,
}

/// One AWS history event.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub id: u64,
    pub at_ms: i64,
    pub kind: String,
    pub details: String,
}

/// A map run's row: identity, counters, and the checkpoint to resume from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MapRunRecord {
    pub arn: String,
    pub execution: String,
    pub state: String,
    pub status: String,
    pub start_ms: i64,
    pub stop_ms: Option<i64>,
    pub max_concurrency: u64,
    pub tolerated_count: Option<u64>,
    pub tolerated_percentage: Option<f64>,
    pub item_counts: String,
    pub execution_counts: String,
    pub checkpoint: Option<String>,
    pub result: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

/// An activity (CreateActivity): its ARN, name and when it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityRecord {
    pub arn: String,
    pub name: String,
    pub created_ms: i64,
}

/// A child that failed, for redrive and for showing failed items.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildFailure {
    pub child: u64,
    pub generation: u32,
    pub items: u64,
    pub at_ms: i64,
    pub error: Option<String>,
    pub cause: Option<String>,
}

/// A STANDARD child execution of a map run, recorded when it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildExecution {
    pub arn: String,
    pub map_run: String,
    /// The child's index in the map run.
    pub child: u64,
    pub name: String,
    /// `<machine ARN>/<Map label>`.
    pub state_machine_arn: String,
    pub status: ExecutionStatus,
    /// Items in its batch (1 without an ItemBatcher).
    pub items: u64,
    pub start_ms: i64,
    pub stop_ms: i64,
    pub input: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

/// Where executions, their journals and histories, state machines and map runs are
/// kept. [`Db`] keeps them in SQLite under the state folder; [`Memory`] keeps them in
/// memory, for tests and for runs that outlive nothing. Writes that return nothing are
/// queued: [`Store::flush`] waits for them and reports the first that failed.
pub trait Store: Send + Sync {
    /// The first write that failed, if any: from then on nothing more is written.
    fn failed(&self) -> Option<Error>;
    /// Waits until everything sent so far is committed.
    fn flush(&self) -> Result<()>;
    /// Records a new execution, synchronously: a duplicate name must be refused now.
    fn create_execution(&self, e: &ExecutionRecord) -> Result<()>;
    /// Marks a failed execution as running again, for a redrive.
    fn redrive_execution(&self, arn: &str, at_ms: i64, history_offset: u64) -> Result<()>;
    /// Journal entries and the history they produced, committed together.
    fn append(&self, execution: &str, journal: Vec<JournalEntry>, history: Vec<HistoryRow>);
    fn finish_execution(
        &self,
        arn: &str,
        status: ExecutionStatus,
        stop_ms: i64,
        output: Option<String>,
        error: Option<String>,
        cause: Option<String>,
    );
    /// Inserts or replaces a map run's row (counters, checkpoint, verdict).
    fn put_map_run(&self, m: MapRunRecord);
    fn add_failures(&self, map_run: &str, failures: Vec<ChildFailure>);
    /// Child outputs of a map run without a ResultWriter (at most 256 KiB in all).
    fn add_outputs(&self, map_run: &str, outputs: Vec<(u64, String)>);
    /// Ended STANDARD children of map runs.
    fn add_children(&self, children: Vec<ChildExecution>);
    /// A map run's children, newest first (as ListExecutions lists them).
    fn children(&self, map_run: &str) -> Result<Vec<ChildExecution>>;
    fn child_execution(&self, arn: &str) -> Result<Option<ChildExecution>>;
    /// Inserts a state machine; false when its ARN is taken.
    /// Inserts a state machine (or a version); false when its ARN is taken.
    fn create_state_machine(&self, m: &StateMachineRecord) -> Result<bool>;
    /// Replaces the row of an existing state machine or version.
    fn put_state_machine(&self, m: &StateMachineRecord) -> Result<()>;
    fn delete_state_machine(&self, arn: &str) -> Result<()>;
    fn state_machine(&self, arn: &str) -> Result<Option<StateMachineRecord>>;
    /// The machines, without their versions, by name.
    fn state_machines(&self) -> Result<Vec<StateMachineRecord>>;
    /// A machine's versions, newest first.
    fn versions(&self, machine: &str) -> Result<Vec<StateMachineRecord>>;
    fn put_alias(&self, a: &AliasRecord) -> Result<()>;
    fn alias(&self, arn: &str) -> Result<Option<AliasRecord>>;
    /// A machine's aliases, by name.
    fn aliases(&self, machine: &str) -> Result<Vec<AliasRecord>>;
    fn delete_alias(&self, arn: &str) -> Result<()>;
    /// Adds or overwrites tags of a resource.
    fn tag(&self, resource: &str, tags: &[(String, String)]) -> Result<()>;
    fn untag(&self, resource: &str, keys: &[String]) -> Result<()>;
    /// A resource's tags, by key.
    fn tags(&self, resource: &str) -> Result<Vec<(String, String)>>;
    fn set_execution_origin(&self, execution: &str, origin: &ExecutionOrigin) -> Result<()>;
    /// Inserts an activity unless its ARN is taken; returns the row that holds the ARN
    /// (CreateActivity is idempotent on AWS).
    fn create_activity(&self, a: &ActivityRecord) -> Result<ActivityRecord>;
    fn activity(&self, arn: &str) -> Result<Option<ActivityRecord>>;
    /// Every activity, oldest first.
    fn activities(&self) -> Result<Vec<ActivityRecord>>;
    fn delete_activity(&self, arn: &str) -> Result<()>;
    fn execution_origin(&self, execution: &str) -> Result<ExecutionOrigin>;
    /// StopExecution: the execution and its running map runs end ABORTED, and the
    /// history says so. False when it was not running.
    fn abort_execution(
        &self,
        arn: &str,
        at_ms: i64,
        error: Option<&str>,
        cause: Option<&str>,
    ) -> Result<bool>;
    fn execution(&self, arn_or_name: &str) -> Result<ExecutionRecord>;
    /// Every execution, newest first.
    fn executions(&self) -> Result<Vec<ExecutionRecord>>;
    fn journal(&self, execution: &str) -> Result<Vec<JournalEntry>>;
    /// Drops the journal from `seq` on (a redrive replays up to the failure).
    fn truncate_journal(&self, execution: &str, seq: u64) -> Result<()>;
    fn history(&self, execution: &str) -> Result<Vec<HistoryRow>>;
    fn map_run(&self, arn: &str) -> Result<Option<MapRunRecord>>;
    fn map_runs(&self, execution: &str) -> Result<Vec<MapRunRecord>>;
    fn failures(&self, map_run: &str) -> Result<Vec<ChildFailure>>;
    fn outputs(&self, map_run: &str) -> Result<Vec<(u64, String)>>;
    /// A folder of the store's own for files that must survive a restart (the spill
    /// files of resumable S3 writers); none for a store that keeps nothing.
    fn spill_dir(&self) -> Option<&Path>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn exec(arn: &str, name: &str, start_ms: i64) -> ExecutionRecord {
        ExecutionRecord {
            arn: arn.into(),
            name: name.into(),
            state_machine_arn: "arn:aws:states:us-east-1:1:stateMachine:sm".into(),
            state_machine_name: "sm".into(),
            definition: "{}".into(),
            input: "{}".into(),
            seed: 7,
            status: ExecutionStatus::Running,
            start_ms,
            stop_ms: None,
            output: None,
            error: None,
            cause: None,
            redrive_count: 0,
            redrive_ms: None,
            history_offset: 0,
        }
    }

    /// One sequence of calls, and what every store must answer to it.
    fn exercise(s: &dyn Store) -> Vec<String> {
        let mut seen = Vec::new();
        s.create_execution(&exec("arn:e1", "one", 1)).unwrap();
        s.create_execution(&exec("arn:e2", "one", 2)).unwrap();
        seen.push(format!(
            "{:?}",
            s.create_execution(&exec("arn:e1", "x", 3))
                .err()
                .map(|e| e.to_string())
        ));
        let j = |seq| JournalEntry {
            seq,
            at_ms: seq as i64,
            event: format!("ev{seq}"),
            effects: (seq % 2 == 0).then(|| format!("fx{seq}")),
        };
        let h = |id, kind: &str| HistoryRow {
            id,
            at_ms: id as i64,
            kind: kind.into(),
            details: "{}".into(),
        };
        s.append("arn:e1", vec![j(0), j(1)], vec![h(1, "ExecutionStarted")]);
        s.append("arn:e1", vec![j(2)], vec![h(2, "PassStateEntered")]);
        s.flush().unwrap();
        s.truncate_journal("arn:e1", 2).unwrap();
        seen.push(format!("{:?}", s.journal("arn:e1").unwrap()));
        seen.push(format!("{:?}", s.execution("one").unwrap().arn));
        s.finish_execution(
            "arn:e1",
            ExecutionStatus::Failed,
            9,
            None,
            Some("E".into()),
            Some("c".into()),
        );
        s.flush().unwrap();
        seen.push(format!("{:?}", s.execution("arn:e1").unwrap()));
        s.redrive_execution("arn:e1", 10, 5).unwrap();
        seen.push(format!("{:?}", s.execution("arn:e1").unwrap()));
        seen.push(format!(
            "{:?}",
            s.abort_execution("arn:e1", 11, Some("A"), None).unwrap()
        ));
        seen.push(format!(
            "{:?}",
            s.abort_execution("arn:e1", 12, None, None).unwrap()
        ));
        seen.push(format!("{:?}", s.history("arn:e1").unwrap()));
        seen.push(format!(
            "{:?}",
            s.executions()
                .unwrap()
                .iter()
                .map(|e| &e.arn)
                .collect::<Vec<_>>()
        ));
        s.put_map_run(MapRunRecord {
            arn: "m1".into(),
            execution: "arn:e2".into(),
            status: "RUNNING".into(),
            start_ms: 3,
            ..MapRunRecord::default()
        });
        s.add_failures(
            "m1",
            vec![ChildFailure {
                child: 4,
                generation: 0,
                items: 1,
                at_ms: 5,
                error: Some("E".into()),
                cause: None,
            }],
        );
        s.add_outputs("m1", vec![(1, "b".into()), (0, "a".into())]);
        s.flush().unwrap();
        seen.push(format!("{:?}", s.map_runs("arn:e2").unwrap()));
        seen.push(format!("{:?}", s.failures("m1").unwrap()));
        seen.push(format!("{:?}", s.outputs("m1").unwrap()));
        let child = |n: u64, start_ms: i64, status| ChildExecution {
            arn: format!("arn:c{n}"),
            map_run: "m1".into(),
            child: n,
            name: format!("c{n}"),
            state_machine_arn: "arn:sm/Map".into(),
            status,
            items: 1,
            start_ms,
            stop_ms: start_ms + 1,
            input: "{}".into(),
            output: (status == ExecutionStatus::Succeeded).then(|| "1".into()),
            error: None,
            cause: None,
        };
        s.add_children(vec![
            child(0, 5, ExecutionStatus::Succeeded),
            child(1, 6, ExecutionStatus::Failed),
            child(2, 6, ExecutionStatus::Succeeded),
        ]);
        s.flush().unwrap();
        seen.push(format!("{:?}", s.children("m1").unwrap()));
        seen.push(format!("{:?}", s.child_execution("arn:c1").unwrap()));
        seen.push(format!("{:?}", s.child_execution("arn:nope").unwrap()));
        let sm = StateMachineRecord {
            arn: "arn:sm".into(),
            name: "sm".into(),
            definition: "{}".into(),
            role_arn: "r".into(),
            kind: "STANDARD".into(),
            created_ms: 1,
            updated_ms: None,
            revision_id: None,
            description: None,
            logging: None,
            tracing: false,
            version: None,
            last_version: 0,
        };
        seen.push(format!("{:?}", s.create_state_machine(&sm).unwrap()));
        seen.push(format!("{:?}", s.create_state_machine(&sm).unwrap()));
        s.put_state_machine(&StateMachineRecord {
            definition: "{ }".into(),
            updated_ms: Some(4),
            revision_id: Some("r1".into()),
            logging: Some("{}".into()),
            tracing: true,
            last_version: 1,
            ..sm.clone()
        })
        .unwrap();
        let v1 = StateMachineRecord {
            arn: "arn:sm:1".into(),
            description: Some("d".into()),
            version: Some(Version {
                of: "arn:sm".into(),
                number: 1,
            }),
            ..sm.clone()
        };
        s.create_state_machine(&v1).unwrap();
        seen.push(format!("{:?}", s.state_machines().unwrap()));
        seen.push(format!("{:?}", s.versions("arn:sm").unwrap()));
        let alias = AliasRecord {
            arn: "arn:sm:a".into(),
            machine: "arn:sm".into(),
            name: "a".into(),
            description: None,
            routing: vec![Route {
                version_arn: "arn:sm:1".into(),
                weight: 100,
            }],
            created_ms: 5,
            updated_ms: 5,
        };
        s.put_alias(&alias).unwrap();
        seen.push(format!("{:?}", s.aliases("arn:sm").unwrap()));
        s.delete_alias("arn:sm:a").unwrap();
        seen.push(format!("{:?}", s.alias("arn:sm:a").unwrap()));
        s.tag(
            "arn:sm",
            &[("b".into(), "1".into()), ("a".into(), "2".into())],
        )
        .unwrap();
        s.tag("arn:sm", &[("b".into(), "3".into())]).unwrap();
        s.untag("arn:sm", &["a".into()]).unwrap();
        seen.push(format!("{:?}", s.tags("arn:sm").unwrap()));
        s.set_execution_origin(
            "arn:e1",
            &ExecutionOrigin {
                version_arn: Some("arn:sm:1".into()),
                alias_arn: None,
            },
        )
        .unwrap();
        seen.push(format!("{:?}", s.execution_origin("arn:e1").unwrap()));
        seen.push(format!("{:?}", s.execution_origin("arn:e2").unwrap()));
        s.delete_state_machine("arn:sm").unwrap();
        seen.push(format!("{:?}", s.state_machine("arn:sm").unwrap()));
        seen.push(format!(
            "{:?}",
            s.execution("nope").err().map(|e| e.to_string())
        ));
        let act = |arn: &str, ms| ActivityRecord {
            arn: arn.into(),
            name: arn.into(),
            created_ms: ms,
        };
        seen.push(format!(
            "{:?}",
            s.create_activity(&act("arn:b", 5)).unwrap()
        ));
        seen.push(format!(
            "{:?}",
            s.create_activity(&act("arn:a", 6)).unwrap()
        ));
        // A second create answers with the first row.
        seen.push(format!(
            "{:?}",
            s.create_activity(&act("arn:b", 9)).unwrap()
        ));
        seen.push(format!("{:?}", s.activities().unwrap()));
        s.delete_activity("arn:b").unwrap();
        seen.push(format!("{:?}", s.activity("arn:b").unwrap()));
        seen.push(format!("{:?}", s.activity("arn:a").unwrap()));
        seen
    }

    /// The memory store answers exactly as the SQLite store does.
    #[test]
    fn memory_answers_as_sqlite_does() {
        let dir = tempfile::tempdir().unwrap();
        let db: Arc<dyn Store> = Db::open(dir.path()).unwrap();
        let sqlite = exercise(&*db);
        let memory = exercise(&Memory::new());
        for (i, (a, b)) in sqlite.iter().zip(&memory).enumerate() {
            assert_eq!(a, b, "answer {i}");
        }
        assert_eq!(sqlite.len(), memory.len());
    }
}
