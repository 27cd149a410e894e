#!/usr/bin/env bash
# Installs everything dme needs on Debian 12 (bookworm), down to a bare
# `debootstrap --variant=minbase` root. Idempotent.
#   scripts/install-deps.sh          build + unit/bench dependencies (bookworm's own)
#   scripts/install-deps.sh --vm     also the slow tiers scripts/test.sh runs: the
#                                    VM tier (QEMU, kernel source) and the Debian
#                                    package build (debhelper, lintian)
# With --vm, adds bookworm-backports (never testing/sid) for linux-source-6.12
# and the 6.12 linux-libc-dev that the VM guest programs are built against.
# dme itself (and its Debian packages) needs no newer kernel headers than
# bookworm's 6.1: it carries the uapi headers it is built on in include/uapi
# (docs/build.md).
#
# The lists below name every package that a script, a build file or a test
# looks for or calls (tests/test-deps.py checks that they do, so the lists
# cannot drift). Essential packages (coreutils, tar, ...) are listed too when
# a script checks for them: they are always installed, so it costs nothing.
set -euo pipefail

want_vm=0
[ "${1:-}" = "--vm" ] && want_vm=1

SUDO=
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "dme: not root and no sudo: run scripts/install-deps.sh as root" >&2
		exit 1
	fi
	SUDO=sudo
fi

bp=/etc/apt/sources.list.d/dme-bookworm-backports.sources
if [ $want_vm -eq 1 ] &&
   ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
	echo "dme: adding bookworm-backports to $bp"
	$SUDO tee "$bp" >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	need_update=1
fi

# build, unit tests (test-cli.py and .ci/count.py run with python3; test-man.py
# reads libdme.so with nm and checks the manual pages with groff), the
# sanitizer builds, the clang/libFuzzer build, benchmarks (g++, Google
# Benchmark: -Dbench only), scripts/hugepages.sh
pkgs=(meson ninja-build pkg-config python3 gcc g++ libc6-dev clang libclang-rt-14-dev
      libnuma-dev numactl libhugetlbfs-bin libbenchmark-dev binutils groff-base)
# the VM tier: QEMU (run-vm.py), the initramfs (mkinitrd.sh: busybox-static,
# cpio, gzip, readelf from binutils), the guest kernel (build-kernel.sh's
# checks: make, gcc, binutils, bc, bison, flex, xz, tar, flock, sha256sum,
# perl, libelf, openssl headers, the kernel source)
vm_pkgs=(qemu-system-x86 busybox-static cpio gzip make binutils bc bison flex libelf-dev
	 libssl-dev xz-utils tar util-linux coreutils perl-base linux-source-6.12)
# the slow suite's package build (tests/test-deb.sh: dpkg-buildpackage, dh,
# lintian, dpkg-deb, readelf) and debian/control's Build-Depends (the lists
# above hold the rest: tests/test-deps.py checks)
deb_pkgs=(dpkg dpkg-dev build-essential debhelper lintian binutils)
# from bookworm-backports explicitly, with --vm (bookworm's own is too old
# for the VM guest programs, which use the system's <linux/iommufd.h>)
bp_pkgs=(linux-libc-dev)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ $want_vm -eq 1 ]; then
	for p in "${vm_pkgs[@]}" "${deb_pkgs[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
fi
# <linux/iommufd.h> and the VFIO cdev ioctls arrive with the 6.12
# linux-libc-dev from backports (bookworm's 6.1 headers have neither).
hdr_ok=1
if [ $want_vm -eq 1 ]; then
	[ -f /usr/include/linux/iommufd.h ] && grep -q VFIO_DEVICE_BIND_IOMMUFD /usr/include/linux/vfio.h ||
		hdr_ok=0
fi

if [ ${#missing[@]} -gt 0 ] || [ $hdr_ok -eq 0 ] || [ "${need_update:-0}" = 1 ]; then
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -q
	if [ ${#missing[@]} -gt 0 ]; then
		echo "dme: installing ${missing[*]}"
		$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
	fi
	if [ $hdr_ok -eq 0 ]; then
		echo "dme: installing ${bp_pkgs[*]} from bookworm-backports"
		$SUDO apt-get install -y -q --no-install-recommends -t bookworm-backports "${bp_pkgs[@]}"
	fi
fi
echo "dme: dependencies present"
