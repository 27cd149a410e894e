#!/usr/bin/env bash
# Installs everything dme needs on Debian 12 (bookworm). Idempotent.
#   scripts/install-deps.sh          build + unit/bench dependencies
#   scripts/install-deps.sh --vm     also the VM test tier (QEMU, kernel source)
# Adds bookworm-backports (never testing/sid) for linux-source-6.12 and the
# 6.12 linux-libc-dev that carries <linux/iommufd.h>.
set -euo pipefail

want_vm=0
[ "${1:-}" = "--vm" ] && want_vm=1

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo

bp=/etc/apt/sources.list.d/dme-bookworm-backports.sources
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
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

pkgs=(meson ninja-build pkg-config gcc g++ clang libclang-rt-14-dev
      liburing-dev libnuma-dev numactl libhugetlbfs-bin libbenchmark-dev)
vm_pkgs=(qemu-system-x86 busybox-static cpio bc bison flex libelf-dev libssl-dev
	 xz-utils linux-source-6.12)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ $want_vm -eq 1 ]; then
	for p in "${vm_pkgs[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
fi
# <linux/iommufd.h> and the VFIO cdev ioctls arrive with the 6.12
# linux-libc-dev from backports (bookworm's 6.1 headers have neither).
hdr_ok=1
[ -f /usr/include/linux/iommufd.h ] && grep -q VFIO_DEVICE_BIND_IOMMUFD /usr/include/linux/vfio.h || hdr_ok=0

if [ ${#missing[@]} -gt 0 ] || [ $hdr_ok -eq 0 ] || [ "${need_update:-0}" = 1 ]; then
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -q
	if [ ${#missing[@]} -gt 0 ]; then
		echo "dme: installing ${missing[*]}"
		$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
	fi
	if [ $hdr_ok -eq 0 ]; then
		echo "dme: installing linux-libc-dev from bookworm-backports"
		$SUDO apt-get install -y -q --no-install-recommends -t bookworm-backports linux-libc-dev
	fi
fi
echo "dme: dependencies present"
