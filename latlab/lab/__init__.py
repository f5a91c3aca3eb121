"""The composition root: the one place where the role packages (``server``, ``agent``,
``predictors``) are put together — the verbs that run a role (``latlab server``, ``agent``,
``train``, ``quickstart``), the quickstart itself and ``local_lab`` (an embedded server and a
``latlab agent`` process on this machine, used by the quickstart, the example and the benches).

Nothing else in the core imports a role package (the import contracts in pyproject.toml say
so); these modules import them inside the function that needs them, so the core installs and
imports without the server's or the trainer's dependencies.
"""
