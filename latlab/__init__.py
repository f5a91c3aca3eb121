"""latlab: on-device latency measurement service and dataset builder (shared core)."""

__version__ = "0.1.0"
