"""Imports run downhill: each package imports only the layers below it, and no module imports itself back.

The layers are written once, in `edgetl/layers.py` (docs/architecture.md explains them). Every `import` and
`from ... import` in the package counts, including the ones inside functions: a lazy import that runs uphill
is still a dependency that runs uphill, just one that fails later.
"""

from __future__ import annotations

import ast
from pathlib import Path

from edgetl.layers import LAYERS, layer_of

PACKAGE = Path(__file__).resolve().parents[1] / "edgetl"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """edgetl modules that `path` imports (absolute names; relative imports resolved)."""
    mod = _module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "edgetl" or target.startswith("edgetl."):
                # `from edgetl.x import y` names the submodule edgetl.x.y when there is one (the package's
                # __init__ runs for any submodule import anyway), else a name defined in edgetl.x
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if (PACKAGE.parent / Path(*sub.split("."))).with_suffix(".py").is_file():
                        found.add(sub)
                    else:
                        found.add(target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name == "edgetl" or a.name.startswith("edgetl."))
    found.discard(mod)
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_belongs_to_a_layer():
    unknown = sorted(m for m in _graph() if layer_of(m) is None)
    assert not unknown, f"modules outside every layer of edgetl/layers.py: {unknown}"


def uphill_imports(graph: dict[str, set[str]]) -> list[str]:
    uphill = []
    for mod, targets in graph.items():
        for t in targets:
            if t == "edgetl":  # the root package holds only __version__
                continue
            if layer_of(t) is None or layer_of(t) > layer_of(mod):
                uphill.append(f"{mod} (layer {LAYERS[layer_of(mod)][0]}) imports {t}")
    return sorted(uphill)


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    known = {m: {t for t in ts if t in graph} for m, ts in graph.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(known[m]):
            if state.get(t) == 1:
                cycles.append([*stack[stack.index(t) :], t])
            elif t not in state:
                visit(t, stack)
        stack.pop()
        state[m] = 2

    for m in sorted(known):
        if m not in state:
            visit(m, [])
    return cycles


def test_imports_run_downhill():
    uphill = uphill_imports(_graph())
    assert not uphill, "imports that run uphill:\n  " + "\n  ".join(uphill)


def test_no_import_cycles():
    """No module reaches itself through imports (a cycle inside one layer is still a knot)."""
    cycles = import_cycles(_graph())
    assert not cycles, "import cycles:\n  " + "\n  ".join(" -> ".join(c) for c in cycles)


def test_the_checks_can_fail():
    """An uphill import and a cycle, built by hand, are both reported."""
    graph = {
        "edgetl.runtime.predictor": {"edgetl.train.loop"},
        "edgetl.train.loop": {"edgetl.train.checks"},
        "edgetl.train.checks": {"edgetl.train.loop"},
    }
    assert uphill_imports(graph) == ["edgetl.runtime.predictor (layer runtime) imports edgetl.train.loop"]
    assert import_cycles(graph) == [["edgetl.train.loop", "edgetl.train.checks", "edgetl.train.loop"]]


def test_the_real_graph_is_read():
    """The parser sees real edges (guards against a check that passes because it reads nothing)."""
    graph = _graph()
    assert "edgetl.runtime.atomic" in graph["edgetl.train.loop"]
    assert "edgetl.models.preprocess" in graph["edgetl.runs.loaded"]
