"""Imports in magma_ros/ only go down the layers (issue 15):

    errors, options, interface, image_msgs, progress, actions   (bottom)
    policy
    safety                                                      (with magma_node's turn: safety.node_core)
    ros | sim | eval | server                                   (peers: none imports another)
    train                          (fine-tuning: may use eval, never ros, sim or server)
    commands, demo, demo_learn, cli                             (top)

Inside every package, no import runs both ways or in a circle between two of its members (modules
and subpackages alike: ``policy/hf_adapters.py`` importing ``policy/magma_native/processing.py``
while ``policy/magma_native/loading.py`` imports ``policy/hf_adapters.py`` is a tie between
``hf_adapters`` and ``magma_native``).

Every module is parsed with ``ast`` (not imported), so imports inside functions count too, and
relative imports are resolved against the module's own package.
"""
from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

import magma_ros

PACKAGE = "magma_ros"
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "finite", "options", "interface", "image_msgs", "progress", "rcl_startup", "actions"),
    ("policy",),
    ("safety",),
    ("ros", "sim", "eval", "server"),
    ("train",),
    ("commands", "demo", "demo_learn", "cli"),
)
PEERS = {"ros", "sim", "eval", "server"}  # a layer whose members must not import one another
# lower layers a layer must not import although they are below it
FORBIDDEN = {"train": {"ros", "sim", "server"}}
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    imported: str
    why: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported} ({self.why})"


def module_name(path: Path, root: Path) -> str:
    """``root/magma_ros/eval/bag.py`` -> ``magma_ros.eval.bag`` (a package is its ``__init__``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import anywhere in the tree; for ``from X import
    name``, ``X.name`` (a name may be a submodule; a layer check needs only the prefix)."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def layer_of(module: str) -> str | None:
    """The layer member (top-level part) of a ``magma_ros`` module; None outside the package or for
    the package root itself."""
    parts = module.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        return None
    return parts[1]


def check_tree(root: Path) -> list[Violation]:
    """Every import under ``root/magma_ros`` that goes up a layer or sideways between peers, and
    every module whose layer is unknown (a new top-level module must be given a layer here)."""
    violations: list[Violation] = []
    for path in sorted((root / PACKAGE).rglob("*.py")):
        module = module_name(path, root)
        own = layer_of(module)
        if own is None:
            continue  # the package root (magma_ros/__init__.py)
        if own not in RANK:
            violations.append(Violation(module, 0, module, f"{own!r} has no layer in test_layers.LAYERS"))
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, imported in imported_modules(tree, module, path.name == "__init__.py"):
            target = layer_of(imported)
            if target is None or target == own:
                continue
            if target not in RANK:
                continue  # ``from magma_ros import __version__`` and the like: not a module
            if RANK[target] > RANK[own]:
                violations.append(Violation(module, line, imported, f"up: {own} is below {target}"))
            elif target in FORBIDDEN.get(own, ()):
                violations.append(Violation(module, line, imported, f"forbidden: {own} never imports {target}"))
            elif RANK[target] == RANK[own] and own in PEERS:
                violations.append(Violation(module, line, imported, f"sideways: {own} and {target} are peers"))
    return violations


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """Every module under ``root/magma_ros`` -> {module of the package it imports: first line}
    (``from X import name`` counts as the module ``X.name`` when that is one, else ``X``)."""
    paths = {module_name(path, root): path for path in sorted((root / PACKAGE).rglob("*.py"))}

    def resolve(name: str) -> str | None:
        parts = name.split(".")
        while parts and ".".join(parts) not in paths:
            parts.pop()
        return ".".join(parts) or None

    graph: dict[str, dict[str, int]] = {}
    for module, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges = graph.setdefault(module, {})
        for line, imported in sorted(imported_modules(tree, module, path.name == "__init__.py")):
            target = resolve(imported)
            if target is not None and target != module:
                edges.setdefault(target, line)
    return graph


def sibling_pair(module: str, imported: str) -> tuple[str, str] | None:
    """The members of their nearest common package that ``module`` and ``imported`` belong to
    (``a.b.c``, ``a.d.e`` -> ``a.b``, ``a.d``); None when one contains the other."""
    left, right = module.split("."), imported.split(".")
    common = 0
    while common < min(len(left), len(right)) and left[common] == right[common]:
        common += 1
    if common in (len(left), len(right)):
        return None
    return ".".join(left[: common + 1]), ".".join(right[: common + 1])


def check_ties(root: Path) -> list[Violation]:
    """Every import between two members of one package (modules or subpackages) that the other
    member imports back, directly (both ways) or through others of the package (a circle)."""
    graph = import_graph(root)
    members: dict[str, dict[str, list[tuple[str, int, str]]]] = {}
    for module, edges in graph.items():
        for imported, line in edges.items():
            pair = sibling_pair(module, imported)
            if pair is not None:
                members.setdefault(pair[0], {}).setdefault(pair[1], []).append((module, line, imported))

    def reaches(start: str, goal: str) -> bool:
        seen, todo = {start}, [start]
        while todo:
            for nxt in members.get(todo.pop(), {}):
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    violations = []
    for own, targets in sorted(members.items()):
        for other, imports in sorted(targets.items()):
            if own in members.get(other, {}):
                why = f"both ways: {other} imports {own} too"
            elif reaches(other, own):
                why = f"circle: {other} leads back to {own}"
            else:
                continue
            violations += [Violation(module, line, imported, why) for module, line, imported in imports]
    return violations


def test_imports_follow_the_layers() -> None:
    root = Path(magma_ros.__file__).resolve().parent.parent
    assert (root / PACKAGE / "interface.py").is_file()
    violations = check_tree(root)
    assert not violations, "imports against the layers:\n" + "\n".join(map(str, violations))


def test_no_import_runs_both_ways() -> None:
    root = Path(magma_ros.__file__).resolve().parent.parent
    violations = check_ties(root)
    assert not violations, "imports that tie two modules:\n" + "\n".join(map(str, violations))


def test_every_module_was_checked() -> None:
    """The walk sees the whole package (a wrong root would pass vacuously)."""
    root = Path(magma_ros.__file__).resolve().parent.parent
    modules = {module_name(p, root) for p in (root / PACKAGE).rglob("*.py")}
    assert {"magma_ros.ros.node", "magma_ros.safety.conversion", "magma_ros.safety.node_core", "magma_ros.eval.replay",
            "magma_ros.cli"} <= modules
    assert {layer_of(m) for m in modules} - {None} == set(RANK)


def plant(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    for directory in {(root / PACKAGE / name).parent for name in files}:
        while directory != root:
            (directory / "__init__.py").touch()
            directory = directory.parent
    return root


CLEAN = {
    "errors.py": "class UserError(Exception): ...\n",
    "actions/twist.py": "from ..errors import UserError\n",
    "policy/base.py": "from ..actions import twist\nfrom magma_ros.errors import UserError\n",
    "safety/conversion.py": "from ..policy.base import Prediction\nfrom . import rules\n",
    "ros/node.py": "from .. import interface\nfrom ..safety import conversion\n",
    "train/run.py": "from ..eval import stream\nfrom ..policy import magma\nfrom . import trainer\n",
    "cli.py": "from .commands import serve\nfrom magma_ros.ros import node\n",
}


def test_checker_accepts_downward_imports(tmp_path: Path) -> None:
    assert check_tree(plant(tmp_path, CLEAN)) == []


@pytest.mark.parametrize("name, text, expected", [
    ("safety/conversion.py", "from ..ros.node import MagmaNode\n",
     "magma_ros.safety.conversion:1 imports magma_ros.ros.node.MagmaNode (up: safety is below ros)"),
    ("sim/controllers.py", "import numpy\n\ndef limits():\n    from ..ros import settings\n",
     "magma_ros.sim.controllers:4 imports magma_ros.ros.settings (sideways: sim and ros are peers)"),
    ("server/fleet.py", "import magma_ros.commands.serve as serve\n",
     "magma_ros.server.fleet:1 imports magma_ros.commands.serve (up: server is below commands)"),
    ("actions/rotation.py", "from magma_ros import policy\n",
     "magma_ros.actions.rotation:1 imports magma_ros.policy (up: actions is below policy)"),
    ("policy/__init__.py", "from .. import safety\n",
     "magma_ros.policy:1 imports magma_ros.safety (up: policy is below safety)"),
    ("eval/deep/inner.py", "class A:\n    def f(self):\n        from ...server import app\n",
     "magma_ros.eval.deep.inner:3 imports magma_ros.server.app (sideways: eval and server are peers)"),
    ("gadgets.py", "x = 1\n", "magma_ros.gadgets:0 imports magma_ros.gadgets ('gadgets' has no layer"),
    ("train/trainer.py", "from ..ros import node\n",
     "magma_ros.train.trainer:1 imports magma_ros.ros.node (forbidden: train never imports ros)"),
    ("train/run.py", "from ..commands import eval\n",
     "magma_ros.train.run:1 imports magma_ros.commands.eval (up: train is below commands)"),
])
def test_checker_names_a_planted_violation(tmp_path: Path, name: str, text: str, expected: str) -> None:
    violations = check_tree(plant(tmp_path, {**CLEAN, name: text}))
    assert len(violations) == 1 and str(violations[0]).startswith(expected), violations


def test_tie_checker_accepts_one_way_imports(tmp_path: Path) -> None:
    one_way = {**CLEAN, "policy/hf.py": "from .base import Prediction\n",
               "policy/native/adapter.py": "from ..hf import Adapter\nfrom . import model\n",
               "policy/native/model.py": "def f():\n    from ...actions import twist\n"}
    assert check_ties(plant(tmp_path, one_way)) == []


@pytest.mark.parametrize("files, expected", [
    ({"policy/base.py": "from . import hf\n", "policy/hf.py": "def f():\n    from .base import Prediction\n"},
     ["magma_ros.policy.base:1 imports magma_ros.policy.hf (both ways: magma_ros.policy.hf imports",
      "magma_ros.policy.hf:2 imports magma_ros.policy.base (both ways: magma_ros.policy.base imports"]),
    ({"policy/hf.py": "def f():\n    from .native.processing import crops\n",
      "policy/native/processing.py": "x = 1\n", "policy/native/loading.py": "from ..hf import Adapter\n"},
     ["magma_ros.policy.hf:2 imports magma_ros.policy.native.processing (both ways: magma_ros.policy.native",
      "magma_ros.policy.native.loading:1 imports magma_ros.policy.hf (both ways: magma_ros.policy.hf"]),
    ({"policy/a.py": "from . import b\n", "policy/b.py": "from . import c\n", "policy/c.py": "from .a import x\n"},
     ["magma_ros.policy.a:1 imports magma_ros.policy.b (circle: magma_ros.policy.b leads back to magma_ros.policy.a)",
      "magma_ros.policy.b:1 imports magma_ros.policy.c (circle:",
      "magma_ros.policy.c:1 imports magma_ros.policy.a (circle:"]),
    ({"errors.py": "from .options import Option\n", "options.py": "from .errors import UserError\n"},
     ["magma_ros.errors:1 imports magma_ros.options (both ways:",
      "magma_ros.options:1 imports magma_ros.errors (both ways:"]),
])
def test_tie_checker_names_each_import_of_a_tie(tmp_path: Path, files: dict[str, str], expected: list[str]) -> None:
    violations = sorted(map(str, check_ties(plant(tmp_path, {**CLEAN, **files}))))
    assert len(violations) == len(expected) and all(v.startswith(e) for v, e in zip(violations, expected)), violations
