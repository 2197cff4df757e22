"""Load on `shoal serve`: CONCURRENCY clients each start an execution, poll
DescribeExecution until it ends, and start the next, for SECONDS; then every started
execution is checked to have SUCCEEDED. Prints request counts, errors and latency
percentiles per operation.

    python3 bench/serve_load.py [SECONDS] [CONCURRENCY]     (needs a release build)
"""
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60
concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 200
shoal = os.path.join(os.path.dirname(__file__), "..", "target", "release", "shoal")
state = tempfile.mkdtemp()
proc = subprocess.Popen([shoal, "serve", "--listen", "127.0.0.1:0", "--state-dir", state], stderr=subprocess.PIPE, text=True)
line = proc.stderr.readline()
host, port = line.split("http://")[1].split("/")[0].split(":")
threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()

local = threading.local()


def call(op, body):
    if not hasattr(local, "conn"):
        local.conn = http.client.HTTPConnection(host, int(port), timeout=30)
    data = json.dumps(body)
    t = time.perf_counter()
    local.conn.request("POST", "/", data, {"X-Amz-Target": f"AWSStepFunctions.{op}", "Content-Type": "application/x-amz-json-1.0"})
    r = local.conn.getresponse()
    out = json.loads(r.read())
    return r.status, out, time.perf_counter() - t


definition = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Parameters": {"n.$": "$.n"}, "Next": "W"},
                                         "W": {"Type": "Wait", "Seconds": 1, "Next": "B"},
                                         "B": {"Type": "Pass", "End": True}}}
status, sm, _ = call("CreateStateMachine", {"name": "load", "definition": json.dumps(definition), "roleArn": "r"})
assert status == 200, sm
lat = {"StartExecution": [], "DescribeExecution": []}
errors = []
started = []
lock = threading.Lock()
deadline = time.time() + seconds


def client(i):
    n = 0
    while time.time() < deadline:
        n += 1
        s, out, dt = call("StartExecution", {"stateMachineArn": sm["stateMachineArn"], "name": f"c{i}-{n}", "input": json.dumps({"n": n})})
        with lock:
            lat["StartExecution"].append(dt)
            if s != 200:
                errors.append(out)
                continue
            started.append(out["executionArn"])
        while True:
            time.sleep(0.2)
            s, d, dt = call("DescribeExecution", {"executionArn": out["executionArn"]})
            with lock:
                lat["DescribeExecution"].append(dt)
                if s != 200:
                    errors.append(d)
                    break
            if d["status"] != "RUNNING":
                if d["status"] != "SUCCEEDED":
                    errors.append(d)
                break


threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
t0 = time.time()
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.time() - t0
lost = 0
for arn in started:
    s, d, _ = call("DescribeExecution", {"executionArn": arn})
    if s != 200 or d["status"] != "SUCCEEDED":
        lost += 1
proc.kill()
print(f"{concurrency} clients for {elapsed:.0f} s: {len(started)} executions started, {len(errors)} errors, {lost} not SUCCEEDED at the end")
print("| operation | requests | p50 ms | p99 ms | max ms |")
print("|---|---|---|---|---|")
for op, xs in lat.items():
    xs = sorted(xs)
    q = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))] * 1000
    print(f"| {op} | {len(xs):,} | {q(0.5):.1f} | {q(0.99):.1f} | {xs[-1] * 1000:.1f} |")
