"""Run the server inside this process (a uvicorn thread): the quickstart, tests, benchmarks."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from latlab.server.app import create_app
from latlab.server.config import Settings

__all__ = ["EmbeddedServer", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedServer:
    """``with EmbeddedServer(settings) as srv: ... srv.url``: uvicorn on 127.0.0.1, a free port."""

    def __init__(
        self, settings: Settings, host: str = "127.0.0.1", port: int | None = None
    ) -> None:
        self.settings = settings
        self.host = host
        self.port = port or free_port(host)
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app, host=host, port=self.port, log_level="warning", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="latlab-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> EmbeddedServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the embedded server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
