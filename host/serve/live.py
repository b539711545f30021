"""A live server in this process: uvicorn on a free local port, in a background thread.

For the tests and the benchmarks, which talk to it over real HTTP with the ``openai``
client while they can still read the scheduler's counters.
"""

from __future__ import annotations

import threading
import time

__all__ = ["LiveServer"]


class LiveServer:
    """``with LiveServer(app) as server:`` serves ``app`` at ``server.base_url`` (``.../v1``)."""

    def __init__(self, app, startup_timeout_s: float = 30.0):
        import uvicorn

        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, name="systole-serve", daemon=True)
        self.startup_timeout_s = startup_timeout_s
        self.base_url = ""

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
