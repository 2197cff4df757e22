//! The `shoal` binary. Data goes to stdout; progress and logs go to stderr.

mod drive;

// Map runs allocate many small JSON values across threads; glibc malloc is the bottleneck there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
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
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check a definition; print every problem as `<JSON pointer>: <message>`.
    Validate {
        definition: PathBuf,
        /// Print the result as AWS's ValidateStateMachineDefinition JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run one execution to completion, in-process.
    Run {
        definition: PathBuf,
        /// The input: JSON text, or @FILE.
        #[arg(long, default_value = "{}")]
        input: String,
        /// Print `{"status":..., "output"|"error","cause"}` instead of the bare output.
        #[arg(long)]
        json: bool,
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
        /// Name of the execution (default: a UUID).
        #[arg(long)]
        name: Option<String>,
        /// Replace `${K}` in the definition with V (DefinitionSubstitutions).
        #[arg(long = "substitute", value_name = "K=V")]
        substitute: Vec<String>,
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
    let mut text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read definition {}", path.display()))?;
    for s in subs {
        let Some((k, v)) = s.split_once('=') else {
            bail!("--substitute takes K=V, got {s:?}")
        };
        text = text.replace(&format!("${{{k}}}"), v);
    }
    Ok(text)
}

fn real_main(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Validate { definition, json } => {
            let parsed = shoal_asl::parse(&read_definition(&definition, &[])?);
            if json {
                let diags: Vec<Value> = parsed
                    .diagnostics
                    .iter()
                    .map(|d| json!({"severity": "ERROR", "code": d.code, "message": d.message, "location": d.pointer}))
                    .collect();
                let result = if parsed.is_valid() { "OK" } else { "FAIL" };
                println!(
                    "{}",
                    json!({"result": result, "diagnostics": diags, "truncated": false})
                );
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
            json,
            buckets,
            s3_endpoint,
            config,
            fast_forward,
            name,
            substitute,
        } => {
            let parsed = shoal_asl::parse(&read_definition(&definition, &substitute)?);
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
            let sm_name = definition
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("state-machine")
                .trim_end_matches(".asl")
                .to_string();
            let config = config.or_else(|| {
                let p = PathBuf::from("shoal.toml");
                p.exists().then_some(p)
            });
            let functions = match &config {
                Some(p) => shoal_connectors::functions::Functions::load(p)?,
                None => Default::default(),
            };
            let opts = drive::Options {
                buckets,
                s3_endpoint,
                functions,
                fast_forward,
                name,
            };
            let outcome = drive::run(machine, &sm_name, input, opts)?;
            Ok(print_outcome(outcome, json))
        }
    }
}

fn print_outcome(outcome: shoal_engine::Outcome, json: bool) -> ExitCode {
    match outcome {
        shoal_engine::Outcome::Succeeded(v) => {
            if json {
                println!("{}", json!({"status": "SUCCEEDED", "output": v}));
            } else {
                println!("{v}");
            }
            ExitCode::SUCCESS
        }
        shoal_engine::Outcome::Failed(f) => {
            if json {
                println!(
                    "{}",
                    json!({"status": "FAILED", "error": f.error, "cause": f.cause})
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
