#!/usr/bin/env python3
"""test-uapi: dme builds against bookworm's stock 6.1 kernel headers (TAP).

dme carries the uapi headers of the interfaces it is built on in
include/uapi/ (iommufd, VFIO: docs/build.md); everything else must come from
the system headers at the level of Debian 12's own linux-libc-dev (6.1), or
be defined next to its user when newer (PROCMAP_QUERY, PAGEMAP_SCAN).

  - include/uapi/SOURCE names each carried header with its sha256 (written
    by scripts/update-uapi.sh: a hand edit or a stray file fails), and each
    keeps the kernel's uapi SPDX line;
  - scripts/update-uapi.sh refreshes exactly the headers that are carried;
  - no source includes a carried header by another path than <linux/X.h>
    (which finds include/uapi first), and include/dme/ includes none;
  - every C file of the build (the library, the tools, the examples, the
    tests; not the VM guests, built against the guest kernel's headers)
    compiles with its own command from compile_commands.json against 6.1's
    headers: DMETEST_LINUX_HEADERS names an unpacked linux-libc-dev 6.1
    (its usr/include; scripts/bookworm-headers.sh prints one, and
    scripts/test.sh sets it). Without it that check is a SKIP.

    test-uapi.py SOURCE_ROOT BUILD_ROOT"""
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

root = os.path.abspath(sys.argv[1])
build = os.path.abspath(sys.argv[2])
n = 0
failed = 0


def ok(cond, name, *diag, skip=None):
    global n, failed
    n += 1
    if skip:
        print(f"ok {n} - {name} # SKIP {skip}")
        return
    print(f"{'' if cond else 'not '}ok {n} - {name}")
    if not cond:
        failed += 1
        for d in diag:
            for line in str(d).splitlines():
                print(f"# {line}")


def read(rel):
    with open(os.path.join(root, rel)) as f:
        return f.read()


# --- what include/uapi carries ---------------------------------------------
uapi = os.path.join(root, 'include', 'uapi')
carried = sorted(os.path.relpath(os.path.join(d, f), uapi)
                 for d, _, files in os.walk(uapi) for f in files if f != 'SOURCE')
source = read('include/uapi/SOURCE')
sums = dict((p, h) for h, p in re.findall(r'^([0-9a-f]{64})  (\S+)$', source, re.M))
version = re.search(r'^linux (\S+)$', source, re.M)
ok(carried and version and sorted(sums) == carried,
   f'include/uapi/SOURCE lists the carried headers ({" ".join(carried)}, '
   f'Linux {version.group(1) if version else "?"})',
   f'carried: {carried}', f'listed: {sorted(sums)}')
for h in carried:
    with open(os.path.join(uapi, h), 'rb') as f:
        data = f.read()
    ok(sums.get(h) == hashlib.sha256(data).hexdigest(),
       f'include/uapi/{h} is the copy update-uapi.sh made (sha256 matches SOURCE)',
       'edit nothing by hand: run scripts/update-uapi.sh')
    ok(data.startswith(b'/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */'),
       f'include/uapi/{h} keeps the uapi SPDX line (GPL-2.0 WITH Linux-syscall-note)')

m = re.search(r'^headers=\(([^)]*)\)', read('scripts/update-uapi.sh'), re.M)
ok(m and sorted(m.group(1).split()) == carried,
   'scripts/update-uapi.sh refreshes exactly the carried headers',
   f'update-uapi.sh: {m.group(1) if m else "no headers=(...) list"}')

# --- how the sources include them -------------------------------------------
bad = []
for d, dirs, files in os.walk(root):
    dirs[:] = [x for x in dirs if not x.startswith(('.git', 'build')) and x != 'subprojects']
    for f in files:
        rel = os.path.relpath(os.path.join(d, f), root)
        if not rel.endswith(('.c', '.h', '.cc')) or rel.startswith('include/uapi/'):
            continue
        with open(os.path.join(root, rel), errors='replace') as fh:
            for i, line in enumerate(fh, 1):
                mm = re.match(r'\s*#\s*include\s*([<"])([^>"]+)[>"]', line)
                if not mm:
                    continue
                path = mm.group(2)
                for h in carried:
                    if path.endswith('/' + h) or (path == h and (
                            mm.group(1) != '<' or rel.startswith('include/dme/'))):
                        bad.append(f'{rel}:{i}: {line.strip()}')
ok(not bad, 'the carried headers are included as <linux/X.h> only, and not by the public headers',
   *bad)

# --- a build against 6.1's headers --------------------------------------------
hdrs = os.environ.get('DMETEST_LINUX_HEADERS', '')
why_skip = None
if not hdrs:
    why_skip = ('DMETEST_LINUX_HEADERS is not set (DMETEST_LINUX_HEADERS=$(scripts/bookworm-headers.sh) '
                'meson test ...)')
try:
    with open(os.path.join(build, 'compile_commands.json')) as f:
        commands = json.load(f)
except (OSError, ValueError) as e:
    commands = []
    ok(False, 'the build directory has compile_commands.json', e)

if not why_skip:
    vfile = os.path.join(hdrs, 'linux', 'version.h')
    try:
        with open(vfile) as f:
            vtext = f.read()
    except OSError as e:
        vtext = ''
    vm = re.findall(r'LINUX_VERSION_(?:MAJOR|PATCHLEVEL) (\d+)', vtext)
    ok(vm == ['6', '1'] and not os.path.exists(os.path.join(hdrs, 'linux', 'iommufd.h')),
       f'DMETEST_LINUX_HEADERS={hdrs} holds Linux 6.1 headers without <linux/iommufd.h>',
       f'{vfile}: version {".".join(vm) or "unknown"}')

multiarch = subprocess.run(['cc', '-print-multiarch'], capture_output=True,
                           text=True).stdout.strip() or 'x86_64-linux-gnu'
# A header the system has and 6.1 has not would still be found in
# /usr/include, after the 6.1 directories: shadow each such header with one
# that fails.
poison = tempfile.mkdtemp(prefix='dme-uapi61-')
if not why_skip:
    for top in sorted(os.listdir(hdrs)):
        sysdir = os.path.join('/usr/include', top)
        for d, _, files in os.walk(sysdir):
            for f in files:
                rel = os.path.relpath(os.path.join(d, f), '/usr/include')
                if top == multiarch:
                    rel = os.path.relpath(rel, multiarch)
                if os.path.exists(os.path.join(hdrs, top, os.path.relpath(os.path.join(d, f), sysdir))):
                    continue
                if top == multiarch and not rel.startswith('asm/'):
                    continue  # glibc's own headers live there too
                os.makedirs(os.path.dirname(os.path.join(poison, rel)), exist_ok=True)
                with open(os.path.join(poison, rel), 'w') as fh:
                    fh.write(f'#error "<{rel}> is not in Linux 6.1\'s headers"\n')
checked = 0
for e in commands:
    src = os.path.normpath(os.path.join(e['directory'], e['file']))
    rel = os.path.relpath(src, root)
    if not rel.endswith('.c') or rel.startswith(('tests/vm/', '..')):
        continue
    args = shlex.split(e['command'])
    out = [args[0], '-isystem', hdrs, '-isystem', os.path.join(hdrs, multiarch), '-isystem', poison,
           '-fdiagnostics-color=never']
    skip_next = False
    for a in args[1:]:
        if skip_next:
            skip_next = False
        elif a in ('-o', '-MQ', '-MF', '-MT'):
            skip_next = True
        elif a not in ('-MD', '-MMD', '-c') and not a.startswith('-fdiagnostics-color'):
            out.append(a)
    out.append('-fsyntax-only')
    checked += 1
    if why_skip:
        continue
    r = subprocess.run(out, cwd=e['directory'], capture_output=True, text=True)
    ok(r.returncode == 0, f'{rel} compiles against Linux 6.1 headers',
       r.stderr[:3000], 'command: ' + shlex.join(out))
shutil.rmtree(poison, ignore_errors=True)
if why_skip:
    ok(True, f'the {checked} C files of the build compile against Linux 6.1 headers',
       skip=why_skip)
ok(checked >= 20, f'compile_commands.json names the C files of the build ({checked})')

print(f'1..{n}')
sys.exit(1 if failed else 0)
