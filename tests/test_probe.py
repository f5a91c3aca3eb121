"""The descriptor an agent reports for its own host: what the machine is, and a Jetson's GPU
from its device tree (Jetsons have no nvidia-smi)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from latlab.agent.probe import jetson_model, probe_descriptor
from latlab.schemas import RuntimeInfo


def test_the_host_descriptor_says_what_this_machine_is() -> None:
    runtime = RuntimeInfo(name="onnxruntime", version="1.0", providers=["CPUExecutionProvider"])
    d = probe_descriptor([runtime], {"rack": "2"})
    assert d.cpu_cores == os.cpu_count() and d.cpu_arch == platform.machine()
    assert d.ram_bytes > 0 and d.cpu_model and d.hostname
    assert d.runtimes == [runtime] and d.labels == {"rack": "2"}
    assert (d.device_model, d.soc, d.serial) == ("", "", "")


def test_a_jetson_is_named_by_its_device_tree(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    assert jetson_model(model) == "NVIDIA Jetson Orin Nano Developer Kit"
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    assert jetson_model(model) is None
    assert jetson_model(tmp_path / "absent") is None
