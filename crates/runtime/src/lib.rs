//! The tokio side of shoal: it carries out the engine's effects. Timers sleep, map
//! runs stream their items and run their children in parallel on all cores, and
//! results go to the ResultWriter as children finish.
//!
//! Time is tokio's: under a paused clock (`--fast-forward`) a long Wait takes no time.
//!
//! With a state store ([`Options::db`]) a top-level execution is journaled and its map
//! runs checkpoint, so [`Runtime::resume`] can finish it after a crash.

mod durable;

pub use durable::{decode_event, encode_event, Error};
use durable::{Journal, MapDurable};
pub use shoal_engine::maprun::Tolerance;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::Value;
use shoal_asl::{ExecutionStatus, StateMachine};
use shoal_buckets::Buckets;
use shoal_engine::maprun::{Child, ChildEnd, MapRun, Source, Tally};
use shoal_engine::{
    Effect, Entropy, Event, Execution, ExecutionInfo, Failure, MapRunSpec, Outcome, SplitMix,
};
use shoal_mapio::items::Chunk;
use shoal_mapio::results::{Encoded, Encoder, ResultWriter};
use shoal_tasks::Tasks;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Somewhere else to run a map run's children: fleet mode (`shoal-fleet`) implements
/// it, so the runtime needs no NATS and the fleet can drive this runtime on workers.
pub trait Remote: Send + Sync {
    /// Runs one child elsewhere and waits for its end.
    fn run_child<'a>(
        &'a self,
        spec: &'a MapRunSpec,
        child: &'a Child,
    ) -> BoxFuture<'a, Result<ChildEnd, Failure>>;
    /// Why the remote can no longer run children, once it cannot.
    fn lost(&self) -> Option<Failure>;
    /// A map run ended: what it left queued elsewhere can go.
    fn finish_run<'a>(&'a self, spec: &'a MapRunSpec) -> BoxFuture<'a, ()>;
}

pub struct Options {
    /// The run's buckets (`--buckets` or an S3 endpoint), if it has any.
    pub buckets: Option<Buckets>,
    /// Every Task resource this runtime can carry out.
    pub tasks: Tasks,
    /// Seeds the randomness of executions (names, `States.UUID`, jitter).
    pub seed: u64,
    /// The state store; without one nothing outlives the process.
    pub db: Option<Arc<shoal_store::Db>>,
    /// Run Distributed Map children on a NATS fleet instead of here.
    pub fleet: Option<Arc<dyn Remote>>,
}

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

    pub fn tally(&self) -> Tally {
        self.tally.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// Children running right now, counted where they run.
    pub fn live(&self) -> u64 {
        self.live.load(Ordering::SeqCst)
    }
    /// The most children that ever ran at once.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::SeqCst)
    }
}

pub struct Runtime {
    buckets: Option<Arc<Buckets>>,
    tasks: Arc<Tasks>,
    start_wall_ms: i64,
    t0: Instant,
    seeds: AtomicU64,
    map_runs: Mutex<Vec<Arc<MapRunProgress>>>,
    db: Option<Arc<shoal_store::Db>>,
    fleet: Option<Arc<dyn Remote>>,
}

/// How often a map run records its progress: what ended since is all a crash can cost.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// An execution recorded in the store, ready to run.
pub struct Begun {
    exec: Execution,
    journal: Journal,
}

impl Begun {
    pub fn execution_arn(&self) -> &str {
        &self.journal.arn
    }
}

/// A child's end, and its ResultWriter record already serialized.
type Ended = (Child, ChildEnd, Option<Encoded>);

/// Decrements a counter when a child ends, however it ends.
struct Live<'a>(&'a AtomicU64);

impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Runtime {
    /// Call within a tokio runtime.
    pub fn new(options: Options) -> Arc<Runtime> {
        let buckets = options.buckets.map(Arc::new);
        if let Some(b) = &buckets {
            options.tasks.functions().attach_buckets(b.clone());
        }
        Arc::new(Runtime {
            buckets,
            tasks: Arc::new(options.tasks),
            start_wall_ms: chrono::Utc::now().timestamp_millis(),
            t0: Instant::now(),
            seeds: AtomicU64::new(options.seed),
            map_runs: Mutex::new(Vec::new()),
            db: options.db,
            fleet: options.fleet,
        })
    }

    /// Milliseconds since the epoch on this runtime's clock.
    pub fn now_ms(&self) -> i64 {
        self.start_wall_ms + self.t0.elapsed().as_millis() as i64
    }

    fn instant(&self, at_ms: i64) -> Instant {
        self.t0 + std::time::Duration::from_millis((at_ms - self.start_wall_ms).max(0) as u64)
    }

    /// A fresh, independent random stream.
    pub fn entropy(&self) -> SplitMix {
        let n = self
            .seeds
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        SplitMix::new(n)
    }

    pub fn fleet(&self) -> Option<&Arc<dyn Remote>> {
        self.fleet.as_ref()
    }

    /// Runs a map run's processor as one child execution (a fleet worker's job).
    pub async fn run_processor(
        self: &Arc<Self>,
        machine: Arc<StateMachine>,
        info: ExecutionInfo,
        input: Value,
    ) -> Outcome {
        let mut exec = Execution::with_options(
            machine,
            info,
            input,
            Box::new(self.entropy()),
            shoal_engine::Options {
                record_history: false,
                keep_input: false,
            },
        );
        self.drive(&mut exec).await
    }

    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// Every map run started so far, newest last.
    pub fn map_runs(&self) -> Vec<Arc<MapRunProgress>> {
        self.map_runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The live progress of a map run started by this runtime.
    pub fn map_run_progress(&self, map_run_arn: &str) -> Option<Arc<MapRunProgress>> {
        self.map_runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .find(|p| p.map_run_arn == map_run_arn)
            .cloned()
    }

    /// Starts an execution of `machine` and runs it to the end.
    pub async fn run(
        self: &Arc<Self>,
        machine: Arc<StateMachine>,
        info: ExecutionInfo,
        input: Value,
    ) -> Outcome {
        let mut exec = Execution::new(machine, info, input, Box::new(self.entropy()));
        self.drive(&mut exec).await
    }

    /// Starts an execution and runs it to the end, journaled when there is a store.
    pub async fn start(
        self: &Arc<Self>,
        machine: Arc<StateMachine>,
        definition: &str,
        info: ExecutionInfo,
        input: Value,
    ) -> Result<Outcome, Error> {
        if self.db.is_none() {
            return Ok(self.run(machine, info, input).await);
        }
        let begun = self.begin(machine, definition, info, input)?;
        self.run_begun(begun).await
    }

    /// Records a new execution in the store (refusing a name in use) without running it.
    pub fn begin(
        self: &Arc<Self>,
        machine: Arc<StateMachine>,
        definition: &str,
        info: ExecutionInfo,
        input: Value,
    ) -> Result<Begun, Error> {
        let db = self.db.clone().ok_or(Error::NoStore)?;
        let seed = self.entropy().next_u64();
        db.create_execution(&shoal_store::ExecutionRecord {
            arn: info.execution_arn.clone(),
            name: info.name.clone(),
            state_machine_arn: info.state_machine_arn.clone(),
            state_machine_name: info.state_machine_name.clone(),
            definition: definition.to_string(),
            input: input.to_string(),
            seed,
            status: ExecutionStatus::Running,
            start_ms: info.start_time_ms,
            stop_ms: None,
            output: None,
            error: None,
            cause: None,
            redrive_count: 0,
            redrive_ms: None,
            history_offset: 0,
        })?;
        let journal = Journal {
            db,
            arn: info.execution_arn.clone(),
            seq: 0,
            history_sent: 0,
            history_offset: 0,
            redrive: false,
        };
        let exec = Execution::new(machine, info, input, Box::new(SplitMix::new(seed)));
        Ok(Begun { exec, journal })
    }

    /// Runs an execution [`Runtime::begin`] recorded, to the end.
    pub async fn run_begun(self: &Arc<Self>, begun: Begun) -> Result<Outcome, Error> {
        let Begun { mut exec, journal } = begun;
        self.drive_from(
            &mut exec,
            VecDeque::from([Event::Start]),
            Vec::new(),
            Some(journal),
        )
        .await
    }

    /// Finishes an execution from the store: replays its journal, then carries out what
    /// was still open. With `redrive`, a failed execution first forgets the event that
    /// failed it, and its failed map run runs its failed and pending children again.
    pub async fn resume(
        self: &Arc<Self>,
        execution: &str,
        redrive: bool,
    ) -> Result<Outcome, Error> {
        let db = self.db.clone().ok_or(Error::NoStore)?;
        let rec = db.execution(execution)?;
        let done = match rec.status {
            ExecutionStatus::Succeeded => Some(Outcome::Succeeded(
                rec.output
                    .as_deref()
                    .and_then(|o| serde_json::from_str(o).ok())
                    .unwrap_or_default(),
            )),
            ExecutionStatus::Running => None,
            _ => Some(Outcome::Failed(Failure {
                error: rec.error.clone().unwrap_or_default(),
                cause: rec.cause.clone(),
            })),
        };
        match (done, redrive) {
            (None, _) => {}
            (Some(o), false) => return Ok(o),
            (Some(Outcome::Succeeded(_)), true) => {
                return Err(Error::NotRedrivable {
                    arn: rec.arn,
                    status: rec.status,
                })
            }
            (Some(_), true) => {}
        }
        let parsed = shoal_asl::parse(&rec.definition);
        let Some(machine) = parsed.machine.filter(|_| parsed.diagnostics.is_empty()) else {
            return Err(Error::Definition {
                arn: rec.arn,
                message: parsed
                    .diagnostics
                    .first()
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
            });
        };
        let input: Value = serde_json::from_str(&rec.input).unwrap_or_default();
        let mut info = ExecutionInfo::local(
            &rec.state_machine_name,
            &rec.name,
            rec.start_ms,
            false,
            &SplitMix::new(0),
        );
        info.execution_arn = rec.arn.clone();
        info.state_machine_arn = rec.state_machine_arn.clone();
        info.redrive_count = rec.redrive_count + u32::from(redrive && rec.status != ExecutionStatus::Running);
        let mut entries = db.journal(&rec.arn)?;
        let redriving = redrive && rec.status != ExecutionStatus::Running;
        if redriving && rec.status != ExecutionStatus::Aborted {
            // The last event is the one that failed the execution: it is taken back.
            if let Some(last) = entries.pop() {
                db.truncate_journal(&rec.arn, last.seq)?;
            }
        }
        let mut exec = Execution::new(
            Arc::new(machine),
            info,
            input,
            Box::new(SplitMix::new(rec.seed)),
        );
        let replayed = durable::replay(&mut exec, &rec.arn, &entries)?;
        let mut journal = Journal {
            db: db.clone(),
            arn: rec.arn.clone(),
            seq: replayed.next_seq,
            history_sent: exec.history().len(),
            history_offset: rec.history_offset,
            redrive: redriving,
        };
        if let Some(o) = replayed.outcome {
            journal.finish(&o, self.now_ms());
            db.flush()?;
            return Ok(o);
        }
        if redriving {
            let stored = db.history(&rec.arn)?.last().map_or(0, |h| h.id);
            let now = self.now_ms();
            db.append(
                &rec.arn,
                Vec::new(),
                vec![shoal_store::HistoryRow {
                    id: stored + 1,
                    at_ms: now,
                    kind: "ExecutionRedriven".into(),
                    details: serde_json::json!({"redriveCount": rec.redrive_count + 1}).to_string(),
                }],
            );
            journal.history_offset = stored + 1 - exec.history().len() as u64;
            db.redrive_execution(&rec.arn, now, journal.history_offset)?;
        }
        self.drive_from(&mut exec, VecDeque::new(), replayed.open, Some(journal))
            .await
    }

    /// Feeds `exec` its events until it completes.
    pub async fn drive(self: &Arc<Self>, exec: &mut Execution) -> Outcome {
        self.drive_from(exec, VecDeque::from([Event::Start]), Vec::new(), None)
            .await
            .unwrap_or_else(|e| Outcome::Failed(Failure::runtime(e.to_string())))
    }

    /// The event loop: `queue` holds events to apply, `open` effects to carry out first.
    async fn drive_from(
        self: &Arc<Self>,
        exec: &mut Execution,
        mut queue: VecDeque<Event>,
        open: Vec<Effect>,
        mut journal: Option<Journal>,
    ) -> Result<Outcome, Error> {
        let mut timers: BinaryHeap<Reverse<(i64, u64)>> = BinaryHeap::new();
        let mut channel: Option<(mpsc::UnboundedSender<Event>, mpsc::UnboundedReceiver<Event>)> =
            None;
        let mut outstanding = 0usize;
        let mut effects = open;
        // Owned here: when this future is dropped (StopExecution), its tasks stop too.
        // Made on first use: most executions (every map child) start no map run.
        let mut tasks: Option<JoinSet<()>> = None;
        // Function calls run inside this task, not in tasks of their own: a spawned task
        // and a channel per call made each waiting Distributed Map child hold KBs more
        // (a 100,000-item map peaked at 235 MB, now 140 MB).
        let mut calls: FuturesUnordered<BoxFuture<'static, Event>> = FuturesUnordered::new();
        loop {
            for effect in effects.drain(..) {
                match effect {
                    Effect::Complete(o) => {
                        if let Some(j) = &journal {
                            j.finish(&o, self.now_ms());
                            j.db.flush()?;
                        }
                        return Ok(o);
                    }
                    Effect::Timer { id, fire_at_ms } => timers.push(Reverse((fire_at_ms, id))),
                    Effect::Invoke {
                        id,
                        resource,
                        input,
                        timeout_seconds,
                        ..
                    } if Tasks::handles(&resource) => {
                        let tasks = self.tasks.clone();
                        let request_id = shoal_expr::uuid_v4(&self.entropy());
                        let timeout = timeout_seconds
                            .filter(|t| *t > 0.0)
                            .map(std::time::Duration::from_secs_f64);
                        calls.push(Box::pin(async move {
                            match tasks.run(&resource, input, timeout, request_id).await {
                                Ok(output) => Event::TaskSucceeded { id, output },
                                Err(failure) => Event::TaskFailed { id, failure },
                            }
                        }));
                    }
                    Effect::Invoke { id, resource, .. } => queue.push_back(Event::TaskFailed {
                        id,
                        failure: Tasks::unsupported(&resource),
                    }),
                    Effect::StartMapRun { id, state, spec } => {
                        let tx = channel
                            .get_or_insert_with(mpsc::unbounded_channel)
                            .0
                            .clone();
                        outstanding += 1;
                        let rt = self.clone();
                        let durable = journal.as_ref().map(|j| MapDurable {
                            db: j.db.clone(),
                            execution: j.arn.clone(),
                            redrive: j.redrive,
                        });
                        let tasks = tasks.get_or_insert_with(JoinSet::new);
                        while tasks.try_join_next().is_some() {}
                        tasks.spawn(async move {
                            let result = rt.map_run_with(spec, state, durable).await;
                            let _ = tx.send(Event::MapRunFinished { id, result });
                        });
                    }
                }
            }
            let event = match queue.pop_front() {
                Some(e) => e,
                None => {
                    let next = timers.peek().map(|Reverse((at, _))| self.instant(*at));
                    if next.is_none() && outstanding == 0 && calls.is_empty() {
                        return Ok(Outcome::Failed(Failure::runtime(
                            "the execution is stuck: no event can arrive",
                        )));
                    }
                    let rx = channel.as_mut().map(|c| &mut c.1);
                    tokio::select! {
                        Some(e) = calls.next(), if !calls.is_empty() => e,
                        Some(e) = async { rx?.recv().await }, if outstanding > 0 => {
                            outstanding -= 1;
                            e
                        }
                        _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                            let Some(Reverse((_, id))) = timers.pop() else { continue };
                            Event::TimerFired { id }
                        }
                    }
                }
            };
            let text = journal.as_ref().map(|_| encode_event(&event));
            let now = self.now_ms();
            effects = match exec.handle(event, now) {
                Ok(e) => e,
                Err(e) => return Ok(Outcome::Failed(Failure::runtime(e.to_string()))),
            };
            if let (Some(j), Some(text)) = (&mut journal, text) {
                j.record(text, now, exec);
                if let Some(e) = j.db.failed() {
                    return Err(e.into());
                }
            }
        }
    }

    /// Carries out one Distributed Map run.
    pub async fn map_run(
        self: Arc<Self>,
        spec: Arc<MapRunSpec>,
        state: String,
    ) -> Result<Value, Failure> {
        self.map_run_with(spec, state, None).await
    }

    /// A map run, checkpointed to the store when `durable` says where.
    async fn map_run_with(
        self: Arc<Self>,
        spec: Arc<MapRunSpec>,
        state: String,
        durable: Option<MapDurable>,
    ) -> Result<Value, Failure> {
        let progress = Arc::new(MapRunProgress {
            map_run_arn: spec.map_run_arn.clone(),
            state: state.clone(),
            max_concurrency: AtomicU64::new(spec.max_concurrency as u64),
            tally: Mutex::new(Tally::new(spec.tolerance)),
            live: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            update: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
            first_failure: Mutex::new(None),
        });
        self.map_runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(progress.clone());
        let mut mr = MapRun::new(spec.clone(), &state, self.entropy().next_u64());
        // What the store already knows: a finished run answers at once; a running one resumes.
        let mut saved = None;
        if let Some(d) = &durable {
            let found = d.db.map_run(&spec.map_run_arn).map_err(store_failure)?;
            match found {
                Some(rec)
                    if rec.status == "RUNNING"
                        || (d.redrive && matches!(rec.status.as_str(), "FAILED" | "ABORTED")) =>
                {
                    let redrive = rec.status != "RUNNING";
                    let cp =
                        durable::load_checkpoint(&d.db, &rec, redrive).map_err(store_failure)?;
                    saved = Some((rec, cp, redrive));
                }
                Some(rec) if rec.status == "SUCCEEDED" => {
                    return Ok(rec
                        .result
                        .as_deref()
                        .and_then(|r| serde_json::from_str(r).ok())
                        .unwrap_or_default());
                }
                Some(rec) if rec.status == "FAILED" => {
                    return Err(Failure {
                        error: rec.error.unwrap_or_default(),
                        cause: rec.cause,
                    })
                }
                _ => {}
            }
            mr.set_durable();
        }
        let mut base = shoal_store::MapRunRecord {
            arn: spec.map_run_arn.clone(),
            execution: durable
                .as_ref()
                .map(|d| d.execution.clone())
                .unwrap_or_default(),
            state: state.clone(),
            status: "RUNNING".into(),
            start_ms: self.now_ms(),
            max_concurrency: spec.max_concurrency as u64,
            tolerated_count: spec.tolerance.count.map(|c| c as u64),
            tolerated_percentage: spec.tolerance.percentage,
            ..Default::default()
        };
        let mut generation = 0;
        let mut writer_state = Value::Null;
        let mut redriving = false;
        if let Some((rec, cp, redrive)) = saved.take() {
            base.start_ms = rec.start_ms;
            generation = cp.generation;
            writer_state = cp.writer;
            redriving = redrive;
            mr.restore(cp.restored);
        }
        let resuming = !writer_state.is_null();
        let mut items: Option<mpsc::Receiver<Chunk>> = match &spec.source {
            Source::Items(v) => {
                for item in v.iter().cloned() {
                    mr.push_item(item);
                }
                mr.items_end();
                None
            }
            Source::Reader {
                resource,
                parameters,
                reader_config,
            } => Some(shoal_mapio::items::read(
                self.buckets.clone(),
                resource.clone(),
                parameters.clone(),
                reader_config.clone(),
            )),
        };
        let mut writer = match &spec.writer {
            None => None,
            Some(w) => {
                let made = ResultWriter::new(
                    self.buckets.clone(),
                    &w.parameters,
                    &w.writer_config,
                    &spec.map_run_arn,
                );
                let made = match (made, &durable) {
                    (Ok(w), Some(d)) => {
                        let spill =
                            d.db.path()
                                .parent()
                                .unwrap_or(std::path::Path::new("."))
                                .join("spill")
                                .join(spec.run_id());
                        let w = w.durable(spill);
                        if resuming {
                            w.resume(&writer_state, redriving).await
                        } else {
                            Ok(w)
                        }
                    }
                    (made, _) => made,
                };
                match made {
                    Ok(w) => Some(w),
                    Err(f) => {
                        mr.fail(f);
                        None
                    }
                }
            }
        };
        let encoder = writer.as_ref().map(ResultWriter::encoder);
        let fleet = self
            .fleet
            .clone()
            .filter(|_| spec.processor_source.is_some());
        let mut running: JoinSet<Ended> = JoinSet::new();
        // The first checkpoint comes at once: DescribeMapRun finds the run from the start.
        let mut last_checkpoint = std::time::Instant::now() - CHECKPOINT_EVERY;
        let mut dirty = durable.is_some();
        loop {
            while let Some(child) = mr.next_child(self.now_ms()) {
                running.spawn(self.clone().child(
                    spec.clone(),
                    child,
                    progress.clone(),
                    encoder,
                    fleet.clone(),
                ));
            }
            *progress.tally.lock().unwrap_or_else(|p| p.into_inner()) = mr.tally.clone();
            if let Some(d) = &durable {
                if dirty && last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
                    if let Err(f) = checkpoint(
                        d,
                        &mut base,
                        &mut mr,
                        writer.as_mut(),
                        generation,
                        self.now_ms(),
                    )
                    .await
                    {
                        mr.fail(f);
                    }
                    last_checkpoint = std::time::Instant::now();
                    dirty = false;
                }
            }
            let update = progress
                .update
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(u) = update {
                let tolerance = (u.tolerated_failure_count.is_some()
                    || u.tolerated_failure_percentage.is_some())
                .then(|| {
                    let mut t = mr.tally.tolerance;
                    if u.tolerated_failure_count.is_some() {
                        t.count = u.tolerated_failure_count;
                    }
                    if u.tolerated_failure_percentage.is_some() {
                        t.percentage = u.tolerated_failure_percentage;
                    }
                    t
                });
                mr.update(u.max_concurrency, tolerance);
                base.max_concurrency = mr.max_concurrency() as u64;
                base.tolerated_count = mr.tally.tolerance.count.map(|c| c as u64);
                base.tolerated_percentage = mr.tally.tolerance.percentage;
                dirty = durable.is_some();
                continue;
            }
            if mr.is_over() {
                break;
            }
            let want = mr.wants_items() && items.is_some();
            // Finished children first: their results are memory to give back.
            tokio::select! {
                biased;
                Some(done) = running.join_next(), if !running.is_empty() => {
                    let mut next = Some(done);
                    while let Some(done) = next.take() {
                        if let Ok((child, end, rec)) = done {
                            if let Some(f) = fleet.as_ref().and_then(|f| f.lost()) {
                                mr.fail(f);
                            }
                            mr.child_ended(&child, end);
                            dirty = true;
                            if let (Some(w), Some(rec)) = (&mut writer, rec) {
                                if let Err(f) = w.write(rec).await {
                                    mr.fail(f);
                                }
                            }
                        }
                        next = running.try_join_next();
                    }
                }
                _ = progress.wake.notified() => {}
                chunk = async { items.as_mut()?.recv().await }, if want => match chunk {
                    Some(Ok(batch)) => {
                        for item in batch {
                            mr.push_item(item);
                        }
                    }
                    Some(Err(f)) => mr.fail(f),
                    None => {
                        items = None;
                        mr.items_end();
                    }
                },
            }
        }
        // A failed run stops its children and its reader.
        running.abort_all();
        drop(items);
        if let Some(f) = &fleet {
            f.finish_run(&spec).await;
        }
        let details = match &mut writer {
            None => None,
            Some(w) => {
                let mut r = Ok(());
                let enc = w.encoder();
                for rec in mr.take_pending(self.now_ms()) {
                    r = r.and(w.write(enc.encode(rec)).await);
                }
                match r {
                    Ok(()) => match w.finish().await {
                        Ok(d) => Some(d),
                        Err(f) => {
                            mr.fail(f);
                            None
                        }
                    },
                    Err(f) => {
                        mr.fail(f);
                        None
                    }
                }
            }
        };
        let result = mr.finish(details);
        *progress.tally.lock().unwrap_or_else(|p| p.into_inner()) = mr.tally.clone();
        *progress
            .first_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = mr.first_failure.clone();
        if let Some(d) = &durable {
            match &result {
                Ok(v) => base.result = Some(v.to_string()),
                Err(f) => {
                    base.error = Some(f.error.clone());
                    base.cause = f.cause.clone();
                }
            }
            base.stop_ms = Some(self.now_ms());
            checkpoint(
                d,
                &mut base,
                &mut mr,
                writer.as_mut(),
                generation,
                self.now_ms(),
            )
            .await?;
        }
        result
    }

    /// Boxed: a child may hold a map run of its own, and the future types recurse.
    fn child(
        self: Arc<Self>,
        spec: Arc<MapRunSpec>,
        child: Child,
        progress: Arc<MapRunProgress>,
        encoder: Option<Encoder>,
        fleet: Option<Arc<dyn Remote>>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Ended> + Send>> {
        Box::pin(self.run_child(spec, child, progress, encoder, fleet))
    }

    async fn run_child(
        self: Arc<Self>,
        spec: Arc<MapRunSpec>,
        mut child: Child,
        progress: Arc<MapRunProgress>,
        encoder: Option<Encoder>,
        fleet: Option<Arc<dyn Remote>>,
    ) -> Ended {
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
                let end = match self.drive(&mut exec).await {
                    Outcome::Succeeded(v) => ChildEnd::Succeeded(v),
                    Outcome::Failed(f) => ChildEnd::Failed(f),
                };
                child.input = exec.take_input();
                end
            }
        };
        // The record is built and serialized here, in parallel, not by the map run's loop.
        let Some(enc) = encoder else {
            return (child, end, None);
        };
        let ok = match &end {
            ChildEnd::Failed(f) => ChildEnd::Failed(f.clone()),
            _ => ChildEnd::Succeeded(Value::Null),
        };
        let rec = spec
            .record(&child, end, self.now_ms())
            .map(|r| enc.encode(r));
        child.input = Value::Null;
        (child, ok, rec)
    }
}

fn store_failure(e: shoal_store::Error) -> Failure {
    Failure::runtime(e.to_string())
}

/// Records where a map run stands: its result files first (handed to the OS), then the
/// row that points into them, so a restart never trusts bytes that were not written.
async fn checkpoint(
    d: &MapDurable,
    base: &mut shoal_store::MapRunRecord,
    mr: &mut MapRun,
    writer: Option<&mut ResultWriter>,
    generation: u32,
    now_ms: i64,
) -> Result<(), Failure> {
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
        serde_json::json!({
            "done": mr.done.to_json(),
            "writer": writer_state,
            "over": mr.outputs_over(),
            "generation": generation,
        })
        .to_string(),
    );
    d.db.put_map_run(base.clone());
    match d.db.failed() {
        Some(e) => Err(store_failure(e)),
        None => Ok(()),
    }
}
