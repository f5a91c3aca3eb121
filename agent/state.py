"""The agent's registration, kept in a small JSON file (readable by its owner only)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["AgentState", "load_state", "save_state"]


@dataclass(frozen=True)
class AgentState:
    server_url: str
    device_id: str
    token: str
    #: The name it registered under (absent from files written before it was kept).
    name: str | None = None


def load_state(path: Path) -> AgentState | None:
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return AgentState(
        server_url=str(data["server_url"]),
        device_id=str(data["device_id"]),
        token=str(data["token"]),
        name=None if data.get("name") is None else str(data["name"]),
    )


def save_state(path: Path, state: AgentState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(state), f)
    os.replace(tmp, path)
