"""Trains the plate recogniser on synthetic plates (or fine-tunes it on a labels.csv dir).

Synthetic pools come from make_pool.py (shards of 64x128 gray images); cheap batched
augmentation (affine, contrast, gamma, noise) is applied on the fly. Weights are kept
as an exponential moving average; the EMA weights are saved.

  python train.py --config train_config.json --pool ../out/pool --out ../out/recogniser --phase 1
  python train.py --config train_config.json --pool ../out/pool --out ../out/recogniser --phase 2
  python train.py --config train_config.json --pool ../out/pool --out DIR \
      --init vn_plate_rec.onnx.pt --real DEPLOYMENT_DIR --steps 3000   # fine-tune
"""

import argparse
import copy
import csv
import glob
import json
import math
import os
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from common import CLASSES, IN_H, IN_W, POOL_H, POOL_W, SLOTS, canonical, encode, preprocess_rgb
from model import PlateRecogniser, PlateRecogniserCTC


def load_pool(pool_dir, shards=None):
    """Every finished shard in pool_dir, or only shardNN for NN in range(*shards)."""
    xs, ys = [], []
    for f in sorted(glob.glob(os.path.join(pool_dir, "*.npz"))):
        if f.endswith(".tmp.npz"):
            continue
        if shards is not None:
            name = os.path.basename(f)
            if not (name.startswith("shard") and name[5:-4].isdigit() and shards[0] <= int(name[5:-4]) < shards[1]):
                continue
        try:
            d = np.load(f)
            xs.append(d["x"]); ys.append(d["y"])
        except Exception:   # a shard still being written
            continue
    if not xs:
        raise SystemExit(f"no pool shards in {pool_dir}; run make_pool.py first")
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def load_real(dir_):
    """A deployment's own labelled crops: DIR/labels.csv (image,text), images in DIR or DIR/images."""
    xs, ys = [], []
    with open(os.path.join(dir_, "labels.csv"), newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            p = os.path.join(dir_, "images", row["image"])
            if not os.path.exists(p):
                p = os.path.join(dir_, row["image"])
            img = cv2.imread(p, cv2.IMREAD_COLOR)
            text = canonical(row["text"])
            if img is None or not (1 <= len(text) <= SLOTS) or any(c not in CLASSES[1:] for c in text):
                continue
            xs.append(preprocess_rgb(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), POOL_W, POOL_H))
            ys.append(encode(text))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def augment(x, gen):
    """x: uint8 [B,h,w] -> float [B,1,IN_H,IN_W] in 0..1 with random affine and photometric changes."""
    b = x.shape[0]
    x = x.float().unsqueeze(1) / 255.0
    ang = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(4)
    sc = 1 + (torch.rand(b, generator=gen) * 2 - 1) * 0.08
    sx = sc * (1 + (torch.rand(b, generator=gen) * 2 - 1) * 0.06)
    tx = (torch.rand(b, generator=gen) * 2 - 1) * 0.05
    ty = (torch.rand(b, generator=gen) * 2 - 1) * 0.05
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = torch.cos(ang) / sx
    theta[:, 0, 1] = -torch.sin(ang) / sx
    theta[:, 1, 0] = torch.sin(ang) / sc
    theta[:, 1, 1] = torch.cos(ang) / sc
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, (b, 1, IN_H, IN_W), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    g = torch.exp((torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * 0.3)
    x = x.clamp(1e-4, 1) ** g
    c = 0.7 + torch.rand(b, 1, 1, 1, generator=gen) * 0.6
    m = x.mean(dim=(2, 3), keepdim=True)
    x = (x - m) * c + m + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * 0.08
    x = x + torch.randn(x.shape, generator=gen) * torch.rand(b, 1, 1, 1, generator=gen) * 0.04
    return x.clamp(0, 1)


def build_model(cfg):
    m = cfg["model"]
    if m.get("kind") == "ctc":
        return PlateRecogniserCTC(len(CLASSES), 1, IN_H, IN_W, m["dim"], m["heads"], m["layers"], tuple(m["channels"]))
    return PlateRecogniser(len(CLASSES), SLOTS, 1, IN_H, IN_W, m["dim"], m["heads"], m["layers"],
                           m.get("head", "flat"), m.get("slot_dim", 64), m.get("squeeze", 32))


def is_ctc(cfg):
    return cfg["model"].get("kind") == "ctc"


def loss_and_hits(model, cfg, xb, yb, smoothing):
    """Training loss and, per sample, whether the greedy read is the whole plate."""
    logits = model.logits(xb)
    if not is_ctc(cfg):
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), label_smoothing=smoothing)
        hit = logits.argmax(-1) == yb
        return loss, hit.all(-1), hit.float().mean()
    logp = F.log_softmax(logits, dim=-1)
    lengths = (yb > 0).sum(1)
    loss = F.ctc_loss(logp.transpose(0, 1), yb, torch.full((len(yb),), logits.shape[1], dtype=torch.long), lengths,
                      blank=0, zero_infinity=True)
    with torch.no_grad():
        hits = torch.tensor([ctc_greedy(a) == t[:n].tolist() for a, t, n in zip(logits.argmax(-1), yb, lengths)])
    return loss, hits, hits.float().mean()


def ctc_greedy(ids):
    """Collapse repeats, drop blanks (class 0)."""
    out, prev = [], 0
    for i in ids.tolist():
        if i != prev and i != 0:
            out.append(i)
        prev = i
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--pool", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--phase", type=int, default=None, help="training phase from the config's `phases`")
    ap.add_argument("--init", default=None, help="checkpoint (.pt) to start from")
    ap.add_argument("--real", default=None, help="fine-tune: dir with labels.csv (image,text)")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: config)")
    ap.add_argument("--minutes", type=float, default=None, help="stop after this wall time (schedule kept)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: config)")
    args = ap.parse_args()
    cfg = json.load(open(args.config))
    tc = cfg["train"]
    torch.set_num_threads(args.threads or tc.get("threads", 1))
    torch.manual_seed(cfg["seed"])
    gen = torch.Generator().manual_seed(cfg["seed"])
    os.makedirs(args.out, exist_ok=True)

    model = build_model(cfg)
    if args.init:
        model.load_state_dict(torch.load(args.init, map_location="cpu")["model"])
    ema = copy.deepcopy(model).eval()
    steps = args.steps or tc["steps"]
    shards = None
    if args.phase:
        ph = cfg["phases"][args.phase - 1]
        steps = args.steps or ph["steps"]
        args.lr = args.lr or ph["lr"]
        shards = ph.get("shards")
        if ph.get("init_from_previous"):
            model.load_state_dict(torch.load(os.path.join(args.out, "ckpt.pt"), map_location="cpu")["model"])
            ema = copy.deepcopy(model).eval()
    lr = args.lr or (tc["lr"] if not args.real else tc["lr"] * 0.2)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=tc["weight_decay"])
    warm = int(steps * 0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warm) if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))) * 0.98 + 0.02)

    X, Y = load_pool(args.pool, shards)
    RX = RY = None
    if args.real:
        RX, RY = load_real(args.real)
        cfg["finetuned_on"] = "deployment"
        print(f"fine-tuning with {len(RX)} real crops mixed 50/50 with synthetic", flush=True)
    print(f"pool {len(X)} samples; {sum(p.numel() for p in model.parameters())} params; {steps} steps", flush=True)
    bs = tc["batch"]
    t0 = time.time()
    run_loss = run_acc = run_cacc = None
    for step in range(steps):
        if step % 500 == 0 and step > 0 and not args.real:
            X, Y = load_pool(args.pool, shards)   # picks up shards finished meanwhile
        idx = torch.randint(len(X), (bs,), generator=gen)
        xb, yb = X[idx], Y[idx]
        if RX is not None:
            ridx = torch.randint(len(RX), (bs // 2,), generator=gen)
            xb = torch.cat([xb[: bs - bs // 2], RX[ridx]])
            yb = torch.cat([yb[: bs - bs // 2], RY[ridx]])
        xb = augment(xb, gen)
        model.train()
        loss, hits, cacc_t = loss_and_hits(model, cfg, xb, yb, tc["label_smoothing"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            d = min(tc["ema"], (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(d).add_(pm.detach(), alpha=1 - d)
            for be, bm in zip(ema.buffers(), model.buffers()):
                be.copy_(bm)
            acc = hits.float().mean().item()
            cacc = float(cacc_t)
        run_loss = loss.item() if run_loss is None else 0.98 * run_loss + 0.02 * loss.item()
        run_acc = acc if run_acc is None else 0.98 * run_acc + 0.02 * acc
        run_cacc = cacc if run_cacc is None else 0.98 * run_cacc + 0.02 * cacc
        if step % 100 == 0 or step == steps - 1:
            el = time.time() - t0
            print(f"step {step} loss {run_loss:.3f} train-plate-acc {run_acc:.3f} slot-acc {run_cacc:.3f} lr {sched.get_last_lr()[0]:.2e} {el/60:.1f} min", flush=True)
        if step % 1000 == 0 or step == steps - 1:
            torch.save({"model": ema.state_dict(), "config": cfg, "step": step}, os.path.join(args.out, "ckpt.pt"))
        if args.minutes and time.time() - t0 > args.minutes * 60:
            print(f"time limit reached at step {step}", flush=True)
            break
    torch.save({"model": ema.state_dict(), "config": cfg, "step": step}, os.path.join(args.out, "ckpt.pt"))
    print("saved", os.path.join(args.out, "ckpt.pt"), flush=True)


if __name__ == "__main__":
    main()
