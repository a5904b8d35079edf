"""A cap on request bodies for the whole server (UI, uploads and /v1), as ASGI middleware.

One mechanism at the edge instead of a size check in each route: a body whose
``Content-Length`` is over the limit is answered with 413 before a byte of it is
read; a body without one (chunked) is counted as it arrives and cut off at the
limit, so a hostile client can never make the server buffer more than the limit.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from webui.errors import RequestTooLargeError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Routes that take file uploads (Gradio's), which get the larger upload limit.
UPLOAD_SUFFIXES = ("/gradio_api/upload",)


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, upload_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes

    def limit_for(self, path: str) -> int:
        return self.upload_bytes if path.rstrip("/").endswith(UPLOAD_SUFFIXES) else self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = next((v for k, v in scope.get("headers", ()) if k.lower() == b"content-length"), None)
        if declared is not None:
            if not declared.strip().isdigit():
                await _reply(send, 400, "invalid_request", "The Content-Length header is not a number.")
                return
            if int(declared) > limit:
                await _too_large(send, limit)
                return
        received = 0
        too_big = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, too_big
            if too_big:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_big = True  # the app sees the client go away; the client gets 413
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_big and not started:
                return  # the app's own answer to a cut-off body is replaced by the 413 below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not too_big:
                raise
        if too_big and not started:
            await _too_large(send, limit)


async def _too_large(send: Send, limit: int) -> None:
    err = RequestTooLargeError(limit)
    await _reply(send, err.status_code, err.code, err.message)


async def _reply(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
