#!/usr/bin/env python3
"""Writes N JSONL items to BUCKETS/bench/items.jsonl: gen_jsonl.py BUCKETS N"""
import os, sys

root, n = sys.argv[1], int(sys.argv[2])
os.makedirs(os.path.join(root, "bench"), exist_ok=True)
os.makedirs(os.path.join(root, "results"), exist_ok=True)
with open(os.path.join(root, "bench", "items.jsonl"), "w") as f:
    chunk = []
    for i in range(n):
        chunk.append('{"id":%d,"name":"item-%d","score":%d}\n' % (i, i, i % 997))
        if len(chunk) == 10000:
            f.write("".join(chunk))
            chunk = []
    f.write("".join(chunk))
