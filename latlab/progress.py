"""Progress bars for long work the server does (campaigns), drawn with tqdm."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

from latlab.client import Client
from latlab.schemas import DatasetOut

__all__ = ["follow_dataset"]


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
            bar.set_postfix(prepared=f"{p.prepared}/{p.archs}", failed=p.failed, refresh=False)
            bar.update(p.done + p.failed - bar.n)

        return client.wait_dataset(dataset_id, timeout_s=timeout_s, poll_s=poll_s, on_progress=show)
