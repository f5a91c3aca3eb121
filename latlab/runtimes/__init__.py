"""Runtimes as plug-ins: each runtime one module with a ``RuntimeSpec`` (format, config model,
provider matching, fusion rules, runner), collected by the registry.

    from latlab.runtimes import parse_config, runtime_spec
    config = parse_config({"runtime": "litert", "xnnpack": False})
    runtime_spec(config.runtime).model_format   # ModelFormat.tflite
"""

from latlab.runtimes.registry import (
    DEFAULT_RUNTIME,
    ENTRY_POINT_GROUP,
    AnsweredConfig,
    RuntimeConfig,
    UnknownRuntime,
    UnregisteredConfig,
    default_config,
    parse_config,
    rules_for,
    runtime_spec,
    runtimes,
    stored_config,
)
from latlab.runtimes.spec import (
    MAX_DEADLINE_S,
    FusionRules,
    ModelFormat,
    Protocol,
    ProtocolConfig,
    RuntimeSpec,
    default_deadline_s,
)

__all__ = [
    "DEFAULT_RUNTIME",
    "ENTRY_POINT_GROUP",
    "MAX_DEADLINE_S",
    "AnsweredConfig",
    "FusionRules",
    "ModelFormat",
    "Protocol",
    "ProtocolConfig",
    "RuntimeConfig",
    "RuntimeSpec",
    "UnknownRuntime",
    "UnregisteredConfig",
    "default_config",
    "default_deadline_s",
    "parse_config",
    "rules_for",
    "runtime_spec",
    "runtimes",
    "stored_config",
]
