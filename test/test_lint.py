"""The repository is ruff-clean (ruff.toml), and every ``# noqa`` names its rule(s) and says why."""
from __future__ import annotations

import importlib.util
import io
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {".venv", "build", "install", "log", "out", "__pycache__"}  # as ruff.toml's extend-exclude
# a noqa comment is explained when its codes are followed by " - " and a reason:
# "noqa: E402 - after the sys.path set-up", "noqa: E402, F401 - ..."
NOQA = re.compile(r"#\s*noqa\b", re.IGNORECASE)
EXPLAINED_NOQA = re.compile(r"#\s*noqa: [A-Z]+[0-9]+(, [A-Z]+[0-9]+)* - \S")


def python_files() -> list[Path]:
    files = []
    for directory, subdirs, names in os.walk(REPO):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIPPED_DIRS and not d.startswith("."))
        files += [Path(directory) / n for n in sorted(names) if n.endswith(".py")]
    return files


def unexplained_noqa(source: str) -> list[tuple[int, str]]:
    """(line, comment) of every ``# noqa`` comment without rule codes and a reason (string literals ignored)."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [(tok.start[0], tok.string) for tok in tokens
            if tok.type == tokenize.COMMENT and NOQA.search(tok.string) and not EXPLAINED_NOQA.search(tok.string)]


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None,
                    reason="ruff is not installed (pip install -r requirements-dev.txt)")
@pytest.mark.skipif(not (REPO / "ruff.toml").is_file(), reason="not run from a source checkout (no ruff.toml)")
def test_ruff_check_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_noqa_names_its_rule_and_gives_a_reason():
    files = python_files()
    assert REPO / "test" / "test_lint.py" in files
    bad = [f"{path.relative_to(REPO)}:{line}: {comment}"
           for path in files for line, comment in unexplained_noqa(path.read_text(encoding="utf-8"))]
    assert not bad, "# noqa without rule code and reason ('# noqa: E402 - why'):\n" + "\n".join(bad)


@pytest.mark.parametrize("comment, explained", [
    ("# noqa: F401 - imported to fail early when it is missing", True),
    ("# noqa: E402, F401 - after the sys.path set-up", True),
    ("# noqa", False),
    ("# noqa: F401", False),
    ("# noqa: F401  (the eval extra)", False),
    ("# noqa: F401 -", False),
    ("# NOQA - no code", False),
    ("# tokenizers raises a bare Exception", True),  # no noqa at all
])
def test_the_noqa_rule_tells_explained_from_unexplained(comment, explained):
    source = f"import os  {comment}\ntext = '# noqa'  # a string literal is not a comment\n"
    assert unexplained_noqa(source) == ([] if explained else [(1, comment)])
