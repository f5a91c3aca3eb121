"""Exporters from OpGraph to runnable model files (ONNX; TFLite)."""
