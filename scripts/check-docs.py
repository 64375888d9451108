#!/usr/bin/env python3
"""Every relative link and #anchor in README.md, ARCHITECTURE.md and docs/*.md resolves,
in the repository and as the Debian package installs them (CI runs this).

Usage: python3 scripts/check-docs.py   (exit status 1 with the broken links)
"""
import re, os, sys
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
files = ['README.md', 'ARCHITECTURE.md'] + ['docs/' + f for f in sorted(os.listdir(os.path.join(ROOT, 'docs'))) if f.endswith('.md')]
installed = set(files) | {'docs/browser.png', 'docs/soak.svg', 'bench/results/latest-stall.svg'}

def slug(heading):
    h = heading.strip().lower()
    h = re.sub(r'`', '', h)
    h = re.sub(r'[^\w\- ]', '', h)  # keep letters, digits, underscore, hyphen, space
    return h.replace(' ', '-')

def anchors(path):
    out, seen = set(), {}
    in_code = False
    for line in open(os.path.join(ROOT, path), encoding='utf-8'):
        if line.startswith('```'):
            in_code = not in_code
            continue
        if in_code:
            continue
        m = re.match(r'^(#{1,6})\s+(.*)', line)
        if m:
            s = slug(m.group(2))
            n = seen.get(s, 0)
            out.add(s if n == 0 else f'{s}-{n}')
            seen[s] = n + 1
    return out

problems = 0
for f in files:
    text = open(os.path.join(ROOT, f), encoding='utf-8').read()
    # drop fenced code blocks
    text_nc = re.sub(r'```.*?```', '', text, flags=re.S)
    for m in re.finditer(r'!?\[[^\]]*\]\(([^)\s]+)\)', text_nc):
        link = m.group(1)
        if re.match(r'^[a-z]+:', link):
            continue
        path, _, anchor = link.partition('#')
        target = os.path.normpath(os.path.join(os.path.dirname(f), path)) if path else f
        if not os.path.exists(os.path.join(ROOT, target)):
            print(f'{f}: {link}: no file {target}'); problems += 1; continue
        if target not in installed:
            print(f'{f}: {link}: {target} is not installed with the package'); problems += 1
        if anchor:
            if not target.endswith('.md'):
                print(f'{f}: {link}: anchor into non-markdown'); problems += 1
            elif anchor not in anchors(target):
                print(f'{f}: {link}: no anchor #{anchor} in {target}'); problems += 1
print('links ok' if problems == 0 else f'{problems} problems')
sys.exit(1 if problems else 0)
