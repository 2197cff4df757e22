#!/usr/bin/env python3
"""Runs `shoal run ...` and watches it: peak RSS (the kernel's ru_maxrss of the
process), RSS sampled every second (to show whether it grows), and the first result
record: the first moment a file under RESULTS holds a byte (the ResultWriter's part
file, which the run flushes at each 20 ms checkpoint), both from the moment the
process was started. Prints one JSON line.

    watch_run.py RESULTS -- shoal run DEF --buckets DIR ...
"""
import json, os, resource, subprocess, sys, threading, time

results = sys.argv[1]
cmd = sys.argv[sys.argv.index("--") + 1:]
t0 = time.monotonic()
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
first_record = None
samples = []  # (seconds, RSS MB)
done = threading.Event()


def has_bytes(root):
    for d, _, files in os.walk(root):
        for f in files:
            try:
                if os.path.getsize(os.path.join(d, f)) > 0:
                    return True
            except OSError:
                pass
    return False


def watch():
    global first_record
    next_sample = 0.0
    while not done.is_set():
        now = time.monotonic() - t0
        if first_record is None and has_bytes(results):
            first_record = now
        if now >= next_sample:
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            samples.append((round(now, 1), int(line.split()[1]) // 1024))
            except OSError:
                pass
            next_sample += 1.0
        time.sleep(0.005 if first_record is None else 0.2)


w = threading.Thread(target=watch)
w.start()
out = p.stdout.read()
_, status, ru = os.wait4(p.pid, 0)
secs = time.monotonic() - t0
done.set()
w.join()
print(json.dumps({
    "exit": os.waitstatus_to_exitcode(status),
    "seconds": round(secs, 2),
    "peak_rss_mb": round(ru.ru_maxrss / 1024, 1),
    "first_record_s": None if first_record is None else round(first_record, 3),
    "rss_samples_mb": samples,
    "output": out.decode()[-2000:],
}))
