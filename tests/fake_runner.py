"""A fake runner for the queue's concurrency and error-handling tests only; the same paths
run with the real onnxruntime runner in test_e2e.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from agent.errors import Interrupted, RunnerError
from agent.runners.base import Timing
from latlab.schemas import RuntimeConfig, RuntimeInfo, WarmupInfo


class FakeRunner:
    name = "onnxruntime"

    def __init__(self, sleep_s: float = 0.001, fail_with: str | None = None) -> None:
        self.sleep_s = sleep_s
        self.fail_with = fail_with
        self.timed: list[Path] = []
        self._lock = threading.Lock()

    def info(self) -> RuntimeInfo:
        return RuntimeInfo(name="onnxruntime", version="fake", providers=["CPUExecutionProvider"])

    def time(
        self, model_path: Path, config: RuntimeConfig, should_stop: Callable[[], bool]
    ) -> Timing:
        with self._lock:
            self.timed.append(model_path)
        deadline = time.monotonic() + self.sleep_s
        while time.monotonic() < deadline:
            if should_stop():
                raise Interrupted("stop requested")
            time.sleep(min(0.01, self.sleep_s))
        if self.fail_with is not None:
            raise RunnerError(self.fail_with)
        return Timing(
            runtime="onnxruntime",
            runtime_version="fake",
            provider="CPUExecutionProvider",
            threads=config.threads,
            input_shapes={"input": [1, 3, 16, 16]},
            warmup=WarmupInfo(n=1, total_ms=self.sleep_s * 1e3),
            samples_ms=(1.0, 1.1, 0.9),
            timing_wall_s=self.sleep_s,
            op_profile=None,
            ops=(),
        )
