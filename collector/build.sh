#!/usr/bin/env bash
# Builds the minimal collector described by collector/builder-config.yaml and prints the
# binary's path as the last line of its output.
#
#   collector/build.sh            build once; reuse the build of this exact manifest after that
#   collector/build.sh --force    rebuild even if a build of this manifest exists
#   collector/build.sh --path     print where the binary of this manifest is (or would be); no build
#
# The build lives outside the repository, one directory per manifest content:
#   ${OTELCOL_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/nethical-otel/collector}/<sha256[:16]>/
# A cold build takes minutes (Go compiles the whole collector); a cached one returns at once.
# Needs Go (https://go.dev/dl, the version contrib's go.mod asks for) and the Go module proxy.
set -euo pipefail

BUILDER_VERSION=v0.165.0 # the builder moves with the core version in the manifest
BINARY_NAME=nethical-otelcol

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
manifest="$here/builder-config.yaml"
force=0
path_only=0
case "${1:-}" in
    "") ;;
    --force) force=1 ;;
    --path) path_only=1 ;;
    *) echo "usage: collector/build.sh [--force | --path]" >&2; exit 2 ;;
esac

die() {
    echo "collector/build.sh: $*" >&2
    exit 1
}

# The key is the manifest and the builder version: a change to either is a new build.
key=$( (cat "$manifest"; echo "$BUILDER_VERSION") | sha256sum | cut -c1-16)
cache_root="${OTELCOL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nethical-otel/collector}"
dir="$cache_root/$key"
binary="$dir/$BINARY_NAME"
if [[ $path_only == 1 ]]; then
    echo "$binary"
    exit 0
fi

if [[ $force == 0 && -x "$binary" ]] && "$binary" --version >/dev/null 2>&1; then
    echo "$binary"
    exit 0
fi

command -v go >/dev/null || die "Go is not installed: install Go (https://go.dev/dl) to build the collector"
mkdir -p "$dir"

# One build at a time per manifest (make test and a developer's shell may race).
exec 9>"$dir/.lock"
flock 9
if [[ $force == 0 && -x "$binary" ]] && "$binary" --version >/dev/null 2>&1; then
    echo "$binary"
    exit 0
fi

export GOTOOLCHAIN="${GOTOOLCHAIN:-local}" # never download a Go toolchain behind the user's back
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
gobin="$dir/bin"
if ! [[ -x "$gobin/builder" ]] || ! "$gobin/builder" version 2>/dev/null | grep -q "${BUILDER_VERSION#v}"; then
    echo "collector/build.sh: installing the collector builder $BUILDER_VERSION" >&2
    GOBIN="$gobin" go install "go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION" >&2
fi

# The manifest's output_path points into /tmp; build into the cache directory instead.
src="$dir/src"
grep -q '^  output_path:' "$manifest" || die "$manifest has no 'dist.output_path' line to redirect"
sed "s|^  output_path:.*|  output_path: $src|" "$manifest" >"$dir/builder-config.yaml"

echo "collector/build.sh: building $BINARY_NAME into $dir (a cold build takes several minutes)" >&2
started=$SECONDS
# -s -w: no symbol table or DWARF, a third smaller and faster to link; traces still carry names.
"$gobin/builder" --config="$dir/builder-config.yaml" --ldflags="-s -w" >"$dir/build.log" 2>&1 || {
    tail -n 40 "$dir/build.log" >&2
    die "the builder failed; full log in $dir/build.log"
}
mv -f "$src/$BINARY_NAME" "$binary.new"
mv -f "$binary.new" "$binary"
"$binary" --version >&2
echo "collector/build.sh: built in $((SECONDS - started)) s" >&2
echo "$binary"
