"""Op keys name what changes cost and nothing else."""

from __future__ import annotations

from latlab.graph import GraphBuilder, OpGraph
from latlab.opkey import op_cost, op_key


def conv_graph(
    name: str, *, stride: int = 1, groups: int = 1, c: int = 16, prefix: str = "x"
) -> tuple[OpGraph, str]:
    b = GraphBuilder(name, (1, c, 32, 32))
    pre = b.relu(f"{prefix}.pre", b.input)
    out = b.conv(f"{prefix}.conv", pre, c, 3, stride, groups=groups)
    return b.build(out), f"{prefix}.conv"


def key_of(graph: OpGraph, node_name: str) -> str:
    return op_key(graph, next(n for n in graph.nodes if n.name == node_name))


def test_the_same_conv_at_the_same_shape_in_two_models_has_one_key() -> None:
    g1, n1 = conv_graph("a", prefix="first")
    g2, n2 = conv_graph("b", prefix="second")
    assert key_of(g1, n1) == key_of(g2, n2)
    assert "first" not in key_of(g1, n1)


def test_stride_groups_and_channels_change_the_key() -> None:
    base, n = conv_graph("a")
    keys = {
        key_of(base, n),
        key_of(*conv_graph("s", stride=2)),
        key_of(*conv_graph("g", groups=4)),
        key_of(*conv_graph("c", c=32)),
    }
    assert len(keys) == 4


def test_a_depthwise_conv_costs_what_it_computes() -> None:
    g, n = conv_graph("dw", groups=16)
    node = next(x for x in g.nodes if x.name == n)
    cost = op_cost(g, node)
    assert cost.macs == 32 * 32 * 16 * 9  # one 3x3 filter per channel
    assert cost.params == 16 * 9
    assert cost.bytes_moved == 4 * (2 * 16 * 32 * 32 + 16 * 9)
