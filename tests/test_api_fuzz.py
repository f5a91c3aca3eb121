"""schemathesis against the OpenAPI document of a running server, on SQLite and PostgreSQL:
every operation fuzzed (bounded examples, fixed seed) — user routes with an API key, agent
routes with a device token — and not one answer is a 5xx. Then deeper and larger: valid
generated bodies with one value replaced by nesting past the bound, integers past every
column, NUL, and long strings and lists."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from latlab.server.embedded import EmbeddedServer
from latlab.untrusted import MAX_DEPTH
from tests.factories import API_KEY, ENROLL_KEY, make_settings, register

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
    for run, operations in ((device, 5), (user, 39)):
        summary = run.stdout[run.stdout.rfind("SUMMARY") :]
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        assert f"Tested: {operations}" in summary, summary
        assert "Failures:" not in summary and "Errors:" not in summary, summary
        assert "Authentication failed" not in summary, summary
        generated = re.search(r"(\d+) generated, (\d+) passed", summary)
        assert generated is not None and generated.group(1) == generated.group(2), summary


# --------------------------------------------------------------------------- deeper, larger


def deep(depth: int, opener: str) -> str:
    """A placeholder that ``dumps`` writes as ``depth`` arrays or objects nested in each other
    (deeper than Python's own encoder would go)."""
    return f"\x01deep{opener}{depth}\x01"


#: Around latlab's bound and below, at and past Python's recursion limit (where a parser or a
#: recursive walk gives up), and far past both.
DEPTHS = sorted(
    {MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 100_000}
    | set(range(sys.getrecursionlimit() - 120, sys.getrecursionlimit() + 20, 10))
)


def dumps(body: object) -> str:
    text = json.dumps(body)
    for opener, depth in set(re.findall(r'"\\u0001deep([\[{])(\d+)\\u0001"', text)):
        inner, outer = ('{"a":', "}") if opener == "{" else ("[", "]")
        nested = inner * int(depth) + "1" + outer * int(depth)
        text = text.replace(f'"\\u0001deep{opener}{depth}\\u0001"', nested)
    return text


#: What a hostile client puts where a generated body had a value, and whether latlab must refuse
#: it wherever it is: nesting around the bound (and past Python's recursion limit), integers past
#: every column and JSON's exact range, NUL, long strings and lists.
HOSTILE = st.one_of(
    st.builds(deep, st.sampled_from(DEPTHS), st.sampled_from("[{")).map(
        lambda d: (d, int(d[6:-1]) > MAX_DEPTH)
    ),
    st.sampled_from([2**31, 2**53 + 1, 2**63, -(2**63) - 1, 2**64, 10**30]).map(
        lambda n: (n, abs(n) > 2**53)
    ),
    st.sampled_from(["\x00", "a\x00b", "\u0000" * 100]).map(lambda t: (t, True)),
    st.integers(10_000, 300_000).map(lambda n: ("x" * n, False)),
    st.integers(10_000, 300_000).map(lambda n: ([7] * n, False)),
    st.floats(min_value=1e300, allow_infinity=False).map(lambda x: (x, False)),
)


def slots(value: object) -> list[tuple[Any, Any]]:
    """Every (container, key) of a decoded body, the body's own top level first."""
    found: list[tuple[Any, Any]] = []
    stack = [value]
    while stack:
        item = stack.pop()
        keys: Any = (
            item.keys()
            if isinstance(item, dict)
            else range(len(item))
            if isinstance(item, list)
            else ()
        )
        for key in keys:
            found.append((item, key))
            stack.append(item[key])
    return found


def fuzz_hostile(
    http: httpx.Client, operation: Any, token: str, statuses: Counter[int], examples: int
) -> None:
    """``examples`` generated bodies of one operation, each with one value made hostile."""

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE), data=st.data())
    def hostile(case: Any, data: st.DataObject) -> None:
        body = case.body
        places = slots(body)
        must_refuse = False
        if places:
            container, key = data.draw(st.sampled_from(places))
            container[key], must_refuse = data.draw(HOSTILE)
        params = {k: str(v) for k, v in (case.path_parameters or {}).items()}
        response = http.request(
            operation.method.upper(),
            operation.path.format(**params),
            content=dumps(body),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        statuses[response.status_code] += 1
        assert response.status_code < 500, (operation.label, response.text[:500])
        if must_refuse:  # past a bound: refused wherever it is, never stored
            assert response.status_code >= 400, (operation.label, response.text[:500])

    hostile()


@pytest.mark.slow
def test_generated_bodies_made_deeper_and_larger_get_no_server_error(
    fuzzed_server: EmbeddedServer,
) -> None:
    """schemathesis draws valid bodies for every JSON operation; one value of each (at any
    depth) is replaced by a hostile one. Not one answer is a 5xx or a dropped connection."""
    agent, registered = register(fuzzed_server.url)
    schema = schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")
    operations = [
        op
        for result in schema.get_all_operations()
        if (op := result.ok()).body and op.body[0].media_type == "application/json"
    ]
    assert len(operations) >= 10
    statuses: Counter[int] = Counter()
    with agent, httpx.Client(base_url=fuzzed_server.url, timeout=60) as http:
        for operation in operations:
            token = registered.token if "/agent/" in operation.path else API_KEY
            if operation.path.endswith("/register"):
                token = ENROLL_KEY
            fuzz_hostile(http, operation, token, statuses, examples=20)
    assert sum(statuses.values()) >= 15 * len(operations), statuses
    assert httpx.get(f"{fuzzed_server.url}/healthz").status_code == 200
