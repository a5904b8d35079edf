"""Who is calling /v1: the API key of a request, the user it stands for, and that user's view of the app.

With API keys configured (``api-keys.yaml``, ``--api-key``) every /v1 request must carry one, as
``Authorization: Bearer <key>`` (OpenAI's clients) or ``x-api-key: <key>`` (Anthropic's); the key's
user is who the request is attributed to (queue, stats, limits, admin rights). Without keys and
without log-in the API is open as before and requests belong to nobody (no limits, every route
allowed). Without keys but with log-in, a caller is a guest (:data:`~webui.accounts.users.NOBODY`):
they may use the loaded models, but the admin's routes (loading, unloading) need an admin's key -
log-in must not leave a side door through /v1 open to everyone who can reach the server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fastapi import Request

from webui.accounts.keys import load_api_keys
from webui.accounts.users import NOBODY, User
from webui.errors import PermissionDeniedError, UnauthorizedError
from webui.services import Services


def key_of(request: Request) -> str | None:
    """The API key a request carries: ``x-api-key``, else the Bearer token of ``Authorization``."""
    given = request.headers.get("x-api-key")
    if given:
        return given
    header = request.headers.get("authorization", "")
    if header[:7].lower() != "bearer ":
        return None
    return header[7:].strip() or None


def current_user(services: Services) -> Callable[[Request], User | None]:
    """A route dependency: the user of the request's API key; when the server has no keys, None, or
    the guest :data:`NOBODY` when log-in is on.

    Raises :class:`UnauthorizedError` (401) when keys are configured and the request has none of them.
    Use one dependency object per router, so FastAPI works it out once per request.
    """

    # Services made without build() have no keys file read: only the --api-key flag can be set (once, here)
    keys = services.api_keys or load_api_keys(None, services.accounts, services.settings.api_key)

    def caller(request: Request) -> User | None:
        if not keys.required:
            return NOBODY if services.accounts is not None else None
        user = keys.user_for(key_of(request))
        if user is None:
            raise UnauthorizedError()
        return user

    return caller


def view_for(services: Services, user: User | None) -> Services:
    """``user``'s view of the app (their presets, characters and templates, their role); the server's
    own for no user."""
    return services.space(user)


def is_admin(user: User | None) -> bool:
    """Whether ``user`` may see everyone's requests and the queue by name (no keys: everyone may)."""
    return user is None or user.is_admin


@contextmanager
def admin_route(user: User | None) -> Iterator[None]:
    """Around an admin's route: a guest's refusal also says how to become the admin on /v1."""
    try:
        yield
    except PermissionDeniedError as exc:
        if user is NOBODY:
            exc.add_sentence(
                "Log-in is on and this server has no API keys, so /v1 callers without a key are guests: "
                "give the admin an API key (api-keys.yaml in the user-data folder, or --api-key) and send it.",
                "error.api_guest",
            )
        raise
