"""Named training configs: ``brp-nas`` reproduces the published predictor; ``latlab`` is what
measured best here (bench/predictor_accuracy.py prints both)."""

from __future__ import annotations

from latlab.predictors.model import GcnConfig

__all__ = ["PRESETS"]

PRESETS: dict[str, GcnConfig] = {
    # Eagle's code: 4 x 600, dropout, AdamW 4e-4 / 5e-4, L1 on latency, 250 epochs; one
    # network, its best epoch on a 10 % validation fold
    "brp-nas": GcnConfig(),
    # each member learns the log of the ratio to a linear fit of the live and the dead ops'
    # costs, standardised; 4 x 64 units, no dropout, batches of 64, a cosine learning-rate
    # decay over 200 epochs; one member per fold on 3 of 5 folds; the floor guard serves the
    # best of the GCN, the linear floors and blends on the folds' held-out archs
    "latlab": GcnConfig(
        hidden=64,
        dropout=0.0,
        lr=4e-3,
        lr_schedule="cosine",
        target="log",
        baseline="linear",
        epochs=200,
        batch_size=64,
        folds=5,
        members=3,
    ),
}
