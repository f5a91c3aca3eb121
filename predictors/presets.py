"""Named training configs: ``brp-nas`` reproduces the published predictor; ``latlab`` is what
measured best here (bench/predictor_accuracy.py prints both)."""

from __future__ import annotations

from predictors.model import GcnConfig

__all__ = ["PRESETS"]

PRESETS: dict[str, GcnConfig] = {
    # Eagle's code: 4 x 600, dropout, AdamW 4e-4 / 5e-4, L1 on latency, 250 epochs
    "brp-nas": GcnConfig(),
    # the ratio to a FLOPs/bytes cost fit as log target, standardised; smaller layers, no
    # dropout, early stopping, 3-member ensemble
    "latlab": GcnConfig(
        hidden=128,
        dropout=0.0,
        lr=1e-3,
        target="log",
        baseline="cost",
        patience=40,
        ensemble=3,
        batch_size=32,
    ),
}
