"""The runtime registry: the built-in runtimes, then every ``latlab.runtimes`` entry point of
the installed packages, read once, on first use.

``RuntimeConfig`` is the wire type of a job's config: any registered runtime's config model,
picked by ``runtime`` (``onnxruntime`` where a body leaves it out).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    ConfigDict,
    GetJsonSchemaHandler,
    SerializeAsAny,
    TypeAdapter,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from latlab.errors import LatlabError
from latlab.plugins import Registry
from latlab.runtimes.spec import FusionRules, Protocol, ProtocolConfig, RuntimeSpec
from latlab.untrusted import excerpt

__all__ = [
    "BUILTIN",
    "DEFAULT_RUNTIME",
    "ENTRY_POINT_GROUP",
    "REGISTRY",
    "AnsweredConfig",
    "RuntimeConfig",
    "UnknownRuntime",
    "UnregisteredConfig",
    "default_config",
    "parse_config",
    "rules_for",
    "runtime_spec",
    "runtimes",
    "stored_config",
]

#: The runtimes latlab ships: ``"module:SPEC"``, one line each.
BUILTIN = (
    "latlab.runtimes.onnxruntime:SPEC",
    "latlab.runtimes.litert:SPEC",
    "latlab.runtimes.benchmark_model:SPEC",
)
#: Other packages add runtimes with an entry point in this group naming a ``RuntimeSpec``.
ENTRY_POINT_GROUP = "latlab.runtimes"
#: The runtime of a config that names none.
DEFAULT_RUNTIME = "onnxruntime"


class UnknownRuntime(LatlabError):
    """No runtime (or fusion rules) of that name is registered; the message names those that
    are."""


REGISTRY: Registry[RuntimeSpec] = Registry(
    BUILTIN,
    ENTRY_POINT_GROUP,
    lambda found: isinstance(found, RuntimeSpec),
    lambda spec: spec.name,
)


def runtimes() -> dict[str, RuntimeSpec]:
    """Every registered runtime by name (built-ins first), read on first use."""
    return REGISTRY.all()


def runtime_spec(name: str) -> RuntimeSpec:
    """The runtime called ``name``; ``UnknownRuntime`` names the known ones."""
    known = runtimes()
    try:
        return known[name]
    except KeyError:
        raise UnknownRuntime(
            f"unknown runtime {excerpt(name)}; known: {', '.join(known)}"
        ) from None


def rules_for(name: str) -> FusionRules:
    """The fusion rules called ``name`` (a stored LUT names the rules it was keyed by)."""
    specs = runtimes().values()
    for spec in specs:
        if spec.fusion is not None and spec.fusion.name == name:
            return spec.fusion
    known = sorted({s.fusion.name for s in specs if s.fusion is not None})
    raise UnknownRuntime(f"no fusion rules {excerpt(name)}; known: {', '.join(known)}")


def _by_runtime(value: Any, handler: ValidatorFunctionWrapHandler) -> ProtocolConfig:
    """Validate a config with the model of the runtime it names."""
    if isinstance(value, ProtocolConfig):
        return value
    if not isinstance(value, dict):
        raise PydanticCustomError("model_type", "a runtime config is a JSON object")
    name = value.get("runtime", DEFAULT_RUNTIME)
    known = runtimes()
    spec = known.get(name) if isinstance(name, str) else None
    if spec is None:
        raise PydanticCustomError(
            "unknown_runtime", "runtime: one of {known}", {"known": ", ".join(known)}
        )
    return spec.config.model_validate(value)


class _AnyRuntimeSchema:
    """The JSON schema (OpenAPI) of ``RuntimeConfig``: any registered runtime's config."""

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "anyOf": [handler(s.config.__pydantic_core_schema__) for s in runtimes().values()],
            "description": "A runtime's config: the protocol's settings and the runtime's "
            f"own, picked by runtime (default {DEFAULT_RUNTIME}).",
        }


if TYPE_CHECKING:
    RuntimeConfig = ProtocolConfig
else:
    #: A job's config on the wire: validated by the model of the runtime it names (looked up
    #: when a body is validated, so plug-ins need not be known when this module loads) and
    #: serialised with every field of that model.
    RuntimeConfig = Annotated[
        SerializeAsAny[ProtocolConfig], WrapValidator(_by_runtime), _AnyRuntimeSchema()
    ]


def _as_stored(value: Any, handler: ValidatorFunctionWrapHandler) -> ProtocolConfig:
    if isinstance(value, ProtocolConfig):
        return value
    if not isinstance(value, dict):
        raise PydanticCustomError("model_type", "a runtime config is a JSON object")
    return stored_config(value)


if TYPE_CHECKING:
    AnsweredConfig = ProtocolConfig
else:
    #: A config in an answer (a job, a claim, a measurement, a dataset, a LUT): read leniently,
    #: so an SDK or agent without a server's plug-in still reads it (as ``UnregisteredConfig``).
    AnsweredConfig = Annotated[
        SerializeAsAny[ProtocolConfig], WrapValidator(_as_stored), _AnyRuntimeSchema()
    ]

_ADAPTER: TypeAdapter[ProtocolConfig] = TypeAdapter(RuntimeConfig)


def parse_config(data: Any) -> ProtocolConfig:
    """A runtime config from its JSON form (``runtime`` picks the model; default
    onnxruntime); pydantic's ``ValidationError`` if it is not one."""
    return _ADAPTER.validate_python(data)


def stored_config(data: dict[str, Any]) -> ProtocolConfig:
    """A config read back from the database: fields its runtime no longer has (a config
    stored before the runtimes had configs of their own carried every runtime's) are left
    out, so old rows read as what they meant."""
    name = str(data.get("runtime", DEFAULT_RUNTIME))
    if "protocol" not in data:  # stored before the adaptive protocol: timed with the fixed one
        data = {**data, "protocol": Protocol.fixed.value}
    spec = runtimes().get(name)
    if spec is None:  # its plug-in is not installed here (any more)
        return UnregisteredConfig.model_validate(data)
    known = spec.config.model_fields
    return spec.config.model_validate({k: v for k, v in data.items() if k in known})


class UnregisteredConfig(ProtocolConfig):
    """A stored config of a runtime this install does not know (a plug-in since removed): the
    shared settings, and the runtime's own kept as they were. No device matches its provider,
    so its pending jobs wait until the plug-in is back."""

    model_config = ConfigDict(extra="allow")

    @property
    def provider(self) -> str:
        return "unknown"


def default_config() -> ProtocolConfig:
    """The default config: onnxruntime on the CPU, the default protocol."""
    return runtime_spec(DEFAULT_RUNTIME).config(runtime=DEFAULT_RUNTIME)
