"""boto3 against `shoal serve`: task tokens, heartbeats and nested executions.

    python callbacks_client.py ENDPOINT WORKDIR PHASE [NAME]

PHASE main runs every check; start NAME starts an execution that waits for its token
and writes the token to WORKDIR/NAME.token; answer NAME sends SendTaskSuccess with it
(retrying while the restarted server replays the execution) and waits for the end.
activities runs the activity checks (a worker that polls with GetActivityTask);
activity-start NAME starts an execution whose activity task a worker takes, saving the
token; answer NAME then finishes it as above.
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

def activity_machine(activity_arn, timeout=30, heartbeat=None, catch=False):
    task = {"Type": "Task", "Resource": activity_arn, "TimeoutSeconds": timeout, "End": True}
    if heartbeat:
        task["HeartbeatSeconds"] = heartbeat
    states = {"Work": task}
    if catch:
        task["Catch"] = [{"ErrorEquals": ["Worker.Refused"], "Next": "Handled"}]
        states["Handled"] = {"Type": "Pass", "End": True}
    return json.dumps({"StartAt": "Work", "States": states})


def take(activity_arn, worker):
    """One GetActivityTask that must find a task."""
    t = sfn.get_activity_task(activityArn=activity_arn, workerName=worker)
    check(t.get("taskToken"), f"{worker} gets a task")
    return t


def event_types(execution_arn):
    return [e["type"] for e in sfn.get_execution_history(executionArn=execution_arn)["events"]]


if phase == "activity-start":
    name = sys.argv[4]
    act = sfn.create_activity(name=f"{name}-act")["activityArn"]
    arn = machine(f"{name}-m", activity_machine(act, timeout=120))
    ex = sfn.start_execution(stateMachineArn=arn, name=name, input='{"job": 1}')["executionArn"]
    t = take(act, "before-crash")
    check(json.loads(t["input"]) == {"job": 1}, "the worker gets the task's input")
    with open(os.path.join(work, f"{name}.token"), "w") as f:
        json.dump({"arn": ex, "token": t["taskToken"]}, f)
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
    print(d["status"], d.get("output"), "activity-started=%d" % event_types(saved["arn"]).count("ActivityStarted"))
    sys.exit(0)

def bigmap_worker(args):
    """A worker process: takes activity tasks until it is stopped, noting each item in
    its own file before answering."""
    endpoint_, activity_arn, work_ = args
    c = boto3.client("stepfunctions", endpoint_url=endpoint_,
                     config=botocore.config.Config(retries={"max_attempts": 1}, inject_host_prefix=False,
                                                   read_timeout=70))
    with open(os.path.join(work_, f"seen-{os.getpid()}.txt"), "a", buffering=1) as log:
        while True:
            t = c.get_activity_task(activityArn=activity_arn, workerName=f"w{os.getpid()}")
            if not t.get("taskToken"):
                continue
            n = json.loads(t["input"])["n"]
            log.write(f"{n}\n")
            c.send_task_success(taskToken=t["taskToken"], output=json.dumps(n))


if phase == "bigmap":
    # N Distributed Map children each wait on an activity task that 8 worker processes answer.
    import multiprocessing
    n = int(sys.argv[4])
    act = sfn.create_activity(name="items")["activityArn"]
    arn = machine("bigmap", json.dumps({"StartAt": "Map", "States": {"Map": {
        "Type": "Map", "ItemsPath": "$.items",
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                          "StartAt": "Work", "States": {"Work": {
                              "Type": "Task", "Resource": act, "Parameters": {"n.$": "$"},
                              "TimeoutSeconds": 600, "End": True}}},
        "End": True}}}))
    started = time.time()
    ex = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"items": list(range(n))}))["executionArn"]
    workers = [multiprocessing.Process(target=bigmap_worker, args=((endpoint, act, work),), daemon=True)
               for _ in range(8)]
    for w in workers:
        w.start()
    d = finish(ex, timeout=600)
    wall = time.time() - started
    for w in workers:
        w.terminate()
        w.join()
    seen = [int(x) for f in os.listdir(work) if f.startswith("seen-")
            for x in open(os.path.join(work, f)).read().split()]
    check(d["status"] == "SUCCEEDED", f"the map finishes: {d.get('status')} {d.get('error')} {d.get('cause')}")
    check(json.loads(d["output"]) == list(range(n)), "every item's answer is in the output, in order")
    check(sorted(seen) == list(range(n)), f"every item was handed to a worker exactly once ({len(seen)} answers)")
    print(f"bigmap: {n} items in {wall:.1f} s ({n / wall:.0f} tasks/s)")
    print("all checks passed")
    sys.exit(0)

if phase == "activities":
    import threading
    act = sfn.create_activity(name="approvals")["activityArn"]
    # A poll that finds nothing answers after 60 s without a token, as AWS does.
    idle_arn = sfn.create_activity(name="idle")["activityArn"]
    idle = {}
    def idle_poll():
        started = time.time()
        idle["reply"] = sfn.get_activity_task(activityArn=idle_arn, workerName="idle-worker")
        idle["secs"] = time.time() - started
    idle_thread = threading.Thread(target=idle_poll)
    idle_thread.start()

    check(code_of(sfn.get_activity_task, activityArn=act.replace("approvals", "nope")) == "ActivityDoesNotExist",
          "GetActivityTask on an unknown activity")
    check(code_of(sfn.get_activity_task, activityArn="not-an-arn") == "InvalidArn", "GetActivityTask on a bad ARN")
    listed = sfn.list_activities(maxResults=1)
    check(len(listed["activities"]) == 1 and "nextToken" in listed, "ListActivities pages")
    rest = sfn.list_activities(maxResults=1, nextToken=listed["nextToken"])
    check({a["name"] for a in listed["activities"] + rest["activities"]} == {"approvals", "idle"}, "both pages")

    # A worker (GetActivityTask -> SendTaskHeartbeat -> SendTaskSuccess).
    ok = machine("activity-ok", activity_machine(act, heartbeat=3))
    ex = sfn.start_execution(stateMachineArn=ok, input='{"amount": 7}')["executionArn"]
    t = take(act, "worker-1")
    check(json.loads(t["input"]) == {"amount": 7}, "the worker gets the task's input")
    for _ in range(2):
        time.sleep(2)
        sfn.send_task_heartbeat(taskToken=t["taskToken"])
    sfn.send_task_success(taskToken=t["taskToken"], output=json.dumps({"paid": 7}))
    d = finish(ex)
    check(d["status"] == "SUCCEEDED" and json.loads(d["output"]) == {"paid": 7}, f"the worker's output is the result: {d}")
    events = sfn.get_execution_history(executionArn=ex)["events"]
    types = [e["type"] for e in events]
    check(types == ["ExecutionStarted", "TaskStateEntered", "ActivityScheduled", "ActivityStarted",
                    "ActivitySucceeded", "TaskStateExited", "ExecutionSucceeded"], f"the activity's history: {types}")
    sched = events[2]["activityScheduledEventDetails"]
    check(sched["resource"] == act and json.loads(sched["input"]) == {"amount": 7}
          and sched["timeoutInSeconds"] == 30 and sched["heartbeatInSeconds"] == 3, f"ActivityScheduled: {sched}")
    check(events[3]["activityStartedEventDetails"] == {"workerName": "worker-1"}, f"ActivityStarted: {events[3]}")
    check(json.loads(events[4]["activitySucceededEventDetails"]["output"]) == {"paid": 7}, f"ActivitySucceeded: {events[4]}")

    # SendTaskFailure from a worker is caught.
    caught = machine("activity-caught", activity_machine(act, catch=True))
    ex = sfn.start_execution(stateMachineArn=caught, input="{}")["executionArn"]
    t = take(act, "worker-2")
    sfn.send_task_failure(taskToken=t["taskToken"], error="Worker.Refused", cause="busy")
    d = finish(ex)
    check(d["status"] == "SUCCEEDED" and json.loads(d["output"]) == {"Error": "Worker.Refused", "Cause": "busy"},
          f"the worker's failure is caught: {d}")
    check("ActivityFailed" in event_types(ex), "ActivityFailed is in the history")

    # No worker: TimeoutSeconds ends the task; a worker that stops beating: HeartbeatTimeout.
    alone = machine("activity-alone", activity_machine(sfn.create_activity(name="nobody")["activityArn"], timeout=2))
    ex = sfn.start_execution(stateMachineArn=alone, input="{}")["executionArn"]
    d = finish(ex)
    check(d["status"] in ("FAILED", "TIMED_OUT") and d.get("error") == "States.Timeout", f"nobody took it: {d}")
    check("ActivityTimedOut" in event_types(ex) and "ActivityStarted" not in event_types(ex), "ActivityTimedOut, never started")
    quiet = machine("activity-quiet", activity_machine(act, heartbeat=2))
    ex = sfn.start_execution(stateMachineArn=quiet, input="{}")["executionArn"]
    t = take(act, "worker-3")
    d = finish(ex)
    check(d["status"] == "FAILED" and d.get("error") == "States.HeartbeatTimeout", f"a silent worker: {d}")
    check(code_of(sfn.send_task_success, taskToken=t["taskToken"], output="{}") == "TaskTimedOut",
          "answering a timed-out activity task")

    idle_thread.join()
    check("taskToken" not in idle["reply"] and 59 <= idle["secs"] < 65,
          f"an idle poll waits 60 s and gets no token: {idle}")
    print("all checks passed")
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
events = sfn.get_execution_history(executionArn=ex)["events"]
types = [e["type"] for e in events]
check(types[2:6] == ["TaskScheduled", "TaskStarted", "TaskSubmitted", "TaskSucceeded"], f"a callback task's history: {types}")
check(events[3]["taskStartedEventDetails"] == {"resourceType": "lambda", "resource": "invoke.waitForTaskToken"},
      f"TaskStarted: {events[3]}")
check(events[4]["taskSubmittedEventDetails"]["resourceType"] == "lambda"
      and "StatusCode" in json.loads(events[4]["taskSubmittedEventDetails"]["output"]), f"TaskSubmitted: {events[4]}")

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
check(event_types(ex)[-2] == "TaskTimedOut", f"TaskTimedOut is in the history: {event_types(ex)}")

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
