"""Soak of `shoal serve`: CLIENTS client threads, for SECONDS, each start an execution of
one of four machines, poll DescribeExecution until it ends and start the next. The
machines end SUCCEEDED (Pass, Parallel, inline Map, Wait 1), FAILED (a Fail state),
TIMED_OUT (TimeoutSeconds 1 on a Wait 5) and ABORTED (a Wait 30 that the client stops
with StopExecution). shoal's RSS is sampled every 10 s from /proc/PID/status and its
open descriptors counted in /proc/PID/fd before the load and after it.

An error is an API call that fails or an execution that ends in another status than
its machine's. Not part of the CI suite: it runs for minutes.

    python3 bench/soak.py [SECONDS] [CLIENTS] [--shoal PATH]   (needs a release build)

Prints a JSON summary on the last line; exits 1 on an error, an fd leak or an RSS
drift beyond 10 % after the warm-up (the first 2 minutes, or a fifth of a shorter run).
"""
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

args = [a for a in sys.argv[1:] if not a.startswith("--")]
seconds = float(args[0]) if len(args) > 0 else 600
clients = int(args[1]) if len(args) > 1 else 200
shoal = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "shoal")
if "--shoal" in sys.argv:
    shoal = sys.argv[sys.argv.index("--shoal") + 1]
    args = [a for a in args if a != shoal]
warmup = min(120.0, seconds / 5)

state = tempfile.mkdtemp(prefix="shoal-soak-")
proc = subprocess.Popen([shoal, "serve", "--listen", "127.0.0.1:0", "--state-dir", state],
                        stderr=subprocess.PIPE, text=True)
line = proc.stderr.readline()
host, port = line.split("http://")[1].split("/")[0].split(":")
threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()

local = threading.local()


def call(op, body):
    """One API call: (status, body). Odd-numbered clients keep their connection alive, as
    SDKs do; even ones open one per call, as each `aws` CLI command does."""
    if getattr(local, "conn", None) is not None and getattr(local, "fresh", False):
        local.conn.close()
        local.conn = None
    if getattr(local, "conn", None) is None:
        local.conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        local.conn.request("POST", "/", json.dumps(body),
                           {"X-Amz-Target": f"AWSStepFunctions.{op}",
                            "Content-Type": "application/x-amz-json-1.0"})
        r = local.conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    except Exception as e:  # noqa: BLE001 - every failure is counted, none hidden
        local.conn.close()
        local.conn = None
        return 0, {"exception": repr(e)}


def rss_kib():
    with open(f"/proc/{proc.pid}/status") as f:
        for l in f:
            if l.startswith("VmRSS:"):
                return int(l.split()[1])
    return 0


def fds():
    return len(os.listdir(f"/proc/{proc.pid}/fd"))


machines = {
    "SUCCEEDED": {"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "Next": "M", "Branches": [
            {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": 1, "End": True}}},
            {"StartAt": "B", "States": {"B": {"Type": "Pass", "Result": 2, "End": True}}}]},
        "M": {"Type": "Map", "ItemsPath": "$", "Next": "W", "ItemProcessor": {
            "StartAt": "I", "States": {"I": {"Type": "Pass", "End": True}}}},
        "W": {"Type": "Wait", "Seconds": 1, "Next": "S"},
        "S": {"Type": "Succeed"}}},
    "FAILED": {"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Next": "F"},
        "F": {"Type": "Fail", "Error": "Soak.Expected", "Cause": "on purpose"}}},
    "TIMED_OUT": {"TimeoutSeconds": 1, "StartAt": "W", "States": {
        "W": {"Type": "Wait", "Seconds": 5, "End": True}}},
    "ABORTED": {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 30, "End": True}}},
}
arns = {}
for want, definition in machines.items():
    s, out = call("CreateStateMachine", {"name": f"soak-{want.lower()}", "definition": json.dumps(definition),
                                         "roleArn": "arn:aws:iam::123456789012:role/soak"})
    assert s == 200, out
    arns[want] = out["stateMachineArn"]
local.conn.close()
local.conn = None
time.sleep(0.5)
fds_before = fds()

lock = threading.Lock()
ended = {k: 0 for k in machines}
calls = {"StartExecution": 0, "DescribeExecution": 0, "StopExecution": 0}
errors = []
deadline = time.time() + seconds
kinds = list(machines)


def error(what):
    with lock:
        errors.append(what)
        if len(errors) <= 20:
            print("error:", json.dumps(what)[:400], file=sys.stderr, flush=True)


def client(i):
    local.fresh = i % 2 == 0
    n = 0
    while time.time() < deadline:
        n += 1
        want = kinds[(i + n) % len(kinds)]
        s, out = call("StartExecution", {"stateMachineArn": arns[want], "name": f"c{i}-{n}", "input": "[1,2,3]"})
        with lock:
            calls["StartExecution"] += 1
        if s != 200:
            error({"op": "StartExecution", "status": s, "body": out})
            continue
        arn = out["executionArn"]
        if want == "ABORTED":
            time.sleep(0.3)
            s, out = call("StopExecution", {"executionArn": arn, "error": "Soak.Stop", "cause": "stopped"})
            with lock:
                calls["StopExecution"] += 1
            if s != 200:
                error({"op": "StopExecution", "status": s, "body": out})
        while True:
            time.sleep(0.25)
            s, d = call("DescribeExecution", {"executionArn": arn})
            with lock:
                calls["DescribeExecution"] += 1
            if s != 200:
                error({"op": "DescribeExecution", "status": s, "body": d})
                break
            if d["status"] == "RUNNING":
                continue
            if d["status"] == want:
                with lock:
                    ended[want] += 1
            else:
                error({"op": "end", "want": want, "got": d["status"], "arn": arn})
            break
    if getattr(local, "conn", None) is not None:
        local.conn.close()


samples = []  # (seconds since start, RSS KiB)
t0 = time.time()
threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
for t in threads:
    t.start()
while any(t.is_alive() for t in threads):
    samples.append((round(time.time() - t0), rss_kib()))
    print(f"t={samples[-1][0]:>4} s  RSS {samples[-1][1] / 1024:.1f} MiB  fds {fds()}  "
          f"ended {sum(ended.values())}  errors {len(errors)}", file=sys.stderr, flush=True)
    next_sample = t0 + 10 * (len(samples))
    while time.time() < next_sample and any(t.is_alive() for t in threads):
        time.sleep(0.2)
elapsed = time.time() - t0
samples.append((round(elapsed), rss_kib()))
# The last client's connection closes as its thread ends; let shoal see the FINs.
for _ in range(50):
    if fds() <= fds_before:
        break
    time.sleep(0.1)
fds_after = fds()
proc.kill()

warm = [r for t, r in samples if t >= warmup]
first = warm[0] if warm else 0
summary = {
    "seconds": round(elapsed), "clients": clients, "ended": ended, "calls": calls, "errors": len(errors),
    "rss_mib_after_warmup": {"first": round(first / 1024, 1), "min": round(min(warm) / 1024, 1),
                             "max": round(max(warm) / 1024, 1), "last": round(warm[-1] / 1024, 1)} if warm else None,
    "rss_drift_pct": round((max(warm) - min(warm)) * 100 / min(warm), 1) if warm else None,
    "rss_last_vs_first_pct": round((warm[-1] - first) * 100 / first, 1) if warm else None,
    "fds_before": fds_before, "fds_after": fds_after,
    "rss_samples_mib": [(t, round(r / 1024, 1)) for t, r in samples],
}
print(json.dumps(summary))
ok = not errors and fds_before == fds_after and warm and summary["rss_drift_pct"] <= 10
sys.exit(0 if ok else 1)
