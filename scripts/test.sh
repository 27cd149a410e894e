#!/usr/bin/env bash
# Builds dme and runs every test suite:
#   build/        --werror: unit, stress, vm (QEMU real-kernel tier; its guest
#                 kernel and initramfs are built when the vm suite runs)
#                 then slow (the Debian packages: build, contents, install, lintian)
#   build-asan/   -Db_sanitize=address,undefined: the unit suite (leaks included)
#   build-tsan/   -Db_sanitize=thread: the stress suite
#   build-fuzz/   clang + libFuzzer (ASan/UBSan): a short fuzz run
# Fresh Debian 12 machine: installs what it needs (apt packages, hugepages).
# Idempotent. Extra arguments go to the main `meson test`.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --vm || exit 1
scripts/hugepages.sh 64

prefix=${DMETEST_BUILDDIR:-build}
rc=0

# Debian 12's stock kernel headers (6.1): the uapi test compiles every C file
# against them (dme carries the newer uapi it needs in include/uapi)
if DMETEST_LINUX_HEADERS=$(scripts/bookworm-headers.sh); then
	export DMETEST_LINUX_HEADERS
else
	echo "dme: no bookworm 6.1 kernel headers: the uapi test skips its 6.1 build" >&2
	unset DMETEST_LINUX_HEADERS
fi

setup() {	# dir, -Doptions...: configure (or re-apply the options), then build
	local dir=$1
	shift
	if [ -f "$dir/build.ninja" ]; then
		# an option whose type or existence changed since the directory was
		# configured: `meson configure` refuses it, a reconfigure takes it
		meson configure "$dir" "$@" >/dev/null 2>&1 ||
			meson setup --reconfigure "$dir" "$@" >/dev/null || return 1
	else
		meson setup "$dir" "$@" >/dev/null || return 1
	fi
	ninja -C "$dir"
}

setup "$prefix" -Dwerror=true -Dvm_tests=enabled || exit 1
meson test -C "$prefix" --print-errorlogs --num-processes 2 "$@" || rc=1
# the slow suite (the Debian package build, ~2 min), its own log testlog-slow.json
meson test -C "$prefix" --suite slow --logbase testlog-slow --print-errorlogs || rc=1

if setup "$prefix-asan" -Dwerror=true -Db_sanitize=address,undefined -Dvm_tests=disabled; then
	meson test -C "$prefix-asan" --suite unit --print-errorlogs || rc=1
else
	echo "dme: the AddressSanitizer build failed" >&2
	rc=1
fi

if setup "$prefix-tsan" -Dwerror=true -Db_sanitize=thread -Dvm_tests=disabled; then
	meson test -C "$prefix-tsan" --suite stress --print-errorlogs || rc=1
else
	echo "dme: the ThreadSanitizer build failed" >&2
	rc=1
fi

if CC=clang setup "$prefix-fuzz" -Dfuzz=true -Dtests=disabled -Dtools=disabled \
	-Dbench=disabled -Dexamples=disabled -Ddocs=disabled -Dvm_tests=disabled; then
	meson test -C "$prefix-fuzz" --suite fuzz --print-errorlogs || rc=1
else
	echo "dme: the libFuzzer build failed" >&2
	rc=1
fi
exit $rc
