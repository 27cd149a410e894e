#!/usr/bin/env python3
"""test-deps: scripts/install-deps.sh installs everything dme's scripts and
build files look for (TAP).

install-deps.sh is all a fresh Debian 12 machine (down to a minbase
debootstrap root) gets before the README's commands run, so every package
that anything checks for or calls must be in one of its lists. This test
reads those lists and, from the rest of the tree:

  - build-kernel.sh's command:package table, and every `missing+=(PKG)` of a
    script (build-kernel.sh's file checks, mkinitrd.sh's tools);
  - every `command -v TOOL` in a script, `shutil.which("TOOL")` in Python,
    and `CC=`/`CXX=` compiler a script sets;
  - every find_program(), dependency() and find_library() of a meson.build
    and the project's languages (project() and add_languages());
  - every Debian package a message tells the user to install ("package X",
    "X-dev");
  - every module a Python script imports (the standard library only).

and debian/control's Build-Depends: each is installed by install-deps.sh
(the slow suite builds the packages), and each dependency the package build
looks for (the meson.build files outside tests/vm/ and tests/fuzz/, which
it leaves out) is a Build-Depends or build-essential. The packages the tree
builds itself (libdme-dev, ...) are nobody's dependency.

A tool or library name it does not know fails the test until PROVIDER below
says which package has it (and install-deps.sh installs that package)."""
import os
import re
import sys

root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                       os.path.join(os.path.dirname(__file__), '..'))

# What provides each tool, library or Meson dependency that something in the
# tree looks for. None: deliberately not installed (see the comment).
PROVIDER = {
    # tools
    'make': 'make', 'gcc': 'gcc', 'g++': 'g++', 'cc': 'gcc', 'c++': 'g++',
    'clang': 'clang', 'clang++': 'clang', 'ld': 'binutils', 'readelf': 'binutils',
    'nm': 'binutils', 'groff': 'groff-base',
    'bc': 'bc', 'bison': 'bison', 'flex': 'flex', 'xz': 'xz-utils', 'tar': 'tar',
    'gzip': 'gzip', 'cpio': 'cpio', 'flock': 'util-linux', 'sha256sum': 'coreutils',
    'perl': 'perl-base', 'python3': 'python3', 'meson': 'meson', 'ninja': 'ninja-build',
    'pkg-config': 'pkg-config', 'hugeadm': 'libhugetlbfs-bin', 'numactl': 'numactl',
    'qemu-system-x86_64': 'qemu-system-x86', 'busybox': 'busybox-static',
    'dpkg-deb': 'dpkg', 'dpkg-buildpackage': 'dpkg-dev', 'dh': 'debhelper', 'lintian': 'lintian',
    # only a non-root user needs it, and cannot install it: install-deps.sh
    # says so and stops
    'sudo': None,
    # Meson dependency() / find_library() names
    'threads': 'libc6-dev', 'dl': 'libc6-dev', 'numa': 'libnuma-dev', 'liburing': 'liburing-dev',
    'benchmark': 'libbenchmark-dev',
}
LANGUAGE_COMPILER = {'c': 'gcc', 'cpp': 'g++'}
# Debian's build-essential: never in Build-Depends (Policy 4.2)
BUILD_ESSENTIAL = {'gcc', 'g++', 'libc6-dev', 'make', 'dpkg-dev'}
# meson.build files the package build does not read (-Dvm_tests=disabled -Dfuzz=false)
NOT_PACKAGED = ('tests/vm/', 'tests/fuzz/')

n = 0
failed = 0


def ok(cond, name, *diag):
    global n, failed
    n += 1
    print(f"{'' if cond else 'not '}ok {n} - {name}")
    if not cond:
        failed += 1
        for d in diag:
            print(f"# {d}")


def read(rel):
    with open(os.path.join(root, rel)) as f:
        return f.read()


def tree_files(pred):
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if not x.startswith(('.git', 'build')) and x != 'subprojects']
        for f in files:
            rel = os.path.relpath(os.path.join(d, f), root)
            if pred(rel):
                out.append(rel)
    return sorted(out)


def code_lines(text, comment='#'):
    """The lines of a script or build file that are not comments."""
    return [l for l in text.splitlines() if not l.lstrip().startswith(comment)]


# --- what install-deps.sh installs ------------------------------------------
deps = read('scripts/install-deps.sh')
lists = {m.group(1): m.group(2).split()
         for m in re.finditer(r'^(\w+)=\(([^)]*)\)', deps, re.M)}
lists.pop('missing', None)
installed = set()
for name, pkgs in lists.items():
    installed.update(pkgs)
ok({'pkgs', 'vm_pkgs'} <= set(lists) and len(installed) > 10,
   'install-deps.sh has package lists (%s)' % ', '.join(sorted(lists)))
for name in sorted(lists):
    ok(f'"${{{name}[@]}}"' in deps, f'install-deps.sh installs its list {name}')

# --- what the tree looks for --------------------------------------------------
# (package, where) pairs; unknown tools are failures of their own
wanted = []
unknown = []


def want_tool(tool, where):
    if tool not in PROVIDER:
        unknown.append(f'{tool} ({where})')
    elif PROVIDER[tool]:
        wanted.append((PROVIDER[tool], f'{tool} in {where}'))


scripts = tree_files(lambda p: p.endswith('.sh') or p in ('.ci/run',))
me = os.path.relpath(os.path.abspath(__file__), root)
pys = tree_files(lambda p: p.endswith('.py') and p != me)
mesons = tree_files(lambda p: os.path.basename(p) == 'meson.build')

bk = read('tests/vm/build-kernel.sh')
m = re.search(r'for t in ((?:[^;]|\\\n)*?); do', bk)
table = m.group(1).replace('\\', ' ').split() if m else []
ok(len(table) >= 10 and all(':' in t for t in table),
   f'build-kernel.sh has its command:package table ({len(table)} entries)')
for t in table:
    cmd, pkg = t.split(':', 1)
    wanted.append((pkg, f'build-kernel.sh checks {cmd}'))
    if cmd in PROVIDER and PROVIDER[cmd] != pkg:
        unknown.append(f'{cmd}: build-kernel.sh says {pkg}, PROVIDER says {PROVIDER[cmd]}')

for rel in scripts:
    if rel == 'scripts/install-deps.sh':
        continue
    text = read(rel)
    assigns = dict(re.findall(r'^\s*(\w+)=([\w.+-]+)\s*$', text, re.M))
    for line in code_lines(text):
        for mm in re.finditer(r'missing\+=\(\s*"?([^")\s]+)', line):
            pkg = mm.group(1)
            if pkg.startswith('$'):
                pkg = assigns.get(pkg.strip('${}'), pkg)
            if not pkg.startswith('$'):	# (build-kernel.sh's table is read above)
                wanted.append((pkg, f'{rel} checks for it'))
        for mm in re.finditer(r'command -v ([\w.+-]+)', line):
            want_tool(mm.group(1), rel)
        for mm in re.finditer(r'\b(?:CC|CXX)=([\w.+-]+)', line):
            want_tool(mm.group(1), rel)
        for tool in ('meson', 'ninja', 'python3', 'hugeadm', 'sudo'):
            if re.search(rf'(^|[\s;|&(]){re.escape(tool)}\b(?![.-])', line):
                want_tool(tool, rel)

for rel in pys:
    text = read(rel)
    for mm in re.finditer(r'shutil\.which\(\s*["\']([\w.+-]+)', text):
        want_tool(mm.group(1), rel)
    if text.startswith('#!/usr/bin/env python3'):
        want_tool('python3', rel)
    mods = set(re.findall(r'^\s*import ([\w.]+)', text, re.M))
    mods |= set(re.findall(r'^\s*from ([\w.]+) import', text, re.M))
    foreign = sorted(x for x in mods if x.split('.')[0] not in sys.stdlib_module_names)
    ok(not foreign, f'{rel} imports the standard library only', *foreign)

for rel in mesons:
    text = '\n'.join(code_lines(read(rel)))
    here = os.path.dirname(os.path.join(root, rel))
    for mm in re.finditer(r"find_program\(\s*'([^']+)'", text):
        if not os.path.exists(os.path.join(here, mm.group(1))):
            want_tool(mm.group(1), rel)
    for mm in re.finditer(r"(?<!\w)(?:dependency|find_library)\(\s*'([^']+)'", text):
        want_tool(mm.group(1), rel)
    # project('dme', 'c' or ['c', ...]) and add_languages('cpp' or [...])
    langs = re.findall(r"(?:project\(\s*'[^']*'|add_languages\()\s*,?\s*(\[[^\]]*\]|'[^']*')",
                       text)
    for lang in re.findall(r"'(\w+)'", ' '.join(langs)):
        want_tool(LANGUAGE_COMPILER.get(lang, lang), f'{rel} (language {lang})')

# packages named in messages: "(package X)", "install package X", "X-dev"
for rel in scripts + pys + mesons:
    if rel == 'scripts/install-deps.sh':
        continue
    for line in code_lines(read(rel)):
        for mm in re.finditer(r'\bpackage ([a-z0-9][a-z0-9.+]*(?:-[a-z0-9.+]+)+)', line):
            wanted.append((mm.group(1), f'a message of {rel}'))
        for mm in re.finditer(r'(?<![\w/.$-])([a-z][a-z0-9.+]*(?:-[a-z0-9.+]+)*-dev)\b', line):
            wanted.append((mm.group(1), f'a message of {rel}'))

ok(not unknown, 'every tool and library the tree looks for has a known package',
   *[f'unknown: {u} (add it to PROVIDER and to install-deps.sh)' for u in unknown])

# --- debian/control ------------------------------------------------------------
control = [dict(re.findall(r'^([\w-]+):[ \t]*((?:.*)(?:\n[ \t]+.*)*)', para, re.M))
           for para in re.split(r'\n\s*\n', '\n'.join(code_lines(read('debian/control'))))]
ours = {p['Package'] for p in control if 'Package' in p}
build_deps = set()
for rel in re.split(r'[,|]', control[0].get('Build-Depends', '')):
    name = re.sub(r'[\s(\[<].*', '', rel.strip(), flags=re.S)
    if name:
        build_deps.add('debhelper' if name.startswith('debhelper-compat') else name)
ok(ours >= {'libdme0', 'libdme-dev', 'dme-tools', 'dme-bench'} and len(build_deps) >= 5,
   f'debian/control builds {", ".join(sorted(ours))} from {len(build_deps)} Build-Depends')
for pkg in sorted(build_deps):
    ok(pkg in installed, f'install-deps.sh installs Build-Depends {pkg}')
pkg_wanted = {}
for pkg, where in wanted:
    if not any(d in where for d in NOT_PACKAGED) and re.search(r'meson\.build\b', where) \
            and pkg not in BUILD_ESSENTIAL:
        pkg_wanted.setdefault(pkg, []).append(where)
for pkg in sorted(pkg_wanted):
    ok(pkg in build_deps, f'debian/control Build-Depends {pkg}',
       *[f'wanted by: {w}' for w in sorted(set(pkg_wanted[pkg]))])
wanted = [(pkg, where) for pkg, where in wanted if pkg not in ours]

by_pkg = {}
for pkg, where in wanted:
    by_pkg.setdefault(pkg, []).append(where)
ok(len(by_pkg) >= 25, f'the tree asks for {len(by_pkg)} packages')
for pkg in sorted(by_pkg):
    ok(pkg in installed, f'install-deps.sh installs {pkg}',
       *[f'wanted by: {w}' for w in sorted(set(by_pkg[pkg]))])

print(f'1..{n}')
sys.exit(1 if failed else 0)
