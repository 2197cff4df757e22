//! The SQLite store: one file (`<state-dir>/shoal.db`) in WAL mode.
//!
//! Writes go through one writer thread that commits whatever has queued up in one
//! transaction, so that thousands of small records cost a handful of commits. A
//! write that fails is kept as the store's error: callers check [`Store::failed`] and
//! stop rather than lose work silently.

use crate::*;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// The schema this build writes. Each entry of [`MIGRATIONS`] moves one version up.
pub const SCHEMA_VERSION: i64 = 6;

const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE executions(
        arn TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        state_machine_arn TEXT NOT NULL,
        state_machine_name TEXT NOT NULL,
        definition TEXT NOT NULL,
        input TEXT NOT NULL,
        seed INTEGER NOT NULL,
        status TEXT NOT NULL,
        start_ms INTEGER NOT NULL,
        stop_ms INTEGER,
        output TEXT,
        error TEXT,
        cause TEXT,
        redrive_count INTEGER NOT NULL DEFAULT 0,
        redrive_ms INTEGER,
        history_offset INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX executions_by_machine ON executions(state_machine_arn, start_ms);
    CREATE TABLE journal(
        execution TEXT NOT NULL, seq INTEGER NOT NULL, at_ms INTEGER NOT NULL, event TEXT NOT NULL,
        PRIMARY KEY(execution, seq)) WITHOUT ROWID;
    CREATE TABLE history(
        execution TEXT NOT NULL, id INTEGER NOT NULL, at_ms INTEGER NOT NULL,
        type TEXT NOT NULL, details TEXT NOT NULL,
        PRIMARY KEY(execution, id)) WITHOUT ROWID;
    CREATE TABLE map_runs(
        arn TEXT PRIMARY KEY,
        execution TEXT NOT NULL,
        state TEXT NOT NULL,
        status TEXT NOT NULL,
        start_ms INTEGER NOT NULL,
        stop_ms INTEGER,
        max_concurrency INTEGER NOT NULL,
        tolerated_count INTEGER,
        tolerated_percentage REAL,
        item_counts TEXT NOT NULL,
        execution_counts TEXT NOT NULL,
        checkpoint TEXT,
        result TEXT,
        error TEXT,
        cause TEXT
    );
    CREATE INDEX map_runs_by_execution ON map_runs(execution);
    CREATE TABLE map_failures(
        map_run TEXT NOT NULL, child INTEGER NOT NULL, generation INTEGER NOT NULL,
        items INTEGER NOT NULL, at_ms INTEGER NOT NULL, error TEXT, cause TEXT,
        PRIMARY KEY(map_run, child, generation)) WITHOUT ROWID;
    CREATE TABLE map_outputs(
        map_run TEXT NOT NULL, child INTEGER NOT NULL, output TEXT NOT NULL,
        PRIMARY KEY(map_run, child)) WITHOUT ROWID;",
    // 1 -> 2: state machines, for `shoal serve`.
    "CREATE TABLE state_machines(
        arn TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        definition TEXT NOT NULL,
        role_arn TEXT NOT NULL,
        type TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER
    );
    CREATE INDEX executions_by_name ON executions(name, start_ms);",
    // 2 -> 3: what DescribeStateMachine tells beyond the definition, versions,
    // aliases, tags, and the version or alias an execution was started through.
    "ALTER TABLE state_machines ADD COLUMN revision_id TEXT;
    ALTER TABLE state_machines ADD COLUMN description TEXT;
    ALTER TABLE state_machines ADD COLUMN logging TEXT;
    ALTER TABLE state_machines ADD COLUMN tracing INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE state_machines ADD COLUMN version_of TEXT;
    ALTER TABLE state_machines ADD COLUMN version_number INTEGER;
    ALTER TABLE state_machines ADD COLUMN last_version INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX versions_by_machine ON state_machines(version_of, version_number);
    CREATE TABLE aliases(
        arn TEXT PRIMARY KEY,
        machine TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT,
        routing TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE tags(
        resource TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
        PRIMARY KEY(resource, key)) WITHOUT ROWID;
    CREATE TABLE execution_origins(
        execution TEXT PRIMARY KEY, version_arn TEXT, alias_arn TEXT) WITHOUT ROWID;",
    // 3 -> 4: activities (CreateActivity).
    "CREATE TABLE activities(
        arn TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );",
    // 4 -> 5: the STANDARD child executions of map runs (ListExecutions by mapRunArn,
    // DescribeExecution of a child).
    "CREATE TABLE map_children(
        arn TEXT PRIMARY KEY,
        map_run TEXT NOT NULL,
        child INTEGER NOT NULL,
        name TEXT NOT NULL,
        state_machine_arn TEXT NOT NULL,
        status TEXT NOT NULL,
        items INTEGER NOT NULL,
        start_ms INTEGER NOT NULL,
        stop_ms INTEGER NOT NULL,
        input TEXT NOT NULL,
        output TEXT,
        error TEXT,
        cause TEXT
    );
    CREATE INDEX map_children_by_run ON map_children(map_run, start_ms);",
    // 5 -> 6: what each journaled event made the engine do, so a replay can check
    // itself (NULL on rows written before: those replay unchecked).
    "ALTER TABLE journal ADD COLUMN effects TEXT;",
];

enum Op {
    Append {
        execution: String,
        journal: Vec<JournalEntry>,
        history: Vec<HistoryRow>,
    },
    FinishExecution {
        arn: String,
        status: ExecutionStatus,
        stop_ms: i64,
        output: Option<String>,
        error: Option<String>,
        cause: Option<String>,
    },
    MapRun(Box<MapRunRecord>),
    Failures(String, Vec<ChildFailure>),
    Outputs(String, Vec<(u64, String)>),
    Children(Vec<ChildExecution>),
    Flush(mpsc::Sender<()>),
}

/// The store. Cheap to share; reads use their own connection.
pub struct Db {
    path: PathBuf,
    /// The connection for reads and for writes that must answer at once (a
    /// duplicate name, an abort); queued writes go through the writer thread.
    conn: Mutex<Connection>,
    tx: Mutex<Option<mpsc::Sender<Op>>>,
    failed: Arc<Mutex<Option<String>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| {
        let message = e.to_string();
        let damaged = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
        );
        if damaged {
            Error::Damaged {
                path: path.display().to_string(),
                message,
            }
        } else {
            Error::Sqlite {
                path: path.display().to_string(),
                message,
            }
        }
    }
}

fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(sqlite(path))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sqlite(path))?;
    // WAL + NORMAL: a killed process loses nothing; only a power cut may lose the last commits.
    // Switching a new file to WAL can report SQLITE_BUSY without calling the busy handler
    // while another process does the same, so retry it here.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => break r.map_err(sqlite(path))?,
        }
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sqlite(path))?;
    Ok(conn)
}

/// Refuses a schema version this build cannot migrate from.
fn known_version(found: i64, path: &Path) -> Result<usize> {
    if found > SCHEMA_VERSION {
        return Err(Error::NewerSchema {
            path: path.display().to_string(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    usize::try_from(found).map_err(|_| Error::Damaged {
        path: path.display().to_string(),
        message: format!("its schema version is {found}"),
    })
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sqlite(path))?;
    if known_version(found, path)? == SCHEMA_VERSION as usize {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sqlite(path))?;
    // Another process may have migrated while this one waited for the lock.
    let now: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sqlite(path))?;
    for sql in &MIGRATIONS[known_version(now, path)?..] {
        tx.execute_batch(sql).map_err(sqlite(path))?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(sqlite(path))?;
    tx.commit().map_err(sqlite(path))
}

fn activity_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ActivityRecord> {
    Ok(ActivityRecord {
        arn: r.get(0)?,
        name: r.get(1)?,
        created_ms: r.get(2)?,
    })
}

impl Db {
    /// Opens (or creates) `dir/shoal.db`. A damaged file or a newer schema is an error
    /// and the file is left untouched.
    pub fn open(dir: &Path) -> Result<Arc<Db>> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Folder {
            path: dir.display().to_string(),
            source,
        })?;
        // SQLite reports a read-only folder only as "unable to open database file".
        static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let probe = dir.join(format!(".shoal-probe-{}-{n}", std::process::id()));
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|source| Error::Folder {
                path: dir.display().to_string(),
                source,
            })?;
        let path = dir.join("shoal.db");
        if path.exists() {
            check_header(&path)?;
        }
        let mut writer = connect(&path)?;
        migrate(&mut writer, &path)?;
        let conn = connect(&path)?;
        let (tx, rx) = mpsc::channel();
        let failed = Arc::new(Mutex::new(None));
        let (f2, p2) = (failed.clone(), path.clone());
        let handle = std::thread::Builder::new()
            .name("shoal-store".into())
            .spawn(move || write_loop(writer, rx, f2, p2))
            .map_err(|source| Error::Folder {
                path: dir.display().to_string(),
                source,
            })?;
        Ok(Arc::new(Db {
            path,
            conn: Mutex::new(conn),
            tx: Mutex::new(Some(tx)),
            failed,
            writer: Mutex::new(Some(handle)),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, op: Op) {
        if let Some(tx) = &*self.tx.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = tx.send(op);
        }
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(sqlite(&self.path))
    }

    fn child(&self, (mut c, status): (ChildExecution, String)) -> Result<ChildExecution> {
        c.status = status.parse().map_err(|_| Error::Damaged {
            path: self.path.display().to_string(),
            message: format!(
                "the child execution {} has the unknown status {status:?}",
                c.arn
            ),
        })?;
        Ok(c)
    }

    /// Row `row` (from 0, in order) of `execution`'s `table` lacks a sound `column`.
    fn damaged(&self, execution: &str, table: &str, row: usize, column: &str) -> Error {
        Error::Damaged {
            path: self.path.display().to_string(),
            message: format!("row {row} of the {table} of {execution} has no valid {column}"),
        }
    }
}

// Rows are read as they are stored: SQLite keeps a value that does not fit a
// column's type as it is, and a damaged row must be refused, not converted.
fn int(v: &SqlValue) -> Option<i64> {
    match v {
        SqlValue::Integer(n) => Some(*n),
        _ => None,
    }
}

/// A sequence number or id: an integer from 0.
fn count(v: &SqlValue) -> Option<u64> {
    int(v).and_then(|n| u64::try_from(n).ok())
}

fn text(v: SqlValue) -> Option<String> {
    match v {
        SqlValue::Text(s) => Some(s),
        _ => None,
    }
}

impl Store for Db {
    fn spill_dir(&self) -> Option<&Path> {
        self.path.parent()
    }

    /// The first write that failed, if any: from then on nothing more is written.
    fn failed(&self) -> Option<Error> {
        let f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        f.as_ref().map(|message| Error::Sqlite {
            path: self.path.display().to_string(),
            message: message.clone(),
        })
    }

    /// Waits until everything sent so far is committed.
    fn flush(&self) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        self.send(Op::Flush(tx));
        let _ = rx.recv();
        match self.failed() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Records a new execution, synchronously: a duplicate name must be refused now.
    fn create_execution(&self, e: &ExecutionRecord) -> Result<()> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let r = conn.execute(
            "INSERT INTO executions(arn, name, state_machine_arn, state_machine_name, definition,
                input, seed, status, start_ms, redrive_count, history_offset)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                e.arn,
                e.name,
                e.state_machine_arn,
                e.state_machine_name,
                e.definition,
                e.input,
                e.seed as i64,
                e.status.as_str(),
                e.start_ms,
                e.redrive_count,
                e.history_offset as i64
            ],
        );
        match r {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(Error::ExecutionAlreadyExists(e.arn.clone()))
            }
            Err(err) => Err(sqlite(&self.path)(err)),
        }
    }

    /// Marks a failed execution as running again, for a redrive.
    fn redrive_execution(&self, arn: &str, at_ms: i64, history_offset: u64) -> Result<()> {
        self.flush()?;
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.execute(
            "UPDATE executions SET status = 'RUNNING', stop_ms = NULL, output = NULL, error = NULL,
                cause = NULL, redrive_count = redrive_count + 1, redrive_ms = ?2, history_offset = ?3
             WHERE arn = ?1",
            params![arn, at_ms, history_offset as i64],
        )
        .map_err(sqlite(&self.path))?;
        Ok(())
    }

    /// Journal entries and the history they produced, committed together.
    fn append(&self, execution: &str, journal: Vec<JournalEntry>, history: Vec<HistoryRow>) {
        self.send(Op::Append {
            execution: execution.to_string(),
            journal,
            history,
        });
    }

    fn finish_execution(
        &self,
        arn: &str,
        status: ExecutionStatus,
        stop_ms: i64,
        output: Option<String>,
        error: Option<String>,
        cause: Option<String>,
    ) {
        self.send(Op::FinishExecution {
            arn: arn.to_string(),
            status,
            stop_ms,
            output,
            error,
            cause,
        });
    }

    /// Inserts or replaces a map run's row (counters, checkpoint, verdict).
    fn put_map_run(&self, m: MapRunRecord) {
        self.send(Op::MapRun(Box::new(m)));
    }

    fn add_failures(&self, map_run: &str, failures: Vec<ChildFailure>) {
        if !failures.is_empty() {
            self.send(Op::Failures(map_run.to_string(), failures));
        }
    }

    /// Child outputs of a map run without a ResultWriter (at most 256 KiB in all).
    fn add_outputs(&self, map_run: &str, outputs: Vec<(u64, String)>) {
        if !outputs.is_empty() {
            self.send(Op::Outputs(map_run.to_string(), outputs));
        }
    }

    fn create_state_machine(&self, m: &StateMachineRecord) -> Result<bool> {
        self.flush()?;
        let r = self.read(|c| insert_sm(c, "IGNORE", m))?;
        Ok(r == 1)
    }

    fn put_state_machine(&self, m: &StateMachineRecord) -> Result<()> {
        self.flush()?;
        self.read(|c| insert_sm(c, "REPLACE", m)).map(|_| ())
    }

    fn delete_state_machine(&self, arn: &str) -> Result<()> {
        self.read(|c| c.execute("DELETE FROM state_machines WHERE arn = ?1", [arn]))
            .map(|_| ())
    }

    fn state_machine(&self, arn: &str) -> Result<Option<StateMachineRecord>> {
        self.read(|c| {
            c.query_row(&format!("{SM_SELECT} WHERE arn = ?1"), [arn], sm_row)
                .optional()
        })
    }

    fn state_machines(&self) -> Result<Vec<StateMachineRecord>> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "{SM_SELECT} WHERE version_of IS NULL ORDER BY name"
            ))?;
            let rows = st.query_map([], sm_row)?;
            rows.collect()
        })
    }

    fn versions(&self, machine: &str) -> Result<Vec<StateMachineRecord>> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "{SM_SELECT} WHERE version_of = ?1 ORDER BY version_number DESC"
            ))?;
            let rows = st.query_map([machine], sm_row)?;
            rows.collect()
        })
    }

    fn put_alias(&self, a: &AliasRecord) -> Result<()> {
        let routing: Vec<(&str, u32)> = a
            .routing
            .iter()
            .map(|r| (r.version_arn.as_str(), r.weight))
            .collect();
        let routing = serde_json::to_string(&routing).unwrap_or_default();
        self.read(|c| {
            c.execute(
                "INSERT OR REPLACE INTO aliases(arn, machine, name, description, routing, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![a.arn, a.machine, a.name, a.description, routing, a.created_ms, a.updated_ms],
            )
        })
        .map(|_| ())
    }

    fn alias(&self, arn: &str) -> Result<Option<AliasRecord>> {
        self.read(|c| {
            c.query_row(&format!("{ALIAS_SELECT} WHERE arn = ?1"), [arn], alias_row)
                .optional()
        })
    }

    fn aliases(&self, machine: &str) -> Result<Vec<AliasRecord>> {
        self.read(|c| {
            let mut st = c.prepare(&format!("{ALIAS_SELECT} WHERE machine = ?1 ORDER BY name"))?;
            let rows = st.query_map([machine], alias_row)?;
            rows.collect()
        })
    }

    fn delete_alias(&self, arn: &str) -> Result<()> {
        self.read(|c| c.execute("DELETE FROM aliases WHERE arn = ?1", [arn]))
            .map(|_| ())
    }

    fn create_activity(&self, a: &ActivityRecord) -> Result<ActivityRecord> {
        self.read(|c| {
            c.execute(
                "INSERT OR IGNORE INTO activities(arn, name, created_ms) VALUES (?1, ?2, ?3)",
                params![a.arn, a.name, a.created_ms],
            )?;
            c.query_row(
                "SELECT arn, name, created_ms FROM activities WHERE arn = ?1",
                [&a.arn],
                activity_row,
            )
        })
    }

    fn activity(&self, arn: &str) -> Result<Option<ActivityRecord>> {
        self.read(|c| {
            c.query_row(
                "SELECT arn, name, created_ms FROM activities WHERE arn = ?1",
                [arn],
                activity_row,
            )
            .optional()
        })
    }

    fn activities(&self) -> Result<Vec<ActivityRecord>> {
        self.read(|c| {
            let mut st =
                c.prepare("SELECT arn, name, created_ms FROM activities ORDER BY created_ms, arn")?;
            let rows = st.query_map([], activity_row)?;
            rows.collect()
        })
    }

    fn delete_activity(&self, arn: &str) -> Result<()> {
        self.read(|c| c.execute("DELETE FROM activities WHERE arn = ?1", [arn]))
            .map(|_| ())
    }

    fn tag(&self, resource: &str, tags: &[(String, String)]) -> Result<()> {
        self.read(|c| {
            for (k, v) in tags {
                c.execute(
                    "INSERT OR REPLACE INTO tags(resource, key, value) VALUES (?1, ?2, ?3)",
                    params![resource, k, v],
                )?;
            }
            Ok(())
        })
    }

    fn untag(&self, resource: &str, keys: &[String]) -> Result<()> {
        self.read(|c| {
            for k in keys {
                c.execute(
                    "DELETE FROM tags WHERE resource = ?1 AND key = ?2",
                    params![resource, k],
                )?;
            }
            Ok(())
        })
    }

    fn tags(&self, resource: &str) -> Result<Vec<(String, String)>> {
        self.read(|c| {
            let mut st =
                c.prepare("SELECT key, value FROM tags WHERE resource = ?1 ORDER BY key")?;
            let rows = st.query_map([resource], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    fn set_execution_origin(&self, execution: &str, origin: &ExecutionOrigin) -> Result<()> {
        self.read(|c| {
            c.execute(
                "INSERT OR REPLACE INTO execution_origins(execution, version_arn, alias_arn)
                 VALUES (?1, ?2, ?3)",
                params![execution, origin.version_arn, origin.alias_arn],
            )
        })
        .map(|_| ())
    }

    fn execution_origin(&self, execution: &str) -> Result<ExecutionOrigin> {
        self.read(|c| {
            c.query_row(
                "SELECT version_arn, alias_arn FROM execution_origins WHERE execution = ?1",
                [execution],
                |r| {
                    Ok(ExecutionOrigin {
                        version_arn: r.get(0)?,
                        alias_arn: r.get(1)?,
                    })
                },
            )
            .optional()
        })
        .map(Option::unwrap_or_default)
    }

    /// StopExecution: the execution and its running map runs end ABORTED, and the
    /// history says so. False when it was not running.
    fn abort_execution(
        &self,
        arn: &str,
        at_ms: i64,
        error: Option<&str>,
        cause: Option<&str>,
    ) -> Result<bool> {
        self.flush()?;
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.path.clone();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sqlite(&path))?;
        let n = tx
            .execute(
                "UPDATE executions SET status = 'ABORTED', stop_ms = ?2, error = ?3, cause = ?4
                 WHERE arn = ?1 AND status = 'RUNNING'",
                params![arn, at_ms, error, cause],
            )
            .map_err(sqlite(&path))?;
        if n == 1 {
            tx.execute(
                "UPDATE map_runs SET status = 'ABORTED', stop_ms = ?2 WHERE execution = ?1 AND status = 'RUNNING'",
                params![arn, at_ms],
            )
            .map_err(sqlite(&path))?;
            let details = serde_json::json!({"error": error, "cause": cause}).to_string();
            tx.execute(
                "INSERT INTO history(execution, id, at_ms, type, details)
                 SELECT ?1, COALESCE(MAX(id), 0) + 1, ?2, 'ExecutionAborted', ?3 FROM history WHERE execution = ?1",
                params![arn, at_ms, details],
            )
            .map_err(sqlite(&path))?;
        }
        tx.commit().map_err(sqlite(&path))?;
        Ok(n == 1)
    }

    fn execution(&self, arn_or_name: &str) -> Result<ExecutionRecord> {
        // By primary key for an ARN; a name goes through its index.
        let by = if arn_or_name.starts_with("arn:") {
            "arn"
        } else {
            "name"
        };
        let found = self.read(|c| {
            c.query_row(
                &format!("{EXEC_SELECT} WHERE {by} = ?1 ORDER BY start_ms DESC LIMIT 1"),
                [arn_or_name],
                exec_row,
            )
            .optional()
        })?;
        found.ok_or_else(|| Error::ExecutionDoesNotExist(arn_or_name.to_string()))
    }

    /// Every execution, newest first.
    fn executions(&self) -> Result<Vec<ExecutionRecord>> {
        self.read(|c| {
            let mut st = c.prepare(&format!("{EXEC_SELECT} ORDER BY start_ms DESC"))?;
            let rows = st.query_map([], exec_row)?;
            rows.collect()
        })
    }

    fn journal(&self, execution: &str) -> Result<Vec<JournalEntry>> {
        let rows = self.read(|c| {
            let mut st = c.prepare(
                "SELECT seq, at_ms, event, effects FROM journal WHERE execution = ?1 ORDER BY seq",
            )?;
            let rows = st.query_map([execution], |r| {
                Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?])
            })?;
            rows.collect::<rusqlite::Result<Vec<[SqlValue; 4]>>>()
        })?;
        let bad = |row: usize, what: &str| self.damaged(execution, "journal", row, what);
        rows.into_iter()
            .enumerate()
            .map(|(i, [seq, at_ms, event, effects])| {
                Ok(JournalEntry {
                    seq: count(&seq).ok_or_else(|| bad(i, "seq"))?,
                    at_ms: int(&at_ms).ok_or_else(|| bad(i, "at_ms"))?,
                    event: text(event).ok_or_else(|| bad(i, "event"))?,
                    effects: match effects {
                        SqlValue::Null => None,
                        v => Some(text(v).ok_or_else(|| bad(i, "effects"))?),
                    },
                })
            })
            .collect()
    }

    /// Drops the journal from `seq` on (a redrive replays up to the failure).
    fn truncate_journal(&self, execution: &str, seq: u64) -> Result<()> {
        self.flush()?;
        self.read(|c| {
            c.execute(
                "DELETE FROM journal WHERE execution = ?1 AND seq >= ?2",
                params![execution, seq as i64],
            )
        })
        .map(|_| ())
    }

    fn history(&self, execution: &str) -> Result<Vec<HistoryRow>> {
        let rows = self.read(|c| {
            let mut st = c.prepare(
                "SELECT id, at_ms, type, details FROM history WHERE execution = ?1 ORDER BY id",
            )?;
            let rows = st.query_map([execution], |r| {
                Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?])
            })?;
            rows.collect::<rusqlite::Result<Vec<[SqlValue; 4]>>>()
        })?;
        let bad = |row: usize, what: &str| self.damaged(execution, "history", row, what);
        rows.into_iter()
            .enumerate()
            .map(|(i, [id, at_ms, kind, details])| {
                Ok(HistoryRow {
                    // History ids count from 1.
                    id: count(&id)
                        .filter(|id| *id > 0)
                        .ok_or_else(|| bad(i, "id"))?,
                    at_ms: int(&at_ms).ok_or_else(|| bad(i, "at_ms"))?,
                    kind: text(kind).ok_or_else(|| bad(i, "type"))?,
                    details: text(details).ok_or_else(|| bad(i, "details"))?,
                })
            })
            .collect()
    }

    fn map_run(&self, arn: &str) -> Result<Option<MapRunRecord>> {
        self.read(|c| {
            c.query_row(&format!("{MAP_SELECT} WHERE arn = ?1"), [arn], map_row)
                .optional()
        })
    }

    fn map_runs(&self, execution: &str) -> Result<Vec<MapRunRecord>> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "{MAP_SELECT} WHERE execution = ?1 ORDER BY start_ms"
            ))?;
            let rows = st.query_map([execution], map_row)?;
            rows.collect()
        })
    }

    fn failures(&self, map_run: &str) -> Result<Vec<ChildFailure>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT child, generation, items, at_ms, error, cause FROM map_failures
                 WHERE map_run = ?1 ORDER BY child, generation",
            )?;
            let rows = st.query_map([map_run], |r| {
                Ok(ChildFailure {
                    child: r.get::<_, i64>(0)? as u64,
                    generation: r.get(1)?,
                    items: r.get::<_, i64>(2)? as u64,
                    at_ms: r.get(3)?,
                    error: r.get(4)?,
                    cause: r.get(5)?,
                })
            })?;
            rows.collect()
        })
    }

    fn add_children(&self, children: Vec<ChildExecution>) {
        if !children.is_empty() {
            self.send(Op::Children(children));
        }
    }

    fn children(&self, map_run: &str) -> Result<Vec<ChildExecution>> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "{CHILD_SELECT} WHERE map_run = ?1 ORDER BY start_ms DESC, child DESC"
            ))?;
            let rows = st.query_map([map_run], child_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?
        .into_iter()
        .map(|row| self.child(row))
        .collect()
    }

    fn child_execution(&self, arn: &str) -> Result<Option<ChildExecution>> {
        self.read(|c| {
            c.query_row(&format!("{CHILD_SELECT} WHERE arn = ?1"), [arn], child_row)
                .optional()
        })?
        .map(|row| self.child(row))
        .transpose()
    }

    fn outputs(&self, map_run: &str) -> Result<Vec<(u64, String)>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT child, output FROM map_outputs WHERE map_run = ?1 ORDER BY child",
            )?;
            let rows = st.query_map([map_run], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?;
            rows.collect()
        })
    }
}

const CHILD_SELECT: &str = "SELECT arn, map_run, child, name, state_machine_arn, status, items,
     start_ms, stop_ms, input, output, error, cause FROM map_children";

/// A child row, with its status as stored: [`Db::child`] refuses one it does not know.
fn child_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(ChildExecution, String)> {
    Ok((
        ChildExecution {
            arn: r.get(0)?,
            map_run: r.get(1)?,
            child: r.get::<_, i64>(2)? as u64,
            name: r.get(3)?,
            state_machine_arn: r.get(4)?,
            status: ExecutionStatus::Running,
            items: r.get::<_, i64>(6)? as u64,
            start_ms: r.get(7)?,
            stop_ms: r.get(8)?,
            input: r.get(9)?,
            output: r.get(10)?,
            error: r.get(11)?,
            cause: r.get(12)?,
        },
        r.get(5)?,
    ))
}

impl Drop for Db {
    fn drop(&mut self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
    }
}

/// SQLite would happily treat a foreign file as damaged only on first use; say so up front.
fn check_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut head = [0u8; 16];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|source| Error::Folder {
            path: path.display().to_string(),
            source,
        })?;
    if n > 0 && (n < 16 || &head != b"SQLite format 3\0") {
        return Err(Error::Damaged {
            path: path.display().to_string(),
            message: "not an SQLite database".into(),
        });
    }
    Ok(())
}

const SM_COLUMNS: &str = "arn, name, definition, role_arn, type, created_ms, updated_ms, \
    revision_id, description, logging, tracing, version_of, version_number, last_version";
const SM_VALUES: &str = "?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14";
const SM_SELECT: &str = "SELECT arn, name, definition, role_arn, type, created_ms, updated_ms, \
    revision_id, description, logging, tracing, version_of, version_number, last_version \
    FROM state_machines";

/// `INSERT OR <conflict>` of a state machine row.
fn insert_sm(c: &Connection, conflict: &str, m: &StateMachineRecord) -> rusqlite::Result<usize> {
    let of = m.version.as_ref().map(|v| v.of.as_str());
    let number = m.version.as_ref().map(|v| v.number);
    c.execute(
        &format!("INSERT OR {conflict} INTO state_machines({SM_COLUMNS}) VALUES ({SM_VALUES})"),
        params![
            m.arn,
            m.name,
            m.definition,
            m.role_arn,
            m.kind,
            m.created_ms,
            m.updated_ms,
            m.revision_id,
            m.description,
            m.logging,
            m.tracing,
            of,
            number,
            m.last_version,
        ],
    )
}

fn sm_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StateMachineRecord> {
    let of: Option<String> = r.get(11)?;
    let number: Option<u32> = r.get(12)?;
    Ok(StateMachineRecord {
        arn: r.get(0)?,
        name: r.get(1)?,
        definition: r.get(2)?,
        role_arn: r.get(3)?,
        kind: r.get(4)?,
        created_ms: r.get(5)?,
        updated_ms: r.get(6)?,
        revision_id: r.get(7)?,
        description: r.get(8)?,
        logging: r.get(9)?,
        tracing: r.get(10)?,
        version: of.zip(number).map(|(of, number)| Version { of, number }),
        last_version: r.get(13)?,
    })
}

const ALIAS_SELECT: &str =
    "SELECT arn, machine, name, description, routing, created_ms, updated_ms FROM aliases";

fn alias_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AliasRecord> {
    let routing: String = r.get(4)?;
    let routing: Vec<(String, u32)> = serde_json::from_str(&routing).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(AliasRecord {
        arn: r.get(0)?,
        machine: r.get(1)?,
        name: r.get(2)?,
        description: r.get(3)?,
        routing: routing
            .into_iter()
            .map(|(version_arn, weight)| Route {
                version_arn,
                weight,
            })
            .collect(),
        created_ms: r.get(5)?,
        updated_ms: r.get(6)?,
    })
}

const EXEC_SELECT: &str =
    "SELECT arn, name, state_machine_arn, state_machine_name, definition, input,
    seed, status, start_ms, stop_ms, output, error, cause, redrive_count, redrive_ms, history_offset
    FROM executions";

fn exec_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExecutionRecord> {
    Ok(ExecutionRecord {
        arn: r.get(0)?,
        name: r.get(1)?,
        state_machine_arn: r.get(2)?,
        state_machine_name: r.get(3)?,
        definition: r.get(4)?,
        input: r.get(5)?,
        seed: r.get::<_, i64>(6)? as u64,
        status: r
            .get::<_, String>(7)?
            .parse()
            .map_err(|e: shoal_asl::UnknownStatus| {
                rusqlite::Error::FromSqlConversionFailure(
                    7,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
        start_ms: r.get(8)?,
        stop_ms: r.get(9)?,
        output: r.get(10)?,
        error: r.get(11)?,
        cause: r.get(12)?,
        redrive_count: r.get(13)?,
        redrive_ms: r.get(14)?,
        history_offset: r.get::<_, i64>(15)? as u64,
    })
}

const MAP_SELECT: &str = "SELECT arn, execution, state, status, start_ms, stop_ms, max_concurrency,
    tolerated_count, tolerated_percentage, item_counts, execution_counts, checkpoint, result,
    error, cause FROM map_runs";

fn map_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MapRunRecord> {
    Ok(MapRunRecord {
        arn: r.get(0)?,
        execution: r.get(1)?,
        state: r.get(2)?,
        status: r.get(3)?,
        start_ms: r.get(4)?,
        stop_ms: r.get(5)?,
        max_concurrency: r.get::<_, i64>(6)? as u64,
        tolerated_count: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
        tolerated_percentage: r.get(8)?,
        item_counts: r.get(9)?,
        execution_counts: r.get(10)?,
        checkpoint: r.get(11)?,
        result: r.get(12)?,
        error: r.get(13)?,
        cause: r.get(14)?,
    })
}

fn write_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<Op>,
    failed: Arc<Mutex<Option<String>>>,
    path: PathBuf,
) {
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < 10_000 {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut waiters = Vec::new();
        let writes: Vec<Op> = ops
            .into_iter()
            .filter_map(|op| match op {
                Op::Flush(w) => {
                    waiters.push(w);
                    None
                }
                op => Some(op),
            })
            .collect();
        let broken = failed.lock().unwrap_or_else(|p| p.into_inner()).is_some();
        if !writes.is_empty() && !broken {
            if let Err(e) = commit(&mut conn, writes) {
                let message = format!("{e} (writing {})", path.display());
                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
            }
        }
        for w in waiters {
            let _ = w.send(());
        }
    }
}

fn commit(conn: &mut Connection, ops: Vec<Op>) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for op in ops {
        match op {
            Op::Append {
                execution,
                journal,
                history,
            } => {
                let mut j = tx.prepare_cached(
                    "INSERT OR REPLACE INTO journal(execution, seq, at_ms, event, effects) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for e in journal {
                    j.execute(params![
                        execution,
                        e.seq as i64,
                        e.at_ms,
                        e.event,
                        e.effects
                    ])?;
                }
                let mut h = tx.prepare_cached(
                    "INSERT OR REPLACE INTO history(execution, id, at_ms, type, details) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for e in history {
                    h.execute(params![execution, e.id as i64, e.at_ms, e.kind, e.details])?;
                }
            }
            Op::FinishExecution {
                arn,
                status,
                stop_ms,
                output,
                error,
                cause,
            } => {
                tx.execute(
                    "UPDATE executions SET status = ?2, stop_ms = ?3, output = ?4, error = ?5, cause = ?6
                     WHERE arn = ?1",
                    params![arn, status.as_str(), stop_ms, output, error, cause],
                )?;
            }
            Op::MapRun(m) => {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO map_runs(arn, execution, state, status, start_ms, stop_ms,
                        max_concurrency, tolerated_count, tolerated_percentage, item_counts,
                        execution_counts, checkpoint, result, error, cause)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                )?
                .execute(params![
                    m.arn,
                    m.execution,
                    m.state,
                    m.status,
                    m.start_ms,
                    m.stop_ms,
                    m.max_concurrency as i64,
                    m.tolerated_count.map(|v| v as i64),
                    m.tolerated_percentage,
                    m.item_counts,
                    m.execution_counts,
                    m.checkpoint,
                    m.result,
                    m.error,
                    m.cause
                ])?;
            }
            Op::Failures(map_run, fs) => {
                let mut st = tx.prepare_cached(
                    "INSERT OR REPLACE INTO map_failures(map_run, child, generation, items, at_ms, error, cause)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for f in fs {
                    st.execute(params![
                        map_run,
                        f.child as i64,
                        f.generation,
                        f.items as i64,
                        f.at_ms,
                        f.error,
                        f.cause
                    ])?;
                }
            }
            Op::Outputs(map_run, outs) => {
                let mut st = tx.prepare_cached(
                    "INSERT OR REPLACE INTO map_outputs(map_run, child, output) VALUES (?1, ?2, ?3)",
                )?;
                for (child, out) in outs {
                    st.execute(params![map_run, child as i64, out])?;
                }
            }
            Op::Children(cs) => {
                let mut st = tx.prepare_cached(
                    "INSERT OR REPLACE INTO map_children(arn, map_run, child, name, state_machine_arn,
                     status, items, start_ms, stop_ms, input, output, error, cause)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )?;
                for c in cs {
                    st.execute(params![
                        c.arn,
                        c.map_run,
                        c.child as i64,
                        c.name,
                        c.state_machine_arn,
                        c.status.as_str(),
                        c.items as i64,
                        c.start_ms,
                        c.stop_ms,
                        c.input,
                        c.output,
                        c.error,
                        c.cause
                    ])?;
                }
            }
            Op::Flush(_) => {}
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> ExecutionRecord {
        ExecutionRecord {
            arn: format!("arn:aws:states:us-east-1:1:execution:sm:{name}"),
            name: name.into(),
            state_machine_arn: "arn:aws:states:us-east-1:1:stateMachine:sm".into(),
            state_machine_name: "sm".into(),
            definition: "{}".into(),
            input: "{}".into(),
            seed: 7,
            status: ExecutionStatus::Running,
            start_ms: 1000,
            stop_ms: None,
            output: None,
            error: None,
            cause: None,
            redrive_count: 0,
            redrive_ms: None,
            history_offset: 0,
        }
    }

    #[test]
    fn executions_journal_and_history_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let e = record("a");
        db.create_execution(&e).unwrap();
        assert!(matches!(
            db.create_execution(&e),
            Err(Error::ExecutionAlreadyExists(_))
        ));
        let j = JournalEntry {
            seq: 0,
            at_ms: 5,
            event: "{\"t\":\"Start\"}".into(),
            effects: Some("[]".into()),
        };
        let h = HistoryRow {
            id: 1,
            at_ms: 5,
            kind: "ExecutionStarted".into(),
            details: "{}".into(),
        };
        db.append(&e.arn, vec![j.clone()], vec![h.clone()]);
        db.finish_execution(
            &e.arn,
            ExecutionStatus::Succeeded,
            9,
            Some("1".into()),
            None,
            None,
        );
        db.flush().unwrap();
        drop(db);
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(db.journal(&e.arn).unwrap(), vec![j]);
        assert_eq!(db.history(&e.arn).unwrap(), vec![h]);
        let got = db.execution("a").unwrap();
        assert_eq!(got.status, ExecutionStatus::Succeeded);
        assert_eq!(got.output.as_deref(), Some("1"));
        assert_eq!(got.stop_ms, Some(9));
        assert!(matches!(
            db.execution("nope"),
            Err(Error::ExecutionDoesNotExist(_))
        ));
    }

    #[test]
    fn many_openers_of_a_new_store_all_succeed() {
        // Parallel `shoal run`s on a fresh state folder once failed with "database is locked".
        for _ in 0..30 {
            let dir = tempfile::tempdir().unwrap();
            let openers: Vec<_> = (0..6)
                .map(|_| {
                    let d = dir.path().to_path_buf();
                    std::thread::spawn(move || Db::open(&d).map(|_| ()))
                })
                .collect();
            for o in openers {
                o.join().unwrap().unwrap();
            }
        }
    }

    #[test]
    fn a_damaged_or_newer_store_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoal.db");
        std::fs::write(&path, b"this is not a database at all").unwrap();
        let err = Db::open(dir.path()).err().unwrap();
        assert!(matches!(err, Error::Damaged { .. }), "{err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"this is not a database at all"
        );

        let dir = tempfile::tempdir().unwrap();
        drop(Db::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join("shoal.db")).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = Db::open(dir.path()).err().unwrap();
        assert!(
            matches!(err, Error::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1),
            "{err}"
        );
        assert!(err.to_string().contains("newer"), "{err}");
    }

    /// A store written by an older schema opens, keeps its rows, and takes activities
    /// and map-run children.
    #[test]
    fn a_version_3_store_migrates_to_the_current_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoal.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            for sql in &MIGRATIONS[..3] {
                tx.execute_batch(sql).unwrap();
            }
            tx.pragma_update(None, "user_version", 3).unwrap();
            tx.execute(
                "INSERT INTO state_machines(arn, name, definition, role_arn, type, created_ms)
                 VALUES ('arn:sm', 'sm', '{}', 'r', 'STANDARD', 1)",
                [],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let db = Db::open(dir.path()).unwrap();
        assert!(db.state_machine("arn:sm").unwrap().is_some());
        let a = ActivityRecord {
            arn: "arn:act".into(),
            name: "act".into(),
            created_ms: 2,
        };
        assert_eq!(db.create_activity(&a).unwrap(), a);
        assert_eq!(db.activities().unwrap(), vec![a]);
        assert!(db.children("arn:mr").unwrap().is_empty());
        let v: i64 = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    /// A version 5 store's journal rows have no effects: they read as unchecked.
    #[test]
    fn a_version_5_store_migrates_to_6_and_its_journal_reads_without_effects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoal.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            for sql in &MIGRATIONS[..5] {
                tx.execute_batch(sql).unwrap();
            }
            tx.pragma_update(None, "user_version", 5).unwrap();
            tx.execute(
                "INSERT INTO journal(execution, seq, at_ms, event) VALUES ('arn:e', 0, 5, '{\"t\":\"Start\"}')",
                [],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let db = Db::open(dir.path()).unwrap();
        let old = JournalEntry {
            seq: 0,
            at_ms: 5,
            event: r#"{"t":"Start"}"#.into(),
            effects: None,
        };
        let new = JournalEntry {
            seq: 1,
            at_ms: 6,
            event: r#"{"t":"TimerFired","id":1}"#.into(),
            effects: Some("[]".into()),
        };
        db.append("arn:e", vec![new.clone()], Vec::new());
        db.flush().unwrap();
        assert_eq!(db.journal("arn:e").unwrap(), vec![old, new]);
        let v: i64 = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 6);
    }

    #[test]
    fn a_negative_schema_version_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        drop(Db::open(dir.path()).unwrap());
        let path = dir.path().join("shoal.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", -1).unwrap();
        drop(conn);
        let before = std::fs::read(&path).unwrap();
        let err = Db::open(dir.path()).err().unwrap();
        assert!(matches!(err, Error::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("-1"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn damaged_journal_and_history_rows_are_refused_naming_the_execution() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        // What another program or a broken disk could leave: SQLite keeps a value that
        // does not fit an INTEGER column as it is.
        let rows = [
            (
                "journal",
                "INSERT INTO journal VALUES (?1, -1, 5, '{}', NULL)",
            ),
            (
                "journal",
                "INSERT INTO journal VALUES (?1, 'x', 5, '{}', NULL)",
            ),
            (
                "journal",
                "INSERT INTO journal VALUES (?1, 0, 5, X'00', NULL)",
            ),
            (
                "journal",
                "INSERT INTO journal VALUES (?1, 0, 'soon', '{}', NULL)",
            ),
            (
                "journal",
                "INSERT INTO journal VALUES (?1, 0, 5, '{}', X'01')",
            ),
            (
                "history",
                "INSERT INTO history VALUES (?1, -4, 5, 'ExecutionStarted', '{}')",
            ),
            (
                "history",
                "INSERT INTO history VALUES (?1, 'one', 5, 'ExecutionStarted', '{}')",
            ),
            (
                "history",
                "INSERT INTO history VALUES (?1, 1, 5, X'07', '{}')",
            ),
        ];
        for (i, (table, sql)) in rows.iter().enumerate() {
            let e = record(&format!("e{i}"));
            db.create_execution(&e).unwrap();
            Connection::open(dir.path().join("shoal.db"))
                .unwrap()
                .execute(sql, [&e.arn])
                .unwrap();
            let got = if *table == "journal" {
                db.journal(&e.arn).map(|_| ())
            } else {
                db.history(&e.arn).map(|_| ())
            };
            let err = got
                .err()
                .unwrap_or_else(|| panic!("{sql} was read as sound"));
            assert!(matches!(err, Error::Damaged { .. }), "{sql}: {err}");
            let text = err.to_string();
            assert!(
                text.contains(&e.arn) && text.contains(table),
                "{sql}: {text}"
            );
        }
    }

    #[test]
    fn map_runs_failures_and_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let m = MapRunRecord {
            arn: "m".into(),
            execution: "e".into(),
            state: "Map".into(),
            status: "RUNNING".into(),
            item_counts: "{}".into(),
            execution_counts: "{}".into(),
            checkpoint: Some("{\"low\":3}".into()),
            ..Default::default()
        };
        db.put_map_run(m.clone());
        let f = ChildFailure {
            child: 4,
            generation: 0,
            items: 10,
            at_ms: 1,
            error: Some("E".into()),
            cause: None,
        };
        db.add_failures("m", vec![f.clone()]);
        db.add_outputs("m", vec![(0, "1".into()), (1, "2".into())]);
        db.flush().unwrap();
        assert_eq!(db.map_run("m").unwrap(), Some(m));
        assert_eq!(db.map_runs("e").unwrap().len(), 1);
        assert_eq!(db.failures("m").unwrap(), vec![f]);
        assert_eq!(db.outputs("m").unwrap().len(), 2);
    }
}
