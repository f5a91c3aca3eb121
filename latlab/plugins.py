"""What the runtime and predictor-kind registries share: objects named ``"module:attribute"``,
the built-in ones first, then those other packages declare in an entry-point group, found
once, on first use (after every module is imported, so a plug-in may import anything of
latlab's)."""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Collection, Sequence
from importlib.metadata import entry_points
from typing import Generic, TypeVar

__all__ = ["Registry", "load_named"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def load_named(target: str) -> object:
    """The object ``"module:attribute"`` names (``ImportError`` if its module is not there)."""
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


class Registry(Generic[T]):
    """Named objects of one type: ``builtin`` targets, then the entry points of ``group``; a
    plug-in that fails to load, is not a ``T``, or takes a name already used (or ``reserved``)
    is skipped with a warning."""

    def __init__(
        self,
        builtin: Sequence[str],
        group: str,
        is_one: Callable[[object], bool],
        name_of: Callable[[T], str],
        reserved: Collection[str] = (),
    ) -> None:
        self.builtin = builtin
        self.group = group
        self.is_one = is_one
        self.name_of = name_of
        self.reserved = reserved
        self._found: dict[str, T] | None = None
        self._lock = threading.Lock()

    def all(self) -> dict[str, T]:
        """Every registered object by name (built-ins first)."""
        with self._lock:
            if self._found is None:
                self._found = self._discover()
            return dict(self._found)

    def _load(self, target: str) -> T:
        found = load_named(target)
        if not self.is_one(found):
            raise TypeError(f"{target} is not a {self.group} plug-in")
        return found  # type: ignore[return-value]  # is_one checked it

    def _discover(self) -> dict[str, T]:
        found: dict[str, T] = {}
        for target in self.builtin:
            item = self._load(target)
            found[self.name_of(item)] = item
        for point in entry_points(group=self.group):
            try:
                item = self._load(point.value)
            except Exception as exc:  # a broken plug-in must not take latlab down with it
                log.warning("%s plug-in %s not loaded: %s", self.group, point.value, exc)
                continue
            name = self.name_of(item)
            if name in found or name in self.reserved:
                log.warning(
                    "%s plug-in %s ignored: %s is already taken", self.group, point.value, name
                )
                continue
            found[name] = item
        return found
