#!/usr/bin/env bash
# Sets up the machine and runs every test: the README's test command, and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build --build-tests
# protoc-gen-swift, so that the proto check regenerates the committed code and diffs it.
swift build --product protoc-gen-swift
swift test --skip-build --disable-swift-testing
