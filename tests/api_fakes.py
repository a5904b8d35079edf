"""Scripted backends for the /v1 streaming tests, and the /v1 API alone as an ASGI app.

``FailingBackend`` fails after three tokens (a crashed worker, out of memory);
``SlowBackend`` takes 10 ms a token, so a client can leave in the middle of a request.
Both are ``FakeBackend`` underneath: register them in the ``LoaderRegistry`` the test builds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import ClassVar

from fastapi import FastAPI

from fakes import FakeBackend
from webui.api import create_api, install_error_handlers
from webui.errors import GenerationError
from webui.loaders.base import Chunk, StreamExtras
from webui.params import SamplingParams
from webui.services import Services

FAILURE = "The backend ran out of memory after 3 tokens."


class FailingBackend(FakeBackend):
    """Three tokens ("0 1 2 "), then the backend fails with :data:`FAILURE`."""

    name: ClassVar[str] = "failing"

    def stream(
        self, prompt: str, params: SamplingParams, cancel: threading.Event, extras: StreamExtras | None = None
    ) -> Iterator[Chunk]:
        for i in range(3):
            yield Chunk(f"{i} ", n_tokens=1)
        raise GenerationError(FAILURE)


class SlowBackend(FakeBackend):
    """A token every 10 ms, so a long request takes seconds (a client can leave during it)."""

    name: ClassVar[str] = "slow"

    def stream(
        self, prompt: str, params: SamplingParams, cancel: threading.Event, extras: StreamExtras | None = None
    ) -> Iterator[Chunk]:
        for chunk in super().stream(prompt, params, cancel):
            time.sleep(0.01)
            yield chunk


def api_only_app(services: Services) -> FastAPI:
    """The /v1 API as webui.app mounts it, without the UI (for tests that need no page)."""
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(create_api(services), prefix="/v1")
    return app
