#!/usr/bin/env bash
# Puts Garage, the S3-compatible store a deployment would use, at
# .deps/garage/bin/garage for the Garage tier of the evidence-storage tests
# (`make test-garage`: ingest-server/tests/storage_s3.rs with
# TV_S3_SERVER=garage). `make test` runs the same tests against the
# lighter s3s-fs (scripts/setup-s3.sh), which builds sooner (2-4 minutes
# against about 7) and starts in milliseconds.
#
# The `garage` crate from crates.io, built with `cargo install --locked`,
# with the LMDB metadata engine and bundled C libraries only (no SQLite,
# metrics, K2V; Garage needs bundled-libs or system-libs): the smallest
# feature set that runs a single node; a debug build without debug info
# (enough for tests; for s3s-fs it took half the time of a release
# build; Garage's release build was not measured). Built once
# per machine into a cache outside the work tree (TV_DEPS_CACHE, default
# ~/.cache/traffic-enforcement), so a fresh clone only copies the binary.
# The build took 6 min 41 s on 2 cores shared with other builds (see
# ingest-server/README.md, *Evidence storage*). Idempotent: does nothing
# when that version is in place.
set -euo pipefail

VERSION="${GARAGE_VERSION:-2.5.0}"
FEATURES="bundled-libs,lmdb"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/.deps/garage"
BIN="$DEST/bin/garage"
CACHE="${TV_DEPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/traffic-enforcement}/garage-$VERSION"
CARGO="${CARGO:-cargo}"

if [ -x "$BIN" ] && [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ]; then
  echo "setup-garage: $BIN ($VERSION) present"
  exit 0
fi

if ! [ -x "$CACHE/bin/garage" ]; then
  echo "setup-garage: building garage $VERSION (features: $FEATURES) from crates.io into $CACHE (once per machine; long)"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # Its own target directory, so the workspace's build is not disturbed;
  # no debug info (a smaller binary, a shorter link).
  CARGO_PROFILE_DEV_DEBUG=0 "$CARGO" install garage --version "$VERSION" --locked \
    --no-default-features --features "$FEATURES" --debug \
    --root "$tmp/root" --target-dir "$tmp/target"
  mkdir -p "$CACHE/bin"
  cp "$tmp/root/bin/garage" "$CACHE/bin/garage.partial"
  mv "$CACHE/bin/garage.partial" "$CACHE/bin/garage"
fi
mkdir -p "$DEST/bin"
cp "$CACHE/bin/garage" "$BIN.partial"
mv "$BIN.partial" "$BIN"
echo "$VERSION" > "$DEST/VERSION"
echo "setup-garage: $("$BIN" --version 2>/dev/null | head -1) -> $BIN"
