//! What makes an execution survive a crash: its events are journaled, so a restart
//! replays them into a fresh [`Execution`] and carries out what was still open; map
//! runs checkpoint which children ended and where their result files stand.

use serde_json::{json, Value};
use shoal_asl::ExecutionStatus;
use shoal_engine::maprun::{Counts, DoneSet, Restored};
use shoal_engine::{Effect, EffectId, Event, Execution, Failure, Outcome};
use shoal_store::{HistoryRow, JournalEntry, Store};
use std::sync::Arc;

/// Why a durable run could not go on. ASL failures are outcomes, not errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] shoal_store::Error),
    #[error("this runtime has no state store")]
    NoStore,
    #[error("the stored definition of {arn} no longer parses: {message}")]
    Definition { arn: String, message: String },
    #[error("the journal of {arn} is damaged at entry {seq}: {message}")]
    Journal {
        arn: String,
        seq: u64,
        message: String,
    },
    #[error("the stored execution {arn} is damaged: {message}")]
    Damaged { arn: String, message: String },
    #[error("the row of map run {map_run} of {execution} is damaged: {message}")]
    MapRun {
        execution: String,
        map_run: String,
        message: String,
    },
    #[error("{arn} is {status}: only a FAILED, TIMED_OUT or ABORTED execution can be redriven")]
    NotRedrivable {
        arn: String,
        status: ExecutionStatus,
    },
}

pub fn encode_event(e: &Event) -> String {
    let v = match e {
        Event::Start => json!({"t": "Start"}),
        Event::TaskSucceeded { id, output } => {
            json!({"t": "TaskSucceeded", "id": id, "output": output})
        }
        Event::TaskFailed { id, failure } => {
            json!({"t": "TaskFailed", "id": id, "error": failure.error, "cause": failure.cause})
        }
        Event::TimerFired { id } => json!({"t": "TimerFired", "id": id}),
        Event::ActivityStarted { id, worker_name } => {
            json!({"t": "ActivityStarted", "id": id, "worker": worker_name})
        }
        Event::TaskSubmitted { id, output } => {
            json!({"t": "TaskSubmitted", "id": id, "output": output})
        }
        Event::MapRunFinished { id, result } => match result {
            Ok(v) => json!({"t": "MapRunFinished", "id": id, "output": v}),
            Err(f) => json!({"t": "MapRunFinished", "id": id, "error": f.error, "cause": f.cause}),
        },
    };
    v.to_string()
}

/// The event [`encode_event`] wrote. Text that lacks what the event needs is refused:
/// a default would replay something that never happened.
pub fn decode_event(text: &str) -> Result<Event, String> {
    let mut v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Some(kind) = v.get("t").and_then(Value::as_str).map(str::to_string) else {
        return Err("an event without its type (t)".into());
    };
    if kind == "Start" {
        return Ok(Event::Start);
    }
    let id = v
        .get("id")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("a {kind} event without its effect id"))?;
    let failure = |v: &Value| {
        let error = v.get("error").and_then(Value::as_str);
        let cause = match v.get("cause") {
            None | Some(Value::Null) => Some(None),
            Some(c) => c.as_str().map(|c| Some(c.to_string())),
        };
        match (error, cause) {
            (Some(error), Some(cause)) => Ok(Failure {
                error: error.to_string(),
                cause,
            }),
            _ => Err(format!("a {kind} event without a string error and cause")),
        }
    };
    let output = |v: &mut Value| {
        v.get_mut("output")
            .map(Value::take)
            .ok_or_else(|| format!("a {kind} event without its output"))
    };
    Ok(match kind.as_str() {
        "TaskSucceeded" => Event::TaskSucceeded {
            id,
            output: output(&mut v)?,
        },
        "TaskFailed" => Event::TaskFailed {
            id,
            failure: failure(&v)?,
        },
        "TimerFired" => Event::TimerFired { id },
        "ActivityStarted" => Event::ActivityStarted {
            id,
            worker_name: v
                .get("worker")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("a {kind} event without its worker"))?
                .to_string(),
        },
        "TaskSubmitted" => Event::TaskSubmitted {
            id,
            output: output(&mut v)?,
        },
        "MapRunFinished" if v.get("error").is_some() => Event::MapRunFinished {
            id,
            result: Err(failure(&v)?),
        },
        "MapRunFinished" => Event::MapRunFinished {
            id,
            result: Ok(output(&mut v)?),
        },
        other => return Err(format!("unknown event type {other:?}")),
    })
}

fn answers(e: &Event) -> Option<EffectId> {
    match e {
        Event::Start | Event::ActivityStarted { .. } | Event::TaskSubmitted { .. } => None,
        Event::TaskSucceeded { id, .. }
        | Event::TaskFailed { id, .. }
        | Event::TimerFired { id }
        | Event::MapRunFinished { id, .. } => Some(*id),
    }
}

fn effect_id(e: &Effect) -> Option<EffectId> {
    match e {
        Effect::Invoke { id, .. } | Effect::Timer { id, .. } | Effect::StartMapRun { id, .. } => {
            Some(*id)
        }
        Effect::Complete(_) => None,
    }
}

/// Where a replay left an execution: the effects still open, or its end.
pub struct Replayed {
    pub open: Vec<Effect>,
    /// Open effects whose call was already made (a worker took the activity task, or
    /// the callback call returned): after a restart they only wait for their token.
    pub submitted: std::collections::HashSet<EffectId>,
    pub outcome: Option<Outcome>,
    pub next_seq: u64,
}

/// Feeds `exec` the journal again. Deterministic: same input, seed, events and times.
pub fn replay(
    exec: &mut Execution,
    arn: &str,
    entries: &[JournalEntry],
) -> Result<Replayed, Error> {
    let mut open = std::collections::BTreeMap::new();
    let mut outcome = None;
    let mut next_seq = 0;
    let mut submitted = std::collections::HashSet::new();
    for e in entries {
        let bad = |message: String| Error::Journal {
            arn: arn.to_string(),
            seq: e.seq,
            message,
        };
        let event = decode_event(&e.event).map_err(bad)?;
        if let Some(id) = answers(&event) {
            open.remove(&id);
        }
        if let Event::ActivityStarted { id, .. } | Event::TaskSubmitted { id, .. } = &event {
            submitted.insert(*id);
        }
        let effects = exec
            .handle(event, e.at_ms)
            .map_err(|x| bad(x.to_string()))?;
        for eff in effects {
            match (effect_id(&eff), eff) {
                (_, Effect::Complete(o)) => outcome = Some(o),
                (Some(id), eff) => {
                    open.insert(id, eff);
                }
                (None, _) => {}
            }
        }
        next_seq = e.seq + 1;
    }
    submitted.retain(|id| open.contains_key(id));
    Ok(Replayed {
        open: open.into_values().collect(),
        submitted,
        outcome,
        next_seq,
    })
}

/// Writes each event the engine takes, with the history it produced, to the store.
pub struct Journal {
    pub db: Arc<dyn Store>,
    pub arn: String,
    pub seq: u64,
    pub history_sent: usize,
    pub history_offset: u64,
    /// Map runs the next StartMapRun effects find FAILED run their failed children again.
    pub redrive: bool,
}

impl Journal {
    pub fn record(&mut self, event: String, at_ms: i64, exec: &Execution) {
        let history = exec.history()[self.history_sent..]
            .iter()
            .map(|h| HistoryRow {
                id: h.id + self.history_offset,
                at_ms: h.timestamp_ms,
                kind: h.kind.to_string(),
                details: h.details.to_string(),
            })
            .collect();
        self.history_sent = exec.history().len();
        self.db.append(
            &self.arn,
            vec![JournalEntry {
                seq: self.seq,
                at_ms,
                event,
            }],
            history,
        );
        self.seq += 1;
    }

    pub fn finish(&self, outcome: &Outcome, at_ms: i64) {
        let (status, output, error, cause) = match outcome {
            Outcome::Succeeded(v) => (ExecutionStatus::Succeeded, Some(v.to_string()), None, None),
            Outcome::Failed(f) => {
                let status = if f.error == shoal_expr::errors::TIMEOUT {
                    ExecutionStatus::TimedOut
                } else {
                    ExecutionStatus::Failed
                };
                (status, None, Some(f.error.clone()), f.cause.clone())
            }
        };
        self.db
            .finish_execution(&self.arn, status, at_ms, output, error, cause);
    }
}

/// A map run that checkpoints to the store.
#[derive(Clone)]
pub struct MapDurable {
    pub db: Arc<dyn Store>,
    pub execution: String,
    pub redrive: bool,
}

pub fn counts_json(c: &Counts) -> String {
    c.to_json().to_string()
}

/// The counters [`counts_json`] wrote; `Err` names the first that is missing.
pub fn counts_from(text: &str) -> Result<Counts, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let n = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("no count {k}"))
    };
    Ok(Counts {
        pending: n("pending")?,
        running: n("running")?,
        succeeded: n("succeeded")?,
        failed: n("failed")?,
        timed_out: n("timedOut")?,
        aborted: n("aborted")?,
        total: n("total")?,
        results_written: n("resultsWritten")?,
    })
}

/// A checkpoint: which children ended, the result files, and the attempt number.
pub struct Checkpoint {
    pub restored: Restored,
    pub writer: Value,
    pub generation: u32,
}

/// Reads a map run's checkpoint; for a redrive, its failed children are to run again.
/// Every row was written with a whole checkpoint, so one that is not is refused.
pub fn load_checkpoint(
    db: &dyn Store,
    rec: &shoal_store::MapRunRecord,
    redrive: bool,
) -> Result<Checkpoint, Error> {
    let bad = |message: String| Error::MapRun {
        execution: rec.execution.clone(),
        map_run: rec.arn.clone(),
        message,
    };
    let text = rec
        .checkpoint
        .as_deref()
        .ok_or_else(|| bad("it has no checkpoint".into()))?;
    let mut cp: Value =
        serde_json::from_str(text).map_err(|e| bad(format!("its checkpoint is not JSON: {e}")))?;
    let mut generation = cp
        .get("generation")
        .and_then(Value::as_u64)
        .and_then(|g| u32::try_from(g).ok())
        .ok_or_else(|| bad("its checkpoint has no valid generation".into()))?;
    let mut done =
        DoneSet::from_json(&cp["done"]).map_err(|e| bad(format!("its checkpoint: {e}")))?;
    let over = cp
        .get("over")
        .and_then(Value::as_bool)
        .ok_or_else(|| bad("its checkpoint has no valid over".into()))?;
    let writer = cp
        .get_mut("writer")
        .map(Value::take)
        .ok_or_else(|| bad("its checkpoint has no writer".into()))?;
    let mut items =
        counts_from(&rec.item_counts).map_err(|e| bad(format!("its item counts: {e}")))?;
    let mut executions = counts_from(&rec.execution_counts)
        .map_err(|e| bad(format!("its execution counts: {e}")))?;
    if redrive {
        for f in db.failures(&rec.arn)? {
            if f.generation == generation && done.contains(f.child) {
                done.redo.insert(f.child);
                items.failed = items.failed.saturating_sub(f.items);
                items.results_written = items.results_written.saturating_sub(f.items);
                executions.failed = executions.failed.saturating_sub(1);
                executions.results_written = executions.results_written.saturating_sub(1);
            }
        }
        generation = generation
            .checked_add(1)
            .ok_or_else(|| bad("its generation cannot grow".into()))?;
    }
    let outputs = db
        .outputs(&rec.arn)?
        .into_iter()
        .filter(|(i, _)| done.contains(*i))
        .map(|(i, o)| match serde_json::from_str(&o) {
            Ok(v) => Ok((i, v)),
            Err(e) => Err(bad(format!("the output of child {i} is not JSON: {e}"))),
        })
        .collect::<Result<_, _>>()?;
    Ok(Checkpoint {
        restored: Restored {
            done,
            items,
            executions,
            outputs,
            over,
        },
        writer,
        generation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_the_journal_text() {
        let f = Failure {
            error: "E".into(),
            cause: Some("c".into()),
        };
        for e in [
            Event::Start,
            Event::TaskSucceeded {
                id: 3,
                output: json!({"a": [1, 2]}),
            },
            Event::TaskFailed {
                id: 4,
                failure: f.clone(),
            },
            Event::TimerFired { id: 5 },
            Event::MapRunFinished {
                id: 6,
                result: Ok(json!(null)),
            },
            Event::MapRunFinished {
                id: 7,
                result: Err(Failure {
                    error: "X".into(),
                    cause: None,
                }),
            },
        ] {
            assert_eq!(decode_event(&encode_event(&e)).unwrap(), e);
        }
        assert!(decode_event("{\"t\":\"Nope\"}").is_err());
    }

    #[test]
    fn journal_events_without_what_they_need_are_refused() {
        for text in [
            r#"{"t":"TimerFired"}"#,
            r#"{"t":"TimerFired","id":-1}"#,
            r#"{"t":"TimerFired","id":"3"}"#,
            r#"{"id":3}"#,
            r#"{"t":"TaskSucceeded","id":1}"#,
            r#"{"t":"TaskFailed","id":1}"#,
            r#"{"t":"TaskFailed","id":1,"error":5}"#,
            r#"{"t":"TaskFailed","id":1,"error":"E","cause":5}"#,
            r#"{"t":"MapRunFinished","id":1}"#,
            r#"[]"#,
        ] {
            assert!(decode_event(text).is_err(), "{text} was decoded");
        }
    }

    #[test]
    fn a_damaged_map_run_row_is_refused_naming_the_execution() {
        let db = shoal_store::Memory::new();
        let counts = counts_json(&Counts::default());
        let good = shoal_store::MapRunRecord {
            arn: "arn:m".into(),
            execution: "arn:e".into(),
            status: "RUNNING".into(),
            item_counts: counts.clone(),
            execution_counts: counts.clone(),
            checkpoint: Some(
                json!({"done": {"low": 2, "above": [4], "redo": []}, "writer": {}, "over": false, "generation": 1})
                    .to_string(),
            ),
            ..Default::default()
        };
        let cp = load_checkpoint(&db, &good, false).ok().unwrap();
        assert!(cp.restored.done.contains(4) && !cp.restored.done.contains(3));
        assert_eq!(cp.generation, 1);
        let c = counts.as_str();
        let damaged = [
            (Some("{not json"), c),
            (Some("{}"), c),
            (
                Some(
                    r#"{"done":{"low":-1,"above":[],"redo":[]},"writer":{},"over":false,"generation":0}"#,
                ),
                c,
            ),
            (
                Some(
                    r#"{"done":{"low":0,"above":["x"],"redo":[]},"writer":{},"over":false,"generation":0}"#,
                ),
                c,
            ),
            (
                Some(
                    r#"{"done":{"low":0,"above":[],"redo":[]},"writer":{},"over":false,"generation":4294967296}"#,
                ),
                c,
            ),
            (
                Some(r#"{"done":{"low":0,"above":[],"redo":[]},"over":false,"generation":0}"#),
                c,
            ),
            (None, c),
            (good.checkpoint.as_deref(), "{}"),
            (good.checkpoint.as_deref(), r#"{"pending":-1}"#),
        ];
        for (checkpoint, item_counts) in damaged {
            let rec = shoal_store::MapRunRecord {
                checkpoint: checkpoint.map(str::to_string),
                item_counts: item_counts.to_string(),
                ..good.clone()
            };
            let err = load_checkpoint(&db, &rec, false)
                .err()
                .unwrap_or_else(|| panic!("{checkpoint:?} {item_counts} was read as sound"));
            let text = err.to_string();
            assert!(text.contains("arn:e") && text.contains("arn:m"), "{text}");
        }
    }
}
