"""``latlab lut``: build a lookup table for a device, show and export it, predict with it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from latlab.cli.common import (
    UsageError,
    add_runtime_flags,
    add_user_flags,
    client_from,
    int_params,
    runtime_config,
    table,
)
from latlab.cli.predict import add_predict_flags
from latlab.progress import follow_lut
from latlab.schemas import LutCreate, LutFormat, LutOut, LutSource, LutState

__all__ = ["add_parsers"]


def _summary(lut: LutOut) -> str:
    cal = lut.calibration
    fit = (
        f"  calibration: x{cal.scale:.3f}, {cal.per_kernel_us:+.3f} us/kernel, {cal.constant_ms:+.4f} ms, "
        f"{cal.n_models} models, {100 * (cal.within_10pct or 0):.0f}% within 10%"
        if cal and cal.n_models
        else ""
    )
    return (
        f"{lut.id}  {lut.name}  {lut.source.value} {lut.state.value}  device={lut.device_id}  "
        f"entries={lut.entries} kernels={lut.progress.kernels}{fit}"
        + (f"\nerror: {lut.error}" if lut.error else "")
    )


def cmd_build(args: argparse.Namespace) -> int:
    if args.source == LutSource.micro_models.value and args.space is None and not args.model:
        raise UsageError("micro-models need --space (with --n or --archs) or --model IDs")
    body = LutCreate(
        name=args.name,
        device_id=args.device,
        source=LutSource(args.source),
        config=runtime_config(args),
        space=args.space,
        space_params=int_params(args.param),
        archs=args.archs,
        n=args.n,
        seed=args.seed,
        model_ids=args.model,
        dataset_id=args.dataset,
    )
    with client_from(args) as client:
        lut = client.create_lut(body)
        print(_summary(lut), flush=True)
        if not args.wait:
            return 0
        lut = follow_lut(client, lut.id, timeout_s=args.timeout)
        print(_summary(lut))
    return 0 if lut.state == LutState.ready else 1


def cmd_show(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        if args.id is None:
            rows = [
                {
                    "id": lut.id,
                    "name": lut.name[:30],
                    "source": lut.source.value,
                    "state": lut.state.value,
                    "device": lut.device_id[:12],
                    "entries": lut.entries,
                    "within_10pct": "-"
                    if lut.calibration is None or lut.calibration.within_10pct is None
                    else f"{100 * lut.calibration.within_10pct:.0f}%",
                }
                for lut in client.luts(device_id=args.device)
            ]
            columns = ["id", "name", "source", "state", "device", "entries", "within_10pct"]
            print(table(rows, columns))
            return 0
        print(_summary(client.lut(args.id)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    fmt = LutFormat(args.format)
    with client_from(args) as client:
        text = client.export_lut(args.id, fmt)
    if args.output is None:
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"{args.output}  {fmt.value}  {len(text):,} bytes")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lp = sub.add_parser("lut", help="per-op lookup tables: build, show, export, predict")
    ls = lp.add_subparsers(dest="lut_cmd", required=True)

    b = add_user_flags(ls.add_parser("build", help="build a LUT for a device"))
    b.add_argument("--device", required=True, help="device id or name")
    b.add_argument("--source", choices=[s.value for s in LutSource], default="micro-models")
    b.add_argument("--space", help="micro-models of archs of this space (nb201, proxyless)")
    b.add_argument("--param", action="append", metavar="KEY=INT", help="space parameter")
    b.add_argument("--n", type=int, help="sample this many archs (default 100)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--archs", nargs="+", help="archs: indices, strings or vectors")
    b.add_argument("--model", nargs="+", help="model ids (micro-models of their kernels)")
    b.add_argument("--dataset", help="measured-ops/calibration: only this dataset's models")
    b.add_argument("--name")
    add_runtime_flags(b)
    b.add_argument("--wait", action="store_true", help="follow it with a progress bar")
    b.add_argument("--timeout", type=float, default=24 * 3600)
    b.set_defaults(func=cmd_build)

    s = add_user_flags(ls.add_parser("show", help="list LUTs, or show one"))
    s.add_argument("id", nargs="?")
    s.add_argument("--device", help="only this device's LUTs (id or name)")
    s.set_defaults(func=cmd_show)

    e = add_user_flags(ls.add_parser("export", help="a ready LUT as JSON or OFA-style YAML"))
    e.add_argument("id")
    e.add_argument("--format", choices=[f.value for f in LutFormat], default="json")
    e.add_argument("-o", "--output", help="file (default: stdout)")
    e.set_defaults(func=cmd_export)

    p = add_user_flags(ls.add_parser("predict", help="latency of archs or models by a LUT"))
    add_predict_flags(p, "lut")
