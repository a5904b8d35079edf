"""An ASGI app served by a real uvicorn on a free loopback port, in a thread of the test process.

For tests that need a real HTTP server (real sockets, real disconnects, the real ``openai``
client) around an app built in the test: this app over a scripted backend, or a small
misbehaving OpenAI-compatible peer for the remote loader.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from server_process import free_port


@contextmanager
def serve(app: Any, timeout: float = 30) -> Iterator[str]:
    """Serve ``app`` for the block's duration; yields its base URL (``http://127.0.0.1:PORT``)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=5
        )
    )
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
