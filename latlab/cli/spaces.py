"""``latlab space``: a search space's size and encodings, one architecture as a model file."""

from __future__ import annotations

import argparse
from pathlib import Path

from latlab.cli.common import UsageError
from latlab.spaces import SPACES

__all__ = ["add_parsers"]

FORMATS = ("onnx", "tflite")


def cmd_space_info(args: argparse.Namespace) -> int:
    from latlab.opkey import graph_cost
    from latlab.spaces import get_space

    space = get_space(args.space)
    example = space.example()
    cost = graph_cost(space.graph(example))
    print(f"{space.name}: {space.description}")
    print(f"size      {space.size:,} architectures (index 0..{space.size - 1})")
    print(f"example   index {example.index}")
    print(f"          string {space.encode(example)}")
    if hasattr(example, "vector"):
        print(f"          vector {','.join(str(v) for v in example.vector)}")
    print(f"          {cost.macs / 1e6:.2f} M MACs, {cost.params / 1e6:.3f} M params")
    return 0


def cmd_space_export(args: argparse.Namespace) -> int:
    from latlab.spaces import GraphForm, get_space

    space = get_space(args.space)
    arch = space.parse(args.arch)
    graph = space.graph(arch, GraphForm(args.form))
    fmt = _format(args.format, Path(args.output))
    if fmt == "onnx":
        from latlab.export.onnx import to_onnx

        data = to_onnx(graph, seed=args.seed).SerializeToString()
    else:
        from latlab.export.tflite import to_tflite

        data = to_tflite(graph, seed=args.seed)
    Path(args.output).write_bytes(data)
    print(
        f"{args.output}  {space.name} index {arch.index}  {len(graph.nodes)} nodes  {len(data):,} bytes"
    )
    return 0


def _format(given: str | None, output: Path) -> str:
    """The format asked for, or the one the output's suffix names; a mismatch is an error."""
    suffix = output.suffix.lower().lstrip(".")
    named = suffix if suffix in FORMATS else None
    if given is not None and named is not None and given != named:
        raise UsageError(f"--format {given} but the output {output.name} ends in .{suffix}")
    if given is None and named is None:
        raise UsageError(
            f"give --format onnx|tflite, or an output ending in .onnx or .tflite (not {output.name})"
        )
    return given or str(named)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser("space", help="search spaces").add_subparsers(
        dest="space_cmd", required=True
    )
    si = sp.add_parser("info", help="size, encodings and an example")
    si.add_argument("space", help="search space name (" + ", ".join(SPACES) + ")")
    si.set_defaults(func=cmd_space_info)
    se = sp.add_parser("export", help="one architecture as a model file")
    se.add_argument("space")
    se.add_argument("arch", help="index, arch string or vector")
    se.add_argument(
        "--format", choices=FORMATS, help="default: the output's suffix (.onnx or .tflite)"
    )
    se.add_argument(
        "--form",
        choices=["pruned", "eager"],
        default="pruned",
        help="pruned: dead ops left out; eager: every op computed (NAS-Bench-201's PyTorch cells)",
    )
    se.add_argument("-o", "--output", required=True)
    se.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    se.set_defaults(func=cmd_space_export)
