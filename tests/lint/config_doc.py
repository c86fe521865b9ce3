#!/usr/bin/env python3
"""docs/configuration.md lists every key of the configuration schema
(src/core/config_schema.cc) under its section, and no key the schema lacks,
so the reference cannot drift from what `dnnd config check` accepts.

usage: config_doc.py [repository root]
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parents[2])
schema = (root / "src/core/config_schema.cc").read_text()
keys = set(re.findall(r'^\s*\{"([a-z_0-9]+\.[a-z_0-9.]+)"', schema, re.M))
doc = (root / "docs/configuration.md").read_text()
documented, section, in_keys = set(), None, False
for line in doc.splitlines():
    m = re.match(r"^### `\[([a-z_0-9.]+)\]`", line)
    if m:
        section, in_keys = m.group(1), False
        continue
    if line.startswith("| key | type | default | meaning |"):
        in_keys = True  # the section's key table (not, say, the model's layer types)
        continue
    if not line.startswith("|"):
        in_keys = False
    m = re.match(r"^\| `([a-z_0-9.]+)` \|", line)
    if m and section and in_keys:
        documented.add(f"{section}.{m.group(1)}")
missing = sorted(keys - documented)
extra = sorted(documented - keys)
for k in missing:
    print(f"docs/configuration.md: key {k} of config_schema.cc is not documented")
for k in extra:
    print(f"docs/configuration.md: documents {k}, which config_schema.cc does not have")
print(f"config_doc: {len(keys)} schema keys, {len(documented)} documented")
sys.exit(1 if missing or extra else 0)
