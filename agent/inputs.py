"""Model inputs, generated once with a fixed seed, outside the timed region."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from latlab.agent.errors import RunnerError

__all__ = ["MAX_INPUT_BYTES", "InputSpec", "make_inputs", "random_array"]

#: The most one generated input may take.
MAX_INPUT_BYTES = 2 * 1024**3

ORT_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(bool)": np.bool_,
}


class InputSpec(Protocol):
    """What onnxruntime's ``NodeArg`` offers (graph inputs that are not initializers)."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def shape(self) -> Sequence[int | str | None]: ...


def make_inputs(
    specs: Sequence[InputSpec], seed: int
) -> tuple[dict[str, np.ndarray], dict[str, list[int]]]:
    """Random feeds (symbolic or unknown dims -> 1; values by ``random_array``) and the
    shapes used, by input name."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    shapes: dict[str, list[int]] = {}
    for spec in specs:
        dtype = ORT_DTYPES.get(spec.type)
        if dtype is None:
            raise RunnerError(
                f"input {spec.name!r} has type {spec.type}, which latlab cannot generate"
            )
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
        value = random_array(rng, dtype, shape)
        feeds[spec.name] = value
        shapes[spec.name] = shape
    return feeds, shapes


def random_array(rng: np.random.Generator, dtype: Any, shape: Sequence[int]) -> np.ndarray:
    """Floats standard normal, integers in [0, 2) (valid as indices and token ids), booleans
    random. An input over ``MAX_INPUT_BYTES`` is a ``RunnerError`` before anything is
    allocated (the server refuses such models at upload; this guards the agent anyway)."""
    size = math.prod(shape) * np.dtype(dtype).itemsize
    if size > MAX_INPUT_BYTES:
        raise RunnerError(
            f"an input of shape {list(shape)} would take {size:,} bytes; the agent's limit is "
            f"{MAX_INPUT_BYTES:,}"
        )
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    if dtype is np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    return rng.integers(0, 2, shape).astype(dtype)
