"""Models that pass every check at upload and still take a device: one that never finishes (an
ONNX ``Loop`` of 10^15 iterations over one ``Add``), one that takes all the memory there is (a
``Loop`` that doubles a tensor each iteration; its shape is symbolic, so no size is declared
for the upload's tensor check to refuse)."""

from __future__ import annotations

from onnx import TensorProto, helper

#: Iterations of the never-ending model's loop (about 30 years at 1 µs each).
ENDLESS_TRIPS = 10**15
#: Doublings of the memory hog's tensor: 4 KiB · 2^64, far beyond any host.
HOG_DOUBLINGS = 64
OPSET = [helper.make_opsetid("", 17)]


def _loop_model(
    name: str,
    body: list[helper.NodeProto],
    trips: int,
    carried: list[int | str],
    inputs: int,
    constants: list[TensorProto] | None = None,
) -> bytes:
    """``y = Loop(trips, x)`` with ``body`` turning ``v_in`` into ``v_out`` each iteration."""
    loop_body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), *body],
        f"{name}_body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, carried),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, carried),
        ],
        constants or [],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=loop_body)],
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [inputs])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, carried)],
        [
            helper.make_tensor("trips", TensorProto.INT64, [], [trips]),
            helper.make_tensor("cond", TensorProto.BOOL, [], [True]),
        ],
    )
    return helper.make_model(graph, opset_imports=OPSET, ir_version=8).SerializeToString()


def never_ending_onnx(trips: int = ENDLESS_TRIPS) -> bytes:
    """``y = x + trips``, one iteration at a time: a run that never returns."""
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    add = helper.make_node("Add", ["v_in", "one"], ["v_out"])
    return _loop_model("never_ending", [add], trips, [1], 1, [one])


def memory_hog_onnx(doublings: int = HOG_DOUBLINGS) -> bytes:
    """A 1,024-float input concatenated with itself ``doublings`` times."""
    return _loop_model(
        "memory_hog",
        [helper.make_node("Concat", ["v_in", "v_in"], ["v_out"], axis=0)],
        doublings,
        ["n"],
        1024,
    )
