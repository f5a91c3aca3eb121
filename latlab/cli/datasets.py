"""``latlab dataset``: build a campaign (and follow it with a progress bar), list, export and
import datasets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from latlab.cli.common import (
    TRANSFER_TIMEOUT_S,
    UsageError,
    add_delete_flags,
    add_json_flag,
    add_runtime_flags,
    add_sources_flag,
    add_timeout_flag,
    add_user_flags,
    archs_from,
    client_from,
    confirm,
    figure,
    following,
    int_params,
    kv,
    print_json,
    runtime_config,
    say_deleted,
    sources_from,
    table,
    write_output,
)
from latlab.progress import elapsed, follow_dataset
from latlab.schemas import (
    UNKNOWN_RUNTIME,
    CampaignRound,
    CampaignStrategy,
    DatasetCreate,
    DatasetFormat,
    DatasetOut,
    DatasetState,
)
from latlab.spaces import SPACES, GraphForm

__all__ = ["add_parsers"]


def _summary(d: DatasetOut) -> str:
    p = d.progress
    return (
        f"{d.id}  {d.name}  {d.source.value} {d.state.value}  space={d.space}  "
        f"form={d.form.value if d.form else 'unknown'}  "
        f"archs={p.archs} devices={p.devices} done={p.done} failed={p.failed} pending={p.pending}"
        + (f" unprepared={p.unprepared}" if p.unprepared else "")
        + (f" remeasured={p.remeasured}" if p.remeasured else "")
        + "".join(f"\n  {round_line(r)}" for r in d.rounds)
    )


def round_line(r: CampaignRound) -> str:
    """An active campaign's round: its transfer predictor's cross-validated figures."""
    cv = r.cv
    return (
        f"round {r.round}: {r.measured} archs measured; estimated error (cross-validated) "
        f"{figure(cv.get('mape'), '.1f', 100, ' %')}, within ±10 % "
        f"{figure(cv.get('within_10pct'), '.0f', 100, ' %')}, rho {figure(cv.get('spearman'))}"
    )


def cmd_build(args: argparse.Namespace) -> int:
    archs = archs_from(args.archs, args.archs_file)
    strategy = CampaignStrategy(args.strategy)
    if strategy is CampaignStrategy.active:
        if archs is not None or args.n is not None or args.budget is None:
            raise UsageError("--strategy active takes --budget N (not --n or --archs)")
    elif (archs is None) == (args.n is None):
        raise UsageError("give --n N (a sample) or --archs/--archs-file (a list)")
    elif args.budget is not None or args.round_size is not None or args.sources:
        raise UsageError("--budget, --round-size and --from are for --strategy active")
    selector: dict[str, str | int] | None = None
    if args.selector is not None:
        selector = dict(kv(args.selector, "--selector"))
    if (args.device is None) == (selector is None):
        raise UsageError("give --device ID [ID ...] or --selector KEY=VALUE [...]")
    body = DatasetCreate(
        name=args.name or f"{args.space}-{args.n or args.budget or len(archs or [])}",
        space=args.space,
        space_params=int_params(args.param),
        archs=archs,
        n=args.n,
        seed=args.seed,
        device_ids=args.device,
        selector=selector,
        config=runtime_config(args),
        form=GraphForm(args.form),
        canary_limit_pct=args.canary_limit_pct,
        remeasure_drifted=args.remeasure_drifted,
        strategy=strategy,
        budget=args.budget,
        round_size=args.round_size,
        sources=sources_from(args),
    )
    with client_from(args) as client:
        dataset = client.create_dataset(body)
        print(_summary(dataset), flush=True)
        if not args.wait:
            print(f"follow it with: latlab dataset status {dataset.id} --wait", file=sys.stderr)
            return 0
        with following("the campaign", f"latlab dataset status {dataset.id} --wait"):
            done = follow_dataset(client, dataset.id, timeout_s=args.timeout_s)
        print(_summary(done))
        return 1 if done.progress.failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        if args.id is None:
            datasets = client.datasets()
            if args.json:
                print_json(datasets)
                return 0
            rows = [
                {
                    "id": d.id,
                    "name": d.name[:30],
                    "source": d.source.value,
                    "state": d.state.value,
                    "space": d.space,
                    "archs": d.progress.archs,
                    "devices": d.progress.devices,
                    "done": d.progress.done,
                    "failed": d.progress.failed,
                    "pending": d.progress.pending,
                }
                for d in datasets
            ]
            columns = list(rows[0]) if rows else ["id", "name", "state"]
            print(table(rows, columns))
            return 0
        dataset = client.dataset(args.id)
        if args.wait and dataset.state in (DatasetState.preparing, DatasetState.measuring):
            with following("the campaign", f"latlab dataset status {dataset.id} --wait"):
                dataset = follow_dataset(client, dataset.id, timeout_s=args.timeout_s)
        if args.json:
            print_json(dataset)
            return 0
        print(_summary(dataset))
        if dataset.error:
            print(f"error: {dataset.error}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    fmt = DatasetFormat(args.format)
    suffix = ".csv" if fmt == DatasetFormat.csv else ".zip"
    with client_from(args, timeout_s=TRANSFER_TIMEOUT_S) as client:
        dataset = client.dataset(args.id)  # a prefix: the file is named by the full id
        data = client.export_dataset(dataset.id, fmt)
    write_output(args.output, data, f"{dataset.id}-{fmt.value}{suffix}", fmt.value)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    confirm(args, f"dataset {args.id}")
    with client_from(args) as client:
        say_deleted(client.delete_dataset(args.id))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    params = int_params(args.param)
    size_mb = sum(Path(f).stat().st_size for f in args.files) / 1e6
    what = (
        f"importing {len(args.files)} file{'s' if len(args.files) > 1 else ''} ({size_mb:.1f} MB)"
    )
    with client_from(args) as client, elapsed(what):
        dataset = client.import_dataset(
            args.files,
            args.name or Path(args.files[0]).stem,
            space=args.space,
            space_params=params or None,
            note=args.note,
            form=None if args.form == "unknown" else GraphForm(args.form),
            runtime=args.runtime,
            timeout_s=TRANSFER_TIMEOUT_S,
        )
    print(_summary(dataset))
    devices = (dataset.provenance or {}).get("import_devices") or []
    rows = [
        {
            "device_id": d["id"],
            "name": d["name"],
            "rows": d["rows"],
            "runtime": ",".join(d["runtimes"]),
            "created": "yes" if d["created"] else "no (reused)",
        }
        for d in devices
    ]
    if rows:
        print(table(rows, ["device_id", "name", "rows", "runtime", "created"]))
    if any(UNKNOWN_RUNTIME in d["runtimes"] for d in devices):
        print(
            f"note: rows whose file names no runtime are stored as {UNKNOWN_RUNTIME!r}; "
            "say which with --runtime",
            file=sys.stderr,
        )
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser("dataset", help="latency datasets: build, status, export, import")
    ds = d.add_subparsers(dest="dataset_cmd", required=True)

    b = add_user_flags(ds.add_parser("build", help="measure archs of a space on devices"))
    b.add_argument("--space", required=True, help=", ".join(SPACES))
    b.add_argument("--param", action="append", metavar="KEY=INT", help="space parameter")
    b.add_argument("--n", type=int, help="sample this many archs (with --seed)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--archs", nargs="+", help="archs: indices, strings or vectors")
    b.add_argument("--archs-file", help="a file with one arch per line")
    b.add_argument("--device", action="append", help="a device id or name (repeat for several)")
    b.add_argument("--selector", nargs="*", metavar="KEY=VALUE", help="every matching device")
    b.add_argument("--name", help="dataset name (default SPACE-N)")
    b.add_argument(
        "--form",
        choices=[f.value for f in GraphForm],
        default=GraphForm.pruned.value,
        help="pruned: dead ops left out (deployment toolchains); eager: every op computed, "
        "as NAS-Bench-201's PyTorch code runs it",
    )
    b.add_argument(
        "--canary-limit-pct",
        type=float,
        default=DatasetCreate.model_fields["canary_limit_pct"].default,
        help="a measurement is drifted when the device canary before or after it is this far "
        "(%%) from the campaign's canary median (default %(default)s)",
    )
    b.add_argument(
        "--remeasure-drifted",
        type=int,
        default=DatasetCreate.model_fields["remeasure_drifted"].default,
        help="times a drifted measurement is measured again; 0 keeps it, marked (default "
        "%(default)s)",
    )
    b.add_argument(
        "--strategy",
        choices=[s.value for s in CampaignStrategy],
        default=CampaignStrategy.fixed.value,
        help="fixed: the archs given or sampled; active: --budget archs on one device in "
        "rounds, each covering what the measured ones leave uncovered, with the transfer "
        "predictor's estimated error after each (a lab's first campaign of the space, without "
        "other devices' latencies, starts cold: the archs' own costs)",
    )
    b.add_argument("--budget", type=int, help="active: archs to measure in all")
    b.add_argument("--round-size", type=int, help="active: archs per round (default budget/4)")
    add_sources_flag(b, "active: ")
    add_runtime_flags(b)
    b.add_argument("--wait", action="store_true", help="follow it with a progress bar")
    add_timeout_flag(b, 7 * 24 * 3600)
    b.set_defaults(func=cmd_build)

    s = add_user_flags(ds.add_parser("status", help="list datasets, or show one"))
    s.add_argument("id", nargs="?", help="dataset id (none: list them all)")
    s.add_argument("--wait", action="store_true", help="follow a running campaign")
    add_timeout_flag(s, 7 * 24 * 3600)
    add_json_flag(s)
    s.set_defaults(func=cmd_status)

    e = add_user_flags(ds.add_parser("export", help="download a dataset"))
    e.add_argument("id")
    e.add_argument("--format", choices=[f.value for f in DatasetFormat], default="latbench")
    e.add_argument("-o", "--output", help="file; - for stdout (default ID-FORMAT.zip, or .csv)")
    e.set_defaults(func=cmd_export)

    i = add_user_flags(ds.add_parser("import", help="import published or exported files"))
    i.add_argument("files", nargs="+", type=Path, help=".pickle/.json (LatBench), .csv, .zip")
    i.add_argument("--name", help="dataset name (default: the first file's name)")
    i.add_argument("--space", help="search space (LatBench files: nb201)")
    i.add_argument("--param", action="append", metavar="KEY=INT", help="space parameter")
    i.add_argument("--note", help="where the data comes from: citation, licence")
    i.add_argument(
        "--form",
        choices=[*(f.value for f in GraphForm), "unknown"],
        default="unknown",
        help="the graph form the figures are of, if known (a latlab export says it itself)",
    )
    i.add_argument(
        "--runtime",
        help="what the numbers were measured with, for rows whose file names none "
        f"(default: stored as {UNKNOWN_RUNTIME!r})",
    )
    i.set_defaults(func=cmd_import)

    x = add_user_flags(
        ds.add_parser(
            "delete",
            help="delete a dataset",
            description="Delete a dataset: its record, archs and entries. Pending jobs that "
            "only it needs are cancelled; an import's own measurements go; measured "
            "measurements, models and devices stay (other datasets, LUTs and predictors use "
            "them).",
        )
    )
    x.add_argument("id", help="dataset id (or a unique prefix)")
    add_delete_flags(x)
    x.set_defaults(func=cmd_delete)
