"""A lookup table as a latency model (``latlab.latency_model``): kind ``lut``."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
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
        if segments is None:
            return self.predict_graphs([space.graph(a) for a in archs])
        parts = [space.segments(a) for a in archs]
        numbers = segments.numbers(parts, max(map(len, parts), default=0))
        return self._answer(segments, space, numbers, lambda i: archs[i])

    def predict_items(
        self, space_name: str, space_params: dict[str, Any], items: Sequence[str | int]
    ) -> Estimates:
        """A layer-wise space's archs in the space's canonical string form read in bulk
        (``Layerwise.segment_numbers``: no arch objects), any other form parsed."""
        space = get_space(space_name, **space_params)
        if not isinstance(space, Layerwise):
            return super().predict_items(space_name, space_params, items)
        segments = self._segment_table(space_name, space_params, space)
        if segments is None:
            return super().predict_items(space_name, space_params, items)
        numbers, read = space.segment_numbers(items)
        unread = np.flatnonzero(~read).tolist()
        parsed = {i: space.parse(items[i]) for i in unread}  # an ArchError names a bad one
        if parsed:
            parts = [space.segments(a) for a in parsed.values()]
            numbers[unread] = segments.numbers(parts, numbers.shape[1])
        return self._answer(
            segments, space, numbers, lambda i: parsed[i] if i in parsed else space.parse(items[i])
        )

    def _answer(
        self,
        segments: SegmentTable,
        space: Layerwise[Any],
        numbers: np.ndarray,
        arch_at: Callable[[int], Any],
    ) -> Estimates:
        latency_ms, kernels, estimated, missing = segments.answer(numbers)
        for i in missing:  # a segment the sums lack: through the arch's graph
            answer = predict(self.table, space.graph(arch_at(i)))
            latency_ms[i], kernels[i], estimated[i] = (
                answer.latency_ms,
                answer.kernels,
                list(answer.estimated),
            )
        return Estimates(latency_ms, kernels=kernels, estimated=_estimated_ops(estimated))

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
        estimated=_estimated_ops([estimated for _, _, estimated in answers]),
    )


def _estimated_ops(per_item: Sequence[list[EstimatedKernel]]) -> list[list[EstimatedOp]]:
    """The answers' estimated kernels, one ``EstimatedOp`` per distinct kernel shared by every
    item that lists it (a layer-wise space's items share their segments' kernels: an OFA
    batch of 1,000 listed 76,000, built one by one in 480 ms)."""
    made: dict[EstimatedKernel, EstimatedOp] = {}

    def op(e: EstimatedKernel) -> EstimatedOp:
        found = made.get(e)
        if found is None:
            found = made[e] = EstimatedOp(
                nodes=list(e.nodes), op_type=e.op_type, key=e.key, latency_us=e.latency_us
            )
        return found

    return [[op(e) for e in estimated] for estimated in per_item]
