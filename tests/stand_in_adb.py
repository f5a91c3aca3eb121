"""A stand-in for ``adb`` in the adb tests (and nothing else): one phone's answers from a JSON
state file named by ``STAND_IN_ADB_STATE`` — its serial and authorisation, getprop, thermal
status, a directory that plays its filesystem, and the benchmark_model output to replay.
Every invocation is appended to the state's log as a JSON line."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    state = json.loads(Path(os.environ["STAND_IN_ADB_STATE"]).read_text())
    with Path(state["log"]).open("a") as log:
        log.write(json.dumps(argv) + "\n")
    if len(argv) < 3 or argv[0] != "-s":
        print("adb: usage: adb -s SERIAL COMMAND", file=sys.stderr)
        return 1
    serial, command, args = argv[1], argv[2], argv[3:]
    if serial != state["serial"]:
        print(f"adb: device '{serial}' not found", file=sys.stderr)
        return 1
    if not state.get("authorized", True):
        print(
            "adb: device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set",
            file=sys.stderr,
        )
        return 1
    fs = Path(state["fs"])
    if command == "push":
        local, remote = args
        target = fs / remote.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, target)
        print(f"{local}: 1 file pushed, 0 skipped.")
        return 0
    if command != "shell":
        print(f"adb: unknown command {command}", file=sys.stderr)
        return 1
    words = shlex.split(" ".join(args))
    if words == ["getprop"]:
        for key, value in state["props"].items():
            print(f"[{key}]: [{value}]")
        return 0
    if words == ["dumpsys", "thermalservice"]:
        print(f"IsStatusOverride: false\nThermal Status: {state['thermal']}")
        return 0
    if words[:2] == ["rm", "-f"]:
        for remote in words[2:]:
            (fs / remote.lstrip("/")).unlink(missing_ok=True)
        return 0
    binary = fs / words[0].lstrip("/")
    if not binary.exists():
        print(f"/system/bin/sh: {words[0]}: not found", file=sys.stderr)
        return 127
    graph = next((w.split("=", 1)[1] for w in words if w.startswith("--graph=")), "")
    if not (fs / graph.lstrip("/")).exists():
        print(f"ERROR: Could not open '{graph}'.\nERROR: Failed to load model {graph}")
        return 1
    print(Path(state["benchmark_output"]).read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
