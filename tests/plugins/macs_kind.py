"""A predictor-kind plug-in, DESIGN.md's worked example: latency as a straight line in the
graph's MACs (kind ``macs-line``). This module is all of it; a package registers it with one
entry point (``[project.entry-points."latlab.predictors"]``,
``macs-line = "tests.plugins.macs_kind:MacsLine"``), uploads its artifact as any predictor's
(``Client.upload_predictor(to_artifact(model), ...)``) and ``/v1/predict`` serves it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Self

import numpy as np

from latlab.graph import OpGraph
from latlab.latency_model import Estimates, LatencyModel
from latlab.opkey import graph_cost


class MacsLine(LatencyModel):
    kind = "macs-line"

    def __init__(self, ms_per_mmac: float, intercept_ms: float) -> None:
        self.ms_per_mmac = ms_per_mmac
        self.intercept_ms = intercept_ms

    def predict_graphs(self, graphs: Sequence[OpGraph]) -> Estimates:
        macs = np.array([graph_cost(g).macs for g in graphs], dtype=np.float64)
        return Estimates(latency_ms=self.intercept_ms + self.ms_per_mmac * macs / 1e6)

    def payload(self) -> bytes:
        return json.dumps(
            {"ms_per_mmac": self.ms_per_mmac, "intercept_ms": self.intercept_ms}
        ).encode()

    @classmethod
    def from_payload(cls, data: bytes) -> Self:
        fields = json.loads(data)
        return cls(float(fields["ms_per_mmac"]), float(fields["intercept_ms"]))

    def describe(self) -> dict[str, object]:
        return {"metrics": {"served": "macs-line"}}
