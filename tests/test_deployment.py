"""The deployment files say what the README says: docker-compose.yml is valid Compose (checked
against the Compose specification's JSON schema as check-jsonschema vendors it: no Docker engine
runs in CI), its server runs the README's production command with the README's environment, every
variable it sets is a real setting, its secrets have no defaults, its images are exact releases
and each built one is named, and the CPU agent has CPUs of its own. The Dockerfile is read line
by line: a target per role with only that role's extras, dependencies installed before any source
is copied, a non-root user, a healthcheck that tells a live server from none, exact base images;
and .dockerignore leaves the distribution's files in the build context and nothing else."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from latlab.agent.config import AgentSettings
from latlab.cli import _parser
from latlab.server.config import Settings
from latlab.server.embedded import EmbeddedServer, free_port

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

#: The Dockerfile's targets (compose's services build them) and the extras each installs.
ROLE_EXTRAS = {"server": {"server", "s3"}, "agent": {"agent", "tflite"}}
#: What an exact release looks like, per third-party image; a new image needs its line here.
EXACT_RELEASE = {
    "python": r"\d+\.\d+\.\d+-slim-[a-z]+",
    "postgres": r"\d+\.\d+-[a-z]+",  # PostgreSQL's versions are major.minor
    "quay.io/minio/minio": r"RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ",
}


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
    required = {
        "POSTGRES_PASSWORD": "pw",
        "LATLAB_API_KEYS": "k1,k2",
        "LATLAB_ENROLL_KEY": "enroll",
    }
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
        assert settings.resolved_database_url.startswith("postgresql+psycopg://latlab:pw@postgres:")


def test_the_required_secrets_are_the_ones_the_readme_writes_to_env() -> None:
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    assert required == {"POSTGRES_PASSWORD", "LATLAB_API_KEYS", "LATLAB_ENROLL_KEY"}
    printf = next(line for line in production_section().splitlines() if line.startswith("printf "))
    assert all(f"{name}=" in printf for name in required)
    # one value per name, each a fresh random one
    assert printf.count("%s") == printf.count("$(openssl rand -hex 24)") == len(required)
    environment = compose()["services"]["server"]["environment"]
    with pytest.raises(KeyError, match="LATLAB_API_KEYS"):
        interpolate(environment["LATLAB_API_KEYS"], {})
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        interpolate(environment["LATLAB_DATABASE_URL"], {})


def test_no_password_or_key_falls_back_to_a_default() -> None:
    """A secret is required (``:?``), or empty when unset (``:-``: optional ones, and MinIO's,
    which MinIO refuses empty); never a value anyone can read in this file."""
    text = COMPOSE.read_text()
    secrets = [
        m
        for m in re.finditer(r"\$\{(\w+)(?::?([-?])([^}]*))?\}", text)
        if re.search(r"PASSWORD|SECRET|_KEYS?$", m.group(1))
    ]
    assert {m.group(1) for m in secrets} >= {"POSTGRES_PASSWORD", "LATLAB_S3_SECRET_ACCESS_KEY"}
    for m in secrets:
        assert m.group(2) == "?" or not m.group(3), f"{m.group(0)} has a default"
    for service in compose()["services"].values():
        for name, value in (service.get("environment") or {}).items():
            if "PASSWORD" in name:  # the whole value is a variable, no literal
                assert re.fullmatch(r"\$\{\w+(:[-?][^}]*)?\}", str(value)), (name, value)
    postgres = compose()["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert postgres.startswith("${POSTGRES_PASSWORD:?")


def test_every_command_in_the_compose_file_is_a_latlab_command() -> None:
    for name in ("server", "agent-cpu"):
        command = compose()["services"][name]["command"]
        assert command[0] == "latlab"
        _parser().parse_args(command[1:])  # exits 2 on an unknown verb or flag


# --- the Dockerfile, read line by line ---------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


@dataclass(frozen=True)
class Stage:
    name: str
    base: str
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]


def dockerfile_stages(text: str | None = None) -> dict[str, Stage]:
    """The Dockerfile's stages by name (their index where unnamed), each with its instructions:
    continuation lines joined, comments left out."""
    logical: list[str] = []
    pending = ""
    for line in (DOCKERFILE.read_text() if text is None else text).splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].strip() + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    stages: dict[str, Stage] = {}
    current: tuple[str, str] | None = None
    body: list[Instruction] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            if current:
                stages[current[0]] = Stage(*current, tuple(body))
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.I)
            assert m, line
            current, body = (m.group(2) or str(len(stages)), m.group(1)), []
        else:
            body.append(Instruction(keyword.upper(), args.strip()))
    if current:
        stages[current[0]] = Stage(*current, tuple(body))
    return stages


def ancestors(stage: Stage, stages: dict[str, Stage]) -> list[Stage]:
    chain = []
    while stage.base in stages:
        stage = stages[stage.base]
        chain.append(stage)
    return chain


def dependency_extras(run: str) -> set[str] | None:
    """The extras a ``RUN`` installs the dependencies of (``pip install '.[a,b]'``), if it does."""
    m = re.search(r"pip install [^'|&;]*'\.\[([a-z0-9,]+)\]'", run)
    return set(m.group(1).split(",")) if m else None


def copy_sources(args: str) -> list[str]:
    words = [w for w in shlex.split(args) if not w.startswith("--")]
    return words[:-1]


def is_exact_release(ref: str) -> bool:
    """``ref`` names an exact release of an image that EXACT_RELEASE knows (a digest may follow)."""
    name = ref.split("@")[0]
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:
        return False
    pattern = EXACT_RELEASE.get(repo)
    return pattern is not None and re.fullmatch(pattern, tag) is not None


def image_healthcheck() -> tuple[str, list[str]]:
    """The server image's HEALTHCHECK: its options and its command."""
    [check] = dockerfile_stages()["server"].all("HEALTHCHECK")
    m = re.fullmatch(r"(.*?)\s*CMD\s+(\[.*\])", check)
    assert m, f"HEALTHCHECK ... CMD [exec form]: {check}"
    command: list[str] = json.loads(m.group(2))
    return m.group(1), command


def test_the_dockerfile_reader_sees_what_a_floating_root_image_did_wrong() -> None:
    """The reader and the rules below, on the Dockerfile this project had before."""
    before = dockerfile_stages(
        "FROM python:3.11-slim\nWORKDIR /app\nCOPY pyproject.toml README.md ./\n"
        "COPY latlab latlab\nRUN pip install --no-cache-dir \\\n    '.[server,agent,s3]'\n"
        'EXPOSE 8000\nCMD ["latlab", "server"]\n'
    )
    [stage] = before.values()
    assert not is_exact_release(stage.base)
    assert dependency_extras(stage.all("RUN")[0]) == {"server", "agent", "s3"}
    assert copy_sources(stage.all("COPY")[1]) == ["latlab"]
    assert not stage.all("USER") and not stage.all("HEALTHCHECK")
    for floating in ("python:3.11", "postgres:16", "postgres:latest", "minio/minio", "postgres"):
        assert not is_exact_release(floating)
    assert not is_exact_release("quay.io/minio/minio:latest")
    assert is_exact_release("postgres:16.14-trixie@sha256:" + "0" * 64)


def test_each_target_installs_its_dependencies_before_any_source_is_copied() -> None:
    """The dependency layer changes with pyproject.toml only (a stub package stands in for the
    sources); the sources come after it, as the wheel, installed without dependencies."""
    stages = dockerfile_stages()
    for role in ROLE_EXTRAS:
        steps = stages[role].instructions
        [deps] = [
            k for k, i in enumerate(steps) if i.keyword == "RUN" and dependency_extras(i.args)
        ]
        assert "pip uninstall --yes latlab" in steps[deps].args  # the stub goes again
        before = [copy_sources(i.args) for i in steps[:deps] if i.keyword == "COPY"]
        assert before == [["pyproject.toml"]], f"{role}: {before} copied before its dependencies"
        for stage in ancestors(stages[role], stages):
            assert not stage.all("COPY"), f"{stage.name}, under {role}, copies sources"
        after = steps[deps + 1 :]
        copies = [i.args for i in after if i.keyword == "COPY"]
        assert copies and all(c.startswith("--from=wheel ") for c in copies), copies
        installs = [i.args for i in after if i.keyword == "RUN" and "pip install" in i.args]
        assert installs and all("--no-deps" in i for i in installs), installs


def test_each_target_installs_only_its_own_extras() -> None:
    stages = dockerfile_stages()
    optional = set(PYPROJECT["project"]["optional-dependencies"])
    for role, extras in ROLE_EXTRAS.items():
        installed = [e for run in stages[role].all("RUN") if (e := dependency_extras(run))]
        assert installed == [extras], f"{role} installs {installed}"
        assert extras <= optional
    assert set(stages) >= set(ROLE_EXTRAS)


def test_the_wheel_stage_copies_every_package_of_the_distribution() -> None:
    """latlab/ and the role folders its links point to (the wheel takes them through the links,
    so each lands where the link expects it), and what the metadata reads."""
    packages = {
        p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    links = {
        os.path.normpath(ROOT / "latlab" / os.readlink(p)).removeprefix(f"{ROOT}{os.sep}")
        for p in (ROOT / "latlab").iterdir()
        if p.is_symlink()
    }
    assert links, "the role folders are links in latlab/"
    wheel = dockerfile_stages()["wheel"]
    copied: set[str] = set()
    for args in wheel.all("COPY"):
        sources, dest = copy_sources(args), shlex.split(args)[-1]
        copied |= set(sources)
        assert dest in {"./", sources[0]}, f"COPY {args}: keep the folder's name"
    assert packages | links | {"pyproject.toml", PYPROJECT["project"]["readme"]} <= copied
    assert any("pip wheel --no-deps" in run for run in wheel.all("RUN"))


def test_the_images_run_as_the_unprivileged_user_the_base_stage_makes() -> None:
    stages = dockerfile_stages()
    for role in ROLE_EXTRAS:
        runs = " ".join(
            run for stage in ancestors(stages[role], stages) for run in stage.all("RUN")
        )
        uid = re.search(r"useradd .*--uid (\d+)", runs)
        assert uid, f"no user made under {role}"
        steps = stages[role].instructions
        users = [k for k, i in enumerate(steps) if i.keyword == "USER"]
        assert users, f"{role} runs as root"
        user = steps[users[-1]].args.split(":")[0]
        assert user not in {"root", "0"}
        assert user == uid.group(1)
        assert all(i.keyword != "RUN" for i in steps[users[-1] :]), "USER after the last RUN"


def test_the_volumes_compose_mounts_start_out_writable_by_that_user() -> None:
    """Docker gives a new named volume the ownership of the image's folder it is mounted on, so
    each mount point is made in the image and owned by latlab (else root owns the volume)."""
    stages = dockerfile_stages()
    for name, service in compose()["services"].items():
        if "build" not in service:
            continue
        assert isinstance(service["build"], dict), f"{name}: build: names no target"
        runs = " ".join(stages[service["build"]["target"]].all("RUN"))
        for volume in service.get("volumes", []):
            target = volume.split(":")[1]
            owned = rf"install --directory --owner=latlab --group=latlab {re.escape(target)}\b"
            assert re.search(owned, runs), f"{name}: {target} is not made for latlab"


def test_the_server_image_checks_the_health_endpoint_compose_checks() -> None:
    options, command = image_healthcheck()
    assert "--start-period=" in options
    assert command[:2] == ["python", "-c"]  # the slim image has no curl
    stage = dockerfile_stages()["server"]
    [cmd] = stage.all("CMD")
    port = json.loads(cmd)[json.loads(cmd).index("--port") + 1]
    assert stage.all("EXPOSE") == [port]
    assert f"'http://127.0.0.1:{port}/healthz'" in command[2]
    assert compose()["services"]["server"]["healthcheck"]["test"] == ["CMD", *command]
    # an agent serves nothing to ask: it says so rather than inheriting a check
    assert dockerfile_stages()["agent"].all("HEALTHCHECK") == ["NONE"]


def test_the_healthcheck_passes_on_a_live_server_and_fails_without_one(
    live_server: EmbeddedServer,
) -> None:
    code = image_healthcheck()[1][2]
    url = "http://127.0.0.1:8000/healthz"

    def check(where: str) -> int:
        run = [sys.executable, "-c", code.replace(url, where)]
        return subprocess.run(run, capture_output=True, timeout=60).returncode

    assert check(f"{live_server.url}/healthz") == 0
    assert check(f"{live_server.url}/no-such-page") != 0  # any answer but a 2xx: a 503 too
    assert check(f"http://127.0.0.1:{free_port()}/healthz") != 0  # nothing listening


def test_every_healthcheck_allows_for_a_first_start() -> None:
    services = compose()["services"]
    for name, service in services.items():
        if "healthcheck" in service:
            assert "start_period" in service["healthcheck"], f"{name}: no start_period"
        for needed, how in (service.get("depends_on") or {}).items():
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[needed], f"{name} waits on {needed}'s health"


# --- images ----------------------------------------------------------------------------------


def test_every_base_image_is_an_exact_release() -> None:
    stages = dockerfile_stages()
    external = [stage.base for stage in stages.values() if stage.base not in stages]
    assert external
    for ref in external:
        assert is_exact_release(ref), f"FROM {ref}: not an exact release"


def test_every_compose_image_is_an_exact_release_or_built_here() -> None:
    version = PYPROJECT["project"]["version"]
    for name, service in compose()["services"].items():
        assert "image" in service, f"{name} names no image"
        if "build" in service:
            assert service["image"] == f"latlab-{service['build']['target']}:{version}", name
        else:
            assert is_exact_release(service["image"]), f"{name}: {service['image']}"


def test_each_image_is_built_once_under_its_own_name() -> None:
    """One service per target builds it, under a name a second agent can reuse without building."""
    stages = dockerfile_stages()
    built = {name: s for name, s in compose()["services"].items() if "build" in s}
    targets = []
    for name, service in built.items():
        assert isinstance(service["build"], dict), f"{name}: build: names no target"
        assert service["build"]["context"] == "."
        targets.append(service["build"]["target"])
    assert sorted(targets) == sorted(ROLE_EXTRAS) and set(targets) <= set(stages)
    images = [service["image"] for service in built.values()]
    assert len(set(images)) == len(images)
    for image in images:  # the README's table of the images
        assert f"`{image}`" in production_section(), image


# --- the CPU agent's CPUs --------------------------------------------------------------------


def cpu_list(text: str) -> set[int]:
    """Docker's cpuset syntax: ``0-3,5``."""
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus |= set(range(int(low), int(high or low) + 1))
    return cpus


def readme_cpu_example() -> dict[str, str]:
    return dict(re.findall(r"`(\w+_CPUS)=([^`]+)`", production_section()))


def test_the_readme_states_the_cpu_variables_and_their_defaults() -> None:
    defaults = dict(re.findall(r"\$\{(\w+_CPUS):-([^}]+)\}", COMPOSE.read_text()))
    assert set(defaults) == {"SERVER_CPUS", "AGENT_CPUS", "AGENT_TIMING_CPUS"}
    assert set(readme_cpu_example()) == set(defaults)
    section = production_section()
    for name, default in defaults.items():
        assert re.search(rf"`{name}`\s+\((default\s+)?`{re.escape(default)}`\)", section), name


@pytest.mark.parametrize("layout", ["defaults", "readme-example"])
def test_the_cpu_agent_times_on_cpus_no_other_service_uses(
    layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dotenv = {"POSTGRES_PASSWORD": "pw", "LATLAB_API_KEYS": "k", "LATLAB_ENROLL_KEY": "enroll"}
    if layout == "readme-example":
        dotenv |= readme_cpu_example()
    services = compose()["services"]
    for name, service in services.items():
        assert "cpuset" in service, f"{name} may run on the agent's CPUs"
    cpus = {name: cpu_list(interpolate(str(s["cpuset"]), dotenv)) for name, s in services.items()}
    agent = cpus.pop("agent-cpu")
    for name, others in cpus.items():
        assert others and others.isdisjoint(agent), f"{name} shares CPUs {others & agent}"
    # the agent's own settings, as compose sets them, on a host with those CPUs
    for name in list(os.environ):
        if name.startswith("LATLAB_"):
            monkeypatch.delenv(name)
    for name, value in services["agent-cpu"]["environment"].items():
        monkeypatch.setenv(name, interpolate(str(value), dotenv))
    monkeypatch.setattr(os, "cpu_count", lambda: max(agent.union(*cpus.values())) + 1)
    timing = set(AgentSettings().timing_cpus or ())
    # on the agent's CPUs, with one left for its other threads (heartbeats, uploads)
    assert timing and timing < agent


# --- the build context -----------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over slash-separated paths in the context (Docker's
    rules: Go's filepath.Match, ``*`` within one name, ``**`` across any number of folders)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
            i += 1
    return re.compile(out)


@dataclass(frozen=True)
class DockerIgnore:
    #: (re-includes, the pattern, its regex), in the file's order
    patterns: tuple[tuple[bool, str, re.Pattern[str]], ...]

    @classmethod
    def read(cls) -> DockerIgnore:
        patterns = []
        for line in DOCKERIGNORE.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            keep = line.startswith("!")
            text = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
            patterns.append((keep, text, _pattern_regex(text)))
        return cls(tuple(patterns))

    def excludes(self, path: str) -> bool:
        """The last pattern that matches the path or a folder above it decides."""
        parts = path.split("/")
        candidates = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
        excluded = False
        for keep, _, regex in self.patterns:
            if any(regex.fullmatch(c) for c in candidates):
                excluded = not keep
        return excluded

    def may_keep_below(self, folder: str) -> bool:
        return any(
            keep and (text.startswith("**") or text.startswith(f"{folder}/"))
            for keep, text, _ in self.patterns
        )


def build_context() -> dict[str, int]:
    """What Docker sends from this working tree: each file's (or link's) path and size."""
    ignore = DockerIgnore.read()
    sent: dict[str, int] = {}
    for folder, subfolders, files in os.walk(ROOT):
        base = Path(folder).relative_to(ROOT).as_posix()
        kept = []
        for sub in subfolders:
            path = sub if base == "." else f"{base}/{sub}"
            if os.path.islink(os.path.join(folder, sub)):  # sent as a link, not followed
                files.append(sub)
            elif not ignore.excludes(path) or ignore.may_keep_below(path):
                kept.append(sub)
        subfolders[:] = kept
        for name in files:
            path = name if base == "." else f"{base}/{name}"
            if not ignore.excludes(path):
                sent[path] = os.lstat(os.path.join(folder, name)).st_size
    return sent


def test_the_build_context_is_the_distribution_and_nothing_else() -> None:
    ignore = DockerIgnore.read()
    for left_out in (
        ".git/HEAD",
        ".venv/lib/python3.11/site-packages/torch/__init__.py",
        ".env",
        "tests/test_deployment.py",
        "latlab-data/latlab.db",
        "latlab/__pycache__/client.cpython-311.pyc",
        "server/jobs/__pycache__/service.cpython-311.pyc",
        "latlab.egg-info/PKG-INFO",
    ):
        assert ignore.excludes(left_out), left_out
    for sent in ("pyproject.toml", "README.md", "latlab/cli/__init__.py", "server/app.py"):
        assert not ignore.excludes(sent), sent
    context = build_context()
    copied = {
        source.rstrip("/")
        for stage in dockerfile_stages().values()
        for args in stage.all("COPY")
        if not args.startswith("--from=")
        for source in copy_sources(args)
    }
    assert {path.split("/")[0] for path in context} == copied
    assert sum(context.values()) < 20 * 2**20  # a few MB of sources, not the GB of a .venv
