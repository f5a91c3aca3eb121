"""The LUT package's errors.

::

    LutError (LatlabError)          a table that cannot be built, read or used
    └── MissingEntry                a kernel with no entry and no fallback for its op type
"""

from __future__ import annotations

from latlab.errors import LatlabError

__all__ = ["LutError", "MissingEntry"]


class LutError(LatlabError):
    pass


class MissingEntry(LutError):
    """Never skipped silently: the message names the kernel, its op type and key."""
