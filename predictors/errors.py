"""The predictors package's errors.

::

    PredictorError (LatlabError)    a predictor that cannot be trained, read or used
"""

from __future__ import annotations

from latlab.errors import LatlabError

__all__ = ["PredictorError"]


class PredictorError(LatlabError):
    pass
