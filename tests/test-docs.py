#!/usr/bin/env python3
"""test-docs: every link in the docs leads somewhere inside the repository (TAP).

  - every relative Markdown link ([text](target)) in README.md and docs/*.md
    names a file of the repository (not a path that leaves it), and its
    #anchor, if any, is a heading of that file;
  - every other mention of a *.md file, in the docs and in the sources'
    comments (a header saying "see docs/X.md"), names a file of the
    repository, relative to the mentioning file or to the top.
Links with a scheme (https:, mailto:) are not followed."""
import os
import re
import sys

root = os.path.realpath(sys.argv[1] if len(sys.argv) > 1 else
                        os.path.join(os.path.dirname(__file__), '..'))
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


def tree_files(pred):
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs
                         if not x.startswith(('.git', 'build')) and x != 'subprojects')
        for f in sorted(files):
            rel = os.path.relpath(os.path.join(d, f), root)
            if pred(rel):
                out.append(rel)
    return out


def inside(path):
    real = os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


def slug(heading):
    """GitHub's anchor for a heading."""
    s = re.sub(r'[`*_]', '', heading.strip().lower())
    s = re.sub(r'[^\w\- ]', '', s)
    return s.replace(' ', '-')


def anchors(path):
    with open(path) as f:
        text = re.sub(r'```.*?```', '', f.read(), flags=re.S)
    return {slug(h) for h in re.findall(r'^#{1,6}\s+(.*)$', text, re.M)}


docs = ['README.md'] + tree_files(lambda p: p.startswith('docs' + os.sep) and p.endswith('.md'))
ok(len(docs) >= 5, f'{len(docs)} documents to check')

LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
links = 0
for rel in docs:
    with open(os.path.join(root, rel)) as f:
        text = re.sub(r'```.*?```', '', f.read(), flags=re.S)
    bad = []
    for target in LINK.findall(text):
        if re.match(r'^[a-z][a-z0-9+.-]*:', target):
            continue
        links += 1
        path, _, anchor = target.partition('#')
        full = os.path.join(root, os.path.dirname(rel), path) if path else os.path.join(root, rel)
        if not inside(full):
            bad.append(f'{target}: leaves the repository')
        elif not os.path.exists(full):
            bad.append(f'{target}: no such file')
        elif anchor and full.endswith('.md') and anchor not in anchors(full):
            bad.append(f'{target}: no heading #{anchor} in {os.path.relpath(full, root)}')
    ok(not bad, f'{rel}: every relative link resolves inside the repository', *bad)
ok(links >= 8, f'{links} relative links checked')

# *.md files named anywhere else: docs, headers, sources, build files, scripts
MENTION = re.compile(r'(?<![\w/.-])((?:\.\./|\./)*(?:[\w.-]+/)*[\w-]+\.md)\b')
me = os.path.relpath(os.path.realpath(__file__), root)
texts = tree_files(lambda p: p != me and
                   p.endswith(('.md', '.c', '.h', '.cc', '.py', '.sh', '.options', 'meson.build',
                               'meson_options.txt')))
mentions = 0
bad = []
for rel in texts:
    with open(os.path.join(root, rel)) as f:
        text = f.read()
    for m in MENTION.findall(text):
        mentions += 1
        cands = [os.path.join(root, os.path.dirname(rel), m), os.path.join(root, m)]
        if not any(inside(c) and os.path.isfile(c) for c in cands):
            bad.append(f'{rel} names {m}, which is not a file of the repository')
ok(not bad, f'every *.md file named in the tree exists in it ({mentions} mentions)', *bad)

print(f'1..{n}')
sys.exit(1 if failed else 0)
