"""OpenAI-shaped errors for the API: ``{"error": {"message", "type", "param", "code"}}``.

The one place a typed :class:`~webui.errors.WebUIError` becomes an API error, whether it is
answered as an HTTP error (before a response has started) or sent as the last event of a
stream that has (see ``webui.api.streaming``).
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from webui.errors import QuotaError, WebUIError


def header_text(text: str, limit: int = 500) -> str:
    """``text`` as a response header can carry it: ASCII (other characters escaped), at most ``limit``
    characters (field names come from the client and may be anything)."""
    escaped = text.encode("ascii", "backslashreplace").decode("ascii")
    # Control characters (a NUL, a line break) would end or break the header: escaped too. A value may not
    # start or end with a space either (h11 refuses to send it and drops the connection: found by fuzzing,
    # with a request field named " I¡@"), so those are stripped.
    return "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in escaped)[:limit].strip(" ")


def error_body(
    message: str, type_: str = "invalid_request_error", code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_of(exc: WebUIError) -> dict[str, Any]:
    """The body of ``exc`` in OpenAI's shape (a server error for a 5xx, a request error otherwise)."""
    kind = "server_error" if exc.status_code >= 500 else "invalid_request_error"
    return error_body(exc.message, kind, exc.code)


def error_headers(exc: WebUIError) -> dict[str, str] | None:
    """``Retry-After`` (whole seconds) for a :class:`QuotaError` that knows when to try again, else none.

    The openai and anthropic clients wait that long before they retry a 429 by themselves.
    """
    if isinstance(exc, QuotaError) and exc.retry_after is not None:
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return None


def install_error_handlers(app: FastAPI) -> None:
    """OpenAI-shaped errors for /v1 (the UI's own routes are left alone)."""

    @app.exception_handler(WebUIError)
    async def _webui_error(request: Request, exc: WebUIError) -> JSONResponse:
        return JSONResponse(error_of(exc), status_code=exc.status_code, headers=error_headers(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        """A 404 / 405 under /v1 in OpenAI's shape (clients read ``error.message``); the UI's as before."""
        if not request.url.path.startswith("/v1/"):
            return await http_exception_handler(request, exc)
        if exc.status_code == 404:
            message = f"Unknown API route: {request.method} {request.url.path}. See /docs for the routes."
            body = error_body(message, code="not_found")
        elif exc.status_code == 405:
            body = error_body(f"{request.method} is not allowed on {request.url.path}.", code="method_not_allowed")
        else:
            body = error_body(str(exc.detail), code=str(exc.status_code))
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}" for e in exc.errors())
        return JSONResponse(
            error_body(f"Invalid request: {problems}", code="invalid_value", param=param), status_code=400
        )
