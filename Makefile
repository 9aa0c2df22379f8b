# One-command set-up, build, test and demo. Every target installs what it
# needs first and is safe to run again.

SHELL := /bin/bash
ROOT  := $(CURDIR)
CARGO ?= cargo

# ONNX Runtime comes from the PyPI wheel (scripts/setup-onnxruntime.sh);
# the `ort` crate loads it at run time from this path.
export ORT_DYLIB_PATH ?= $(ROOT)/.deps/onnxruntime/lib/libonnxruntime.so
export MODELS_DIR     ?= $(ROOT)/.models
export RUST_BACKTRACE ?= 0

.PHONY: check-server-deps all setup setup-system setup-onnxruntime setup-node setup-node-push setup-s3 setup-garage setup-pyvision models build lint test test-garage demo bench bench-ingest bench-outbox bench-cameras fuzz fuzz-smoke clean help

all: build

help:
	@echo "make demo   - install what is missing, build, run on embedded defaults"
	@echo "make test   - install what is missing, build, run every test"
	@echo "make models - put every model of models/manifest.toml in $(MODELS_DIR)"
	@echo "make bench  - benchmarks (slow; not part of make test)"
	@echo "make test-garage - the S3 evidence-storage tests against Garage (long first build; not part of make test)"

setup: setup-system setup-onnxruntime models setup-node setup-node-push setup-s3 setup-pyvision

# The OpenID Connect provider the single sign-on tests run
# (ingest-server/tests/oidc): npm ci, unless node_modules is newer than
# package-lock.json.
OIDC_TEST_DIR := ingest-server/tests/oidc
setup-node:
	@command -v npm >/dev/null || { echo "setup-node: Node.js 20+ and npm are needed (apt-get install nodejs npm)"; exit 1; }
	@if [ $(OIDC_TEST_DIR)/node_modules/.package-lock.json -nt $(OIDC_TEST_DIR)/package-lock.json ]; then \
	  echo "setup-node: $(OIDC_TEST_DIR)/node_modules is up to date"; \
	else npm ci --prefix $(OIDC_TEST_DIR) --no-audit --no-fund; fi

# The independent Web Push receiver the notice tests decrypt with
# (ingest-server/tests/push: http_ece): npm ci, unless node_modules is
# newer than package-lock.json.
PUSH_TEST_DIR := ingest-server/tests/push
setup-node-push:
	@command -v npm >/dev/null || { echo "setup-node-push: Node.js 20+ and npm are needed (apt-get install nodejs npm)"; exit 1; }
	@if [ $(PUSH_TEST_DIR)/node_modules/.package-lock.json -nt $(PUSH_TEST_DIR)/package-lock.json ]; then \
	  echo "setup-node-push: $(PUSH_TEST_DIR)/node_modules is up to date"; \
	else npm ci --prefix $(PUSH_TEST_DIR) --no-audit --no-fund; fi

setup-system:
	@bash scripts/setup-system.sh

setup-onnxruntime:
	@bash scripts/setup-onnxruntime.sh

# The S3-compatible server of the evidence-storage tests
# (ingest-server/tests/storage_s3.rs): s3s-fs from crates.io, built once
# into .deps/s3s-fs/ and kept.
setup-s3:
	@CARGO="$(CARGO)" bash scripts/setup-s3.sh

# Garage, the S3 store a deployment would run, for the Garage tier of the
# evidence-storage tests: built once per machine (about 7 minutes on 2
# cores, ingest-server/README.md) into .deps/garage/. Not part of `make setup`: `make test` runs those
# tests against s3s-fs (setup-s3), which builds in minutes.
setup-garage:
	@CARGO="$(CARGO)" bash scripts/setup-garage.sh

# Python + OpenCV for the tests' data preparation (video frames of the
# plate-detection set), pinned like models/recogniser/requirements.txt.
setup-pyvision:
	@bash scripts/setup-pyvision.sh

models:
	@$(CARGO) run --quiet -p model-resolver -- fetch --network

build: setup
	$(CARGO) build --workspace --all-targets

lint: build
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Lint first, so the test runner's summary is the last thing printed.
test: build check-server-deps lint fuzz-smoke
	$(CARGO) test --workspace --no-fail-fast

# The S3 evidence-storage tests (ingest-server/tests/storage_s3.rs)
# against Garage instead of s3s-fs. Not part of `make test`.
test-garage: setup-garage
	TV_S3_SERVER=garage $(CARGO) test -p ingest-server --test storage_s3

# The server links the plate grammar only: never ONNX Runtime or OpenCV.
check-server-deps:
	@set -o pipefail; tree="$$($(CARGO) tree -p ingest-server -e normal --prefix none)" || exit 1; \
	if grep -qE '^(ort|opencv) ' <<<"$$tree"; then \
	  echo "ingest-server must not depend on ort or opencv (use plate-ocr without default features)"; exit 1; \
	else echo "check-server-deps: ingest-server links neither ort nor opencv"; fi

# The server and an edge agent on this machine (scripts/demo.sh says what
# runs); SOURCE=file-or-rtsp SITE=site.toml adds your own camera.
demo: setup
	$(CARGO) build --workspace
	SOURCE="$(SOURCE)" SITE="$(SITE)" bash scripts/demo.sh

bench: setup
	$(CARGO) bench -p plate-ocr

# Ingest throughput (ingest-server/README.md) and the edge outbox
# (edge-agent/README.md), release builds.
bench-ingest: setup
	$(CARGO) build --release -p ingest-server --bin ingest-loadgen
	target/release/ingest-loadgen --devices 50 --events 5000 --window 8

bench-outbox: setup
	$(CARGO) run --release -p edge-agent --example outbox_bench -- 10000 150000

# Real-time 1080p25 cameras one box sustains at 10 analysed fps each
# (edge-agent/README.md): CAMERAS=4 make bench-cameras
CAMERAS ?= 4
bench-cameras: setup
	edge-agent/bench/cameras.sh $(CAMERAS) 30

# Long property-based fuzzing of everything that parses outside input
# (wire messages, topics, plate text, tracker input): the same properties
# `make test` runs with proptest's default 256 cases, here with many more.
FUZZ_CASES ?= 200000
fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --release -p protocol --test canonical_props --test topics
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --release -p plate-ocr --no-default-features --test grammar_props --test fuse
	PROPTEST_CASES=$(shell expr $(FUZZ_CASES) / 100) $(CARGO) test --release -p edge-agent --test track_tracker

# Coverage-guided fuzzing (libFuzzer) of the signed envelope, the typed event
# and heartbeat, the signature check and topics: protocol/fuzz, laid out for
# `cargo fuzz`, built here with plain stable cargo and the instrumentation
# cargo-fuzz adds (no sanitizer: Rust code, looking for panics and broken
# round trips). Each target runs FUZZ_SECONDS from the committed seeds plus
# the corpus it grew before (under protocol/fuzz/target, not committed).
# A crash stops the build and leaves crash-* beside the corpus: turn it into
# a regression test in protocol/tests before fixing it.
FUZZ_SECONDS ?= 20
FUZZ_TARGETS := envelope sign_roundtrip
FUZZ_RUSTFLAGS := -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks
# An explicit --target keeps the instrumentation out of build scripts.
FUZZ_HOST = $(shell rustc -vV | sed -n 's/^host: //p')
fuzz-smoke:
	cd protocol/fuzz && RUSTFLAGS="$(FUZZ_RUSTFLAGS)" $(CARGO) build --release --bins --quiet --target $(FUZZ_HOST)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p protocol/fuzz/target/corpus/$$t protocol/fuzz/target/artifacts/$$t; \
	  echo "fuzz-smoke: $$t for $(FUZZ_SECONDS) s"; \
	  log=protocol/fuzz/target/$$t.log; \
	  if protocol/fuzz/target/$(FUZZ_HOST)/release/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -print_final_stats=1 \
	    -artifact_prefix=protocol/fuzz/target/artifacts/$$t/ \
	    protocol/fuzz/target/corpus/$$t protocol/fuzz/seeds/$$t >$$log 2>&1; then \
	    grep -E '^stat::(number_of_executed_units|new_units_added)' $$log || true; \
	  else \
	    tail -40 $$log; echo "fuzz-smoke: $$t failed; inputs in protocol/fuzz/target/artifacts/$$t/"; exit 1; \
	  fi; \
	done

clean:
	$(CARGO) clean
