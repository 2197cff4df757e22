//! Fleet mode: a Distributed Map's children run on `shoal worker` processes, handed out
//! through NATS JetStream.
//!
//! - `SHOAL_WORK` (work queue) holds one message per child on `shoal.work.<set>.<run>`,
//!   where `<set>` names the functions the processor calls. Each set has one durable
//!   consumer, pulled only by workers that have all of those functions: a worker never
//!   takes a batch it cannot run, so nothing is declined into failure.
//! - A worker acks a child only after its result is stored in `SHOAL_RESULTS` on
//!   `shoal.result.<run>`; a worker that dies leaves its message unacked, and JetStream
//!   hands it out again after the ack wait. Long children send `AckProgress`.
//! - The coordinator keeps the map run (counters, tolerance, ResultWriter, store) and at
//!   most MaxConcurrency children outstanding, so the limit holds across the fleet. It
//!   takes the first result of each child index and ignores repeats: a child that ran
//!   twice is written once.
//! - Definitions travel once, by hash, in the `shoal_definitions` key-value bucket;
//!   workers announce themselves in `shoal_workers` every second.

use async_nats::jetstream::{self, consumer::pull, kv, stream, AckKind, Context};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shoal_asl::{Kind, Resource, StateMachine};
use shoal_engine::maprun::{Child, ChildEnd, MapRunSpec};
use shoal_engine::{ExecutionInfo, Failure, Outcome};
use shoal_expr::template::Template;
use shoal_runtime::{Remote, Runtime};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Semaphore};

const WORK: &str = "SHOAL_WORK";
const RESULTS: &str = "SHOAL_RESULTS";
const DEFINITIONS: &str = "shoal_definitions";
const WORKERS: &str = "shoal_workers";
const DESCRIPTION: &str = "shoal functions:";

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("NATS JetStream ({what}): {message}")]
    JetStream { what: &'static str, message: String },
}

fn js_err(what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> FleetError {
    move |e| FleetError::JetStream {
        what,
        message: e.to_string(),
    }
}

/// How to reach NATS: the URL (`nats://`, `tls://`, `user:pass@` or `token@` in it) and
/// the standard credential options.
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    pub url: String,
    /// A `.creds` file (JWT and nkey seed).
    pub creds: Option<PathBuf>,
    pub token: Option<String>,
    /// An nkey seed (`SU...`).
    pub nkey: Option<String>,
    /// A CA certificate to trust; implies TLS.
    pub ca: Option<PathBuf>,
}

/// The coordinator's knobs.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// How long a worker may stay silent before its child is handed to another.
    pub ack_wait: Duration,
    /// Deliveries of one child before it counts as failed.
    pub max_deliver: i64,
    /// How long NATS may be unreachable before the map run fails.
    pub patience: Duration,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            ack_wait: Duration::from_secs(30),
            max_deliver: 3,
            patience: Duration::from_secs(60),
        }
    }
}

pub async fn connect(o: &NatsOptions, name: &str) -> Result<async_nats::Client, FleetError> {
    let fail = |message: String| FleetError::Connect {
        url: o.url.clone(),
        message,
    };
    let mut c = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5));
    if let Some(p) = &o.creds {
        c = c
            .credentials_file(p)
            .await
            .map_err(|e| fail(format!("credentials {}: {e}", p.display())))?;
    }
    if let Some(t) = &o.token {
        c = c.token(t.clone());
    }
    if let Some(seed) = &o.nkey {
        c = c.nkey(seed.clone());
    }
    if let Some(ca) = &o.ca {
        c = c.add_root_certificates(ca.clone()).require_tls(true);
    }
    c.connect(o.url.as_str())
        .await
        .map_err(|e| fail(e.to_string()))
}

/// The streams and buckets, made on first use by whoever comes first.
struct Setup {
    work: stream::Stream,
    results: stream::Stream,
    definitions: kv::Store,
    workers: kv::Store,
}

async fn setup(js: &Context) -> Result<Setup, FleetError> {
    let queue = |name: &str, subject: &str| stream::Config {
        name: name.into(),
        subjects: vec![subject.into()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        // Results nobody collects (a run given up) do not pile up forever.
        max_age: Duration::from_secs(7 * 24 * 3600),
        ..Default::default()
    };
    let work = js
        .get_or_create_stream(queue(WORK, "shoal.work.>"))
        .await
        .map_err(|e| js_err("work stream")(&e))?;
    let results = js
        .get_or_create_stream(queue(RESULTS, "shoal.result.>"))
        .await
        .map_err(|e| js_err("result stream")(&e))?;
    let definitions = bucket(
        js,
        kv::Config {
            bucket: DEFINITIONS.into(),
            history: 1,
            storage: stream::StorageType::File,
            ..Default::default()
        },
    )
    .await?;
    let workers = bucket(
        js,
        kv::Config {
            bucket: WORKERS.into(),
            history: 1,
            max_age: Duration::from_secs(30),
            storage: stream::StorageType::Memory,
            ..Default::default()
        },
    )
    .await?;
    Ok(Setup {
        work,
        results,
        definitions,
        workers,
    })
}

async fn bucket(js: &Context, cfg: kv::Config) -> Result<kv::Store, FleetError> {
    if let Ok(s) = js.get_key_value(cfg.bucket.clone()).await {
        return Ok(s);
    }
    js.create_key_value(cfg)
        .await
        .map_err(|e| js_err("key-value bucket")(&e))
}

/// One child, as a worker receives it.
#[derive(Serialize, Deserialize)]
struct Work {
    map_run: String,
    index: u64,
    definition: String,
    info: Info,
    input: Value,
    max_deliver: i64,
    ack_wait_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct Info {
    execution_arn: String,
    name: String,
    state_machine_arn: String,
    state_machine_name: String,
    role_arn: String,
    start_time_ms: i64,
    redrive_count: u32,
}

impl From<&ExecutionInfo> for Info {
    fn from(i: &ExecutionInfo) -> Info {
        Info {
            execution_arn: i.execution_arn.clone(),
            name: i.name.clone(),
            state_machine_arn: i.state_machine_arn.clone(),
            state_machine_name: i.state_machine_name.clone(),
            role_arn: i.role_arn.clone(),
            start_time_ms: i.start_time_ms,
            redrive_count: i.redrive_count,
        }
    }
}

impl From<Info> for ExecutionInfo {
    fn from(i: Info) -> ExecutionInfo {
        ExecutionInfo {
            execution_arn: i.execution_arn,
            name: i.name,
            state_machine_arn: i.state_machine_arn,
            state_machine_name: i.state_machine_name,
            role_arn: i.role_arn,
            start_time_ms: i.start_time_ms,
            redrive_count: i.redrive_count,
        }
    }
}

/// A child's end, as a worker reports it.
#[derive(Serialize, Deserialize)]
struct Done {
    index: u64,
    worker: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cause: Option<String>,
}

impl Done {
    fn end(self) -> ChildEnd {
        match self.error {
            None => ChildEnd::Succeeded(self.output.unwrap_or(Value::Null)),
            Some(error) => ChildEnd::Failed(Failure {
                error,
                cause: self.cause,
            }),
        }
    }
}

/// What `shoal workers` shows of one worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub functions: Vec<String>,
    pub concurrency: usize,
    pub running: u64,
    pub done: u64,
    pub started_ms: i64,
    pub heartbeat_ms: i64,
}

/// The functions a processor calls by a name known before it runs. A name computed at
/// run time cannot be routed on; a worker without it fails that Task as Lambda would.
pub fn required_functions(m: &StateMachine) -> BTreeSet<String> {
    fn literal_name(t: &Template) -> Option<&str> {
        match t {
            Template::Literal(Value::Object(o)) => o.get("FunctionName")?.as_str(),
            Template::Object(fields) => fields.iter().find_map(|(k, v)| match v {
                Template::Literal(Value::String(s)) if k == "FunctionName" => Some(s.as_str()),
                _ => None,
            }),
            _ => None,
        }
    }
    fn walk(m: &StateMachine, out: &mut BTreeSet<String>) {
        for st in m.states.values() {
            match &st.kind {
                Kind::Task {
                    resource,
                    parameters,
                    ..
                } => {
                    let name = match &**resource {
                        Resource::LambdaFunction { arn } => Some(arn.as_str()),
                        Resource::LambdaInvoke { .. } => parameters.as_ref().and_then(literal_name),
                        _ => None,
                    };
                    if let Some(n) = name {
                        out.insert(shoal_tasks::lambda::function_name(n).to_string());
                    }
                }
                Kind::Parallel { branches, .. } => branches.iter().for_each(|b| walk(b, out)),
                Kind::Map(map) => walk(&map.processor, out),
                _ => {}
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(m, &mut out);
    out
}

/// A subject token for a set of functions.
fn set_key(functions: &BTreeSet<String>) -> String {
    if functions.is_empty() {
        return "any".into();
    }
    format!(
        "f{:016x}",
        fnv(functions
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(",")
            .as_bytes())
    )
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Results of one map run, routed to the children waiting for them.
#[derive(Default)]
struct Feed {
    waiting: HashMap<u64, oneshot::Sender<ChildEnd>>,
    /// Results no one waits for yet: published before a coordinator restart.
    early: HashMap<u64, ChildEnd>,
}

struct Run {
    feed: Arc<Mutex<Feed>>,
    pump: tokio::task::JoinHandle<()>,
}

/// The coordinator's side: hands a map run's children to the fleet.
pub struct Fleet {
    js: Context,
    setup: Setup,
    options: FleetOptions,
    /// Tells this process's messages from an earlier coordinator's (deduplication).
    nonce: u64,
    definitions: tokio::sync::Mutex<HashSet<String>>,
    consumers: tokio::sync::Mutex<HashSet<String>>,
    runs: tokio::sync::Mutex<HashMap<String, Run>>,
    down_since: Arc<Mutex<Option<Instant>>>,
    watchdog: tokio::task::JoinHandle<()>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.watchdog.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Fleet {
    pub async fn connect(
        nats: &NatsOptions,
        options: FleetOptions,
    ) -> Result<Arc<Fleet>, FleetError> {
        let client = connect(nats, "shoal coordinator").await?;
        let js = jetstream::new(client.clone());
        let setup = setup(&js).await?;
        let down_since = Arc::new(Mutex::new(None));
        let watchdog = {
            let client = client.clone();
            let down = down_since.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let up = client.connection_state() == async_nats::connection::State::Connected;
                    let mut d = lock(&down);
                    match (up, d.is_some()) {
                        (true, true) => {
                            eprintln!("shoal: NATS connection is back");
                            *d = None;
                        }
                        (false, false) => {
                            eprintln!("shoal: NATS connection lost; reconnecting");
                            *d = Some(Instant::now());
                        }
                        _ => {}
                    }
                }
            })
        };
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()).rotate_left(32);
        Ok(Arc::new(Fleet {
            js,
            setup,
            options,
            nonce,
            definitions: Default::default(),
            consumers: Default::default(),
            runs: Default::default(),
            down_since,
            watchdog,
        }))
    }

    /// The failure a map run gets when NATS has been gone too long.
    pub fn lost(&self) -> Option<Failure> {
        let since = (*lock(&self.down_since))?;
        (since.elapsed() >= self.options.patience).then(|| {
            Failure::runtime(format!(
                "lost the NATS connection for {} s (more than the {} s allowed): the fleet cannot be reached",
                since.elapsed().as_secs(),
                self.options.patience.as_secs()
            ))
        })
    }

    /// The connected workers, as they last announced themselves.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, FleetError> {
        list_workers(&self.setup.workers).await
    }

    /// Runs one child on the fleet and waits for its end. `Err` is the fleet's own
    /// failure (NATS gone), which fails the whole map run.
    pub async fn run_child(&self, spec: &MapRunSpec, child: &Child) -> Result<ChildEnd, Failure> {
        let source = spec.processor_source.as_ref().ok_or_else(|| {
            Failure::runtime("this map run's processor cannot be sent to workers")
        })?;
        let run = spec.run_id().to_string();
        let feed = self.feed(&run).await?;
        let rx = {
            let mut f = lock(&feed);
            if let Some(end) = f.early.remove(&child.index) {
                return Ok(end);
            }
            let (tx, rx) = oneshot::channel();
            f.waiting.insert(child.index, tx);
            rx
        };
        let definition = self.definition(source).await?;
        let key = self
            .work_consumer(&required_functions(&spec.processor))
            .await?;
        let work = Work {
            map_run: spec.map_run_arn.clone(),
            index: child.index,
            definition,
            info: Info::from(&child.info),
            input: child.input.clone(),
            max_deliver: self.options.max_deliver,
            ack_wait_ms: self.options.ack_wait.as_millis() as u64,
        };
        let body = Bytes::from(serde_json::to_vec(&work).unwrap_or_default());
        let id = format!("{run}.{}.{:x}", child.index, self.nonce);
        self.publish(format!("shoal.work.{key}.{run}"), Some(id), body)
            .await?;
        let mut rx = rx;
        loop {
            tokio::select! {
                end = &mut rx => {
                    return end.map_err(|_| Failure::runtime("the map run's result feed stopped"));
                }
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    if let Some(f) = self.lost() {
                        lock(&feed).waiting.remove(&child.index);
                        return Err(f);
                    }
                }
            }
        }
    }

    /// Publishes to a stream and waits for JetStream's ack, retrying while NATS is away.
    async fn publish(
        &self,
        subject: String,
        id: Option<String>,
        body: Bytes,
    ) -> Result<(), Failure> {
        publish(&self.js, subject, id, body, self.options.patience).await
    }

    /// Stores a processor definition once, under its hash.
    async fn definition(&self, source: &Value) -> Result<String, Failure> {
        let text = source.to_string();
        let hash = format!("{:016x}", fnv(text.as_bytes()));
        let mut known = self.definitions.lock().await;
        if !known.contains(&hash) {
            let mut tries = 0;
            loop {
                match self
                    .setup
                    .definitions
                    .put(&hash, Bytes::from(text.clone()))
                    .await
                {
                    Ok(_) => break,
                    Err(e) if tries * 500 >= self.options.patience.as_millis() as u64 => {
                        return Err(Failure::runtime(format!(
                            "cannot store the processor definition in NATS: {e}"
                        )))
                    }
                    Err(_) => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            known.insert(hash.clone());
        }
        Ok(hash)
    }

    /// The durable consumer that workers with these functions pull from.
    async fn work_consumer(&self, functions: &BTreeSet<String>) -> Result<String, Failure> {
        let key = set_key(functions);
        let mut known = self.consumers.lock().await;
        if known.contains(&key) {
            return Ok(key);
        }
        let name = format!("w-{key}");
        let cfg = pull::Config {
            durable_name: Some(name.clone()),
            description: Some(format!(
                "{DESCRIPTION}{}",
                functions.iter().cloned().collect::<Vec<_>>().join(",")
            )),
            filter_subject: format!("shoal.work.{key}.>"),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.options.ack_wait,
            // Counted by the workers, who turn the last delivery into a failure.
            max_deliver: -1,
            max_ack_pending: 100_000,
            ..Default::default()
        };
        self.setup
            .work
            .get_or_create_consumer(&name, cfg)
            .await
            .map_err(|e| {
                Failure::runtime(format!("cannot make the NATS work consumer {name}: {e}"))
            })?;
        known.insert(key.clone());
        Ok(key)
    }

    /// The result feed of a map run, started on its first child in this process. Work
    /// queued by an earlier coordinator is dropped: what it had outstanding is sent again.
    async fn feed(&self, run: &str) -> Result<Arc<Mutex<Feed>>, Failure> {
        let mut runs = self.runs.lock().await;
        if let Some(r) = runs.get(run) {
            return Ok(r.feed.clone());
        }
        self.purge_work(run).await;
        let name = format!("r-{run}");
        let consumer = self
            .setup
            .results
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: format!("shoal.result.{run}"),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    max_ack_pending: 100_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                Failure::runtime(format!("cannot make the NATS result consumer {name}: {e}"))
            })?;
        let feed: Arc<Mutex<Feed>> = Default::default();
        let pump = {
            let feed = feed.clone();
            tokio::spawn(async move {
                loop {
                    let Ok(mut msgs) = consumer.messages().await else {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    };
                    while let Some(m) = msgs.next().await {
                        let Ok(m) = m else { continue };
                        if let Ok(done) = serde_json::from_slice::<Done>(&m.payload) {
                            let index = done.index;
                            let end = done.end();
                            let mut f = lock(&feed);
                            match f.waiting.remove(&index) {
                                Some(tx) => {
                                    let _ = tx.send(end);
                                }
                                None => {
                                    f.early.insert(index, end);
                                }
                            }
                        }
                        let _ = m.ack().await;
                    }
                }
            })
        };
        runs.insert(
            run.to_string(),
            Run {
                feed: feed.clone(),
                pump,
            },
        );
        Ok(feed)
    }

    /// Drops a run's queued children (not those a worker holds).
    async fn purge_work(&self, run: &str) {
        let _ = self
            .setup
            .work
            .purge()
            .filter(format!("shoal.work.*.{run}"))
            .await;
    }

    /// A map run ended here: its queued work and uncollected results go.
    pub async fn finish_run(&self, spec: &MapRunSpec) {
        let run = spec.run_id();
        if let Some(r) = self.runs.lock().await.remove(run) {
            r.pump.abort();
        }
        // Best effort, and brief: with NATS gone the run must still end.
        let cleanup = async {
            self.purge_work(run).await;
            let _ = self
                .setup
                .results
                .delete_consumer(&format!("r-{run}"))
                .await;
            let _ = self
                .setup
                .results
                .purge()
                .filter(format!("shoal.result.{run}"))
                .await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(3), cleanup).await;
    }
}

impl Remote for Fleet {
    fn run_child<'a>(
        &'a self,
        spec: &'a MapRunSpec,
        child: &'a Child,
    ) -> futures::future::BoxFuture<'a, Result<ChildEnd, Failure>> {
        Box::pin(Fleet::run_child(self, spec, child))
    }

    fn lost(&self) -> Option<Failure> {
        Fleet::lost(self)
    }

    fn finish_run<'a>(&'a self, spec: &'a MapRunSpec) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(Fleet::finish_run(self, spec))
    }
}

async fn publish(
    js: &Context,
    subject: String,
    id: Option<String>,
    body: Bytes,
    patience: Duration,
) -> Result<(), Failure> {
    let start = Instant::now();
    loop {
        let mut msg = jetstream::message::PublishMessage::build().payload(body.clone());
        if let Some(id) = &id {
            msg = msg.message_id(id.as_str());
        }
        let r = match js.send_publish(subject.clone(), msg).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match r {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() >= patience => {
                return Err(Failure::runtime(format!(
                    "cannot publish to NATS JetStream for {} s: {e}",
                    start.elapsed().as_secs()
                )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

async fn list_workers(bucket: &kv::Store) -> Result<Vec<WorkerInfo>, FleetError> {
    let mut keys = bucket.keys().await.map_err(|e| js_err("workers")(&e))?;
    let mut out = Vec::new();
    while let Some(k) = keys.next().await {
        let Ok(k) = k else { continue };
        if let Ok(Some(v)) = bucket.get(&k).await {
            if let Ok(w) = serde_json::from_slice::<WorkerInfo>(&v) {
                out.push(w);
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// `shoal workers`: connects, reads the announcements, disconnects.
pub async fn workers(nats: &NatsOptions) -> Result<Vec<WorkerInfo>, FleetError> {
    let client = connect(nats, "shoal workers").await?;
    let js = jetstream::new(client);
    let setup = setup(&js).await?;
    list_workers(&setup.workers).await
}

pub struct WorkerOptions {
    /// Children this worker runs at once.
    pub concurrency: usize,
}

struct WorkerState {
    rt: Arc<Runtime>,
    js: Context,
    definitions: kv::Store,
    machines: Mutex<HashMap<String, Arc<StateMachine>>>,
    id: String,
    running: AtomicU64,
    done: AtomicU64,
    slots: Arc<Semaphore>,
    patience: Duration,
}

/// `shoal worker`: pulls children this runtime's functions can run, until killed.
pub async fn serve_worker(
    rt: Arc<Runtime>,
    nats: &NatsOptions,
    options: WorkerOptions,
) -> Result<(), FleetError> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let id = format!("{host}-{}", std::process::id());
    let client = connect(nats, &format!("shoal worker {id}")).await?;
    let js = jetstream::new(client.clone());
    let setup = setup(&js).await?;
    let mine: BTreeSet<String> = rt.tasks().functions().names().into_iter().collect();
    let state = Arc::new(WorkerState {
        rt,
        js,
        definitions: setup.definitions.clone(),
        machines: Mutex::new(HashMap::new()),
        id: id.clone(),
        running: AtomicU64::new(0),
        done: AtomicU64::new(0),
        slots: Arc::new(Semaphore::new(options.concurrency.max(1))),
        patience: FleetOptions::default().patience,
    });
    eprintln!(
        "shoal: worker {id} on {} with {} slots and functions [{}]",
        nats.url,
        options.concurrency,
        mine.iter().cloned().collect::<Vec<_>>().join(", ")
    );
    let started_ms = chrono::Utc::now().timestamp_millis();
    {
        let state = state.clone();
        let bucket = setup.workers.clone();
        let mine = mine.clone();
        let concurrency = options.concurrency;
        let host = host.clone();
        tokio::spawn(async move {
            loop {
                let info = WorkerInfo {
                    id: state.id.clone(),
                    host: host.clone(),
                    pid: std::process::id(),
                    functions: mine.iter().cloned().collect(),
                    concurrency,
                    running: state.running.load(Ordering::Relaxed),
                    done: state.done.load(Ordering::Relaxed),
                    started_ms,
                    heartbeat_ms: chrono::Utc::now().timestamp_millis(),
                };
                let body = serde_json::to_vec(&info).unwrap_or_default();
                let _ = bucket.put(&state.id, Bytes::from(body)).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    let mut serving: HashSet<String> = HashSet::new();
    loop {
        {
            let mut list = setup.work.consumers();
            while let Some(Ok(info)) = list.next().await {
                let name = info.name.clone();
                if serving.contains(&name) || !name.starts_with("w-") {
                    continue;
                }
                let Some(fns) = info
                    .config
                    .description
                    .as_deref()
                    .and_then(|d| d.strip_prefix(DESCRIPTION))
                else {
                    continue;
                };
                let can = fns
                    .split(',')
                    .filter(|f| !f.is_empty())
                    .all(|f| mine.contains(f));
                if !can {
                    continue;
                }
                let Ok(consumer) = setup.work.get_consumer::<pull::Config>(&name).await else {
                    continue;
                };
                serving.insert(name);
                tokio::spawn(pull_loop(state.clone(), consumer));
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn pull_loop(state: Arc<WorkerState>, consumer: jetstream::consumer::Consumer<pull::Config>) {
    loop {
        let Ok(first) = state.slots.clone().acquire_owned().await else {
            return;
        };
        let mut permits = vec![first];
        while permits.len() < 32 {
            match state.slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let batch = consumer
            .batch()
            .max_messages(permits.len())
            .expires(Duration::from_secs(1))
            .messages()
            .await;
        let Ok(mut batch) = batch else {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        while let Some(m) = batch.next().await {
            let Ok(m) = m else { break };
            let Some(permit) = permits.pop() else { break };
            let state = state.clone();
            tokio::spawn(async move {
                handle(&state, m).await;
                drop(permit);
            });
        }
    }
}

async fn handle(state: &Arc<WorkerState>, msg: jetstream::Message) {
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
    let Ok(work) = serde_json::from_slice::<Work>(&msg.payload) else {
        eprintln!(
            "shoal: worker dropped a malformed work message on {}",
            msg.subject
        );
        let _ = msg.ack_with(AckKind::Term).await;
        return;
    };
    let run = work.map_run.rsplit(':').next().unwrap_or("").to_string();
    let mut done = Done {
        index: work.index,
        worker: state.id.clone(),
        output: None,
        error: None,
        cause: None,
    };
    let msg = Arc::new(msg);
    if delivered > work.max_deliver {
        done.error = Some("States.Runtime".into());
        done.cause = Some(format!(
            "child {} of map run {} was handed out {} times and no worker finished it: the workers that took it stopped (crashed, were killed or lost NATS) before reporting",
            work.index,
            work.map_run,
            delivered - 1
        ));
    } else {
        state.running.fetch_add(1, Ordering::Relaxed);
        let heartbeat = {
            let msg = msg.clone();
            let every = Duration::from_millis((work.ack_wait_ms / 3).max(100));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let _ = msg.ack_with(AckKind::Progress).await;
                }
            })
        };
        let end = match state.machine(&work.definition).await {
            Err(f) => Outcome::Failed(f),
            Ok(machine) => {
                let info = ExecutionInfo::from(work.info);
                state.rt.run_processor(machine, info, work.input).await
            }
        };
        match end {
            Outcome::Succeeded(v) => done.output = Some(v),
            Outcome::Failed(f) => {
                done.error = Some(f.error);
                done.cause = f.cause;
            }
        }
        heartbeat.abort();
        state.running.fetch_sub(1, Ordering::Relaxed);
        state.done.fetch_add(1, Ordering::Relaxed);
    }
    report(state, &run, done, &msg).await
}

/// The result first, then the ack: a crash between them runs the child again, and
/// the coordinator keeps the first result.
async fn report(state: &WorkerState, run: &str, done: Done, msg: &jetstream::Message) {
    let body = Bytes::from(serde_json::to_vec(&done).unwrap_or_default());
    match publish(
        &state.js,
        format!("shoal.result.{run}"),
        None,
        body,
        state.patience,
    )
    .await
    {
        Ok(()) => {
            let _ = msg.double_ack().await;
        }
        Err(f) => eprintln!(
            "shoal: worker could not report child {}: {}",
            done.index,
            f.cause.unwrap_or_default()
        ),
    }
}

impl WorkerState {
    async fn machine(&self, hash: &str) -> Result<Arc<StateMachine>, Failure> {
        if let Some(m) = lock(&self.machines).get(hash) {
            return Ok(m.clone());
        }
        let text = self
            .definitions
            .get(hash)
            .await
            .map_err(|e| Failure::runtime(format!("cannot read definition {hash} from NATS: {e}")))?
            .ok_or_else(|| Failure::runtime(format!("definition {hash} is not in NATS")))?;
        let parsed = shoal_asl::parse(&String::from_utf8_lossy(&text));
        if !parsed.is_valid() {
            return Err(Failure::runtime(format!(
                "definition {hash} does not parse on this worker"
            )));
        }
        let machine = parsed
            .machine
            .ok_or_else(|| Failure::runtime("no definition"))?;
        let machine = Arc::new(machine);
        lock(&self.machines).insert(hash.to_string(), machine.clone());
        Ok(machine)
    }
}
