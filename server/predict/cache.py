"""Latency models kept in memory for serving: each source loaded once; for a space small
enough to enumerate (NAS-Bench-201: 15,625 archs), a model that predicts in cheap batches
(``LatencyModel.tabulate``) predicts every arch once, on the first request of at least
``TABLE_MIN_REQUEST`` archs (a search job's batch), and answers are read from that table; a
smaller request before it is predicted as it is (a few archs in milliseconds, where the table
takes seconds)."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from latlab.latency_model import Estimates, LatencyModel
from latlab.server.blobstore import BlobStore
from latlab.server.predict.sources import Source
from latlab.spaces import get_space

__all__ = ["TABLE_MAX_ARCHS", "PredictorCache", "Served"]

log = logging.getLogger(__name__)

#: Spaces up to this size get a table of every arch's prediction ...
TABLE_MAX_ARCHS = 100_000
#: ... built by the first request of at least this many archs.
TABLE_MIN_REQUEST = 1000
MAX_LOADED = 8


@dataclass
class Served:
    """A loaded model and, once asked for archs of a small space, its table of them all."""

    source: Source
    model: LatencyModel
    table: dict[tuple[str, str], Estimates] = field(default_factory=dict)


class PredictorCache:
    def __init__(self, max_loaded: int = MAX_LOADED) -> None:
        self._loaded: OrderedDict[str, Served] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_loaded

    def get(self, source: Source, blobs: BlobStore) -> Served:
        with self._lock:
            if source.id in self._loaded:
                self._loaded.move_to_end(source.id)
                return self._loaded[source.id]
            served = Served(source, source.load(blobs))
            self._loaded[source.id] = served
            while len(self._loaded) > self._max:
                self._loaded.popitem(last=False)
            return served

    def predict_archs(
        self,
        served: Served,
        space_name: str,
        space_params: dict[str, Any],
        items: Sequence[str | int],
    ) -> Estimates:
        """The model's estimates for archs of a space, as a request gives them (indices,
        strings, vectors); an ``ArchError`` names one the space does not have."""
        space = get_space(space_name, **space_params)
        key = (space_name, repr(sorted(space_params.items())))
        if (
            not served.model.tabulate
            or space.size > TABLE_MAX_ARCHS
            or (len(items) < TABLE_MIN_REQUEST and key not in served.table)
        ):
            return served.model.predict_items(space_name, space_params, items)
        table = self._table(served, space, space_params, key)
        if all(type(i) is int and 0 <= i < space.size for i in items):
            idx = np.asarray(items, dtype=np.int64)  # a search job's usual form: no parsing
        else:
            idx = np.asarray([space.parse(item).index for item in items], dtype=np.int64)
        std = table.uncertainty_ms[idx] if table.uncertainty_ms is not None else None
        return Estimates(latency_ms=table.latency_ms[idx], uncertainty_ms=std)

    def _table(
        self, served: Served, space: Any, space_params: dict[str, Any], key: tuple[str, str]
    ) -> Estimates:
        with self._lock:
            if key not in served.table:
                started = time.perf_counter()
                every = [space.from_index(i) for i in range(space.size)]
                served.table[key] = served.model.predict_archs(key[0], space_params, every)
                log.info(
                    "prediction table built",
                    extra={
                        "predictor_id": served.source.id,
                        "archs": space.size,
                        "s": time.perf_counter() - started,
                    },
                )
            return served.table[key]
