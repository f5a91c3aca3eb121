"""The predicted-vs-measured scatter of a held-out split, as PNG bytes (matplotlib, Agg)."""

from __future__ import annotations

import io
from collections.abc import Sequence

__all__ = ["scatter_png"]


def scatter_png(true_ms: Sequence[float], predicted_ms: Sequence[float], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    try:
        low = min(min(true_ms), min(predicted_ms))
        high = max(max(true_ms), max(predicted_ms))
        ax.plot([low, high], [low, high], color="grey", linewidth=1)
        ax.plot([low, high], [low * 1.1, high * 1.1], color="grey", linewidth=0.5, linestyle="--")
        ax.plot([low, high], [low * 0.9, high * 0.9], color="grey", linewidth=0.5, linestyle="--")
        ax.scatter(true_ms, predicted_ms, s=4, alpha=0.5)
        ax.set_xlabel("measured latency (ms)")
        ax.set_ylabel("predicted latency (ms)")
        ax.set_title(title, fontsize=9)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()
