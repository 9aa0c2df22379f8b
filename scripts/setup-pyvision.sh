#!/usr/bin/env bash
# A small Python with OpenCV for data-preparation scripts the tests run
# (plate-ocr/data/vn_detect/extract_frames.py decodes video frames; the
# workspace's OpenCV is built without videoio). Versions pinned to the ones
# models/recogniser/requirements.txt trains with, so decoded pixels match
# the SHA-256s recorded beside the labels. Installed into .deps/pyvision;
# `.deps/pyvision/bin/python` is the interpreter either way.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.deps/pyvision
REQ="numpy==2.4.6 opencv-python-headless==5.0.0.93"
STAMP="$DEST/.ok-$(echo "$REQ" | sha256sum | cut -c1-12)"
if [ -f "$STAMP" ]; then
  echo "setup-pyvision: $DEST is up to date"
  exit 0
fi
rm -rf "$DEST"
if python3 -m venv "$DEST" >/dev/null 2>&1 && [ -x "$DEST/bin/pip" ]; then
  "$DEST/bin/pip" install -q $REQ
else
  echo "setup-pyvision: python3 -m venv not usable; installing with pip --target"
  rm -rf "$DEST"; mkdir -p "$DEST/bin"
  python3 -m pip install -q --target "$DEST/lib-target" $REQ
  printf '#!/bin/sh\nPYTHONPATH="%s${PYTHONPATH:+:$PYTHONPATH}" exec python3 "$@"\n' \
    "$(pwd)/$DEST/lib-target" > "$DEST/bin/python"
  chmod +x "$DEST/bin/python"
fi
"$DEST/bin/python" -c "import cv2, numpy; print('setup-pyvision: OpenCV', cv2.__version__)"
touch "$STAMP"
