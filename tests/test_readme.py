"""The README's commands, checked against the CLI so they cannot drift from it.

Every ``latlab`` command in the README's shell blocks runs here: the offline ones (``space``,
``runtimes``) for real; the long-running roles (``server``, ``agent``, ``quickstart``: run for
real by test_e2e and test_quickstart) through the parser; every other one against a server
that is not there, where it must get as far as asking it (every flag and every check before
the request passed: a usage error exits 2 first). The "Using it" walkthrough then runs line by
line, as a user would, on a live server with a real agent.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from latlab.cli import _parser, main
from latlab.server.embedded import EmbeddedServer, free_port
from tests.factories import API_KEY, SHARED, cnn_bytes

README = Path(__file__).resolve().parents[1] / "README.md"
LATLAB = str(Path(sys.executable).with_name("latlab"))
#: Roles that run until stopped; their own tests run them for real.
ROLES = {"server", "agent", "quickstart"}
#: Verbs that need no server.
OFFLINE = {"space", "runtimes"}
#: Placeholders a user replaces, and what stands in for them here.
PLACEHOLDERS = {"<id>": "0" * 64, "<tflite-id>": "f" * 64, "ID": "0" * 32}
DEVICE_PLACEHOLDERS = {"<device>", "<phone>", "<board>", "<gpu>", "<name>", "<id or name>"}
SHELL_BLOCKS = {"bash", "sh", "shell", "console"}


@dataclass(frozen=True)
class Command:
    line: int  # where it starts in the README
    argv: list[str]  # after `latlab`

    def __str__(self) -> str:
        return f"README.md:{self.line}: latlab {shlex.join(self.argv)}"


def readme_commands(text: str) -> list[Command]:
    """The ``latlab`` invocations of the shell blocks: continuation lines joined, comments
    dropped, ``;`` and ``&&`` lists split, ``VAR=value`` prefixes and paths to the command
    (``.venv/bin/latlab``) taken off."""
    commands: list[Command] = []
    lines = text.splitlines()
    fence: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            fence = None if fence is not None else line[3:].strip()
            i += 1
            continue
        start = i
        while fence in SHELL_BLOCKS and line.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line.rstrip()[:-1] + " " + lines[i]
        i += 1
        if fence not in SHELL_BLOCKS:
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        tokens = list(lexer)
        for part in _split(tokens, {";", "&&", "||", "|"}):
            while part and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", part[0]):
                part = part[1:]  # VAR=value latlab ...
            if part and Path(part[0]).name == "latlab":
                commands.append(Command(start + 1, part[1:]))
    return commands


def _split(tokens: list[str], separators: set[str]) -> Iterator[list[str]]:
    part: list[str] = []
    for token in tokens:
        if token in separators:
            yield part
            part = []
        else:
            part.append(token)
    yield part


COMMANDS = readme_commands(README.read_text())


def test_the_readme_has_its_commands_and_the_reader_finds_them() -> None:
    verbs = {c.argv[0] for c in COMMANDS if c.argv}
    assert {"quickstart", "server", "agent", "models", "jobs", "dataset", "lut", "train"} <= verbs
    found = readme_commands(
        "```bash\nX=1 .venv/bin/latlab a \\\n  --b 'c d'  # note\nlatlab e; latlab f && "
        "latlab g\necho latlab\n```\n```python\nlatlab h\n```\n"
    )
    assert [c.argv for c in found] == [["a", "--b", "c d"], ["e"], ["f"], ["g"]]
    assert [c.line for c in found] == [2, 4, 4, 4]


@contextlib.contextmanager
def _as_user(cwd: Path, env: dict[str, str]) -> Iterator[None]:
    old_cwd, old_env = Path.cwd(), dict(os.environ)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)


def _run_in_process(argv: list[str]) -> tuple[int, str]:
    """``latlab ARGV`` in this process (the sweep runs dozens: a process each costs 1.5 s);
    the exit code and stderr."""
    err, out = io.StringIO(), io.StringIO()
    stdin, sys.stdin = sys.stdin, io.StringIO("k\n")  # `latlab login` reads the key
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.stdin = stdin
    return code, err.getvalue()


def _stand_ins(argv: list[str], server_url: str) -> list[str]:
    out: list[str] = []
    for token in argv:
        if token.startswith("http://lab-server"):
            out.append(server_url)
        elif token in DEVICE_PLACEHOLDERS:
            out.append("some-device")
        elif token.startswith("../shared/") and "*" in token:
            out += sorted(glob.glob(str(SHARED / token.removeprefix("../shared/"))))
        else:
            out.append(PLACEHOLDERS.get(token, token))
    return out


def test_every_readme_command_is_one_the_cli_takes(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "net.onnx").write_bytes(cnn_bytes())
    (tmp_path / "net.tflite").write_bytes(b"TFL3")
    (tmp_path / "candidates.txt").write_text("1\n3,3,4,1,3,1  # a vector\n")
    for csv in ("published.csv", "hw-nas-bench.csv"):
        (tmp_path / csv).write_text("space,arch,device,latency_ms\nnb201,1,d,1.0\n")
    dead = f"http://127.0.0.1:{free_port()}"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path / "home"),
        "LATLAB_SERVER_URL": dead,
        "LATLAB_API_KEY": "k",
        "ENROLL_KEY": "e",
    }
    failures = []
    checked = 0
    with _as_user(tmp_path, env):
        for command in COMMANDS:
            argv = _stand_ins(command.argv, dead)
            if not argv or argv[0] in ROLES:
                try:
                    _parser().parse_args(argv)
                except SystemExit:
                    failures.append(f"{command}: the parser refuses it")
                continue
            code, err = _run_in_process(argv)
            checked += 1
            if argv[0] in OFFLINE:
                if code != 0:
                    failures.append(f"{command}: exit {code}: {err.strip()[-300:]}")
            elif code != 1 or f"no answer from the server at {dead}" not in err:
                failures.append(f"{command}: exit {code} before asking the server: {err[-300:]}")
    assert not failures, "\n".join(failures)
    assert checked >= 40


def _latlab(*args: str, env: dict[str, str], cwd: Path, stdin: str | None = None) -> str:
    result = subprocess.run(
        [LATLAB, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300, input=stdin
    )
    assert result.returncode == 0, f"latlab {shlex.join(args)}: {result.stderr}"
    return result.stdout + result.stderr


def _using_it_block() -> list[Command]:
    text = README.read_text()
    start = text.index("## Using it")
    end = text.index("```\n", text.index("```bash", start) + 7)
    first_line = text[:start].count("\n")
    return [Command(c.line + first_line, c.argv) for c in readme_commands(text[start : end + 4])]


@pytest.mark.slow
def test_the_using_it_walkthrough_runs_as_written(
    live_server: EmbeddedServer, tmp_path: Path
) -> None:
    """Step 3 of "Using it", line by line: login (the key from stdin, kept in a profile that
    every later line uses), devices, uploads, timings on the agent with their medians, the
    selector that no online device matches (said, not waited for), measurements, jobs."""
    from latlab.export.tflite import to_tflite
    from latlab.spaces import get_space
    from tests.test_e2e import start_agent

    nb201 = get_space("nb201")
    (tmp_path / "net.onnx").write_bytes(cnn_bytes())
    (tmp_path / "net.tflite").write_bytes(to_tflite(nb201.graph(nb201.parse("1"))))
    (tmp_path / "home").mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path / "home"),
        "LATLAB_DATA_DIR": str(tmp_path / "no-server-here"),
    }
    commands = [c for c in _using_it_block() if c.argv[0] not in ROLES]
    assert [c.argv[0] for c in commands][:2] == ["login", "devices"]
    agent = start_agent(live_server.url, tmp_path, name="lab-cpu")
    model_id = last_job = ""
    try:
        for command in commands:
            argv = [
                {"<id>": model_id, "<device>": "lab-cpu"}.get(token, token)
                for token in command.argv
            ]
            if "<phone>" in argv:
                continue  # needs a phone on adb: tests/test_adb.py stands one in
            if argv[0] == "login":
                argv[argv.index("--server") + 1] = live_server.url
                said = _latlab(*argv, env=env, cwd=tmp_path, stdin=API_KEY + "\n")
                assert "profile 'default'" in said and "1 devices, 1 online" in said
                continue
            said = _latlab(*argv, env=env, cwd=tmp_path)
            if argv[:2] == ["jobs", "create"]:
                last_job = said.split()[0]
            if argv[:2] == ["models", "upload"]:
                model_id = said.split()[0]
            elif "--wait" in argv:
                assert re.search(r"\[1/1\] \w+  done  median \d+\.\d+ ms", said), said
            elif "--selector" in argv:
                assert "no online device can take it now" in said
            elif argv[0] == "measurements":
                assert said.count(model_id[:12]) == 1  # the TFLite model, timed once
            elif argv[:2] == ["jobs", "list"]:
                assert said.splitlines()[1].split()[0] == last_job  # the latest first
    finally:
        agent.close()
    assert model_id
