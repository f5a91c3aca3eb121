"""The deployment files say what the README says: docker-compose.yml is valid Compose (checked
against the Compose specification's JSON schema as check-jsonschema vendors it: no Docker engine
runs in CI), its server runs the README's production command with the README's environment, every
variable it sets is a real setting, and the Dockerfile ships every package of the distribution."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from latlab.agent.config import AgentSettings
from latlab.cli import _parser
from latlab.server.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def production_section() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^## Production setup\n(.*?)^## ", readme, re.S | re.M)
    assert match, "README.md has a '## Production setup' section"
    return match.group(1)


def readme_server_command() -> list[str]:
    lines = [
        line.strip()
        for block in re.findall(r"```bash\n(.*?)```", production_section(), re.S)
        for line in block.splitlines()
        if line.strip().startswith("latlab server")
    ]
    assert len(lines) == 1, f"one 'latlab server' line in the production section: {lines}"
    return shlex.split(lines[0])


def readme_environment() -> set[str]:
    """The variables in the first column of the production section's table."""
    names: set[str] = set()
    for line in production_section().splitlines():
        if line.startswith("| `LATLAB_"):
            names |= set(re.findall(r"`(LATLAB_[A-Z0-9_]+)`", line.split("|")[1]))
    return names


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` against ``env``."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        if env.get(name):
            return env[name]
        if op == "?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == "-" else ""

    return re.sub(r"\$\{(\w+)(?::([-?])([^}]*))?\}", one, value)


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert exe, "check-jsonschema is a dev dependency"
    return subprocess.run(
        [exe, "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_compose_file_follows_the_compose_specification() -> None:
    result = check_jsonschema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_does_catch_a_broken_compose_file(tmp_path: Path) -> None:
    broken = compose()
    broken["services"]["server"]["depends_on"]["postgres"]["condition"] = "when_it_feels_like_it"
    broken["services"]["agent-cpu"]["comand"] = ["latlab", "agent"]  # a typo of "command"
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    result = check_jsonschema(path)
    assert result.returncode != 0
    assert "comand" in result.stdout + result.stderr


def test_the_server_runs_the_readme_command() -> None:
    assert compose()["services"]["server"]["command"] == readme_server_command()


def test_the_server_environment_is_the_readmes() -> None:
    env = set(compose()["services"]["server"]["environment"])
    assert env == readme_environment()


def test_every_variable_compose_sets_is_a_real_setting() -> None:
    services = compose()["services"]
    server_fields = {f"LATLAB_{name.upper()}" for name in Settings.model_fields}
    agent_fields = {f"LATLAB_AGENT_{name.upper()}" for name in AgentSettings.model_fields}
    assert set(services["server"]["environment"]) <= server_fields
    assert set(services["agent-cpu"]["environment"]) <= agent_fields


def test_the_compose_environment_builds_the_settings_it_means(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With only the required secrets in .env the server keeps blobs locally (compose writes
    the unset S3 variables as empty strings); with the S3 lines it uses the bucket."""
    services = compose()["services"]
    required = {"LATLAB_API_KEYS": "k1,k2", "LATLAB_ENROLL_KEY": "enroll"}
    for dotenv, bucket in [
        (required, None),
        (
            {**required, "LATLAB_S3_BUCKET": "latlab", "LATLAB_S3_ENDPOINT_URL": "http://m:9000"},
            "latlab",
        ),
    ]:
        for name in list(os.environ):
            if name.startswith("LATLAB_"):
                monkeypatch.delenv(name)
        for name, value in services["server"]["environment"].items():
            monkeypatch.setenv(name, interpolate(str(value), dotenv))
        settings = Settings()
        assert settings.s3_bucket == bucket
        assert [k.get_secret_value() for k in settings.api_keys] == ["k1", "k2"]
        assert settings.read_api_keys == []
        assert settings.resolved_database_url.startswith("postgresql+psycopg://latlab:")


def test_the_required_secrets_are_the_ones_the_readme_writes_to_env() -> None:
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    assert required == {"LATLAB_API_KEYS", "LATLAB_ENROLL_KEY"}
    printf = next(line for line in production_section().splitlines() if line.startswith("printf "))
    assert all(f"{name}=" in printf for name in required)
    with pytest.raises(KeyError, match="LATLAB_API_KEYS"):
        interpolate(compose()["services"]["server"]["environment"]["LATLAB_API_KEYS"], {})


def test_every_command_in_the_compose_file_is_a_latlab_command() -> None:
    for name in ("server", "agent-cpu"):
        command = compose()["services"][name]["command"]
        assert command[0] == "latlab"
        _parser().parse_args(command[1:])  # exits 2 on an unknown verb or flag


def test_the_image_ships_every_package_with_the_server_agent_and_s3_extras() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = {m.group(1) for m in re.finditer(r"^COPY (\S+) \1$", dockerfile, re.M)}
    assert packages <= copied
    [install] = re.findall(r"pip install .*'\.\[([a-z0-9,]+)\]'", dockerfile)
    assert {"server", "agent", "s3"} <= set(install.split(","))
    assert set(install.split(",")) <= set(pyproject["project"]["optional-dependencies"])
