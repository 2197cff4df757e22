//! The AWS-recorded API corpus (`corpus/api-cases`), one test per case: each test hands
//! its one case file to the corpus's own runner, `run_api_cases.py`, which starts a fresh
//! `shoal serve` and replays the case's requests against AWS's recorded responses.
//!
//! Cases that still fail are listed in `corpus/api-cases/KNOWN-FAILURES.md` with the
//! reason; such a case passes the test while it fails, and fails the test once it
//! passes, so that the list only shrinks. `activities`, `test_state_mock` and
//! `test_state_field_validation` belong to other work and are not run here.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../corpus/api-cases");

fn runner() -> PathBuf {
    Path::new(CASES).join("run_api_cases.py")
}

/// A test failure, shown as written (datatest-stable prints errors with `{:?}`).
struct Failure(String);

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

/// A word for `sh`: the runner splits the serve command with `shlex`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn serve(shoal: &str) -> String {
    format!("{shoal} serve --listen 127.0.0.1:{{port}} --state-dir {{state}}")
}

/// `python3` resolved once to the interpreter itself (a pyenv shim is a bash script).
fn python3() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "python3".to_string())
    })
}

/// `KNOWN-FAILURES.md`: lines "- `category/name`: reason", read once.
fn known_failures() -> &'static HashMap<String, String> {
    static KNOWN: OnceLock<HashMap<String, String>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let text = std::fs::read_to_string(Path::new(CASES).join("KNOWN-FAILURES.md"))
            .expect("corpus/api-cases/KNOWN-FAILURES.md");
        text.lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("- `")?;
                let (name, reason) = rest.split_once('`')?;
                let reason = reason.trim_start_matches(':').trim();
                Some((name.to_string(), reason.to_string()))
            })
            .collect()
    })
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
    match (passed, known_failures().get(&name)) {
        (true, None) => Ok(()),
        (false, Some(_)) => Ok(()),
        (true, Some(reason)) => Err(Failure(format!(
            "{name} now passes, but corpus/api-cases/KNOWN-FAILURES.md lists it as failing \
             ({reason}): remove it from the list"
        ))
        .into()),
        (false, None) => Err(Failure(format!(
            "{name} (runner {}):\n{}{}\nby hand, from the repository root (with target/release/shoal built):\n  \
             python3 corpus/api-cases/run_api_cases.py --serve {} corpus/api-cases/{name}.json --verbose",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr),
            sh_quote(&serve("target/release/shoal")),
        ))
        .into()),
    }
}

datatest_stable::harness! {
    { test = case, root = CASES, pattern = r"^(aliasing|api|execution_api|express|logging|tagging|test_state|validation|variable_references|versioning)/[^/]+\.json$" },
}
