"""The layers' import rules of docs/ARCHITECTURE.md: cli -> ui -> engine -> store/sources, nothing upward.

Read from the source with ``ast`` (nothing is imported or run): every ``import`` of a
``storycheck_tui`` module, at any depth of a function, is an arrow from the importing module's
layer to the imported one's. An arrow may go down or stay in its layer, never up; the
simulator imports nothing of storycheck (a black box reached over HTTP).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "storycheck_tui"

#: top to bottom; a unit is a subpackage or a top-level module of storycheck_tui
LAYERS: list[tuple[str, ...]] = [
    ("__main__", "cli"),
    ("ui", "demo"),
    ("engine", "monitor"),
    ("store", "sources", "config", "inputs", "intake", "exports", "result_text"),
    ("states", "errors", "masking", "logs", "logfile", "words", "__init__"),
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
BLACK_BOXES = {"sim"}  # import nothing of storycheck; composition roots (cli, demo) may import them


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, imported storycheck_tui module) for every import in ``path``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found += [(node.lineno, f"{target}.{a.name}" if not node.module else target) for a in node.names]
    return sorted({(line, t) for line, t in found if t == "storycheck_tui" or t.startswith("storycheck_tui.")})


def test_no_import_goes_up_a_layer():
    problems = []
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 30
    for path in files:
        source = unit_of(module_name(path))
        for line, target in imports_of(path):
            dest = unit_of(target)
            where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
            if dest == source:
                continue
            if source in BLACK_BOXES:
                problems.append(f"{where}: the simulator imports nothing of storycheck")
            elif dest in BLACK_BOXES:
                if source not in ("cli", "demo"):
                    problems.append(f"{where}: only the composition roots (cli, demo) start the simulator")
            elif source not in RANK or dest not in RANK:
                problems.append(f"{where}: {source if source not in RANK else dest} has no layer: add it to LAYERS")
            elif RANK[dest] < RANK[source]:
                problems.append(f"{where}: {source} may not import {dest}, a layer above it")
    assert not problems, "\n".join(problems)
