#!/usr/bin/env python3
"""Checks every relative link in the repository's Markdown files: the file it
names must exist, and a #fragment must name a heading of that file (GitHub's
anchors: lower case, punctuation dropped, spaces as hyphens, -1, -2 ... for
repeats). Links inside code (fenced blocks, `inline`) are not links.
  scripts/check-doc-links.py      exit 0 when all resolve, else 1, naming each
scripts/test.sh runs it."""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_DIRS = {".git", "node_modules", "build", "runs"}
LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)\)|\!\[[^\]]*\]\(([^)\s]+)\)")


def prose_lines(path):
    """(line number, text) of each line outside fenced code, inline code removed."""
    fenced = False
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            if not fenced:
                yield n, re.sub(r"`[^`]*`", "", line)


def anchors(path):
    seen = {}
    out = set()
    fenced = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.lstrip().startswith("```"):
                fenced = not fenced
            m = None if fenced else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
            if not m:
                continue
            slug = re.sub(r"[^\w\- ]", "", m.group(1).lower().replace("`", "")).replace(" ", "-")
            k = seen.get(slug, 0)
            seen[slug] = k + 1
            out.add(slug if k == 0 else f"{slug}-{k}")
    return out


def main():
    errors = []
    checked = 0
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith("build")]
        for name in filenames:
            if not name.endswith(".md"):
                continue
            src = os.path.join(dirpath, name)
            for n, text in prose_lines(src):
                for m in LINK.finditer(text):
                    target = m.group(1) or m.group(2)
                    if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                        continue
                    checked += 1
                    where = f"{os.path.relpath(src, ROOT)}:{n}: {target}"
                    path, _, frag = target.partition("#")
                    dest = os.path.normpath(os.path.join(dirpath, path)) if path else src
                    if not os.path.exists(dest):
                        errors.append(f"{where}: no such file")
                    elif frag and os.path.isfile(dest) and dest.endswith(".md"):
                        if frag not in anchors(dest):
                            rel = os.path.relpath(dest, ROOT)
                            errors.append(f"{where}: no heading #{frag} in {rel}")
    for e in errors:
        print(e, file=sys.stderr)
    print(f"check-doc-links: {checked} relative links, {len(errors)} broken")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
