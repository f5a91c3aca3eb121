"""The agent's runners, one per registered runtime (``latlab.runtimes``), each imported only
when it is loaded (its runtime's package is needed then alone).

Runners of the agent's host are constructed without arguments; a phone's runners
(``RuntimeSpec.target == "adb"``) take the adb connection and the agent's settings
(``for_phone``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from latlab.agent.errors import RunnerUnavailable
from latlab.agent.runners.base import Runner, Timing
from latlab.plugins import load_named
from latlab.runtimes import RuntimeSpec, UnknownRuntime, runtime_spec, runtimes

if TYPE_CHECKING:
    from latlab.agent.adb import Adb
    from latlab.agent.config import AgentSettings

__all__ = ["Runner", "Timing", "available_runners", "load_runner", "phone_runners"]

log = logging.getLogger(__name__)


def _runner_class(spec: RuntimeSpec) -> Any:
    try:
        return load_named(spec.runner)
    except ImportError as exc:
        raise RunnerUnavailable(f"{spec.name} is not installed here: {exc}") from exc


def load_runner(name: str) -> Runner:
    """The runner of the host runtime ``name``; ``RunnerUnavailable`` if it is unknown, times
    on a phone, or is not installed here."""
    try:
        spec = runtime_spec(name)
    except UnknownRuntime as exc:
        raise RunnerUnavailable(str(exc)) from None
    if spec.target != "host":
        raise RunnerUnavailable(
            f"{name} times models on a phone: start the agent with --adb-serial"
        )
    runner: Runner = _runner_class(spec)()
    return runner


def available_runners() -> dict[str, Runner]:
    """Every host runner whose runtime is installed on this device."""
    found: dict[str, Runner] = {}
    for name, spec in runtimes().items():
        if spec.target != "host":
            continue
        try:
            found[name] = load_runner(name)
        except RunnerUnavailable as exc:
            log.info("runner %s unavailable: %s", name, exc)
    return found


def phone_runners(settings: AgentSettings, adb: Adb) -> dict[str, Runner]:
    """The runners of a phone driven over adb."""
    found: dict[str, Runner] = {}
    for name, spec in runtimes().items():
        if spec.target == "adb":
            found[name] = _runner_class(spec).for_phone(adb, settings)
    return found
