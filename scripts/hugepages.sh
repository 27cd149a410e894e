#!/usr/bin/env bash
# Reserves at least N 2 MiB hugepages (default 64) when running as root, with
# hugeadm when present, else /proc/sys/vm/nr_hugepages. Never lowers a
# larger reservation. Prints what it did; failing to reserve is not fatal
# (tests that need hugepages say so).
set -u
want=${1:-64}
cur=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)
if [ "$cur" -ge "$want" ]; then
	echo "dme: $cur hugepages of 2 MiB reserved"
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "dme: not root: cannot reserve hugepages ($cur reserved, $want wanted)" >&2
	exit 0
fi
if command -v hugeadm >/dev/null 2>&1; then
	hugeadm --pool-pages-min "2MB:$want" 2>/dev/null || echo "$want" > /proc/sys/vm/nr_hugepages
else
	echo "$want" > /proc/sys/vm/nr_hugepages
fi
echo "dme: $(cat /proc/sys/vm/nr_hugepages) hugepages of 2 MiB reserved"
