"""Black-box client for `shoal serve`: the real aws CLI and boto3 against it.

    python serve_client.py ENDPOINT WORKDIR PHASE [ARGS]

PHASE main runs the API checks; start-long NAME starts a 4 s execution; wait NAME
polls it to the end and prints its status. Exits non-zero on the first failed check.
"""
import json
import os
import subprocess
import sys
import time

import boto3
import botocore

endpoint, work, phase = sys.argv[1], sys.argv[2], sys.argv[3]
os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
# TestState and StartSyncExecution carry a "sync-" host prefix, which a local endpoint cannot take.
sfn = boto3.client("stepfunctions", endpoint_url=endpoint,
                   config=botocore.config.Config(retries={"max_attempts": 1}, inject_host_prefix=False))
ACCT = "arn:aws:states:us-east-1:123456789012"


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def aws(*args):
    aws_bin = os.path.join(os.path.dirname(sys.executable), "aws")
    r = subprocess.run([aws_bin, "stepfunctions", *args, "--endpoint-url", endpoint, "--output", "json"],
                       capture_output=True, text=True)
    return r.returncode, (json.loads(r.stdout) if r.stdout.strip() else None), r.stderr


def error_code(fn, **kw):
    try:
        fn(**kw)
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    return None


def wait(arn, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] != "RUNNING":
            return d
        time.sleep(0.2)
    raise SystemExit(f"FAILED: {arn} still running after {timeout}s")


def machine(name, definition):
    return sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/r")["stateMachineArn"]


LONG = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 4, "Next": "P"}, "P": {"Type": "Pass", "Result": "done", "End": True}}}

if phase == "start-long":
    arn = machine("long", LONG)
    print(sfn.start_execution(stateMachineArn=arn, name=sys.argv[4])["executionArn"])
    sys.exit(0)
if phase == "wait":
    d = wait(f"{ACCT}:execution:long:{sys.argv[4]}")
    print(d["status"], d.get("output"))
    sys.exit(0)

# 1. The aws CLI: create, start, poll, history.
definition = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Parameters": {"sum.$": "States.MathAdd($.a, 1)"}, "Next": "W"},
                                         "W": {"Type": "Wait", "Seconds": 1, "End": True}}}
rc, out, err = aws("create-state-machine", "--name", "cli", "--definition", json.dumps(definition), "--role-arn", "arn:aws:iam::123456789012:role/r")
check(rc == 0 and out["stateMachineArn"] == f"{ACCT}:stateMachine:cli", f"aws create-state-machine: {out} {err}")
rc, out, err = aws("start-execution", "--state-machine-arn", f"{ACCT}:stateMachine:cli", "--name", "first", "--input", '{"a": 41}')
check(rc == 0 and out["executionArn"].endswith(":execution:cli:first"), f"aws start-execution: {out} {err}")
arn = out["executionArn"]
for _ in range(100):
    rc, out, err = aws("describe-execution", "--execution-arn", arn)
    if out["status"] != "RUNNING":
        break
    time.sleep(0.2)
check(out["status"] == "SUCCEEDED" and json.loads(out["output"]) == {"sum": 42}, f"aws describe-execution: {out}")
rc, out, err = aws("get-execution-history", "--execution-arn", arn)
types = [e["type"] for e in out["events"]]
check(types[0] == "ExecutionStarted" and types[-1] == "ExecutionSucceeded" and "WaitStateEntered" in types, f"history types {types}")
check(out["events"][0]["executionStartedEventDetails"]["input"] and [e["id"] for e in out["events"]] == list(range(1, len(types) + 1)), "history ids and details")
rc, out, err = aws("describe-state-machine", "--state-machine-arn", f"{ACCT}:stateMachine:nope")
check(rc != 0 and "StateMachineDoesNotExist" in err, f"aws names StateMachineDoesNotExist: {err.strip()}")

# 2. History paging and reverse order (boto3).
page1 = sfn.get_execution_history(executionArn=arn, maxResults=2)
page2 = sfn.get_execution_history(executionArn=arn, maxResults=2, nextToken=page1["nextToken"])
check([e["id"] for e in page1["events"]] == [1, 2] and [e["id"] for e in page2["events"]] == [3, 4], "history pages")
rev = sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=1)
check(rev["events"][0]["type"] == "ExecutionSucceeded", "reverse order")

# 3. Error codes.
check(error_code(sfn.describe_state_machine, stateMachineArn=f"{ACCT}:stateMachine:missing") == "StateMachineDoesNotExist", "missing machine")
check(error_code(sfn.start_execution, stateMachineArn=f"{ACCT}:stateMachine:missing") == "StateMachineDoesNotExist", "start on a missing machine")
check(error_code(sfn.start_execution, stateMachineArn=f"{ACCT}:stateMachine:cli", name="first", input='{"a": 1}') == "ExecutionAlreadyExists", "duplicate name")
check(error_code(sfn.create_state_machine, name="bad", definition='{"StartAt": "X", "States": {}}', roleArn="r") == "InvalidDefinition", "invalid definition")
check(error_code(sfn.create_state_machine, name="has space", definition=json.dumps(definition), roleArn="r") == "InvalidName", "invalid name")
big = json.dumps({"x": "y" * 300_000})
check(error_code(sfn.start_execution, stateMachineArn=f"{ACCT}:stateMachine:cli", input=big) == "ValidationException", "oversized input")
check(error_code(sfn.start_execution, stateMachineArn=f"{ACCT}:stateMachine:cli", input="{nope") == "InvalidExecutionInput", "input that is not JSON")
check(error_code(sfn.describe_execution, executionArn=f"{ACCT}:execution:cli:never") == "ExecutionDoesNotExist", "missing execution")
check(error_code(sfn.describe_execution, executionArn="not-an-arn") == "InvalidArn", "invalid ARN")

# 4. Validate, TestState, substitutions, idempotent create, list.
v = sfn.validate_state_machine_definition(definition='{"StartAt": "X", "States": {"Y": {"Type": "Pass", "End": true}}}')
check(v["result"] == "FAIL" and v["diagnostics"] and v["diagnostics"][0]["location"], f"validate: {v}")
t = sfn.test_state(definition=json.dumps({"Type": "Pass", "Parameters": {"b.$": "$.a"}, "Next": "Later"}), roleArn="r", input='{"a": 5}')
check(t["status"] == "SUCCEEDED" and json.loads(t["output"]) == {"b": 5} and t["nextState"] == "Later", f"TestState: {t}")
t = sfn.test_state(definition=json.dumps({"Type": "Fail", "Error": "Oops", "Cause": "why"}), roleArn="r")
check(t["status"] == "FAILED" and t["error"] == "Oops", f"TestState failing: {t}")
check(machine("cli", definition).endswith(":stateMachine:cli"), "identical CreateStateMachine answers the existing machine")
listed = sfn.list_state_machines()
# boto3 reads the request id from x-amzn-RequestId.
check(len(listed["ResponseMetadata"].get("RequestId", "")) == 36, "a request id on every response")
names = [m["name"] for m in listed["stateMachines"]]
check("cli" in names, f"list machines {names}")
execs = sfn.list_executions(stateMachineArn=f"{ACCT}:stateMachine:cli")["executions"]
check([e["name"] for e in execs] == ["first"], f"list executions {execs}")

# 5. Stop.
long_arn = machine("long", LONG)
run = sfn.start_execution(stateMachineArn=long_arn, name="to-stop")["executionArn"]
sfn.stop_execution(executionArn=run, error="Stopped.ByTest", cause="enough")
d = sfn.describe_execution(executionArn=run)
check(d["status"] == "ABORTED" and d["error"] == "Stopped.ByTest", f"stopped: {d['status']}")

# 6. A Distributed Map: DescribeMapRun counters during and after, UpdateMapRun.
dm = {"StartAt": "Map", "States": {"Map": {
    "Type": "Map", "MaxConcurrency": 5,
    "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSONL"},
                   "Parameters": {"Bucket": "in", "Key": "items.jsonl"}},
    "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"}, "StartAt": "W",
                      "States": {"W": {"Type": "Wait", "Seconds": 1, "End": True}}},
    "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket": "out", "Prefix": "dm"}},
    "End": True}}}
dm_arn = sfn.start_execution(stateMachineArn=machine("dm", dm), name="dm1")["executionArn"]
time.sleep(1.5)
runs = sfn.list_map_runs(executionArn=dm_arn)["mapRuns"]
check(len(runs) == 1, f"list map runs {runs}")
mr = runs[0]["mapRunArn"]
during = sfn.describe_map_run(mapRunArn=mr)
ic = during["itemCounts"]
check(during["status"] == "RUNNING" and 0 < ic["succeeded"] < ic["total"] == 60 and ic["running"] <= 5, f"counters during: {ic}")
sfn.update_map_run(mapRunArn=mr, maxConcurrency=30)
check(sfn.describe_map_run(mapRunArn=mr)["maxConcurrency"] == 30, "UpdateMapRun changes MaxConcurrency")
d = wait(dm_arn)
after = sfn.describe_map_run(mapRunArn=mr)
check(d["status"] == "SUCCEEDED" and after["status"] == "SUCCEEDED", f"map run ended: {d['status']}")
ic = after["itemCounts"]
check(ic["succeeded"] == ic["total"] == ic["resultsWritten"] == 60 and ic["running"] == 0 and ic["failed"] == 0, f"counters after: {ic}")
check(error_code(sfn.describe_map_run, mapRunArn=f"{ACCT}:mapRun:dm/Map:nope") == "ResourceNotFound", "missing map run")

# 6b. STANDARD children: ListExecutions by mapRunArn pages through them, DescribeExecution
# reads one, and UpdateMapRun's tolerance shows in DescribeMapRun at once.
std_dm = {"StartAt": "Map", "States": {"Map": {
    "Type": "Map", "MaxConcurrency": 20, "ToleratedFailurePercentage": 50,
    "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSONL"},
                   "Parameters": {"Bucket": "in", "Key": "items.jsonl"}},
    "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}, "StartAt": "W",
                      "States": {"W": {"Type": "Wait", "Seconds": 1, "Next": "Which"},
                                 "Which": {"Type": "Choice", "Choices": [{"Variable": "$.id", "NumericGreaterThan": 55, "Next": "Bad"}], "Default": "Ok"},
                                 "Ok": {"Type": "Pass", "End": True},
                                 "Bad": {"Type": "Fail", "Error": "Item.Bad", "Cause": "over 55"}}},
    "End": True}}}
sd = sfn.start_execution(stateMachineArn=machine("stddm", std_dm), name="s1")["executionArn"]
end = time.time() + 10
while not sfn.list_map_runs(executionArn=sd)["mapRuns"] and time.time() < end:
    time.sleep(0.05)
mr = sfn.list_map_runs(executionArn=sd)["mapRuns"][0]["mapRunArn"]
sfn.update_map_run(mapRunArn=mr, toleratedFailurePercentage=40, toleratedFailureCount=7)
now = sfn.describe_map_run(mapRunArn=mr)
check(now["toleratedFailurePercentage"] == 40 and now["toleratedFailureCount"] == 7, f"UpdateMapRun's tolerance at once: {now['toleratedFailurePercentage']} {now['toleratedFailureCount']}")
d = wait(sd)
check(d["status"] == "SUCCEEDED", f"standard map run: {d['status']} {d.get('cause')}")
first = sfn.list_executions(mapRunArn=mr, maxResults=40)
rest = sfn.list_executions(mapRunArn=mr, maxResults=40, nextToken=first["nextToken"])
kids = first["executions"] + rest["executions"]
check(len(kids) == 60 and "nextToken" not in rest, f"children listed: {len(kids)}")
check(all(k["mapRunArn"] == mr and k["itemCount"] == 1 and k["stateMachineArn"].endswith(":stateMachine:stddm/Map") and ":execution:stddm/Map:" in k["executionArn"] for k in kids), f"child items: {kids[0]}")
check(sorted(k["status"] for k in kids) == ["FAILED"] * 5 + ["SUCCEEDED"] * 55, "child statuses")
failed = sfn.list_executions(mapRunArn=mr, statusFilter="FAILED")["executions"]
check(len(failed) == 5, f"statusFilter on children: {len(failed)}")
c = sfn.describe_execution(executionArn=failed[0]["executionArn"])
check(c["status"] == "FAILED" and c["error"] == "Item.Bad" and c["cause"] == "over 55" and json.loads(c["input"])["id"] > 55
      and c["mapRunArn"] == mr and c["redriveStatus"] == "REDRIVABLE_BY_MAP_RUN", f"describe a failed child: {c}")
ok = [k for k in kids if k["status"] == "SUCCEEDED"][0]
c = sfn.describe_execution(executionArn=ok["executionArn"])
check(c["output"] == c["input"] and c["redriveStatus"] == "NOT_REDRIVABLE", f"describe a child: {c}")

# 7. Redrive a failed map run: the function fails while a flag file exists.
flag = os.path.join(work, "broken")
open(flag, "w").close()
flaky = {"StartAt": "Map", "States": {"Map": {
    "Type": "Map", "MaxConcurrency": 4,
    "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSONL"},
                   "Parameters": {"Bucket": "in", "Key": "items.jsonl"}},
    "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"}, "StartAt": "Which",
                      "States": {"Which": {"Type": "Choice", "Choices": [{"Variable": "$.id", "NumericGreaterThan": 50, "Next": "T"}], "Default": "Ok"},
                                 "Ok": {"Type": "Pass", "End": True},
                                 "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                                       "Parameters": {"FunctionName": "testfn", "Payload": {"op": "flaky", "path": flag}}, "End": True}}},
    "End": True}}}
fl = sfn.start_execution(stateMachineArn=machine("flaky", flaky), name="f1")["executionArn"]
d = wait(fl)
check(d["status"] == "FAILED" and d["error"] == "States.ExceedToleratedFailureThreshold", f"first attempt fails: {d.get('error')}")
mr = sfn.list_map_runs(executionArn=fl)["mapRuns"][0]["mapRunArn"]
check(sfn.describe_map_run(mapRunArn=mr)["itemCounts"]["failed"] >= 1, "failed items counted")
os.remove(flag)
sfn.redrive_execution(executionArn=fl)
time.sleep(0.3)
d = wait(fl)
ic = sfn.describe_map_run(mapRunArn=mr)["itemCounts"]
check(d["status"] == "SUCCEEDED" and d["redriveCount"] == 1, f"redriven: {d['status']}")
check(ic["succeeded"] == ic["total"] == 60 and ic["failed"] == 0, f"counters after redrive: {ic}")
types = [e["type"] for e in sfn.get_execution_history(executionArn=fl, maxResults=1000)["events"]]
check("ExecutionRedriven" in types and types[-1] == "ExecutionSucceeded", f"redrive history {types[-3:]}")
# 8. Lambda's Invoke API for the registered functions (what a function's SDK calls).
lam = boto3.client("lambda", endpoint_url=endpoint, config=botocore.config.Config(retries={"max_attempts": 1}))
r = lam.invoke(FunctionName="testfn", Payload=json.dumps({"op": "echo", "x": 1}))
check(r["StatusCode"] == 200 and json.loads(r["Payload"].read()) == {"op": "echo", "x": 1} and "FunctionError" not in r, "Lambda Invoke")
r = lam.invoke(FunctionName="arn:aws:lambda:us-east-1:123456789012:function:testfn", Payload=json.dumps({"op": "fail"}))
body = json.loads(r["Payload"].read())
check(r.get("FunctionError") == "Unhandled" and body["errorType"] == "Custom.Failure", f"Lambda Invoke handler error: {body}")
check(lam.invoke(FunctionName="testfn", InvocationType="DryRun")["StatusCode"] == 204, "DryRun")
check(error_code(lam.invoke, FunctionName="nope") == "ResourceNotFoundException", "Lambda Invoke of a missing function")
print("all checks passed")
