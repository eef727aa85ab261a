"""The import direction of the package is a contract (docs/architecture.md): every module
has a layer, and a module imports only modules of lower layers, or of its own layer
inside its own package. Imports inside functions count as much as those at the top.

The test walks every module's syntax tree (nothing is imported), so it fails on the line
that breaks the rule, however lazily the import is made."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import jetace

PACKAGE = Path(jetace.__file__).parent

#: layer of each module (the longest matching prefix decides); docs/architecture.md
LAYERS = {
    "jetace.errors": 0, "jetace.reproducibility": 0,
    "jetace.formats": 1, "jetace.species": 1, "jetace.basis": 1, "jetace.frames": 1,
    "jetace.numerics": 1, "jetace.features.plan": 1, "jetace.features.bip_plan": 1,
    "jetace.features.angular": 1, "jetace.generate.processes": 1,
    "jetace.schema": 2, "jetace.features": 2, "jetace.cost": 2,
    "jetace.io": 3, "jetace.taggers": 3,
    "jetace.outputs": 4, "jetace.run": 4, "jetace.metrics": 4, "jetace.generate.pythia": 4,
    "jetace.extract": 5, "jetace.mix": 5, "jetace.transformers": 5, "jetace.model_file": 5,
    "jetace.generate": 5, "jetace.presets": 5,
    "jetace.scoring": 6, "jetace.training": 6,
    "jetace.demo": 7,
    "jetace.cli": 8,
    "jetace.__main__": 9,
}

#: the rules of the issue that asked for this test, stated on their own as well
FORBIDDEN = {
    ("jetace.features", "jetace.frames", "jetace.basis", "jetace.io"):
        ("jetace.taggers", "jetace.run", "jetace.scoring", "jetace.training", "jetace.cli"),
    ("jetace.taggers",): ("jetace.metrics", "jetace.scoring", "jetace.model_file",
                          "jetace.cli"),
    ("jetace.model_file",): ("jetace.run", "jetace.extract", "jetace.scoring",
                             "jetace.training", "jetace.cli"),
    ("jetace.run", "jetace.outputs"): ("jetace.scoring", "jetace.training",
                                       "jetace.model_file", "jetace.cli"),
}


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _matches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer(module: str) -> int:
    if module == "jetace":  # the package's facade: lazy names of every layer
        return max(LAYERS.values()) + 1
    best = max((p for p in LAYERS if _matches(module, p)), key=len, default=None)
    if best is None:
        raise AssertionError(f"{module} has no layer in LAYERS: add it (and to "
                             "docs/architecture.md)")
    return LAYERS[best]


def _package(module: str) -> str:
    return module.rsplit(".", 1)[0] if module.count(".") > 1 else module


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every jetace import in the file; ``from jetace import X`` is
    ``jetace.X`` when X is a module, else the package itself (``__version__``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if _matches(a.name, "jetace")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and _matches(node.module, "jetace"):
            if node.module == "jetace":
                for a in node.names:
                    sub = PACKAGE / a.name
                    is_module = sub.is_dir() or sub.with_suffix(".py").is_file()
                    out.append((node.lineno, f"jetace.{a.name}" if is_module else "jetace"))
            else:
                out.append((node.lineno, node.module))
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    for path in MODULES:
        layer(_name(path))


@pytest.mark.parametrize("path", MODULES, ids=[_name(p) for p in MODULES])
def test_imports_point_down(path):
    me = _name(path)
    mine = layer(me)
    for line, other in imports(path):
        if other == "jetace" or _matches(other, me):
            continue  # the version string; a package's own submodules
        theirs = layer(other)
        same_package = _package(me) == _package(other) or _matches(other, _package(me))
        assert theirs < mine or (theirs == mine and same_package), (
            f"{path.name}:{line}: {me} (layer {mine}) imports {other} (layer {theirs})")
        for lower, higher in FORBIDDEN.items():
            if any(_matches(me, p) for p in lower):
                assert not any(_matches(other, h) for h in higher), (
                    f"{path.name}:{line}: {me} must not import {other}")


def test_nothing_imports_the_command_line():
    for path in MODULES:
        if _name(path) in ("jetace.cli", "jetace.__main__"):
            continue
        assert not [o for _, o in imports(path) if _matches(o, "jetace.cli")], path


def test_the_rules_can_fail(tmp_path):
    """The checker sees a lazy import inside a function."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from jetace.cli import main\n    import jetace.taggers\n")
    assert imports(bad) == [(2, "jetace.cli"), (3, "jetace.taggers")]
    assert layer("jetace.features.bip") < layer("jetace.taggers.linear") < layer("jetace.cli")
