"""``latlab train``, ``latlab predict`` and ``latlab predictors``: learned predictors for a
device, trained where torch is installed (``pip install 'latlab[train]'``) and served by the
server without it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from latlab.cli.common import (
    UsageError,
    add_delete_flags,
    add_json_flag,
    add_user_flags,
    archs_from,
    client_from,
    confirm,
    figure,
    full_ids,
    int_params,
    print_json,
    say_deleted,
    table,
)
from latlab.lab.train import cmd_train

__all__ = ["add_parsers", "cmd_predict"]


def cmd_predict(args: argparse.Namespace) -> int:
    archs = archs_from(args.archs, args.archs_file)
    if (archs is None) == (not args.model):
        raise UsageError("give archs (arguments or --archs-file, with --space) or --model IDs")
    if len(args.device) > 1 and args.version is not None:
        raise UsageError("--version names one device's predictor: give one --device")
    with client_from(args) as client:
        query: dict[str, Any] = {
            "space": args.space if archs else None,
            "archs": archs,
            "model_ids": full_ids(client, "model", args.model),
            "predictor": args.predictor,
            "space_params": int_params(args.param),
        }
        if len(args.device) == 1:
            answers = [client.predict(args.device[0], version=args.version, **query)]
        else:
            answers = client.predict_devices(args.device, **query)
    if args.json:
        dumped = [out.model_dump(mode="json") for out in answers]
        print(json.dumps(dumped[0] if len(dumped) == 1 else dumped, indent=2))
        return 0
    for out in answers:
        print(f"# device {out.device_id}, predictor {out.predictor} {out.version}")
        for p in out.predictions:
            spread = f" ± {p.uncertainty_ms:.4f}" if p.uncertainty_ms is not None else ""
            note = f"  ({len(p.estimated)} kernels estimated)" if p.estimated else ""
            print(f"{p.latency_ms:10.4f} ms{spread}  {p.item}{note}")
    return 0


def cmd_predictors(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        if args.current is not None and args.delete is not None:
            raise UsageError("--current or --delete, not both")
        if args.current is not None:
            p = client.make_current(args.current)
            print(f"{p.id}  version {p.version} of {p.device_id} is current")
            return 0
        if args.delete is not None:
            confirm(args, f"predictor {args.delete}")
            say_deleted(client.delete_predictor(args.delete))
            return 0
        predictors = client.predictors(args.device)
    if args.json:
        print_json(predictors)
        return 0
    rows = [
        {
            "id": p.id,
            "device": p.device_id[:12],
            "runtime": p.runtime,
            "space": p.space or "-",
            "version": p.version,
            "current": "*" if p.current else "",
            "serves": p.metrics.get("served", "-"),
            "scored": _scored(p.metrics)[0],
            "within_10pct": figure(_scored(p.metrics)[1].get("within_10pct"), ".1f", 100, "%"),
            "rho": figure(_scored(p.metrics)[1].get("spearman")),
        }
        for p in predictors
    ]
    columns = ["id", "device", "runtime", "space", "version", "current", "serves", "scored"]
    print(table(rows, [*columns, "within_10pct", "rho"]))
    return 0


def _scored(metrics: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The held-out figures of a predictor if it has some, else its cross-validated ones."""
    for key in ("test", "cv"):
        found = metrics.get(key)
        if isinstance(found, dict):
            return key, found
    return "-", {}


def add_predict_flags(p: argparse.ArgumentParser, default_predictor: str) -> None:
    p.add_argument("archs", nargs="*", help="archs of --space: indices, strings or vectors")
    p.add_argument(
        "--archs-file",
        help="a file with one arch per line (# comments); any number: sent in batches",
    )
    p.add_argument(
        "--device", required=True, action="append", help="a device id or name (repeat for several)"
    )
    p.add_argument("--space", default="nb201")
    p.add_argument("--param", action="append", metavar="KEY=INT", help="space parameter")
    p.add_argument("--model", nargs="+", help="model ids instead of archs")
    p.add_argument(
        "--predictor",
        default=default_predictor,
        help="auto (the device's current predictor for the space, else its LUT) or a kind: "
        "gcn, lut, a plug-in's",
    )
    p.add_argument("--version", help="a specific LUT or predictor id")
    p.add_argument("--json", action="store_true", help="the full answer")
    p.set_defaults(func=cmd_predict)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    t = add_user_flags(sub.add_parser("train", help="train a GCN latency predictor for a device"))
    t.add_argument("--device", required=True, help="a device id or name")
    t.add_argument(
        "--dataset", nargs="+", help="datasets to train on (default: all of the device's)"
    )
    t.add_argument("--preset", choices=["latlab", "brp-nas"], default="latlab")
    t.add_argument("--epochs", type=int)
    t.add_argument("--hidden", type=int)
    t.add_argument("--folds", type=int, help="cross-validation folds (one member per fold)")
    t.add_argument(
        "--form",
        choices=["pruned", "eager", "unknown"],
        help="the graph form to train on, where the device has datasets of several",
    )
    t.add_argument(
        "--test",
        type=int,
        default=0,
        help="hold this many archs out for a test score (default 0: train on all of them; "
        "the metrics are cross-validated)",
    )
    t.add_argument("--seed", type=int, default=0, help="split and initialisation seed")
    t.add_argument("--no-register", action="store_true", help="do not upload it to the server")
    t.add_argument("-o", "--output", help="also write the artifact (.npz) here")
    t.add_argument("--plot", help="also write the held-out scatter (PNG) here")
    t.set_defaults(func=cmd_train)

    add_predict_flags(
        add_user_flags(sub.add_parser("predict", help="predicted latency on a device")), "auto"
    )

    r = add_user_flags(sub.add_parser("predictors", help="the predictor registry"))
    r.add_argument("--device", help="only this device's (id or name)")
    r.add_argument("--current", metavar="ID", help="make this version current")
    r.add_argument(
        "--delete",
        metavar="ID",
        help="delete this version and its artifact (if it was current, the newest older one "
        "becomes current)",
    )
    add_delete_flags(r)
    add_json_flag(r)
    r.set_defaults(func=cmd_predictors)
