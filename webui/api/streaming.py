"""A generation job answered over HTTP: streamed as server-sent events, or collected whole.

Either way the job belongs to its client: when the connection closes, the job's cancel
is set and the generation thread moves on to the next request. A stream learns it from
sse-starlette (which listens for the disconnect while it sends); a plain response sends
nothing until the job has ended, so :func:`cancel_on_disconnect` listens for it instead.
The job's iteration is blocking (a queue the generation thread fills), so it runs in the
threadpool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request

from webui.generation.scheduler import GenerationJob
from webui.loaders import Chunk

#: Pause after a message that is not a disconnect (a server with nothing more to say must not make us spin).
_LISTEN_PAUSE = 0.1


@contextlib.asynccontextmanager
async def cancel_on_disconnect(request: Request, cancel: threading.Event) -> AsyncIterator[None]:
    """Set ``cancel`` if the client closes the connection while the block runs."""

    async def listen() -> None:
        # The body has been read: what is left to receive is the disconnect (the ASGI server
        # answers it at once when the connection is gone, and waits for it until then).
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                cancel.set()
                return
            await asyncio.sleep(_LISTEN_PAUSE)

    listener = asyncio.create_task(listen())
    try:
        yield
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def collect(request: Request, job: GenerationJob) -> str:
    """The whole text of ``job``; the job is cancelled if its client goes away meanwhile."""
    async with cancel_on_disconnect(request, job.cancel):
        try:
            return await run_in_threadpool(job.result)
        finally:
            if not job.finished:
                job.cancel.set()


async def collect_with(request: Request, job: GenerationJob, on_chunk: Callable[[Chunk], Any]) -> None:
    """Run ``job`` to its end, handing each chunk to ``on_chunk`` (in the threadpool); as :func:`collect`."""

    def run() -> None:
        for chunk in job:
            on_chunk(chunk)

    async with cancel_on_disconnect(request, job.cancel):
        try:
            await run_in_threadpool(run)
        finally:
            if not job.finished:
                job.cancel.set()


async def first_chunk(request: Request, job: GenerationJob) -> tuple[Iterator[Chunk], Chunk | None]:
    """Start ``job`` and wait for its first chunk (None: it ended without one), before answering.

    So an error of the job's preparation (no model, a prompt too long) is a proper HTTP
    error, not an event inside a 200 stream. A client that leaves while the job waits in
    the queue cancels it there.
    """
    chunks = iter(job)
    async with cancel_on_disconnect(request, job.cancel):
        try:
            first = await run_in_threadpool(next, chunks, None)
        except BaseException:
            job.cancel.set()
            raise
    return chunks, first


async def rest_of(job: GenerationJob, chunks: Iterator[Chunk]) -> AsyncIterator[Chunk]:
    """The chunks after the first, from the threadpool; stops the job if the stream is abandoned."""
    try:
        async for chunk in iterate_in_threadpool(chunks):
            yield chunk
    finally:
        if not job.finished:
            job.cancel.set()


def event_stream(
    job: GenerationJob,
    events: AsyncIterator[str],
    release: Callable[[], Any],
    headers: dict[str, str] | None = None,
    jobs: tuple[GenerationJob, ...] = (),
) -> EventSourceResponse:
    """``events`` (each one ``data:`` payload) as an SSE response that cancels ``job`` if the client goes.

    ``release`` runs once the response is over, however it ended (its job's cancel is forgotten).
    """

    async def client_gone(message: Any) -> None:
        for each in (job, *jobs):
            each.cancel.set()  # at once, not when the generation thread next hands over a chunk

    # "\n" line ends, as OpenAI's own server sends: some hand-written clients split events on "\n\n".
    return EventSourceResponse(
        events,
        sep="\n",
        client_close_handler_callable=client_gone,
        background=BackgroundTask(release),
        headers=headers,
    )
