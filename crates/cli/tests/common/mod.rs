//! Helpers shared by the binary's integration tests.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `--json` result a finished `shoal` printed, or a panic that shows what it said.
pub fn json_output(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// A `shoal serve` on a free loopback port; killed when dropped.
pub struct Serve {
    pub child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
}

impl Serve {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `shoal serve` in `dir` with its state in `dir/state` and buckets in
/// `dir/buckets`, plus `extra` arguments; returns once it listens.
pub fn serve(dir: &Path, extra: &[&str]) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .current_dir(dir)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            "state",
            "--buckets",
            "buckets",
        ])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // The line that says where it listens; others (fleet mode) may come first.
    let mut said = Vec::new();
    let addr = loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            panic!("shoal serve ended without listening: {said:?}");
        };
        if let Some(a) = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
        {
            break a.to_string();
        }
        said.push(line);
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Serve { child, addr }
}

/// A job in a temporary folder: items in `buckets/in/items.jsonl`, a definition in
/// `def.json`, the test function registered as `testfn`, state in `state`.
pub fn testfn() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_shoal"))
        .parent()
        .unwrap()
        .join("shoal-testfn");
    assert!(
        p.exists(),
        "{} is missing: cargo build --release -p shoal-testfn (scripts/test.sh does)",
        p.display()
    );
    p
}

pub struct Setup {
    pub dir: tempfile::TempDir,
}

impl Setup {
    pub fn new(items: impl Iterator<Item = Value>, definition: Value, concurrency: usize) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for b in ["buckets/in", "buckets/out", "state"] {
            std::fs::create_dir_all(d.join(b)).unwrap();
        }
        let lines: Vec<String> = items.map(|v| v.to_string()).collect();
        std::fs::write(d.join("buckets/in/items.jsonl"), lines.join("\n")).unwrap();
        std::fs::write(d.join("def.json"), definition.to_string()).unwrap();
        std::fs::write(
            d.join("shoal.toml"),
            format!(
                "[functions.testfn]\ncommand = [{:?}]\nconcurrency = {concurrency}\n",
                testfn().display().to_string()
            ),
        )
        .unwrap();
        Setup { dir }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Every item `{"id": 0..n}` in the SUCCEEDED results exactly once, nothing failed.
    pub fn exactly_once(&self, out: &Value, n: u64) {
        assert_eq!(out["status"], "SUCCEEDED", "{out}");
        let key = out["output"]["ResultWriterDetails"]["Key"]
            .as_str()
            .unwrap();
        let (manifest, lines) = self.results(key);
        assert!(manifest["ResultFiles"]["FAILED"]
            .as_array()
            .unwrap()
            .is_empty());
        let mut seen = std::collections::HashSet::new();
        for (status, item) in &lines {
            assert_eq!(status, "SUCCEEDED");
            let id = item["id"].as_u64().unwrap();
            assert!(seen.insert(id), "item {id} written twice");
        }
        assert_eq!(seen.len() as u64, n, "every item written once");
        assert!(seen.iter().all(|i| *i < n));
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_shoal"));
        c.current_dir(self.dir.path())
            .args(args)
            .args(["--state-dir", "state", "--json"]);
        c
    }

    pub fn env_args(&self) -> [&'static str; 4] {
        ["--buckets", "buckets", "--config", "shoal.toml"]
    }

    pub fn run(&self, args: &[&str]) -> (Value, Output) {
        let o = self.command(args).args(self.env_args()).output().unwrap();
        (json_output(&o), o)
    }

    /// Starts shoal in its own process group and kills the whole group (shoal and its
    /// function processes) with SIGKILL after `after`, as a machine crash would.
    pub fn kill_after(&self, args: &[&str], after: Duration) {
        let mut child = self
            .command(args)
            .args(self.env_args())
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while start.elapsed() < after {
            if child.try_wait().unwrap().is_some() {
                panic!("shoal ended before it was killed at {after:?}: make the job longer");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let pgid = child.id().to_string();
        let killed = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status()
            .unwrap();
        assert!(killed.success());
        child.wait().unwrap();
    }

    pub fn calls(&self) -> usize {
        std::fs::read_to_string(self.path("calls.log"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    pub fn describe(&self, name: &str) -> Value {
        let o = self.command(&["describe", name]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// The ResultWriter output the manifest names, as (status, lines).
    pub fn results(&self, manifest_key: &str) -> (Value, Vec<(String, Value)>) {
        let out = self.path("buckets/out");
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(out.join(manifest_key)).unwrap()).unwrap();
        let mut lines = Vec::new();
        for status in ["SUCCEEDED", "FAILED", "PENDING"] {
            for f in manifest["ResultFiles"][status].as_array().unwrap() {
                let text = std::fs::read_to_string(out.join(f["Key"].as_str().unwrap())).unwrap();
                for l in text.lines() {
                    lines.push((status.to_string(), serde_json::from_str(l).unwrap()));
                }
            }
        }
        (manifest, lines)
    }
}

pub fn task(payload: Value, next: &str) -> Value {
    let mut t = json!({
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "testfn", "Payload": payload},
        "OutputPath": "$.Payload.Items",
    });
    if next.is_empty() {
        t["End"] = json!(true);
    } else {
        t["Next"] = json!(next);
    }
    t
}

pub fn map(processor: Value, extra: Value) -> Value {
    let mut m = json!({
        "Type": "Map",
        "ItemReader": {
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "JSONL"},
            "Parameters": {"Bucket": "in", "Key": "items.jsonl"}
        },
        "ItemProcessor": processor,
        "ResultWriter": {
            "Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": "out", "Prefix": "results"},
            "WriterConfig": {"OutputType": "JSONL", "Transformation": "FLATTEN"}
        },
        "End": true
    });
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    json!({"StartAt": "Map", "States": {"Map": m}})
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// A corpus test's failure, shown as written: datatest-stable prints errors with `{:?}`,
/// which would quote a `String` and escape its newlines.
pub struct Failure(pub String);

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

/// A word for `sh`: the corpus runners substitute into commands they run in a shell.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `python3` resolved once to the interpreter itself: a version manager's shim (pyenv's
/// is a bash script) doubled each case's start-up time.
pub fn python3() -> &'static str {
    static PYTHON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
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

/// The interpreter of the venv scripts/test.sh makes in `target/lambda-venv` (or
/// `SHOAL_TEST_PYTHON`), if it can `import` what the caller needs; else why not.
pub fn venv_python(imports: &str, hint: &str) -> Result<String, String> {
    let python = std::env::var("SHOAL_TEST_PYTHON").unwrap_or_else(|_| {
        Path::new(env!("CARGO_BIN_EXE_shoal"))
            .parent()
            .unwrap()
            .join("../lambda-venv/bin/python")
            .to_string_lossy()
            .into_owned()
    });
    let ok = Command::new(&python)
        .args(["-c", &format!("import {imports}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Ok(python)
    } else {
        Err(format!("{python} cannot import {imports}: {hint}"))
    }
}

/// A corpus's `KNOWN-FAILURES.md`: lines ``- `<case>`: reason``, by case.
pub fn known_failures(list: &Path) -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(list).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (name, reason) = line.strip_prefix("- `")?.split_once('`')?;
            Some((
                name.to_string(),
                reason.trim_start_matches(':').trim().to_string(),
            ))
        })
        .collect()
}

/// A case's result against its corpus's list of known failures: a listed case must
/// fail, so that the list only shrinks; an unlisted one must pass.
pub fn against_known(
    name: &str,
    passed: bool,
    known: Option<&String>,
    list: &str,
    report: impl FnOnce() -> String,
) -> Result<(), Failure> {
    match (passed, known) {
        (true, None) | (false, Some(_)) => Ok(()),
        (true, Some(reason)) => Err(Failure(format!(
            "{name} now passes, but {list} lists it as failing ({reason}): remove it from the list"
        ))),
        (false, None) => Err(Failure(report())),
    }
}

/// A child process killed when dropped: a server a test started.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port on 127.0.0.1 that nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Waits up to 30 s for something to listen on `port`.
pub fn wait_for_port(port: u16, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{what} did not listen on port {port}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// `shoal.toml` text registering the test function as `testfn`, plus `extra` lines.
pub fn testfn_registry(extra: &str) -> String {
    format!(
        "[functions.testfn]\ncommand = [{:?}]\n{extra}",
        testfn().display().to_string()
    )
}
