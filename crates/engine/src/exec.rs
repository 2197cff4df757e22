//! One execution: a tree of frames (the root, Parallel branches, Map iterations),
//! each walking its own graph of states.

use crate::maprun::{Batcher, MapRunSpec, Selector, Shape, Shaper, Source, Tolerance, WriterSpec};
use crate::{Effect, EffectId, Event, ExecutionInfo, HistoryEvent, Outcome};
use serde_json::{json, Map, Value};
use shoal_asl::identity::iso_time;
use shoal_asl::*;
use shoal_expr::choice::parse_timestamp;
use shoal_expr::jsonata::Bindings;
use shoal_expr::template::{Lang, Template};
use shoal_expr::{compact, errors, type_name, Entropy, Failure, Path, Scope, Vars};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// The longest Task timeout, heartbeat or Wait AWS accepts, in seconds; the parser
/// holds literals to it, and evaluation holds paths and expressions to it.
const MAX_SECONDS: f64 = 99_999_999.0;

/// How an execution runs.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Keep the history events. Map run children do without: nothing reads them yet.
    pub record_history: bool,
    /// Keep the execution input for [`Execution::take_input`] even when nothing else
    /// needs it (a ResultWriter's NONE entries do).
    pub keep_input: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            record_history: true,
            keep_input: true,
        }
    }
}

type FrameId = usize;

struct Frame {
    graph: Arc<StateMachine>,
    parent: Option<(FrameId, usize)>,
    current: String,
    input: Value,
    vars: Map<String, Value>,
    status: Status,
    /// Attempts used per retrier of the current state.
    retries: Vec<u32>,
    entered_ms: i64,
    entered_event: u64,
    /// The current state runs again after a Retry: AWS records no second entry.
    retrying: bool,
}

enum Status {
    Ready,
    Waiting(Wait),
    Done,
}

enum Wait {
    Task,
    Timer(AfterTimer),
    MapRun,
    Join(Box<Join>),
}

enum AfterTimer {
    Proceed {
        output: Value,
        assigned: Option<Map<String, Value>>,
    },
    Retry,
}

struct Join {
    is_map: bool,
    raw_input: Value,
    results: Vec<Option<Value>>,
    pending: VecDeque<(usize, Arc<StateMachine>, Value)>,
    children: Vec<FrameId>,
    running: usize,
    failed: u64,
    /// Maps only: Parallel fails on any branch failure.
    tolerance: Option<Tolerance>,
}

/// What a state's fields are evaluated against.
struct StateInput<'a> {
    raw: &'a Value,
    effective: &'a Value,
    ctx: &'a Value,
    lang: Lang,
}

/// The result of running one state until it completes or blocks.
enum Step {
    Advance {
        output: Value,
        next: Option<String>,
        assigned: Option<Map<String, Value>>,
    },
    Block,
    Fail(Failure),
}

pub struct Execution {
    info: ExecutionInfo,
    input: Value,
    entropy: Box<dyn Entropy + Send>,
    options: Options,
    frames: Vec<Frame>,
    ready: VecDeque<FrameId>,
    waiting: HashMap<EffectId, FrameId>,
    next_effect: EffectId,
    now_ms: i64,
    effects: Vec<Effect>,
    history: Vec<HistoryEvent>,
    outcome: Option<Outcome>,
    timeout_timer: Option<EffectId>,
    timeout_seconds: Option<u64>,
    /// TestState's `inspectionData`: the top-level state's data after each step of its
    /// I/O processing, kept only when asked for ([`Execution::inspect`]).
    inspection: RefCell<Option<Map<String, Value>>>,
    /// TestState's `context`, which replaces the built context object.
    context_override: Option<Map<String, Value>>,
    /// What the execution took, for test coverage ([`Execution::keep_trace`]).
    traced: RefCell<Option<Vec<Trace>>>,
    /// False for a TestState run, which cannot be redriven: its context object has
    /// no `Execution.RedriveCount`.
    redrivable: bool,
    /// False for a TestState run given no role: `Execution.RoleArn` is null.
    has_role: bool,
}

/// A step an execution took, as test coverage counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trace {
    Entered(String),
    Transition {
        from: String,
        to: String,
    },
    /// A Choice state's rule matched (by index), or its Default was taken (`None`).
    ChoiceRule {
        state: String,
        rule: Option<usize>,
    },
    Caught {
        state: String,
        catcher: usize,
    },
    Retried {
        state: String,
        retrier: usize,
    },
}

struct FrameVars<'a> {
    exec: &'a Execution,
    fid: FrameId,
}

impl Vars for FrameVars<'_> {
    fn get_var(&self, name: &str) -> Option<Value> {
        let mut f = Some(self.fid);
        while let Some(id) = f {
            if let Some(v) = self.exec.frames[id].vars.get(name) {
                return Some(v.clone());
            }
            f = self.exec.frames[id].parent.map(|p| p.0);
        }
        None
    }
    fn all_vars(&self) -> Vec<(String, Value)> {
        let mut chain = Vec::new();
        let mut f = Some(self.fid);
        while let Some(id) = f {
            chain.push(id);
            f = self.exec.frames[id].parent.map(|p| p.0);
        }
        let mut m = Map::new();
        for id in chain.into_iter().rev() {
            for (k, v) in &self.exec.frames[id].vars {
                m.insert(k.clone(), v.clone());
            }
        }
        m.into_iter().collect()
    }
}

/// `<Type>StateAborted` for every state type.
const ABORTED: [&str; 8] = [
    "PassStateAborted",
    "TaskStateAborted",
    "ChoiceStateAborted",
    "WaitStateAborted",
    "SucceedStateAborted",
    "FailStateAborted",
    "ParallelStateAborted",
    "MapStateAborted",
];

fn entered_kind(k: &Kind) -> (&'static str, &'static str) {
    match k {
        Kind::Pass { .. } => ("PassStateEntered", "PassStateExited"),
        Kind::Task { .. } => ("TaskStateEntered", "TaskStateExited"),
        Kind::Choice { .. } => ("ChoiceStateEntered", "ChoiceStateExited"),
        Kind::Wait { .. } => ("WaitStateEntered", "WaitStateExited"),
        Kind::Succeed => ("SucceedStateEntered", "SucceedStateExited"),
        Kind::Fail { .. } => ("FailStateEntered", "FailStateExited"),
        Kind::Parallel { .. } => ("ParallelStateEntered", "ParallelStateExited"),
        Kind::Map(_) => ("MapStateEntered", "MapStateExited"),
    }
}

impl Execution {
    pub fn new(
        machine: Arc<StateMachine>,
        info: ExecutionInfo,
        input: Value,
        entropy: Box<dyn Entropy + Send>,
    ) -> Execution {
        Execution::with_options(machine, info, input, entropy, Options::default())
    }

    pub fn with_options(
        machine: Arc<StateMachine>,
        info: ExecutionInfo,
        input: Value,
        entropy: Box<dyn Entropy + Send>,
        options: Options,
    ) -> Execution {
        let root = Frame {
            current: machine.start_at.clone(),
            graph: machine.clone(),
            parent: None,
            input: Value::Null,
            vars: Map::new(),
            status: Status::Ready,
            retries: Vec::new(),
            entered_ms: 0,
            entered_event: 0,
            retrying: false,
        };
        // `$$.Execution.Input` and the history need their own copy; most map children need neither.
        let keep = options.record_history || options.keep_input || machine.reads_context();
        let (root_input, input) = if keep {
            (input.clone(), input)
        } else {
            (input, Value::Null)
        };
        let mut root = root;
        root.input = root_input;
        Execution {
            timeout_seconds: machine.timeout_seconds,
            info,
            input,
            entropy,
            options,
            frames: vec![root],
            ready: VecDeque::new(),
            waiting: HashMap::new(),
            next_effect: 1,
            now_ms: 0,
            effects: Vec::new(),
            history: Vec::new(),
            outcome: None,
            timeout_timer: None,
            inspection: RefCell::new(None),
            context_override: None,
            traced: RefCell::new(None),
            redrivable: true,
            has_role: true,
        }
    }

    /// Keeps the steps [`Execution::trace`] returns.
    pub fn keep_trace(&mut self) {
        *self.traced.get_mut() = Some(Vec::new());
    }

    /// The states entered, transitions, Choice rules, catchers and retriers taken, in
    /// order, when [`Execution::keep_trace`] asked for them.
    pub fn trace(&self) -> Vec<Trace> {
        self.traced.borrow().clone().unwrap_or_default()
    }

    fn step_taken(&self, t: impl FnOnce() -> Trace) {
        if let Some(v) = self.traced.borrow_mut().as_mut() {
            v.push(t());
        }
    }

    /// Keeps what TestState's `inspectionData` shows for the top-level state.
    pub fn inspect(&mut self) {
        *self.inspection.get_mut() = Some(Map::new());
    }

    /// What [`Execution::inspect`] kept, keyed by AWS's `inspectionData` field names.
    pub fn inspection(&self) -> Option<Map<String, Value>> {
        self.inspection.borrow().clone()
    }

    /// Variables the execution starts with (TestState's `variables`).
    pub fn set_variables(&mut self, vars: Map<String, Value>) {
        self.frames[0].vars = vars;
    }

    /// The context object given from outside (TestState's `context`): it replaces
    /// the built one whole, as AWS's recorded TestState runs show (`{}` reads as `{}`).
    pub fn set_context(&mut self, context: Map<String, Value>) {
        self.context_override = Some(context);
    }

    /// Marks the execution as one that cannot be redriven (TestState).
    pub fn not_redrivable(&mut self) {
        self.redrivable = false;
    }

    /// Marks the execution as run with no role (TestState without `roleArn`).
    pub fn without_role(&mut self) {
        self.has_role = false;
    }

    /// Records an inspection step of the first state of the top-level frame.
    fn note(&self, fid: FrameId, key: &str, v: impl FnOnce() -> Value) {
        if fid != 0 || self.frames[0].current != self.frames[0].graph.start_at {
            return;
        }
        if let Some(m) = self.inspection.borrow_mut().as_mut() {
            m.insert(key.to_string(), v());
        }
    }

    pub fn info(&self) -> &ExecutionInfo {
        &self.info
    }

    pub fn history(&self) -> &[HistoryEvent] {
        &self.history
    }

    /// Hands back the execution input (a map run reports it with the child's result).
    pub fn take_input(&mut self) -> Value {
        std::mem::take(&mut self.input)
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// Applies one event at time `now_ms` and returns the effects it causes.
    pub fn handle(&mut self, event: Event, now_ms: i64) -> crate::Result<Vec<Effect>> {
        if self.outcome.is_some() {
            return Err(crate::Error::Completed);
        }
        self.now_ms = now_ms;
        match event {
            Event::Start => {
                self.record(
                    "ExecutionStarted",
                    |this| json!({"input": compact(&this.input), "roleArn": this.info.role_arn}),
                );
                if let Some(t) = self.timeout_seconds {
                    let id = self.effect_id();
                    self.timeout_timer = Some(id);
                    self.effects.push(Effect::Timer {
                        id,
                        fire_at_ms: now_ms.saturating_add(
                            i64::try_from(t).unwrap_or(i64::MAX).saturating_mul(1000),
                        ),
                    });
                }
                self.ready.push_back(0);
            }
            Event::TimerFired { id } if Some(id) == self.timeout_timer => {
                let f = Failure {
                    error: errors::TIMEOUT.into(),
                    cause: None,
                };
                self.record("ExecutionTimedOut", |_| failure_details(&f));
                self.conclude(Outcome::Failed(f));
                return Ok(std::mem::take(&mut self.effects));
            }
            Event::TimerFired { id } => {
                let fid = self
                    .waiting
                    .remove(&id)
                    .ok_or(crate::Error::UnknownEffect(id))?;
                let Status::Waiting(Wait::Timer(after)) =
                    std::mem::replace(&mut self.frames[fid].status, Status::Ready)
                else {
                    return Err(crate::Error::UnknownEffect(id));
                };
                match after {
                    AfterTimer::Proceed { output, assigned } => {
                        self.after_step(
                            fid,
                            Step::Advance {
                                output,
                                next: None,
                                assigned,
                            },
                        );
                    }
                    AfterTimer::Retry => {
                        self.frames[fid].retrying = true;
                        self.ready.push_back(fid);
                    }
                }
            }
            Event::ActivityStarted { id, worker_name } => {
                self.waiting_task(id)?;
                self.record("ActivityStarted", |_| json!({"workerName": worker_name}));
            }
            Event::TaskSubmitted { id, output } => {
                let resource = self.waiting_task(id)?;
                self.record("TaskSubmitted", |_| {
                    let (kind, name) = resource_parts(&resource);
                    json!({"resourceType": kind, "resource": name, "output": compact(&output)})
                });
            }
            Event::TaskSucceeded { id, output } => {
                let fid = self.take_waiting(id)?;
                let r = self.task_result(fid, output);
                self.after_step(fid, r);
            }
            Event::TaskFailed { id, failure } => {
                let fid = self.take_waiting(id)?;
                self.record_task_failure(fid, &failure);
                self.fail_state(fid, failure);
            }
            Event::MapRunFinished { id, result } => {
                let fid = self.take_waiting(id)?;
                let step = match result {
                    Ok(v) => {
                        self.record("MapRunSucceeded", |_| json!({}));
                        self.record("MapStateSucceeded", |_| json!({}));
                        let g = self.frames[fid].graph.clone();
                        let st = &g.states[&self.frames[fid].current];
                        let raw = self.frames[fid].input.clone();
                        self.finish_result(fid, st, &raw, v)
                    }
                    Err(f) => {
                        self.record(
                            "MapRunFailed",
                            |_| json!({"error": f.error, "cause": f.cause}),
                        );
                        Step::Fail(f)
                    }
                };
                self.after_step(fid, step);
            }
        }
        self.run();
        Ok(std::mem::take(&mut self.effects))
    }

    /// The resource of the Task that waits on `id`, for an event that leaves it waiting.
    fn waiting_task(&self, id: EffectId) -> crate::Result<Arc<shoal_asl::Resource>> {
        let fid = *self
            .waiting
            .get(&id)
            .ok_or(crate::Error::UnknownEffect(id))?;
        let f = &self.frames[fid];
        match f.graph.states.get(&f.current).map(|s| &s.kind) {
            Some(Kind::Task { resource, .. }) => Ok(resource.clone()),
            _ => Err(crate::Error::UnknownEffect(id)),
        }
    }

    fn take_waiting(&mut self, id: EffectId) -> crate::Result<FrameId> {
        let fid = self
            .waiting
            .remove(&id)
            .ok_or(crate::Error::UnknownEffect(id))?;
        self.frames[fid].status = Status::Ready;
        Ok(fid)
    }

    fn effect_id(&mut self) -> EffectId {
        let id = self.next_effect;
        self.next_effect += 1;
        id
    }

    /// `details` is only built when history is kept: children of a map run skip the cost.
    fn record(&mut self, kind: &'static str, details: impl FnOnce(&Self) -> Value) -> u64 {
        if !self.options.record_history {
            return 0;
        }
        let details = details(self);
        let id = self.history.len() as u64 + 1;
        self.history.push(HistoryEvent {
            id,
            timestamp_ms: self.now_ms,
            kind,
            details,
        });
        id
    }

    fn finish(&mut self, outcome: Outcome) {
        match &outcome {
            Outcome::Succeeded(v) => {
                self.record("ExecutionSucceeded", |_| json!({"output": compact(v)}))
            }
            Outcome::Failed(f) => self.record("ExecutionFailed", |_| failure_details(f)),
        };
        self.conclude(outcome);
    }

    fn conclude(&mut self, outcome: Outcome) {
        self.effects.push(Effect::Complete(outcome.clone()));
        self.outcome = Some(outcome);
    }

    fn run(&mut self) {
        while let Some(fid) = self.ready.pop_front() {
            if self.outcome.is_some() {
                return;
            }
            if !matches!(self.frames[fid].status, Status::Ready) {
                continue;
            }
            let step = self.run_state(fid);
            self.after_step(fid, step);
        }
    }

    fn after_step(&mut self, fid: FrameId, step: Step) {
        match step {
            Step::Block => {}
            Step::Fail(f) => self.fail_state(fid, f),
            Step::Advance {
                output,
                next,
                assigned,
            } => {
                let g = self.frames[fid].graph.clone();
                let st = &g.states[&self.frames[fid].current];
                let exit = entered_kind(&st.kind).1;
                self.record(exit, |_| {
                    let mut d = json!({"name": st.name, "output": compact(&output)});
                    // AWS lists what the state assigned, each value as JSON text.
                    if let Some(a) = assigned.as_ref().filter(|a| !a.is_empty()) {
                        d["assignedVariables"] = a
                            .iter()
                            .map(|(k, v)| (k.clone(), Value::String(compact(v))))
                            .collect::<Map<String, Value>>()
                            .into();
                    }
                    d
                });
                if let Some(a) = assigned {
                    self.frames[fid].vars.extend(a);
                }
                let next = next.or_else(|| match &st.transition {
                    Transition::Next(n) => Some(n.clone()),
                    _ => None,
                });
                match next {
                    Some(n) => {
                        self.step_taken(|| Trace::Transition {
                            from: st.name.clone(),
                            to: n.clone(),
                        });
                        let f = &mut self.frames[fid];
                        f.current = n;
                        f.input = output;
                        f.retries.clear();
                        f.status = Status::Ready;
                        self.ready.push_back(fid);
                    }
                    None => self.frame_done(fid, Ok(output)),
                }
            }
        }
    }

    /// A frame finished: tell its parent, or end the execution.
    fn frame_done(&mut self, fid: FrameId, result: Result<Value, Failure>) {
        self.frames[fid].status = Status::Done;
        match self.frames[fid].parent {
            None => self.finish(match result {
                Ok(v) => Outcome::Succeeded(v),
                Err(f) => Outcome::Failed(f),
            }),
            Some((parent, slot)) => self.child_done(parent, slot, result),
        }
    }

    fn child_done(&mut self, parent: FrameId, slot: usize, result: Result<Value, Failure>) {
        let Status::Waiting(Wait::Join(join)) = &mut self.frames[parent].status else {
            return;
        };
        join.running -= 1;
        let mut failure = None;
        let iteration = join.is_map.then(|| {
            let kind = if result.is_ok() {
                "MapIterationSucceeded"
            } else {
                "MapIterationFailed"
            };
            (kind, slot)
        });
        match result {
            Ok(v) => join.results[slot] = Some(v),
            Err(f) => {
                join.failed += 1;
                let total = join.results.len() as u64;
                match join.tolerance {
                    Some(t) if t.count.is_some() || t.percentage.is_some() => {
                        if t.exceeded(join.failed, Some(total)) {
                            failure = Some(Tolerance::threshold_failure());
                        } else {
                            join.results[slot] = Some(json!({"Error": f.error, "Cause": f.cause}));
                        }
                    }
                    _ => failure = Some(f),
                }
            }
        }
        if let Some((kind, index)) = iteration {
            let name = self.frames[parent].current.clone();
            self.record(kind, |_| json!({"index": index, "name": name}));
        }
        let Status::Waiting(Wait::Join(join)) = &mut self.frames[parent].status else {
            return;
        };
        if let Some(f) = failure {
            let children = std::mem::take(&mut join.children);
            let map = join.is_map.then(|| self.frames[parent].current.clone());
            self.cancel(&children, map.as_deref());
            self.frames[parent].status = Status::Ready;
            self.state_failed(parent, f, false);
            return;
        }
        if let Some((slot, graph, input)) = join.pending.pop_front() {
            join.running += 1;
            let child = self.spawn(parent, slot, graph, input);
            if let Status::Waiting(Wait::Join(j)) = &mut self.frames[parent].status {
                j.children.push(child);
            }
            return;
        }
        if join.running == 0 {
            let Status::Waiting(Wait::Join(join)) =
                std::mem::replace(&mut self.frames[parent].status, Status::Ready)
            else {
                return;
            };
            let results: Vec<Value> = join
                .results
                .into_iter()
                .map(|r| r.unwrap_or(Value::Null))
                .collect();
            let g = self.frames[parent].graph.clone();
            let st = &g.states[&self.frames[parent].current];
            let ended = if join.is_map {
                "MapStateSucceeded"
            } else {
                "ParallelStateSucceeded"
            };
            self.record(ended, |_| json!({}));
            let step = self.finish_result(parent, st, &join.raw_input, Value::Array(results));
            self.after_step(parent, step);
        }
    }

    /// Stops frames (and their descendants) whose results no longer matter. AWS aborts
    /// the state each one is in and, for `map` (the Map state's name), the iteration.
    fn cancel(&mut self, frames: &[FrameId], map: Option<&str>) {
        for &fid in frames {
            let status = std::mem::replace(&mut self.frames[fid].status, Status::Done);
            let waiting = match status {
                Status::Done => continue,
                Status::Ready => false,
                Status::Waiting(Wait::Join(j)) => {
                    let inner = j.is_map.then(|| self.frames[fid].current.clone());
                    self.cancel(&j.children, inner.as_deref());
                    true
                }
                Status::Waiting(_) => true,
            };
            self.waiting.retain(|_, f| *f != fid);
            // A frame between two states is in none.
            if waiting {
                let g = self.frames[fid].graph.clone();
                if let Some(st) = g.states.get(&self.frames[fid].current) {
                    self.record_aborted(st);
                }
            }
            if let (Some(name), Some((_, index))) = (map, self.frames[fid].parent) {
                self.record(
                    "MapIterationAborted",
                    |_| json!({"index": index, "name": name}),
                );
            }
        }
    }

    fn record_aborted(&mut self, st: &State) {
        let aborted = entered_kind(&st.kind).0.replace("Entered", "Aborted");
        if let Some(kind) = ABORTED.iter().find(|k| **k == aborted) {
            self.record(kind, |_| json!({}));
        }
    }

    fn spawn(
        &mut self,
        parent: FrameId,
        slot: usize,
        graph: Arc<StateMachine>,
        input: Value,
    ) -> FrameId {
        if matches!(&self.frames[parent].status, Status::Waiting(Wait::Join(j)) if j.is_map) {
            let name = self.frames[parent].current.clone();
            self.record(
                "MapIterationStarted",
                |_| json!({"index": slot, "name": name}),
            );
        }
        let fid = self.frames.len();
        self.frames.push(Frame {
            current: graph.start_at.clone(),
            graph,
            parent: Some((parent, slot)),
            input,
            vars: Map::new(),
            status: Status::Ready,
            retries: Vec::new(),
            entered_ms: self.now_ms,
            entered_event: 0,
            retrying: false,
        });
        self.ready.push_back(fid);
        fid
    }

    fn context(&self, fid: FrameId, st: &State) -> Value {
        // Building it copies the execution input: skip it for states that cannot read it.
        if !st.uses_context {
            return Value::Null;
        }
        if let Some(o) = &self.context_override {
            return Value::Object(o.clone());
        }
        let f = &self.frames[fid];
        let mut state = json!({"Name": st.name, "EnteredTime": iso_time(f.entered_ms)});
        if st.kind.handling().is_some() {
            state["RetryCount"] = json!(f.retries.iter().sum::<u32>());
        }
        let mut built = json!({
            "Execution": {
                "Id": self.info.execution_arn,
                "Input": self.input,
                "Name": self.info.name,
                "RoleArn": self.info.role_arn,
                "StartTime": iso_time(self.info.start_time_ms),
                "RedriveCount": self.info.redrive_count,
            },
            "State": state,
            "StateMachine": {"Id": self.info.state_machine_arn, "Name": self.info.state_machine_name},
        });
        if let Some(e) = built["Execution"].as_object_mut() {
            if !self.redrivable {
                e.remove("RedriveCount");
            }
            if !self.has_role {
                e.insert("RoleArn".into(), Value::Null);
            }
        }
        built
    }

    fn vars(&self, fid: FrameId) -> FrameVars<'_> {
        FrameVars { exec: self, fid }
    }

    /// Prefixes a cause the way AWS reports failures of the engine's own evaluation.
    fn located(&self, fid: FrameId, f: Failure) -> Failure {
        if f.error != errors::RUNTIME
            && f.error != errors::QUERY_EVALUATION_ERROR
            && f.error != errors::INTRINSIC_FAILURE
        {
            return f;
        }
        let fr = &self.frames[fid];
        let cause = format!(
            "An error occurred while executing the state '{}' (entered at the event id #{}). {}",
            fr.current,
            fr.entered_event,
            f.cause.unwrap_or_default()
        );
        Failure {
            error: f.error,
            cause: Some(cause),
        }
    }

    fn scope_eval<T>(
        &self,
        fid: FrameId,
        input: &Value,
        ctx: &Value,
        f: impl FnOnce(&Scope) -> T,
    ) -> T {
        let vars = self.vars(fid);
        let scope = Scope {
            input,
            context: ctx,
            vars: &vars,
            entropy: self.entropy.as_ref(),
        };
        f(&scope)
    }

    fn jsonata_eval<T>(&self, fid: FrameId, states: Value, f: impl FnOnce(&Bindings) -> T) -> T {
        let vars = self.vars(fid);
        let b = Bindings {
            states,
            vars: &vars,
            entropy: self.entropy.as_ref(),
            now_ms: self.now_ms,
        };
        f(&b)
    }

    fn states_var(
        &self,
        input: &Value,
        ctx: &Value,
        result: Option<&Value>,
        error_output: Option<&Value>,
    ) -> Value {
        let mut m = Map::new();
        m.insert("input".into(), input.clone());
        m.insert("context".into(), ctx.clone());
        if let Some(r) = result {
            m.insert("result".into(), r.clone());
        }
        if let Some(e) = error_output {
            m.insert("errorOutput".into(), e.clone());
        }
        Value::Object(m)
    }

    fn data_path<'v>(
        &self,
        fid: FrameId,
        dp: &DataPath,
        v: &'v Value,
        ctx: &Value,
    ) -> Result<Cow<'v, Value>, Failure> {
        match dp {
            DataPath::Whole => Ok(Cow::Borrowed(v)),
            DataPath::Null => Ok(Cow::Owned(json!({}))),
            DataPath::Path(p) => self
                .scope_eval(fid, v, ctx, |s| s.resolve(p))
                .map(Cow::Owned)
                .ok_or_else(|| {
                    Failure::runtime(format!(
                        "Invalid path '{}' : No results for path: {}",
                        p.text(),
                        bracket_path(p)
                    ))
                }),
        }
    }

    /// Evaluates `Assign` into a fresh map; it is applied when the state completes.
    fn assign_jsonpath(
        &self,
        fid: FrameId,
        t: Option<&Template>,
        input: &Value,
        ctx: &Value,
    ) -> Result<Option<Map<String, Value>>, Failure> {
        let Some(t) = t else { return Ok(None) };
        match self.scope_eval(fid, input, ctx, |s| t.eval(s))? {
            Value::Object(m) => Ok(Some(m)),
            _ => Ok(None),
        }
    }

    fn assign_jsonata(
        &self,
        fid: FrameId,
        t: Option<&Template>,
        states: &Value,
    ) -> Result<Option<Map<String, Value>>, Failure> {
        let Some(t) = t else { return Ok(None) };
        match self.jsonata_eval(fid, states.clone(), |b| t.eval_jsonata(b, "Assign"))? {
            Value::Object(m) => Ok(Some(m)),
            _ => Ok(None),
        }
    }

    fn run_state(&mut self, fid: FrameId) -> Step {
        let g = self.frames[fid].graph.clone();
        let Some(st) = g.states.get(&self.frames[fid].current) else {
            return Step::Fail(Failure::runtime(format!(
                "state {:?} does not exist",
                self.frames[fid].current
            )));
        };
        self.frames[fid].entered_ms = self.now_ms;
        if !std::mem::take(&mut self.frames[fid].retrying) {
            let ev = self.record(
                entered_kind(&st.kind).0,
                |this| json!({"name": st.name, "input": compact(&this.frames[fid].input)}),
            );
            self.frames[fid].entered_event = ev;
        }
        self.step_taken(|| Trace::Entered(st.name.clone()));
        // Lent out rather than copied; a retry reads it again, so it goes back.
        let mut raw = std::mem::take(&mut self.frames[fid].input);
        let r = self.state_body(fid, st, &mut raw);
        self.frames[fid].input = raw;
        match r {
            Ok(step) => step,
            Err(f) => Step::Fail(self.located(fid, f)),
        }
    }

    /// `raw` is the state's input. A Pass that forwards it whole takes it instead of
    /// copying it: Pass neither retries nor catches, so nothing reads it again.
    fn state_body(&mut self, fid: FrameId, st: &State, raw: &mut Value) -> Result<Step, Failure> {
        let ctx = self.context(fid, st);
        let jsonata = st.lang == Lang::Jsonata;
        self.note(fid, "input", || raw.clone());
        let vars = self.vars(fid).all_vars();
        if !vars.is_empty() {
            self.note(fid, "variables", || {
                Value::Object(vars.into_iter().collect())
            });
        }
        let effective = if jsonata {
            Cow::Borrowed(raw)
        } else {
            self.data_path(fid, &st.input_path, raw, &ctx)?
        };
        // AWS shows no afterInputPath for a Pass with Result, which ignores its input.
        let fixed_result = matches!(
            &st.kind,
            Kind::Pass {
                result: Some(_),
                ..
            }
        );
        if !jsonata && !fixed_result && !matches!(st.kind, Kind::Map(_)) {
            self.note(fid, "afterInputPath", || effective.clone().into_owned());
        }
        match &st.kind {
            Kind::Pass {
                result, parameters, ..
            } => {
                if jsonata {
                    return self.finish_plain(fid, st, raw, &ctx, None);
                }
                let forwards = matches!(st.input_path, DataPath::Whole)
                    && matches!(
                        &st.kind,
                        Kind::Pass {
                            result_path: ResultPath::Replace,
                            ..
                        }
                    );
                let r = match (result, parameters) {
                    // A Result over AWS's payload limit never leaves the state.
                    (Some(r), _) if compact(r).len() > shoal_asl::identity::PAYLOAD_LIMIT => {
                        return Err(Failure::new(
                            errors::DATA_LIMIT_EXCEEDED,
                            format!("The state/task '{}' returned a result with a size exceeding the maximum number of bytes service limit.", st.name),
                        ));
                    }
                    (Some(r), _) => r.clone(),
                    (None, Some(p)) => self.scope_eval(fid, &effective, &ctx, |s| p.eval(s))?,
                    (None, None) if forwards => std::mem::take(raw),
                    (None, None) => effective.into_owned(),
                };
                if result.is_some() {
                    self.note(fid, "result", || r.clone());
                } else {
                    self.note(fid, "afterParameters", || r.clone());
                }
                Ok(self.finish_result(fid, st, raw, r))
            }
            Kind::Succeed | Kind::Wait { .. } | Kind::Choice { .. } if !jsonata => {
                let output = self
                    .data_path(fid, &st.output_path, &effective, &ctx)?
                    .into_owned();
                let (next, branch) = self.choose(fid, st, &effective, &ctx)?.unzip();
                let assign_t = branch
                    .flatten()
                    .and_then(|b| b.assign.as_ref())
                    .or(st.assign.as_ref());
                let assigned = self.assign_jsonpath(fid, assign_t, &effective, &ctx)?;
                if let Kind::Wait { wait } = &st.kind {
                    return self.wait(fid, wait, &effective, &ctx, output, assigned);
                }
                Ok(Step::Advance {
                    output,
                    next,
                    assigned,
                })
            }
            Kind::Succeed | Kind::Wait { .. } | Kind::Choice { .. } => {
                let states = self.states_var(raw, &ctx, None, None);
                let (next, branch) = self.choose(fid, st, raw, &ctx)?.unzip();
                let branch = branch.flatten();
                let assign_t = branch
                    .and_then(|b| b.assign.as_ref())
                    .or(st.assign.as_ref());
                let output_t = branch
                    .and_then(|b| b.output.as_ref())
                    .or(st.output.as_ref());
                let output = match output_t {
                    Some(t) => {
                        self.jsonata_eval(fid, states.clone(), |b| t.eval_jsonata(b, "Output"))?
                    }
                    None => raw.clone(),
                };
                let assigned = self.assign_jsonata(fid, assign_t, &states)?;
                if let Kind::Wait { wait } = &st.kind {
                    return self.wait(fid, wait, raw, &ctx, output, assigned);
                }
                Ok(Step::Advance {
                    output,
                    next,
                    assigned,
                })
            }
            Kind::Fail { error, cause } => {
                let text = |this: &Self,
                            t: &Option<Text>,
                            field: &str|
                 -> Result<Option<String>, Failure> {
                    Ok(match t {
                        None => None,
                        Some(Text::Lit(s)) => Some(s.clone()),
                        Some(Text::Dynamic(tpl)) => {
                            let v = if jsonata {
                                let states = this.states_var(raw, &ctx, None, None);
                                this.jsonata_eval(fid, states, |b| tpl.eval_jsonata(b, field))?
                            } else {
                                this.scope_eval(fid, &effective, &ctx, |s| tpl.eval(s))?
                            };
                            Some(match v {
                                Value::String(s) => s,
                                other => compact(&other),
                            })
                        }
                    })
                };
                let error = text(self, error, "Error")?;
                let cause = text(self, cause, "Cause")?;
                Err(Failure {
                    error: error.unwrap_or_default(),
                    cause,
                })
            }
            Kind::Task {
                resource,
                parameters,
                timeout,
                heartbeat,
                ..
            } => {
                // A task that waits for a callback gets its token in `$$.Task.Token`.
                let task_token = waits_for_token(resource).then(|| {
                    let hi = self.entropy.next_u64() as u128;
                    let secret = hi << 64 | self.entropy.next_u64() as u128;
                    shoal_asl::identity::TaskToken {
                        execution_arn: self.info.execution_arn.clone(),
                        effect: self.next_effect,
                        secret,
                    }
                    .encode()
                });
                let ctx = match (&task_token, ctx) {
                    (Some(t), Value::Object(mut c)) => {
                        // A context given from outside (TestState) keeps its own Task.
                        c.entry("Task").or_insert_with(|| json!({ "Token": t }));
                        Value::Object(c)
                    }
                    (_, c) => c,
                };
                let states = self.states_var(raw, &ctx, None, None);
                let input = match parameters {
                    Some(p) if jsonata => {
                        self.jsonata_eval(fid, states, |b| p.eval_jsonata(b, "Arguments"))?
                    }
                    Some(p) => self.scope_eval(fid, &effective, &ctx, |s| p.eval(s))?,
                    None => effective.clone().into_owned(),
                };
                let stage = if jsonata {
                    "afterArguments"
                } else {
                    "afterParameters"
                };
                self.note(fid, stage, || input.clone());
                let timeout_seconds = self.seconds(
                    fid,
                    timeout.as_ref(),
                    &effective,
                    &ctx,
                    "TimeoutSeconds",
                    false,
                )?;
                let heartbeat_seconds = self.seconds(
                    fid,
                    heartbeat.as_ref(),
                    &effective,
                    &ctx,
                    "HeartbeatSeconds",
                    false,
                )?;
                let id = self.effect_id();
                self.record_scheduled(resource, &input, timeout_seconds, heartbeat_seconds);
                self.effects.push(Effect::Invoke {
                    id,
                    state: st.name.clone(),
                    resource: resource.clone(),
                    input,
                    timeout_seconds,
                    heartbeat_seconds,
                    task_token,
                });
                self.waiting.insert(id, fid);
                self.frames[fid].status = Status::Waiting(Wait::Task);
                Ok(Step::Block)
            }
            Kind::Parallel {
                branches,
                parameters,
                ..
            } => {
                let input = match parameters {
                    Some(p) if jsonata => {
                        self.jsonata_eval(fid, self.states_var(raw, &ctx, None, None), |b| {
                            p.eval_jsonata(b, "Arguments")
                        })?
                    }
                    Some(p) => self.scope_eval(fid, &effective, &ctx, |s| p.eval(s))?,
                    None => effective.into_owned(),
                };
                self.record("ParallelStateStarted", |_| json!({}));
                let pending = branches
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (i, b.clone(), input.clone()))
                    .collect();
                Ok(self.join(fid, false, raw.clone(), pending, branches.len(), 0, None))
            }
            Kind::Map(_) => Ok(self.start_map(fid, st, raw)),
        }
    }

    /// The Choice decision: Some((next, the matching rule, None for Default)), or None for other states.
    fn choose<'s>(
        &self,
        fid: FrameId,
        st: &'s State,
        input: &Value,
        ctx: &Value,
    ) -> Result<Option<(String, Option<&'s ChoiceBranch>)>, Failure> {
        let Kind::Choice { choices, default } = &st.kind else {
            return Ok(None);
        };
        for (i, c) in choices.iter().enumerate() {
            let hit = match &c.rule {
                ChoiceCond::Rule(r) => self.scope_eval(fid, input, ctx, |s| r.eval(s))?,
                ChoiceCond::Condition(t) => {
                    let states = self.states_var(input, ctx, None, None);
                    match self.jsonata_eval(fid, states, |b| t.eval_jsonata(b, "Condition"))? {
                        Value::Bool(b) => b,
                        other => {
                            return Err(Failure::query(format!(
                                "The Condition field evaluated to {} which is not a boolean",
                                compact(&other)
                            )))
                        }
                    }
                }
            };
            if hit {
                self.step_taken(|| Trace::ChoiceRule {
                    state: st.name.clone(),
                    rule: Some(i),
                });
                return Ok(Some((c.next.clone(), Some(c))));
            }
        }
        match default {
            Some(d) => {
                self.step_taken(|| Trace::ChoiceRule {
                    state: st.name.clone(),
                    rule: None,
                });
                Ok(Some((d.clone(), None)))
            }
            None => Err(Failure::new(
                errors::NO_CHOICE_MATCHED,
                format!("No Matches! for state input {}", compact(input)),
            )),
        }
    }

    fn wait(
        &mut self,
        fid: FrameId,
        wait: &WaitFor,
        input: &Value,
        ctx: &Value,
        output: Value,
        assigned: Option<Map<String, Value>>,
    ) -> Result<Step, Failure> {
        let now = self.now_ms;
        let fire_at_ms = match wait {
            WaitFor::Seconds(n) => {
                let secs = self.seconds(fid, Some(n), input, ctx, "Seconds", true)?;
                now.saturating_add((secs.unwrap_or(0.0) * 1000.0) as i64)
            }
            WaitFor::SecondsPath(p) => {
                let v = self.wait_path(fid, p, input, ctx, "SecondsPath")?;
                match v.as_f64() {
                    Some(n) if n < 0.0 => return Err(Failure::runtime(format!("The SecondsPath parameter references a negative value: {} == {}", p.text(), compact(&v)))),
                    Some(n) if n > MAX_SECONDS => return Err(Failure::runtime(format!("The SecondsPath parameter references a value over {MAX_SECONDS} seconds: {} == {}", p.text(), compact(&v)))),
                    Some(n) if n.fract() == 0.0 => now.saturating_add(n as i64 * 1000),
                    _ => return Err(Failure::runtime(format!("The SecondsPath parameter does not reference a valid integer value: {} == {}", p.text(), compact(&v)))),
                }
            }
            WaitFor::TimestampPath(p) => {
                let v = self.wait_path(fid, p, input, ctx, "TimestampPath")?;
                match v.as_str().and_then(parse_timestamp) {
                    Some(t) => t.timestamp_millis(),
                    None => {
                        return Err(Failure::runtime(format!(
                            "The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: {} == {}",
                            p.text(),
                            plain(&v)
                        )))
                    }
                }
            }
            WaitFor::Timestamp(t) => {
                let s = match t {
                    Text::Lit(s) => Value::String(s.clone()),
                    Text::Dynamic(tpl) => {
                        let states = self.states_var(input, ctx, None, None);
                        self.jsonata_eval(fid, states, |b| tpl.eval_jsonata(b, "Timestamp"))?
                    }
                };
                match s.as_str().and_then(parse_timestamp) {
                    Some(t) => t.timestamp_millis(),
                    None => {
                        return Err(Failure::query(format!(
                            "The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time format string: {}",
                            plain(&s)
                        )))
                    }
                }
            }
        };
        let id = self.effect_id();
        self.effects.push(Effect::Timer { id, fire_at_ms });
        self.waiting.insert(id, fid);
        self.frames[fid].status =
            Status::Waiting(Wait::Timer(AfterTimer::Proceed { output, assigned }));
        Ok(Step::Block)
    }

    /// A numeric field's value. Paths may point at numeric strings, which AWS accepts.
    fn wait_path(
        &self,
        fid: FrameId,
        p: &Path,
        input: &Value,
        ctx: &Value,
        field: &str,
    ) -> Result<Value, Failure> {
        self.scope_eval(fid, input, ctx, |s| s.resolve(p))
            .ok_or_else(|| {
                Failure::runtime(format!(
                    "The {field} parameter does not reference an input value: {}",
                    p.text()
                ))
            })
    }

    fn num_value(
        &self,
        fid: FrameId,
        n: &Num,
        input: &Value,
        ctx: &Value,
        field: &str,
    ) -> Result<Value, Failure> {
        match n {
            Num::Lit(x) => Ok(json!(x)),
            Num::Path(p) => {
                let v = self.scope_eval(fid, input, ctx, |s| {
                    s.resolve_field(p, &format!("{field}Path"))
                })?;
                Ok(match &v {
                    Value::String(s) => s
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .map(|f| json!(f))
                        .unwrap_or(v),
                    _ => v,
                })
            }
            Num::Expr(e) => {
                let states = self.states_var(input, ctx, None, None);
                self.jsonata_eval(fid, states, |b| e.eval_defined(b, field))
            }
        }
    }

    /// A Task's timeout or heartbeat, or a Wait's seconds: a number up to
    /// [`MAX_SECONDS`], above 0 (or from 0 with `zero`). Anything else fails the state
    /// with `States.Runtime` naming the field: it never reaches a clock.
    fn seconds(
        &self,
        fid: FrameId,
        n: Option<&Num>,
        input: &Value,
        ctx: &Value,
        field: &str,
        zero: bool,
    ) -> Result<Option<f64>, Failure> {
        let Some(n) = n else { return Ok(None) };
        let v = self.num_value(fid, n, input, ctx, field)?;
        let low_ok = |s: f64| if zero { s >= 0.0 } else { s > 0.0 };
        if let Some(s) = v.as_f64().filter(|s| low_ok(*s) && *s <= MAX_SECONDS) {
            return Ok(Some(s));
        }
        let (field, path) = match n {
            Num::Path(p) => (format!("{field}Path"), format!(": {}", p.text())),
            _ => (field.to_string(), String::new()),
        };
        let low = if zero { "from 0" } else { "above 0" };
        Err(Failure::runtime(format!(
            "The {field} field refers to value \"{}\" which is not a valid number of seconds ({low}, at most {MAX_SECONDS}){path}",
            plain(&v)
        )))
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        fid: FrameId,
        is_map: bool,
        raw_input: Value,
        mut pending: VecDeque<(usize, Arc<StateMachine>, Value)>,
        n: usize,
        max: usize,
        tolerance: Option<Tolerance>,
    ) -> Step {
        if n == 0 {
            return self.finish_result(
                fid,
                &self.frames[fid].graph.clone().states[&self.frames[fid].current],
                &raw_input,
                json!([]),
            );
        }
        let max = if max == 0 { n } else { max };
        let mut first = Vec::new();
        while first.len() < max {
            match pending.pop_front() {
                Some(p) => first.push(p),
                None => break,
            }
        }
        let running = first.len();
        self.frames[fid].status = Status::Waiting(Wait::Join(Box::new(Join {
            is_map,
            raw_input,
            results: vec![None; n],
            pending,
            children: Vec::new(),
            running,
            failed: 0,
            tolerance,
        })));
        let mut children = Vec::new();
        for (slot, graph, input) in first {
            children.push(self.spawn(fid, slot, graph, input));
        }
        if let Status::Waiting(Wait::Join(j)) = &mut self.frames[fid].status {
            j.children = children;
        }
        Step::Block
    }

    fn start_map(&mut self, fid: FrameId, st: &State, raw: &Value) -> Step {
        match self.map_setup(fid, st, raw) {
            Ok(step) => step,
            Err(f) => Step::Fail(self.located(fid, f)),
        }
    }

    /// Evaluates `t` as JSONata against the state's raw input, or as a JSONPath template
    /// against its effective input.
    fn eval_template(
        &self,
        fid: FrameId,
        t: &Template,
        at: &StateInput,
        field: &str,
    ) -> Result<Value, Failure> {
        if at.lang == Lang::Jsonata {
            self.jsonata_eval(fid, self.states_var(at.raw, at.ctx, None, None), |b| {
                t.eval_jsonata(b, field)
            })
        } else {
            self.scope_eval(fid, at.effective, at.ctx, |s| t.eval(s))
        }
    }

    /// The items a Map iterates when it has no ItemReader (ItemsPath or Items).
    fn map_items(
        &self,
        fid: FrameId,
        m: &MapState,
        raw: &Value,
        effective: &Value,
        ctx: &Value,
        jsonata: bool,
    ) -> Result<Vec<Value>, Failure> {
        let v = if jsonata {
            match &m.items {
                Some(t) => {
                    let text = match t {
                        Template::Jsonata(e) => e.text().to_string(),
                        _ => String::new(),
                    };
                    let at = StateInput {
                        raw,
                        effective,
                        ctx,
                        lang: Lang::Jsonata,
                    };
                    let v = self.eval_template(fid, t, &at, "Items")?;
                    if !v.is_array() {
                        return Err(Failure::query(format!(
                            "The JSONata expression '{text}' specified for the field 'Items' returned an unexpected result type. Expected 'array', but was '{}' for value: {}",
                            type_name(&v),
                            compact(&v)
                        )));
                    }
                    v
                }
                None => raw.clone(),
            }
        } else {
            match &m.items_path {
                Some(p) => self
                    .scope_eval(fid, effective, ctx, |s| s.resolve(p))
                    .ok_or_else(|| {
                        Failure::runtime(format!(
                            "Invalid path '{}' : No results for path: {}",
                            p.text(),
                            bracket_path(p)
                        ))
                    })?,
                None => effective.clone(),
            }
        };
        match v {
            Value::Array(a) => Ok(a),
            other => Err(Failure::query(format!(
                "Map state input must be an array but was: {}",
                compact(&other)
            ))),
        }
    }

    /// ItemReader Parameters, with MaxItems resolved into the ReaderConfig.
    fn reader_source(
        &self,
        fid: FrameId,
        st: &State,
        reader: &ItemReader,
        raw: &Value,
        effective: &Value,
        ctx: &Value,
    ) -> Result<Source, Failure> {
        let at = StateInput {
            raw,
            effective,
            ctx,
            lang: st.lang,
        };
        let parameters = self.eval_template(fid, &reader.parameters, &at, "Arguments")?;
        let mut max_items = None;
        if let Some(n) = &reader.max_items {
            let v = self.num_value(fid, n, effective, ctx, "MaxItems")?;
            if let Num::Path(p) = n {
                let ok = v.as_f64().is_some_and(|f| f.fract() == 0.0);
                if !ok {
                    return Err(Failure::runtime(format!("The MaxItemsPath field refers to value \"{}\" which is not a valid integer: {}", plain(&v), p.text())));
                }
            }
            max_items = Some(v);
        }
        Ok(Source::Reader {
            resource: reader.resource,
            parameters,
            config: reader.config.clone(),
            max_items,
        })
    }

    fn map_setup(&mut self, fid: FrameId, st: &State, raw: &Value) -> Result<Step, Failure> {
        let Kind::Map(m) = &st.kind else {
            return Err(Failure::runtime("not a Map state"));
        };
        let raw = raw.clone();
        let ctx = self.context(fid, st);
        let jsonata = st.lang == Lang::Jsonata;
        let effective = if jsonata {
            raw.clone()
        } else {
            let e = self
                .data_path(fid, &st.input_path, &raw, &ctx)?
                .into_owned();
            self.note(fid, "afterInputPath", || e.clone());
            e
        };
        let at = StateInput {
            raw: &raw,
            effective: &effective,
            ctx: &ctx,
            lang: st.lang,
        };
        // With an ItemReader, AWS iterates what the reader produces and ignores ItemsPath.
        let source = match &m.item_reader {
            Some(r) => self.reader_source(fid, st, r, &raw, &effective, &ctx)?,
            None => {
                let items = self.map_items(fid, m, &raw, &effective, &ctx, jsonata)?;
                if !jsonata && m.items_path.is_some() {
                    self.note(fid, "afterItemsPath", || Value::Array(items.clone()));
                }
                Source::Items(items)
            }
        };
        let settings = self.map_settings(fid, st, m, &at);
        let (max_concurrency, tolerance, shape) = match settings {
            Ok(s) => s,
            Err(f) => {
                // AWS has started the Map when these fail: it says so first.
                let length = match &source {
                    Source::Items(v) => v.len(),
                    Source::Reader { .. } => 0,
                };
                self.record("MapStateStarted", |_| json!({"length": length}));
                return Err(f);
            }
        };
        if let MapMode::Distributed { express } = m.mode {
            let writer = match &m.result_writer {
                None => None,
                Some(w) => Some(WriterSpec {
                    parameters: match &w.parameters {
                        None => json!({}),
                        Some(t) => self.eval_template(fid, t, &at, "Arguments")?,
                    },
                    config: w.config,
                }),
            };
            let length = match &source {
                Source::Items(v) => v.len(),
                Source::Reader { .. } => 0,
            };
            self.record("MapStateStarted", |_| json!({"length": length}));
            let label = m.label.clone().unwrap_or_else(|| st.name.clone());
            let map_run_arn = format!(
                "{}/{label}:{}",
                self.info
                    .state_machine_arn
                    .replacen(":stateMachine:", ":mapRun:", 1),
                shoal_expr::uuid_v4(self.entropy.as_ref())
            );
            self.record("MapRunStarted", |_| json!({"mapRunArn": map_run_arn}));
            let spec = MapRunSpec {
                map_run_arn,
                label,
                state_machine_arn: self.info.state_machine_arn.clone(),
                processor: m.processor.clone(),
                processor_source: m.processor_source.clone(),
                express,
                source,
                shape,
                max_concurrency: max_concurrency as usize,
                tolerance,
                writer,
                child_names: Default::default(),
            };
            let id = self.effect_id();
            self.effects.push(Effect::StartMapRun {
                id,
                state: st.name.clone(),
                spec: Arc::new(spec),
            });
            self.waiting.insert(id, fid);
            self.frames[fid].status = Status::Waiting(Wait::MapRun);
            return Ok(Step::Block);
        }
        let Source::Items(items) = source else {
            return Err(Failure::runtime("an ItemReader needs a DISTRIBUTED Map"));
        };
        let mut shaper = Shaper::new(shape);
        let mut inputs = Vec::with_capacity(items.len());
        for item in items {
            inputs.extend(shaper.push(item)?.map(|c| c.input));
        }
        inputs.extend(shaper.finish().map(|c| c.input));
        self.record("MapStateStarted", |_| json!({"length": inputs.len()}));
        let n = inputs.len();
        let pending = inputs
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i, m.processor.clone(), v))
            .collect();
        Ok(self.join(
            fid,
            true,
            raw,
            pending,
            n,
            max_concurrency as usize,
            Some(tolerance),
        ))
    }

    /// A Map's MaxConcurrency, tolerance, ItemSelector and ItemBatcher, evaluated.
    fn map_settings(
        &mut self,
        fid: FrameId,
        st: &State,
        m: &MapState,
        at: &StateInput,
    ) -> Result<(f64, Tolerance, Shape), Failure> {
        let (effective, ctx) = (at.effective, at.ctx);
        let max_concurrency = self
            .map_int(
                fid,
                m.max_concurrency.as_ref(),
                effective,
                ctx,
                "MaxConcurrency",
            )?
            .unwrap_or(0.0);
        self.note(fid, "maxConcurrency", || json!(max_concurrency as u64));
        let count = self.map_int(
            fid,
            m.tolerated_failure_count.as_ref(),
            effective,
            ctx,
            "ToleratedFailureCount",
        )?;
        if count.is_some_and(|c| c < 0.0) {
            return Err(Failure::runtime(
                "ToleratedFailureCount cannot be negative.",
            ));
        }
        let percentage = match &m.tolerated_failure_percentage {
            None => None,
            Some(n) => {
                let v = self.num_value(fid, n, effective, ctx, "ToleratedFailurePercentage")?;
                let Some(x) = v.as_f64() else {
                    let path = if let Num::Path(p) = n {
                        p.text().to_string()
                    } else {
                        String::new()
                    };
                    return Err(Failure::runtime(format!("The ToleratedFailurePercentagePath field refers to value \"{}\" which is not a valid float: {path}", plain(&v))));
                };
                if !(0.0..=100.0).contains(&x) {
                    return Err(Failure::runtime(
                        "ToleratedFailurePercentage must be between 0 and 100.",
                    ));
                }
                Some(x)
            }
        };
        if let Some(c) = count {
            self.note(fid, "toleratedFailureCount", || json!(c as u64));
        }
        if let Some(p) = percentage {
            self.note(fid, "toleratedFailurePercentage", || json!(p));
        }
        let tolerance = Tolerance { count, percentage };
        let selector = m.item_selector.as_ref().map(|t| Selector {
            template: t.clone(),
            lang: st.lang,
            input: effective.clone(),
            context: ctx.clone(),
            vars: self.vars(fid).all_vars().into_iter().collect(),
            seed: self.entropy.next_u64(),
        });
        let batcher = match &m.item_batcher {
            None => None,
            Some(b) => Some(Batcher {
                max_items: self
                    .map_int(
                        fid,
                        b.max_items_per_batch.as_ref(),
                        effective,
                        ctx,
                        "MaxItemsPerBatch",
                    )?
                    .unwrap_or(f64::MAX)
                    .max(1.0) as usize,
                max_bytes: self
                    .map_int(
                        fid,
                        b.max_input_bytes_per_batch.as_ref(),
                        effective,
                        ctx,
                        "MaxInputBytesPerBatch",
                    )?
                    .unwrap_or(shoal_asl::identity::PAYLOAD_LIMIT as f64)
                    as usize,
                batch_input: match &b.batch_input {
                    None => None,
                    Some(t) => Some(self.eval_template(fid, t, at, "BatchInput")?),
                },
            }),
        };
        let shape = Shape { selector, batcher };
        Ok((max_concurrency, tolerance, shape))
    }

    fn map_int(
        &self,
        fid: FrameId,
        n: Option<&Num>,
        input: &Value,
        ctx: &Value,
        field: &str,
    ) -> Result<Option<f64>, Failure> {
        let Some(n) = n else { return Ok(None) };
        let v = self.num_value(fid, n, input, ctx, field)?;
        match v.as_f64() {
            Some(x) if x.fract() == 0.0 => Ok(Some(x)),
            _ => {
                let path = if let Num::Path(p) = n {
                    p.text().to_string()
                } else {
                    String::new()
                };
                Err(Failure::runtime(format!("The {field}Path field refers to value \"{}\" which is not a valid integer: {path}", plain(&v))))
            }
        }
    }

    /// A Task's TaskScheduled and TaskStarted, or for a function ARN its
    /// LambdaFunctionScheduled and LambdaFunctionStarted.
    fn record_scheduled(
        &mut self,
        resource: &shoal_asl::Resource,
        input: &Value,
        timeout: Option<f64>,
        heartbeat: Option<f64>,
    ) {
        let mut d = Map::new();
        let events = TaskEvents::of(resource);
        match &events {
            TaskEvents::Lambda | TaskEvents::Activity => {
                d.insert("resource".into(), json!(resource.to_string()));
                d.insert("input".into(), json!(compact(input)));
            }
            TaskEvents::Task { kind, name } => {
                let region = self.info.execution_arn.split(':').nth(3);
                d.insert("resourceType".into(), json!(kind));
                d.insert("resource".into(), json!(name));
                d.insert(
                    "region".into(),
                    json!(region.unwrap_or(shoal_asl::identity::REGION)),
                );
                d.insert("parameters".into(), json!(compact(input)));
            }
        }
        if let Some(t) = timeout {
            d.insert("timeoutInSeconds".into(), json!(t as u64));
        }
        if let Some(h) = heartbeat {
            d.insert("heartbeatInSeconds".into(), json!(h as u64));
        }
        self.record(events.name(Phase::Scheduled), |_| Value::Object(d));
        if !matches!(events, TaskEvents::Activity) {
            self.record(events.name(Phase::Started), |_| events.resource_details());
        }
    }

    /// TaskFailed or TaskTimedOut (LambdaFunction* for a function ARN) for the Task the
    /// frame waits on.
    fn record_task_failure(&mut self, fid: FrameId, f: &Failure) {
        let g = self.frames[fid].graph.clone();
        let Some(Kind::Task { resource, .. }) =
            g.states.get(&self.frames[fid].current).map(|s| &s.kind)
        else {
            return;
        };
        let events = TaskEvents::of(resource);
        let phase = if f.error == errors::TIMEOUT || f.error == errors::HEARTBEAT_TIMEOUT {
            Phase::TimedOut
        } else {
            Phase::Failed
        };
        self.record(events.name(phase), |_| {
            let mut d = events.resource_details();
            if let (Value::Object(d), Value::Object(e)) = (&mut d, failure_details(f)) {
                d.extend(e);
            }
            d
        });
    }

    fn task_result(&mut self, fid: FrameId, output: Value) -> Step {
        let g = self.frames[fid].graph.clone();
        let st = &g.states[&self.frames[fid].current];
        if let Kind::Task { resource, .. } = &st.kind {
            let events = TaskEvents::of(resource);
            self.record(events.name(Phase::Succeeded), |_| {
                let mut d = events.resource_details();
                d["output"] = json!(compact(&output));
                d
            });
        }
        self.note(fid, "result", || output.clone());
        let raw = self.frames[fid].input.clone();
        self.finish_result(fid, st, &raw, output)
    }

    /// ResultSelector → ResultPath → OutputPath (or JSONata Output), plus Assign.
    fn finish_result(&self, fid: FrameId, st: &State, raw: &Value, result: Value) -> Step {
        let r = if st.lang == Lang::Jsonata {
            let ctx = self.context(fid, st);
            self.finish_plain(fid, st, raw, &ctx, Some(&result))
        } else {
            self.finish_jsonpath(fid, st, raw, result)
        };
        match r {
            Ok(s) => s,
            Err(f) => Step::Fail(self.located(fid, f)),
        }
    }

    fn finish_jsonpath(
        &self,
        fid: FrameId,
        st: &State,
        raw: &Value,
        result: Value,
    ) -> Result<Step, Failure> {
        let ctx = self.context(fid, st);
        let (selector, result_path) = match &st.kind {
            Kind::Pass { result_path, .. } => (None, result_path),
            k => match k.handling() {
                Some(o) => (o.result_selector.as_ref(), &o.result_path),
                None => (None, &ResultPath::Replace),
            },
        };
        let result = match selector {
            Some(sel) => self.scope_eval(fid, &result, &ctx, |s| sel.eval(s))?,
            None => result,
        };
        self.note(fid, "afterResultSelector", || result.clone());
        let assigned = self.assign_jsonpath(fid, st.assign.as_ref(), &result, &ctx)?;
        let combined = apply_result_path(result_path, raw, result)?;
        self.note(fid, "afterResultPath", || combined.clone());
        let output = match &st.output_path {
            DataPath::Whole => combined,
            dp => self.data_path(fid, dp, &combined, &ctx)?.into_owned(),
        };
        Ok(Step::Advance {
            output,
            next: None,
            assigned,
        })
    }

    /// JSONata: Output (default: the result, or the input for states without one) and Assign.
    fn finish_plain(
        &self,
        fid: FrameId,
        st: &State,
        raw: &Value,
        ctx: &Value,
        result: Option<&Value>,
    ) -> Result<Step, Failure> {
        let states = self.states_var(raw, ctx, result, None);
        let output = match &st.output {
            Some(t) => self.jsonata_eval(fid, states.clone(), |b| t.eval_jsonata(b, "Output"))?,
            None => result.cloned().unwrap_or_else(|| raw.clone()),
        };
        let assigned = self.assign_jsonata(fid, st.assign.as_ref(), &states)?;
        Ok(Step::Advance {
            output,
            next: None,
            assigned,
        })
    }

    /// A state failed: retry it, catch it, or fail its frame.
    fn fail_state(&mut self, fid: FrameId, failure: Failure) {
        self.state_failed(fid, failure, true);
    }

    /// `own`: the state failed itself, rather than through a Map iteration or Parallel
    /// branch (whose EvaluationFailed is recorded there, once).
    fn state_failed(&mut self, fid: FrameId, failure: Failure, own: bool) {
        let g = self.frames[fid].graph.clone();
        let Some(st) = g.states.get(&self.frames[fid].current) else {
            return self.frame_done(fid, Err(failure));
        };
        self.frames[fid].status = Status::Ready;
        // An expression that could not be evaluated, and a Map or Parallel state that
        // failed, have events of their own, whether a Retry or Catch then handles it.
        if own && failure.error == errors::QUERY_EVALUATION_ERROR {
            self.record("EvaluationFailed", |_| {
                let mut d =
                    json!({"error": failure.error, "cause": failure.cause, "state": st.name});
                if let Some(l) = failure.cause.as_deref().and_then(evaluation_location) {
                    d["location"] = json!(l);
                }
                d
            });
        }
        if let Some(outcome) = st.kind.handling() {
            if let Some(i) = outcome
                .retry
                .iter()
                .position(|r| error_matches(&r.error_equals, &failure.error))
            {
                let r = &outcome.retry[i];
                let f = &mut self.frames[fid];
                if f.retries.len() < outcome.retry.len() {
                    f.retries.resize(outcome.retry.len(), 0);
                }
                let attempt = f.retries[i];
                if attempt < r.max_attempts {
                    f.retries[i] += 1;
                    self.step_taken(|| Trace::Retried {
                        state: st.name.clone(),
                        retrier: i,
                    });
                    let jitter = (self.entropy.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                    let delay = crate::retry_delay_ms(r, attempt, jitter);
                    let id = self.effect_id();
                    self.effects.push(Effect::Timer {
                        id,
                        fire_at_ms: self.now_ms.saturating_add(delay),
                    });
                    self.waiting.insert(id, fid);
                    self.frames[fid].status = Status::Waiting(Wait::Timer(AfterTimer::Retry));
                    return;
                }
            }
            self.record_block_failed(st, &failure);
            if let Some((index, c)) = outcome
                .catch
                .iter()
                .enumerate()
                .find(|(_, c)| error_matches(&c.error_equals, &failure.error))
            {
                self.note(fid, "errorDetails", || json!({"catchIndex": index}));
                self.step_taken(|| Trace::Caught {
                    state: st.name.clone(),
                    catcher: index,
                });
                let error_output = json!({"Error": failure.error, "Cause": failure.cause});
                let raw = self.frames[fid].input.clone();
                let caught = if st.lang == Lang::Jsonata {
                    let ctx = self.context(fid, st);
                    let states = self.states_var(&raw, &ctx, None, Some(&error_output));
                    let out = match &c.output {
                        Some(t) => {
                            self.jsonata_eval(fid, states.clone(), |b| t.eval_jsonata(b, "Output"))
                        }
                        None => Ok(error_output.clone()),
                    };
                    out.and_then(|o| Ok((o, self.assign_jsonata(fid, c.assign.as_ref(), &states)?)))
                } else {
                    let ctx = self.context(fid, st);
                    self.assign_jsonpath(fid, c.assign.as_ref(), &error_output, &ctx)
                        .and_then(|a| {
                            Ok((
                                apply_result_path(&c.result_path, &raw, error_output.clone())?,
                                a,
                            ))
                        })
                };
                let step = match caught {
                    Ok((output, assigned)) => Step::Advance {
                        output,
                        next: Some(c.next.clone()),
                        assigned,
                    },
                    Err(f) => return self.frame_done(fid, Err(self.located(fid, f))),
                };
                return self.after_step(fid, step);
            }
        }
        if st.kind.handling().is_none() {
            self.record_block_failed(st, &failure);
        }
        // A Parallel branch's Task that fails uncaught is aborted with its Parallel.
        let in_parallel = self.frames[fid].parent.is_some_and(
            |(p, _)| matches!(&self.frames[p].status, Status::Waiting(Wait::Join(j)) if !j.is_map),
        );
        if in_parallel && matches!(st.kind, Kind::Task { .. }) {
            self.record_aborted(st);
        }
        // AWS records no event of its own for other states that fail uncaught: the
        // failure shows in the event before and in ExecutionFailed.
        self.frame_done(fid, Err(failure))
    }

    /// A Map or Parallel state that fails for good (no retry left) says so, unless
    /// States.Runtime, which ends the execution there, failed it.
    fn record_block_failed(&mut self, st: &State, failure: &Failure) {
        if failure.error == errors::RUNTIME {
            return;
        }
        match st.kind {
            Kind::Map(_) => {
                self.record("MapStateFailed", |_| json!({}));
            }
            Kind::Parallel { .. } => {
                self.record("ParallelStateFailed", |_| json!({}));
            }
            _ => {}
        }
    }
}

/// The field an evaluation error names, as its message says it: "... for the field
/// 'Output/result' ..." or "The Timestamp field ...".
fn evaluation_location(cause: &str) -> Option<&str> {
    if let Some((_, rest)) = cause.split_once("specified for the field '") {
        return rest.split_once('\'').map(|(f, _)| f);
    }
    let (before, _) = cause.split_once(" field cannot ")?;
    before.rsplit_once("The ").map(|(_, f)| f)
}

fn apply_result_path(rp: &ResultPath, raw: &Value, result: Value) -> Result<Value, Failure> {
    match rp {
        ResultPath::Replace => Ok(result),
        ResultPath::Discard => Ok(raw.clone()),
        ResultPath::Path(p) => {
            let mut out = raw.clone();
            if p.text() == "$" {
                return Ok(result);
            }
            if !out.is_object() && !out.is_array() {
                out = json!({});
            }
            if p.set(&mut out, result) {
                Ok(out)
            } else {
                Err(Failure::new(
                    errors::RESULT_PATH_MATCH_FAILURE,
                    format!(
                        "Unable to apply ResultPath '{}' to input '{}'",
                        p.text(),
                        compact(raw)
                    ),
                ))
            }
        }
    }
}

/// `$.a.b` as Jayway's bracket form `$['a']['b']`, which AWS quotes in causes.
fn bracket_path(p: &Path) -> String {
    let t = p.text();
    let body = t.trim_start_matches('$');
    let mut out = String::from("$");
    for part in body.split('.').filter(|s| !s.is_empty()) {
        out.push_str(&format!("['{part}']"));
    }
    out
}

/// A value as AWS prints it in messages: strings bare, everything else as JSON.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => compact(other),
    }
}

/// AWS's `resourceType` and `resource` of a task event: `lambda` and `invoke` for
/// `arn:aws:states:::lambda:invoke`, `aws-sdk:s3` and `listBuckets` for an SDK call.
fn resource_parts(resource: &shoal_asl::Resource) -> (String, String) {
    let arn = resource.to_string();
    let rest = arn.splitn(6, ':').nth(5).unwrap_or(&arn).to_string();
    match rest.rsplit_once(':') {
        Some((t, r)) => (t.to_string(), r.to_string()),
        None => (rest.clone(), rest),
    }
}

/// Whether a Task's resource waits for SendTaskSuccess/Failure: `.waitForTaskToken`
/// and activities.
fn waits_for_token(resource: &shoal_asl::Resource) -> bool {
    matches!(resource, shoal_asl::Resource::Activity { .. })
        || resource.pattern() == shoal_asl::Pattern::WaitForTaskToken
}

/// A failure's `error` and `cause` as history details: AWS leaves out an empty one.
fn failure_details(f: &Failure) -> Value {
    let mut d = Map::new();
    if !f.error.is_empty() {
        d.insert("error".into(), json!(f.error));
    }
    if let Some(c) = f.cause.as_deref().filter(|c| !c.is_empty()) {
        d.insert("cause".into(), json!(c));
    }
    Value::Object(d)
}

#[derive(Clone, Copy)]
enum Phase {
    Scheduled,
    Started,
    Succeeded,
    Failed,
    TimedOut,
}

/// Which events a Task's resource gets: LambdaFunction* for a function ARN called
/// directly, else Task* naming the integration as `resourceType` and `resource`.
enum TaskEvents {
    Lambda,
    /// Activity*: ActivityStarted comes when a worker takes the task.
    Activity,
    Task {
        kind: String,
        name: String,
    },
}

impl TaskEvents {
    fn of(r: &shoal_asl::Resource) -> TaskEvents {
        use shoal_asl::Resource as R;
        let (kind, name) = match r {
            R::LambdaFunction { .. } => return TaskEvents::Lambda,
            R::LambdaInvoke { pattern, .. } => {
                ("lambda".into(), format!("invoke{}", pattern.suffix()))
            }
            R::Http { .. } => ("http".into(), "invoke".into()),
            R::Activity { .. } => return TaskEvents::Activity,
            R::AwsSdk {
                service,
                action,
                pattern,
                ..
            } => (
                format!("aws-sdk:{service}"),
                format!("{action}{}", pattern.suffix()),
            ),
            R::Service {
                service,
                action,
                pattern,
                ..
            } => (service.clone(), format!("{action}{}", pattern.suffix())),
        };
        TaskEvents::Task { kind, name }
    }

    fn name(&self, phase: Phase) -> &'static str {
        if let TaskEvents::Activity = self {
            return match phase {
                Phase::Scheduled => "ActivityScheduled",
                Phase::Started => "ActivityStarted",
                Phase::Succeeded => "ActivitySucceeded",
                Phase::Failed => "ActivityFailed",
                Phase::TimedOut => "ActivityTimedOut",
            };
        }
        let lambda = matches!(self, TaskEvents::Lambda);
        match (lambda, phase) {
            (true, Phase::Scheduled) => "LambdaFunctionScheduled",
            (true, Phase::Started) => "LambdaFunctionStarted",
            (true, Phase::Succeeded) => "LambdaFunctionSucceeded",
            (true, Phase::Failed) => "LambdaFunctionFailed",
            (true, Phase::TimedOut) => "LambdaFunctionTimedOut",
            (false, Phase::Scheduled) => "TaskScheduled",
            (false, Phase::Started) => "TaskStarted",
            (false, Phase::Succeeded) => "TaskSucceeded",
            (false, Phase::Failed) => "TaskFailed",
            (false, Phase::TimedOut) => "TaskTimedOut",
        }
    }

    /// `resourceType` and `resource` (Task* events; LambdaFunction* events name neither).
    fn resource_details(&self) -> Value {
        match self {
            TaskEvents::Lambda | TaskEvents::Activity => json!({}),
            TaskEvents::Task { kind, name } => json!({"resourceType": kind, "resource": name}),
        }
    }
}
