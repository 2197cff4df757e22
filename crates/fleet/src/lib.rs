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

mod coordinator;
mod route;
mod wire;
mod worker;

pub use coordinator::Fleet;
pub use route::required_functions;
pub use wire::{CallbackAnswer, WorkerInfo};
pub use worker::{serve_worker, WorkerOptions};

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

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Publishes to a stream and waits for JetStream's ack, retrying while NATS is away.
pub(crate) async fn publish(
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
