"""Predictors kept in memory for serving: each version loaded once from the blob store; for a
space small enough to enumerate (NAS-Bench-201: 15,625 archs), every arch's prediction is
computed in one batched pass on first use and answers are then read from that table."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latlab.spaces import get_space
from predictors.features import GraphFeatures, arch_features
from predictors.model import GcnPredictor
from server.blobstore import BlobStore
from server.tables import Predictor

__all__ = ["TABLE_MAX_ARCHS", "LoadedPredictor", "PredictorCache"]

log = logging.getLogger(__name__)

#: Spaces up to this size get a table of every arch's prediction.
TABLE_MAX_ARCHS = 100_000
MAX_LOADED = 8


@dataclass
class LoadedPredictor:
    id: str
    model: GcnPredictor
    space: Any  # the SearchSpace its graphs come from, or None (whole models)
    space_params: dict[str, Any]
    table_ms: np.ndarray | None = None
    table_std_ms: np.ndarray | None = None


class PredictorCache:
    def __init__(self, max_loaded: int = MAX_LOADED) -> None:
        self._loaded: OrderedDict[str, LoadedPredictor] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_loaded

    def get(self, row: Predictor, blobs: BlobStore) -> LoadedPredictor:
        with self._lock:
            if row.id in self._loaded:
                self._loaded.move_to_end(row.id)
                return self._loaded[row.id]
            with blobs.open(row.artifact_sha256) as f:
                model = GcnPredictor.from_bytes(f.read())
            space = get_space(row.space, **row.space_params) if row.space is not None else None
            loaded = LoadedPredictor(row.id, model, space, dict(row.space_params))
            self._loaded[row.id] = loaded
            while len(self._loaded) > self._max:
                self._loaded.popitem(last=False)
            return loaded

    def predict_archs(
        self, loaded: LoadedPredictor, indices: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Latency (ms) and spread of archs of the predictor's space, by index."""
        space = loaded.space
        if space.size <= TABLE_MAX_ARCHS:
            with self._lock:
                if loaded.table_ms is None:
                    started = time.perf_counter()
                    archs = [space.from_index(i) for i in range(space.size)]
                    feats = arch_features(space.name, loaded.space_params, archs)
                    loaded.table_ms, loaded.table_std_ms = loaded.model.predict(feats)
                    log.info(
                        "prediction table built",
                        extra={
                            "predictor_id": loaded.id,
                            "archs": space.size,
                            "s": time.perf_counter() - started,
                        },
                    )
            idx = np.asarray(indices, dtype=np.int64)
            assert loaded.table_ms is not None
            std = loaded.table_std_ms[idx] if loaded.table_std_ms is not None else None
            return loaded.table_ms[idx], std
        feats = arch_features(
            space.name, loaded.space_params, [space.from_index(i) for i in indices]
        )
        return loaded.model.predict(feats)

    @staticmethod
    def predict_graphs(
        loaded: LoadedPredictor, features: Sequence[GraphFeatures]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        return loaded.model.predict(features)
