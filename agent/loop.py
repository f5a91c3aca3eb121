"""The agent loop: claim -> download (cached) -> time -> upload, until asked to stop.

Heartbeats extend the lease while a job is timed; a lost lease (the server requeued or the
user cancelled the job) aborts the measurement. Server errors and unreachable servers are
retried with capped exponential backoff; a stop request releases a leased job back to the queue.
A model that cannot be timed is reported as a failed job with the runner's error text, and so
is a job whose deadline (``config.deadline_s`` from its claim) passes: the runner is stopped
(a ``RunnerProcess`` is killed, whatever the runtime is doing) and the agent goes on.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import latlab
from latlab.agent.cache import ModelCache
from latlab.agent.config import AgentSettings
from latlab.agent.errors import Interrupted, RunnerError, RunnerUnavailable
from latlab.agent.runners.base import Runner, Timing
from latlab.agent.thermal import ThermalGate
from latlab.agent.worker import RunnerProcess
from latlab.client import AgentClient
from latlab.errors import ApiError, ServerUnreachable
from latlab.schemas import ClaimedJob, MeasurementIn

__all__ = ["Agent", "AgentStats"]

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass
class AgentStats:
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


def _retryable(exc: ApiError) -> bool:
    return isinstance(exc, ServerUnreachable) or exc.status >= 500 or exc.status == 429


class Agent:
    def __init__(
        self,
        client: AgentClient,
        runners: Mapping[str, Runner],
        cache: ModelCache,
        settings: AgentSettings,
        stop: threading.Event | None = None,
        thermal: ThermalGate | None = None,
    ) -> None:
        self.client = client
        self.runners = dict(runners)
        self.cache = cache
        self.settings = settings
        self.stop = stop or threading.Event()
        self.thermal = thermal
        self.stats = AgentStats()
        self._backoff_s = 0.0

    def close(self) -> None:
        """Stop the runner processes and close the client (after ``run`` has returned)."""
        for runner in self.runners.values():
            if isinstance(runner, RunnerProcess):
                runner.close()
        self.client.close()

    # ------------------------------------------------------------------ the loop

    def run(self, *, max_jobs: int | None = None, idle_exit_s: float | None = None) -> AgentStats:
        """Work until ``stop`` is set (or ``max_jobs`` jobs, or ``idle_exit_s`` without work)."""
        idle_since = time.monotonic()
        handled = 0
        while not self.stop.is_set():
            if max_jobs is not None and handled >= max_jobs:
                break
            if self.thermal is not None:
                self.thermal.wait_until_cool(self.stop)
                if self.stop.is_set():
                    break
            job = self._call(lambda: self.client.claim(self.settings.claim_wait_s))
            if job is None:
                if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                    break
                continue
            self.process(job)
            handled += 1
            idle_since = time.monotonic()
            if self.settings.cooldown_s:
                self.stop.wait(self.settings.cooldown_s)
        return self.stats

    def _call(self, fn: Callable[[], T]) -> T | None:
        """Run one server call; on a retryable error back off and return None."""
        try:
            result = fn()
        except ApiError as exc:
            if not _retryable(exc):
                raise
            self.stop.wait(self._next_backoff_s("server call", exc))
            return None
        self._backoff_s = 0.0
        return result

    def _next_backoff_s(self, what: str, exc: Exception) -> float:
        """Capped exponential backoff with jitter (0.5 s, 1 s, 2 s, ... max_backoff_s)."""
        self._backoff_s = min(self.settings.max_backoff_s, max(0.5, self._backoff_s * 2))
        delay = self._backoff_s * random.uniform(0.8, 1.2)
        log.warning("%s failed, retrying in %.1f s: %s", what, delay, exc)
        return delay

    # ------------------------------------------------------------------ one job

    def process(self, job: ClaimedJob) -> None:
        log.info("job claimed", extra={"job_id": job.job_id, "model_id": job.model_id})
        deadline = _Deadline(job.config.deadline_s)
        lease = _LeaseKeeper(self.client, job, self.stop)
        lease.start()
        try:
            timing = self._time(job, lease, deadline)
        except Interrupted:
            lease.finish()
            if lease.lost.is_set():
                log.warning("job abandoned: lease lost", extra={"job_id": job.job_id})
                self.stats.lost.append(job.job_id)
            elif deadline.passed():
                self._report_failure(job, f"deadline of {deadline.seconds:g} s passed: stopped")
            else:
                self._release(job)
            return
        except (RunnerError, RunnerUnavailable) as exc:
            lease.finish()
            self._report_failure(job, str(exc))
            return
        except ApiError as exc:  # the server refused the model (not there, or corrupt)
            lease.finish()
            self._report_failure(job, f"model download failed: {exc}")
            return
        except Exception as exc:  # a bug in a runner must not kill the agent
            lease.finish()
            log.exception("runner crashed", extra={"job_id": job.job_id})
            self._report_failure(job, f"agent error: {type(exc).__name__}: {exc}")
            return
        lease.finish()
        self._upload(job, timing)

    def _time(self, job: ClaimedJob, lease: _LeaseKeeper, deadline: _Deadline) -> Timing:
        runner = self.runners.get(job.config.runtime)
        if runner is None:
            raise RunnerUnavailable(f"this agent has no {job.config.runtime} runner")

        def should_stop() -> bool:
            return self.stop.is_set() or lease.lost.is_set() or deadline.passed()

        path = self._fetch(job, should_stop)
        config = job.config
        if config.cpu_affinity is None and self.settings.timing_cpus:
            config = config.model_copy(update={"cpu_affinity": self.settings.timing_cpus})
        return runner.time(path, config, should_stop)

    def _fetch(self, job: ClaimedJob, should_stop: Callable[[], bool]) -> Path:
        """The model file; a server that is away (restarting) is waited for with backoff while
        the lease holds, for up to ``deliver_timeout_s``, not reported as a failed job."""
        deadline = time.monotonic() + self.settings.deliver_timeout_s
        while True:
            try:
                return self.cache.fetch(self.client, job.model_id, job.model_format)
            except ApiError as exc:
                if not _retryable(exc) or time.monotonic() > deadline:
                    raise
                if should_stop():
                    raise Interrupted("stopped while waiting to download the model") from exc
                self.stop.wait(self._next_backoff_s("model download", exc))

    def _upload(self, job: ClaimedJob, timing: Timing) -> None:
        body = MeasurementIn(
            **dict(timing),
            lease_token=job.lease_token,
            protocol_version=job.config.protocol_version,
            agent_version=latlab.__version__,
        )
        if self._deliver(job, lambda: self.client.upload_result(job.job_id, body)):
            self.stats.done.append(job.job_id)
            log.info("result uploaded", extra={"job_id": job.job_id})

    def _report_failure(self, job: ClaimedJob, error: str) -> None:
        log.warning("job failed: %s", error, extra={"job_id": job.job_id})
        if self._deliver(
            job, lambda: self.client.report_failure(job.job_id, job.lease_token, error)
        ):
            self.stats.failed.append(job.job_id)

    def _release(self, job: ClaimedJob) -> None:
        try:
            self.client.release(job.job_id, job.lease_token)
            self.stats.released.append(job.job_id)
            log.info("job released", extra={"job_id": job.job_id})
        except ApiError as exc:
            log.warning("could not release job %s: %s", job.job_id, exc)

    def _deliver(self, job: ClaimedJob, send: Callable[[], object]) -> bool:
        """Send until the server takes it; retries are safe (the server makes them no-ops).

        A stop request does not drop a finished result: it is still delivered, with backoff,
        for up to ``deliver_timeout_s``. 4xx (a stale lease) ends the attempt.
        """
        deadline = time.monotonic() + self.settings.deliver_timeout_s
        while True:
            try:
                send()
                return True
            except ApiError as exc:
                if not _retryable(exc) or time.monotonic() > deadline:
                    log.warning("server refused the result of job %s: %s", job.job_id, exc)
                    self.stats.lost.append(job.job_id)
                    return False
                time.sleep(self._next_backoff_s("upload", exc))


class _Deadline:
    """A job's deadline, ``seconds`` from now, on this agent's monotonic clock."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._at = time.monotonic() + seconds

    def passed(self) -> bool:
        return time.monotonic() >= self._at


class _LeaseKeeper:
    """Heartbeats that extend a job's lease every third of it, in a background thread."""

    def __init__(self, client: AgentClient, job: ClaimedJob, stop: threading.Event) -> None:
        self.client = client
        self.job = job
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"lease-{job.job_id[:8]}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        interval_s = max(0.05, self.job.lease_s / 3)
        while not self._done.wait(interval_s):
            try:
                self.client.heartbeat(self.job.job_id, self.job.lease_token)
            except ApiError as exc:
                if exc.status == 409 or exc.status == 404:
                    log.warning("lease lost: %s", exc.message, extra={"job_id": self.job.job_id})
                    self.lost.set()
                    return
                log.warning("heartbeat failed: %s", exc)
