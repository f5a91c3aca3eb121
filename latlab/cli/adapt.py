"""``latlab adapt``: a transfer predictor for a device from a few of its own measurements and
the other devices' latencies on the same space."""

from __future__ import annotations

import argparse
import sys

from latlab.cli.common import (
    CURRENT_HINT,
    add_json_flag,
    add_runtime_flags,
    add_sources_flag,
    add_timeout_flag,
    add_user_flags,
    client_from,
    figure,
    following,
    int_params,
    print_json,
    runtime_config,
    sources_from,
)
from latlab.progress import dataset_bar
from latlab.schemas import PredictorOut, TransferPlanIn
from latlab.spaces import SPACES, GraphForm

__all__ = ["add_parsers"]


def describe(p: PredictorOut) -> str:
    cv = p.metrics.get("cv") or {}
    sources = p.training.get("config", {}).get("sources", [])
    state = "current" if p.current else CURRENT_HINT
    return (
        f"transfer predictor {p.id[:12]} v{p.version} for {p.device_id[:12]} ({p.runtime}), "
        f"{state}: {p.training.get('samples')} samples, {len(sources)} source devices, "
        f"serves {p.metrics.get('served', 'transfer')}\n"
        f"cross-validated on the samples: rho {figure(cv.get('spearman'))}, "
        f"tau {figure(cv.get('kendall'))}, within ±10 % {figure(cv.get('within_10pct'), '.0f', 100, ' %')}"
        " (nn-Meter's convention)"
    )


def cmd_adapt(args: argparse.Namespace) -> int:
    form = GraphForm(args.form) if args.form else None
    with client_from(args) as client:
        if not args.wait:
            plan = client.plan_transfer(
                TransferPlanIn(
                    device_id=args.device,
                    space=args.space,
                    space_params=int_params(args.param),
                    sources=sources_from(args),
                    form=form,
                    samples=args.samples,
                    seed=args.seed,
                )
            )
            if args.json:
                print_json(plan)
                return 0
            where = "to measure" if plan.measure else "taken from its imported latencies"
            print(
                f"{len(plan.archs)} archs {where} ({len(plan.sources)} source devices cover "
                f"{plan.shared_archs}):"
            )
            for arch in plan.archs:
                print(arch)
            print("measure them and fit with: latlab adapt ... --wait", file=sys.stderr)
            return 0
        again = f"latlab adapt --device {args.device} --space {args.space} --samples {args.samples} --seed {args.seed} --wait"
        with following("the campaign", again), dataset_bar() as show:
            adapted = client.adapt(
                args.device,
                args.space,
                samples=args.samples,
                sources=sources_from(args),
                space_params=int_params(args.param),
                seed=args.seed,
                form=form,
                config=runtime_config(args),
                timeout_s=args.timeout_s,
                on_progress=show,
            )
        if args.json:
            print_json(adapted.predictor)
            return 0
        if adapted.dataset is not None:
            print(f"measured in campaign {adapted.dataset.id[:12]}")
        print(describe(adapted.predictor))
        return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    a = add_user_flags(
        sub.add_parser(
            "adapt",
            help="a transfer predictor for a device from a few measurements and other devices'",
        )
    )
    a.add_argument("--device", required=True, help="the device's id or name")
    a.add_argument("--space", required=True, help=", ".join(SPACES))
    a.add_argument("--param", action="append", metavar="KEY=INT", help="space parameter")
    a.add_argument(
        "--samples", type=int, default=20, help="archs to measure on the device (default 20)"
    )
    add_sources_flag(a)
    a.add_argument("--seed", type=int, default=0, help="seed of the arch choice")
    a.add_argument(
        "--form",
        choices=[f.value for f in GraphForm],
        help="the device's graph form (default: its data's; pruned for a new device)",
    )
    add_runtime_flags(a)
    a.add_argument(
        "--wait",
        action="store_true",
        help="measure the archs (a campaign, with a progress bar), fit and register; "
        "without it, print the archs it would measure",
    )
    add_json_flag(a)
    add_timeout_flag(a, 7 * 24 * 3600)
    a.set_defaults(func=cmd_adapt)
