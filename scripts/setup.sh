#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test the project: the C libraries
# the Swift targets link (nng, OpenBLAS, SentencePiece, protobuf-c) and the tools the tests
# and scripts call (spm_train, protoc, protoc-c, python3 with venv for the client tests, curl
# for the demo, iproute2 for the multi-host test, docker-compose 1.29 to check compose/ with
# `docker-compose config`: no Docker engine needed). Skips apt when everything is present.
set -euo pipefail

packages=(libnng-dev libopenblas-dev libsentencepiece-dev sentencepiece
          protobuf-compiler libprotobuf-c-dev protobuf-c-compiler
          python3 python3-venv curl iproute2 docker-compose)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v swift >/dev/null || { echo "setup: swift is not on PATH (Swift 6 toolchain required)" >&2; exit 1; }
