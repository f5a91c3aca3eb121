"""Where a prediction comes from: a ``Source`` is one stored latency model (a registered
predictor version, a built LUT) with what it can read, found for a request without naming a
kind. The predictor registry and the LUT service each describe their own rows as sources."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from latlab.latency_model import LatencyModel
from latlab.schemas import PredictRequest
from latlab.server.blobstore import BlobStore
from latlab.server.errors import InvalidInput

__all__ = ["Source"]


@dataclass(frozen=True)
class Source:
    id: str
    kind: str
    device_id: str
    #: Loads the model (the cache calls it once per source).
    load: Callable[[BlobStore], LatencyModel] = field(compare=False)
    #: The space whose archs it reads; None: no space's archs (it was trained on whole models)
    #: unless ``any_space``.
    space: str | None = None
    space_params: dict[str, Any] = field(default_factory=dict)
    #: Whether it reads archs of any space and stored models alike (it predicts any graph).
    any_graph: bool = False

    def reads(self, body: PredictRequest) -> bool:
        """Whether it can answer this request's items."""
        if self.any_graph:
            return True
        if body.archs is not None:
            return self.space == body.space and self.space_params == body.space_params
        return self.space is None

    def check(self, body: PredictRequest) -> None:
        """``InvalidInput`` saying why it cannot answer this request, if it cannot."""
        if self.reads(body):
            return
        if self.space is None:
            raise InvalidInput(f"{self.kind} {self.id} reads whole models, not archs")
        if body.archs is None:
            raise InvalidInput(
                f"{self.kind} {self.id} reads archs of {self.space}, not whole models"
            )
        raise InvalidInput(
            f"{self.kind} {self.id} reads archs of {self.space} {self.space_params}, "
            f"not {body.space} {body.space_params}"
        )
