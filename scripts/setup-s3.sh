#!/usr/bin/env bash
# Puts the S3-compatible server the evidence-storage tests run
# (ingest-server/tests/storage_s3.rs) at .deps/s3s-fs/bin/s3s-fs: the
# `s3s-fs` crate from crates.io (the s3s project's file-system store; it
# checks every request's SigV4 signature), built with `cargo install`.
#
# Built once per machine: the build goes to a cache outside the work tree
# (TV_DEPS_CACHE, default ~/.cache/traffic-enforcement), so a fresh clone
# (CI) only copies the binary; the build itself, a debug build (half the
# time of a release one, fast enough for tests), takes about 2-3 minutes
# on 2 cores. Idempotent: does nothing when that version is in place.
# Garage, which a deployment would use, takes far longer to build, so the
# same tests run against it only in their own tier: `make test-garage`
# (scripts/setup-garage.sh); see ingest-server/README.md (*Evidence
# storage*).
set -euo pipefail

VERSION="${S3S_FS_VERSION:-0.14.1}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/.deps/s3s-fs"
BIN="$DEST/bin/s3s-fs"
CACHE="${TV_DEPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/traffic-enforcement}/s3s-fs-$VERSION"
CARGO="${CARGO:-cargo}"

if [ -x "$BIN" ] && [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ]; then
  echo "setup-s3: $BIN ($VERSION) present"
  exit 0
fi

if ! [ -x "$CACHE/bin/s3s-fs" ]; then
  echo "setup-s3: building s3s-fs $VERSION from crates.io into $CACHE (once per machine)"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # Its own target directory, so the workspace's build is not disturbed;
  # no debug info (a smaller binary, a shorter link).
  CARGO_PROFILE_DEV_DEBUG=0 "$CARGO" install s3s-fs --version "$VERSION" --locked \
    --features binary --debug --root "$tmp/root" --target-dir "$tmp/target"
  mkdir -p "$CACHE/bin"
  cp "$tmp/root/bin/s3s-fs" "$CACHE/bin/s3s-fs.partial"
  mv "$CACHE/bin/s3s-fs.partial" "$CACHE/bin/s3s-fs"
fi
mkdir -p "$DEST/bin"
cp "$CACHE/bin/s3s-fs" "$BIN.partial"
mv "$BIN.partial" "$BIN"
echo "$VERSION" > "$DEST/VERSION"
echo "setup-s3: $("$BIN" --version) -> $BIN"
