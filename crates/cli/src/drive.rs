//! Runs one execution in-process on the shoal runtime, with a progress bar for map runs.

use anyhow::Result;
use serde_json::Value;
use shoal_asl::StateMachine;
use shoal_buckets::{Buckets, S3Options};
use shoal_engine::{ExecutionInfo, Outcome};
use shoal_runtime::{MapRunProgress, Runtime};
use shoal_tasks::Functions;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Options {
    pub db: Option<Arc<dyn shoal_store::Store>>,
    pub buckets: Option<PathBuf>,
    pub functions: Functions,
    pub s3_endpoint: Option<String>,
    pub fast_forward: bool,
    /// Step Functions Local's MockConfigFile (`--mock-config`, SFN_MOCK_CONFIG).
    pub mocks: Option<Arc<shoal_tasks::mock::MockFile>>,
    /// Fleet mode: map run children go to NATS workers.
    pub fleet: Option<FleetSetup>,
}

pub struct FleetSetup {
    pub nats: shoal_fleet::NatsOptions,
    pub options: shoal_fleet::FleetOptions,
}

/// What to run: a new execution, or one the store holds.
pub enum Job {
    Start {
        machine: Box<StateMachine>,
        definition: String,
        sm_name: String,
        input: Value,
        name: Option<String>,
        /// A TestCases entry of the mock file: its states' Tasks are mocked.
        test_case: Option<String>,
    },
    Resume {
        execution: String,
        redrive: bool,
    },
}

/// How a job ended, and which execution it was (for its history).
pub struct Ran {
    pub outcome: Outcome,
    /// The execution's ARN, or for a resumed one the name or ARN it was given.
    pub execution: String,
}

pub fn run(job: Job, opts: Options) -> Result<Ran> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let fast_forward = opts.fast_forward;
    let db = opts.db.clone();
    let mocks = opts.mocks.clone();
    rt.block_on(async move {
        let runtime = build(opts).await?.runtime;
        let bar = std::io::stderr()
            .is_terminal()
            .then(|| spawn_progress(runtime.clone()));
        let (outcome, execution) = match job {
            Job::Start {
                machine,
                definition,
                sm_name,
                input,
                name,
                test_case,
            } => {
                let scope = match test_case {
                    None => shoal_runtime::Scope {
                        mocks: None,
                        virtual_time: fast_forward,
                    },
                    Some(case) => {
                        let Some(file) = &mocks else {
                            anyhow::bail!("--test-case {case} needs a mock file: --mock-config FILE or SFN_MOCK_CONFIG");
                        };
                        let mocks = file.current()?.test_case(&sm_name, &case).map_err(|e| {
                            anyhow::anyhow!("{}: {e}", file.path().display())
                        })?;
                        shoal_runtime::Scope {
                            mocks: Some(Arc::new(shoal_tasks::mock::MockSession::new(mocks))),
                            virtual_time: fast_forward,
                        }
                    }
                };
                if definition.contains(".waitForTaskToken") {
                    answer_tokens(&runtime, db.clone()).await?;
                }
                let entropy = runtime.entropy();
                let name = name.unwrap_or_else(|| shoal_expr::uuid_v4(&entropy));
                let info = ExecutionInfo::local(&sm_name, &name, runtime.now_ms(), false, &entropy);
                if db.is_some() {
                    eprintln!("shoal: execution {}", info.execution_arn);
                }
                let arn = info.execution_arn.clone();
                let outcome = runtime
                    .start_scoped(Arc::new(*machine), &definition, info, input, scope)
                    .await;
                (outcome, arn)
            }
            Job::Resume { execution, redrive } => {
                let scope = shoal_runtime::Scope {
                    mocks: None,
                    virtual_time: fast_forward,
                };
                let outcome = runtime.resume_scoped(&execution, redrive, scope).await;
                (outcome, execution)
            }
        };
        if let Some((stop, handle)) = bar {
            let _ = stop.send(());
            let _ = handle.await;
        }
        // AWS's cause for a map run over its tolerance names no item: say which failed first.
        for p in runtime.map_runs() {
            if let Some((child, f)) = p.first_failure() {
                let failed = p.tally().items.failed;
                let mut cause = f.cause.unwrap_or_default();
                if cause.len() > 500 {
                    let cut = (0..=500).rev().find(|i| cause.is_char_boundary(*i)).unwrap_or(0);
                    cause.truncate(cut);
                    cause.push('…');
                }
                eprintln!(
                    "shoal: map run {}: {failed} items failed; the first, child execution {child}: {}: {cause}",
                    p.map_run_arn, f.error
                );
            }
        }
        for s in runtime.tasks().functions().stats() {
            eprintln!(
                "shoal: function {}: {} invocations, {} processes started, at most {} at once",
                s.name, s.invocations, s.started, s.peak
            );
        }
        Ok(Ran {
            outcome: outcome?,
            execution,
        })
    })
}

/// For a machine whose tasks wait for tokens: serves the Step Functions API on a
/// loopback port, so that `shoal task success` (or any SDK) can answer them, and says
/// on stderr how to answer each token as it starts waiting.
async fn answer_tokens(
    runtime: &Arc<Runtime>,
    db: Option<Arc<dyn shoal_store::Store>>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let server = shoal_server::Server::new(shoal_server::Options {
        runtime: runtime.clone(),
        fleet: None,
        db: db.unwrap_or_else(|| Arc::new(shoal_store::Memory::new())),
        token: None,
        mocks: None,
    });
    tokio::spawn(server.serve(listener));
    let callbacks = runtime.callbacks().clone();
    tokio::spawn(async move {
        let mut told = std::collections::HashSet::new();
        loop {
            for token in callbacks.waiting() {
                if told.insert(token.clone()) {
                    eprintln!(
                        "shoal: a task waits for its token; answer it with\n  shoal task success --endpoint {endpoint} --output '{{}}' {token}"
                    );
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    Ok(())
}

/// A runtime, and the fleet its map runs go to in fleet mode.
pub struct Built {
    pub runtime: Arc<Runtime>,
    pub fleet: Option<Arc<shoal_fleet::Fleet>>,
}

/// The runtime for these options: buckets, functions (and the local S3 endpoint their
/// processes need), the state store. Call within a tokio runtime.
pub async fn build(opts: Options) -> Result<Built> {
    let buckets = match (&opts.buckets, &opts.s3_endpoint) {
        (Some(dir), _) => Some(Buckets::local(dir)),
        (None, Some(url)) => Some(Buckets::s3(S3Options {
            endpoint: Some(url.clone()),
            region: None,
        })),
        (None, None) if std::env::var_os("AWS_ENDPOINT_URL").is_some() => {
            Some(Buckets::s3(S3Options::default()))
        }
        (None, None) => None,
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id());
    // Function processes reach the buckets over S3: the local folders through shoal's
    // own endpoint, or the same S3 endpoint shoal uses.
    if opts.functions.has_processes() {
        let endpoint = match &buckets {
            Some(Buckets::Local(l)) => Some(format!(
                "http://{}",
                shoal_lambda::s3serve::serve(l.clone()).await?
            )),
            _ => opts.s3_endpoint.clone(),
        };
        if let Some(e) = endpoint {
            opts.functions.add_env("AWS_ENDPOINT_URL", &e);
            if matches!(buckets, Some(Buckets::Local(_))) {
                // The local endpoint checks no signature: spare object_store's clients
                // the signing (3-4 % of the seed demo's CPU) and the payload hashing.
                opts.functions.add_env("AWS_UNSIGNED_PAYLOAD", "true");
                opts.functions.add_env("AWS_SKIP_SIGNATURE", "true");
            }
            for (k, v) in [
                ("AWS_ACCESS_KEY_ID", "shoal"),
                ("AWS_SECRET_ACCESS_KEY", "shoal"),
            ] {
                if std::env::var_os(k).is_none() {
                    opts.functions.add_env(k, v);
                }
            }
        }
    }
    let fleet = match &opts.fleet {
        Some(f) => {
            let fleet = shoal_fleet::Fleet::connect(&f.nats, f.options.clone()).await?;
            eprintln!("shoal: map runs go to the fleet on {}", f.nats.url);
            Some(fleet)
        }
        None => None,
    };
    let runtime = Runtime::new(shoal_runtime::Options {
        buckets,
        tasks: shoal_tasks::Tasks::new(opts.functions),
        seed,
        db: opts.db,
        fleet: fleet.clone().map(|f| f as Arc<dyn shoal_runtime::Remote>),
    });
    Ok(Built { runtime, fleet })
}

/// Redraws one stderr line per map run, four times a second.
fn spawn_progress(
    runtime: Arc<Runtime>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let start = Instant::now();
        let mut drawn = false;
        loop {
            let stop = tokio::select! {
                _ = &mut rx => true,
                _ = tokio::time::sleep(Duration::from_millis(250)) => false,
            };
            if let Some(p) = runtime.map_runs().last() {
                let line = progress_line(p, start.elapsed());
                eprint!("\r\x1b[2K{line}");
                let _ = std::io::stderr().flush();
                drawn = true;
            }
            if stop {
                if drawn {
                    eprintln!();
                }
                return;
            }
        }
    });
    (tx, handle)
}

fn progress_line(p: &MapRunProgress, elapsed: Duration) -> String {
    let t = p.tally();
    let i = &t.items;
    let done = i.succeeded + i.failed + i.timed_out + i.aborted;
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = done as f64 / secs;
    let width = 30;
    let reader = p.reader();
    // Until the reader has read every item, the items' total is only what it has read:
    // the bar and the ETA go by its bytes instead, when it knows the objects' sizes.
    let by_bytes = reader
        .and_then(|r| r.bytes)
        .filter(|b| !t.total_known && b.total_known && b.total > 0);
    let frac = match by_bytes {
        Some(b) => b.read as f64 / b.total as f64,
        None if i.total == 0 => 0.0,
        None => done as f64 / i.total as f64,
    };
    let filled = (frac * width as f64) as usize;
    let eta = match by_bytes {
        Some(b) if b.read > 0 => format!(
            " ETA {:.0}s",
            secs * (b.total - b.read.min(b.total)) as f64 / b.read as f64
        ),
        _ if t.total_known && rate > 0.0 && done < i.total => {
            format!(" ETA {:.0}s", (i.total - done) as f64 / rate)
        }
        _ => String::new(),
    };
    let total = if t.total_known {
        i.total.to_string()
    } else {
        format!("{}+", i.total)
    };
    format!(
        "{} [{}{}] {done}/{total} items, {:.0}/s, {} failed, {} running{eta}{}",
        p.state,
        "#".repeat(filled),
        " ".repeat(width - filled.min(width)),
        rate,
        i.failed,
        i.running,
        reader.map(reader_part).unwrap_or_default(),
    )
}

/// How far the ItemReader has got, while it reads: on a 10 GB object the item total
/// is unknown for a long time, the bytes are not.
fn reader_part(r: shoal_runtime::ReadSnapshot) -> String {
    if r.done {
        return String::new();
    }
    let mut s = String::new();
    if let Some(k) = r.keys_listed {
        s += &format!(", {k} keys listed");
    }
    if let Some(b) = r.bytes.filter(|b| b.total > 0) {
        s += &format!(
            ", read {} of {}{} ({:.0}%)",
            human(b.read),
            human(b.total),
            if b.total_known { "" } else { "+" },
            100.0 * b.read as f64 / b.total as f64
        );
    }
    s
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2} GB", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} kB", n as f64 / 1e3),
        n => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use shoal_runtime::{ReadBytes, ReadSnapshot};

    #[test]
    fn the_progress_line_says_how_far_the_reader_has_got() {
        let bytes = |read, total, total_known| ReadBytes {
            read,
            total,
            total_known,
        };
        let reading = ReadSnapshot {
            bytes: Some(bytes(1_200_000_000, 3_000_000_000, true)),
            keys_listed: None,
            done: false,
        };
        assert_eq!(
            super::reader_part(reading),
            ", read 1.20 GB of 3.00 GB (40%)"
        );
        let listing = ReadSnapshot {
            bytes: Some(bytes(5_000, 20_000, false)),
            keys_listed: Some(12),
            done: false,
        };
        assert_eq!(
            super::reader_part(listing),
            ", 12 keys listed, read 5.0 kB of 20.0 kB+ (25%)"
        );
        // Once the reader is done the item counts say it all.
        assert_eq!(
            super::reader_part(ReadSnapshot {
                done: true,
                ..reading
            }),
            ""
        );
    }
}
