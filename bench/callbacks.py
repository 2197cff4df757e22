#!/usr/bin/env python3
"""Callbacks and activities against `shoal serve`, with boto3 as the client.

    target/lambda-venv/bin/python bench/callbacks.py [SHOAL_BIN] [ROUNDS] [TASKS]

Starts `shoal serve` on a free port with a fresh state folder and measures:
1. the round trip from SendTaskSuccess to the next state: each of ROUNDS executions
   runs activity A then activity B; the worker answers A's task and times until its
   GetActivityTask for B returns B's task (so two requests plus the engine moving on);
   baseline: two no-op requests (DescribeActivity) on the same client;
2. activity tasks per second with 8 boto3 worker processes (GetActivityTask, then
   SendTaskSuccess) on a Distributed Map of TASKS activity children; baseline: the same
   8 processes doing two no-op requests per task.
"""
import json, multiprocessing, os, socket, subprocess, sys, tempfile, time

import boto3, botocore

SHOAL = sys.argv[1] if len(sys.argv) > 1 else "target/release/shoal"
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 300
TASKS = int(sys.argv[3]) if len(sys.argv) > 3 else 4000
ROLE = "arn:aws:iam::123456789012:role/r"
os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")


def client(endpoint):
    return boto3.client("stepfunctions", endpoint_url=endpoint, config=botocore.config.Config(
        retries={"max_attempts": 1}, inject_host_prefix=False, read_timeout=70))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def finish(sfn, arn):
    while True:
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] != "RUNNING":
            return d
        time.sleep(0.05)


def worker(args):
    endpoint, act, noop, count = args
    c = client(endpoint)
    if noop:
        for _ in range(count):
            c.describe_activity(activityArn=act)
            c.describe_activity(activityArn=act)
        return count
    done = 0
    while True:
        t = c.get_activity_task(activityArn=act, workerName="bench")
        if t.get("taskToken"):
            c.send_task_success(taskToken=t["taskToken"], output=t["input"])
            done += 1


def main():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    state = tempfile.mkdtemp()
    server = subprocess.Popen([SHOAL, "serve", "--listen", f"127.0.0.1:{port}", "--state-dir", state],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    sfn = client(endpoint)
    for _ in range(100):
        try:
            sfn.list_activities(); break
        except Exception:
            time.sleep(0.1)
    try:
        a = sfn.create_activity(name="a")["activityArn"]
        b = sfn.create_activity(name="b")["activityArn"]
        sm = sfn.create_state_machine(name="two", roleArn=ROLE, definition=json.dumps({"StartAt": "A", "States": {
            "A": {"Type": "Task", "Resource": a, "Next": "B"},
            "B": {"Type": "Task", "Resource": b, "End": True}}}))["stateMachineArn"]
        trips, base = [], []
        for i in range(ROUNDS):
            ex = sfn.start_execution(stateMachineArn=sm, input="{}")["executionArn"]
            ta = sfn.get_activity_task(activityArn=a)
            t0 = time.perf_counter()
            sfn.send_task_success(taskToken=ta["taskToken"], output="{}")
            tb = sfn.get_activity_task(activityArn=b)
            trips.append(time.perf_counter() - t0)
            sfn.send_task_success(taskToken=tb["taskToken"], output="{}")
            t0 = time.perf_counter()
            sfn.describe_activity(activityArn=a)
            sfn.describe_activity(activityArn=a)
            base.append(time.perf_counter() - t0)
        finish(sfn, ex)
        ms = lambda x: f"{x * 1000:.2f}"
        print(f"round trip SendTaskSuccess -> next state's task, {ROUNDS} rounds: "
              f"p50 {ms(pct(trips, 50))} ms, p99 {ms(pct(trips, 99))} ms; "
              f"baseline two no-op requests: p50 {ms(pct(base, 50))} ms, p99 {ms(pct(base, 99))} ms")

        m = sfn.create_activity(name="m")["activityArn"]
        big = sfn.create_state_machine(name="many", roleArn=ROLE, definition=json.dumps({"StartAt": "Map", "States": {"Map": {
            "Type": "Map", "ItemsPath": "$.items", "ResultPath": None,
            "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                              "StartAt": "W", "States": {"W": {"Type": "Task", "Resource": m, "End": True}}},
            "End": True}}}))["stateMachineArn"]
        procs = [multiprocessing.Process(target=worker, args=((endpoint, m, False, 0),), daemon=True) for _ in range(8)]
        for p in procs:
            p.start()
        time.sleep(1)  # the workers' clients are made before the clock starts
        t0 = time.perf_counter()
        ex = sfn.start_execution(stateMachineArn=big, input=json.dumps({"items": list(range(TASKS))}))["executionArn"]
        d = finish(sfn, ex)
        took = time.perf_counter() - t0
        for p in procs:
            p.terminate(); p.join()
        assert d["status"] == "SUCCEEDED", d
        with multiprocessing.Pool(8) as pool:
            t0 = time.perf_counter()
            pool.map(worker, [(endpoint, m, True, TASKS // 8)] * 8)
            noop = time.perf_counter() - t0
        print(f"activity tasks/s with 8 boto3 workers, {TASKS} tasks: {TASKS / took:.0f}/s ({took:.2f} s); "
              f"baseline 8 workers doing two no-op requests per task: {TASKS / noop:.0f}/s ({noop:.2f} s)")
    finally:
        server.kill()


if __name__ == "__main__":
    main()
