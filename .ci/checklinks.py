#!/usr/bin/env python3
"""Checks every relative link and #anchor in the repository's Markdown files: the file must
exist inside the repository, and an anchor must be a heading of the target (GitHub's rule)."""
import os, re, subprocess, sys

root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
os.chdir(root)
files = subprocess.check_output(["git", "ls-files", "*.md"], text=True).split()
files = [f for f in files if os.path.exists(f)]

def anchors(path):
    out, seen, fence = set(), {}, False
    for line in open(path, encoding="utf-8"):
        if line.startswith("```"):
            fence = not fence
        if fence:
            continue
        m = re.match(r"^#{1,6} (.*?)\s*#*\s*$", line)
        if not m:
            continue
        a = m.group(1).strip().lower()
        a = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", a)
        a = re.sub(r"[^\w\- ]", "", a)
        a = a.replace(" ", "-")
        n = seen.get(a, 0)
        seen[a] = n + 1
        out.add(a if n == 0 else f"{a}-{n}")
    return out

bad = checked = 0
link = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
for f in files:
    fence = False
    for no, line in enumerate(open(f, encoding="utf-8"), 1):
        if line.startswith("```"):
            fence = not fence
        if fence:
            continue
        for target in link.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # http:, https:, mailto:
            checked += 1
            path, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(f), path)) if path else f
            if not dest.startswith(root) and os.path.isabs(dest) or dest.startswith(".."):
                print(f"{f}:{no}: {target}: outside the repository"); bad += 1; continue
            if not os.path.exists(dest):
                print(f"{f}:{no}: {target}: no such file"); bad += 1; continue
            if anchor and (not dest.endswith(".md") or anchor not in anchors(dest)):
                print(f"{f}:{no}: {target}: no such anchor in {dest}"); bad += 1
print(f"links: {checked} relative links in {len(files)} files, {bad} broken")
sys.exit(1 if bad else 0)
