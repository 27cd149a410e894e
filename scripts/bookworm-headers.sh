#!/usr/bin/env bash
# Prints a directory holding Debian 12's stock kernel headers (linux-libc-dev
# 6.1 from bookworm, not the backports 6.12 one), unpacked, for tests/test-uapi.py:
#   DMETEST_LINUX_HEADERS=$(scripts/bookworm-headers.sh) meson test -C build uapi
# Downloads the package once with `apt-get download` (no root needed, nothing
# is installed) into ${XDG_CACHE_HOME:-~/.cache}/dme/ and reuses it after.
# Fails (status 1, a message on stderr) where apt cannot fetch it.
set -euo pipefail

cache=${XDG_CACHE_HOME:-$HOME/.cache}/dme
for d in "$cache"/linux-libc-dev_6.1.*/usr/include; do
	if [ -f "$d/linux/version.h" ]; then
		echo "$d"
		exit 0
	fi
done

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && apt-get download -q linux-libc-dev/bookworm >&2); then
	echo "bookworm-headers: cannot download linux-libc-dev/bookworm (no network, or no bookworm in the apt sources)" >&2
	exit 1
fi
deb=$(ls "$tmp"/linux-libc-dev_6.1.*.deb 2>/dev/null | head -1)
if [ -z "$deb" ]; then
	echo "bookworm-headers: apt fetched no linux-libc-dev 6.1 package: $(ls "$tmp")" >&2
	exit 1
fi
name=$(basename "$deb" .deb)
dpkg-deb -x "$deb" "$tmp/$name"
rm -rf "${cache:?}/$name"
mv "$tmp/$name" "$cache/$name"
echo "$cache/$name/usr/include"
