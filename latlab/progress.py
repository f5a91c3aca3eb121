"""Progress bars for long work the server does (campaigns, LUTs, imports), drawn with tqdm."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from tqdm import tqdm

from latlab.client import Client
from latlab.schemas import DatasetOut, LutOut

__all__ = ["dataset_bar", "elapsed", "follow_dataset", "follow_lut"]


@contextmanager
def elapsed(desc: str, file: TextIO | None = None, every_s: float = 0.5) -> Iterator[None]:
    """A line that counts the seconds while one long request runs (an import the server
    parses and stores before it answers: there is nothing finer to count)."""
    done = threading.Event()
    with tqdm(desc=desc, bar_format="{desc}: {elapsed}", file=file or sys.stderr) as bar:

        def tick() -> None:
            while not done.wait(every_s):
                bar.refresh()

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()


@contextmanager
def dataset_bar(file: TextIO | None = None) -> Iterator[Callable[[DatasetOut], None]]:
    """A callback for ``Client.wait_dataset``'s ``on_progress``: entries finished out of archs x
    devices (and how many archs are prepared, failed, re-measured), the bar made on the first
    call (when the campaign's size is known)."""
    bars: list[tqdm[None]] = []

    def show(d: DatasetOut) -> None:
        p = d.progress
        if not bars:
            bars.append(
                tqdm(
                    total=p.archs * p.devices,
                    desc=d.name[:30],
                    unit="meas",
                    file=file or sys.stderr,
                    dynamic_ncols=True,
                )
            )
        bar = bars[0]
        if bar.total != p.archs * p.devices:  # an active campaign's next round
            bar.total = p.archs * p.devices
        extra: dict[str, object] = {"remeasured": p.remeasured} if p.remeasured else {}
        if d.rounds:
            mape = d.rounds[-1].cv.get("mape")
            extra["round"] = len(d.rounds)
            extra["est_error"] = f"{100 * mape:.1f}%" if isinstance(mape, float) else "-"
        bar.set_postfix(prepared=f"{p.prepared}/{p.archs}", failed=p.failed, refresh=False, **extra)
        bar.update(p.done + p.failed - bar.n)

    try:
        yield show
    finally:
        for bar in bars:
            bar.close()


def follow_dataset(
    client: Client,
    dataset_id: str,
    *,
    timeout_s: float,
    poll_s: float = 1.0,
    file: TextIO | None = None,
) -> DatasetOut:
    """Wait until a campaign has no pending entry, with ``dataset_bar`` on ``file`` (default
    stderr)."""
    with dataset_bar(file) as show:
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
