#!/usr/bin/env python3
"""test-man: the manual pages tell the truth about the library and the tool (TAP).

usage: test-man.py SRCDIR LIBDME_SO DME_CLI VERSION [BUILDDIR MESON MANDIR]

DME_CLI is '-' in a build without the tool (-Dtools=disabled): the checks
against its help are skipped.

  - every function libdme.so exports (nm -D --defined-only) is named in the
    NAME section of exactly one page of docs/man/, and every name there is
    exported;
  - the page of each public header (dme_engine.3 for <dme/engine.h>) names
    exactly the functions that header declares; its SYNOPSIS shows each
    declaration as the header has it, and its text shows each struct, enum
    and #define of the header as the header has it (comments aside);
  - every page is clean roff (groff -man -ww says nothing), has a .TH whose
    title, section and source ("dme VERSION") are right, and a NAME line
    "names \\- what" that man-db can index;
  - every dme page a page refers to (.BR dme_x (3)) exists;
  - dme.1 has a subsection for every command and an item for every option
    the tool's help lists, and the exit status 0, 1 and 2; dme_config.3 an
    item for every DME_* variable;
  - with BUILDDIR: `meson install --tags man` installs every page and a link
    named after each exported function that leads to the page naming it.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

src, lib, dme, version = sys.argv[1:5]
builddir, meson, mandir = (sys.argv[5:8] + [None] * 3)[:3]
mandoc = os.path.join(src, 'docs', 'man')
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


def skip(name, why):
    global n
    n += 1
    print(f"ok {n} - {name} # SKIP {why}")


def finish():
    print(f'1..{n}')
    sys.exit(1 if failed else 0)


def run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


def norm(c):
    """C text without comments, whitespace only where it separates words."""
    c = re.sub(r'/\*.*?\*/', ' ', c, flags=re.S)
    c = re.sub(r'\s+', ' ', c)
    return re.sub(r'\s*([^\w\s])\s*', r'\1', c).strip()


groff = shutil.which('groff')
nm = shutil.which('nm')
ok(groff and nm, 'groff and nm are installed',
   'install package groff-base and binutils (scripts/install-deps.sh does)')
if not (groff and nm):
    finish()

# --- the pages ---------------------------------------------------------------
pages = sorted(f for f in os.listdir(mandoc) if re.match(r'^[\w.-]+\.[1-8]$', f))
ok({'dme.1', 'dme.3'} <= set(pages), f'docs/man has dme.1 and dme.3 ({len(pages)} pages)')
source = {p: open(os.path.join(mandoc, p)).read() for p in pages}


def render(page):
    r = run(groff, '-man', '-Tascii', '-P-c', '-P-b', '-P-u', '-rLL=200n',
            os.path.join(mandoc, page))
    return r.stdout


def sections(text):
    """Rendered page -> {HEADING: body}; headings are the unindented lines."""
    out, cur = {}, None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.isupper():
            cur = line.strip()
            out[cur] = ''
        elif cur:
            out[cur] += line + '\n'
    return out


names = {}      # page -> names in its NAME section
for p in pages:
    s = source[p]
    r = run(groff, '-z', '-man', '-ww', os.path.join(mandoc, p))
    ok(r.returncode == 0 and not r.stderr.strip(), f'{p} is clean roff (groff -man -ww)',
       *r.stderr.splitlines())
    stem, sect = p.rsplit('.', 1)
    th = re.search(r'^\.TH\s+(\S+)\s+(\S+)\s+\S+\s+"([^"]*)"', s, re.M)
    ok(th and th.group(1) == stem.upper() and th.group(2) == sect and
       th.group(3) == f'dme {version}',
       f'{p}: .TH {stem.upper()} {sect} ... "dme {version}"',
       f'found: {th.group(0) if th else "no .TH"}')
    m = re.search(r'^\.SH NAME\n([^.\n][^\n]*)\n\.SH ', s, re.M)
    ok(m and ' \\- ' in m.group(1), f'{p}: one NAME line "names \\- what"')
    names[p] = [x.strip() for x in m.group(1).split(' \\-')[0].split(',')] if m else []

# --- every exported function has a page, and no page names a ghost ----------
r = run(nm, '-D', '--defined-only', lib)
exported = sorted({m.group(1) for m in re.finditer(r'^\S+\s+T\s+(\w+)', r.stdout, re.M)})
ok(r.returncode == 0 and len(exported) >= 50 and all(e.startswith('dme_') for e in exported),
   f'{os.path.basename(lib)} exports {len(exported)} dme_* functions', r.stderr)
where = {}
for p, ns in names.items():
    for x in ns:
        where.setdefault(x, []).append(p)
missing = [e for e in exported if e not in where]
ok(not missing, 'every exported function is named in the NAME section of a page',
   *[f'{e}: no page names it' for e in missing])
twice = [f'{x}: {", ".join(ps)}' for x, ps in where.items() if len(ps) > 1 and x != 'dme']
ok(not twice, 'no function is named by two pages', *twice)
ghosts = [f'{x} ({", ".join(ps)})' for x, ps in where.items()
          if x not in exported and x != 'dme']
ok(not ghosts, 'every name in a NAME section is an exported function', *ghosts)

# --- a page per header, with the header's declarations --------------------
incdir = os.path.join(src, 'include', 'dme')
for h in sorted(os.listdir(incdir)):
    if not h.endswith('.h') or h == 'dme.h':
        continue
    page = f'dme_{h[:-2]}.3'
    text = open(os.path.join(incdir, h)).read()
    code = re.sub(r'/\*.*?\*/', ' ', text, flags=re.S)
    decls = {m.group(2): m.group(0) for m in re.finditer(
        r'^[A-Za-z][^;{}#()]*?\b((dme_\w+))\s*\([^;{}]*\)\s*;', code, re.M)}
    if page not in source:
        ok(False, f'<dme/{h}> has a page {page}')
        continue
    ok(set(names[page]) == set(decls), f'{page} names exactly the functions of <dme/{h}>',
       *[f'not named: {x}' for x in sorted(set(decls) - set(names[page]))],
       *[f'not in the header: {x}' for x in sorted(set(names[page]) - set(decls))])
    rendered = render(page)
    sec = sections(rendered)
    synopsis = norm(sec.get('SYNOPSIS', ''))
    ok(f'#include<dme/{h}>' in synopsis, f'{page}: SYNOPSIS includes <dme/{h}>')
    bad = [d for d in decls.values() if norm(d) not in synopsis]
    ok(not bad, f'{page}: SYNOPSIS shows the declarations as <dme/{h}> has them ({len(decls)})',
       *[f'differs or missing: {norm(d)}' for d in bad])
    types = [m.group(0) for m in re.finditer(r'^(?:struct|enum) dme_\w+ \{.*?^\};', text,
                                              re.M | re.S)]
    types += [m.group(0) for m in re.finditer(r'^#define DME_\w+(?!_H$).*$', text, re.M)
              if not re.match(r'#define DME_\w+_H$', m.group(0))]
    body = norm(sec.get('DESCRIPTION', ''))
    bad = [t for t in types if norm(t) not in body]
    ok(not bad, f'{page}: DESCRIPTION shows the types and constants as <dme/{h}> has them '
       f'({len(types)})', *[f'differs or missing: {norm(t)[:120]}' for t in bad])

# --- references between pages ---------------------------------------------------
known = {p.rsplit('.', 1)[0] + '(' + p.rsplit('.', 1)[1] + ')' for p in pages}
known |= {f'{x}(3)' for x in where}
bad = []
for p in pages:
    for m in re.finditer(r'^\.BR (dme\w*) \((\d)\)', source[p], re.M):
        if f'{m.group(1)}({m.group(2)})' not in known:
            bad.append(f'{p} refers to {m.group(1)}({m.group(2)})')
ok(not bad, 'every dme page a page refers to exists', *bad)

# --- dme.1 against the tool's own help -----------------------------------------
if dme == '-':
    skip("dme.1 documents every command, option and exit status of the tool's help",
         'tools=disabled')
    skip('dme_config.3 ENVIRONMENT describes the variables of dme config', 'tools=disabled')
else:
    man1 = render('dme.1')
    sec1 = sections(man1)
    r = run(dme, 'help')
    ok(r.returncode == 0, 'dme help exits 0')
    top = r.stdout
    cmds = re.findall(r'^  (\w+)  ', top.split('commands:')[-1].split('options:')[0], re.M)
    ok(len(cmds) >= 4, f'dme help lists {len(cmds)} commands')
    undocumented = [c for c in cmds
                    if not re.search(rf'^   dme {c}\b', sec1.get('COMMANDS', ''), re.M)]
    ok(not undocumented, 'dme.1 has a COMMANDS subsection for every command',
       *[f'dme {c}' for c in undocumented])
    OPT = re.compile(r'(?<![\w-])(--[a-z][a-z0-9_-]*)(?![A-Za-z0-9_-])')
    opts = set(OPT.findall(top))
    for c in cmds:
        h = run(dme, c, '--help')
        ok(h.returncode == 0 and h.stdout.startswith(f'usage: dme {c}'),
           f'dme {c} --help exits 0')
        opts |= set(OPT.findall(h.stdout))
    # documented: an item of its own (a tagged paragraph "-x, --opt=value")
    absent = sorted(o for o in opts
                    if not re.search(rf'^\s+(-\w, )?{re.escape(o)}(?![\w-])', man1, re.M))
    ok(not absent, f'dme.1 has an item for each of the {len(opts)} options the help texts list',
       *absent)
    status = sec1.get('EXIT STATUS', '')
    ok(all(re.search(rf'^\s+{c}\s', status, re.M) for c in '012') and
       all(re.search(rf'^\s+{c}\s', top, re.M) for c in '012'),
       'dme.1 and dme help both document the exit status 0, 1 and 2')

    r = run(dme, 'config')
    variables = re.findall(r'^(DME_\w+)\s', r.stdout, re.M)
    env = sections(render('dme_config.3')).get('ENVIRONMENT', '')
    absent = [v for v in variables if not re.search(rf'^\s+{v}\s*$', env, re.M)]
    ok(len(variables) >= 10 and not absent,
       f'dme_config.3 ENVIRONMENT describes the {len(variables)} variables of dme config', *absent)

# --- what meson install puts in place ------------------------------------------
if not builddir:
    skip('meson install installs every page and a link per function', 'docs=disabled')
    finish()
with tempfile.TemporaryDirectory() as dest:
    r = run(meson, 'install', '-C', builddir, '--no-rebuild', '--destdir', dest,
            '--tags', 'man')
    ok(r.returncode == 0, 'meson install --tags man succeeds', *r.stdout.splitlines()[-5:],
       *r.stderr.splitlines()[-5:])
    root = os.path.join(dest, os.path.relpath(mandir, '/'))
    absent = [p for p in pages
              if not os.path.isfile(os.path.join(root, 'man' + p.rsplit('.', 1)[1], p))]
    ok(not absent, f'every page is installed under {mandir}', *absent)
    bad = []
    for e in exported:
        link = os.path.join(root, 'man3', e + '.3')
        target = os.path.realpath(link)
        if not os.path.isfile(target):
            bad.append(f'{e}.3: missing')
        elif os.path.basename(target) not in where.get(e, []):
            bad.append(f'{e}.3 leads to {os.path.basename(target)}, which does not name it')
    ok(not bad, f'man3/<function>.3 leads to the page naming it, for all {len(exported)} '
       'exported functions', *bad)
finish()
