"""One interface for every latency predictor (a LUT, the GCN, whatever comes next), the
registry of predictor kinds, and the artifact that records a model's kind.

A kind is a ``LatencyModel`` subclass: it predicts from OpGraphs (and, where it has a faster
way, from a space's archs), and writes itself as a payload. Serving, the predictor registry and
the CLI hold models through this interface and never name a kind: the kind of an artifact is in
its header (``to_artifact`` / ``read_artifact``) and the class is found in the registry.

Kinds are built in (``BUILTIN_KINDS``, one line each) or added by other packages with an entry
point in the ``latlab.predictors`` group naming the class; read once, on first use.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np

from latlab import untrusted
from latlab.errors import LatlabError
from latlab.graph import OpGraph
from latlab.plugins import Registry
from latlab.schemas import EstimatedOp
from latlab.untrusted import excerpt

__all__ = [
    "AUTO",
    "BUILTIN_KINDS",
    "ENTRY_POINT_GROUP",
    "REGISTRY",
    "ArtifactError",
    "Estimates",
    "LatencyModel",
    "artifact_kind",
    "kind_class",
    "kinds",
    "read_artifact",
    "to_artifact",
]

#: The query choice "the device's best available model" (not a kind).
AUTO = "auto"
#: The kinds latlab ships: ``"module:Class"``, one line each.
BUILTIN_KINDS = (
    "latlab.lut.model:LutModel",
    "latlab.predictors.model:GcnPredictor",
    "latlab.predictors.transfer:TransferPredictor",
)
ENTRY_POINT_GROUP = "latlab.predictors"
#: The first line of an artifact; the second is its JSON header, the rest its payload.
MAGIC = b"latlab-latency-model\n"
#: A zip file: GCN artifacts written before the header existed.
ZIP_MAGIC = b"PK\x03\x04"
LEGACY_KIND = "gcn"
MAX_HEADER_BYTES = 4096


class ArtifactError(LatlabError):
    """Not a latency-model artifact, or one of a kind this install does not know."""


@dataclass(frozen=True)
class Estimates:
    """A model's answer for a batch of items."""

    latency_ms: np.ndarray
    #: The spread of an ensemble's members (ms), where the model has one.
    uncertainty_ms: np.ndarray | None = None
    #: Per item, where the model sums kernels (a LUT): the kernels summed, and those it had no
    #: entry for and estimated.
    kernels: list[int] | None = None
    estimated: list[list[EstimatedOp]] | None = None


class LatencyModel(ABC):
    """A latency predictor for one device and runtime."""

    #: The kind's name, recorded in the artifact and the registry.
    kind: ClassVar[str]
    #: Whether predicting every arch of a small space in one batch is cheap (the server then
    #: answers a space's archs from a table of them all).
    tabulate: ClassVar[bool] = False

    @abstractmethod
    def predict_graphs(self, graphs: Sequence[OpGraph]) -> Estimates:
        """Latency of each graph; a ``LatlabError`` if the model cannot predict one."""

    def predict_archs(
        self, space_name: str, space_params: dict[str, Any], archs: Sequence[Any]
    ) -> Estimates:
        """Latency of archs of a space (its arch objects); by default through their graphs
        (the space's default form)."""
        from latlab.spaces import get_space

        space = get_space(space_name, **space_params)
        return self.predict_graphs([space.graph(a) for a in archs])

    def predict_items(
        self, space_name: str, space_params: dict[str, Any], items: Sequence[str | int]
    ) -> Estimates:
        """Latency of archs as a request gives them (indices, strings, vectors); an
        ``ArchError`` names one the space does not have. By default each parsed, then
        ``predict_archs``; a model that reads a space's items in bulk says so here."""
        from latlab.spaces import get_space

        space = get_space(space_name, **space_params)
        return self.predict_archs(space_name, space_params, [space.parse(i) for i in items])

    @abstractmethod
    def payload(self) -> bytes:
        """The model's own serialisation (``from_payload`` reads it back)."""

    @classmethod
    @abstractmethod
    def from_payload(cls, data: bytes) -> Self:
        """The model from its payload; a ``LatlabError`` if it is not one."""

    def describe(self) -> dict[str, Any]:
        """What it reports of itself for the registry (training report, metrics); JSON-ready."""
        return {}


REGISTRY: Registry[type[LatencyModel]] = Registry(
    BUILTIN_KINDS,
    ENTRY_POINT_GROUP,
    lambda found: isinstance(found, type) and issubclass(found, LatencyModel),
    lambda cls: cls.kind,
    reserved={AUTO},
)


def kinds() -> dict[str, type[LatencyModel]]:
    """Every registered kind by name (built-ins first), read on first use."""
    return REGISTRY.all()


def kind_class(kind: str) -> type[LatencyModel]:
    known = kinds()
    try:
        return known[kind]
    except KeyError:
        raise ArtifactError(
            f"unknown predictor kind {excerpt(kind)}; known: {', '.join(known)}"
        ) from None


def to_artifact(model: LatencyModel) -> bytes:
    """The model as stored and uploaded: a header naming its kind, then its payload."""
    header = json.dumps({"kind": model.kind}, sort_keys=True).encode()
    return MAGIC + header + b"\n" + model.payload()


def artifact_kind(data: bytes) -> tuple[str, bytes]:
    """(kind, payload) of an artifact."""
    if data.startswith(MAGIC):
        header, sep, payload = data[len(MAGIC) :].partition(b"\n")
        if not sep or len(header) > MAX_HEADER_BYTES:
            raise ArtifactError("a latency-model artifact without its header line")
        try:
            kind = untrusted.loads(header, "artifact header")["kind"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"a latency-model artifact with a malformed header: {exc}") from exc
        if not isinstance(kind, str):
            raise ArtifactError("a latency-model artifact whose kind is not a name")
        return kind, payload
    if data.startswith(ZIP_MAGIC):
        return LEGACY_KIND, data
    raise ArtifactError("not a latlab latency-model artifact (no header, not a GCN .npz)")


def read_artifact(data: bytes) -> LatencyModel:
    """The model an artifact holds, by the class its kind names."""
    kind, payload = artifact_kind(data)
    return kind_class(kind).from_payload(payload)
