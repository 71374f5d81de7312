#!/usr/bin/env bash
# Sets up the machine and runs every test: the README's test command, and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The official openai client and Prometheus' parser, for the router's client and metrics tests
# (PyPI, in a venv of our own).
if [ ! -x .build/pyenv/bin/python ] || ! .build/pyenv/bin/python -c "import openai, prometheus_client" 2>/dev/null; then
  python3 -m venv .build/pyenv && .build/pyenv/bin/pip install --quiet openai prometheus_client \
    || echo "test: could not install the openai and prometheus_client packages; their tests will be skipped" >&2
fi
export GEMMA_TEST_PYTHON="$PWD/.build/pyenv/bin/python"
swift build --build-tests
# protoc-gen-swift, so that the proto check regenerates the committed code and diffs it.
swift build --product protoc-gen-swift
swift test --skip-build --disable-swift-testing
