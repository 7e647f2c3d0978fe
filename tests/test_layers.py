"""The architecture holds: one-way layers (import-linter), and every package imports alone.

The contracts live in ``pyproject.toml``; ``lint-imports`` runs here, in the test command, so
an import in the wrong direction fails CI. docs/architecture.md describes the layers.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("testbed", "agents", "ue_emulator", "edge_node", "cloud_node", "calibration")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def _modules(package: str) -> list[str]:
    names = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _fresh_import(module: str) -> set[str]:
    """Import ``module`` in a new interpreter; returns the heavy runtimes it loaded."""
    code = (
        f"import {module}, sys\n"
        "print(' '.join(m for m in ('torch', 'gymnasium', 'diffusers', 'grpc') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, f"import {module} failed:\n{result.stderr}"
    return set(result.stdout.split())


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_on_its_own(package: str) -> None:
    _fresh_import(package)


@pytest.mark.parametrize("module", [*_modules("testbed/core"), "ue_emulator.world"])
def test_the_core_and_the_world_import_alone_without_torch_or_gymnasium(module: str) -> None:
    assert _fresh_import(module) == set()


def test_lint_imports_keeps_every_contract() -> None:
    result = subprocess.run(
        [str(LINT_IMPORTS)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(_contracts())} kept, 0 broken." in result.stdout


def _subpackages(package: str) -> list[str]:
    return [
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in sorted((ROOT / package).rglob("__init__.py"))
        if path.parent != ROOT / package
    ]


@pytest.mark.parametrize("subpackage", _subpackages("testbed"))
def test_each_subpackage_imports_on_its_own(subpackage: str) -> None:
    _fresh_import(subpackage)


def test_every_part_of_the_application_sits_in_a_layer_by_its_package() -> None:
    """The contract names packages, so a new module inside one needs no edit of it."""
    layers = next(c for c in _contracts() if c["type"] == "layers")["layers"]
    named = {m.strip() for layer in layers for m in layer.replace("|", ":").split(":")}
    children = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in (ROOT / "testbed").iterdir()
        if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").is_file()
    )
    assert children and not [c for c in children if c not in named]
    assert not [m for m in named if m.startswith("testbed.") and m.count(".") > 1]


def test_a_new_module_in_a_subpackage_needs_no_contract_edit(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    (tree / "testbed" / "sim" / "added.py").write_text("import testbed.runs.traces\n")
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr


def _lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS)],
        capture_output=True,
        text=True,
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": ""},
        timeout=120,
    )


def _copy_tree(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("zoo"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "source", "broken"),
    [
        ("testbed/core/upward.py", "import testbed.sim.runner\n", "Layers"),
        ("testbed/runs/upward.py", "import testbed.sim.driver\n", "Layers"),
        ("testbed/sim/upward.py", "import testbed.live.report\n", "Layers"),
        ("testbed/core/heavy.py", "import torch\n", "The core loads neither"),
        ("agents/calls_a_node.py", "import edge_node.executor\n", "Agents decide"),
        ("edge_node/decides.py", "import agents.rcars\n", "Nodes serve decisions"),
    ],
)
def test_lint_imports_fails_on_an_arrow_the_wrong_way(
    tmp_path: Path, module: str, source: str, broken: str
) -> None:
    tree = _copy_tree(tmp_path)
    (tree / module).write_text(source)
    result = _lint(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    broken_lines = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(broken) for line in broken_lines), result.stdout
