//! The tokio side of shoal: it carries out the engine's effects. Timers sleep, map
//! runs stream their items and run their children in parallel on all cores, and
//! results go to the ResultWriter as children finish.
//!
//! Time is tokio's: under a paused clock (`--fast-forward`) a long Wait takes no time.

use serde_json::Value;
use shoal_asl::StateMachine;
use shoal_connectors::functions::Functions;
use shoal_connectors::items::Chunk;
use shoal_connectors::results::{Encoded, Encoder, ResultWriter};
use shoal_connectors::Store;
use shoal_engine::maprun::{Child, ChildEnd, MapRun, Source, Tally};
use shoal_engine::{
    Effect, Entropy, Event, Execution, ExecutionInfo, Failure, MapRunSpec, Outcome, SplitMix,
};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub struct Options {
    pub store: Store,
    /// The functions Task states can call (`shoal.toml`).
    pub functions: Functions,
    /// Seeds the randomness of executions (names, `States.UUID`, jitter).
    pub seed: u64,
}

/// A map run as it goes: readable from other threads (the progress bar, the API).
pub struct MapRunProgress {
    pub map_run_arn: String,
    pub state: String,
    pub max_concurrency: usize,
    tally: Mutex<Tally>,
    live: AtomicU64,
    peak: AtomicU64,
}

impl MapRunProgress {
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
    store: Arc<Store>,
    functions: Arc<Functions>,
    start_wall_ms: i64,
    t0: Instant,
    seeds: AtomicU64,
    map_runs: Mutex<Vec<Arc<MapRunProgress>>>,
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
        let store = Arc::new(options.store);
        options.functions.attach_store(store.clone());
        Arc::new(Runtime {
            store,
            functions: Arc::new(options.functions),
            start_wall_ms: chrono::Utc::now().timestamp_millis(),
            t0: Instant::now(),
            seeds: AtomicU64::new(options.seed),
            map_runs: Mutex::new(Vec::new()),
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

    pub fn functions(&self) -> &Functions {
        &self.functions
    }

    /// Every map run started so far, newest last.
    pub fn map_runs(&self) -> Vec<Arc<MapRunProgress>> {
        self.map_runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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

    /// Feeds `exec` its events until it completes.
    pub async fn drive(self: &Arc<Self>, exec: &mut Execution) -> Outcome {
        let mut queue = VecDeque::from([Event::Start]);
        let mut timers: BinaryHeap<Reverse<(i64, u64)>> = BinaryHeap::new();
        let mut channel: Option<(mpsc::UnboundedSender<Event>, mpsc::UnboundedReceiver<Event>)> =
            None;
        let mut outstanding = 0usize;
        loop {
            let event = match queue.pop_front() {
                Some(e) => e,
                None => {
                    let next = timers.peek().map(|Reverse((at, _))| self.instant(*at));
                    if next.is_none() && outstanding == 0 {
                        return Outcome::Failed(Failure::runtime(
                            "the execution is stuck: no event can arrive",
                        ));
                    }
                    let rx = channel.as_mut().map(|c| &mut c.1);
                    tokio::select! {
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
            let effects = match exec.handle(event, self.now_ms()) {
                Ok(e) => e,
                Err(e) => return Outcome::Failed(Failure::runtime(e.to_string())),
            };
            for effect in effects {
                match effect {
                    Effect::Complete(o) => return o,
                    Effect::Timer { id, fire_at_ms } => timers.push(Reverse((fire_at_ms, id))),
                    Effect::Invoke {
                        id,
                        resource,
                        input,
                        timeout_seconds,
                        ..
                    } if Functions::handles(&resource) => {
                        let tx = channel.get_or_insert_with(mpsc::unbounded_channel).0.clone();
                        outstanding += 1;
                        let functions = self.functions.clone();
                        let request_id = shoal_expr::uuid_v4(&self.entropy());
                        let timeout = timeout_seconds
                            .filter(|t| *t > 0.0)
                            .map(std::time::Duration::from_secs_f64);
                        tokio::spawn(async move {
                            let r = functions
                                .invoke_task(&resource, input, timeout, request_id)
                                .await;
                            let _ = tx.send(match r {
                                Ok(output) => Event::TaskSucceeded { id, output },
                                Err(failure) => Event::TaskFailed { id, failure },
                            });
                        });
                    }
                    Effect::Invoke { id, resource, .. } => queue.push_back(Event::TaskFailed {
                        id,
                        failure: Failure::runtime(format!("The resource '{resource}' is not supported by this shoal build: no function or integration is registered for it")),
                    }),
                    Effect::StartMapRun { id, state, spec } => {
                        let tx = channel.get_or_insert_with(mpsc::unbounded_channel).0.clone();
                        outstanding += 1;
                        let rt = self.clone();
                        tokio::spawn(async move {
                            let result = rt.map_run(spec, state).await;
                            let _ = tx.send(Event::MapRunFinished { id, result });
                        });
                    }
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
        let progress = Arc::new(MapRunProgress {
            map_run_arn: spec.map_run_arn.clone(),
            state: state.clone(),
            max_concurrency: spec.max_concurrency,
            tally: Mutex::new(Tally::new(spec.tolerance)),
            live: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        });
        self.map_runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(progress.clone());
        let mut mr = MapRun::new(spec.clone(), &state, self.entropy().next_u64());
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
            } => Some(shoal_connectors::items::read(
                self.store.clone(),
                resource.clone(),
                parameters.clone(),
                reader_config.clone(),
            )),
        };
        let mut writer = match &spec.writer {
            None => None,
            Some(w) => match ResultWriter::new(
                self.store.clone(),
                &w.parameters,
                &w.writer_config,
                &spec.map_run_arn,
            ) {
                Ok(w) => Some(w),
                Err(f) => {
                    mr.fail(f);
                    None
                }
            },
        };
        let encoder = writer.as_ref().map(ResultWriter::encoder);
        let mut running: JoinSet<Ended> = JoinSet::new();
        loop {
            while let Some(child) = mr.next_child(self.now_ms()) {
                running.spawn(
                    self.clone()
                        .child(spec.clone(), child, progress.clone(), encoder),
                );
            }
            *progress.tally.lock().unwrap_or_else(|p| p.into_inner()) = mr.tally.clone();
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
                            mr.child_ended(&child, end);
                            if let (Some(w), Some(rec)) = (&mut writer, rec) {
                                if let Err(f) = w.write(rec).await {
                                    mr.fail(f);
                                }
                            }
                        }
                        next = running.try_join_next();
                    }
                }
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
        let details = match writer {
            None => None,
            Some(mut w) => {
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
        result
    }

    /// Boxed: a child may hold a map run of its own, and the future types recurse.
    fn child(
        self: Arc<Self>,
        spec: Arc<MapRunSpec>,
        child: Child,
        progress: Arc<MapRunProgress>,
        encoder: Option<Encoder>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Ended> + Send>> {
        Box::pin(self.run_child(spec, child, progress, encoder))
    }

    async fn run_child(
        self: Arc<Self>,
        spec: Arc<MapRunSpec>,
        mut child: Child,
        progress: Arc<MapRunProgress>,
        encoder: Option<Encoder>,
    ) -> Ended {
        let n = progress.live.fetch_add(1, Ordering::SeqCst) + 1;
        progress.peak.fetch_max(n, Ordering::SeqCst);
        let _live = Live(&progress.live);
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
