"""Downloaded models, kept by sha256 so a model is fetched once per device."""

from __future__ import annotations

import logging
from pathlib import Path

from latlab.client import AgentClient
from latlab.runtimes import ModelFormat

__all__ = ["ModelCache"]

log = logging.getLogger(__name__)


class ModelCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, model_id: str, model_format: ModelFormat) -> Path:
        return self.root / f"{model_id}.{model_format.value}"

    def fetch(self, client: AgentClient, model_id: str, model_format: ModelFormat) -> Path:
        """The model's local path, downloading it (checked against its sha256) if needed."""
        path = self.path(model_id, model_format)
        if not path.is_file():
            log.info("downloading model", extra={"model_id": model_id})
            client.download_model(model_id, path)
        return path
