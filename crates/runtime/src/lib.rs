//! The tokio side of shoal: it carries out the engine's effects. Timers sleep, map
//! runs stream their items and run their children in parallel on all cores, and
//! results go to the ResultWriter as children finish.
//!
//! Time is the wall clock, or an execution's own virtual clock ([`Scope::virtual_time`],
//! for `--fast-forward` and `shoal test`): a long Wait then takes no time, while calls
//! keep their real timeouts.
//!
//! With a state store ([`Options::db`]) a top-level execution is journaled and its map
//! runs checkpoint, so [`Runtime::resume`] can finish it after a crash.

pub mod activities;
mod blocking;
pub mod callbacks;
mod durable;
mod maprun;
mod nested;

pub use blocking::AsyncStore;
pub use durable::{decode_event, encode_event, Error};
use durable::{Journal, MapDurable};
pub use maprun::{MapRunProgress, MapRunUpdate};
pub use shoal_engine::maprun::Tolerance;
pub use shoal_mapio::items::{Bytes as ReadBytes, ReadSnapshot};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::Value;
use shoal_asl::{ExecutionStatus, StateMachine};
use shoal_buckets::Buckets;
use shoal_engine::maprun::{Child, ChildEnd};
use shoal_engine::{
    Effect, Entropy, Event, Execution, ExecutionInfo, Failure, MapRunSpec, Outcome, SplitMix,
};
use shoal_store::Store;
use shoal_tasks::Tasks;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// An execution that waits for nothing can never end: it fails, in the store too.
async fn stuck(journal: Option<&Journal>, now_ms: i64) -> Result<Outcome, Error> {
    let o = Outcome::Failed(Failure::runtime(
        "the execution is stuck: no event can arrive",
    ));
    if let Some(j) = journal {
        j.finish(&o, now_ms);
        AsyncStore::new(j.db.clone()).flush().await?;
    }
    Ok(o)
}

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
    pub db: Option<Arc<dyn Store>>,
    /// Run Distributed Map children on a NATS fleet instead of here.
    pub fleet: Option<Arc<dyn Remote>>,
}

const MILLENNIUM_MS: i64 = 1000 * 365 * 24 * 3600 * 1000;

pub struct Runtime {
    buckets: Option<Arc<Buckets>>,
    tasks: Arc<Tasks>,
    start_wall_ms: i64,
    t0: Instant,
    seeds: AtomicU64,
    map_runs: Mutex<Vec<Arc<MapRunProgress>>>,
    db: Option<Arc<dyn Store>>,
    fleet: Option<Arc<dyn Remote>>,
    callbacks: Arc<callbacks::Callbacks>,
    activities: Arc<activities::Activities>,
}

/// A Task's call in flight: it ends with its event, or first reports progress (an
/// activity worker took it, a callback call returned) and goes on.
type Call = BoxFuture<'static, Called>;

enum Called {
    Done(Event),
    Then(Event, Call),
}

/// The second half of a callback task: waiting for its token until `deadline`, and
/// at most `heartbeat` between heartbeats.
fn await_token(
    callbacks: Arc<callbacks::Callbacks>,
    registration: callbacks::Registration,
    token: String,
    id: shoal_engine::EffectId,
    deadline: Option<Instant>,
    heartbeat: Option<std::time::Duration>,
) -> Call {
    Box::pin(async move {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        Called::Done(match registration.wait(left, heartbeat).await {
            Ok(callbacks::Answer::Success(output)) => Event::TaskSucceeded { id, output },
            Ok(callbacks::Answer::Failure(failure)) => Event::TaskFailed { id, failure },
            Err(expired) => {
                callbacks.forget(&token, true);
                Event::TaskFailed {
                    id,
                    failure: expired.failure(),
                }
            }
        })
    })
}

/// What an execution runs with beyond its definition: mocked Task responses, and
/// whose clock it reads. Its Distributed Map children run with the same.
#[derive(Clone, Default)]
pub struct Scope {
    /// Tasks of the states these mock answer without a call (MockConfigFile).
    pub mocks: Option<Arc<shoal_tasks::mock::MockSession>>,
    /// Waits and retry backoff take no wall time: when the execution waits for
    /// nothing but timers, its own clock jumps to the next one. Calls still take the
    /// time they take, and their timeouts are real.
    pub virtual_time: bool,
}

/// An execution recorded in the store, ready to run.
pub struct Begun {
    exec: Execution,
    journal: Journal,
    scope: Scope,
}

impl Begun {
    pub fn execution_arn(&self) -> &str {
        &self.journal.arn
    }

    /// Runs it with these mocks and clock.
    pub fn with_scope(mut self, scope: Scope) -> Begun {
        self.scope = scope;
        self
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
            callbacks: Arc::default(),
            activities: Arc::default(),
        })
    }

    /// Whether [`Runtime::call`] can carry a Task's resource out.
    fn can_call(&self, resource: &shoal_asl::Resource) -> bool {
        Tasks::handles(resource)
            || matches!(
                nested::nested_pattern(resource),
                Some(shoal_asl::Pattern::Sync | shoal_asl::Pattern::Sync2)
            )
    }

    /// A Task's call: a nested execution of a state machine this shoal runs, or the
    /// `tasks` router.
    fn call(
        self: &Arc<Self>,
        resource: Arc<shoal_asl::Resource>,
        input: Value,
        timeout: Option<std::time::Duration>,
        request_id: String,
    ) -> BoxFuture<'static, Result<Value, Failure>> {
        use shoal_asl::Pattern;
        let held = || {
            input
                .get("StateMachineArn")
                .and_then(Value::as_str)
                .is_some_and(|arn| self.holds(arn))
        };
        let nested = match nested::nested_pattern(&resource) {
            Some(p @ (Pattern::Sync | Pattern::Sync2)) => Some(p),
            Some(Pattern::RequestResponse | Pattern::WaitForTaskToken) if held() => {
                Some(Pattern::RequestResponse)
            }
            _ => None,
        };
        match nested {
            Some(p) => {
                let run = self.clone().nested(p, input);
                Box::pin(async move {
                    match timeout {
                        Some(t) => tokio::time::timeout(t, run)
                            .await
                            .unwrap_or_else(|_| Err(callbacks::Expired::Timeout.failure())),
                        None => run.await,
                    }
                })
            }
            None => {
                use futures::FutureExt;
                let tasks = self.tasks.clone();
                // A call that panics (a builtin, a bug) fails its Task with
                // States.Runtime instead of taking the execution down with it.
                Box::pin(async move {
                    std::panic::AssertUnwindSafe(tasks.run(&resource, input, timeout, request_id))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|p| Err(maprun::panicked(p)))
                })
            }
        }
    }

    /// The tasks of this process waiting for SendTaskSuccess/Failure/Heartbeat.
    pub fn callbacks(&self) -> &Arc<callbacks::Callbacks> {
        &self.callbacks
    }

    /// The activity tasks of this process waiting for a worker (GetActivityTask).
    pub fn activities(&self) -> &Arc<activities::Activities> {
        &self.activities
    }

    /// Milliseconds since the epoch on this runtime's clock.
    pub fn now_ms(&self) -> i64 {
        self.start_wall_ms + self.t0.elapsed().as_millis() as i64
    }

    /// When a timer set for `at_ms` fires; one past what the clock can hold fires in
    /// a thousand years, which is never.
    fn instant(&self, at_ms: i64) -> Instant {
        let after = at_ms
            .saturating_sub(self.start_wall_ms)
            .clamp(0, MILLENNIUM_MS);
        self.t0 + std::time::Duration::from_millis(after as u64)
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
        self.start_scoped(machine, definition, info, input, Scope::default())
            .await
    }

    /// [`Runtime::start`] with mocks or a virtual clock.
    pub async fn start_scoped(
        self: &Arc<Self>,
        machine: Arc<StateMachine>,
        definition: &str,
        info: ExecutionInfo,
        input: Value,
        scope: Scope,
    ) -> Result<Outcome, Error> {
        if self.db.is_none() {
            let mut exec = Execution::new(machine, info, input, Box::new(self.entropy()));
            return Ok(self.drive_scoped(&mut exec, &scope).await);
        }
        let begun = self
            .begin_blocking(machine, definition.to_string(), info, input)
            .await?;
        self.run_begun(begun.with_scope(scope)).await
    }

    /// [`Runtime::begin`] from async code: its insert runs on the blocking pool.
    pub async fn begin_blocking(
        self: &Arc<Self>,
        machine: Arc<StateMachine>,
        definition: String,
        info: ExecutionInfo,
        input: Value,
    ) -> Result<Begun, Error> {
        let store = AsyncStore::new(self.db.clone().ok_or(Error::NoStore)?);
        let rt = self.clone();
        store
            .run(move |_| rt.begin(machine, &definition, info, input))
            .await
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
        Ok(Begun {
            exec,
            journal,
            scope: Scope::default(),
        })
    }

    /// Runs an execution [`Runtime::begin`] recorded, to the end.
    pub async fn run_begun(self: &Arc<Self>, begun: Begun) -> Result<Outcome, Error> {
        let Begun {
            mut exec,
            journal,
            scope,
        } = begun;
        self.drive_from(
            &mut exec,
            VecDeque::from([Event::Start]),
            (Vec::new(), Default::default()),
            Some(journal),
            &scope,
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
        self.resume_scoped(execution, redrive, Scope::default())
            .await
    }

    /// [`Runtime::resume`] with a virtual clock (mocks are not kept across a restart).
    pub async fn resume_scoped(
        self: &Arc<Self>,
        execution: &str,
        redrive: bool,
        scope: Scope,
    ) -> Result<Outcome, Error> {
        let db = self.db.clone().ok_or(Error::NoStore)?;
        let store = AsyncStore::new(db.clone());
        let rec = {
            let execution = execution.to_string();
            store.run(move |db| db.execution(&execution)).await?
        };
        let done = match rec.status {
            ExecutionStatus::Succeeded => {
                let output = rec.output.as_deref().map(serde_json::from_str::<Value>);
                let Some(Ok(output)) = output else {
                    return Err(Error::Damaged {
                        arn: rec.arn,
                        message: "it SUCCEEDED without a JSON output".into(),
                    });
                };
                Some(Outcome::Succeeded(output))
            }
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
        let input: Value = serde_json::from_str(&rec.input).map_err(|e| Error::Damaged {
            arn: rec.arn.clone(),
            message: format!("its input is not JSON: {e}"),
        })?;
        let mut info = ExecutionInfo::local(
            &rec.state_machine_name,
            &rec.name,
            rec.start_ms,
            false,
            &SplitMix::new(0),
        );
        info.execution_arn = rec.arn.clone();
        info.state_machine_arn = rec.state_machine_arn.clone();
        info.redrive_count =
            rec.redrive_count + u32::from(redrive && rec.status != ExecutionStatus::Running);
        let redriving = redrive && rec.status != ExecutionStatus::Running;
        // A map run that resumes must be able to: refuse a damaged one before anything
        // is written.
        let arn = rec.arn.clone();
        let mut entries = store
            .run(move |db| {
                for m in db.map_runs(&arn)? {
                    let resumes = m.status == "RUNNING"
                        || (redriving && matches!(m.status.as_str(), "FAILED" | "ABORTED"));
                    if resumes {
                        durable::load_checkpoint(db, &m, false)?;
                    }
                }
                Ok::<_, Error>(db.journal(&arn)?)
            })
            .await?;
        // The last event is the one that failed the execution: it is taken back, from
        // the store too once the replay has shown the rest is sound.
        let taken_back = (redriving && rec.status != ExecutionStatus::Aborted)
            .then(|| entries.pop())
            .flatten();
        let mut exec = Execution::new(
            Arc::new(machine),
            info,
            input,
            Box::new(SplitMix::new(rec.seed)),
        );
        let replayed = durable::replay(&mut exec, &rec.arn, &entries)?;
        // A redrive's history goes on after the stored one, which holds at least the
        // events the replay made.
        let stored_history = if redriving {
            let arn = rec.arn.clone();
            let stored = store
                .run(move |db| db.history(&arn))
                .await?
                .last()
                .map_or(0, |h| h.id);
            let offset = (stored + 1)
                .checked_sub(exec.history().len() as u64)
                .ok_or_else(|| Error::Damaged {
                    arn: rec.arn.clone(),
                    message: format!(
                        "its history ends at event {stored}, but its journal replays {} events",
                        exec.history().len()
                    ),
                })?;
            Some((stored, offset))
        } else {
            None
        };
        if let Some(last) = taken_back {
            let arn = rec.arn.clone();
            store
                .run(move |db| db.truncate_journal(&arn, last.seq))
                .await?;
        }
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
            store.flush().await?;
            return Ok(o);
        }
        if let Some((stored, offset)) = stored_history {
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
            journal.history_offset = offset;
            let (arn, offset) = (rec.arn.clone(), journal.history_offset);
            store
                .run(move |db| db.redrive_execution(&arn, now, offset))
                .await?;
        }
        // A redrive that took back the execution's first event (it failed while
        // starting: a Fail state, or Pass states into one) starts it again.
        let queue = if entries.is_empty() && replayed.open.is_empty() {
            VecDeque::from([Event::Start])
        } else {
            VecDeque::new()
        };
        self.drive_from(
            &mut exec,
            queue,
            (replayed.open, replayed.submitted),
            Some(journal),
            &scope,
        )
        .await
    }

    /// Feeds `exec` its events until it completes.
    pub async fn drive(self: &Arc<Self>, exec: &mut Execution) -> Outcome {
        self.drive_scoped(exec, &Scope::default()).await
    }

    /// [`Runtime::drive`] with mocks or a virtual clock.
    pub async fn drive_scoped(self: &Arc<Self>, exec: &mut Execution, scope: &Scope) -> Outcome {
        self.drive_from(
            exec,
            VecDeque::from([Event::Start]),
            (Vec::new(), Default::default()),
            None,
            scope,
        )
        .await
        .unwrap_or_else(|e| Outcome::Failed(Failure::runtime(e.to_string())))
    }

    /// The event loop: `queue` holds events to apply, `open` effects to carry out first
    /// (those of them already submitted only wait for their token).
    async fn drive_from(
        self: &Arc<Self>,
        exec: &mut Execution,
        mut queue: VecDeque<Event>,
        (open, mut submitted): (
            Vec<Effect>,
            std::collections::HashSet<shoal_engine::EffectId>,
        ),
        mut journal: Option<Journal>,
        scope: &Scope,
    ) -> Result<Outcome, Error> {
        // The execution's own clock when its time is virtual.
        let mut vclock = scope.virtual_time.then(|| exec.info().start_time_ms);
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
        let mut calls: FuturesUnordered<Call> = FuturesUnordered::new();
        loop {
            for effect in effects.drain(..) {
                // A mocked Task answers at once, in order: no call, no wait.
                let effect = match (effect, &scope.mocks) {
                    (Effect::Invoke { id, state, .. }, Some(m)) if m.mocks(&state) => {
                        queue.push_back(match m.next(&state) {
                            Some(Ok(output)) => Event::TaskSucceeded { id, output },
                            Some(Err(failure)) => Event::TaskFailed { id, failure },
                            None => Event::TaskFailed {
                                id,
                                failure: Failure::runtime("the mock of this state vanished"),
                            },
                        });
                        continue;
                    }
                    (e, _) => e,
                };
                match effect {
                    Effect::Complete(o) => {
                        if let Some(j) = &journal {
                            j.finish(&o, vclock.unwrap_or_else(|| self.now_ms()));
                            AsyncStore::new(j.db.clone()).flush().await?;
                        }
                        return Ok(o);
                    }
                    Effect::Timer { id, fire_at_ms } => timers.push(Reverse((fire_at_ms, id))),
                    Effect::Invoke {
                        id,
                        state,
                        resource,
                        input,
                        timeout_seconds,
                        heartbeat_seconds,
                        task_token: Some(token),
                    } if self.can_call(&resource)
                        || matches!(*resource, shoal_asl::Resource::Activity { .. }) =>
                    {
                        let callbacks = self.callbacks.clone();
                        let request_id = shoal_expr::uuid_v4(&self.entropy());
                        let secs = |s: Option<f64>| {
                            s.filter(|t| *t > 0.0)
                                .and_then(|t| std::time::Duration::try_from_secs_f64(t).ok())
                        };
                        let (timeout, heartbeat) = (secs(timeout_seconds), secs(heartbeat_seconds));
                        let deadline = timeout.map(|t| Instant::now() + t);
                        // Registered before the call, so an answer that comes back
                        // before the call returns is not lost.
                        let registration = callbacks.register_as(
                            &token,
                            Some(callbacks::About {
                                state: state.clone(),
                                activity: match &*resource {
                                    shoal_asl::Resource::Activity { arn } => Some(arn.clone()),
                                    _ => None,
                                },
                                since_ms: self.now_ms(),
                            }),
                        );
                        if submitted.remove(&id) {
                            calls.push(await_token(
                                callbacks,
                                registration,
                                token,
                                id,
                                deadline,
                                heartbeat,
                            ));
                            continue;
                        }
                        let rt = self.clone();
                        calls.push(Box::pin(async move {
                            let then = |event, callbacks, registration, token| {
                                Called::Then(
                                    event,
                                    await_token(
                                        callbacks,
                                        registration,
                                        token,
                                        id,
                                        deadline,
                                        heartbeat,
                                    ),
                                )
                            };
                            if let shoal_asl::Resource::Activity { arn } = &*resource {
                                let task = activities::ActivityTask {
                                    token: token.clone(),
                                    input: shoal_expr::compact(&input),
                                };
                                let started = rt.activities.schedule(arn, task);
                                let mut registration = registration;
                                // Until a worker takes it only TimeoutSeconds runs; a
                                // deleted activity leaves the task waiting for it. The
                                // dashboard may answer a task no worker has taken.
                                let expired = async {
                                    match deadline {
                                        Some(d) => tokio::time::sleep_until(d).await,
                                        None => std::future::pending().await,
                                    }
                                };
                                tokio::select! {
                                    Ok(worker_name) = started => {
                                        return then(
                                            Event::ActivityStarted { id, worker_name },
                                            callbacks,
                                            registration,
                                            token,
                                        );
                                    }
                                    Some(answer) = registration.answered() => {
                                        return Called::Done(match answer {
                                            callbacks::Answer::Success(output) => {
                                                Event::TaskSucceeded { id, output }
                                            }
                                            callbacks::Answer::Failure(failure) => {
                                                Event::TaskFailed { id, failure }
                                            }
                                        });
                                    }
                                    _ = expired => {
                                        callbacks.forget(&token, true);
                                        return Called::Done(Event::TaskFailed {
                                            id,
                                            failure: callbacks::Expired::Timeout.failure(),
                                        });
                                    }
                                }
                            }
                            match rt.call(resource, input, timeout, request_id).await {
                                Err(failure) => {
                                    callbacks.forget(&token, false);
                                    Called::Done(Event::TaskFailed { id, failure })
                                }
                                Ok(output) => then(
                                    Event::TaskSubmitted { id, output },
                                    callbacks,
                                    registration,
                                    token,
                                ),
                            }
                        }));
                    }
                    Effect::Invoke {
                        id,
                        resource,
                        input,
                        timeout_seconds,
                        task_token: None,
                        ..
                    } if self.can_call(&resource) => {
                        let rt = self.clone();
                        let request_id = shoal_expr::uuid_v4(&self.entropy());
                        // The engine holds it to AWS's limits; a duration it is not means none.
                        let timeout = timeout_seconds
                            .filter(|t| *t > 0.0)
                            .and_then(|t| std::time::Duration::try_from_secs_f64(t).ok());
                        calls.push(Box::pin(async move {
                            Called::Done(
                                match rt.call(resource, input, timeout, request_id).await {
                                    Ok(output) => Event::TaskSucceeded { id, output },
                                    Err(failure) => Event::TaskFailed { id, failure },
                                },
                            )
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
                        let scope = scope.clone();
                        tasks.spawn(async move {
                            let result = rt.map_run_with(spec, state, durable, scope).await;
                            let _ = tx.send(Event::MapRunFinished { id, result });
                        });
                    }
                }
            }
            let event = match queue.pop_front() {
                Some(e) => e,
                // Virtual time: nothing but timers left, so the next one is due now.
                None if vclock.is_some() && calls.is_empty() && outstanding == 0 => {
                    let Some(Reverse((at, id))) = timers.pop() else {
                        return stuck(journal.as_ref(), self.now_ms()).await;
                    };
                    vclock = vclock.map(|now| now.max(at));
                    Event::TimerFired { id }
                }
                None => {
                    // Under virtual time timers wait until the calls are answered.
                    let next = timers
                        .peek()
                        .filter(|_| vclock.is_none())
                        .map(|Reverse((at, _))| self.instant(*at));
                    if next.is_none() && outstanding == 0 && calls.is_empty() {
                        return stuck(journal.as_ref(), self.now_ms()).await;
                    }
                    let rx = channel.as_mut().map(|c| &mut c.1);
                    tokio::select! {
                        Some(c) = calls.next(), if !calls.is_empty() => match c {
                            Called::Done(e) => e,
                            Called::Then(e, next) => {
                                calls.push(next);
                                e
                            }
                        },
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
            let now = vclock.unwrap_or_else(|| self.now_ms());
            effects = match exec.handle(event, now) {
                Ok(e) => e,
                Err(e) => return Ok(Outcome::Failed(Failure::runtime(e.to_string()))),
            };
            if let (Some(j), Some(text)) = (&mut journal, text) {
                j.record(text, now, exec, &effects);
                if let Some(e) = j.db.failed() {
                    return Err(e.into());
                }
            }
        }
    }
}
