"""Service integrations: shoal's CPU per call, and a Distributed Map of sqs:sendMessage
against moto, each beside a baseline measured in the same run.

    target/lambda-venv/bin/python bench/integrations.py [--calls N] [--messages N]

1. CPU per call. A stub answers DynamoDB's PutItem with `{}` at once (a threaded
   http.server in this process; its CPU is not shoal's). shoal runs an inline Map of N
   `dynamodb:putItem` Tasks; the same Map with a Pass state instead is the engine's own
   cost. CPU per call = (CPU with calls - CPU with Pass) / N, from getrusage of the
   shoal process. Baseline: boto3 (botocore) making the same N PutItem calls to the same
   stub, CPU per call of this Python process.
2. Throughput against moto. A Distributed Map of N `sqs:sendMessage` children
   (MaxConcurrency 64) against moto server; baseline: 8 boto3 threads sending N
   messages to the same moto, which is moto's own limit on this machine.
"""
import argparse, json, os, resource, shutil, socket, subprocess, sys, tempfile, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOAL = os.path.join(ROOT, "target/release/shoal")
VENV = os.path.dirname(sys.executable)


class Stub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; without this, delayed ACKs add 40 ms a call.
    disable_nagle_algorithm = True

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b"{}"
        self.send_response(200)
        self.send_header("content-type", "application/x-amz-json-1.0")
        self.send_header("x-amzn-requestid", "r")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def run_shoal(definition, inp, env, tmp):
    d = os.path.join(tmp, "def.json")
    json.dump(definition, open(d, "w"))
    t0 = time.time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([SHOAL, "run", d, "--input", json.dumps(inp), "--json", "--ephemeral"],
                       capture_output=True, text=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.time() - t0
    out = json.loads(p.stdout)
    assert out.get("status") == "SUCCEEDED", (out, p.stderr[-500:])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def inline_map(task):
    return {"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 8,
            "ItemProcessor": {"StartAt": "T", "States": {"T": task}}, "ResultPath": None, "End": True}}}


def cpu_per_call(n, tmp):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    env = dict(os.environ, AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s", AWS_REGION="us-east-1")
    inp = {"items": [{"id": str(i)} for i in range(n)]}
    put = {"Type": "Task", "Resource": "arn:aws:states:::dynamodb:putItem",
           "Parameters": {"TableName": "t", "Item": {"id": {"S.$": "$.id"}}}, "End": True}
    cpu_calls, wall_calls = run_shoal(inline_map(put), inp, env, tmp)
    cpu_pass, _ = run_shoal(inline_map({"Type": "Pass", "End": True}), inp, env, tmp)
    import boto3
    ddb = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    ddb.put_item(TableName="t", Item={"id": {"S": "warm"}})
    t0 = resource.getrusage(resource.RUSAGE_SELF)
    w0 = time.time()
    for i in range(n):
        ddb.put_item(TableName="t", Item={"id": {"S": str(i)}})
    t1 = resource.getrusage(resource.RUSAGE_SELF)
    boto_wall = time.time() - w0
    srv.shutdown()
    # The stub runs in this process too: boto3's figure includes it, so it is an upper bound.
    boto_cpu = (t1.ru_utime - t0.ru_utime) + (t1.ru_stime - t0.ru_stime)
    shoal_us = (cpu_calls - cpu_pass) / n * 1e6
    boto_us = boto_cpu / n * 1e6
    print(f"| CPU per dynamodb:putItem call, {n:,} calls | shoal {shoal_us:.0f} µs (run {cpu_calls:.2f} s CPU, {wall_calls:.2f} s wall; Pass map {cpu_pass:.2f} s) "
          f"| boto3 {boto_us:.0f} µs incl. the stub ({boto_wall:.2f} s wall) | boto3 / shoal {boto_us / shoal_us:.1f} |")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def sqs_throughput(n, tmp):
    port = free_port()
    moto = subprocess.Popen([os.path.join(VENV, "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close(); break
            except OSError:
                time.sleep(0.1)
        import boto3
        sqs = boto3.client("sqs", endpoint_url=url, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
        q1 = sqs.create_queue(QueueName="shoal")["QueueUrl"]
        q2 = sqs.create_queue(QueueName="boto")["QueueUrl"]
        # Baseline: 8 threads of boto3, each its own client.
        per = n // 8
        def send(k):
            c = boto3.client("sqs", endpoint_url=url, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
            for i in range(per):
                c.send_message(QueueUrl=q2, MessageBody=f'{{"i":{k * per + i}}}')
        t0 = time.time()
        ts = [threading.Thread(target=send, args=(k,)) for k in range(8)]
        [t.start() for t in ts]; [t.join() for t in ts]
        boto_s = time.time() - t0
        bucket = os.path.join(tmp, "buckets", "b")
        os.makedirs(bucket, exist_ok=True)
        with open(os.path.join(bucket, "items.jsonl"), "w") as f:
            for i in range(n):
                f.write(json.dumps({"i": i}) + "\n")
        definition = {"StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrency": 64,
            "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSONL"},
                           "Parameters": {"Bucket": "b", "Key": "items.jsonl"}},
            "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
                "StartAt": "Send", "States": {"Send": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
                    "Parameters": {"QueueUrl": q1, "MessageBody.$": "$"}, "OutputPath": None, "End": True}}},
            "ResultPath": None, "End": True}}}
        d = os.path.join(tmp, "sqs.json")
        json.dump(definition, open(d, "w"))
        env = dict(os.environ, AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s", AWS_REGION="us-east-1")
        t0 = time.time()
        p = subprocess.run([SHOAL, "run", d, "--buckets", os.path.join(tmp, "buckets"), "--json", "--ephemeral"],
                           capture_output=True, text=True, env=env)
        shoal_s = time.time() - t0
        assert json.loads(p.stdout).get("status") == "SUCCEEDED", p.stdout[-500:] + p.stderr[-500:]
        got = int(sqs.get_queue_attributes(QueueUrl=q1, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])
        assert got == n, f"{got} messages, expected {n}"
        print(f"| Distributed Map of {n:,} sqs:sendMessage against moto | shoal {n / shoal_s:,.0f} msg/s ({shoal_s:.1f} s) "
              f"| 8 boto3 threads {per * 8 / boto_s:,.0f} msg/s ({boto_s:.1f} s) | shoal / boto3 {(n / shoal_s) / (per * 8 / boto_s):.2f} |")
    finally:
        moto.terminate(); moto.wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--messages", type=int, default=10000)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    try:
        print("| measure | shoal | baseline (same run) | ratio |\n|---|---|---|---|")
        cpu_per_call(a.calls, tmp)
        sqs_throughput(a.messages, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
