#!/usr/bin/env bash
# Regenerates the Swift code for the wire contract, Proto/gemma/v1/*.proto, into
# Sources/GemmaWire/Generated (or into the folder given as the first argument), with
# Debian's protoc and swift-protobuf's protoc-gen-swift, then writes SOURCES.sha256 there:
# the hashes of the .proto files and of the generated code, which the tests check
# (`sha256sum --check Sources/GemmaWire/Generated/SOURCES.sha256` does the same by hand).
#
# protoc-gen-swift is taken from $PROTOC_GEN_SWIFT, else from PATH, else built from the
# swift-protobuf version Package.swift resolves, with
# `swift build --product protoc-gen-swift --scratch-path "${SWIFT_SCRATCH_PATH:-.build}"`
# (about a minute in debug on two cores).
set -euo pipefail
cd "$(dirname "$0")/.."

generated=Sources/GemmaWire/Generated
out="${1:-$generated}"

command -v protoc >/dev/null || { echo "generate-proto: protoc not found (apt-get install protobuf-compiler, or run scripts/setup.sh)" >&2; exit 1; }

plugin="${PROTOC_GEN_SWIFT:-}"
if [ -z "$plugin" ]; then
  plugin="$(command -v protoc-gen-swift || true)"
fi
if [ -z "$plugin" ]; then
  scratch="${SWIFT_SCRATCH_PATH:-.build}"
  echo "generate-proto: building protoc-gen-swift in $scratch" >&2
  swift build --product protoc-gen-swift --scratch-path "$scratch" >&2
  plugin="$(swift build --product protoc-gen-swift --scratch-path "$scratch" --show-bin-path)/protoc-gen-swift"
fi
[ -x "$plugin" ] || { echo "generate-proto: $plugin is not an executable protoc-gen-swift" >&2; exit 1; }

protos=(Proto/gemma/v1/*.proto)

mkdir -p "$out"
rm -rf "$out/gemma"
protoc -I Proto \
  --plugin=protoc-gen-swift="$plugin" \
  --swift_opt=Visibility=Public \
  --swift_opt=FileNaming=FullPath \
  --swift_out="$out" \
  "${protos[@]}"

# Paths in SOURCES.sha256 are relative to the repository root and name the committed
# location, whatever folder this run wrote to.
{
  sha256sum "${protos[@]}"
  (cd "$out" && sha256sum gemma/v1/*.pb.swift) | sed "s|  |  $generated/|"
} > "$out/SOURCES.sha256"

echo "generate-proto: $("$plugin" --version), $(protoc --version): ${#protos[@]} files -> $out" >&2
