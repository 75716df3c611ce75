"""The server's code stays in small functions (issue 25: no large closure holding the endpoints)."""
from __future__ import annotations

import ast
from pathlib import Path

import magma_ros.server

MAX_FUNCTION_LINES = 60


def test_no_server_function_is_longer_than_the_limit():
    root = Path(magma_ros.server.__file__).parent
    sizes = {}
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                sizes[f"{path.name}:{node.lineno} {node.name}"] = node.end_lineno - node.lineno + 1
    assert "app.py" in " ".join(sizes) and "routes.py" in " ".join(sizes)
    too_long = {name: lines for name, lines in sizes.items() if lines > MAX_FUNCTION_LINES}
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {too_long}"
