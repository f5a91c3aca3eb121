"""``latlab lut``: build a lookup table for a device, show and export it, predict with it."""

from __future__ import annotations

import argparse

from latlab.cli.common import (
    UsageError,
    add_delete_flags,
    add_json_flag,
    add_runtime_flags,
    add_timeout_flag,
    add_user_flags,
    client_from,
    confirm,
    following,
    full_id,
    full_ids,
    int_params,
    print_json,
    runtime_config,
    say_deleted,
    table,
    write_output,
)
from latlab.cli.predict import add_predict_flags
from latlab.progress import follow_lut
from latlab.schemas import LutCreate, LutFormat, LutOut, LutSource, LutState
from latlab.spaces import SPACES

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
        model_ids = full_ids(client, "model", body.model_ids)
        dataset_id = (
            None if body.dataset_id is None else full_id(client, "dataset", body.dataset_id)
        )
        lut = client.create_lut(
            body.model_copy(update={"model_ids": model_ids, "dataset_id": dataset_id})
        )
        print(_summary(lut), flush=True)
        if not args.wait:
            return 0
        with following("the LUT build", f"latlab lut show {lut.id} --wait"):
            lut = follow_lut(client, lut.id, timeout_s=args.timeout_s)
        print(_summary(lut))
    return 0 if lut.state == LutState.ready else 1


def cmd_show(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        if args.id is None:
            luts = client.luts(device_id=args.device)
            if args.json:
                print_json(luts)
                return 0
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
                for lut in luts
            ]
            columns = ["id", "name", "source", "state", "device", "entries", "within_10pct"]
            print(table(rows, columns))
            return 0
        lut = client.lut(args.id)
        if args.wait and lut.state not in (LutState.ready, LutState.failed):
            with following("the LUT build", f"latlab lut show {lut.id} --wait"):
                lut = follow_lut(client, lut.id, timeout_s=args.timeout_s)
    if args.json:
        print_json(lut)
    else:
        print(_summary(lut))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    fmt = LutFormat(args.format)
    with client_from(args) as client:
        lut = client.lut(args.id)  # a prefix: the file is named by the full id
        text = client.export_lut(lut.id, fmt)
    suffix = "yaml" if fmt == LutFormat.yaml else "json"
    write_output(args.output, text, f"{lut.id}.{suffix}", fmt.value)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    confirm(args, f"LUT {args.id}")
    with client_from(args) as client:
        say_deleted(client.delete_lut(args.id))
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lp = sub.add_parser("lut", help="per-op lookup tables: build, show, export, predict")
    ls = lp.add_subparsers(dest="lut_cmd", required=True)

    b = add_user_flags(ls.add_parser("build", help="build a LUT for a device"))
    b.add_argument("--device", required=True, help="device id or name")
    b.add_argument("--source", choices=[s.value for s in LutSource], default="micro-models")
    b.add_argument(
        "--space", help="micro-models of archs of this space (" + ", ".join(SPACES) + ")"
    )
    b.add_argument("--param", action="append", metavar="KEY=INT", help="space parameter")
    b.add_argument("--n", type=int, help="sample this many archs (default 100)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--archs", nargs="+", help="archs: indices, strings or vectors")
    b.add_argument("--model", nargs="+", help="model ids (micro-models of their kernels)")
    b.add_argument("--dataset", help="measured-ops/calibration: only this dataset's models")
    b.add_argument("--name")
    add_runtime_flags(b)
    b.add_argument("--wait", action="store_true", help="follow it with a progress bar")
    add_timeout_flag(b, 24 * 3600)
    b.set_defaults(func=cmd_build)

    s = add_user_flags(ls.add_parser("show", help="list LUTs, or show one"))
    s.add_argument("id", nargs="?")
    s.add_argument("--device", help="only this device's LUTs (id or name)")
    s.add_argument("--wait", action="store_true", help="follow a LUT that is being built")
    add_timeout_flag(s, 24 * 3600)
    add_json_flag(s)
    s.set_defaults(func=cmd_show)

    e = add_user_flags(ls.add_parser("export", help="a ready LUT as JSON or OFA-style YAML"))
    e.add_argument("id")
    e.add_argument("--format", choices=[f.value for f in LutFormat], default="json")
    e.add_argument("-o", "--output", help="file; - for stdout (default ID.json or ID.yaml)")
    e.set_defaults(func=cmd_export)

    x = add_user_flags(
        ls.add_parser(
            "delete",
            help="delete a LUT",
            description="Delete a LUT: its record and entries, and its micro-model jobs (any "
            "state) with their measurements, unless another LUT shares them. The micro-model "
            "files stay as models.",
        )
    )
    x.add_argument("id", help="LUT id (or a unique prefix)")
    add_delete_flags(x)
    x.set_defaults(func=cmd_delete)

    p = add_user_flags(ls.add_parser("predict", help="latency of archs or models by a LUT"))
    add_predict_flags(p, "lut")
