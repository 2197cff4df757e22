"""boto3 against `shoal serve --mock-config MockConfigFile.json`, as with Step
Functions Local: StartExecution on `<stateMachineArn>#<TestCase>`.

    python mocks_client.py ENDPOINT MOTO_ENDPOINT MOCK_FILE

Exits non-zero on the first failed check.
"""
import json
import os
import sys
import time

import boto3
import botocore

endpoint, moto, mock_file = sys.argv[1], sys.argv[2], sys.argv[3]
os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
sfn = boto3.client("stepfunctions", endpoint_url=endpoint,
                   config=botocore.config.Config(retries={"max_attempts": 1}, inject_host_prefix=False))
sqs = boto3.client("sqs", endpoint_url=moto)
ROLE = "arn:aws:iam::123456789012:role/r"


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def finish(execution_arn, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        d = sfn.describe_execution(executionArn=execution_arn)
        if d["status"] != "RUNNING":
            return d
        time.sleep(0.05)
    check(False, f"{execution_arn} ends")


def history(execution_arn):
    return sfn.get_execution_history(executionArn=execution_arn)["events"]


def events_of(events, state):
    """The Task event types of one state, in order."""
    out, current = [], None
    for e in events:
        if e["type"].endswith("StateEntered"):
            current = e["stateEnteredEventDetails"]["name"]
        elif e["type"].startswith("Task") and not e["type"].startswith("TaskState") and current == state:
            out.append(e["type"])
    return out


queue_url = sqs.create_queue(QueueName="myQueue")["QueueUrl"]

# The machine of Step Functions Local's documentation (its Retry made quicker).
lambda_sqs = sfn.create_state_machine(name="LambdaSQSIntegration", roleArn=ROLE, definition=json.dumps({
    "Comment": "This state machine is called: LambdaSQSIntegration",
    "StartAt": "LambdaState",
    "States": {
        "LambdaState": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"Payload.$": "$", "FunctionName": "HelloWorldFunction"},
            "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 1}],
            "Next": "SQSState"},
        "SQSState": {
            "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
            "Parameters": {"QueueUrl": queue_url, "MessageBody.$": "$"},
            "End": True}}}))["stateMachineArn"]

map_machine = sfn.create_state_machine(name="MapIntegration", roleArn=ROLE, definition=json.dumps({
    "StartAt": "Each",
    "States": {"Each": {
        "Type": "Map", "MaxConcurrency": 1, "ItemsPath": "$.items",
        "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Process", "States": {
            "Process": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                        "Parameters": {"FunctionName": "process", "Payload.$": "$"},
                        "ResultSelector": {"got.$": "$.Payload"}, "End": True}}},
        "End": True}}}))["stateMachineArn"]


def start(arn, case, inp=None):
    return sfn.start_execution(stateMachineArn=f"{arn}#{case}", input=json.dumps(inp or {"hello": "world"}))["executionArn"]


started = {case: start(lambda_sqs, case) for case in ["HappyPath", "RetryPath", "HybridPath", "FlakyPath", "ExhaustedPath"]}
started["Successive"] = start(map_machine, "Successive", {"items": [1, 2, 3]})
started["ShortOfItems"] = start(map_machine, "ShortOfItems", {"items": [1, 2, 3]})
done = {case: finish(arn) for case, arn in started.items()}
MOCKED_SQS = {"MD5OfMessageBody": "3bcb6e8e-7h85-4375-b0bc-1a59812c6e51", "MessageId": "3bcb6e8e-8b51-4375-b0bc-1a59812c6e51"}

# Happy path: both Tasks mocked; the output is the SQS mock's Return, as the service's answer.
d = done["HappyPath"]
check(d["status"] == "SUCCEEDED" and json.loads(d["output"]) == MOCKED_SQS, f"HappyPath ends with the SQS mock: {d}")
h = history(started["HappyPath"])
check(events_of(h, "LambdaState") in (["TaskScheduled", "TaskStarted", "TaskSucceeded"], ["TaskScheduled", "TaskSucceeded"]),
      f"a mocked Task's history is a real run's: {events_of(h, 'LambdaState')}")
succeeded = [e for e in h if e["type"] == "TaskSucceeded"][0]["taskSucceededEventDetails"]
check(json.loads(succeeded["output"]) == {"StatusCode": 200, "Payload": {"StatusCode": 200, "body": "Hello from Lambda!"}},
      "lambda:invoke's mock Return is the raw {StatusCode, Payload}")

# Retry path of the documentation: calls 0, 1 and 2 Throw, call 3 Returns.
d = done["RetryPath"]
check(d["status"] == "SUCCEEDED", f"RetryPath succeeds after three retries: {d}")
retry_events = events_of(history(started["RetryPath"]), "LambdaState")
check(retry_events.count("TaskScheduled") == 4 and retry_events[-1] == "TaskSucceeded",
      f"RetryPath: three calls Throw, the fourth Returns: {retry_events}")

# Two Throws, then a Return.
d = done["FlakyPath"]
lambda_events = events_of(history(started["FlakyPath"]), "LambdaState")
check(d["status"] == "SUCCEEDED" and lambda_events.count("TaskScheduled") == 3 and lambda_events[-1] == "TaskSucceeded",
      f"FlakyPath: two failures then success: {lambda_events}")

# Retries past the mock's last call: States.Runtime, which no Retry catches.
d = done["ExhaustedPath"]
check(d["status"] == "FAILED" and d.get("error") == "States.Runtime" and "no entry for call 1" in d.get("cause", ""),
      f"a call the mock has no response for fails the execution: {d}")

# Hybrid: the Lambda is mocked, SQS is real (moto).
d = done["HybridPath"]
out = json.loads(d.get("output", "null") or "null")
check(d["status"] == "SUCCEEDED" and out.get("MessageId") not in (None, MOCKED_SQS["MessageId"]), f"HybridPath sends to real SQS: {d}")
got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
bodies = [json.loads(m["Body"]) for m in got]
check({"StatusCode": 200, "Payload": {"StatusCode": 200, "body": "Hello from Lambda!"}} in bodies,
      f"the real queue holds the mocked Lambda's result: {bodies}")

# A Map's iterations take successive responses of one counter.
d = done["Successive"]
check(d["status"] == "SUCCEEDED" and json.loads(d["output"]) == [{"got": "first"}, {"got": "second"}, {"got": "third"}],
      f"Map iterations take successive responses: {d}")
d = done["ShortOfItems"]
check(d["status"] == "FAILED" and d.get("error") == "States.Runtime", f"the third iteration has no response: {d}")

# Without a test case (or with a bare '#') nothing is mocked: HelloWorldFunction does not exist here.
d = finish(sfn.start_execution(stateMachineArn=f"{lambda_sqs}#", input="{}")["executionArn"])
check(d["status"] == "FAILED", f"a bare '#' runs the real integrations: {d}")

# Unknown test cases are refused, naming what the file has.
try:
    start(lambda_sqs, "NoSuchCase")
    check(False, "an unknown test case is refused")
except botocore.exceptions.ClientError as e:
    check(e.response["Error"]["Code"] == "ValidationException" and "HappyPath" in e.response["Error"]["Message"],
          f"an unknown test case is refused: {e.response['Error']}")

# The file is read again when it changes.
config = json.load(open(mock_file))
config["StateMachines"]["LambdaSQSIntegration"]["TestCases"]["AddedLater"] = {
    "LambdaState": "MockedLambdaSuccess", "SQSState": "MockedSQSSuccess"}
with open(mock_file, "w") as f:
    json.dump(config, f)
later = time.time() + 5
os.utime(mock_file, (later, later))
d = finish(start(lambda_sqs, "AddedLater"))
check(d["status"] == "SUCCEEDED" and json.loads(d["output"]) == MOCKED_SQS, f"a test case added to the file runs: {d}")
print("all checks passed")
