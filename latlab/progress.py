"""Progress bars for long work the server does (campaigns, LUTs), drawn with tqdm."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

from latlab.client import Client
from latlab.schemas import DatasetOut, LutOut

__all__ = ["follow_dataset", "follow_lut"]


def follow_dataset(
    client: Client,
    dataset_id: str,
    *,
    timeout_s: float,
    poll_s: float = 1.0,
    file: TextIO | None = None,
) -> DatasetOut:
    """Wait until a campaign has no pending entry, showing entries finished out of
    archs x devices (and how many archs are prepared) on ``file`` (default stderr)."""
    first = client.dataset(dataset_id)
    with tqdm(
        total=first.progress.archs * first.progress.devices,
        desc=first.name[:30],
        unit="meas",
        file=file or sys.stderr,
        dynamic_ncols=True,
    ) as bar:

        def show(d: DatasetOut) -> None:
            p = d.progress
            extra = {"remeasured": p.remeasured} if p.remeasured else {}
            bar.set_postfix(
                prepared=f"{p.prepared}/{p.archs}", failed=p.failed, refresh=False, **extra
            )
            bar.update(p.done + p.failed - bar.n)

        return client.wait_dataset(dataset_id, timeout_s=timeout_s, poll_s=poll_s, on_progress=show)


def follow_lut(
    client: Client,
    lut_id: str,
    *,
    timeout_s: float,
    poll_s: float = 1.0,
    file: TextIO | None = None,
) -> LutOut:
    """Wait until a LUT is ready or failed, showing its micro-models measured (a LUT built
    from stored per-op rows has none to wait for)."""
    with tqdm(
        desc=f"lut {lut_id[:8]}", unit="kernel", file=file or sys.stderr, dynamic_ncols=True
    ) as bar:

        def show(lut: LutOut) -> None:
            p = lut.progress
            if bar.total != p.kernels:
                bar.reset(total=p.kernels)
            bar.set_postfix(state=lut.state.value, failed=p.failed, refresh=False)
            bar.update(p.done + p.failed - bar.n)

        return client.wait_lut(lut_id, timeout_s=timeout_s, poll_s=poll_s, on_progress=show)
