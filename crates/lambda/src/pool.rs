//! The Lambda Runtime API, served to a pool of a function's own processes.
//!
//! Each process gets its own listener (so shoal knows which process holds which
//! invocation) and pulls invocations from its function's shared queue with
//! `GET /2018-06-01/runtime/invocation/next`. Processes start on demand up to the
//! function's concurrency and stay warm.

use crate::registry::FunctionConfig;
use bytes::Bytes;
use shoal_asl::identity::{self, REGION};
use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How an invocation ended, before Step Functions' shaping.
#[derive(Debug)]
pub enum Reply {
    /// The function's response body.
    Ok(Bytes),
    /// `/error`: the error body as the runtime sent it, and its errorType.
    HandlerError { error_type: String, body: Bytes },
    /// The process timed out, crashed or could not start (`Lambda.Unknown`).
    Unknown(String),
    /// The Task's own TimeoutSeconds passed first (`States.Timeout`).
    TaskTimeout,
}

struct Invocation {
    /// Shared by the queue, the holder maps and the log prefix: one allocation.
    id: Arc<str>,
    payload: Bytes,
    deadline_ms: i64,
    reply: oneshot::Sender<Reply>,
    /// Where its log lines go, when the caller wants them (`LogType: Tail`).
    log: Option<Arc<Mutex<LogTail>>>,
}

#[derive(Default)]
struct Counters {
    /// Processes alive, idle in `/next`, and invocations not yet taken.
    procs: usize,
    idle: usize,
    queued: usize,
}

/// A pool's counters since it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub invocations: usize,
    /// Processes started.
    pub started: usize,
    /// The most processes alive at once.
    pub peak: usize,
}

pub struct Pool {
    name: String,
    config: FunctionConfig,
    region: String,
    /// Made once: every invocation's header carries it.
    arn: String,
    /// Invocations no process has taken yet. Each `/next` waits on `ready`, so an
    /// invocation wakes one waiting process and nothing else.
    queue: Mutex<VecDeque<Invocation>>,
    ready: tokio::sync::Notify,
    counters: Mutex<Counters>,
    started: AtomicUsize,
    peak: AtomicUsize,
    invocations: AtomicUsize,
    /// Set by shoal for every function (the local S3 endpoint); the function's own env wins.
    extra_env: Mutex<Vec<(String, String)>>,
    /// Which process holds each running invocation, so a timeout can kill it.
    holders: Mutex<HashMap<Arc<str>, Arc<Proc>>>,
}

/// Lambda's `LogType: Tail` returns at most the last 4 KB of the log.
const TAIL_BYTES: usize = 4096;

/// An invocation's log lines, bounded.
#[derive(Default)]
struct LogTail {
    text: String,
}

impl LogTail {
    fn push(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
        if self.text.len() > 2 * TAIL_BYTES {
            self.text = last_bytes(std::mem::take(&mut self.text), TAIL_BYTES);
        }
    }
}

/// The last `n` bytes of `s` or a little fewer, so as not to split a character.
fn last_bytes(s: String, n: usize) -> String {
    if s.len() <= n {
        return s;
    }
    let mut start = s.len() - n;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

/// What a process's Runtime API server knows about it.
struct Proc {
    pool: Arc<Pool>,
    /// The invocation it is working on, by request id.
    current: Mutex<HashMap<Arc<str>, Invocation>>,
    /// The request id, for its log lines.
    log_id: Mutex<Arc<str>>,
    /// The current invocation's log, when its caller wants it.
    tail: Mutex<Option<Arc<Mutex<LogTail>>>>,
    kill: tokio::sync::Notify,
    /// Invocations it took; one that dies without taking any fails the next in line.
    taken: AtomicUsize,
}

impl Pool {
    pub fn new(name: &str, config: FunctionConfig) -> Arc<Pool> {
        Arc::new(Pool {
            name: name.to_string(),
            config,
            region: REGION.into(),
            arn: identity::function_arn(name),
            queue: Mutex::default(),
            ready: tokio::sync::Notify::new(),
            counters: Mutex::default(),
            started: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            invocations: AtomicUsize::new(0),
            extra_env: Mutex::default(),
            holders: Mutex::default(),
        })
    }

    /// Invocations so far, processes started, and the most processes alive at once.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            invocations: self.invocations.load(Ordering::SeqCst),
            started: self.started.load(Ordering::SeqCst),
            peak: self.peak.load(Ordering::SeqCst),
        }
    }

    pub fn add_env(&self, key: &str, value: &str) {
        self.extra_env
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((key.to_string(), value.to_string()));
    }

    pub fn arn(&self) -> String {
        self.arn.clone()
    }

    /// The function's `timeout_seconds`. `Registry::load` checks it; a config made in
    /// code gets the longest one where it is not a duration.
    fn own_timeout(&self) -> Duration {
        let most = Duration::from_secs_f64(crate::registry::MAX_TIMEOUT_SECONDS);
        Duration::try_from_secs_f64(self.config.timeout_seconds.max(0.001))
            .map_or(most, |t| t.min(most))
    }

    /// The oldest invocation no process has taken.
    fn pop(&self) -> Option<Invocation> {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one invocation to its reply. A timeout (the function's own, or the Task's
    /// if shorter) kills the process that holds the invocation.
    pub async fn invoke(
        self: &Arc<Self>,
        id: String,
        payload: Bytes,
        task_timeout: Option<Duration>,
    ) -> Reply {
        self.run_invocation(id, payload, task_timeout, false)
            .await
            .0
    }

    /// [`Pool::invoke`], with the invocation's log as Lambda's `LogType: Tail` returns
    /// it (before base64): START, what the process wrote, END and REPORT, the last 4 KB.
    pub async fn invoke_tail(
        self: &Arc<Self>,
        id: String,
        payload: Bytes,
        task_timeout: Option<Duration>,
    ) -> (Reply, String) {
        let started = std::time::Instant::now();
        let (reply, lines) = self
            .run_invocation(id.clone(), payload, task_timeout, true)
            .await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let log = format!(
            "START RequestId: {id} Version: $LATEST\n{lines}END RequestId: {id}\nREPORT RequestId: {id}\tDuration: {ms:.2} ms\tBilled Duration: {} ms\tMemory Size: 128 MB\tMax Memory Used: 128 MB\t\n",
            ms.ceil() as u64
        );
        (reply, last_bytes(log, TAIL_BYTES))
    }

    async fn run_invocation(
        self: &Arc<Self>,
        id: String,
        payload: Bytes,
        task_timeout: Option<Duration>,
        want_log: bool,
    ) -> (Reply, String) {
        let own = self.own_timeout();
        let (timeout, task_first) = match task_timeout {
            Some(t) if t < own => (t, true),
            _ => (own, false),
        };
        let deadline_ms = chrono::Utc::now()
            .timestamp_millis()
            .saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
        self.invocations.fetch_add(1, Ordering::SeqCst);
        let (reply, rx) = oneshot::channel();
        let id: Arc<str> = Arc::from(id);
        let log = want_log.then(Arc::default);
        let inv = Invocation {
            id: id.clone(),
            payload,
            deadline_ms,
            reply,
            log: log.clone(),
        };
        let spawn = {
            let mut c = self.counters();
            c.queued += 1;
            let spawn = c.queued > c.idle && c.procs < self.config.concurrency.max(1);
            if spawn {
                c.procs += 1;
                self.peak.fetch_max(c.procs, Ordering::SeqCst);
            }
            spawn
        };
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(inv);
        self.ready.notify_one();
        if spawn {
            let pool = self.clone();
            tokio::spawn(async move { pool.run_process().await });
        }
        let r = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Reply::Unknown(format!(
                "RequestId: {id} Error: Runtime exited without providing a reason"
            )),
            Err(_) if task_first => Reply::TaskTimeout,
            Err(_) => {
                let secs = self.config.timeout_seconds;
                Reply::Unknown(format!(
                    "RequestId: {id} Error: Task timed out after {secs:.2} seconds"
                ))
            }
        };
        let holder = self
            .holders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&*id);
        let mut lines = String::new();
        if let Some(log) = log {
            // The process wrote its lines before it answered; give their reader a turn.
            tokio::time::sleep(Duration::from_millis(5)).await;
            lines = std::mem::take(&mut log.lock().unwrap_or_else(|p| p.into_inner()).text);
        }
        if let (Some(p), Reply::TaskTimeout | Reply::Unknown(_)) = (holder, &r) {
            p.current
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&*id);
            p.kill.notify_one();
        }
        (r, lines)
    }

    /// Starts a process with its own Runtime API listener and watches it until it
    /// exits; starts the next one while queued work still needs a process.
    async fn run_process(self: Arc<Self>) {
        loop {
            self.started.fetch_add(1, Ordering::SeqCst);
            let proc = Arc::new(Proc {
                pool: self.clone(),
                current: Mutex::default(),
                log_id: Mutex::new(Arc::from("")),
                tail: Mutex::default(),
                kill: tokio::sync::Notify::new(),
                taken: AtomicUsize::new(0),
            });
            let result = self.clone().serve_and_wait(proc.clone()).await;
            let why = match result {
                Ok(status) => format!("Runtime exited with error: {status}"),
                Err(e) => format!("the function could not start: {e}"),
            };
            let held: Vec<Invocation> = proc
                .current
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain()
                .map(|(_, v)| v)
                .collect();
            let mut failed = held;
            if proc.taken.load(Ordering::SeqCst) == 0 {
                // It died before asking for work (a bad command, a crash at start):
                // the invocation that needed it fails rather than waiting forever.
                if let Some(inv) = self.pop() {
                    self.counters().queued -= 1;
                    failed.push(inv);
                }
            }
            for inv in failed {
                let _ = inv.reply.send(Reply::Unknown(format!(
                    "RequestId: {} Error: {why}\nRuntime.ExitError",
                    inv.id
                )));
            }
            let mut c = self.counters();
            if !(c.queued > c.idle && c.procs <= self.config.concurrency.max(1)) {
                c.procs -= 1;
                return;
            }
        }
    }

    async fn serve_and_wait(
        self: Arc<Self>,
        proc: Arc<Proc>,
    ) -> std::io::Result<std::process::ExitStatus> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        // A connection sits idle while the function runs, which its timeout bounds (the
        // process is killed then); a minute on top never cuts off an honest process.
        let limits = crate::http1::Limits {
            idle: Some(self.own_timeout() + Duration::from_secs(60)),
            ..Default::default()
        };
        let server = tokio::spawn(crate::http1::accept(
            listener,
            limits,
            proc.clone(),
            serve_conn,
        ));
        let mut cmd = tokio::process::Command::new(
            self.config
                .command
                .first()
                .ok_or_else(|| std::io::Error::other("the function has no command"))?,
        );
        cmd.args(&self.config.command[1..])
            .current_dir(&self.config.cwd)
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &self.name)
            .env(
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                self.config.memory_mb.to_string(),
            )
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", self.name),
            )
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                format!(
                    "{}/[$LATEST]{}",
                    chrono::Utc::now().format("%Y/%m/%d"),
                    shoal_expr::uuid_v4(&shoal_expr::SplitMix::new(
                        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64
                    ))
                    .replace('-', "")
                ),
            )
            .env("AWS_REGION", &self.region)
            .env("AWS_DEFAULT_REGION", &self.region)
            .env(
                "_HANDLER",
                self.config.command.last().cloned().unwrap_or_default(),
            )
            .env("LAMBDA_TASK_ROOT", &self.config.cwd)
            .envs(
                self.extra_env
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
            )
            .envs(&self.config.env)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                server.abort();
                return Err(std::io::Error::other(format!(
                    "{:?}: {e}",
                    self.config.command
                )));
            }
        };
        for out in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let proc = proc.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let id = proc
                        .log_id
                        .lock()
                        .map(|g| g.clone())
                        .unwrap_or_else(|_| Arc::from(""));
                    eprintln!("[{} {id}] {line}", proc.pool.name);
                    let tail = proc.tail.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    if let Some(t) = tail {
                        t.lock().unwrap_or_else(|p| p.into_inner()).push(&line);
                    }
                }
            });
        }
        let status = tokio::select! {
            s = child.wait() => s,
            _ = proc.kill.notified() => {
                let _ = child.kill().await;
                child.wait().await
            }
        };
        server.abort();
        status
    }
}

enum Route {
    Next,
    /// `/invocation/{id}/response` or, with `error`, `/invocation/{id}/error`.
    Reply {
        id: String,
        error: bool,
    },
    InitError,
    NotFound,
}

fn route(req: &httparse::Request<'_, '_>) -> (Route, Option<String>) {
    let path = req.path.unwrap_or("");
    let rest = path
        .split('?')
        .next()
        .unwrap_or("")
        .strip_prefix("/2018-06-01/runtime/")
        .unwrap_or("");
    let mut segments = [""; 4];
    let mut n = 0;
    for seg in rest.split('/') {
        if n == segments.len() {
            n += 1;
            break;
        }
        segments[n] = seg;
        n += 1;
    }
    let r = match (req.method.unwrap_or(""), &segments[..n.min(segments.len())]) {
        ("GET", ["invocation", "next"]) => Route::Next,
        ("POST", ["invocation", id, kind @ ("response" | "error")]) if n == 3 => Route::Reply {
            id: id.to_string(),
            error: *kind == "error",
        },
        ("POST", ["init", "error"]) => Route::InitError,
        _ => Route::NotFound,
    };
    let error_type = match r {
        Route::Reply { error: true, .. } => req
            .headers
            .iter()
            .find(|h| {
                h.name
                    .eq_ignore_ascii_case("Lambda-Runtime-Function-Error-Type")
            })
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::to_string),
        _ => None,
    };
    (r, error_type)
}

const ACCEPTED: &[u8] = b"{\"status\":\"OK\"}";
const JSON: (&str, &[u8]) = ("Content-Type", b"application/json");

async fn serve_conn(mut conn: crate::http1::Conn, proc: Arc<Proc>) -> std::io::Result<()> {
    // Checked before each request, so that every answer honours `Connection: close`.
    while !conn.closing() {
        let Some(((route, error_type), body)) = conn.read_request(route).await? else {
            break;
        };
        match route {
            Route::Next => next(&proc, &mut conn).await?,
            Route::Reply { id, error } => {
                let inv = proc
                    .current
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(id.as_str());
                proc.pool
                    .holders
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(id.as_str());
                let Some(inv) = inv else {
                    let msg = format!(
                        "{{\"errorMessage\":\"unknown request id {id}\",\"errorType\":\"InvalidRequestID\"}}"
                    );
                    conn.respond("400 Bad Request", &[JSON], msg.as_bytes())
                        .await?;
                    continue;
                };
                let reply = if !error {
                    Reply::Ok(body)
                } else {
                    let error_type = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| {
                            v.get("errorType")
                                .and_then(|t| t.as_str())
                                .map(str::to_string)
                        })
                        .or(error_type)
                        .unwrap_or_else(|| "Lambda.Unknown".into());
                    Reply::HandlerError { error_type, body }
                };
                let _ = inv.reply.send(reply);
                conn.respond("202 Accepted", &[JSON], ACCEPTED).await?;
            }
            Route::InitError => {
                eprintln!(
                    "[{}] init error: {}",
                    proc.pool.name,
                    String::from_utf8_lossy(&body)
                );
                conn.respond("202 Accepted", &[JSON], ACCEPTED).await?;
            }
            Route::NotFound => {
                conn.respond("404 Not Found", &[JSON], b"{\"errorType\":\"NotFound\"}")
                    .await?
            }
        }
    }
    Ok(())
}

/// `GET /next`: waits for the function's next invocation and hands it to this process.
async fn next(proc: &Arc<Proc>, conn: &mut crate::http1::Conn) -> std::io::Result<()> {
    let pool = &proc.pool;
    let inv = loop {
        pool.counters().idle += 1;
        // Counted idle until it takes work or its process goes away mid-wait.
        struct Idle<'a>(&'a Pool);
        impl Drop for Idle<'_> {
            fn drop(&mut self) {
                self.0.counters().idle -= 1;
            }
        }
        let idle = Idle(pool);
        let inv = loop {
            // `notify_one` keeps a permit when nobody waits, so a push between this
            // check and the wait is not missed.
            if let Some(inv) = pool.pop() {
                break inv;
            }
            pool.ready.notified().await;
        };
        drop(idle);
        pool.counters().queued -= 1;
        proc.taken.fetch_add(1, Ordering::SeqCst);
        // Its caller gave up (a Task timeout) before any process took it.
        if !inv.reply.is_closed() {
            break inv;
        }
    };
    // The trace id's Root: the epoch seconds, then 24 hex digits of the request id.
    // Both headers are written on the stack: this runs once per invocation.
    let mut trace = [0u8; 64];
    let trace_len = {
        let mut w = std::io::Cursor::new(&mut trace[..]);
        let _ = write!(w, "Root=1-{:08x}-", chrono::Utc::now().timestamp());
        for b in inv.id.bytes().filter(|b| *b != b'-').take(24) {
            let _ = w.write_all(&[b]);
        }
        let _ = w.write_all(b";Sampled=0");
        w.position() as usize
    };
    let mut deadline = [0u8; 20];
    let deadline = crate::http1::itoa(inv.deadline_ms.max(0) as u64, &mut deadline);
    *proc.log_id.lock().unwrap_or_else(|p| p.into_inner()) = inv.id.clone();
    *proc.tail.lock().unwrap_or_else(|p| p.into_inner()) = inv.log.clone();
    pool.holders
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(inv.id.clone(), proc.clone());
    let (id, payload) = (inv.id.clone(), inv.payload.clone());
    proc.current
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(inv.id.clone(), inv);
    conn.respond(
        "200 OK",
        &[
            JSON,
            ("Lambda-Runtime-Aws-Request-Id", id.as_bytes()),
            ("Lambda-Runtime-Deadline-Ms", deadline),
            ("Lambda-Runtime-Invoked-Function-Arn", pool.arn.as_bytes()),
            ("Lambda-Runtime-Trace-Id", &trace[..trace_len]),
        ],
        &payload,
    )
    .await
}
