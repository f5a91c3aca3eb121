"""A lookup table as a latency model (``latlab.latency_model``): kind ``lut``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Self

import numpy as np

from latlab import untrusted
from latlab.graph import OpGraph
from latlab.latency_model import Estimates, LatencyModel
from latlab.lut.errors import LutError
from latlab.lut.predict import predict
from latlab.lut.table import LookupTable
from latlab.schemas import EstimatedOp

__all__ = ["LutModel"]


class LutModel(LatencyModel):
    """The calibrated sum of a graph's kernels' entries; kernels without an entry estimated by
    their op type's fallback and listed with the answer."""

    kind = "lut"

    def __init__(self, table: LookupTable) -> None:
        self.table = table

    def predict_graphs(self, graphs: Sequence[OpGraph]) -> Estimates:
        answers = [predict(self.table, g) for g in graphs]  # MissingEntry: a LutError
        return Estimates(
            latency_ms=np.array([a.latency_ms for a in answers], dtype=np.float64),
            kernels=[a.kernels for a in answers],
            estimated=[
                [
                    EstimatedOp(
                        nodes=list(e.nodes), op_type=e.op_type, key=e.key, latency_us=e.latency_us
                    )
                    for e in a.estimated
                ]
                for a in answers
            ],
        )

    def payload(self) -> bytes:
        return json.dumps(self.table.to_json(), sort_keys=True).encode()

    @classmethod
    def from_payload(cls, data: bytes) -> Self:
        try:
            document = untrusted.loads(data, "LUT")
        except ValueError as exc:
            raise LutError(f"not a latlab LUT: {exc}") from exc
        if not isinstance(document, dict):
            raise LutError("not a latlab LUT: not a JSON object")
        return cls(LookupTable.from_json(document))
