//! What makes an execution survive a crash: its events are journaled, so a restart
//! replays them into a fresh [`Execution`] and carries out what was still open; map
//! runs checkpoint which children ended and where their result files stand.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shoal_asl::ExecutionStatus;
use shoal_engine::maprun::{Counts, DoneSet, Restored};
use shoal_engine::{Effect, EffectId, Event, Execution, Failure, Outcome};
use shoal_store::{HistoryRow, JournalEntry, Store};
use std::borrow::Cow;
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
    #[error("execution {arn} is not deterministic: at journal entry {seq} the replay issued {replay} where the journal has {journal}")]
    Nondeterministic {
        arn: String,
        seq: u64,
        replay: String,
        journal: String,
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

/// An event as the journal stores it: `{"t": kind, "id": effect, ...}`. Every field an
/// event needs is required (only `cause` may be null or absent): a default would replay
/// something that never happened.
#[derive(Serialize, Deserialize)]
#[serde(tag = "t")]
enum WireEvent<'a> {
    Start,
    TaskSucceeded {
        id: EffectId,
        output: Cow<'a, Value>,
    },
    TaskFailed {
        id: EffectId,
        error: Cow<'a, str>,
        cause: Option<Cow<'a, str>>,
    },
    TimerFired {
        id: EffectId,
    },
    ActivityStarted {
        id: EffectId,
        worker: Cow<'a, str>,
    },
    TaskSubmitted {
        id: EffectId,
        output: Cow<'a, Value>,
    },
    /// Either `output` (null too) or `error` with `cause`.
    MapRunFinished {
        id: EffectId,
        #[serde(default, skip_serializing_if = "Option::is_none", with = "present")]
        output: Option<Cow<'a, Value>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<Cow<'a, str>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<Cow<'a, str>>,
    },
}

/// A field that may be absent but, when present, is taken as it is (`null` too).
mod present {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        T::deserialize(d).map(Some)
    }
}

fn b(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
}

pub fn encode_event(e: &Event) -> String {
    let w = match e {
        Event::Start => WireEvent::Start,
        Event::TaskSucceeded { id, output } => WireEvent::TaskSucceeded {
            id: *id,
            output: Cow::Borrowed(output),
        },
        Event::TaskFailed { id, failure } => WireEvent::TaskFailed {
            id: *id,
            error: b(&failure.error),
            cause: failure.cause.as_deref().map(b),
        },
        Event::TimerFired { id } => WireEvent::TimerFired { id: *id },
        Event::ActivityStarted { id, worker_name } => WireEvent::ActivityStarted {
            id: *id,
            worker: b(worker_name),
        },
        Event::TaskSubmitted { id, output } => WireEvent::TaskSubmitted {
            id: *id,
            output: Cow::Borrowed(output),
        },
        Event::MapRunFinished { id, result } => match result {
            Ok(v) => WireEvent::MapRunFinished {
                id: *id,
                output: Some(Cow::Borrowed(v)),
                error: None,
                cause: None,
            },
            Err(f) => WireEvent::MapRunFinished {
                id: *id,
                output: None,
                error: Some(b(&f.error)),
                cause: f.cause.as_deref().map(b),
            },
        },
    };
    // An event holds strings and JSON values only: it always serializes.
    serde_json::to_string(&w).unwrap_or_default()
}

/// The event [`encode_event`] wrote. Text that lacks what the event needs is refused:
/// a default would replay something that never happened.
pub fn decode_event(text: &str) -> Result<Event, String> {
    let w: WireEvent = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let failure = |error: Cow<str>, cause: Option<Cow<str>>| Failure {
        error: error.into_owned(),
        cause: cause.map(Cow::into_owned),
    };
    Ok(match w {
        WireEvent::Start => Event::Start,
        WireEvent::TaskSucceeded { id, output } => Event::TaskSucceeded {
            id,
            output: output.into_owned(),
        },
        WireEvent::TaskFailed { id, error, cause } => Event::TaskFailed {
            id,
            failure: failure(error, cause),
        },
        WireEvent::TimerFired { id } => Event::TimerFired { id },
        WireEvent::ActivityStarted { id, worker } => Event::ActivityStarted {
            id,
            worker_name: worker.into_owned(),
        },
        WireEvent::TaskSubmitted { id, output } => Event::TaskSubmitted {
            id,
            output: output.into_owned(),
        },
        WireEvent::MapRunFinished {
            id,
            output,
            error,
            cause,
        } => Event::MapRunFinished {
            id,
            result: match (output, error) {
                (Some(v), None) => Ok(v.into_owned()),
                (None, Some(error)) => Err(failure(error, cause)),
                (Some(_), Some(_)) => {
                    return Err("a MapRunFinished event with both an output and an error".into())
                }
                (None, None) => {
                    return Err("a MapRunFinished event without its output or error".into())
                }
            },
        },
    })
}

/// An effect as the journal remembers it beside the event that made it: enough to
/// tell whether a replay does what the run did. A Task's input is kept as a digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k")]
enum Issued {
    Task {
        id: EffectId,
        state: String,
        resource: String,
        /// SHA-256 of the input's JSON text, first 16 hex digits.
        input: String,
    },
    Timer {
        id: EffectId,
        at: i64,
    },
    MapRun {
        id: EffectId,
        state: String,
    },
    Complete {
        succeeded: bool,
    },
}

impl Issued {
    fn of(e: &Effect) -> Issued {
        match e {
            Effect::Invoke {
                id,
                state,
                resource,
                input,
                ..
            } => {
                use sha2::Digest;
                let hash = sha2::Sha256::digest(input.to_string().as_bytes());
                Issued::Task {
                    id: *id,
                    state: state.clone(),
                    resource: resource.to_string(),
                    input: hash[..8].iter().map(|b| format!("{b:02x}")).collect(),
                }
            }
            Effect::Timer { id, fire_at_ms } => Issued::Timer {
                id: *id,
                at: *fire_at_ms,
            },
            Effect::StartMapRun { id, state, .. } => Issued::MapRun {
                id: *id,
                state: state.clone(),
            },
            Effect::Complete(o) => Issued::Complete {
                succeeded: matches!(o, Outcome::Succeeded(_)),
            },
        }
    }

    /// As an error message names it.
    fn describe(&self) -> String {
        match self {
            Issued::Task {
                id,
                state,
                resource,
                input,
            } => format!("Task {state:?} (effect {id}, {resource}, input digest {input})"),
            Issued::Timer { id, at } => {
                let at = chrono::DateTime::from_timestamp_millis(*at)
                    .map_or_else(|| at.to_string(), |t| t.to_rfc3339());
                format!("a timer (effect {id}) for {at}")
            }
            Issued::MapRun { id, state } => format!("Map run {state:?} (effect {id})"),
            Issued::Complete { succeeded: true } => "the execution's success".into(),
            Issued::Complete { succeeded: false } => "the execution's failure".into(),
        }
    }
}

/// What the engine did on taking one event, as [`JournalEntry::effects`] keeps it.
pub fn encode_effects(effects: &[Effect]) -> String {
    let issued: Vec<Issued> = effects.iter().map(Issued::of).collect();
    serde_json::to_string(&issued).unwrap_or_default()
}

/// Compares what the replay of entry `seq` did with what the run recorded; the first
/// difference is the error.
fn check_replay(arn: &str, seq: u64, recorded: &str, effects: &[Effect]) -> Result<(), Error> {
    let recorded: Vec<Issued> = serde_json::from_str(recorded).map_err(|e| Error::Journal {
        arn: arn.to_string(),
        seq,
        message: format!("its effects do not parse: {e}"),
    })?;
    let replayed: Vec<Issued> = effects.iter().map(Issued::of).collect();
    let n = recorded.len().max(replayed.len());
    let none = || "nothing".to_string();
    for i in 0..n {
        let (r, j) = (replayed.get(i), recorded.get(i));
        if r != j {
            return Err(Error::Nondeterministic {
                arn: arn.to_string(),
                seq,
                replay: r.map_or_else(none, Issued::describe),
                journal: j.map_or_else(none, Issued::describe),
            });
        }
    }
    Ok(())
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
        // A replay that does something else than the run did is not that execution:
        // going on would carry out effects that never were and lose ones that were.
        if let Some(recorded) = &e.effects {
            check_replay(arn, e.seq, recorded, &effects)?;
        }
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
    pub fn record(&mut self, event: String, at_ms: i64, exec: &Execution, effects: &[Effect]) {
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
                effects: Some(encode_effects(effects)),
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
    serde_json::to_string(c).unwrap_or_default()
}

/// The counters [`counts_json`] wrote; `Err` names the first that is missing.
pub fn counts_from(text: &str) -> Result<Counts, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// A map run's checkpoint as its row stores it. Every field is required.
#[derive(Serialize, Deserialize)]
pub struct StoredCheckpoint<'a> {
    pub done: Cow<'a, DoneSet>,
    /// What the ResultWriter needs to reopen its files (its own format).
    pub writer: Cow<'a, Value>,
    /// The collected outputs had already passed 256 KiB.
    pub over: bool,
    /// The attempt: 0, then one more per redrive.
    pub generation: u32,
}

impl StoredCheckpoint<'_> {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
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
    let cp: StoredCheckpoint = serde_json::from_str(text)
        .map_err(|e| bad(format!("its checkpoint does not parse: {e}")))?;
    let (mut done, writer, over) = (cp.done.into_owned(), cp.writer.into_owned(), cp.over);
    let mut generation = cp.generation;
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
    use serde_json::json;

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
        // Rows as the hand-written codec before serde wrote them still read.
        for (text, e) in [
            (
                r#"{"t":"TaskFailed","id":4,"error":"E","cause":null}"#,
                Event::TaskFailed {
                    id: 4,
                    failure: Failure {
                        error: "E".into(),
                        cause: None,
                    },
                },
            ),
            (
                r#"{"t":"MapRunFinished","id":6,"output":null}"#,
                Event::MapRunFinished {
                    id: 6,
                    result: Ok(Value::Null),
                },
            ),
            (
                r#"{"t":"ActivityStarted","id":2,"worker":"w"}"#,
                Event::ActivityStarted {
                    id: 2,
                    worker_name: "w".into(),
                },
            ),
        ] {
            assert_eq!(decode_event(text).unwrap(), e, "{text}");
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
            r#"{"t":"MapRunFinished","id":1,"output":1,"error":"E"}"#,
            r#"{"t":"ActivityStarted","id":1}"#,
            r#"{"t":"TaskSubmitted","id":1}"#,
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
