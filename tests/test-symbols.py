#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""test-symbols: dme's symbols stay in dme's namespaces.

- every global symbol libdme.a defines starts with dme_ (public) or dmei_
  (internal), so the static library links beside other libraries' avl_*,
  tree_* or xlate_*;
- libdme.so exports dme_* only, each at version LIBDME_0.1, and no dmei_.
TAP output; usage: test-symbols.py LIBDME_A LIBDME_SO
"""
import subprocess
import sys

n = failed = 0


def ok(cond, name):
    global n, failed
    n += 1
    print(f"{'' if cond else 'not '}ok {n} - {name}")
    if not cond:
        failed += 1


def nm(*args):
    r = subprocess.run(['nm', *args], capture_output=True, text=True)
    if r.returncode:
        print(f"# nm {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout.splitlines()


static, shared = sys.argv[1], sys.argv[2]
defined = set()
for line in nm('--defined-only', '-g', static):
    f = line.split()
    if len(f) == 3 and f[1] in 'TDBRWV':
        defined.add(f[2])
ok(len(defined) > 50, f'libdme.a defines global symbols ({len(defined)})')
# names starting with __ are the toolchain's own (ASan's __odr_asan.*)
stray = sorted(s for s in defined if not s.startswith(('dme_', 'dmei_', '__')))
ok(not stray, 'every global symbol of libdme.a starts with dme_ or dmei_' +
   (f' (not: {", ".join(stray[:10])})' if stray else ''))

exported = {}
for line in nm('-D', '--defined-only', '--with-symbol-versions', shared):
    f = line.split()
    if len(f) == 3 and f[1] in 'TDBRWV':
        name, _, ver = f[2].partition('@')
        exported[name] = ver.lstrip('@')
ok(len(exported) > 50, f'libdme.so exports symbols ({len(exported)})')
bad = sorted(s for s in exported if not s.startswith('dme_') and s != 'LIBDME_0.1')
ok(not bad, 'libdme.so exports dme_* only' + (f' (not: {", ".join(bad[:10])})' if bad else ''))
internal = sorted(s for s in exported if s.startswith('dmei_'))
ok(not internal, 'libdme.so exports no dmei_ symbol')
unversioned = sorted(s for s, v in exported.items() if s.startswith('dme_') and v != 'LIBDME_0.1')
ok(not unversioned, 'every export carries version LIBDME_0.1' +
   (f' (not: {", ".join(unversioned[:10])})' if unversioned else ''))
print(f'1..{n}')
sys.exit(1 if failed else 0)
