"""Every documentation reference in the code names a file of this repository (docs/), and the
code never cites files that live outside it (the design notes and papers the project started
from)."""
import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTSIDE = re.compile(r"REFERENCE\.md|DESIGN\.md|papers/\w+\.txt|\.\./shared/")
DOC_REF = re.compile(r"docs/[\w./-]+\.md")


def _tracked(pattern):
    out = subprocess.run(["git", "ls-files", pattern], cwd=ROOT, capture_output=True, text=True)
    return [f for f in out.stdout.split() if os.path.exists(os.path.join(ROOT, f))]


def test_code_cites_only_files_in_the_repository():
    outside, missing = [], []
    for path in _tracked("*.py") + _tracked("*.flags") + _tracked("*.cc"):
        if path == "tests/test_docs.py":
            continue
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if OUTSIDE.search(line):
                    outside.append(f"{path}:{n}: {line.strip()}")
                for ref in DOC_REF.findall(line):
                    if not os.path.exists(os.path.join(ROOT, ref)):
                        missing.append(f"{path}:{n}: {ref}")
    assert not outside, "cites files outside the repository:\n" + "\n".join(outside)
    assert not missing, "cites docs that do not exist:\n" + "\n".join(missing)


def test_docs_index_lists_every_page():
    pages = sorted(f for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md"))
    with open(os.path.join(ROOT, "docs", "README.md"), encoding="utf-8") as f:
        index = f.read()
    assert [p for p in pages if p != "README.md" and f"({p})" not in index] == []
