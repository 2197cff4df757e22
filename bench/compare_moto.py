#!/usr/bin/env python3
"""Runs one definition on shoal (local buckets) and on moto's Step Functions engine
(moto_server with execute_state_machine on), over the same CSV rows, in one run.

    compare_moto.py SHOAL_BINARY DEFINITION ROWS [--moto-timeout 600]

Prints one JSON line: rows, seconds and peak RSS for each engine, and their ratio.
Needs `pip install 'moto[server]' boto3`.
"""
import argparse, json, os, resource, shutil, socket, subprocess, sys, tempfile, time

here = os.path.dirname(os.path.abspath(__file__))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_shoal(binary, definition, rows, work):
    subprocess.run([sys.executable, os.path.join(here, "gen_csv.py"), work, str(rows)], check=True)
    t = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", binary, "run", definition, "--buckets", work, "--json"],
                       capture_output=True, text=True)
    secs = time.monotonic() - t
    out = json.loads(p.stdout)
    rss_kb = int(p.stderr.strip().splitlines()[-1])
    return {"status": out["status"], "seconds": round(secs, 3), "peak_rss_mb": round(rss_kb / 1024, 1)}


def run_moto(definition, rows, work, timeout):
    import boto3
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import urllib.request
        for _ in range(100):
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        req = urllib.request.Request(endpoint + "/moto-api/config", method="POST",
                                     data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode())
        urllib.request.urlopen(req)
        kw = dict(endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
        s3 = boto3.client("s3", **kw)
        sfn = boto3.client("stepfunctions", **kw)
        for b in ("bench", "results"):
            s3.create_bucket(Bucket=b)
        s3.upload_file(os.path.join(work, "bench", "items.csv"), "bench", "items.csv")
        sm = sfn.create_state_machine(name="bench", definition=open(definition).read(),
                                      roleArn="arn:aws:iam::123456789012:role/bench")["stateMachineArn"]
        t = time.monotonic()
        arn = sfn.start_execution(stateMachineArn=sm, input="{}")["executionArn"]
        status = "RUNNING"
        while status == "RUNNING" and time.monotonic() - t < timeout:
            time.sleep(0.2)
            status = sfn.describe_execution(executionArn=arn)["status"]
        secs = time.monotonic() - t
        rss = int(open(f"/proc/{server.pid}/status").read().split("VmHWM:")[1].split()[0])
        return {"status": status if status != "RUNNING" else "TIMED_OUT", "seconds": round(secs, 3),
                "peak_rss_mb": round(rss / 1024, 1)}
    finally:
        server.kill()
        server.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shoal")
    ap.add_argument("definition")
    ap.add_argument("rows", type=int)
    ap.add_argument("--moto-timeout", type=float, default=600)
    ap.add_argument("--skip-moto", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="shoal-bench-")
    try:
        shoal = run_shoal(a.shoal, a.definition, a.rows, work)
        moto = None if a.skip_moto else run_moto(a.definition, a.rows, work, a.moto_timeout)
        line = {"definition": os.path.basename(a.definition), "rows": a.rows, "shoal": shoal, "moto": moto}
        if moto and moto["status"] == "SUCCEEDED":
            line["moto_over_shoal"] = round(moto["seconds"] / shoal["seconds"], 1)
        print(json.dumps(line))
    finally:
        shutil.rmtree(work, ignore_errors=True)


main()
