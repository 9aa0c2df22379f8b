#!/usr/bin/env python3
"""Writes the images of the Vietnamese plate-detection set into a cache directory.

The labels (one .txt per image) are committed beside this script; the images are
not (they come from ../shared/data, which must not be copied into the repository).
This script reads frames.toml, decodes the listed video frames (sequential
decoding, no seeking) and writes them as PNG, copies the listed vn_scenes images,
and checks every image against the SHA-256 recorded in frames.toml, so that the
labels and the pixels cannot drift apart.

The plate-ocr CLI cannot decode video (the workspace builds OpenCV without
videoio), so this is Python with OpenCV from .deps/pyvision (`make setup`, or
scripts/setup-pyvision.sh; models/.venv works too):

    .deps/pyvision/bin/python plate-ocr/data/vn_detect/extract_frames.py \
        [--data ../shared/data] [--out .cache/vn_detect]

Exit status 0 when every image is in place and verified, 1 otherwise.
"""

import argparse
import hashlib
import shutil
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                    help="the shared evaluation data (default: <repo>/../shared/data)")
    ap.add_argument("--out", type=Path, default=REPO / ".cache" / "vn_detect",
                    help="where the images go (default: <repo>/.cache/vn_detect)")
    args = ap.parse_args()

    import cv2  # noqa: PLC0415 (only needed past argument parsing)

    spec = tomllib.loads((HERE / "frames.toml").read_text(encoding="utf-8"))
    args.out.mkdir(parents=True, exist_ok=True)
    errors = []

    # Video frames, grouped by video: decode each video once, sequentially.
    by_video: dict[str, list[dict]] = {}
    for fr in spec.get("frame", []):
        by_video.setdefault(fr["video"], []).append(fr)
    for video, frames in sorted(by_video.items()):
        path = args.data / video
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            errors.append(f"{path}: cannot open")
            continue
        wanted = {fr["index"]: fr for fr in frames}
        last = max(wanted)
        index = 0
        while index <= last:
            ok, img = cap.read()
            if not ok:
                break
            fr = wanted.get(index)
            if fr is not None:
                digest = hashlib.sha256(img.tobytes()).hexdigest()
                if digest != fr["bgr_sha256"]:
                    errors.append(f"{video} frame {index}: decoded pixels differ "
                                  f"(sha256 {digest}, frames.toml {fr['bgr_sha256']})")
                elif not cv2.imwrite(str(args.out / fr["file"]), img):
                    errors.append(f"{args.out / fr['file']}: cannot write")
            index += 1
        cap.release()
        for i in sorted(wanted):
            if i >= index:
                errors.append(f"{video}: frame {i} not reached (video has {index} frames)")

    for sc in spec.get("scene", []):
        src = args.data / sc["source"]
        dst = args.out / sc["file"]
        if not src.is_file():
            errors.append(f"{src}: missing")
            continue
        digest = sha256_file(src)
        if digest != sc["sha256"]:
            errors.append(f"{src}: sha256 {digest}, frames.toml {sc['sha256']}")
            continue
        if not dst.is_file() or sha256_file(dst) != digest:
            shutil.copyfile(src, dst)

    n = len(spec.get("frame", [])) + len(spec.get("scene", []))
    if errors:
        for e in errors:
            print(f"extract_frames: {e}", file=sys.stderr)
        return 1
    print(f"extract_frames: {n} images in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
