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

# The library is pinned by its SHA-256, not only by the wheel's version: a
# package index (or a mirror of it) serving other bytes under the same name
# must not put them into every process that reads plates. The library inside
# the wheel is the same for every CPython tag (checked for cp311, cp312 and
# cp313), so one hash per architecture. Another version needs its hash given
# in ORT_SHA256.
case "$VERSION/$(uname -m)" in
  1.31.1/x86_64) PINNED=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3 ;;
  1.31.1/aarch64) PINNED=8aa3b76b28c778a2b1dd660d34161adb1d508c9ccd04ff9dc80e26eca5df8467 ;;
  *) PINNED="" ;;
esac
WANT="${ORT_SHA256:-$PINNED}"
if [ -z "$WANT" ]; then
  echo "setup-onnxruntime: no SHA-256 known for onnxruntime $VERSION on $(uname -m); set ORT_SHA256" >&2
  exit 1
fi

if [ -f "$LIB" ] && [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ] \
  && [ "$(sha256sum < "$LIB" | cut -d' ' -f1)" = "$WANT" ]; then
  echo "setup-onnxruntime: $LIB ($VERSION, sha256 verified) present"
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
got="$(sha256sum < "$so" | cut -d' ' -f1)"
if [ "$got" != "$WANT" ]; then
  echo "setup-onnxruntime: $(basename "$so") from $(basename "$wheel") has sha256 $got, expected $WANT; not installed" >&2
  exit 1
fi
mkdir -p "$DEST/lib"
cp "$so" "$DEST/lib/$(basename "$so")"
ln -sf "$(basename "$so")" "$LIB"
echo "$VERSION" > "$DEST/VERSION"
echo "setup-onnxruntime: installed $(basename "$so") (sha256 $got) -> $LIB"
