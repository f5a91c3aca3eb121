"""The install: every role package lands under ``latlab.*``, nothing generic in site-packages.

The brief fixes the top-level folders (server/, agent/, lut/, predictors/, migrations/); they
are linked into latlab/ so that the repository, an editable install, a wheel, mypy and the import
contracts all see one layout: ``latlab.server``, ``latlab.agent``, ...
"""

from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("server", "agent", "lut", "predictors", "migrations")
SOURCE_DIRS = ("latlab", *ROLES, "tests", "bench", "examples")


def _python_files() -> list[Path]:
    files: list[Path] = []
    for top in SOURCE_DIRS:
        for path in (ROOT / top).rglob("*.py"):
            # rglob does not follow the role links in latlab/: each file is read once
            files.append(path)
    return files


def _core_modules() -> set[str]:
    latlab = ROOT / "latlab"
    return {
        f"latlab.{entry.stem if entry.suffix == '.py' else entry.name}"
        for entry in latlab.iterdir()
        if not entry.is_symlink()
        and not entry.name.startswith("__")
        and (entry.suffix == ".py" or (entry / "__init__.py").is_file())
    }


@pytest.mark.parametrize("role", ROLES)
def test_each_role_folder_is_the_package_latlab_dot_role(role: str) -> None:
    link = ROOT / "latlab" / role
    assert link.is_symlink() and link.resolve() == (ROOT / role).resolve()
    package = importlib.import_module(f"latlab.{role}")
    assert package.__file__ is not None, f"latlab.{role} must be a regular package (__init__.py)"
    assert Path(package.__file__).resolve().parent == (ROOT / role).resolve()


def test_no_code_imports_a_role_by_its_bare_top_level_name() -> None:
    bare = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            bare += [
                f"{path.relative_to(ROOT)}:{node.lineno} {name}"
                for name in names
                if name.split(".")[0] in ROLES
            ]
    assert bare == [], "import them as latlab.<role>: " + ", ".join(bare)


def test_the_import_contracts_name_every_core_module() -> None:
    """A core module left out of the contracts' lists would escape them unnoticed."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contracts = {c["name"]: c for c in config["contracts"]}
    core = _core_modules()
    assert "latlab.lab" in core and "latlab.schemas" in core
    no_roles = contracts[
        "The core never imports a role package (but its composition root, latlab.lab)"
    ]
    assert set(no_roles["source_modules"]) == core
    no_db = contracts["Databases and HTTP serving stay in the server"]
    assert set(no_db["source_modules"]) == core | {
        "latlab.agent",
        "latlab.lut",
        "latlab.predictors",
    }


@pytest.mark.slow
def test_a_wheel_puts_every_role_under_latlab_and_nothing_else_at_the_top(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    shutil.copytree(ROOT / "latlab", source / "latlab", symlinks=True)
    for role in ROLES:
        shutil.copytree(ROOT / role, source / role, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(source)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("latlab-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        top_level = archive.read(next(n for n in names if n.endswith("top_level.txt")))
    assert top_level.decode().split() == ["latlab"]
    assert {name.split("/")[0] for name in names} == {
        "latlab",
        wheel.name.split("-py")[0] + ".dist-info",
    }
    for role in ROLES:
        for path in (ROOT / role).rglob("*.py"):
            if "__pycache__" not in path.parts:
                assert f"latlab/{path.relative_to(ROOT).as_posix()}" in names
    assert "latlab/migrations/script.py.mako" in names
