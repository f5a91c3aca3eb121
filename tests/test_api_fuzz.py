"""schemathesis against the OpenAPI document of a running server, on SQLite and PostgreSQL:
every operation fuzzed (bounded examples, fixed seed) — user routes with an API key, agent
routes with a device token — and not one answer is a 5xx."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from latlab.server.embedded import EmbeddedServer
from tests.factories import API_KEY, make_settings, register

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.fixture
def fuzzed_server(tmp_path: Path, db_url: str) -> Iterator[EmbeddedServer]:
    # a claim long-polls for at most claim_wait_max_s: short, so no fuzzed claim times out
    with EmbeddedServer(make_settings(tmp_path, db_url, claim_wait_max_s=0.5)) as server:
        yield server


def fuzz(
    url: str, token: str, paths: list[str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "5",
            "--seed",
            "1",
            "--no-color",
            "--header",
            f"Authorization: Bearer {token}",
            *paths,
            "--report-dir",
            str(tmp_path / "schemathesis"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # its .schemathesis/ cache lands there, not in the checkout
    )


@pytest.mark.slow
def test_no_fuzzed_request_gets_a_server_error(
    fuzzed_server: EmbeddedServer, tmp_path: Path
) -> None:
    agent, registered = register(fuzzed_server.url)
    with agent:
        # the agent routes first: the user routes' stateful phase finds the device and
        # revokes it, after which its token only gets 401s
        device = fuzz(
            fuzzed_server.url, registered.token, ["--include-path-regex", "^/v1/agent/"], tmp_path
        )
        user = fuzz(fuzzed_server.url, API_KEY, ["--exclude-path-regex", "^/v1/agent/"], tmp_path)
    for run, operations in ((device, 5), (user, 32)):
        summary = run.stdout[run.stdout.rfind("SUMMARY") :]
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        assert f"Tested: {operations}" in summary, summary
        assert "Failures:" not in summary and "Errors:" not in summary, summary
        assert "Authentication failed" not in summary, summary
        generated = re.search(r"(\d+) generated, (\d+) passed", summary)
        assert generated is not None and generated.group(1) == generated.group(2), summary
