"""The agent's one settings object (``LATLAB_AGENT_*``), built by ``latlab agent``."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from latlab.agent.isolation import host_cpus
from latlab.agent.worker import default_memory_bytes

__all__ = ["AgentSettings"]


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LATLAB_AGENT_", extra="ignore")

    server_url: str = "http://127.0.0.1:8000"
    enroll_key: SecretStr = SecretStr("")
    #: The device's name on the server; default: the host name.
    name: str | None = None
    #: Where the device id and token are kept after registering.
    state_file: Path = Path("~/.latlab/agent.json").expanduser()
    #: Models downloaded once, by sha256.
    cache_dir: Path = Path("~/.latlab/agent-cache").expanduser()
    #: Long-poll wait of one claim; a stop request is noticed within this.
    claim_wait_s: float = Field(default=5.0, ge=0, le=300)
    #: Pause between two jobs (lets the device cool down).
    cooldown_s: float = Field(default=0.0, ge=0)
    #: Thermal gate of a host: no job is claimed while its hottest thermal zone is above this.
    max_temperature_c: float | None = Field(default=None, gt=0)
    #: Thermal gate of a phone: no job is claimed while Android's thermal status (0 none,
    #: 1 light, 2 moderate, 3 severe, ...) is above this.
    max_thermal_status: int | None = Field(default=None, ge=0, le=6)
    #: How often a gated agent reads the temperature again.
    thermal_poll_s: float = Field(default=5.0, gt=0)
    #: Longest pause between retries when the server fails or cannot be reached.
    max_backoff_s: float = Field(default=30.0, gt=0)
    #: How long a finished result (or a model download) is retried when the server is away.
    deliver_timeout_s: float = Field(default=600.0, gt=0)
    #: Time on these CPUs (Linux): the timing thread is pinned to them, everything else of the
    #: agent (heartbeats, downloads, uploads) to the host's other CPUs. A job's own
    #: ``cpu_affinity`` wins. ``"1"`` or ``"2,3"`` in the environment.
    timing_cpus: list[int] | None = Field(default=None, min_length=1, max_length=4096)
    #: Time each job in a child process, kept from one job to the next, that the agent kills
    #: when the job must stop (its deadline passed, the agent stops, the lease was lost) —
    #: inside a runtime's C code too. Off: in the agent's own process, where a job stops only
    #: between two runs and a model that never returns keeps the device.
    runner_process: bool = True
    #: The memory (heap and private mappings, bytes) the runner process may take: a model that
    #: wants more fails with an out-of-memory error. Default: ¾ of the host's; 0: no limit.
    runner_memory_bytes: int = Field(default_factory=default_memory_bytes, ge=0)
    #: Labels the device advertises (``{"lab": "rack-2"}``); selectors match ``labels.KEY``.
    labels: dict[str, str] = Field(default_factory=dict)
    #: An Android phone on this host (its adb serial): the agent times TFLite models on it
    #: with benchmark_model and is that phone's agent only (one agent per serial).
    adb_serial: str | None = Field(default=None, min_length=1, max_length=200)
    #: The adb executable.
    adb_path: str = "adb"
    #: TFLite's benchmark_model binary on the phone.
    benchmark_model_path: str = "/data/local/tmp/benchmark_model"
    #: Hold the phone in Android's fixed-performance mode (12+) while it measures.
    fixed_performance: bool = False

    @field_validator("timing_cpus", mode="before")
    @classmethod
    def _cpu_list(cls, value: object) -> object:
        """``"2,3"`` (an env var or a flag) as well as a JSON list."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            try:
                return [int(part) for part in text.split(",") if part.strip()] or None
            except ValueError:
                raise ValueError(
                    f"timing CPUs are CPU ids like '1' or '2,3', not {text[:40]!r}"
                ) from None
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("timing_cpus")
    @classmethod
    def _cpus_exist(cls, value: list[int] | None) -> list[int] | None:
        host = host_cpus()
        if value is not None and not set(value) <= host:
            raise ValueError(
                f"timing CPUs {value} are not all among this host's CPUs {sorted(host)}"
            )
        return value

    @model_validator(mode="after")
    def _state_file_per_phone(self) -> AgentSettings:
        """Several phones on one host: each agent keeps its own registration."""
        if self.adb_serial and "state_file" not in self.model_fields_set:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.adb_serial)
            self.state_file = self.state_file.with_name(f"agent-{safe}.json")
        return self
