//! `shoal worker`: pulls children this runtime's functions can run, runs them, and
//! reports each result before it acks the work.

use super::*;
use crate::wire::{Done, Work, WorkerInfo};

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
    // Answers for tokens this worker's children wait on, sent to any `shoal serve`.
    {
        let mut answers = client
            .subscribe(crate::wire::CALLBACKS)
            .await
            .map_err(|e| js_err("subscribe to callbacks")(&e))?;
        let (client, rt) = (client.clone(), state.rt.clone());
        tokio::spawn(async move {
            use shoal_runtime::callbacks::CallbackError;
            while let Some(m) = answers.next().await {
                let (Some(reply), Ok(a)) = (
                    m.reply,
                    serde_json::from_slice::<crate::CallbackAnswer>(&m.payload),
                ) else {
                    continue;
                };
                // Silence for a token held elsewhere: its holder replies.
                let said = match a.apply(rt.callbacks()) {
                    Ok(()) => crate::wire::HELD,
                    Err(CallbackError::TaskTimedOut(_)) => crate::wire::TIMED_OUT,
                    Err(_) => continue,
                };
                let _ = client.publish(reply, Bytes::from_static(said)).await;
            }
        });
    }
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
