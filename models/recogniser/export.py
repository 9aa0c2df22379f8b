"""Exports a trained checkpoint to ONNX with the contract's metadata, and checks it.

  python export.py CKPT.pt OUT.onnx [--version V]

Input `image` float32 [N,1,48,96] (gray, stretch-resized, x/255); output `probs`
float32 [N,T,K]: T = 10 fixed slots (decoder `slots`, version 1) or T = 48 CTC steps,
the plate's top row then its bottom row (decoder `ctc`, version 2; class 0 is the
blank). Verifies onnxruntime matches PyTorch on random and synthetic inputs.
"""

import argparse

import numpy as np
import onnx
import onnxruntime as ort
import torch

from common import CLASSES, IN_C, IN_H, IN_W, POOL_H, POOL_W, SLOTS, preprocess_rgb  # noqa: F401
from synth.render import make_sample
from train import build_model, is_ctc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("out")
    ap.add_argument("--version", default="1")
    ap.add_argument("--name", default="vn_plate_rec")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ck = torch.load(args.ckpt, map_location="cpu")
    cfg = ck["config"]
    model = build_model(cfg)
    model.load_state_dict(ck["model"])
    model.eval()
    dummy = torch.rand(2, IN_C, IN_H, IN_W)
    torch.onnx.export(model, (dummy,), args.out, input_names=["image"], output_names=["probs"],
                      dynamic_axes={"image": {0: "N"}, "probs": {0: "N"}}, opset_version=17,
                      do_constant_folding=True, dynamo=False)
    m = onnx.load(args.out)
    meta = {
        "alphabet": CLASSES,
        "input_height": str(IN_H),
        "input_width": str(IN_W),
        "input_channels": str(IN_C),
        "color_order": "GRAY",
        "resize": "stretch",
        "normalize": "x/255",
        "layout": "NCHW",
        "decoder": "ctc" if is_ctc(cfg) else "slots",
        "slots": str(model.steps if is_ctc(cfg) else SLOTS),
        "model_name": args.name,
        "model_version": args.version,
        "training_seed": str(cfg["seed"]),
        "trained_on": "synthetic" if not cfg.get("finetuned_on") else "synthetic+" + cfg["finetuned_on"],
        "gray_conversion": "0.299R+0.587G+0.114B",
    }
    del m.metadata_props[:]
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(m)
    onnx.save(m, args.out)

    # verify against PyTorch
    xs = [np.random.default_rng(0).random((3, IN_C, IN_H, IN_W), dtype=np.float32)]
    imgs = [preprocess_rgb(make_sample(7_000_000 + i)[0]) for i in range(8)]
    xs.append((np.stack(imgs)[:, None].astype(np.float32) / 255.0))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(args.out, so, providers=["CPUExecutionProvider"])
    for x in xs:
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = sess.run(["probs"], {"image": x})[0]
        err = float(np.abs(ref - got).max())
        assert got.shape == (x.shape[0], int(meta["slots"]), len(CLASSES)), got.shape
        assert err < 1e-4, f"onnxruntime differs from PyTorch by {err}"
        assert (ref.argmax(-1) == got.argmax(-1)).all()
        print(f"onnxruntime matches PyTorch: batch {x.shape[0]}, max abs diff {err:.2e}")
    print("opset", [o.version for o in m.opset_import], "metadata", meta)


if __name__ == "__main__":
    main()
