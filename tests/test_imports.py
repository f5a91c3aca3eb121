"""The import direction of DESIGN.md, made executable."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ["torch", "sqlalchemy", "fastapi", "alembic", "uvicorn", "starlette"]


def modules_loaded_by(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    # run outside the checkout: only the installed names (latlab.*) import, no bare role folder
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path.home()
    )
    # top-level names, and latlab's packages by their second level (latlab.server, ...)
    return {
        ".".join(m.split(".")[:2]) if m.startswith("latlab.") else m.split(".")[0]
        for m in json.loads(out.stdout)
    }


@pytest.mark.parametrize(
    "statement",
    [
        "import latlab.agent.main, latlab.agent.loop",
        "import latlab.client, latlab.schemas, latlab.cli",
        "from latlab.agent.runners import available_runners; available_runners()",
    ],
)
def test_the_agent_and_the_client_load_no_server_or_training_module(statement: str) -> None:
    loaded = modules_loaded_by(statement)
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
    assert loaded.isdisjoint({"latlab.server", "latlab.lut", "latlab.predictors"})


def test_the_core_loads_no_runtime() -> None:
    loaded = modules_loaded_by("import latlab.client, latlab.onnx_summary, latlab.stats")
    assert loaded.isdisjoint({"onnxruntime", "ai_edge_litert", "tflite_runtime", *HEAVY})


def test_import_linter_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_server_serves_predictions_without_torch() -> None:
    loaded = modules_loaded_by(
        "import latlab.server.app, latlab.server.predict.service, latlab.server.registry.service,"
        " latlab.predictors.model"
    )
    assert "torch" not in loaded and "matplotlib" not in loaded


#: The names that build SQL statements; the modules allowed to use them.
STATEMENT_BUILDERS = {"select", "insert", "update", "delete", "func", "text", "and_", "or_"}
SQL_MODULES = {"db.py", "tables.py", "app.py"}  # engine and ids; the tables; /healthz's SELECT 1


def test_sql_statements_are_built_only_in_repositories() -> None:
    """Each server domain is endpoints -> service -> repository: statements live in the
    domain's repository.py (db.py, tables.py and /healthz's probe aside)."""
    offenders = []
    for path in sorted((ROOT / "server").rglob("*.py")):
        if path.name == "repository.py" or path.relative_to(ROOT / "server").as_posix() in (
            SQL_MODULES
        ):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
                used = {alias.name for alias in node.names} & STATEMENT_BUILDERS
                if used:
                    offenders.append(f"{path.relative_to(ROOT)}: {sorted(used)}")
    assert offenders == []
