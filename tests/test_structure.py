"""The package's import structure: layers point one way, no import cycles, no imports hidden in
functions to dodge one; each family's knowledge lives in its own file; provenance files exist."""
from __future__ import annotations

import ast
import pathlib
from typing import Dict, List, Set, Tuple

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "paddle_lk"

# Lower rank = lower layer. A module may import modules of its own rank or below, never above.
RANKS: List[Tuple[str, int]] = [
    ("paddle_lk.errors", 0), ("paddle_lk.io", 0),
    ("paddle_lk.registry", 1),
    ("paddle_lk.ops", 2),
    ("paddle_lk.layers", 3), ("paddle_lk.reparam", 3),
    ("paddle_lk.checkpoint", 4),
    ("paddle_lk.models", 5),
    ("paddle_lk.utils", 6),
    ("paddle_lk.convert", 7), ("paddle_lk.integrations", 7), ("paddle_lk.analysis", 7),
    ("paddle_lk.engine", 8),  # the product: its tasks use the toolkit integrations, never the reverse
    ("paddle_lk", 9),  # the package's own __init__: the public surface, imports everything
]

# Imports inside functions, allowed with the reason: optional toolkits are imported only when present.
DEFERRED_OK = {
    ("paddle_lk.integrations", "paddle_lk.integrations.seg"): "PaddleSeg parts load only when PaddleSeg is installed",
    ("paddle_lk.integrations", "paddle_lk.integrations.det"): "PaddleDetection parts load only when it is installed",
    ("paddle_lk.integrations", "paddle_lk.integrations.ppcls"): "registered on first use",
}


def _rank(module: str) -> int:
    best = max((p for p, _ in RANKS if module == p or module.startswith(p + ".")), key=len)
    return dict(RANKS)[best]


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(name: str) -> bool:
    rel = pathlib.Path(*name.split("."))
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def _imports(path: pathlib.Path) -> List[Tuple[str, bool, int]]:
    """(imported paddle_lk module, inside a function?, line) of one file."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    in_function: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(sub) for sub in ast.walk(node) if sub is not node)
    out = []
    for node in ast.walk(tree):
        targets: List[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [f"{target}.{a.name}" if _is_module(f"{target}.{a.name}") else target for a in node.names]
        for t in targets:
            if t == "paddle_lk" or t.startswith("paddle_lk."):
                out.append((t, id(node) in in_function, node.lineno))
    return out


FILES = sorted(PKG.rglob("*.py"))
GRAPH: Dict[str, Set[str]] = {}
for _f in FILES:
    GRAPH[_module_name(_f)] = {t for t, deferred, _ in _imports(_f) if not deferred}


def test_layers_point_one_way():
    upward = []
    for f in FILES:
        src = _module_name(f)
        for target, _, line in _imports(f):
            if _rank(target) > _rank(src):
                upward.append(f"{src}:{line} imports {target} (rank {_rank(target)} > {_rank(src)})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_function_level_imports_of_our_own_modules():
    hidden = []
    for f in FILES:
        src = _module_name(f)
        for target, deferred, line in _imports(f):
            if deferred and (src, target) not in DEFERRED_OK:
                hidden.append(f"{src}:{line} imports {target} inside a function")
    assert not hidden, "\n".join(hidden)


def _ancestors(module: str) -> List[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def test_no_import_cycles():
    # Importing a.b.c also runs a.b's __init__: count that edge unless the importer lives in a.b itself.
    edges: Dict[str, Set[str]] = {m: set() for m in GRAPH}
    for src, targets in GRAPH.items():
        for t in targets:
            for node in [t] + [a for a in _ancestors(t) if a not in _ancestors(src) and a != src]:
                if node in edges and node != src:
                    edges[src].add(node)
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_family_knowledge_lives_in_family_files():
    """Nothing outside the family files names a family's layers or variants."""
    family_files = {"paddle_lk/models/replknet.py", "paddle_lk/models/van.py", "paddle_lk/layers/refconv.py"}
    family_files |= {str(p.relative_to(ROOT)) for p in (PKG / "models").glob("*.py") if not p.name.startswith("_")}
    markers = ["lkb_origin", "lkb_reparam", "patch_embed", "spatial_gating_unit", "convmap", "small_kernel_merged",
               "large_kernel_sizes", "embed_dims", "stem.0", "layer_scale"]
    found = []
    for f in FILES:
        rel = str(f.relative_to(ROOT))
        if rel in family_files or rel.startswith("paddle_lk/models/__init__"):
            continue
        text = f.read_text(encoding="utf-8")
        found += [f"{rel}: '{m}'" for m in markers if m in text]
    assert not found, "family knowledge outside the family files:\n" + "\n".join(found)


def test_provenance():
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in license_text and "Version 2.0" in license_text
    for rel in ("paddle_lk/models/replknet.py", "paddle_lk/models/van.py", "paddle_lk/layers/refconv.py"):
        head = (ROOT / rel).read_text(encoding="utf-8")[:1200]
        assert "official" in head.lower() and ("github" in head.lower() or "/" in head), rel
