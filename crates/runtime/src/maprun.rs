//! Carrying out a Distributed Map run: [`MapRunner`] drives the sans-I/O
//! `engine::maprun::MapRun` with items from the reader, children on tokio tasks (or a
//! [`Remote`]), records to the ResultWriter, and checkpoints to the store. Each phase
//! is one method: recall what the store knows, open the reader and the writer, loop,
//! finish.

use crate::durable::{self, MapDurable};
use crate::{Remote, Runtime, Scope};
use serde_json::Value;
use shoal_engine::maprun::{Child, ChildEnd, MapRun, Source, Tally};
use shoal_engine::{Entropy, Execution, Failure, MapRunSpec, Outcome};
use shoal_mapio::items::{Chunk, ReadProgress, ReadSnapshot};
use shoal_mapio::results::{Encoded, Encoder, ResultWriter};
use shoal_store::{ChildExecution, ExecutionStatus, MapRunRecord};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// A map run as it goes: readable from other threads (the progress bar, the API).
pub struct MapRunProgress {
    pub map_run_arn: String,
    pub state: String,
    /// As UpdateMapRun last set it; the run picks it up at its next turn.
    max_concurrency: AtomicU64,
    tally: Mutex<Tally>,
    live: AtomicU64,
    peak: AtomicU64,
    /// UpdateMapRun's request, picked up by the map run's loop.
    update: Mutex<Option<MapRunUpdate>>,
    wake: tokio::sync::Notify,
    /// The first child to fail (its index and error), once the run has ended.
    first_failure: Mutex<Option<(u64, shoal_expr::Failure)>>,
    /// How far the ItemReader has got; none when the items come from the input.
    reader: Option<Arc<ReadProgress>>,
}

/// UpdateMapRun: what to change; `None` keeps the current value.
#[derive(Debug, Clone, Copy, Default)]
pub struct MapRunUpdate {
    pub max_concurrency: Option<usize>,
    pub tolerated_failure_count: Option<f64>,
    pub tolerated_failure_percentage: Option<f64>,
}

impl MapRunProgress {
    /// Asks the running map run to change its limits.
    pub fn max_concurrency(&self) -> u64 {
        self.max_concurrency.load(Ordering::SeqCst)
    }

    pub fn update(&self, u: MapRunUpdate) {
        if let Some(m) = u.max_concurrency {
            self.max_concurrency.store(m as u64, Ordering::SeqCst);
        }
        *self.update.lock().unwrap_or_else(|p| p.into_inner()) = Some(u);
        self.wake.notify_one();
    }

    pub fn first_failure(&self) -> Option<(u64, shoal_expr::Failure)> {
        self.first_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The counters, with an UpdateMapRun the run has not picked up yet already
    /// applied: DescribeMapRun right after UpdateMapRun shows the new values.
    pub fn tally(&self) -> Tally {
        // Lock order: `update`, then `tally` (as `MapRunner::apply_update`).
        let update = *self.update.lock().unwrap_or_else(|p| p.into_inner());
        let mut t = self.tally.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(u) = update {
            if let Some(c) = u.tolerated_failure_count {
                t.tolerance.count = Some(c);
            }
            if let Some(p) = u.tolerated_failure_percentage {
                t.tolerance.percentage = Some(p);
            }
        }
        t
    }
    /// Children running right now, counted where they run.
    pub fn live(&self) -> u64 {
        self.live.load(Ordering::SeqCst)
    }
    /// The most children that ever ran at once.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::SeqCst)
    }
    /// The ItemReader's bytes read and keys listed, when the items come from one.
    pub fn reader(&self) -> Option<ReadSnapshot> {
        self.reader.as_ref().map(|r| r.snapshot())
    }
}

/// How often a map run records its progress: what ended since is all a crash can cost.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// A child's end, its ResultWriter record already serialized, and its row when the
/// store keeps the run's STANDARD children.
type Ended = (
    Child,
    ChildEnd,
    Option<Encoded>,
    Option<Box<ChildExecution>>,
);

/// Decrements a counter when a child ends, however it ends.
struct Live<'a>(&'a AtomicU64);

impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the store knows of a map run before it starts.
enum Recalled {
    /// Nothing: a new run.
    Fresh,
    /// It ended: its result, answered at once.
    Ended(Result<Value, Failure>),
    /// It was running (or is being redriven): go on from its checkpoint.
    Resume {
        rec: Box<MapRunRecord>,
        cp: Box<durable::Checkpoint>,
        redrive: bool,
    },
}

/// One map run being carried out.
struct MapRunner {
    rt: Arc<Runtime>,
    spec: Arc<MapRunSpec>,
    scope: Scope,
    progress: Arc<MapRunProgress>,
    mr: MapRun,
    durable: Option<MapDurable>,
    /// The store row, updated at each checkpoint.
    row: MapRunRecord,
    generation: u32,
    writer: Option<ResultWriter>,
    fleet: Option<Arc<dyn Remote>>,
    running: JoinSet<Ended>,
    /// Ended STANDARD children not yet handed to the store.
    new_children: Vec<ChildExecution>,
    /// Something changed since the last checkpoint.
    dirty: bool,
    last_checkpoint: std::time::Instant,
}

impl Runtime {
    /// Carries out one Distributed Map run.
    pub async fn map_run(
        self: Arc<Self>,
        spec: Arc<MapRunSpec>,
        state: String,
    ) -> Result<Value, Failure> {
        self.map_run_with(spec, state, None, Scope::default()).await
    }

    /// A map run, checkpointed to the store when `durable` says where.
    pub(crate) async fn map_run_with(
        self: Arc<Self>,
        spec: Arc<MapRunSpec>,
        state: String,
        durable: Option<MapDurable>,
        scope: Scope,
    ) -> Result<Value, Failure> {
        let progress = self.register(&spec, &state);
        let recalled = match &durable {
            // The store's reads run off the runtime's threads.
            Some(d) => {
                let (d, spec) = (d.clone(), spec.clone());
                tokio::task::spawn_blocking(move || recall(&d, &spec))
                    .await
                    .map_err(|e| match e.try_into_panic() {
                        Ok(p) => panicked(p),
                        Err(e) => Failure::runtime(e.to_string()),
                    })??
            }
            None => Recalled::Fresh,
        };
        let mut mr = MapRun::new(spec.clone(), &state, self.entropy().next_u64());
        if durable.is_some() {
            mr.set_durable();
        }
        let mut row = MapRunRecord {
            arn: spec.map_run_arn.clone(),
            execution: durable
                .as_ref()
                .map(|d| d.execution.clone())
                .unwrap_or_default(),
            state,
            status: "RUNNING".into(),
            start_ms: self.now_ms(),
            max_concurrency: spec.max_concurrency as u64,
            tolerated_count: spec.tolerance.count.map(|c| c as u64),
            tolerated_percentage: spec.tolerance.percentage,
            ..Default::default()
        };
        let (generation, writer_state, redriving) = match recalled {
            Recalled::Ended(result) => return result,
            Recalled::Fresh => (0, Value::Null, false),
            Recalled::Resume { rec, cp, redrive } => {
                row.start_ms = rec.start_ms;
                let cp = *cp;
                mr.restore(cp.restored);
                (cp.generation, cp.writer, redrive)
            }
        };
        let fleet = self
            .fleet
            .clone()
            .filter(|_| spec.processor_source.is_some());
        let mut runner = MapRunner {
            rt: self,
            spec,
            scope,
            progress,
            mr,
            dirty: durable.is_some(),
            durable,
            row,
            generation,
            writer: None,
            fleet,
            running: JoinSet::new(),
            new_children: Vec::new(),
            // The first checkpoint comes at once: DescribeMapRun finds the run from the start.
            last_checkpoint: std::time::Instant::now() - CHECKPOINT_EVERY,
        };
        let items = runner.open_reader();
        runner.open_writer(writer_state, redriving).await;
        runner.run(items).await;
        runner.finish().await
    }

    fn register(&self, spec: &MapRunSpec, state: &str) -> Arc<MapRunProgress> {
        let progress = Arc::new(MapRunProgress {
            map_run_arn: spec.map_run_arn.clone(),
            state: state.to_string(),
            max_concurrency: AtomicU64::new(spec.max_concurrency as u64),
            tally: Mutex::new(Tally::new(spec.tolerance)),
            live: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            update: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
            first_failure: Mutex::new(None),
            reader: matches!(spec.source, Source::Reader { .. })
                .then(|| Arc::new(ReadProgress::default())),
        });
        self.map_runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(progress.clone());
        progress
    }

    /// Boxed: a child may hold a map run of its own, and the future types recurse.
    #[allow(clippy::too_many_arguments)]
    fn child(
        self: Arc<Self>,
        spec: Arc<MapRunSpec>,
        scope: Scope,
        child: Child,
        progress: Arc<MapRunProgress>,
        (encoder, record): (Option<Encoder>, bool),
        fleet: Option<Arc<dyn Remote>>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Ended> + Send>> {
        use futures::FutureExt;
        // A child that panics ends as failed, so the run counts it and goes on; its
        // tolerance decides the outcome. Without this the run would wait for it forever.
        let (info, index, items) = (child.info.clone(), child.index, child.items);
        Box::pin(
            std::panic::AssertUnwindSafe(self.run_child(
                spec,
                scope,
                child,
                progress,
                (encoder, record),
                fleet,
            ))
            .catch_unwind()
            .map(move |r| {
                r.unwrap_or_else(|panic| {
                    let child = Child {
                        index,
                        items,
                        info,
                        input: Value::Null,
                    };
                    (child, ChildEnd::Failed(panicked(panic)), None, None)
                })
            }),
        )
    }

    async fn run_child(
        self: Arc<Self>,
        spec: Arc<MapRunSpec>,
        scope: Scope,
        mut child: Child,
        progress: Arc<MapRunProgress>,
        (encoder, record): (Option<Encoder>, bool),
        fleet: Option<Arc<dyn Remote>>,
    ) -> Ended {
        let input_text = record.then(|| child.input.to_string());
        let n = progress.live.fetch_add(1, Ordering::SeqCst) + 1;
        progress.peak.fetch_max(n, Ordering::SeqCst);
        let _live = Live(&progress.live);
        let end = match fleet {
            // Boxed: its future is large, and this one is held by every waiting child.
            Some(f) => match Box::pin(f.run_child(&spec, &child)).await {
                Ok(end) => end,
                Err(f) => ChildEnd::Failed(f),
            },
            None => {
                // Children's histories are not kept: nothing reads them yet.
                let mut exec = Execution::with_options(
                    spec.processor.clone(),
                    child.info.clone(),
                    std::mem::take(&mut child.input),
                    Box::new(self.entropy()),
                    shoal_engine::Options {
                        record_history: false,
                        keep_input: spec.needs_inputs(),
                    },
                );
                let end = match self.drive_scoped(&mut exec, &scope).await {
                    Outcome::Succeeded(v) => ChildEnd::Succeeded(v),
                    Outcome::Failed(f) => ChildEnd::Failed(f),
                };
                child.input = exec.take_input();
                end
            }
        };
        let row = input_text.map(|input| {
            let (status, output, error, cause) = match &end {
                ChildEnd::Succeeded(v) => {
                    (ExecutionStatus::Succeeded, Some(v.to_string()), None, None)
                }
                ChildEnd::Failed(f) => (
                    ExecutionStatus::Failed,
                    None,
                    Some(f.error.clone()),
                    f.cause.clone(),
                ),
                ChildEnd::Pending => (ExecutionStatus::Aborted, None, None, None),
            };
            Box::new(ChildExecution {
                arn: child.info.execution_arn.clone(),
                map_run: spec.map_run_arn.clone(),
                child: child.index,
                name: child.info.name.clone(),
                state_machine_arn: child.info.state_machine_arn.clone(),
                status,
                items: child.items,
                start_ms: child.info.start_time_ms,
                stop_ms: self.now_ms(),
                input,
                output,
                error,
                cause,
            })
        });
        // The record is built and serialized here, in parallel, not by the map run's loop.
        let Some(enc) = encoder else {
            return (child, end, None, row);
        };
        let ok = match &end {
            ChildEnd::Failed(f) => ChildEnd::Failed(f.clone()),
            _ => ChildEnd::Succeeded(Value::Null),
        };
        let rec = spec
            .record(&child, end, self.now_ms())
            .map(|r| enc.encode(r));
        child.input = Value::Null;
        (child, ok, rec, row)
    }
}

/// What the store already knows: a finished run answers at once; a running one (or a
/// failed one being redriven) resumes.
fn recall(d: &MapDurable, spec: &MapRunSpec) -> Result<Recalled, Failure> {
    let found = d.db.map_run(&spec.map_run_arn).map_err(store_failure)?;
    Ok(match found {
        Some(rec)
            if rec.status == "RUNNING"
                || (d.redrive && matches!(rec.status.as_str(), "FAILED" | "ABORTED")) =>
        {
            let redrive = rec.status != "RUNNING";
            // `Runtime::resume` refused a damaged row before anything ran.
            let cp = durable::load_checkpoint(&*d.db, &rec, redrive)
                .map_err(|e| Failure::runtime(e.to_string()))?;
            Recalled::Resume {
                rec: Box::new(rec),
                cp: Box::new(cp),
                redrive,
            }
        }
        Some(rec) if rec.status == "SUCCEEDED" => Recalled::Ended(Ok(rec
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or_default())),
        Some(rec) if rec.status == "FAILED" => Recalled::Ended(Err(Failure {
            error: rec.error.unwrap_or_default(),
            cause: rec.cause,
        })),
        _ => Recalled::Fresh,
    })
}

impl MapRunner {
    /// Items from the state input go in at once; an ItemReader streams on its own thread.
    fn open_reader(&mut self) -> Option<mpsc::Receiver<Chunk>> {
        match &self.spec.source {
            Source::Items(v) => {
                for item in v.iter().cloned() {
                    self.mr.push_item(item);
                }
                self.mr.items_end();
                None
            }
            Source::Reader {
                resource,
                parameters,
                config,
                max_items,
            } => Some(shoal_mapio::items::read_tracked(
                self.rt.buckets.clone(),
                *resource,
                parameters.clone(),
                config.clone(),
                max_items.clone(),
                self.progress.reader.clone().unwrap_or_default(),
            )),
        }
    }

    /// The ResultWriter, resumable when the run is durable; one that cannot be made
    /// fails the run.
    async fn open_writer(&mut self, writer_state: Value, redriving: bool) {
        let Some(w) = &self.spec.writer else {
            return;
        };
        let made = ResultWriter::new(
            self.rt.buckets.clone(),
            &w.parameters,
            w.config,
            &self.spec.map_run_arn,
        );
        // A store that keeps no files (in memory) keeps no resumable writers.
        let spill_dir = self.durable.as_ref().and_then(|d| d.db.spill_dir());
        let made = match (made, spill_dir) {
            (Ok(w), Some(dir)) => {
                let w = w.durable(dir.join("spill").join(self.spec.run_id()));
                if writer_state.is_null() {
                    Ok(w)
                } else {
                    w.resume(&writer_state, redriving).await
                }
            }
            (made, _) => made,
        };
        match made {
            Ok(w) => self.writer = Some(w),
            Err(f) => self.mr.fail(f),
        }
    }

    /// Hands out children, takes their ends and the reader's items, checkpoints and
    /// applies UpdateMapRun, until the run is over.
    async fn run(&mut self, mut items: Option<mpsc::Receiver<Chunk>>) {
        let encoder = self.writer.as_ref().map(ResultWriter::encoder);
        // AWS lists a map run's STANDARD children (ListExecutions by mapRunArn); EXPRESS
        // children leave no execution behind.
        let record = self.durable.is_some() && !self.spec.express;
        loop {
            while let Some(child) = self.mr.next_child(self.rt.now_ms()) {
                self.running.spawn(self.rt.clone().child(
                    self.spec.clone(),
                    self.scope.clone(),
                    child,
                    self.progress.clone(),
                    (encoder, record),
                    self.fleet.clone(),
                ));
            }
            *self
                .progress
                .tally
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = self.mr.tally.clone();
            if self.dirty && self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
                if let Err(f) = self.checkpoint().await {
                    self.mr.fail(f);
                }
                self.last_checkpoint = std::time::Instant::now();
                self.dirty = false;
            }
            if self.apply_update() {
                continue;
            }
            if self.mr.is_over() {
                break;
            }
            let want = self.mr.wants_items() && items.is_some();
            // Finished children first: their results are memory to give back.
            tokio::select! {
                biased;
                Some(done) = self.running.join_next(), if !self.running.is_empty() => {
                    let mut next = Some(done);
                    while let Some(done) = next.take() {
                        if let Ok((child, end, rec, row)) = done {
                            if let Some(row) = row {
                                self.new_children.push(*row);
                            }
                            self.child_ended(child, end, rec).await;
                        }
                        next = self.running.try_join_next();
                    }
                }
                _ = self.progress.wake.notified() => {}
                chunk = async { items.as_mut()?.recv().await }, if want => match chunk {
                    Some(Ok(batch)) => {
                        for item in batch {
                            self.mr.push_item(item);
                        }
                    }
                    Some(Err(f)) => self.mr.fail(f),
                    None => {
                        items = None;
                        self.mr.items_end();
                    }
                },
            }
        }
        // A failed run stops its children and its reader.
        self.running.abort_all();
        drop(items);
    }

    async fn child_ended(&mut self, child: Child, end: ChildEnd, rec: Option<Encoded>) {
        if let Some(f) = self.fleet.as_ref().and_then(|f| f.lost()) {
            self.mr.fail(f);
        }
        self.mr.child_ended(&child, end);
        self.dirty = self.durable.is_some();
        if let (Some(w), Some(rec)) = (&mut self.writer, rec) {
            if let Err(f) = w.write(rec).await {
                self.mr.fail(f);
            }
        }
    }

    /// UpdateMapRun's request, if one came: true when it changed the run.
    fn apply_update(&mut self) -> bool {
        // The request stays visible until the tally shows it (see `MapRunProgress::tally`).
        let mut pending = self
            .progress
            .update
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some(u) = pending.take() else {
            return false;
        };
        let tolerance = (u.tolerated_failure_count.is_some()
            || u.tolerated_failure_percentage.is_some())
        .then(|| {
            let mut t = self.mr.tally.tolerance;
            if u.tolerated_failure_count.is_some() {
                t.count = u.tolerated_failure_count;
            }
            if u.tolerated_failure_percentage.is_some() {
                t.percentage = u.tolerated_failure_percentage;
            }
            t
        });
        self.mr.update(u.max_concurrency, tolerance);
        self.row.max_concurrency = self.mr.max_concurrency() as u64;
        self.row.tolerated_count = self.mr.tally.tolerance.count.map(|c| c as u64);
        self.row.tolerated_percentage = self.mr.tally.tolerance.percentage;
        *self
            .progress
            .tally
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = self.mr.tally.clone();
        drop(pending);
        self.dirty = self.durable.is_some();
        true
    }

    /// Writes what is still pending, closes the writer, and records the verdict.
    async fn finish(mut self) -> Result<Value, Failure> {
        if let Some(f) = &self.fleet {
            f.finish_run(&self.spec).await;
        }
        let details = match &mut self.writer {
            None => None,
            Some(w) => {
                let mut r = Ok(());
                let enc = w.encoder();
                for rec in self.mr.take_pending(self.rt.now_ms()) {
                    r = r.and(w.write(enc.encode(rec)).await);
                }
                match r {
                    Ok(()) => match w.finish().await {
                        Ok(d) => Some(d),
                        Err(f) => {
                            self.mr.fail(f);
                            None
                        }
                    },
                    Err(f) => {
                        self.mr.fail(f);
                        None
                    }
                }
            }
        };
        let result = self.mr.finish(details);
        *self
            .progress
            .tally
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = self.mr.tally.clone();
        *self
            .progress
            .first_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = self.mr.first_failure.clone();
        if self.durable.is_some() {
            match &result {
                Ok(v) => self.row.result = Some(v.to_string()),
                Err(f) => {
                    self.row.error = Some(f.error.clone());
                    self.row.cause = f.cause.clone();
                }
            }
            self.row.stop_ms = Some(self.rt.now_ms());
            self.checkpoint().await?;
        }
        result
    }

    /// Records where a map run stands: its result files first (handed to the OS), then the
    /// row that points into them, so a restart never trusts bytes that were not written.
    async fn checkpoint(&mut self) -> Result<(), Failure> {
        let Some(d) = &self.durable else {
            return Ok(());
        };
        let (base, mr, generation, now_ms) = (
            &mut self.row,
            &mut self.mr,
            self.generation,
            self.rt.now_ms(),
        );
        let writer = self.writer.as_mut();
        let writer_state = match writer {
            Some(w) => w.checkpoint().await?,
            None => serde_json::json!({}),
        };
        let shoal_engine::maprun::NewSinceCheckpoint { failures, outputs } = mr.take_new();
        d.db.add_failures(
            &base.arn,
            failures
                .into_iter()
                .map(|(child, items, f)| shoal_store::ChildFailure {
                    child,
                    generation,
                    items,
                    at_ms: now_ms,
                    error: Some(f.error),
                    cause: f.cause,
                })
                .collect(),
        );
        d.db.add_children(std::mem::take(&mut self.new_children));
        d.db.add_outputs(
            &base.arn,
            outputs
                .into_iter()
                .map(|(i, v)| (i, v.to_string()))
                .collect(),
        );
        base.status = mr.tally.status.as_str().to_string();
        base.item_counts = durable::counts_json(&mr.tally.items);
        base.execution_counts = durable::counts_json(&mr.tally.executions);
        base.checkpoint = Some(
            durable::StoredCheckpoint {
                done: std::borrow::Cow::Borrowed(&mr.done),
                writer: std::borrow::Cow::Owned(writer_state),
                over: mr.outputs_over(),
                generation,
            }
            .encode(),
        );
        d.db.put_map_run(base.clone());
        match d.db.failed() {
            Some(e) => Err(store_failure(e)),
            None => Ok(()),
        }
    }
}

fn store_failure(e: shoal_store::Error) -> Failure {
    Failure::runtime(e.to_string())
}

/// The `States.Runtime` failure of work that panicked, naming the panic.
pub(crate) fn panicked(panic: Box<dyn std::any::Any + Send>) -> Failure {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    Failure::runtime(format!("shoal failed internally (a panic): {what}"))
}
