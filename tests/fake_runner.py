"""A fake runner for the queue's concurrency and error-handling tests only; the same paths
run with the real onnxruntime runner in test_e2e.py.

It is a ``ProtocolRunner`` like the real ones (it passes the runner contract suite): the base
pins, runs the protocol and builds the timing; the fake's run does nothing but sleep its share
of ``sleep_s`` and the protocol's clock is a counter that advances 1 ms per read, so a job takes
``sleep_s`` whatever the config's seconds say. It pickles, so it times in a ``RunnerProcess``
too (its record of timed models is then the child's)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from latlab.agent.errors import RunnerError
from latlab.agent.runners.base import LoadedModel, ProtocolRunner
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import RuntimeInfo

#: What the fake clock advances per read: every sample is 1 ms.
TICK_NS = 1_000_000
#: The longest sleep of one run (the stop check happens between runs).
SLICE_S = 0.01


class Ticks:
    """The fake's clock: ``TICK_NS`` more at every read."""

    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        self.ns += TICK_NS
        return self.ns - TICK_NS


class FakeRunner(ProtocolRunner[OnnxRuntimeConfig, LoadedModel]):
    name = "onnxruntime"
    config_type = OnnxRuntimeConfig

    def __init__(self, sleep_s: float = 0.001, fail_with: str | None = None) -> None:
        self.sleep_s = sleep_s
        self.fail_with = fail_with
        self.timed: list[Path] = []
        self._lock = threading.Lock()
        self.clock = Ticks()  # type: ignore[method-assign,assignment]

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def info(self) -> RuntimeInfo:
        return RuntimeInfo(name=self.name, version="fake", providers=["CPUExecutionProvider"])

    def version(self) -> str:
        return "fake"

    def load(self, model_path: Path, config: OnnxRuntimeConfig) -> LoadedModel:
        with self._lock:
            self.timed.append(model_path)
        if not model_path.is_file():
            raise RunnerError(f"no model file {model_path}")
        if self.fail_with is not None:
            raise RunnerError(self.fail_with)
        left = [self.sleep_s]

        def run_once() -> None:
            if left[0] > 0:
                step = min(left[0], SLICE_S)
                time.sleep(step)
                left[0] -= step

        return LoadedModel(
            run_once=run_once, input_shapes={"input": [1, 3, 16, 16]}, provider=config.provider
        )


class CrashingRunner(FakeRunner):
    """A runner with a bug: loading any model raises something no runner should."""

    def load(self, model_path: Path, config: OnnxRuntimeConfig) -> LoadedModel:
        raise ValueError("a bug in the runner")
