"""What the runtime and predictor-kind registries share: objects named ``"module:attribute"``,
the built-in ones first, then those other packages declare in an entry-point group."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Collection, Sequence
from importlib.metadata import entry_points
from typing import TypeVar

__all__ = ["discover", "load_named"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def load_named(target: str, check: Callable[[object], bool], what: str) -> object:
    """The object ``"module:attribute"`` names; ``TypeError`` unless ``check`` accepts it."""
    module_name, _, attribute = target.partition(":")
    found = getattr(importlib.import_module(module_name), attribute)
    if not check(found):
        raise TypeError(f"{target} is not a {what}")
    return found


def discover(
    builtin: Sequence[str],
    group: str,
    load: Callable[[str], T],
    name_of: Callable[[T], str],
    reserved: Collection[str] = (),
) -> dict[str, T]:
    """The built-ins by name, then every entry point of ``group``; a plug-in that fails to load
    or takes a name already used (or ``reserved``) is skipped with a warning."""
    found: dict[str, T] = {}
    for target in builtin:
        item = load(target)
        found[name_of(item)] = item
    for point in entry_points(group=group):
        try:
            item = load(point.value)
        except Exception as exc:  # a broken plug-in must not take latlab down with it
            log.warning("%s plug-in %s not loaded: %s", group, point.value, exc)
            continue
        name = name_of(item)
        if name in found or name in reserved:
            log.warning("%s plug-in %s ignored: %s is already taken", group, point.value, name)
            continue
        found[name] = item
    return found
