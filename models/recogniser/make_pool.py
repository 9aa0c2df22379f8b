"""Renders pools of synthetic training plates to .npz shards (128x64 gray + labels).

  python make_pool.py --config train_config.json --out DIR   # every shard the config names
  python make_pool.py OUT.npz START_SEED COUNT               # one shard

Sample i of a shard uses seed START_SEED + i, so a pool is reproducible from the config;
shards already present are kept.
"""

import json
import os
import sys
import time

import numpy as np

from common import POOL_H, POOL_W, encode, preprocess_rgb
from synth.render import make_sample


def make_shard(out, start, count):
    X = np.empty((count, POOL_H, POOL_W), np.uint8)
    Y = np.empty((count, 10), np.int64)
    two = np.empty(count, np.bool_)
    for i in range(count):
        img, pt = make_sample(start + i)
        X[i] = preprocess_rgb(img, POOL_W, POOL_H)
        Y[i] = encode(pt.canonical)
        two[i] = pt.two_line
    tmp = out + ".tmp.npz"
    np.savez(tmp, x=X, y=Y, two=two)
    os.replace(tmp, out)


def main():
    if len(sys.argv) == 4:
        make_shard(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
        return
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-shards", type=int, default=None, help="render only the first N shards")
    a = ap.parse_args()
    pc = json.load(open(a.config))["pool"]
    os.makedirs(a.out, exist_ok=True)
    for k in range(min(pc["shards"], a.max_shards or pc["shards"])):
        f = os.path.join(a.out, f"shard{k:02d}.npz")
        if os.path.exists(f):
            continue
        t = time.time()
        make_shard(f, pc["first_seed"] + k * pc["per_shard"], pc["per_shard"])
        print(f"{f}: {pc['per_shard']} plates in {time.time() - t:.0f} s", flush=True)


if __name__ == "__main__":
    main()
