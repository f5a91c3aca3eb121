"""The runner in a child process the agent can kill.

A job that must stop — its deadline passed, the agent is stopping, its lease was lost — stops
at once, even inside a runtime's C code (an ONNX ``Loop`` of 10^15 iterations never returns to
Python), and a runtime that crashes or runs out of memory takes only the child down. The agent
stays healthy and takes the next job.

``RunnerProcess`` wraps a runner (any ``Runner`` that pickles: the host runners, a phone's
benchmark_model) and is itself a ``Runner``. Its child — a fresh interpreter with this one's
``sys.path`` running ``serve``, not a fork of the agent's threads, and not multiprocessing's
``spawn``, which would run the caller's unguarded ``__main__`` script again — is started on
the first job and kept for the next ones, so a job pays the start only after a kill or a
crash. The child runs the runner's own ``time`` —
the pinning, the protocol with the GC off, the intra-op threads — so a timing there is the
timing in the agent's process (``bench/agent_overhead.py`` compares them). The child:

- caps its memory (``RLIMIT_DATA``: heap and private writable mappings, which is what a model's
  tensors take, unlike ``RLIMIT_AS``, which counts address space a runtime only reserves): a
  model that allocates without end fails with the runtime's out-of-memory error rather than
  pushing the host into swap or the kernel's OOM killer;
- leads a session (and process group) of its own, killed whole (an ``adb`` it started goes
  with it), away from the terminal's Ctrl-C (the agent stops it);
- exits when the agent's process ends, however it ends (its stdin, a pipe from the agent,
  reads end-of-file then).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from latlab.agent.errors import Interrupted, RunnerError, RunnerUnavailable
from latlab.agent.runners.base import Runner, Timing
from latlab.runtimes import RuntimeConfig
from latlab.schemas import RuntimeInfo

__all__ = ["STOP_POLL_S", "RunnerProcess", "default_memory_bytes"]

log = logging.getLogger(__name__)

#: How often the agent checks whether a job must stop while the child times it.
STOP_POLL_S = 0.1
#: How long a closing child may take to exit before it is killed.
CLOSE_WAIT_S = 5.0
#: The share of the host's memory a runner process may take by default.
DEFAULT_MEMORY_SHARE = 0.75

# the child's answers: ("timing", Timing) or ("error", kind, message)
_TIMING, _ERROR = "timing", "error"
_UNAVAILABLE, _RUNNER, _INTERRUPTED, _MEMORY, _CRASH = (
    "unavailable",
    "runner",
    "interrupted",
    "memory",
    "crash",
)


def default_memory_bytes() -> int:
    """¾ of this host's physical memory (0, no limit, where the platform does not say)."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return 0
    return int(total * DEFAULT_MEMORY_SHARE)


class RunnerProcess:
    """A ``Runner`` that times with ``runner`` in a child process of this one (see the
    module). ``memory_bytes``: the child's memory cap (0: none). One job at a time (the
    agent's loop); ``close`` waits for a job in progress."""

    def __init__(self, runner: Runner, *, memory_bytes: int = 0) -> None:
        self.runner = runner
        self.name = runner.name
        self.memory_bytes = memory_bytes
        #: How many children were started (the first, and one after each kill or crash).
        self.starts = 0
        try:
            self._payload = pickle.dumps(runner)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise RunnerUnavailable(
                f"the {runner.name} runner cannot be sent to a runner process: {exc}"
            ) from exc
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def info(self) -> RuntimeInfo:
        return self.runner.info()

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def time(
        self, model_path: Path, config: RuntimeConfig, should_stop: Callable[[], bool]
    ) -> Timing:
        """Time the model in the child; ``Interrupted`` (the child killed) as soon as
        ``should_stop()`` turns true, ``RunnerError`` if the child fails or dies."""
        with self._lock:
            conn = self._child()
            try:
                conn.send((model_path, config))
            except OSError as exc:
                raise self._died() from exc
            # the child's end of the socket closes when it dies: readable, then EOF
            while not wait([conn], timeout=STOP_POLL_S):
                if should_stop():
                    self._kill()
                    raise Interrupted("the job was stopped: its runner process was killed")
            try:
                answer = conn.recv()
            except (EOFError, OSError):
                raise self._died() from None
            return self._answer(answer)

    def close(self) -> None:
        """Ask the child to exit (killed if it does not); a later job starts a new one."""
        with self._lock:
            process, conn = self._process, self._conn
            if process is None or conn is None:
                return
            with contextlib.suppress(OSError):
                conn.send(None)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(CLOSE_WAIT_S)
            self._kill()

    # ------------------------------------------------------------------ the child's life

    def _child(self) -> Connection:
        process, conn = self._process, self._conn
        if process is not None and conn is not None and process.poll() is None:
            return conn
        self._kill()  # reap a child that died while idle
        ours, theirs = multiprocessing.Pipe()
        command = [sys.executable, "-c", _BOOT, json.dumps(sys.path), str(theirs.fileno())]
        try:
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, pass_fds=(theirs.fileno(),), start_new_session=True
            )
        except OSError as exc:
            ours.close()
            raise RunnerUnavailable(f"cannot start a runner process: {exc}") from exc
        finally:
            theirs.close()
        self.starts += 1
        self._process, self._conn = process, ours
        log.info("runner process started", extra={"runtime": self.name, "pid": process.pid})
        try:
            ours.send((self._payload, self.memory_bytes))
        except OSError as exc:
            raise self._died() from exc
        return ours

    def _kill(self) -> None:
        """Kill the child and everything it started; forget it."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is None:
            return
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # it leads its own group
            except OSError:  # not (yet) its own group
                process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(CLOSE_WAIT_S)
        if process.stdin is not None:
            process.stdin.close()

    def _died(self) -> RunnerError:
        """The error of a child that ended without an answer (forgotten, reaped)."""
        process = self._process
        code = None
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = process.wait(CLOSE_WAIT_S)
        self._kill()
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            why = {
                signal.SIGKILL: "killed (the kernel's OOM killer, when memory ran out)",
                signal.SIGSEGV: "crashed in the runtime",
                signal.SIGABRT: "aborted by the runtime",
            }.get(signal.Signals(-code), "ended by a signal")
            return RunnerError(f"the runner process died mid-job: {why} ({name})")
        return RunnerError(f"the runner process exited mid-job (exit code {code})")

    def _answer(self, answer: tuple[Any, ...]) -> Timing:
        """The child's answer: its timing, or its error raised here."""
        if answer[0] == _TIMING:
            timing: Timing = answer[1]
            return timing
        _, kind, message = answer
        if kind == _UNAVAILABLE:
            raise RunnerUnavailable(message)
        if kind == _INTERRUPTED:
            raise Interrupted(message)
        if kind == _MEMORY:
            self._kill()  # it exits after this answer: its state is not to be trusted
            cap = f" (the runner process may use {self.memory_bytes / 2**30:.2f} GiB)"
            raise RunnerError(f"the model ran out of memory{cap if self.memory_bytes else ''}")
        if kind == _CRASH:
            self._kill()  # likewise
            log.warning("the runner crashed in its process:\n%s", message)
            raise RunnerError(f"agent error: {message.strip().splitlines()[-1]}")
        raise RunnerError(message)


# ---------------------------------------------------------------------- in the child


def _never() -> bool:
    return False


#: The child's first lines: the agent's ``sys.path``, then ``serve`` on the socket it passed.
_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from latlab.agent.worker import main; main(int(sys.argv[2]))"
)


def main(fd: int) -> None:
    """The child: ``serve``, then out at once (no interpreter shutdown to wait on the thread
    that watches the agent)."""
    code = 0
    try:
        serve(fd)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def serve(fd: int) -> None:
    """The child's loop on the socket ``fd``: first the runner (pickled) and the memory cap,
    then one job per message, its timing or its error as the answer; ``None`` or a closed
    socket ends it."""
    _detach()
    conn = Connection(fd)
    try:
        payload, memory_bytes = conn.recv()
    except (EOFError, OSError):
        return
    _limit_memory(memory_bytes)
    runner: Runner | None = None
    broken = ""
    try:
        runner = pickle.loads(payload)
    except Exception as exc:  # the runner's module does not import in a fresh interpreter
        broken = f"the runner does not load in its process: {type(exc).__name__}: {exc}"
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        if runner is None:
            conn.send((_ERROR, _UNAVAILABLE, broken))
            continue
        model_path, config = request
        answer, fatal = _time(runner, model_path, config)
        conn.send(answer)
        if fatal:
            return


def _time(runner: Runner, model_path: Path, config: RuntimeConfig) -> tuple[Any, bool]:
    """(the answer, whether the child must exit after it)."""
    try:
        return (_TIMING, runner.time(model_path, config, _never)), False
    except RunnerUnavailable as exc:
        return (_ERROR, _UNAVAILABLE, str(exc)), False
    except RunnerError as exc:
        return (_ERROR, _RUNNER, str(exc)), False
    except Interrupted as exc:
        return (_ERROR, _INTERRUPTED, str(exc)), False
    except MemoryError as exc:
        return (_ERROR, _MEMORY, str(exc) or "MemoryError"), True
    except Exception:  # a bug in a runner: reported, and a fresh child for the next job
        return (_ERROR, _CRASH, traceback.format_exc()), True


def _detach() -> None:
    """Deaf to Ctrl-C (a session of its own already), and gone when the agent's process is:
    its stdin, the agent's pipe, reads end-of-file then."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_agent, name="agent-watch", daemon=True).start()


def _exit_with_agent() -> None:
    with contextlib.suppress(OSError):
        while sys.stdin.buffer.read(4096):
            pass
    os._exit(1)


def _limit_memory(memory_bytes: int) -> None:
    if memory_bytes <= 0:
        return
    try:
        import resource
    except ImportError:  # not a POSIX host: no cap
        return
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    cap = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))
