"""The web UI's log-in with accounts: passwords checked against the users file (hashed or, with a
warning at start, plain), failed attempts limited per user and per address, log-ins in the audit log.

Gradio's ``/login`` route calls the check with the name and password only; :class:`LoginAddress` (an
ASGI middleware) puts the client's address where the check finds it, and answers 429 at once to an
address that is locked out.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from fastapi import HTTPException

from webui.accounts.ratelimit import LoginLimiter
from webui.services import Services

_address: contextvars.ContextVar[str] = contextvars.ContextVar("login_address", default="unknown")


def _is_login(scope: dict[str, Any]) -> bool:
    return scope.get("type") == "http" and scope.get("method") == "POST" and scope.get("path", "").endswith("/login")


class LoginAddress:
    """ASGI middleware: the client address of a log-in request, for the check; 429 for a locked-out one."""

    def __init__(self, app: Any, limiter: LoginLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not _is_login(scope):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client[0] if client else "unknown"
        wait = self.limiter.retry_after("", address)
        if wait > 0:
            await _too_many(send, wait)
            return
        token = _address.set(address)
        try:
            await self.app(scope, receive, send)
        finally:
            _address.reset(token)


async def _too_many(send: Any, wait: float) -> None:
    body = f'{{"detail": "{locked_message(wait)}"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"retry-after", str(math.ceil(wait)).encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def locked_message(wait: float) -> str:
    return f"Too many failed log-ins: try again in {math.ceil(wait)} seconds."


def login_check(services: Services, limiter: LoginLimiter) -> Callable[[str, str], Awaitable[bool]]:
    """Gradio's ``auth`` callable: True for a right password of a known user, unless locked out."""
    accounts = services.accounts
    assert accounts is not None

    def audit(username: str, action: str, address: str) -> None:
        if services.audit is not None:
            try:
                services.audit.record(username, action, address=address)
            except OSError:  # a full disk must not lock everyone out
                pass

    async def check(username: str, password: str) -> bool:
        address = _address.get()
        wait = limiter.retry_after(username, address)
        if wait > 0:
            audit(username, "log-in refused (locked out)", address)
            raise HTTPException(
                status_code=429, detail=locked_message(wait), headers={"Retry-After": str(math.ceil(wait))}
            )
        # argon2 is slow on purpose (tens of milliseconds): not on the event loop
        user = await anyio.to_thread.run_sync(accounts.check_password, username, password)
        if user is None:
            limiter.failed(username, address)
            audit(username, "log-in failed", address)
            return False
        limiter.succeeded(username, address)
        audit(user.name, "log-in", address)
        return True

    return check
