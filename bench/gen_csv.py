#!/usr/bin/env python3
"""Writes N CSV rows (plus a header) to BUCKETS/bench/items.csv: gen_csv.py BUCKETS N"""
import os, sys

root, n = sys.argv[1], int(sys.argv[2])
os.makedirs(os.path.join(root, "bench"), exist_ok=True)
os.makedirs(os.path.join(root, "results"), exist_ok=True)
with open(os.path.join(root, "bench", "items.csv"), "w") as f:
    f.write("id,name,score\n")
    for start in range(0, n, 10000):
        f.write("".join("%d,item-%d,%d\n" % (i, i, i % 997) for i in range(start, min(n, start + 10000))))
