"""A latency model's arrays and JSON header as one ``.npz`` file (no pickle), read back with
the declared sizes checked before numpy allocates anything: the GCN's and the transfer
predictor's payloads."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np

from latlab import untrusted
from latlab.predictors.errors import PredictorError

__all__ = ["MAX_UNPACKED_BYTES", "check_declared_sizes", "read_npz", "write_npz"]

#: The member that holds the JSON header.
META = "meta.json"


#: The most an artifact's arrays may take unpacked (a 4 x 600-unit ensemble takes a few MB).
MAX_UNPACKED_BYTES = 512 * 1024 * 1024


def check_declared_sizes(data: bytes) -> None:
    """Refuse an artifact whose arrays declare more bytes than their members hold, or more than
    ``MAX_UNPACKED_BYTES`` in all, before numpy allocates any (a 359-byte file can declare 4 TB)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
                raise PredictorError(
                    f"the artifact unpacks to more than {MAX_UNPACKED_BYTES} bytes"
                )
            for member in members:
                with archive.open(member) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read_header(f)
                    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                    if declared > member.file_size:
                        raise PredictorError(
                            f"array {member.filename[:60]} declares {declared:,} bytes in a "
                            f"{member.file_size:,}-byte member"
                        )
    except PredictorError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise PredictorError(f"not a latlab predictor artifact: {exc}") from exc


def write_npz(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """The arrays and the header (under ``META``), compressed."""
    buffer = io.BytesIO()
    members = {**arrays, META: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    np.savez_compressed(buffer, **members)  # type: ignore[arg-type]
    return buffer.getvalue()


def read_npz(data: bytes, what: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays) of a payload ``write_npz`` made; a ``PredictorError`` naming ``what``
    (``predictor``, ``transfer predictor``) if it is not one."""
    check_declared_sizes(data)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            header = untrusted.loads(npz[META].tobytes(), f"{what} header")
            arrays = {name: npz[name] for name in npz.files if name != META}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise PredictorError(f"not a latlab {what} artifact: {exc}") from exc
    if not isinstance(header, dict):
        raise PredictorError(f"a latlab {what} artifact whose header is not an object")
    return header, arrays
