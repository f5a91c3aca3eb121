"""A lookup table as a latency model (``latlab.latency_model``): kind ``lut``."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any, Self

import numpy as np

from latlab import untrusted
from latlab.graph import OpGraph
from latlab.latency_model import Estimates, LatencyModel
from latlab.lut.errors import LutError
from latlab.lut.layerwise import SegmentTable
from latlab.lut.predict import EstimatedKernel, predict
from latlab.lut.table import LookupTable
from latlab.schemas import EstimatedOp
from latlab.spaces import get_space
from latlab.spaces.base import Layerwise

__all__ = ["LutModel"]


class LutModel(LatencyModel):
    """The calibrated sum of a graph's kernels' entries; kernels without an entry estimated by
    their op type's fallback and listed with the answer."""

    kind = "lut"

    def __init__(self, table: LookupTable) -> None:
        self.table = table
        #: Per (space, parameters): its segments' sums (None: the space is answered by graphs).
        self._segments: dict[tuple[str, str], SegmentTable | None] = {}
        self._lock = threading.Lock()

    def predict_graphs(self, graphs: Sequence[OpGraph]) -> Estimates:
        answers = [predict(self.table, g) for g in graphs]  # MissingEntry: a LutError
        return _estimates([(a.latency_ms, a.kernels, list(a.estimated)) for a in answers])

    def predict_archs(
        self, space_name: str, space_params: dict[str, Any], archs: Sequence[Any]
    ) -> Estimates:
        """A layer-wise space's archs from its segments' sums (``lut.layerwise``), built on
        the first request; any other space's, or an arch whose segment the sums lack, through
        its graph."""
        space = get_space(space_name, **space_params)
        if not isinstance(space, Layerwise):
            return super().predict_archs(space_name, space_params, archs)
        segments = self._segment_table(space_name, space_params, space)
        answers: list[tuple[float, int, list[EstimatedKernel]]] = []
        for arch in archs:
            found = segments.answer(space.segments(arch)) if segments is not None else None
            if found is None:
                graph_answer = predict(self.table, space.graph(arch))
                found = (
                    graph_answer.latency_ms,
                    graph_answer.kernels,
                    list(graph_answer.estimated),
                )
            answers.append(found)
        return _estimates(answers)

    def _segment_table(
        self, space_name: str, space_params: dict[str, Any], space: Layerwise[Any]
    ) -> SegmentTable | None:
        key = (space_name, repr(sorted(space_params.items())))
        with self._lock:  # one build per space, whoever asks first
            if key not in self._segments:
                try:
                    self._segments[key] = SegmentTable.build(self.table, space)
                except LutError:  # kernels across segments, or an entry missing
                    self._segments[key] = None
            return self._segments[key]

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


def _estimates(answers: Sequence[tuple[float, int, list[EstimatedKernel]]]) -> Estimates:
    return Estimates(
        latency_ms=np.array([ms for ms, _, _ in answers], dtype=np.float64),
        kernels=[kernels for _, kernels, _ in answers],
        estimated=[
            [
                EstimatedOp(
                    nodes=list(e.nodes), op_type=e.op_type, key=e.key, latency_us=e.latency_us
                )
                for e in estimated
            ]
            for _, _, estimated in answers
        ],
    )
