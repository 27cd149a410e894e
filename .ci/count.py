#!/usr/bin/env python3
"""Counts passed/failed checks in Meson's testlog.json files (one per build).

A TAP test contributes one check per 'ok'/'not ok' line of its output; a
test that timed out, crashed or printed no TAP counts as one failure. Prints
'N passed, N failed' (', N skipped' when any) as the last line; exits 1 when
anything failed or nothing ran."""
import json
import re
import sys

passed = failed = skipped = 0
lines = []
for path in sys.argv[1:]:
    try:
        lines += open(path).read().splitlines()
    except OSError as e:
        print(f"no test log: {e}")
        failed += 1

tap = re.compile(r'^(not ok|ok)\b(.*)$')
for line in lines:
    t = json.loads(line)
    out = t.get('stdout') or ''
    res = t.get('result', '')
    p = f = s = 0
    for l in out.splitlines():
        m = tap.match(l)
        if not m:
            continue
        directive = m.group(2)
        if re.search(r'#\s*skip', directive, re.I):
            s += 1
        elif m.group(1) == 'ok':
            p += 1
        else:
            f += 1
    if re.search(r'^1\.\.0\s*#\s*skip', out, re.I | re.M):
        s += 1
    if p + f + s == 0:
        if res in ('OK', 'EXPECTEDFAIL'):
            p = 1
        elif res == 'SKIP':
            s = 1
        else:
            f = 1
    elif res not in ('OK', 'SKIP', 'EXPECTEDFAIL') and f == 0:
        f = 1   # crashed or timed out after its last check
    print(f"{t.get('name')}: {res} ({p} passed, {f} failed, {s} skipped)")
    passed += p
    failed += f
    skipped += s

tail = f", {skipped} skipped" if skipped else ""
print(f"{passed} passed, {failed} failed{tail}")
sys.exit(1 if failed or passed == 0 else 0)
