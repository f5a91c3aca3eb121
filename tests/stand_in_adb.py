"""A stand-in for ``adb`` in the adb tests (and nothing else): one phone's answers from a JSON
state file named by ``STAND_IN_ADB_STATE`` — its serial and authorisation, getprop, thermal
status, CPU count and memory, fixed-performance mode, a directory that plays its filesystem,
and the benchmark_model output to replay (the op profile only with
``--enable_op_profiling=true``, as the real binary prints it). Every invocation is appended to
the state's log as a JSON line."""

from __future__ import annotations

import hashlib
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
    if words[:2] == ["mkdir", "-p"]:
        (fs / words[2].lstrip("/")).mkdir(parents=True, exist_ok=True)
        return 0
    if words == ["nproc"]:
        print(state.get("cores", 8))
        return 0
    if words == ["cat", "/proc/meminfo"]:
        print(f"MemTotal:        {state.get('mem_kb', 7_812_345)} kB\nMemFree:  1000 kB")
        return 0
    if words[:2] == ["cmd", "power"]:
        if not state.get("fixed_performance_supported", True):
            print("Unknown command: set-fixed-performance-mode-enabled")
            return 0  # cmd power prints its complaint and exits 0 on old Android
        state["fixed_performance"] = words[-1] == "true"
        Path(os.environ["STAND_IN_ADB_STATE"]).write_text(json.dumps(state))
        return 0
    if words[0] == "sha256sum":
        target = fs / words[1].lstrip("/")
        if not target.exists():
            print(f"sha256sum: {words[1]}: No such file or directory", file=sys.stderr)
            return 1
        print(f"{hashlib.sha256(target.read_bytes()).hexdigest()}  {words[1]}")
        return 0
    binary = fs / words[0].lstrip("/")
    if not binary.exists():
        print(f"/system/bin/sh: {words[0]}: not found", file=sys.stderr)
        return 127
    graph = next((w.split("=", 1)[1] for w in words if w.startswith("--graph=")), "")
    if not (fs / graph.lstrip("/")).exists():
        print(f"ERROR: Could not open '{graph}'.\nERROR: Failed to load model {graph}")
        return 1
    if state.get("load_error"):
        print(f"ERROR: {state['load_error']}\nERROR: Failed to initialize the interpreter")
        return 1
    if state.get("heats_by"):  # the phone warms up under load
        state["thermal"] += state["heats_by"]
        Path(os.environ["STAND_IN_ADB_STATE"]).write_text(json.dumps(state))
    output = Path(state["benchmark_output"]).read_text()
    if "--enable_op_profiling=true" not in words:
        # without the profiler, benchmark_model stops after its memory footprint lines
        output = output.split("Profiling Info for Benchmark Initialization")[0]
        output = output.rsplit("\n", 1)[0] + "\n"
    print(output, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
