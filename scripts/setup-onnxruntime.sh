#!/usr/bin/env bash
# Puts ONNX Runtime's shared library under .deps/onnxruntime/lib, taken from the
# `onnxruntime` wheel on PyPI (the wheel carries libonnxruntime.so). The `ort`
# crate loads it at run time (`load-dynamic`), so nothing downloads binaries
# during a cargo build. Idempotent: does nothing when the library is present.
set -euo pipefail

VERSION="${ORT_VERSION:-1.31.1}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/.deps/onnxruntime"
LIB="$DEST/lib/libonnxruntime.so"

if [ -f "$LIB" ] && [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ]; then
  echo "setup-onnxruntime: $LIB ($VERSION) present"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "setup-onnxruntime: fetching the onnxruntime $VERSION wheel from PyPI"
python3 -m pip download --quiet --no-deps --only-binary=:all: \
  --dest "$tmp" "onnxruntime==$VERSION"
wheel="$(ls "$tmp"/onnxruntime-*.whl | head -n 1)"
python3 - "$wheel" "$tmp/x" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        if "/capi/libonnxruntime.so" in n:
            z.extract(n, sys.argv[2])
PY
so="$(find "$tmp/x" -name 'libonnxruntime.so*' -type f | sort | tail -n 1)"
if [ -z "$so" ]; then
  echo "setup-onnxruntime: the wheel $wheel holds no libonnxruntime.so" >&2
  exit 1
fi
mkdir -p "$DEST/lib"
cp "$so" "$DEST/lib/$(basename "$so")"
ln -sf "$(basename "$so")" "$LIB"
echo "$VERSION" > "$DEST/VERSION"
echo "setup-onnxruntime: installed $(basename "$so") -> $LIB"
