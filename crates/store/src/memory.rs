//! The same rows as [`crate::Db`], in memory: for tests of the runtime and the server
//! that need no SQLite and no folder. Nothing survives the process.

use crate::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

#[derive(Default)]
struct Rows {
    executions: BTreeMap<String, ExecutionRecord>,
    journals: HashMap<String, Vec<JournalEntry>>,
    histories: HashMap<String, BTreeMap<u64, HistoryRow>>,
    state_machines: BTreeMap<String, StateMachineRecord>,
    aliases: BTreeMap<String, AliasRecord>,
    activities: BTreeMap<String, ActivityRecord>,
    tags: HashMap<String, BTreeMap<String, String>>,
    origins: HashMap<String, ExecutionOrigin>,
    map_runs: BTreeMap<String, MapRunRecord>,
    failures: HashMap<String, BTreeMap<(u64, u32), ChildFailure>>,
    outputs: HashMap<String, BTreeMap<u64, String>>,
    children: BTreeMap<String, ChildExecution>,
}

#[derive(Default)]
pub struct Memory {
    rows: Mutex<Rows>,
}

impl Memory {
    pub fn new() -> Memory {
        Memory::default()
    }

    fn rows(&self) -> std::sync::MutexGuard<'_, Rows> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for Memory {
    fn failed(&self) -> Option<Error> {
        None
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn create_execution(&self, e: &ExecutionRecord) -> Result<()> {
        let mut rows = self.rows();
        if rows.executions.contains_key(&e.arn) {
            return Err(Error::ExecutionAlreadyExists(e.arn.clone()));
        }
        rows.executions.insert(e.arn.clone(), e.clone());
        Ok(())
    }

    fn redrive_execution(&self, arn: &str, at_ms: i64, history_offset: u64) -> Result<()> {
        if let Some(e) = self.rows().executions.get_mut(arn) {
            e.status = ExecutionStatus::Running;
            e.stop_ms = None;
            e.output = None;
            e.error = None;
            e.cause = None;
            e.redrive_count += 1;
            e.redrive_ms = Some(at_ms);
            e.history_offset = history_offset;
        }
        Ok(())
    }

    fn append(&self, execution: &str, journal: Vec<JournalEntry>, history: Vec<HistoryRow>) {
        let mut rows = self.rows();
        let j = rows.journals.entry(execution.to_string()).or_default();
        for e in journal {
            // As the SQLite store's primary key: a replayed sequence number replaces.
            j.retain(|old| old.seq != e.seq);
            j.push(e);
        }
        j.sort_by_key(|e| e.seq);
        let h = rows.histories.entry(execution.to_string()).or_default();
        for e in history {
            h.insert(e.id, e);
        }
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
        if let Some(e) = self.rows().executions.get_mut(arn) {
            e.status = status;
            e.stop_ms = Some(stop_ms);
            e.output = output;
            e.error = error;
            e.cause = cause;
        }
    }

    fn put_map_run(&self, m: MapRunRecord) {
        self.rows().map_runs.insert(m.arn.clone(), m);
    }

    fn add_failures(&self, map_run: &str, failures: Vec<ChildFailure>) {
        let mut rows = self.rows();
        let f = rows.failures.entry(map_run.to_string()).or_default();
        for c in failures {
            f.insert((c.child, c.generation), c);
        }
    }

    fn add_outputs(&self, map_run: &str, outputs: Vec<(u64, String)>) {
        let mut rows = self.rows();
        let o = rows.outputs.entry(map_run.to_string()).or_default();
        o.extend(outputs);
    }

    fn add_children(&self, children: Vec<ChildExecution>) {
        let mut rows = self.rows();
        for c in children {
            rows.children.insert(c.arn.clone(), c);
        }
    }

    fn children(&self, map_run: &str) -> Result<Vec<ChildExecution>> {
        let mut all: Vec<ChildExecution> = self
            .rows()
            .children
            .values()
            .filter(|c| c.map_run == map_run)
            .cloned()
            .collect();
        all.sort_by_key(|c| std::cmp::Reverse((c.start_ms, c.child)));
        Ok(all)
    }

    fn child_execution(&self, arn: &str) -> Result<Option<ChildExecution>> {
        Ok(self.rows().children.get(arn).cloned())
    }

    fn create_state_machine(&self, m: &StateMachineRecord) -> Result<bool> {
        let mut rows = self.rows();
        if rows.state_machines.contains_key(&m.arn) {
            return Ok(false);
        }
        rows.state_machines.insert(m.arn.clone(), m.clone());
        Ok(true)
    }

    fn put_state_machine(&self, m: &StateMachineRecord) -> Result<()> {
        self.rows().state_machines.insert(m.arn.clone(), m.clone());
        Ok(())
    }

    fn delete_state_machine(&self, arn: &str) -> Result<()> {
        self.rows().state_machines.remove(arn);
        Ok(())
    }

    fn state_machine(&self, arn: &str) -> Result<Option<StateMachineRecord>> {
        Ok(self.rows().state_machines.get(arn).cloned())
    }

    fn state_machines(&self) -> Result<Vec<StateMachineRecord>> {
        let mut all: Vec<_> = self
            .rows()
            .state_machines
            .values()
            .filter(|m| m.version.is_none())
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    fn versions(&self, machine: &str) -> Result<Vec<StateMachineRecord>> {
        let mut all: Vec<_> = self
            .rows()
            .state_machines
            .values()
            .filter(|m| m.version.as_ref().is_some_and(|v| v.of == machine))
            .cloned()
            .collect();
        all.sort_by_key(|m| std::cmp::Reverse(m.version.as_ref().map(|v| v.number)));
        Ok(all)
    }

    fn put_alias(&self, a: &AliasRecord) -> Result<()> {
        self.rows().aliases.insert(a.arn.clone(), a.clone());
        Ok(())
    }

    fn alias(&self, arn: &str) -> Result<Option<AliasRecord>> {
        Ok(self.rows().aliases.get(arn).cloned())
    }

    fn aliases(&self, machine: &str) -> Result<Vec<AliasRecord>> {
        let mut all: Vec<_> = self
            .rows()
            .aliases
            .values()
            .filter(|a| a.machine == machine)
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    fn delete_alias(&self, arn: &str) -> Result<()> {
        self.rows().aliases.remove(arn);
        Ok(())
    }

    fn create_activity(&self, a: &ActivityRecord) -> Result<ActivityRecord> {
        let mut rows = self.rows();
        Ok(rows
            .activities
            .entry(a.arn.clone())
            .or_insert_with(|| a.clone())
            .clone())
    }

    fn activity(&self, arn: &str) -> Result<Option<ActivityRecord>> {
        Ok(self.rows().activities.get(arn).cloned())
    }

    fn activities(&self) -> Result<Vec<ActivityRecord>> {
        let mut all: Vec<_> = self.rows().activities.values().cloned().collect();
        all.sort_by(|a, b| (a.created_ms, &a.arn).cmp(&(b.created_ms, &b.arn)));
        Ok(all)
    }

    fn delete_activity(&self, arn: &str) -> Result<()> {
        self.rows().activities.remove(arn);
        Ok(())
    }

    fn tag(&self, resource: &str, tags: &[(String, String)]) -> Result<()> {
        let mut rows = self.rows();
        let t = rows.tags.entry(resource.to_string()).or_default();
        t.extend(tags.iter().cloned());
        Ok(())
    }

    fn untag(&self, resource: &str, keys: &[String]) -> Result<()> {
        if let Some(t) = self.rows().tags.get_mut(resource) {
            keys.iter().for_each(|k| {
                t.remove(k);
            });
        }
        Ok(())
    }

    fn tags(&self, resource: &str) -> Result<Vec<(String, String)>> {
        Ok(self
            .rows()
            .tags
            .get(resource)
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }

    fn set_execution_origin(&self, execution: &str, origin: &ExecutionOrigin) -> Result<()> {
        self.rows()
            .origins
            .insert(execution.to_string(), origin.clone());
        Ok(())
    }

    fn execution_origin(&self, execution: &str) -> Result<ExecutionOrigin> {
        Ok(self
            .rows()
            .origins
            .get(execution)
            .cloned()
            .unwrap_or_default())
    }

    fn abort_execution(
        &self,
        arn: &str,
        at_ms: i64,
        error: Option<&str>,
        cause: Option<&str>,
    ) -> Result<bool> {
        let mut rows = self.rows();
        let running = rows
            .executions
            .get(arn)
            .is_some_and(|e| e.status == ExecutionStatus::Running);
        if !running {
            return Ok(false);
        }
        if let Some(e) = rows.executions.get_mut(arn) {
            e.status = ExecutionStatus::Aborted;
            e.stop_ms = Some(at_ms);
            e.error = error.map(str::to_string);
            e.cause = cause.map(str::to_string);
        }
        for m in rows.map_runs.values_mut() {
            if m.execution == arn && m.status == "RUNNING" {
                m.status = "ABORTED".into();
                m.stop_ms = Some(at_ms);
            }
        }
        let h = rows.histories.entry(arn.to_string()).or_default();
        let id = h.keys().next_back().copied().unwrap_or(0) + 1;
        h.insert(
            id,
            HistoryRow {
                id,
                at_ms,
                kind: "ExecutionAborted".into(),
                details: serde_json::json!({"error": error, "cause": cause}).to_string(),
            },
        );
        Ok(true)
    }

    fn execution(&self, arn_or_name: &str) -> Result<ExecutionRecord> {
        let rows = self.rows();
        let found = if arn_or_name.starts_with("arn:") {
            rows.executions.get(arn_or_name).cloned()
        } else {
            rows.executions
                .values()
                .filter(|e| e.name == arn_or_name)
                .max_by_key(|e| e.start_ms)
                .cloned()
        };
        found.ok_or_else(|| Error::ExecutionDoesNotExist(arn_or_name.to_string()))
    }

    fn executions(&self) -> Result<Vec<ExecutionRecord>> {
        let mut all: Vec<_> = self.rows().executions.values().cloned().collect();
        all.sort_by_key(|e| std::cmp::Reverse(e.start_ms));
        Ok(all)
    }

    fn journal(&self, execution: &str) -> Result<Vec<JournalEntry>> {
        Ok(self
            .rows()
            .journals
            .get(execution)
            .cloned()
            .unwrap_or_default())
    }

    fn truncate_journal(&self, execution: &str, seq: u64) -> Result<()> {
        if let Some(j) = self.rows().journals.get_mut(execution) {
            j.retain(|e| e.seq < seq);
        }
        Ok(())
    }

    fn history(&self, execution: &str) -> Result<Vec<HistoryRow>> {
        Ok(self
            .rows()
            .histories
            .get(execution)
            .map(|h| h.values().cloned().collect())
            .unwrap_or_default())
    }

    fn map_run(&self, arn: &str) -> Result<Option<MapRunRecord>> {
        Ok(self.rows().map_runs.get(arn).cloned())
    }

    fn map_runs(&self, execution: &str) -> Result<Vec<MapRunRecord>> {
        let mut all: Vec<_> = self
            .rows()
            .map_runs
            .values()
            .filter(|m| m.execution == execution)
            .cloned()
            .collect();
        all.sort_by_key(|m| m.start_ms);
        Ok(all)
    }

    fn failures(&self, map_run: &str) -> Result<Vec<ChildFailure>> {
        Ok(self
            .rows()
            .failures
            .get(map_run)
            .map(|f| f.values().cloned().collect())
            .unwrap_or_default())
    }

    fn outputs(&self, map_run: &str) -> Result<Vec<(u64, String)>> {
        Ok(self
            .rows()
            .outputs
            .get(map_run)
            .map(|o| o.iter().map(|(k, v)| (*k, v.clone())).collect())
            .unwrap_or_default())
    }

    fn spill_dir(&self) -> Option<&Path> {
        None
    }
}
