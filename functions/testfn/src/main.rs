//! A Lambda function for shoal's tests, built on the real `lambda_runtime` crate, as any
//! AWS user would write it. The event's `op` says what to do: `echo` (the default)
//! returns the event, `fail` returns a `Custom.Failure` error, `sleep` waits `ms`
//! milliseconds, `crash` exits the process mid-invocation,
//! `kill_parent` kills the shoal process that runs it (a worker crash), `flaky` fails while the file
//! `path` exists. With `log`, each call
//! appends a line to that file, so tests can count calls; `print` writes its text to
//! the function's log (stdout). With `spans`, each call that returns appends
//! `START_NS END_NS` (Unix nanoseconds) to that file, so tests can count how many calls
//! overlapped.

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;
use std::io::Write;

fn unix_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    let start = unix_ns();
    let spans = event
        .payload
        .get("spans")
        .and_then(Value::as_str)
        .map(str::to_string);
    let r = run(event).await;
    if let Some(path) = spans {
        // One short append: lines from concurrent processes never interleave.
        let line = format!("{start} {}\n", unix_ns());
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
    r
}

async fn run(event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    let (payload, ctx) = event.into_parts();
    if let Some(path) = payload.get("log").and_then(Value::as_str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Diagnostic {
                error_type: "Log.Failure".into(),
                error_message: e.to_string(),
            })?;
        let _ = writeln!(f, "{}", ctx.request_id);
    }
    if let Some(text) = payload.get("print").and_then(Value::as_str) {
        println!("{text}");
    }
    match payload.get("op").and_then(Value::as_str).unwrap_or("echo") {
        "fail" => Err(Diagnostic {
            error_type: "Custom.Failure".into(),
            error_message: "the handler failed on purpose".into(),
        }),
        "sleep" => {
            let ms = payload.get("ms").and_then(Value::as_u64).unwrap_or(1000);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            Ok(payload)
        }
        "crash" => std::process::exit(3),
        // Takes the whole machine down: the shoal process that started this one.
        "kill_parent" => {
            let parent = std::os::unix::process::parent_id().to_string();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &parent])
                .status();
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            Ok(payload)
        }
        "flaky" => match payload.get("path").and_then(Value::as_str) {
            Some(p) if std::path::Path::new(p).exists() => Err(Diagnostic {
                error_type: "Custom.Flaky".into(),
                error_message: format!("{p} exists"),
            }),
            _ => Ok(payload),
        },
        _ => Ok(payload),
    }
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One invocation at a time needs no thread pool: with `#[tokio::main]`'s worker threads
// each invocation hopped between threads, and a no-op ran at two thirds the rate.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(handler)).await
}
