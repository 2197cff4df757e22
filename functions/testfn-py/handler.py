"""A Lambda function for shoal's tests, run by the real awslambdaric. Same ops as
functions/testfn: echo (default), fail, sleep, crash; `log` appends a line per call; `print`
writes its text to the log."""
import os
import time


class CustomFailure(Exception):
    pass


def handler(event, context):
    if isinstance(event, dict) and event.get("log"):
        with open(event["log"], "a") as f:
            f.write(context.aws_request_id + "\n")
    if isinstance(event, dict) and event.get("print"):
        print(event["print"])
    op = event.get("op", "echo") if isinstance(event, dict) else "echo"
    if op == "fail":
        raise CustomFailure("the handler failed on purpose")
    if op == "sleep":
        time.sleep(event.get("ms", 1000) / 1000)
    if op == "crash":
        os._exit(3)
    return event
