"""A runtime plug-in, the worked example of DESIGN.md: onnxruntime at graph optimisation
"basic" by default, as a runtime of its own. This module is all of it; a package registers it
with one entry point (``[project.entry-points."latlab.runtimes"]``,
``onnxruntime-basic = "tests.plugins.ort_basic:SPEC"``), and it passes the runner contract suite
(tests/test_runner_contract.py).

Its fusion rules are left out (the CPU rules are onnxruntime's at optimisation "all"), so latlab
refuses to build LUTs from its measurements and says why.
"""

from __future__ import annotations

from typing import Literal

from latlab.agent.runners.ort import OrtRunner
from latlab.runtimes import ModelFormat, RuntimeSpec
from latlab.runtimes.onnxruntime import GraphOptimization, OnnxRuntimeConfig


class OrtBasicConfig(OnnxRuntimeConfig):
    runtime: Literal["onnxruntime-basic"] = "onnxruntime-basic"  # type: ignore[assignment]
    graph_optimization: GraphOptimization = GraphOptimization.basic


class OrtBasicRunner(OrtRunner):
    name = "onnxruntime-basic"
    config_type = OrtBasicConfig


SPEC = RuntimeSpec(
    name="onnxruntime-basic",
    model_format=ModelFormat.onnx,
    config=OrtBasicConfig,
    runner="tests.plugins.ort_basic:OrtBasicRunner",
    summary="onnxruntime at graph optimisation basic (a plug-in example)",
)
