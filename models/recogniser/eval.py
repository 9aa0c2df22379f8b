"""Evaluates the ONNX plate recogniser on labelled crop folders (labels.csv image,text[,lines]).

Reports per set: exact-plate accuracy in canonical form, split by one-/two-line where the
labels carry a `lines` column, character error rate (edit distance / label length), and
latency per plate (batch 1, one thread, onnxruntime). Writes a Markdown report.

  python eval.py MODEL.onnx --sets DIR [DIR...] --md EVAL.md [--failures OUT_DIR]
"""

import argparse
import csv
import os
import platform
import time

import cv2
import numpy as np
import onnx
import onnxruntime as ort

from common import canonical
from synth.texts import fits_layout


def edit_distance(a, b):
    d = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, cb in enumerate(b, 1):
            cur = min(d[j] + 1, d[j - 1] + 1, prev + (ca != cb))
            prev, d[j] = d[j], cur
    return d[len(b)]


class Reader:
    """Runs the ONNX model exactly as the metadata says (what the Rust side does)."""

    def __init__(self, path):
        meta = {p.key: p.value for p in onnx.load(path).metadata_props}
        self.meta = meta
        self.h, self.w = int(meta["input_height"]), int(meta["input_width"])
        self.c = int(meta["input_channels"])
        self.alphabet = meta["alphabet"]
        assert meta["normalize"] == "x/255" and meta["resize"] == "stretch"
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def prep(self, bgr):
        if self.c == 1:
            img = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        else:
            img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        img = cv2.resize(img, (self.w, self.h), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
        return img[None] if self.c == 1 else img.transpose(2, 0, 1)

    def probs(self, batch):
        return self.sess.run(["probs"], {"image": batch})[0]

    def decode(self, p):
        ids = p.argmax(-1)
        if self.meta.get("decoder") == "ctc":
            # collapse repeats, drop blanks; confidence = least sure emitted character
            keep = [t for t in range(len(ids)) if ids[t] != 0 and (t == 0 or ids[t] != ids[t - 1])]
            text = "".join(self.alphabet[ids[t]] for t in keep)
            conf = float(min((p[t].max() for t in keep), default=0.0))
            return text, conf
        text = "".join(self.alphabet[i] for i in ids if i != 0)
        conf = float(p.max(-1).min())
        return text, conf


def load_set(d):
    rows = []
    with open(os.path.join(d, "labels.csv"), newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            p = os.path.join(d, "images", r["image"])
            if not os.path.exists(p):
                p = os.path.join(d, r["image"])
            rows.append((p, canonical(r["text"]), r.get("lines")))
    return rows


def evaluate(reader, d, failures_dir=None):
    rows = load_set(d)
    res = {"n": 0, "ok": 0, "ed": 0, "chars": 0, "by_lines": {}, "valid": [0, 0]}
    fails = []
    xs = []
    for p, _, _ in rows:
        img = cv2.imread(p, cv2.IMREAD_COLOR)
        xs.append(reader.prep(img))
    X = np.stack(xs).astype(np.float32)
    P = np.concatenate([reader.probs(X[i:i + 64]) for i in range(0, len(X), 64)])
    for (p, label, lines), pr in zip(rows, P):
        pred, conf = reader.decode(pr)
        ok = pred == label
        res["n"] += 1
        res["ok"] += ok
        res["ed"] += edit_distance(pred, label)
        res["chars"] += max(1, len(label))
        if fits_layout(label):
            res["valid"][0] += 1
            res["valid"][1] += ok
        if lines:
            b = res["by_lines"].setdefault(lines, [0, 0])
            b[0] += 1
            b[1] += ok
        if not ok:
            fails.append((os.path.basename(p), label, pred, conf))
    # latency: batch 1, one thread, after warm-up
    for x in X[:5]:
        reader.probs(x[None])
    n = min(len(X), 200)
    times = []
    for x in X[:n]:
        t = time.perf_counter()
        reader.probs(x[None])
        times.append(time.perf_counter() - t)
    res["ms"] = float(np.median(times)) * 1000
    if failures_dir:
        os.makedirs(failures_dir, exist_ok=True)
        with open(os.path.join(failures_dir, os.path.basename(d.rstrip("/")) + "_failures.csv"), "w") as fh:
            fh.write("image,label,pred,min_slot_conf\n")
            for f in fails:
                fh.write(f"{f[0]},{f[1]},{f[2]},{f[3]:.3f}\n")
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--sets", nargs="+", required=True)
    ap.add_argument("--md", default=None)
    ap.add_argument("--failures", default=None, help="dir for per-set failure lists (keep out of the repo)")
    args = ap.parse_args()
    reader = Reader(args.model)
    lines = ["| set | plates | exact | one-line | two-line | exact where the label fits a VN layout | CER | median ms/plate (1 thread, batch 1) |",
             "|---|---|---|---|---|---|---|---|"]
    for d in args.sets:
        r = evaluate(reader, d, args.failures)
        bl, v = r["by_lines"], r["valid"]
        f = lambda k: f"{bl[k][1] / bl[k][0] * 100:.1f}% ({bl[k][1]}/{bl[k][0]})" if k in bl else "–"
        row = (f"| {os.path.basename(d.rstrip('/'))} | {r['n']} | {r['ok'] / r['n'] * 100:.1f}% ({r['ok']}/{r['n']}) "
               f"| {f('1')} | {f('2')} | {v[1] / max(1, v[0]) * 100:.1f}% ({v[1]}/{v[0]}) "
               f"| {r['ed'] / r['chars'] * 100:.1f}% | {r['ms']:.2f} |")
        print(row, flush=True)
        lines.append(row)
    cpu = platform.processor() or platform.machine()
    try:
        for ln in open("/proc/cpuinfo"):
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    footer = (f"\nModel `{os.path.basename(args.model)}` version {reader.meta.get('model_version')}, "
              f"onnxruntime {ort.__version__}, CPU: {cpu}. Exact = whole plate right in canonical form "
              f"(0-9, A-Z, Đ). CER = edit distance / label length. Latency is model run only "
              f"(preprocessing excluded), batch 1, one intra-op thread, median over up to 200 crops. "
              f"'Fits a VN layout': labels that are a possible civil Vietnamese plate (2-digit code, series, "
              f"4-5 digits); the rest of the machine-made labels are misreads or foreign plates.\n")
    footer += (f"Load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
               f"(other jobs share the machine, so latency is an upper bound).\n")
    print(footer)
    if args.md:
        with open(args.md, "w", encoding="utf-8") as fh:
            fh.write("# Plate recogniser evaluation\n\n")
            fh.write("Produced by `make -C models eval-recogniser` (models/recogniser/eval.py).\n\n")
            fh.write("\n".join(lines) + "\n" + footer)


if __name__ == "__main__":
    main()
