//! The AWS-recorded conformance corpus (`corpus/conformance`), one test per case: each
//! test hands its one case file to the corpus's own runner, `run_cases.py`, with the
//! `shoal` binary as the engine, and fails with the runner's report when the result
//! (status, and output or error) differs from what AWS Step Functions recorded.
//!
//! `cases/` needs nothing but `python3`. `lambda-cases/` runs real Python handlers under
//! `awslambdaric`, from the venv that scripts/test.sh makes in `target/lambda-venv`
//! (or the interpreter named by `SHOAL_TEST_PYTHON`); without it those tests fail.
//!
//! The runner also compares the execution history (`--history`, with `shoal run --json
//! --history`) for every case that carries an `expected_history`. A case whose history
//! still differs is listed with the reason in `corpus/conformance/HISTORY-KNOWN-FAILURES.md`;
//! a listed case whose history matches fails its test, so that the list only shrinks.
//! The result (status, output or error) must match for every case, listed or not.
//!
//! `SHOAL_CONFORMANCE_ARGS` adds runner flags, e.g. `--strict-cause`.

mod common;

use common::{against_known, python3, sh_quote, Failure};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const CASES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../corpus/conformance/cases"
);
const LAMBDA_CASES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../corpus/conformance/lambda-cases"
);

const HISTORY_KNOWN: &str = "corpus/conformance/HISTORY-KNOWN-FAILURES.md";

/// `HISTORY-KNOWN-FAILURES.md`, read once; names are `cases/<name>` or `lambda-cases/<name>`.
fn history_known() -> &'static BTreeMap<String, String> {
    static KNOWN: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        common::known_failures(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(HISTORY_KNOWN),
        )
    })
}

fn runner() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus/conformance/run_cases.py")
}

/// The runner's engine command template, `shoal` being the binary as a shell word.
fn engine(shoal: &str, lambda: bool) -> String {
    let config = if lambda { " --config {config}" } else { "" };
    format!(
        "{shoal} run {{definition}} --input @{{input}} --buckets {{buckets}}{config} --json --history"
    )
}

/// The interpreter with awslambdaric for the cases' functions, checked once.
fn lambda_python() -> Result<&'static str, &'static String> {
    static PYTHON: OnceLock<Result<String, String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            common::venv_python(
                "awslambdaric",
                "so the Lambda cases cannot run: scripts/test.sh makes target/lambda-venv \
                 (python3 -m venv target/lambda-venv && target/lambda-venv/bin/pip install awslambdaric), \
                 or set SHOAL_TEST_PYTHON",
            )
        })
        .as_ref()
        .map(String::as_str)
}

/// Run the one case at `path` (under `root`) through `run_cases.py`.
fn check(root: &str, path: &Path, lambda: bool) -> datatest_stable::Result<()> {
    let rel = path.strip_prefix(root)?;
    // The runner takes a folder: give it one holding only this case, at the same relative
    // path so that the case keeps its name. Its temp folders and shoal's state folder go
    // in this test's own directory too.
    let work = tempfile::tempdir()?;
    let cases = work.path().join("cases");
    let copy = cases.join(rel);
    std::fs::create_dir_all(copy.parent().unwrap())?;
    std::fs::copy(path, &copy)?;
    let state = work.path().join("state");
    let tmp = work.path().join("tmp");
    std::fs::create_dir_all(&state)?;
    std::fs::create_dir_all(&tmp)?;

    let engine = engine(&sh_quote(env!("CARGO_BIN_EXE_shoal")), lambda);
    let mut cmd = Command::new(python3());
    cmd.arg(runner());
    if lambda {
        let python = lambda_python().map_err(|e| Failure(e.clone()))?;
        cmd.args(["--python", python]);
    }
    cmd.arg("--history")
        .arg("--engine")
        .arg(&engine)
        .arg(&cases);
    let extra = std::env::var("SHOAL_CONFORMANCE_ARGS").unwrap_or_default();
    cmd.args(extra.split_whitespace());
    cmd.env("SHOAL_STATE_DIR", &state).env("TMPDIR", &tmp);
    let out = cmd
        .output()
        .map_err(|e| Failure(format!("cannot run python3 {}: {e}", runner().display())))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let name = rel.with_extension("");
    // The last line counts results; the one before it, histories (cases that have one).
    let result_ok = stdout
        .lines()
        .any(|l| l.starts_with("conformance: 1 passed, 0 failed"));
    let history_failed = stdout
        .lines()
        .any(|l| l.starts_with("history-conformance:") && !l.ends_with(", 0 failed"));
    let corpus = if lambda { "lambda-cases" } else { "cases" };
    let listed = format!("{corpus}/{}", name.display());
    let report = || {
        format!(
            "{} (runner {}):\n{}{}\nby hand, from the repository root (with target/release/shoal built):\n  \
             python3 corpus/conformance/run_cases.py --history --engine {} {} --filter {} --keep-temp{}",
            rel.display(),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr),
            sh_quote(&self::engine("target/release/shoal", lambda)),
            if lambda {
                "corpus/conformance/lambda-cases --python target/lambda-venv/bin/python"
            } else {
                "corpus/conformance/cases"
            },
            sh_quote(&name.to_string_lossy()),
            if extra.is_empty() { String::new() } else { format!(" {extra}") },
        )
    };
    // Exit 0 alone would also pass a file the runner did not take for a case.
    if !result_ok {
        return Err(Failure(report()).into());
    }
    Ok(against_known(
        &listed,
        !history_failed,
        history_known().get(&listed),
        HISTORY_KNOWN,
        report,
    )?)
}

fn case(path: &Path) -> datatest_stable::Result<()> {
    check(CASES, path, false)
}

fn lambda(path: &Path) -> datatest_stable::Result<()> {
    check(LAMBDA_CASES, path, true)
}

datatest_stable::harness! {
    { test = case, root = CASES, pattern = r"\.json$" },
    { test = lambda, root = LAMBDA_CASES, pattern = r"\.json$" },
}
