"""Imports flow downward (ARCHITECTURE.md): a module imports its own subpackage and lower layers
only, at module top. Walks ``src/robustrain`` with ``ast``, counting module-top AND function-local
imports (``TYPE_CHECKING`` blocks skipped), the dependency-free form of an import-linter
``layers`` contract."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import robustrain

ROOT = Path(robustrain.__file__).parent

#: bottom (0) to top (9); a module's subpackage is the first name after ``robustrain.``
LAYERS = {
    "utils": 0,
    "data": 1, "models": 1, "schedules": 1,
    "attacks": 2, "artifacts": 2,
    "methods": 3,
    "config": 4,
    "build": 5,
    "eval": 6,
    "train": 7,
    "reproduce": 8,
    "cli": 9, "__main__": 9,
}
#: only the CLI may defer imports (start-up time); nowhere else is an import hidden in a function
MAY_DEFER = {"cli", "__main__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path) -> list[tuple[str, bool, int]]:
    """(imported robustrain module, inside a function?, line) for every import of ``path``."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, local: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for sub in node.orelse:  # annotations-only imports are skipped, their else is not
                visit(sub, local)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "robustrain" or target.startswith("robustrain."):
                found.append((target, local, node.lineno))
        elif isinstance(node, ast.Import):
            found.extend((a.name, local, node.lineno) for a in node.names
                         if a.name == "robustrain" or a.name.startswith("robustrain."))
        inner = local or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(path.read_text()), False)
    return found


def _layer(module: str) -> tuple[str, int]:
    parts = module.split(".")
    if len(parts) == 1:
        return "robustrain", -1  # the root package: only __version__, importable by all
    sub = "cli" if parts[1] == "__main__" else parts[1]  # `python -m robustrain` is the CLI
    if sub not in LAYERS:
        raise AssertionError(f"{module} is in no layer: add robustrain.{sub} to LAYERS in tests/test_layers.py")
    return sub, LAYERS[sub]


def _violations() -> tuple[list[str], int, int]:
    errors, top, local = [], 0, 0
    for path in sorted(ROOT.rglob("*.py")):
        importer = _module_name(path)
        sub, layer = _layer(importer)
        for target, is_local, line in _imports(path):
            local += is_local
            top += not is_local
            tsub, tlayer = _layer(target)
            where = f"{path.relative_to(ROOT.parent)}:{line}: {importer} imports {target}"
            if tsub != sub and tlayer > layer:
                errors.append(f"{where} (upward: layer {layer} -> {tlayer})")
            elif tsub != sub and tlayer == layer:
                errors.append(f"{where} (sibling packages in layer {layer})")
            if is_local and sub not in MAY_DEFER:
                errors.append(f"{where} (inside a function: import at module top)")
    return errors, top, local


def test_every_subpackage_has_a_layer():
    subs = {p.name if p.is_dir() else p.stem for p in ROOT.iterdir()
            if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__")}
    assert subs <= set(LAYERS), sorted(subs - set(LAYERS))


def test_imports_flow_downward_only():
    errors, top, _ = _violations()
    assert top > 100  # the walk really saw the package's imports
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("source, message", [
    ("from robustrain.train import fit\n", "upward"),
    ("def f():\n    from robustrain.data import load_split\n", "inside a function"),
    ("from robustrain.attacks import pgd\n", "sibling"),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from robustrain.train import fit\n", None),
])
def test_the_checker_catches_what_it_should(tmp_path, monkeypatch, source, message):
    # a fake module inside robustrain.artifacts (layer 2)
    pkg = tmp_path / "robustrain" / "artifacts"
    pkg.mkdir(parents=True)
    (tmp_path / "robustrain" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "probe.py").write_text(source)
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path / "robustrain")
    errors, _, _ = _violations()
    if message is None:
        assert errors == []
    else:
        assert len(errors) == 1 and message in errors[0] and "robustrain.artifacts.probe" in errors[0]
