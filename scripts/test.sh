#!/usr/bin/env bash
# Builds dme and runs every test suite (unit, stress, vm).
# Fresh Debian 12 machine: installs what it needs (apt packages, hugepages).
# Idempotent. Usage: scripts/test.sh [meson test args...]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --vm
scripts/hugepages.sh 64

builddir=${DME_BUILDDIR_OVERRIDE:-build}
if [ ! -f "$builddir/build.ninja" ]; then
	meson setup "$builddir" --werror
fi
ninja -C "$builddir"
meson test -C "$builddir" --print-errorlogs --num-processes 2 "$@"
