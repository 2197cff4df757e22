//! The coordinator's side: a map run's children published as work, their results
//! fed back to the children waiting for them.

use super::*;
use crate::route::{address, set_key};
use crate::wire::{Done, Info, Work};

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
    client: async_nats::Client,
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

impl Fleet {
    /// A callback answer for a token this process does not hold: the worker whose child
    /// waits on it takes it. `TaskDoesNotExist` when no worker replies within a second.
    pub async fn forward_callback(
        &self,
        answer: &crate::CallbackAnswer,
    ) -> Result<(), shoal_runtime::callbacks::CallbackError> {
        use shoal_runtime::callbacks::CallbackError;
        let body = serde_json::to_vec(answer).unwrap_or_default();
        let asked = self
            .client
            .request(crate::wire::CALLBACKS, Bytes::from(body));
        match tokio::time::timeout(Duration::from_secs(1), asked).await {
            Ok(Ok(m)) if &m.payload[..] == crate::wire::HELD => Ok(()),
            Ok(Ok(m)) if &m.payload[..] == crate::wire::TIMED_OUT => {
                Err(CallbackError::TaskTimedOut(answer.token().to_string()))
            }
            _ => Err(CallbackError::TaskDoesNotExist),
        }
    }

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
            client,
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
        let hash = address(text.as_bytes());
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
