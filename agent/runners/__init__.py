"""The runner registry: an explicit table, each runner loaded lazily (its runtime is imported
only when the runner is)."""

from __future__ import annotations

import importlib
import logging

from agent.errors import RunnerUnavailable
from agent.runners.base import Runner, Timing

__all__ = ["RUNNERS", "Runner", "Timing", "available_runners", "load_runner"]

log = logging.getLogger(__name__)

#: runtime name -> "module:class"
RUNNERS: dict[str, str] = {
    "onnxruntime": "agent.runners.ort:OrtRunner",
    "litert": "agent.runners.litert:LiteRtRunner",
}


def load_runner(name: str) -> Runner:
    try:
        target = RUNNERS[name]
    except KeyError:
        raise RunnerUnavailable(f"unknown runtime {name!r}; known: {', '.join(RUNNERS)}") from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RunnerUnavailable(f"{name} is not installed here: {exc}") from exc
    runner: Runner = getattr(module, class_name)()
    return runner


def available_runners() -> dict[str, Runner]:
    """Every runner whose runtime is installed on this device."""
    found: dict[str, Runner] = {}
    for name in RUNNERS:
        try:
            found[name] = load_runner(name)
        except RunnerUnavailable as exc:
            log.info("runner %s unavailable: %s", name, exc)
    return found
