//! The AWS-recorded API corpus (`corpus/api-cases`), one test per case: each test hands
//! its one case file to the corpus's own runner, `run_api_cases.py`, which starts a fresh
//! `shoal serve` and replays the case's requests against AWS's recorded responses.
//!
//! Cases that still fail are listed in `corpus/api-cases/KNOWN-FAILURES.md` with the
//! reason; such a case passes the test while it fails, and fails the test once it
//! passes, so that the list only shrinks.

mod common;

use common::{against_known, python3, sh_quote, Failure};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../corpus/api-cases");

fn runner() -> PathBuf {
    Path::new(CASES).join("run_api_cases.py")
}

fn serve(shoal: &str) -> String {
    format!("{shoal} serve --listen 127.0.0.1:{{port}} --state-dir {{state}}")
}

/// `KNOWN-FAILURES.md`, read once.
fn known_failures() -> &'static BTreeMap<String, String> {
    static KNOWN: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    KNOWN.get_or_init(|| common::known_failures(&Path::new(CASES).join("KNOWN-FAILURES.md")))
}

fn case(path: &Path) -> datatest_stable::Result<()> {
    let rel = path.strip_prefix(CASES)?.with_extension("");
    let name = rel.to_string_lossy().replace('\\', "/");
    // The runner's temporary state folders go in this test's own directory.
    let work = tempfile::tempdir()?;
    let out = Command::new(python3())
        .arg(runner())
        .arg("--serve")
        .arg(serve(&sh_quote(env!("CARGO_BIN_EXE_shoal"))))
        .arg(path)
        .env("TMPDIR", work.path())
        .output()
        .map_err(|e| Failure(format!("cannot run python3 {}: {e}", runner().display())))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Exit 0 alone would also pass a file the runner did not take for a case.
    let passed = out.status.success() && stdout.contains("api-conformance: 1 passed, 0 failed");
    let known = known_failures().get(&name);
    Ok(against_known(
        &name,
        passed,
        known,
        "corpus/api-cases/KNOWN-FAILURES.md",
        || {
            format!(
            "{name} (runner {}):\n{}{}\nby hand, from the repository root (with target/release/shoal built):\n  \
             python3 corpus/api-cases/run_api_cases.py --serve {} corpus/api-cases/{name}.json --verbose",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr),
            sh_quote(&serve("target/release/shoal")),
        )
        },
    )?)
}

datatest_stable::harness! {
    { test = case, root = CASES, pattern = r"^(activities|aliasing|api|execution_api|express|logging|tagging|test_state|test_state_mock|test_state_field_validation|validation|variable_references|versioning)/[^/]+\.json$" },
}
