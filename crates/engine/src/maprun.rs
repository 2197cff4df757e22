//! Distributed Map runs, sans I/O: what a run is ([`MapRunSpec`]), how items become
//! child inputs ([`Shaper`]), the counters and the failure tolerance ([`Tally`]), the
//! map's output without a ResultWriter ([`Collector`]) and the ResultWriter's entries.
//!
//! The runtime streams items in, runs the children and writes results; every decision
//! about them is made here, so that it is the same on one machine and on a fleet.

use crate::ExecutionInfo;
use serde_json::{json, Map, Value};
use shoal_asl::identity::{self, iso_time};
use shoal_asl::StateMachine;
use shoal_expr::jsonata::Bindings;
use shoal_expr::template::{Lang, Template};
use shoal_expr::{compact, errors, Failure, Scope, SplitMix, Vars};
use std::sync::Arc;

/// The largest map output (and batch input) AWS allows: 256 KiB.
pub use shoal_asl::identity::PAYLOAD_LIMIT;

/// Everything needed to carry out one Distributed Map run.
#[derive(Debug, Clone)]
pub struct MapRunSpec {
    pub map_run_arn: String,
    pub label: String,
    /// The parent's state machine ARN; children run `<it>/<label>`.
    pub state_machine_arn: String,
    pub processor: Arc<StateMachine>,
    /// The processor's definition, for fleet workers.
    pub processor_source: Option<Arc<Value>>,
    pub express: bool,
    pub source: Source,
    pub shape: Shape,
    /// 0 means no limit.
    pub max_concurrency: usize,
    pub tolerance: Tolerance,
    pub writer: Option<WriterSpec>,
    /// What every child's identity shares, made on first use.
    pub child_names: std::sync::OnceLock<ChildNames>,
}

/// The parts of a map run's children's identities that all of them share.
#[derive(Debug, Clone, Default)]
pub struct ChildNames {
    /// A child's ARN is this followed by its name.
    pub arn_prefix: String,
    pub state_machine_arn: String,
    pub state_machine_name: String,
    pub role_arn: String,
}

/// Where the items come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Items from the state input (ItemsPath / Items).
    Items(Vec<Value>),
    /// An ItemReader, with its Parameters and MaxItems evaluated. MaxItems is checked by
    /// the reader, where AWS fails a bad one (`States.ItemReaderFailed`).
    Reader {
        resource: shoal_asl::ReaderResource,
        parameters: Value,
        config: Arc<shoal_asl::ReaderConfig>,
        max_items: Option<Value>,
    },
}

#[derive(Debug, Clone)]
pub struct WriterSpec {
    pub parameters: Value,
    pub config: shoal_asl::WriterConfig,
}

/// ItemSelector and ItemBatcher, with everything they read captured when the run starts.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    pub selector: Option<Selector>,
    pub batcher: Option<Batcher>,
}

#[derive(Debug, Clone)]
pub struct Selector {
    pub template: Template,
    pub lang: Lang,
    /// The effective input (JSONPath) or the raw input (JSONata).
    pub input: Value,
    pub context: Value,
    pub vars: Map<String, Value>,
    pub seed: u64,
}

#[derive(Debug, Clone)]
pub struct Batcher {
    pub max_items: usize,
    pub max_bytes: usize,
    pub batch_input: Option<Value>,
}

/// ToleratedFailureCount / ToleratedFailurePercentage; unset fields are not considered.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tolerance {
    pub count: Option<f64>,
    pub percentage: Option<f64>,
}

impl Tolerance {
    /// Whether `failed` failures out of `total` break the tolerance. With neither field
    /// set, any failure does. With both, exceeding either does.
    pub fn exceeded(&self, failed: u64, total: Option<u64>) -> bool {
        if failed == 0 {
            return false;
        }
        let over_count = self.count.is_some_and(|c| failed as f64 > c);
        let over_pct = match (self.percentage, total) {
            (Some(p), Some(t)) => failed as f64 * 100.0 / t.max(1) as f64 > p,
            _ => false,
        };
        match (self.count, self.percentage) {
            (None, None) => true,
            _ => over_count || over_pct,
        }
    }

    pub fn threshold_failure() -> Failure {
        Failure::new(
            errors::EXCEED_TOLERATED_FAILURE_THRESHOLD,
            "The specified tolerated failure threshold was exceeded",
        )
    }
}

struct SnapshotVars<'a>(&'a Map<String, Value>);

impl Vars for SnapshotVars<'_> {
    fn get_var(&self, name: &str) -> Option<Value> {
        self.0.get(name).cloned()
    }
    fn all_vars(&self) -> Vec<(String, Value)> {
        self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// The length of `v` as compact JSON, without building the text.
pub fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// One child's input and the items it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildInput {
    pub index: u64,
    pub input: Value,
    pub items: u64,
}

/// Turns items, one at a time and in order, into child inputs (ItemSelector, then ItemBatcher).
pub struct Shaper {
    shape: Shape,
    entropy: SplitMix,
    next_item: u64,
    next_child: u64,
    batch: Vec<Value>,
    batch_bytes: usize,
}

impl Shaper {
    pub fn new(shape: Shape) -> Shaper {
        let seed = shape.selector.as_ref().map_or(0, |s| s.seed);
        Shaper {
            shape,
            entropy: SplitMix::new(seed),
            next_item: 0,
            next_child: 0,
            batch: Vec::new(),
            batch_bytes: 0,
        }
    }

    /// Items pushed so far.
    pub fn items(&self) -> u64 {
        self.next_item
    }

    /// Takes the next item; returns a child input when one is complete.
    pub fn push(&mut self, item: Value) -> Result<Option<ChildInput>, Failure> {
        let index = self.next_item;
        self.next_item += 1;
        let input = match &mut self.shape.selector {
            None => item,
            Some(sel) => {
                sel.context["Map"] = json!({"Item": {"Index": index, "Value": item}});
                let vars = SnapshotVars(&sel.vars);
                if sel.lang == Lang::Jsonata {
                    let states = json!({"input": sel.input, "context": sel.context});
                    // The Map state's entry time, which the context carries.
                    let now_ms = sel
                        .context
                        .pointer("/State/EnteredTime")
                        .and_then(Value::as_str)
                        .and_then(shoal_asl::identity::iso_ms)
                        .unwrap_or(0);
                    let b = Bindings {
                        states,
                        vars: &vars,
                        entropy: &self.entropy,
                        now_ms,
                    };
                    sel.template.eval_jsonata(&b, "ItemSelector")?
                } else {
                    let scope = Scope {
                        input: &sel.input,
                        context: &sel.context,
                        vars: &vars,
                        entropy: &self.entropy,
                    };
                    sel.template.eval(&scope)?
                }
            }
        };
        let Some(b) = &self.shape.batcher else {
            return Ok(Some(self.child(input, 1)));
        };
        let size = json_len(&input) + 1;
        let full = !self.batch.is_empty()
            && (self.batch.len() >= b.max_items || self.batch_bytes + size > b.max_bytes);
        let out = if full { self.flush() } else { None };
        self.batch_bytes += size;
        self.batch.push(input);
        Ok(out)
    }

    /// The last, partial batch.
    pub fn finish(&mut self) -> Option<ChildInput> {
        self.flush()
    }

    fn flush(&mut self) -> Option<ChildInput> {
        if self.batch.is_empty() {
            return None;
        }
        let items = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let n = items.len() as u64;
        let mut m = Map::new();
        if let Some(b) = self
            .shape
            .batcher
            .as_ref()
            .and_then(|b| b.batch_input.clone())
        {
            m.insert("BatchInput".into(), b);
        }
        m.insert("Items".into(), Value::Array(items));
        Some(self.child(Value::Object(m), n))
    }

    fn child(&mut self, input: Value, items: u64) -> ChildInput {
        let index = self.next_child;
        self.next_child += 1;
        ChildInput {
            index,
            input,
            items,
        }
    }
}

/// AWS's DescribeMapRun counters (itemCounts or executionCounts). Stored as AWS names
/// them; reading one back needs every counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub pending: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub aborted: u64,
    pub total: u64,
    pub results_written: u64,
}

impl Counts {
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Aborted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Succeeded => "SUCCEEDED",
            RunStatus::Failed => "FAILED",
            RunStatus::Aborted => "ABORTED",
        }
    }
}

/// A map run's progress: item and execution counters, and the tolerance verdict.
#[derive(Debug, Clone)]
pub struct Tally {
    pub status: RunStatus,
    pub items: Counts,
    pub executions: Counts,
    pub tolerance: Tolerance,
    /// Known once the reader is exhausted; the percentage needs it.
    pub total_known: bool,
}

impl Tally {
    pub fn new(tolerance: Tolerance) -> Tally {
        Tally {
            status: RunStatus::Running,
            items: Counts::default(),
            executions: Counts::default(),
            tolerance,
            total_known: false,
        }
    }

    /// A child input was made and waits to start.
    pub fn queued(&mut self, c: &ChildInput) {
        self.items.pending += c.items;
        self.items.total += c.items;
        self.executions.pending += 1;
        self.executions.total += 1;
    }

    pub fn started(&mut self, items: u64) {
        self.items.pending -= items;
        self.items.running += items;
        self.executions.pending -= 1;
        self.executions.running += 1;
    }

    /// A child ended; returns true when the failures now break the tolerance.
    pub fn finished(&mut self, items: u64, ok: bool) -> bool {
        self.items.running -= items;
        self.executions.running -= 1;
        if ok {
            self.items.succeeded += items;
            self.executions.succeeded += 1;
        } else {
            self.items.failed += items;
            self.executions.failed += 1;
        }
        self.exceeded()
    }

    /// Every item has been read: the percentage can now be judged.
    pub fn all_read(&mut self) -> bool {
        self.total_known = true;
        self.exceeded()
    }

    pub fn exceeded(&self) -> bool {
        let total = self.total_known.then_some(self.items.total);
        self.tolerance.exceeded(self.items.failed, total)
    }

    /// The run is over: what never finished counts as aborted.
    pub fn end(&mut self, status: RunStatus) {
        self.status = status;
        for c in [&mut self.items, &mut self.executions] {
            c.aborted += c.running;
            c.running = 0;
        }
    }
}

/// The map's output without a ResultWriter: child outputs in item order, at most 256 KiB.
#[derive(Debug, Default)]
pub struct Collector {
    outputs: Vec<Value>,
    bytes: usize,
    over: bool,
}

impl Collector {
    pub fn push(&mut self, output: Value) {
        if self.over {
            return;
        }
        self.bytes += json_len(&output) + 1;
        if self.bytes > PAYLOAD_LIMIT {
            // AWS fails such a map; keeping the outputs would only cost memory.
            self.over = true;
            self.outputs = Vec::new();
        } else {
            self.outputs.push(output);
        }
    }

    pub fn finish(self, state: &str) -> Result<Value, Failure> {
        if self.over {
            return Err(Failure::new(
                errors::DATA_LIMIT_EXCEEDED,
                format!("The state/task '{state}' returned a result with a size exceeding the maximum number of bytes service limit."),
            ));
        }
        Ok(Value::Array(self.outputs))
    }
}

/// How one child execution ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ChildEnd {
    Succeeded(Value),
    Failed(Failure),
    /// Never started, because the run failed first.
    Pending,
}

impl MapRunSpec {
    /// The map run's id: `<uuid>` from its ARN.
    pub fn run_id(&self) -> &str {
        self.map_run_arn.rsplit(':').next().unwrap_or("")
    }

    /// `$$.Execution` and `$$.StateMachine` for the child named `name`.
    pub fn child_info(&self, name: &str, start_ms: i64) -> ExecutionInfo {
        // Formatted once per run, not once per child.
        let names = self.child_names.get_or_init(|| {
            let kind = if self.express { "express" } else { "execution" };
            let base = &self.state_machine_arn;
            let sm_name = base.rsplit(':').next().unwrap_or("");
            ChildNames {
                arn_prefix: format!(
                    "{}/{}:",
                    base.replacen(":stateMachine:", &format!(":{kind}:"), 1),
                    self.label
                ),
                state_machine_arn: format!("{base}/{}", self.label),
                state_machine_name: format!("{sm_name}/{}", self.label),
                role_arn: identity::default_role_arn(),
            }
        });
        let mut execution_arn = String::with_capacity(names.arn_prefix.len() + name.len());
        execution_arn.push_str(&names.arn_prefix);
        execution_arn.push_str(name);
        ExecutionInfo {
            execution_arn,
            name: name.to_string(),
            state_machine_arn: names.state_machine_arn.clone(),
            state_machine_name: names.state_machine_name.clone(),
            role_arn: names.role_arn.clone(),
            start_time_ms: start_ms,
            redrive_count: 0,
        }
    }

    /// Whether the children's inputs are needed after they end: ResultWriter entries of
    /// failed children always show them.
    pub fn needs_inputs(&self) -> bool {
        self.writer.is_some()
    }

    /// What the ResultWriter records for a child, in the shape its WriterConfig asks
    /// for; None without a ResultWriter. Pure, so it runs where the child ran.
    pub fn record(&self, child: &Child, end: ChildEnd, now_ms: i64) -> Option<Record> {
        let w = self.writer.as_ref()?;
        let compact = matches!(
            w.config.transformation,
            shoal_asl::WriterTransformation::Compact | shoal_asl::WriterTransformation::Flatten
        );
        Some(match end {
            ChildEnd::Succeeded(v) if compact => Record::Succeeded(v),
            ChildEnd::Succeeded(_) => {
                Record::Succeeded(self.entry(&child.info, &child.input, &end, now_ms))
            }
            ChildEnd::Failed(_) => {
                Record::Failed(self.entry(&child.info, &child.input, &end, now_ms))
            }
            ChildEnd::Pending => {
                Record::Pending(self.entry(&child.info, &child.input, &end, now_ms))
            }
        })
    }

    /// A ResultWriter entry in AWS's NONE shape.
    pub fn entry(
        &self,
        info: &ExecutionInfo,
        input: &Value,
        end: &ChildEnd,
        stop_ms: i64,
    ) -> Value {
        let mut e = json!({
            "ExecutionArn": info.execution_arn, "Input": compact(input), "InputDetails": {"Included": true},
            "Name": info.name, "RedriveCount": 0, "StartDate": iso_time(info.start_time_ms),
            "StateMachineArn": info.state_machine_arn, "StopDate": iso_time(stop_ms),
        });
        match end {
            ChildEnd::Succeeded(out) => {
                e["Output"] = json!(compact(out));
                e["OutputDetails"] = json!({"Included": true});
                e["Status"] = json!("SUCCEEDED");
                e["RedriveStatus"] = json!("NOT_REDRIVABLE");
                e["RedriveStatusReason"] = json!("Execution is SUCCEEDED and cannot be redriven");
            }
            ChildEnd::Failed(f) => {
                e["Error"] = json!(f.error);
                e["Cause"] = json!(f.cause);
                e["Status"] = json!("FAILED");
                e["RedriveStatus"] = json!("REDRIVABLE");
            }
            ChildEnd::Pending => {
                if let Some(o) = e.as_object_mut() {
                    o.remove("StopDate");
                    o.remove("StartDate");
                }
                e["Status"] = json!("PENDING");
            }
        }
        e
    }
}

/// One child execution to start: its identity and input.
#[derive(Debug, Clone)]
pub struct Child {
    pub index: u64,
    pub items: u64,
    pub info: ExecutionInfo,
    pub input: Value,
}

/// A line for the ResultWriter, already in the shape its WriterConfig asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Succeeded(Value),
    Failed(Value),
    Pending(Value),
}

/// How many child inputs to prepare ahead of the running children.
const LOOKAHEAD: usize = 256;

/// AWS runs at most 10,000 children of a Distributed Map at once; MaxConcurrency 0 means that.
pub const MAX_CHILDREN: usize = 10_000;

/// One map run's bookkeeping, sans I/O. The runtime feeds it items, starts the
/// children it hands out, reports how they ended and writes the records it returns.
pub struct MapRun {
    spec: Arc<MapRunSpec>,
    state: String,
    shaper: Shaper,
    pub tally: Tally,
    queue: std::collections::VecDeque<ChildInput>,
    /// Outputs by child index, for the map output without a ResultWriter.
    outputs: Vec<Option<Value>>,
    /// Child index of `outputs[0]`.
    drained: usize,
    collector: Collector,
    names: SplitMix,
    reading: bool,
    failure: Option<Failure>,
    /// Children already ended, in this or an earlier attempt (resume, redrive).
    pub done: DoneSet,
    /// Keep what a store needs to resume: failures and collected outputs since the last take.
    durable: bool,
    /// MaxConcurrency, which UpdateMapRun may change while the run goes.
    max_concurrency: usize,
    new_failures: Vec<(u64, u64, Failure)>,
    new_outputs: Vec<(u64, Value)>,
    /// The first child to fail, and how: AWS's tolerated-failure cause names neither.
    pub first_failure: Option<(u64, Failure)>,
}

/// Which children have ended, compactly: every index below `low`, those in `above`,
/// except those in `redo` (failed children a redrive runs again).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DoneSet {
    pub low: u64,
    pub above: std::collections::BTreeSet<u64>,
    pub redo: std::collections::BTreeSet<u64>,
}

impl DoneSet {
    pub fn contains(&self, i: u64) -> bool {
        (i < self.low || self.above.contains(&i)) && !self.redo.contains(&i)
    }

    pub fn insert(&mut self, i: u64) {
        self.redo.remove(&i);
        if i == self.low {
            self.low += 1;
            while self.above.remove(&self.low) {
                self.low += 1;
            }
        } else if i > self.low {
            self.above.insert(i);
        }
    }
}

/// What a store must save at a checkpoint besides the counters.
pub struct NewSinceCheckpoint {
    /// `(child, items, failure)`
    pub failures: Vec<(u64, u64, Failure)>,
    /// `(child, output)`, for the map output without a ResultWriter.
    pub outputs: Vec<(u64, Value)>,
}

/// What a resumed map run starts from.
#[derive(Debug, Default)]
pub struct Restored {
    pub done: DoneSet,
    pub items: Counts,
    pub executions: Counts,
    /// Collected outputs of ended children (runs without a ResultWriter).
    pub outputs: Vec<(u64, Value)>,
    /// The collected outputs had already passed 256 KiB.
    pub over: bool,
}

impl MapRun {
    /// `seed` names the children (their UUIDs).
    pub fn new(spec: Arc<MapRunSpec>, state: &str, seed: u64) -> MapRun {
        MapRun {
            shaper: Shaper::new(spec.shape.clone()),
            tally: Tally::new(spec.tolerance),
            max_concurrency: spec.max_concurrency,
            spec,
            state: state.to_string(),
            queue: Default::default(),
            outputs: Vec::new(),
            drained: 0,
            collector: Collector::default(),
            names: SplitMix::new(seed),
            reading: true,
            failure: None,
            done: DoneSet::default(),
            durable: false,
            new_failures: Vec::new(),
            new_outputs: Vec::new(),
            first_failure: None,
        }
    }

    /// UpdateMapRun: a new MaxConcurrency and tolerance for the rest of the run. A
    /// tolerance already broken by the failures so far fails the run now.
    pub fn update(&mut self, max_concurrency: Option<usize>, tolerance: Option<Tolerance>) {
        if let Some(m) = max_concurrency {
            self.max_concurrency = m;
        }
        if let Some(t) = tolerance {
            self.tally.tolerance = t;
            if self.tally.exceeded() && self.failure.is_none() {
                self.failure = Some(Tolerance::threshold_failure());
            }
        }
    }

    pub fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }

    /// Keeps failures and outputs for [`MapRun::take_new`], for a store to save.
    pub fn set_durable(&mut self) {
        self.durable = true;
    }

    /// Starts from a checkpoint: ended children are counted but not run again.
    pub fn restore(&mut self, r: Restored) {
        self.done = r.done;
        for (c, from) in [
            (&mut self.tally.items, r.items),
            (&mut self.tally.executions, r.executions),
        ] {
            c.succeeded = from.succeeded;
            c.failed = from.failed;
            c.timed_out = from.timed_out;
            c.results_written = from.results_written;
        }
        if r.over {
            self.collector.over = true;
        }
        for (i, out) in r.outputs {
            self.place_output(i, out);
        }
    }

    /// The map output without a ResultWriter is already past 256 KiB.
    pub fn outputs_over(&self) -> bool {
        self.collector.over
    }

    /// Failures and outputs since the last call.
    pub fn take_new(&mut self) -> NewSinceCheckpoint {
        NewSinceCheckpoint {
            failures: std::mem::take(&mut self.new_failures),
            outputs: std::mem::take(&mut self.new_outputs),
        }
    }

    pub fn spec(&self) -> &Arc<MapRunSpec> {
        &self.spec
    }

    /// Whether the reader should hand over more items now.
    pub fn wants_items(&self) -> bool {
        self.reading && self.failure.is_none() && self.queue.len() < LOOKAHEAD
    }

    pub fn push_item(&mut self, item: Value) {
        if self.failure.is_some() {
            return;
        }
        match self.shaper.push(item) {
            Ok(Some(c)) => self.enqueue(c),
            Ok(None) => {}
            Err(f) => self.fail(f),
        }
    }

    /// The reader has no more items.
    pub fn items_end(&mut self) {
        if !self.reading {
            return;
        }
        self.reading = false;
        if let Some(c) = self.shaper.finish() {
            self.enqueue(c);
        }
        if self.tally.all_read() && self.failure.is_none() {
            self.failure = Some(Tolerance::threshold_failure());
        }
    }

    /// The run fails (a reader error, or the tolerance broken): no new children start.
    pub fn fail(&mut self, f: Failure) {
        self.reading = false;
        if self.failure.is_none() {
            self.failure = Some(f);
        }
    }

    fn enqueue(&mut self, c: ChildInput) {
        if self.done.contains(c.index) {
            // Ended before a restart: it counts, but does not run again.
            self.tally.items.total += c.items;
            self.tally.executions.total += 1;
            return;
        }
        self.tally.queued(&c);
        self.queue.push_back(c);
    }

    /// The next child to start, if the concurrency limit allows one now.
    pub fn next_child(&mut self, now_ms: i64) -> Option<Child> {
        if self.failure.is_some() {
            return None;
        }
        let max = match self.max_concurrency {
            0 => MAX_CHILDREN,
            n => n.min(MAX_CHILDREN),
        };
        if self.tally.executions.running >= max as u64 {
            return None;
        }
        let c = self.queue.pop_front()?;
        self.tally.started(c.items);
        let name = shoal_expr::uuid_v4(&self.names);
        Some(Child {
            index: c.index,
            items: c.items,
            info: self.spec.child_info(&name, now_ms),
            input: c.input,
        })
    }

    /// A child ended. With a ResultWriter, its output has already gone to
    /// [`MapRunSpec::record`]; only whether it succeeded matters here.
    pub fn child_ended(&mut self, child: &Child, end: ChildEnd) {
        let ok = matches!(end, ChildEnd::Succeeded(_));
        if self.tally.finished(child.items, ok) && self.failure.is_none() {
            self.failure = Some(Tolerance::threshold_failure());
        }
        self.done.insert(child.index);
        if let (ChildEnd::Failed(f), None) = (&end, &self.first_failure) {
            self.first_failure = Some((child.index, f.clone()));
        }
        if self.durable {
            if let ChildEnd::Failed(f) = &end {
                self.new_failures
                    .push((child.index, child.items, f.clone()));
            }
        }
        if self.spec.writer.is_some() {
            self.tally.items.results_written += child.items;
            self.tally.executions.results_written += 1;
            return;
        }
        let out = match end {
            ChildEnd::Succeeded(v) => v,
            ChildEnd::Failed(f) => json!({"Error": f.error, "Cause": f.cause}),
            ChildEnd::Pending => return,
        };
        if self.durable && !self.collector.over {
            self.new_outputs.push((child.index, out.clone()));
        }
        self.place_output(child.index, out);
    }

    fn place_output(&mut self, index: u64, out: Value) {
        if self.collector.over {
            self.outputs = Vec::new();
            return;
        }
        let Some(i) = (index as usize).checked_sub(self.drained) else {
            return;
        };
        if self.outputs.len() <= i {
            self.outputs.resize(i + 1, None);
        }
        self.outputs[i] = Some(out);
        self.drain_outputs();
    }

    /// Moves the finished prefix of outputs into the collector, so memory stays bounded.
    fn drain_outputs(&mut self) {
        let ready = self.outputs.iter().take_while(|o| o.is_some()).count();
        if ready == 0 {
            return;
        }
        for o in self.outputs.drain(..ready).flatten() {
            self.collector.push(o);
        }
        self.drained += ready;
    }

    /// Nothing more will start, and what is running no longer matters.
    /// On failure, the runtime stops the children still running; they count as aborted.
    pub fn is_over(&self) -> bool {
        self.failure.is_some()
            || (self.tally.executions.running == 0 && !self.reading && self.queue.is_empty())
    }

    /// After a failure: the children that never started, as PENDING records.
    pub fn take_pending(&mut self, now_ms: i64) -> Vec<Record> {
        if self.spec.writer.is_none() {
            return Vec::new();
        }
        let queued: Vec<ChildInput> = self.queue.drain(..).collect();
        queued
            .into_iter()
            .map(|c| {
                let name = shoal_expr::uuid_v4(&self.names);
                let info = self.spec.child_info(&name, now_ms);
                Record::Pending(self.spec.entry(&info, &c.input, &ChildEnd::Pending, now_ms))
            })
            .collect()
    }

    /// The run's verdict: the map's result (`writer_details` is the ResultWriter's
    /// `{Bucket, Key}`), or why it failed.
    pub fn finish(&mut self, writer_details: Option<Value>) -> Result<Value, Failure> {
        let failed = self.failure.take();
        self.tally.end(if failed.is_some() {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        });
        if let Some(f) = failed {
            return Err(f);
        }
        if self.spec.writer.is_some() {
            return Ok(json!({
                "MapRunArn": self.spec.map_run_arn,
                "ResultWriterDetails": writer_details.unwrap_or(Value::Null),
            }));
        }
        self.drain_outputs();
        std::mem::take(&mut self.collector).finish(&self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_trips_just_past_the_boundary() {
        let t = Tolerance {
            count: Some(2.0),
            percentage: None,
        };
        assert!(!t.exceeded(2, None));
        assert!(t.exceeded(3, None));
        let p = Tolerance {
            count: None,
            percentage: Some(25.0),
        };
        assert!(!p.exceeded(1, Some(4)));
        assert!(p.exceeded(2, Some(4)));
        assert!(!p.exceeded(2, None), "unknown total: not judged yet");
        let both = Tolerance {
            count: Some(5.0),
            percentage: Some(10.0),
        };
        assert!(both.exceeded(2, Some(10)), "either field trips the run");
        assert!(!Tolerance::default().exceeded(0, Some(1)));
        assert!(Tolerance::default().exceeded(1, Some(100)));
    }

    #[test]
    fn batches_respect_count_and_bytes() {
        let mut s = Shaper::new(Shape {
            selector: None,
            batcher: Some(Batcher {
                max_items: 3,
                max_bytes: 12,
                batch_input: Some(json!({"b": 1})),
            }),
        });
        let mut out = Vec::new();
        for i in 0..7 {
            out.extend(s.push(json!(i * 1000)).unwrap());
        }
        out.extend(s.finish());
        // "0"=2 bytes, "1000"=5: [0,1000,2000] would be 12 > 12? 2+5+5 = 12 fits.
        let sizes: Vec<u64> = out.iter().map(|c| c.items).collect();
        assert_eq!(sizes, vec![3, 2, 2]);
        assert_eq!(
            out[0].input,
            json!({"BatchInput": {"b": 1}, "Items": [0, 1000, 2000]})
        );
        assert_eq!(out[2].index, 2);
    }

    #[test]
    fn collector_fails_past_256_kib() {
        let mut c = Collector::default();
        c.push(json!("x".repeat(200_000)));
        c.push(json!("y".repeat(70_000)));
        let f = c.finish("M").unwrap_err();
        assert_eq!(f.error, errors::DATA_LIMIT_EXCEEDED);
        let mut ok = Collector::default();
        ok.push(json!(1));
        assert_eq!(ok.finish("M").unwrap(), json!([1]));
    }

    #[test]
    fn tally_counts_items_and_executions() {
        let mut t = Tally::new(Tolerance {
            count: Some(1.0),
            percentage: None,
        });
        let c = ChildInput {
            index: 0,
            input: json!({}),
            items: 3,
        };
        t.queued(&c);
        t.started(3);
        assert_eq!(t.items.running, 3);
        assert!(t.finished(3, false), "3 failed items > 1");
        assert_eq!(t.executions.failed, 1);
        assert_eq!(t.items.failed, 3);
    }
}
