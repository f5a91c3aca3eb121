"""``latlab train``: a device's learned predictor trained here (``pip install
'latlab[train]'``) from the server's measurements, and registered there."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from latlab.cli.common import CURRENT_HINT, client_from, figure, full_ids, require_extras

__all__ = ["cmd_train"]


def cmd_train(args: argparse.Namespace) -> int:
    require_extras("train", "train")
    from tqdm import tqdm

    from latlab.latency_model import to_artifact
    from latlab.predictors.pipeline import train_for_device
    from latlab.predictors.presets import PRESETS

    config = PRESETS[args.preset]
    overrides = {
        k: getattr(args, k) for k in ("epochs", "hidden", "folds") if getattr(args, k) is not None
    }
    config = replace(config, **overrides, seed=args.seed)
    with client_from(args) as client:
        device = client.device(args.device)  # an id or a name: the training data is by id
        with tqdm(
            total=config.epochs * config.n_members,
            unit="epoch",
            file=sys.stderr,
            dynamic_ncols=True,
        ) as bar:
            run = train_for_device(
                client,
                device.id,
                config,
                dataset_ids=full_ids(client, "dataset", args.dataset) or (),
                form=args.form,
                n_test=args.test,
                split_seed=args.seed,
                register=not args.no_register,
                on_epoch=bar.update,
            )
    report = run.report
    n_train = run.predictor.meta["split"]["train"]
    print(
        f"trained on {n_train} of {len(run.data.archs)} {run.data.space} archs "
        f"({run.data.form} form, {args.preset}) in {report.train_s:.1f} s; "
        f"serves {report.served}"
    )
    print(f"cross-validated ({config.folds} folds), best first:")
    for name, m in report.candidates:
        print(f"  {name:<18} {_line(m)}")
    if report.test is not None:
        print(f"held-out {report.test.n}: {_line(report.test)}")
    if args.output is not None:
        Path(args.output).write_bytes(to_artifact(run.predictor))
        print(f"artifact {args.output}")
    if args.plot is not None:
        Path(args.plot).write_bytes(run.plot_png)
        print(f"plot {args.plot}")
    if run.registered is not None:
        r = run.registered
        state = "current" if r.current else CURRENT_HINT
        print(f"{r.id}  version {r.version} of {device.id} ({device.name}, {r.runtime}), {state}")
    return 0


def _line(m: Any) -> str:
    return (
        f"{figure(m.within_10pct, '.1f', 100, '%')} within 10%, "
        f"{figure(m.within_5pct, '.1f', 100, '%')} within 5%, "
        f"MAPE {figure(m.mape, '.2f', 100, '%')}, RMSE {figure(m.rmse_ms, '.4f', suffix=' ms')}, "
        f"rho {figure(m.spearman)}, tau {figure(m.kendall)}"
    )
