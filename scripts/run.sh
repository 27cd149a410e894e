#!/usr/bin/env bash
# dme's main job on this machine: build the CLI and run it on the best
# backend present (iommufd, then vfio, else the built-in simulator).
# Fresh Debian 12 machine: installs what it needs. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/hugepages.sh 64

builddir=build
[ -f "$builddir/build.ninja" ] || meson setup "$builddir" -Dwerror=true
ninja -C "$builddir" tools/dme
./"$builddir"/tools/dme info
echo
./"$builddir"/tools/dme demo
