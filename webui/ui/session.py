"""Whose page is this: the services as the logged-in user of the page being answered sees them.

Every tab is built with :func:`page_services` instead of the server-wide services. Its attributes are
looked up on each use in the user's own view (``Services.space``): their chats, notebook, settings and
library copies, and the shared model and queue. The user is the one Gradio's log-in put on the request
of the event being answered (Gradio keeps that request in a context variable while a handler runs),
so no handler can reach another user's data by forgetting to pass the user along; the Gradio API
(``/gradio_api``) runs the same handlers and gets the same view.

Without log-in every view is the server-wide services, exactly as before accounts existed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

from gradio.context import LocalContext

from webui.accounts.users import NOBODY, User
from webui.services import Services

# A page is built with NOBODY's view before any request (the page's first values, sent to every user):
# nobody's data; each user's own values arrive with the page's load events.


def request_user(services: Services) -> User | None:
    """The logged-in user of the event being answered (None: no log-in, or no event)."""
    accounts = services.accounts
    if accounts is None:
        return None
    request = LocalContext.request.get(None)
    name = getattr(request, "username", None) if request is not None else None
    return accounts.find(name) if name else None


def current(services: Services) -> Services:
    """The view of the user of the event being answered; with log-in and no such user, nobody's."""
    if services.accounts is None:
        return services
    return services.space(request_user(services) or NOBODY)


class _PageServices:
    def __init__(self, services: Services) -> None:
        self._services = services

    def __getattr__(self, name: str) -> Any:
        return getattr(current(self._services), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_services":
            object.__setattr__(self, name, value)
        else:
            setattr(current(self._services), name, value)


def page_services(services: Services) -> Services:
    """The services the tabs are built with (typed as the services: it answers every attribute)."""
    if services.accounts is None:
        return services
    return cast(Services, _PageServices(services))


def keep_request(steps: Iterator[Any]) -> Iterator[Any]:
    """Run a streaming handler's ``steps`` with the request it started with, to the very end.

    Gradio sets the request around each step it asks for, but closes a stream whose page went away
    (reload, closed tab) from its event loop, with no request: the handler's ``finally`` (which saves
    the text written so far) would then save it in nobody's folder instead of the user's.
    """
    request = LocalContext.request.get(None)
    try:
        # not ``yield from``: that would close ``steps`` before the ``finally`` below sets the request
        for value in steps:  # noqa: UP028
            yield value
    finally:
        token = LocalContext.request.set(request)
        try:
            close: Callable[[], None] = getattr(steps, "close", lambda: None)
            close()
        finally:
            LocalContext.request.reset(token)
