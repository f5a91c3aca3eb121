"""Bounds on untrusted input, applied wherever the server reads what a user sent: how deep a
JSON document or a decoded structure may nest, that no text holds a NUL character and no
integer leaves the range every reader keeps exactly, and how much of a rejected value an error
message may quote.

Nothing here recurses: a document nested 100,000 deep is measured by deleting innermost
bracket pairs (C-speed byte replacements, at most ``MAX_DEPTH`` passes) before any parser sees
it, and a decoded value is walked with an explicit stack.
"""

from __future__ import annotations

import json
import re
import reprlib
from typing import Any

from latlab.errors import InputRejected

__all__ = [
    "INT32_MAX",
    "JSON_INT_MAX",
    "MAX_DEPTH",
    "MAX_EXCERPT_CHARS",
    "check_json_depth",
    "check_value",
    "excerpt",
    "loads",
    "loads_field",
]

#: How deep a JSON document or decoded value may nest (objects and arrays). latlab's own
#: bodies and files nest at most 6 deep; a LatBench file 3.
MAX_DEPTH = 64
#: Integers in input are within ±2^53: every JSON reader keeps them exactly, and a column's
#: own bound is the field's (``le=``) in the schema.
JSON_INT_MAX = 2**53
#: The largest integer a 32-bit column holds (PostgreSQL ``INTEGER``): a field stored in one
#: says ``le=INT32_MAX``.
INT32_MAX = 2**31 - 1
#: The longest excerpt of a rejected value an error message quotes.
MAX_EXCERPT_CHARS = 80

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = MAX_EXCERPT_CHARS
_REPR.maxother = MAX_EXCERPT_CHARS
_REPR.maxlong = 40
for _attr in ("maxtuple", "maxlist", "maxarray", "maxdict", "maxset", "maxfrozenset", "maxdeque"):
    setattr(_REPR, _attr, 6)


def excerpt(value: object, limit: int = MAX_EXCERPT_CHARS) -> str:
    """``repr(value)`` cut short, whatever its size or nesting: what an error message quotes of
    a value it rejects (a nested "billion laughs" structure costs as much as its first items)."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_json_depth(data: bytes | str, where: str = "body") -> None:
    """``InputRejected`` when the JSON text nests deeper than ``MAX_DEPTH``: string literals are
    blanked, everything but brackets dropped, and innermost pairs deleted once per level."""
    raw = data.encode() if isinstance(data, str) else data
    brackets = _JSON_STRING.sub(b'""', raw).translate(None, _NOT_BRACKETS)
    for _ in range(MAX_DEPTH):
        if not brackets:
            return
        shorter = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if shorter == brackets:
            return  # unbalanced: the parser says where
        brackets = shorter
    if brackets.replace(b"[]", b"").replace(b"{}", b"") != brackets:
        raise InputRejected(f"{where}: nested deeper than {MAX_DEPTH} levels")


def loads(data: bytes | str, where: str = "body") -> Any:
    """``json.loads`` for untrusted text: depth checked first; a document that is not JSON (or
    holds an integer too long to convert) raises ``ValueError`` as ``json.loads`` does."""
    check_json_depth(data, where)
    return json.loads(data)


def loads_field(text: str, where: str) -> Any:
    """A form field (or any text) holding JSON: parsed with ``loads`` and checked with
    ``check_value``; ``InputRejected`` names the field when it is not JSON or past a bound."""
    try:
        value = loads(text, where)
    except InputRejected:
        raise
    except ValueError as exc:
        raise InputRejected(f"{where} is not JSON: {exc}") from exc
    check_value(value, where)
    return value


def check_value(value: Any, where: str = "body") -> None:
    """``InputRejected`` when a decoded value (what a JSON body or form field became) nests deeper
    than ``MAX_DEPTH``, holds a NUL character in any text (keys too: no database stores one;
    PostgreSQL refuses it in text and JSON), or an integer outside ±``JSON_INT_MAX``."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, at, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise InputRejected(f"{at}: text may not contain NUL characters")
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not -JSON_INT_MAX <= item <= JSON_INT_MAX:
                raise InputRejected(f"{at}: integers are bounded by ±2^53, got {excerpt(item)}")
        elif isinstance(item, dict | list | tuple):
            if depth >= MAX_DEPTH:
                raise InputRejected(f"{where}: nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    stack.append((key, at, depth + 1))
                    stack.append((child, f"{at}.{str(key)[:40]}", depth + 1))
            else:
                stack.extend((child, at, depth + 1) for child in item)
