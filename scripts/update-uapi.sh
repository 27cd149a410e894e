#!/usr/bin/env bash
# Refreshes include/uapi/: the kernel uapi headers of the interfaces dme is
# built on, carried in the tree so that dme builds (with every backend) on
# systems whose headers predate them, such as bookworm's stock 6.1
# (docs/build.md says why).
#
#   scripts/update-uapi.sh                     from the installed headers (/usr/include)
#   scripts/update-uapi.sh --headers DIR       from headers installed elsewhere
#                                              (DIR/linux/iommufd.h, e.g. an unpacked
#                                              linux-libc-dev: DIR=root/usr/include)
#   scripts/update-uapi.sh --kernel KSRC       from a kernel source tree, through its
#                                              own `make headers_install`
#
# Copies the files verbatim (their SPDX lines, GPL-2.0 WITH Linux-syscall-note,
# say they may be used by any program), records where they came from and their
# sha256 in include/uapi/SOURCE (tests/test-uapi.py checks both), and checks
# that they compile against this system's own <linux/types.h>. Review the diff
# and rebuild: engine/iommufd.c asserts the sizes of the IOAS structs it uses.
set -euo pipefail
cd "$(dirname "$0")/.."

# The headers dme carries: whole interfaces, each newer than 6.1 in what dme
# uses. A single newer ioctl of an older header is defined next to its one
# user instead (PAGEMAP_SCAN, PROCMAP_QUERY, IOMMU_IOAS_MAP_FILE).
headers=(linux/iommufd.h linux/vfio.h)

die() { echo "update-uapi: error: $*" >&2; exit 1; }

from=headers dir=/usr/include
case "${1:-}" in
'') ;;
--headers) dir=${2:?--headers needs a directory} ;;
--kernel) from=kernel dir=${2:?--kernel needs a kernel source tree} ;;
-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
*) die "unknown argument '$1' (see --help)" ;;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ "$from" = kernel ]; then
	[ -f "$dir/Makefile" ] && [ -d "$dir/include/uapi/linux" ] || die "$dir is not a kernel source tree"
	version=$(make -s -C "$dir" kernelversion)
	make -s -C "$dir" headers_install INSTALL_HDR_PATH="$tmp/hdr" >/dev/null
	src=$tmp/hdr/include
	origin="kernel source $(cd "$dir" && pwd) (make headers_install)"
else
	src=$dir
	v=$src/linux/version.h
	[ -f "$v" ] || die "$v not found: not an installed kernel headers tree"
	version=$(awk '/LINUX_VERSION_(MAJOR|PATCHLEVEL|SUBLEVEL)/ { printf "%s%s", sep, $3; sep = "." }' "$v")
	origin="installed headers $src"
	if pkg=$(dpkg-query -S "$src/${headers[0]}" 2>/dev/null); then
		pkg=${pkg%%:*}
		origin="$pkg $(dpkg-query -W -f='${Version}' "$pkg") ($src)"
	fi
fi
[ -n "$version" ] || die "cannot tell the kernel version of $dir"

for h in "${headers[@]}"; do
	[ -f "$src/$h" ] || die "$src/$h not found (Linux $version is too old?)"
	head -1 "$src/$h" | grep -q 'SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note' ||
		die "$src/$h does not start with the uapi SPDX line"
	printf '#include <%s>\n' "$h" | cc -fsyntax-only -I "$src" -x c - ||
		die "$src/$h does not compile on its own"
done

for h in "${headers[@]}"; do
	mkdir -p "include/uapi/$(dirname "$h")"
	cp "$src/$h" "include/uapi/$h"
	# against this system's base uapi headers, which may be older
	printf '#include <%s>\n' "$h" | cc -fsyntax-only -I include/uapi -x c - ||
		die "include/uapi/$h does not compile with this system's <linux/types.h>"
done
{
	echo "# The kernel uapi headers dme is built against (docs/build.md)."
	echo "# Written by scripts/update-uapi.sh; tests/test-uapi.py checks the sums."
	echo "linux $version"
	echo "from $origin"
	(cd include/uapi && sha256sum "${headers[@]}")
} >include/uapi/SOURCE
echo "update-uapi: include/uapi now holds Linux $version's ${headers[*]} (from $origin)"
git status --short include/uapi
