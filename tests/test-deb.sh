#!/usr/bin/env bash
# test-deb: the Debian packages build, hold what they should, install and
# work (TAP; suite slow).
#
#   tests/test-deb.sh SOURCE_ROOT
#
# Builds libdme0, libdme-dev, dme-tools and dme-bench with `dpkg-buildpackage
# -us -uc -b` in a temporary copy of the source tree (build directories left
# out), then, without touching the system: lists each package with dpkg-deb
# -c (manual pages, documentation, dme-bench apart from dme, no liburing or
# C++ runtime outside dme-bench), unpacks them into a temporary root with
# dpkg -x, builds a small embedder against that root's libdme-dev through
# pkg-config (shared and static), runs it, the unpacked `dme` and `dme bench
# --help` (the unpacked dme-bench), and runs lintian (no errors allowed; the
# warnings are printed). DEB_BUILD_OPTIONS passes through (nocheck skips the
# package's own tests). DMETEST_DEB_KEEP=1 keeps the temporary directory.
set -uo pipefail

src=$(cd "${1:-$(dirname "$0")/..}" && pwd)
n=0
failed=0

ok() {	# cond-status name [diagnostic lines on stdin when it failed]
	local rc=$1
	shift
	n=$((n + 1))
	if [ "$rc" -eq 0 ]; then
		echo "ok $n - $*"
	else
		echo "not ok $n - $*"
		failed=$((failed + 1))
	fi
	return "$rc"
}

diag() {	# prints stdin as TAP diagnostics
	sed 's/^/# /'
}

finish() {
	echo "1..$n"
	[ "$failed" -eq 0 ]
	exit $?
}

missing=()
command -v dpkg-deb >/dev/null 2>&1 || missing+=(dpkg)
command -v dpkg-buildpackage >/dev/null 2>&1 || missing+=(dpkg-dev)
command -v dh >/dev/null 2>&1 || missing+=(debhelper)
command -v lintian >/dev/null 2>&1 || missing+=(lintian)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v readelf >/dev/null 2>&1 || missing+=(binutils)
if [ ${#missing[@]} -gt 0 ]; then
	echo "1..0 # SKIP no ${missing[*]} (scripts/install-deps.sh --vm installs them)"
	exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/dme-deb.XXXXXX") || exit 1
if [ "${DMETEST_DEB_KEEP:-0}" = 1 ]; then
	echo "# keeping $work"
else
	trap 'rm -rf "$work"' EXIT
fi
tree=$work/dme
root=$work/root
mkdir -p "$tree" "$root"

# --- build ------------------------------------------------------------------
tar -C "$src" --anchored --exclude=./.git --exclude='./build*' --exclude='./obj-*' \
	--exclude=./.cache -cf - . | tar -C "$tree" -xf -
ok $? "copy the source tree (without .git and build directories)"

start=$SECONDS
(cd "$tree" && nice dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1
if ! ok $? "dpkg-buildpackage -us -uc -b builds ($((SECONDS - start)) s)"; then
	tail -n 60 "$work/build.log" | diag
	finish
fi

ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
ver=$(cd "$tree" && dpkg-parsechangelog -SVersion)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
lib=usr/lib/$ma

declare -A deb
pkgs=(libdme0 libdme-dev dme-tools dme-bench)
for p in "${pkgs[@]}"; do
	deb[$p]=$work/${p}_${ver}_$arch.deb
	[ -f "${deb[$p]}" ]
	ok $? "${p}_${ver}_$arch.deb is built" || finish
done

# Meson's own summary and test run, as the package build saw them
# meson's summary (section Built) of the package build
built() {	# name: the summary says yes/no (bool_yn) for it (the first
	# match: "User defined options" below it has the options' values)
	grep -E "^ +$1 *: " "$work/build.log" | head -1 | grep -Eo '(YES|NO)$'
}
[ "$(built vm_tests)" = NO ] && [ "$(built fuzz)" = NO ]
ok $? "the package build registers no vm suite (no kernel build) and no fuzzer"
[ "$(built docs)" = YES ] && [ "$(built 'tools \(dme\)')" = YES ] &&
	[ "$(built 'bench \(dme-bench\)')" = YES ]
ok $? "the package build has the docs, dme and dme-bench" ||
	grep -A9 '^ *Built' "$work/build.log" | diag
if [[ " ${DEB_BUILD_OPTIONS:-} " == *" nocheck "* ]]; then
	echo "ok $((n += 1)) - the package's tests ran # SKIP DEB_BUILD_OPTIONS has nocheck"
else
	grep -Eq '^Ok: +[1-9]' "$work/build.log" && grep -Eq '^Fail: +0' "$work/build.log"
	ok $? "dh_auto_test ran the package's unit subset and it passed"
fi
# nocheck builds no test program at all (debian/rules)
conf() {
	(cd "$tree" && env DEB_BUILD_OPTIONS="$1" make -s -n -f debian/rules \
		override_dh_auto_configure)
}
conf nocheck | grep -q -- '-Dtests=disabled'
ok $? "DEB_BUILD_OPTIONS=nocheck configures -Dtests=disabled"
conf "" | grep -q -- '-Dtests=enabled'
ok $? "without nocheck the package build configures -Dtests=enabled"

# --- contents ---------------------------------------------------------------
has() {	# package path...: every path is in the package
	local p=$1 f missing=()
	shift
	for f in "$@"; do
		grep -Fxq "./$f" "$work/$p.list" || missing+=("$f")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		printf '%s is missing\n' "${missing[@]}" | diag
		return 1
	fi
}
for p in "${pkgs[@]}"; do
	# path only; a symlink's " -> target" dropped
	dpkg-deb -c "${deb[$p]}" | awk '{ sub(/ -> .*/, ""); print $6 }' >"$work/$p.list"
	echo "# $p: $(grep -cv '/$' "$work/$p.list") files"
done

has libdme0 "$lib/libdme.so.0" && grep -Eq "^\./$lib/libdme\.so\.0\.[0-9.]+\$" "$work/libdme0.list"
ok $? "libdme0 has libdme.so.0 and the library it points to"
! grep -Eq '\.(h|a|pc)$|/bin/|/libdme\.so$' "$work/libdme0.list"
ok $? "libdme0 has neither headers, static library, pkg-config file, link nor program"
dpkg-deb -I "${deb[libdme0]}" shlibs 2>/dev/null | grep -Eq '^libdme 0 libdme0\b'
ok $? "libdme0's shlibs file names libdme 0"
dpkg-deb -I "${deb[libdme0]}" symbols 2>/dev/null | grep -q '^ dme_engine_open@LIBDME_0.1 '
ok $? "libdme0's symbols file lists the LIBDME_0.1 symbols"

headers=()
for h in "$src"/include/dme/*.h; do
	headers+=("usr/include/dme/$(basename "$h")")
done
has libdme-dev "${headers[@]}"
ok $? "libdme-dev has every header of include/dme/ (${#headers[@]}) in /usr/include/dme"
has libdme-dev "$lib/libdme.so" "$lib/libdme.a" "$lib/pkgconfig/dme.pc"
ok $? "libdme-dev has libdme.so, libdme.a and dme.pc in /$lib"
has dme-tools usr/bin/dme usr/share/man/man1/dme.1.gz
ok $? "dme-tools has /usr/bin/dme and dme(1)"
has dme-bench usr/bin/dme-bench && ! grep -q '/bin/dme$' "$work/dme-bench.list" &&
	! grep -q 'dme-bench' "$work/dme-tools.list"
ok $? "dme-bench has /usr/bin/dme-bench, dme-tools has not"

# the manual pages of the library: dme(3), one per public header, and a link
# per function (docs/man/meson.build), compressed by dh_compress
man3=(usr/share/man/man3/dme.3.gz)
for m in "$src"/docs/man/*.3; do
	man3+=("usr/share/man/man3/$(basename "$m").gz")
done
has libdme-dev "${man3[@]}"
ok $? "libdme-dev has dme(3) and a page per header (${#man3[@]})"
links=$(dpkg-deb -c "${deb[libdme-dev]}" | grep -c 'man3/dme_[a-z_]*\.3\.gz -> dme_[a-z_]*\.3\.gz$')
exported=$(cd "$src" && sed -n 's/^ \(dme_[a-z_0-9]*\)@LIBDME_0\.1 .*/\1/p' debian/libdme0.symbols | wc -l)
has libdme-dev usr/share/man/man3/dme_register.3.gz usr/share/man/man3/dme_version.3.gz &&
	[ "$links" -ge $((exported - ${#man3[@]})) ]
ok $? "libdme-dev links a manual page per function ($links links, $exported functions)"
# (dh_compress compresses those above 4 KiB)
docs=()
for f in "$src"/README.md "$src"/docs/*.md; do
	f=usr/share/doc/libdme-dev/$(basename "$f")
	grep -Fxq "./$f.gz" "$work/libdme-dev.list" && f=$f.gz
	docs+=("$f")
done
has libdme-dev "${docs[@]}"
ok $? "libdme-dev has README and docs/ (${#docs[@]} files) in /usr/share/doc/libdme-dev"
! grep -q 'usr/share/doc/dme/' "$work/libdme-dev.list" "$work/dme-tools.list"
ok $? "no package has a /usr/share/doc/dme of another package's name"

# the lean build: the library and dme need neither liburing nor C++; only
# dme-bench has libbenchmark and libstdc++
dep() { dpkg-deb -f "${deb[$1]}" Depends; }
! dep libdme0 | grep -Eq 'liburing|libstdc\+\+|libbenchmark' &&
	! dep dme-tools | grep -Eq 'liburing|libstdc\+\+|libbenchmark'
ok $? "libdme0 and dme-tools need neither liburing, libstdc++ nor libbenchmark" ||
	{ dep libdme0; dep dme-tools; } | diag
dep dme-bench | grep -q 'libbenchmark' && dep dme-bench | grep -q 'libstdc++'
ok $? "dme-bench depends on libbenchmark and libstdc++" || dep dme-bench | diag
# bookworm's own kernel headers do: the tree carries the uapi it needs
bd=$(sed -n '/^Build-Depends:/,/^[A-Z]/p' "$tree/debian/control")
! echo "$bd" | grep -Eq 'liburing|linux-libc-dev'
ok $? "Build-Depends names neither liburing nor a newer kernel header package"

for p in "${pkgs[@]}"; do
	dpkg -x "${deb[$p]}" "$root" || break
done
ok $? "dpkg -x unpacks the ${#pkgs[@]} packages into a temporary root"

# --- an embedder -------------------------------------------------------------
cat >"$work/embed.c" <<'EOF'
/* an embedder: the simulator engine through the installed <dme/dme.h> */
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>
#include <stdio.h>
#include <sys/mman.h>

#include <dme/dme.h>

int main(void)
{
	Dl_info info = {0};
	struct dme_engine *e;
	uint64_t iova = 0, x = 0;
	void *buf;

	if (!dladdr((void *)dme_engine_open, &info) || !info.dli_fname)
		return 1;
	printf("dme_engine_open from %s\n", info.dli_fname);
	if (dme_engine_open(NULL, &e))	/* DME_BACKEND=sim from the environment */
		return 1;
	buf = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED || dme_register(e, buf, 8192, DME_MAP_RW, &iova) ||
	    dme_vtoiova(e, (char *)buf + 4096, &x) || x != iova + 4096)
		return 1;
	printf("backend %s: 8 KiB at IOVA 0x%llx\n", dme_engine_backend_name(e),
	       (unsigned long long)iova);
	dme_unregister(e, buf, 8192);
	dme_engine_close(e);
	return 0;
}
EOF
pc() {	# pkg-config on the temporary root's dme.pc (its prefix moved there)
	PKG_CONFIG_PATH=$root/$lib/pkgconfig pkg-config --define-variable=prefix="$root/usr" "$@"
}
pc --exists dme && [ "$(pc --modversion dme)" = "${ver%-*}" ]
ok $? "pkg-config finds dme ${ver%-*} in the temporary root"
[ "$(pc --variable=includedir dme)" = "$root/usr/include" ]
ok $? "dme.pc's includedir is \${prefix}/include (relocatable)"

cflags=(-std=c11 -Wall -Wextra -Werror)
# shellcheck disable=SC2046 # pkg-config output is a list of words
cc "${cflags[@]}" -o "$work/embed" "$work/embed.c" $(pc --cflags --libs dme) \
	>"$work/cc.log" 2>&1
ok $? "an embedder compiles against libdme-dev with -Werror and links -ldme" || diag <"$work/cc.log"
readelf -d "$work/embed" 2>/dev/null | grep -q 'NEEDED.*\[libdme\.so\.0\]'
ok $? "the embedder needs libdme.so.0 (the soname)"
out=$(DME_BACKEND=sim LD_LIBRARY_PATH=$root/$lib "$work/embed" 2>&1)
rc=$?
echo "$out" | diag
[ $rc -eq 0 ] && [[ $out == *"from $root/$lib/libdme.so.0"* ]]
ok $? "the embedder runs on the simulator with the unpacked libdme.so.0"

# static: libdme.a and dme.pc's private requirements (libnuma, pthread)
# shellcheck disable=SC2046
cc "${cflags[@]}" -o "$work/embed-static" "$work/embed.c" $(pc --cflags dme) \
	$(pc --static --libs dme | sed 's/-ldme\b/-l:libdme.a/') >"$work/cc.log" 2>&1
ok $? "an embedder links libdme.a with pkg-config --static --libs" || diag <"$work/cc.log"
[ -x "$work/embed-static" ] && ! readelf -d "$work/embed-static" | grep -q 'libdme'
ok $? "the static embedder needs no libdme.so"
DME_BACKEND=sim "$work/embed-static" >/dev/null 2>&1
ok $? "the static embedder runs on the simulator"

# --- the CLI -----------------------------------------------------------------
out=$(LD_LIBRARY_PATH=$root/$lib "$root/usr/bin/dme" --help 2>&1)
ok $? "the unpacked dme --help exits 0" && [[ $out == *config* ]]
ok $? "dme --help lists its commands" || echo "$out" | diag
out=$(DME_BACKEND=sim LD_LIBRARY_PATH=$root/$lib "$root/usr/bin/dme" config 2>&1)
ok $? "the unpacked dme config exits 0" || echo "$out" | diag
[[ $out == *DME_BACKEND* ]]
ok $? "dme config lists DME_BACKEND"
out=$(LD_LIBRARY_PATH=$root/$lib "$root/usr/bin/dme" --version 2>&1)
ok $? "the unpacked dme --version exits 0" && [[ $out == *"${ver%-*}"* ]]
ok $? "dme --version says ${ver%-*}" || echo "$out" | diag
# dme bench execs the dme-bench beside it (tools/bench_exec.c)
out=$(LD_LIBRARY_PATH=$root/$lib "$root/usr/bin/dme" bench --help 2>&1)
ok $? "the unpacked dme bench --help runs the unpacked dme-bench" &&
	[[ $out == *iova* ]]
ok $? "dme bench --help lists dme-bench's suites" || echo "$out" | diag

# --- lintian -----------------------------------------------------------------
changes=$work/dme_${ver}_$arch.changes
nice lintian --tag-display-limit 0 "$changes" >"$work/lintian.log" 2>&1
rc=$?
diag <"$work/lintian.log"
[ $rc -eq 0 ] && ! grep -q '^E: ' "$work/lintian.log"
ok $? "lintian reports no error ($(grep -c '^W: ' "$work/lintian.log") warnings)"

finish
