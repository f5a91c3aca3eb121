"""The device agent: registers with the server, claims timing jobs, times models with the
measurement protocol on this device's runtimes, and uploads the samples and per-op times.

It depends on the shared core (``latlab``) only; each runtime is imported lazily by its own
runner module (``agent/runners/``).
"""
