//! The AWS-recorded service-integration corpus (`corpus/service-cases`), one test per
//! case: each hands its case to the corpus's own runner, `run_service_cases.py`, which
//! starts moto server on a free port of 127.0.0.1 as the real backend (DynamoDB, SQS,
//! SNS, EventBridge, S3, Secrets Manager, Step Functions), creates the case's
//! resources, runs `shoal run` against it, and compares with what AWS recorded.
//!
//! `corpus/service-cases/KNOWN-FAILURES.md` lists the cases that fail, each with its
//! reason (most: moto answers differently from AWS). A listed case that passes fails
//! its test, so the list only shrinks. Cases under `needs-server/` run in `shoal serve`,
//! where a worker answers their task tokens. Needs `moto[server]` and boto3 in the venv that
//! scripts/test.sh makes in `target/lambda-venv` (or `SHOAL_TEST_PYTHON`).

mod common;

use common::{against_known, sh_quote, Failure};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../corpus/service-cases");

fn engine(shoal: &str) -> String {
    format!("{shoal} run {{definition}} --input @{{input}} --json")
}

/// The interpreter with moto server and boto3, checked once.
fn python() -> Result<&'static str, &'static String> {
    static PYTHON: OnceLock<Result<String, String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            common::venv_python(
                "moto.server, boto3",
                "scripts/test.sh makes target/lambda-venv with them (pip install 'moto[server]' boto3), or set SHOAL_TEST_PYTHON",
            )
        })
        .as_ref()
        .map(String::as_str)
}

/// `KNOWN-FAILURES.md`, read once.
fn known_failures() -> &'static BTreeMap<String, String> {
    static KNOWN: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    KNOWN.get_or_init(|| common::known_failures(&Path::new(CASES).join("KNOWN-FAILURES.md")))
}

/// A child process killed when dropped.
use common::{free_port, Kill as Guard};

fn wait_for(port: u16, what: &str) -> Result<(), Failure> {
    common::wait_for_port(port, what).map_err(Failure)
}

/// A case under `needs-server/`: a worker answers the task token through the Step
/// Functions API, so the execution runs in `shoal serve` (moto behind it), started by
/// the corpus's `sfn_client.py`, as the corpus README describes.
fn served(python: &str, work: &Path) -> Result<(Vec<Guard>, Vec<String>), Failure> {
    let moto_port = free_port();
    let moto = std::process::Command::new(Path::new(python).with_file_name("moto_server"))
        .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| Failure(format!("cannot start moto_server: {e}")))?;
    let moto = Guard(moto);
    wait_for(moto_port, "moto server")?;
    let backend = format!("http://127.0.0.1:{moto_port}");
    let serve_port = free_port();
    let serve = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{serve_port}"),
            "--state-dir",
        ])
        .arg(work.join("serve-state"))
        .env("AWS_ENDPOINT_URL", &backend)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| Failure(format!("cannot start shoal serve: {e}")))?;
    let serve = Guard(serve);
    wait_for(serve_port, "shoal serve")?;
    let endpoint = format!("http://127.0.0.1:{serve_port}");
    let client = Path::new(CASES).join("sfn_client.py");
    let args = vec![
        "--backend".into(),
        backend,
        "--sfn-endpoint".into(),
        endpoint.clone(),
        "--engine".into(),
        format!(
            "{} {} --endpoint {endpoint} {{definition}} {{input}}",
            sh_quote(python),
            sh_quote(&client.to_string_lossy())
        ),
    ];
    Ok((vec![serve, moto], args))
}

fn check(path: &Path) -> datatest_stable::Result<()> {
    let rel = path.strip_prefix(CASES)?;
    let key = rel.to_string_lossy().into_owned();
    let work = tempfile::tempdir()?;
    // The runner takes a folder: give it one holding only this case, at the same path.
    let cases = work.path().join("cases");
    let copy: PathBuf = cases.join(rel);
    std::fs::create_dir_all(copy.parent().unwrap())?;
    std::fs::copy(path, &copy)?;
    let tmp = work.path().join("tmp");
    let state = work.path().join("state");
    std::fs::create_dir_all(&tmp)?;
    std::fs::create_dir_all(&state)?;
    let python = python().map_err(|e| Failure(e.clone()))?;
    let (_servers, args) = if key.starts_with("needs-server/") {
        served(python, work.path())?
    } else {
        (
            Vec::new(),
            vec![
                "--engine".to_string(),
                engine(&sh_quote(env!("CARGO_BIN_EXE_shoal"))),
            ],
        )
    };
    let out = Command::new(python)
        .arg(Path::new(CASES).join("run_service_cases.py"))
        .args(&args)
        .arg(&cases)
        .env("SHOAL_STATE_DIR", &state)
        .env("TMPDIR", &tmp)
        .output()
        .map_err(|e| Failure(format!("cannot run {python}: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let passed = out.status.success() && stdout.contains("service-conformance: 1 passed, 0 failed");
    let known = known_failures().get(&key);
    Ok(against_known(
        &key,
        passed,
        known,
        "corpus/service-cases/KNOWN-FAILURES.md",
        || {
            format!(
            "{key} (runner {}):\n{stdout}{}\nby hand, from the repository root (with target/release/shoal built):\n  \
             target/lambda-venv/bin/python corpus/service-cases/run_service_cases.py --engine {} corpus/service-cases --filter {} -v",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            sh_quote(&engine("target/release/shoal")),
            sh_quote(&format!("/{}", rel.file_name().unwrap().to_string_lossy())),
        )
        },
    )?)
}

datatest_stable::harness! {
    { test = check, root = CASES, pattern = r"^[a-z0-9-]+/.*\.json$" },
}
