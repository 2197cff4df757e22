"""boto3 against `shoal serve`: task tokens, heartbeats and nested executions.

    python callbacks_client.py ENDPOINT WORKDIR PHASE [NAME]

PHASE main runs every check; start NAME starts an execution that waits for its token
and writes the token to WORKDIR/NAME.token; answer NAME sends SendTaskSuccess with it
(retrying while the restarted server replays the execution) and waits for the end.
Exits non-zero on the first failed check.
"""
import json
import os
import sys
import time

import boto3
import botocore

endpoint, work, phase = sys.argv[1], sys.argv[2], sys.argv[3]
os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
sfn = boto3.client("stepfunctions", endpoint_url=endpoint,
                   config=botocore.config.Config(retries={"max_attempts": 1}, inject_host_prefix=False))
ROLE = "arn:aws:iam::123456789012:role/r"


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def code_of(fn, **kw):
    try:
        fn(**kw)
        return None
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]


def waiting(heartbeat=None, catch=False):
    task = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": "testfn", "Payload": {"token.$": "$$.Task.Token"}},
            "TimeoutSeconds": 60, "End": True}
    if heartbeat:
        task["HeartbeatSeconds"] = heartbeat
    states = {"Approve": task}
    if catch:
        task["Catch"] = [{"ErrorEquals": ["Rejected"], "Next": "Handled"}]
        states["Handled"] = {"Type": "Pass", "End": True}
    return json.dumps({"StartAt": "Approve", "States": states})


def machine(name, definition):
    return sfn.create_state_machine(name=name, definition=definition, roleArn=ROLE)["stateMachineArn"]


def token_of(execution_arn, timeout=30):
    """The token, read from the TaskScheduled event's parameters."""
    end = time.time() + timeout
    while time.time() < end:
        for e in sfn.get_execution_history(executionArn=execution_arn)["events"]:
            if e["type"] == "TaskScheduled":
                return json.loads(e["taskScheduledEventDetails"]["parameters"])["Payload"]["token"]
        time.sleep(0.1)
    check(False, f"a TaskScheduled event for {execution_arn}")


def finish(execution_arn, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        d = sfn.describe_execution(executionArn=execution_arn)
        if d["status"] != "RUNNING":
            return d
        time.sleep(0.1)
    check(False, f"{execution_arn} ends")


if phase == "start":
    name = sys.argv[4]
    arn = machine(f"{name}-m", waiting())
    ex = sfn.start_execution(stateMachineArn=arn, name=name)["executionArn"]
    with open(os.path.join(work, f"{name}.token"), "w") as f:
        json.dump({"arn": ex, "token": token_of(ex)}, f)
    print("started")
    sys.exit(0)

if phase == "answer":
    name = sys.argv[4]
    saved = json.load(open(os.path.join(work, f"{name}.token")))
    end = time.time() + 30
    # The restarted server replays the execution, which registers its token again.
    while code_of(sfn.send_task_success, taskToken=saved["token"], output='{"after": "restart"}') == "TaskDoesNotExist":
        check(time.time() < end, "the token is waited on again after the restart")
        time.sleep(0.1)
    d = finish(saved["arn"])
    print(d["status"], d.get("output"))
    sys.exit(0)

# SendTaskSuccess: the output is the Task's result.
ok = machine("approve", waiting())
ex = sfn.start_execution(stateMachineArn=ok, input="{}")["executionArn"]
tok = token_of(ex)
check(sfn.list_executions(stateMachineArn=ok)["executions"][0]["status"] == "RUNNING", "the task waits for its token")
sfn.send_task_success(taskToken=tok, output='{"approved": true}')
d = finish(ex)
check(d["status"] == "SUCCEEDED" and json.loads(d["output"]) == {"approved": True}, f"SendTaskSuccess ends the task: {d}")
check(code_of(sfn.send_task_success, taskToken=tok, output="{}") == "TaskDoesNotExist", "an answered token is gone")

# SendTaskFailure goes through Catch.
caught = machine("reject", waiting(catch=True))
ex = sfn.start_execution(stateMachineArn=caught, input="{}")["executionArn"]
sfn.send_task_failure(taskToken=token_of(ex), error="Rejected", cause="no budget")
d = finish(ex)
check(d["status"] == "SUCCEEDED" and json.loads(d["output"]) == {"Error": "Rejected", "Cause": "no budget"},
      f"SendTaskFailure is caught: {d}")

# Heartbeats keep a task alive; when they stop, States.HeartbeatTimeout.
hb = machine("heartbeat", waiting(heartbeat=2))
ex = sfn.start_execution(stateMachineArn=hb, input="{}")["executionArn"]
tok = token_of(ex)
for _ in range(3):
    time.sleep(1)
    sfn.send_task_heartbeat(taskToken=tok)
check(sfn.describe_execution(executionArn=ex)["status"] == "RUNNING", "heartbeats keep the task alive past HeartbeatSeconds")
d = finish(ex)
check(d["status"] == "FAILED" and d.get("error") == "States.HeartbeatTimeout", f"silence ends it: {d}")
check(code_of(sfn.send_task_success, taskToken=tok, output="{}") == "TaskTimedOut", "a timed-out token says so")

# Tokens shoal never made.
check(code_of(sfn.send_task_success, taskToken="not-a-token", output="{}") == "InvalidToken", "a malformed token")
check(code_of(sfn.send_task_heartbeat, taskToken="not-a-token") == "InvalidToken", "a malformed heartbeat")
check(code_of(sfn.send_task_success, taskToken=tok, output="not json") == "InvalidOutput", "output must be JSON")

# A parent runs a child with .sync:2; the child's failure is caught by the parent.
child = machine("child", json.dumps({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Child.Broke", "Cause": "on purpose"}}}))
kid = machine("kid", json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": {"k": 1}, "End": True}}}))
parent = machine("parent", json.dumps({"StartAt": "Run", "States": {
    "Run": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
            "Parameters": {"StateMachineArn": kid, "Name": "kid-run", "Input": {"from.$": "$$.Execution.Id"}},
            "ResultSelector": {"out.$": "$.Output", "status.$": "$.Status"}, "ResultPath": "$.kid", "Next": "Fail"},
    "Fail": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
             "Parameters": {"StateMachineArn": child, "Name": "child-run"},
             "Catch": [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.caught", "Next": "Done"}], "End": True},
    "Done": {"Type": "Pass", "End": True}}}))
ex = sfn.start_execution(stateMachineArn=parent, input="{}")["executionArn"]
d = finish(ex)
out = json.loads(d.get("output") or "null")
check(d["status"] == "SUCCEEDED", f"the parent catches its child's failure: {d}")
check(out["kid"] == {"out": {"k": 1}, "status": "SUCCEEDED"}, f".sync:2 gives the child's output as JSON: {out}")
cause = json.loads(out["caught"]["Cause"])
check(out["caught"]["Error"] == "States.TaskFailed" and cause["Error"] == "Child.Broke" and cause["Status"] == "FAILED",
      f"the cause is the child's description: {cause}")
runs = sfn.list_executions(stateMachineArn=child)["executions"]
check([r["name"] for r in runs] == ["child-run"] and runs[0]["status"] == "FAILED", f"the child is an execution of its own: {runs}")
kid_desc = sfn.describe_execution(executionArn=runs[0]["executionArn"].replace(":child:child-run", ":kid:kid-run"))
check(json.loads(kid_desc["input"]) == {"from": ex}, "the child's input is exactly the Input given")
print("all checks passed")
