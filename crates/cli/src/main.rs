//! The `shoal` binary. Data goes to stdout; progress and logs go to stderr.

mod drive;
#[cfg(feature = "resize")]
mod resize;

// Map runs allocate many small JSON values across threads; glibc malloc is the bottleneck there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "shoal",
    version,
    about = "Run AWS Step Functions state machines locally"
)]
struct Cli {
    /// Where executions, their history and map runs are kept (default: ~/.shoal).
    #[arg(long, global = true, value_name = "DIR", env = "SHOAL_STATE_DIR")]
    state_dir: Option<PathBuf>,
    #[command(flatten)]
    nats: NatsArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Fleet mode: where NATS is and how to log in (the standard NATS options).
#[derive(Args)]
struct NatsArgs {
    /// Run Distributed Map children on `shoal worker`s through NATS JetStream
    /// (`nats://HOST:4222`; `tls://` for TLS; `user:pass@` or `token@` may be in it).
    #[arg(long, global = true, value_name = "URL", env = "SHOAL_NATS")]
    nats: Option<String>,
    /// A NATS credentials file (JWT and nkey seed).
    #[arg(long, global = true, value_name = "FILE", env = "NATS_CREDS")]
    nats_creds: Option<PathBuf>,
    /// A NATS token.
    #[arg(long, global = true, env = "NATS_TOKEN", hide_env_values = true)]
    nats_token: Option<String>,
    /// A file holding an nkey seed.
    #[arg(long, global = true, value_name = "FILE", env = "NATS_NKEY")]
    nats_nkey: Option<PathBuf>,
    /// A CA certificate to trust for TLS to NATS.
    #[arg(long, global = true, value_name = "FILE", env = "NATS_CA")]
    nats_ca: Option<PathBuf>,
    /// Seconds a worker may stay silent before its child goes to another worker.
    #[arg(long, global = true, default_value_t = 30.0, value_name = "SECONDS")]
    nats_ack_wait: f64,
    /// Deliveries of one child before it counts as failed (a worker crash each time).
    #[arg(long, global = true, default_value_t = 3)]
    nats_max_deliver: i64,
    /// Seconds NATS may be unreachable before a map run fails.
    #[arg(long, global = true, default_value_t = 60.0, value_name = "SECONDS")]
    nats_patience: f64,
}

impl NatsArgs {
    fn options(&self) -> Result<Option<shoal_fleet::NatsOptions>> {
        let Some(url) = &self.nats else {
            return Ok(None);
        };
        let nkey = match &self.nats_nkey {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read the nkey seed {}", p.display()))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        Ok(Some(shoal_fleet::NatsOptions {
            url: url.clone(),
            creds: self.nats_creds.clone(),
            token: self.nats_token.clone(),
            nkey,
            ca: self.nats_ca.clone(),
        }))
    }

    fn fleet(&self) -> Result<Option<drive::FleetSetup>> {
        let Some(nats) = self.options()? else {
            return Ok(None);
        };
        if !(self.nats_ack_wait > 0.0 && self.nats_patience > 0.0) || self.nats_max_deliver < 1 {
            bail!("--nats-ack-wait and --nats-patience must be above 0, --nats-max-deliver at least 1");
        }
        Ok(Some(drive::FleetSetup {
            nats,
            options: shoal_fleet::FleetOptions {
                ack_wait: std::time::Duration::from_secs_f64(self.nats_ack_wait),
                max_deliver: self.nats_max_deliver,
                patience: std::time::Duration::from_secs_f64(self.nats_patience),
            },
        }))
    }
}

/// Where an execution's buckets and functions are: the same for run, resume and redrive.
#[derive(Args)]
struct Env {
    /// Print `{"status":..., "output"|"error","cause"}` instead of the bare output.
    #[arg(long)]
    json: bool,
    /// With --json: also print `"history"`, the execution's events as
    /// GetExecutionHistory returns them.
    #[arg(long, requires = "json")]
    history: bool,
    /// Folder whose subfolders are buckets (the embedded default).
    #[arg(long)]
    buckets: Option<PathBuf>,
    /// An S3 endpoint for buckets instead (credentials and region from the
    /// standard AWS environment variables). AWS_ENDPOINT_URL works too.
    #[arg(long, value_name = "URL", conflicts_with = "buckets")]
    s3_endpoint: Option<String>,
    /// The function registry (default: ./shoal.toml when it exists).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Do not sleep in Wait states and retry backoff: jump the clock instead.
    #[arg(long)]
    fast_forward: bool,
    /// Step Functions Local's MockConfigFile. `shoal run --test-case NAME` and
    /// StartExecution on `<stateMachineArn>#NAME` run that test case's mocks.
    #[arg(long, value_name = "FILE", env = "SFN_MOCK_CONFIG")]
    mock_config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TaskAnswer {
    /// The task succeeds with this output.
    Success {
        token: String,
        /// The task's result, a JSON text.
        #[arg(long)]
        output: String,
        #[arg(long, env = "SHOAL_ENDPOINT", default_value = "http://127.0.0.1:8083")]
        endpoint: String,
    },
    /// The task fails with this error and cause (Retry and Catch see them).
    Failure {
        token: String,
        #[arg(long)]
        error: Option<String>,
        #[arg(long)]
        cause: Option<String>,
        #[arg(long, env = "SHOAL_ENDPOINT", default_value = "http://127.0.0.1:8083")]
        endpoint: String,
    },
    /// The task is still being worked on (for HeartbeatSeconds).
    Heartbeat {
        token: String,
        #[arg(long, env = "SHOAL_ENDPOINT", default_value = "http://127.0.0.1:8083")]
        endpoint: String,
    },
}

#[derive(Subcommand)]
enum Cmd {
    /// Check a definition; print every problem as `<JSON pointer>: <message>`.
    Validate {
        definition: PathBuf,
        /// Print the result as AWS's ValidateStateMachineDefinition JSON.
        #[arg(long)]
        json: bool,
        /// Validate for an EXPRESS machine, which AWS refuses `.sync` and
        /// `.waitForTaskToken` integrations in.
        #[arg(long)]
        express: bool,
    },
    /// Run one execution to completion, in-process.
    Run {
        definition: PathBuf,
        /// The input: JSON text, or @FILE.
        #[arg(long, default_value = "{}")]
        input: String,
        #[command(flatten)]
        env: Env,
        /// Name of the execution (default: a UUID).
        #[arg(long)]
        name: Option<String>,
        /// Replace `${K}` in the definition with V (DefinitionSubstitutions).
        #[arg(long = "substitute", value_name = "K=V")]
        substitute: Vec<String>,
        /// Keep nothing: run without the state store.
        #[arg(long)]
        ephemeral: bool,
        /// Run with the mocks of this TestCases entry of the mock file; the state
        /// machine's name there is the definition file's name without `.asl.json`
        /// (or `--machine-name`).
        #[arg(long, value_name = "NAME", requires = "mock_config")]
        test_case: Option<String>,
        /// The state machine's name (default: the definition file's name).
        #[arg(long, value_name = "NAME")]
        machine_name: Option<String>,
    },
    /// Finish an execution that a crash or kill interrupted, from the state store.
    Resume {
        /// The execution's ARN or name.
        execution: String,
        #[command(flatten)]
        env: Env,
    },
    /// Run a failed execution again from where it failed; a failed map run runs
    /// only its failed and pending children again (RedriveExecution).
    Redrive {
        execution: String,
        #[command(flatten)]
        env: Env,
    },
    /// Answer a task that waits for its token: SendTaskSuccess, SendTaskFailure or
    /// SendTaskHeartbeat, to `shoal serve` or to a `shoal run` (which prints its endpoint).
    Task {
        #[command(subcommand)]
        answer: TaskAnswer,
    },
    /// Run test suites (YAML or JSON): each case runs the state machine with mocked
    /// Tasks, a fixed clock and fixed ids, and checks its status, output, error,
    /// path and state outputs. Exits 1 when a case fails.
    Test {
        #[arg(required = true, value_name = "SUITE")]
        suites: Vec<PathBuf>,
        /// Write JUnit XML here.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Write coverage (states, transitions, Choice rules, catchers, retriers) as
        /// JSON here, and print a summary.
        #[arg(long, value_name = "FILE")]
        coverage: Option<PathBuf>,
        /// Run only the cases whose name contains this.
        #[arg(long, value_name = "TEXT")]
        filter: Option<String>,
        /// The function registry for states no case mocks (default: ./shoal.toml).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Serve the Step Functions API (AWS JSON 1.0) and the dashboard.
    Serve {
        /// Address to listen on. Beyond loopback a token is required.
        #[arg(long, default_value = "127.0.0.1:8083", value_name = "ADDR:PORT")]
        listen: String,
        /// Required on every request: `Authorization: Bearer T`, AWS_ACCESS_KEY_ID=T
        /// for the CLI and SDKs, or `?token=T` in the dashboard's address.
        #[arg(long, env = "SHOAL_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[command(flatten)]
        env: Env,
    },
    /// Run Distributed Map children handed out through NATS (`--nats URL`), with this
    /// machine's functions, until stopped.
    Worker {
        /// Children run at once on this worker.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[command(flatten)]
        env: Env,
    },
    /// List the workers connected to NATS: functions, load, last heartbeat.
    Workers {
        #[arg(long)]
        json: bool,
    },
    /// List the executions in the state store, newest first.
    Executions {
        /// A JSON array of DescribeExecution objects instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one execution: DescribeExecution, its map runs and their counters.
    Describe {
        execution: String,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn read_definition(path: &PathBuf, subs: &[String]) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read definition {}", path.display()))?;
    let mut pairs = Vec::new();
    for s in subs {
        let Some(kv) = s.split_once('=') else {
            bail!("--substitute takes K=V, got {s:?}")
        };
        pairs.push(kv);
    }
    Ok(shoal_asl::substitute(&text, pairs))
}

fn real_main(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Validate {
            definition,
            json,
            express,
        } => {
            let text = read_definition(&definition, &[])?;
            let mut parsed = shoal_asl::parse(&text);
            if express {
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    parsed
                        .diagnostics
                        .extend(shoal_asl::express_diagnostics(&v));
                }
            }
            if json {
                println!("{}", parsed.validation_report());
            } else {
                for d in &parsed.diagnostics {
                    println!("{d}");
                }
            }
            Ok(if parsed.is_valid() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Run {
            definition,
            input,
            env,
            name,
            substitute,
            ephemeral,
            test_case,
            machine_name,
        } => {
            let text = read_definition(&definition, &substitute)?;
            let parsed = shoal_asl::parse(&text);
            let Some(machine) = parsed.machine.filter(|_| parsed.diagnostics.is_empty()) else {
                for d in &parsed.diagnostics {
                    eprintln!("{d}");
                }
                bail!("invalid definition {}", definition.display());
            };
            let input_text = match input.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read input file {file}"))?,
                None => input,
            };
            let input: Value =
                serde_json::from_str(&input_text).context("the input is not valid JSON")?;
            let sm_name = machine_name.unwrap_or_else(|| {
                definition
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("state-machine")
                    .trim_end_matches(".asl")
                    .to_string()
            });
            let db = if ephemeral {
                None
            } else {
                Some(open_db(&cli.state_dir)?)
            };
            let job = drive::Job::Start {
                machine: Box::new(machine),
                definition: text,
                sm_name,
                input,
                name,
                test_case,
            };
            run_job(job, env, db, &cli.nats)
        }
        Cmd::Resume { execution, env } => {
            let db = open_db(&cli.state_dir)?;
            let job = drive::Job::Resume {
                execution,
                redrive: false,
            };
            run_job(job, env, Some(db), &cli.nats)
        }
        Cmd::Redrive { execution, env } => {
            let db = open_db(&cli.state_dir)?;
            let job = drive::Job::Resume {
                execution,
                redrive: true,
            };
            run_job(job, env, Some(db), &cli.nats)
        }
        Cmd::Worker { concurrency, env } => {
            let Some(nats) = cli.nats.options()? else {
                bail!("shoal worker needs --nats URL (or SHOAL_NATS)");
            };
            let opts = drive_options(&env, None)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let runtime = drive::build(opts).await?.runtime;
                shoal_fleet::serve_worker(
                    runtime,
                    &nats,
                    shoal_fleet::WorkerOptions { concurrency },
                )
                .await?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Cmd::Workers { json } => {
            let Some(nats) = cli.nats.options()? else {
                bail!("shoal workers needs --nats URL (or SHOAL_NATS)");
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let all = rt.block_on(shoal_fleet::workers(&nats))?;
            let now = chrono::Utc::now().timestamp_millis();
            if json {
                println!("{}", serde_json::to_value(&all)?);
            } else {
                println!(
                    "{:<28} {:>7} {:>7} {:>9} {:>10}  FUNCTIONS",
                    "WORKER", "RUNNING", "SLOTS", "DONE", "HEARTBEAT"
                );
                for w in &all {
                    println!(
                        "{:<28} {:>7} {:>7} {:>9} {:>8.1}s  {}",
                        w.id,
                        w.running,
                        w.concurrency,
                        w.done,
                        (now - w.heartbeat_ms) as f64 / 1000.0,
                        w.functions.join(",")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Test {
            suites,
            junit,
            coverage,
            filter,
            config,
        } => test_suites(&suites, junit, coverage, filter, config),
        Cmd::Serve { listen, token, env } => {
            let addr: std::net::SocketAddr = listen
                .parse()
                .with_context(|| format!("--listen takes ADDR:PORT, got {listen:?}"))?;
            if !addr.ip().is_loopback() && token.as_deref().is_none_or(str::is_empty) {
                bail!("listening on {addr}, beyond loopback, needs --token (or SHOAL_TOKEN)");
            }
            let db = open_db(&cli.state_dir)?;
            let mut opts = drive_options(&env, Some(db.clone()))?;
            opts.fleet = cli.nats.fleet()?;
            let mocks = opts.mocks.clone();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let drive::Built { runtime, fleet } = drive::build(opts).await?;
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                // Functions reach their siblings through this server's Lambda Invoke API.
                let here = listener.local_addr()?;
                runtime
                    .tasks()
                    .functions()
                    .add_env("AWS_ENDPOINT_URL_LAMBDA", &format!("http://{here}"));
                let server = shoal_server::Server::new(shoal_server::Options {
                    runtime,
                    fleet,
                    db,
                    token,
                    mocks,
                });
                let resumed = server.resume_running()?;
                eprintln!(
                    "shoal: serving the Step Functions API and the dashboard on http://{}/ ({resumed} running executions resumed)",
                    listener.local_addr()?
                );
                server.serve(listener).await;
                Ok(ExitCode::SUCCESS)
            })
        }
        Cmd::Task { answer } => {
            let (endpoint, op, body) = match answer {
                TaskAnswer::Success {
                    token,
                    output,
                    endpoint,
                } => (
                    endpoint,
                    "SendTaskSuccess",
                    json!({"TaskToken": token, "Output": output}),
                ),
                TaskAnswer::Failure {
                    token,
                    error,
                    cause,
                    endpoint,
                } => (
                    endpoint,
                    "SendTaskFailure",
                    json!({"TaskToken": token, "Error": error, "Cause": cause}),
                ),
                TaskAnswer::Heartbeat { token, endpoint } => {
                    (endpoint, "SendTaskHeartbeat", json!({"TaskToken": token}))
                }
            };
            // The Step Functions API through the same client the aws-sdk integration uses.
            let client = shoal_aws::Client::new([("sfn".to_string(), endpoint.clone())].into());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            match rt.block_on(client.call("sfn", op, &body, None)) {
                Ok(_) => Ok(ExitCode::SUCCESS),
                Err(shoal_aws::CallError::Service(e)) => {
                    eprintln!("shoal: {op}: {}: {}", e.code, e.message);
                    Ok(ExitCode::FAILURE)
                }
                Err(e) => bail!("{op} to {endpoint}: {e}"),
            }
        }
        Cmd::Executions { json } => {
            let db = open_db(&cli.state_dir)?;
            let all = db.executions()?;
            if json {
                let v: Vec<Value> = all.iter().map(shoal_server::describe_execution).collect();
                println!("{}", Value::Array(v));
            } else {
                println!(
                    "{:<10} {:<24} {:<40} EXECUTION",
                    "STATUS", "STARTED", "NAME"
                );
                for e in &all {
                    println!(
                        "{:<10} {:<24} {:<40} {}",
                        e.status,
                        shoal_engine::iso_time(e.start_ms),
                        e.name,
                        e.arn
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Describe { execution, json } => {
            let db = open_db(&cli.state_dir)?;
            let e = db.execution(&execution)?;
            let mut d = shoal_server::describe_execution(&e);
            let runs = db.map_runs(&e.arn)?;
            if json {
                // AWS's DescribeExecution, plus DescribeMapRun's counters of its map runs.
                let runs: Vec<Value> = runs
                    .iter()
                    .map(|r| {
                        json!({
                            "mapRunArn": r.arn, "stateName": r.state, "status": r.status,
                            "itemCounts": serde_json::from_str::<Value>(&r.item_counts).unwrap_or_default(),
                            "executionCounts": serde_json::from_str::<Value>(&r.execution_counts).unwrap_or_default(),
                        })
                    })
                    .collect();
                d["mapRuns"] = Value::Array(runs);
                println!("{d}");
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(m) = d.as_object_mut() {
                m.remove("input");
                m.remove("output");
            }
            for (k, v) in d.as_object().into_iter().flatten() {
                let v = match (k.as_str(), v) {
                    ("startDate" | "stopDate" | "redriveDate", Value::Number(n)) => {
                        shoal_engine::iso_time((n.as_f64().unwrap_or(0.0) * 1000.0) as i64)
                    }
                    (_, Value::String(s)) => s.clone(),
                    (_, v) => v.to_string(),
                };
                println!("{k:<16} {v}");
            }
            println!("{:<16} {}", "history", db.history(&e.arn)?.len());
            for r in runs {
                println!("mapRun {} ({}) {}", r.state, r.status, r.arn);
                println!("  items      {}", r.item_counts);
                println!("  executions {}", r.execution_counts);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn open_db(dir: &Option<PathBuf>) -> Result<std::sync::Arc<dyn shoal_store::Store>> {
    let dir = match dir {
        Some(d) => d.clone(),
        None => match std::env::var_os("HOME") {
            Some(h) => PathBuf::from(h).join(".shoal"),
            None => bail!("no --state-dir given and HOME is not set"),
        },
    };
    Ok(shoal_store::Db::open(&dir)?)
}

/// The builtins of this build: `identity` and `noop`, and `resize` with
/// `--features resize`.
fn builtins() -> shoal_tasks::Builtins {
    #[allow(unused_mut)]
    let mut b = shoal_tasks::builtin::standard();
    #[cfg(feature = "resize")]
    b.insert(
        "resize".into(),
        std::sync::Arc::new(resize::Resize::default()),
    );
    b
}

fn drive_options(
    env: &Env,
    db: Option<std::sync::Arc<dyn shoal_store::Store>>,
) -> Result<drive::Options> {
    let config = env.config.clone().or_else(|| {
        let p = PathBuf::from("shoal.toml");
        p.exists().then_some(p)
    });
    let functions = match &config {
        Some(p) => shoal_tasks::Functions::load(p, &builtins())?,
        None => Default::default(),
    };
    Ok(drive::Options {
        db,
        buckets: env.buckets.clone(),
        s3_endpoint: env.s3_endpoint.clone(),
        functions,
        fast_forward: env.fast_forward,
        mocks: env
            .mock_config
            .as_ref()
            .map(shoal_tasks::mock::MockFile::open)
            .transpose()?
            .map(std::sync::Arc::new),
        fleet: None,
    })
}

fn test_suites(
    files: &[PathBuf],
    junit: Option<PathBuf>,
    coverage: Option<PathBuf>,
    filter: Option<String>,
    config: Option<PathBuf>,
) -> Result<ExitCode> {
    let mut suites = Vec::new();
    for f in files {
        suites.push(shoal_testing::Suite::load(f)?);
    }
    let env = Env {
        json: false,
        history: false,
        buckets: None,
        s3_endpoint: None,
        config,
        fast_forward: false,
        mock_config: None,
    };
    let opts = drive_options(&env, None)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = std::time::Instant::now();
    let results = rt.block_on(async {
        let runtime = drive::build(opts).await?.runtime;
        let runs = suites
            .iter()
            .map(|s| shoal_testing::run_suite(&runtime, s, filter.as_deref()));
        anyhow::Ok(futures::future::join_all(runs).await)
    })?;
    let (mut passed, mut failed) = (0, 0);
    for r in &results {
        for c in &r.cases {
            let ms = c.seconds * 1000.0;
            if c.differences.is_empty() {
                passed += 1;
                println!("PASS  {} › {} ({ms:.1} ms)", r.file, c.name);
            } else {
                failed += 1;
                println!("FAIL  {} › {} ({ms:.1} ms)", r.file, c.name);
                for d in &c.differences {
                    println!("      {d}");
                }
            }
        }
    }
    println!(
        "{passed} passed, {failed} failed, in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = junit {
        std::fs::write(&path, shoal_testing::junit::render(&results))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = coverage {
        let reports = shoal_testing::coverage(&suites, &results);
        for r in &reports {
            println!("{}", r.summary());
        }
        let v = json!({"stateMachines": reports.iter().map(|r| r.json()).collect::<Vec<_>>()});
        std::fs::write(&path, serde_json::to_string_pretty(&v)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_job(
    job: drive::Job,
    env: Env,
    db: Option<std::sync::Arc<dyn shoal_store::Store>>,
    nats: &NatsArgs,
) -> Result<ExitCode> {
    // The history lives in the store: an ephemeral run keeps it in memory.
    let db = match db {
        None if env.history => Some(std::sync::Arc::new(shoal_store::Memory::new())
            as std::sync::Arc<dyn shoal_store::Store>),
        db => db,
    };
    let mut opts = drive_options(&env, db.clone())?;
    opts.fleet = nats.fleet()?;
    let ran = drive::run(job, opts)?;
    let history = match &db {
        Some(db) if env.history => {
            db.flush()?;
            Some(shoal_server::history_events(
                &db.history(&ran.execution)?,
                true,
            ))
        }
        _ => None,
    };
    Ok(print_outcome(ran.outcome, env.json, history))
}

fn print_outcome(
    outcome: shoal_engine::Outcome,
    json: bool,
    history: Option<Vec<Value>>,
) -> ExitCode {
    let with_history = |mut v: Value| {
        if let Some(h) = &history {
            v["history"] = Value::Array(h.clone());
        }
        v
    };
    match outcome {
        shoal_engine::Outcome::Succeeded(v) => {
            if json {
                println!(
                    "{}",
                    with_history(json!({"status": "SUCCEEDED", "output": v}))
                );
            } else {
                println!("{v}");
            }
            ExitCode::SUCCESS
        }
        shoal_engine::Outcome::Failed(f) => {
            if json {
                println!(
                    "{}",
                    with_history(json!({"status": "FAILED", "error": f.error, "cause": f.cause}))
                );
            } else {
                eprintln!(
                    "execution failed: {}: {}",
                    f.error,
                    f.cause.as_deref().unwrap_or("")
                );
            }
            ExitCode::from(1)
        }
    }
}
