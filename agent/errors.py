"""The agent's exception family.

::

    AgentError (LatlabError)
    ├── RegistrationError   the agent cannot register or its saved token is refused
    ├── RunnerError         the model could not be run or timed; reported as a failed job
    │   └── RunnerUnavailable   the runtime or provider is not installed on this device
    └── Interrupted         a stop was requested (or the lease was lost) mid-measurement
"""

from __future__ import annotations

from latlab.errors import LatlabError

__all__ = ["AgentError", "Interrupted", "RegistrationError", "RunnerError", "RunnerUnavailable"]


class AgentError(LatlabError):
    """Base of the agent's errors."""


class RegistrationError(AgentError):
    pass


class RunnerError(AgentError):
    """The runtime could not load or run the model; the message is the runtime's own."""


class RunnerUnavailable(RunnerError):
    pass


class Interrupted(AgentError):
    pass
