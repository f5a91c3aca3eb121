"""What the TFLite runtimes share: the delegate settings and how the TFLite converter fuses."""

from __future__ import annotations

from latlab.runtimes.spec import FusionRules, ProtocolConfig

__all__ = ["TFLITE", "TfliteConfig"]


class TfliteConfig(ProtocolConfig):
    #: The default XNNPACK delegate on (True) or the builtin kernels alone.
    xnnpack: bool = True
    #: The GPU delegate (``benchmark_model --use_gpu``).
    use_gpu: bool = False

    @property
    def provider(self) -> str:
        if self.use_gpu:
            return "GPU"
        return "XNNPACK" if self.xnnpack else "builtin"


#: The TFLite converter: BN folded, activations fused into the op before them (conv, add).
TFLITE = FusionRules(
    name="tflite",
    chains=(
        ("Conv", "BatchNormalization", "Relu"),
        ("Conv", "BatchNormalization", "Clip"),
        ("Conv", "BatchNormalization"),
        ("Conv", "Relu"),
        ("Conv", "Clip"),
        ("Add", "Relu"),
        ("Add", "Clip"),
        ("Gemm", "Relu"),
    ),
)
