"""The page's user travels with a streaming handler to its end: a stream Gradio closes when the page goes
away (reload, closed tab) saves what it wrote in its user's folder, not nobody's."""

from __future__ import annotations

import contextvars
from types import SimpleNamespace

from gradio.context import LocalContext

from webui.ui.session import keep_request


def test_a_stream_closed_without_a_request_finishes_with_its_own():
    seen: list[object] = []

    def handler():
        try:
            yield 1
            yield 2
        finally:
            seen.append(LocalContext.request.get(None))

    request = SimpleNamespace(username="bob")

    def start():
        LocalContext.request.set(request)
        stream = keep_request(handler())
        assert next(stream) == 1
        return stream

    stream = contextvars.copy_context().run(start)
    # Gradio closes it from its event loop, where no request is set
    contextvars.copy_context().run(lambda: (LocalContext.request.set(None), stream.close()))
    assert seen == [request]


def test_a_stream_that_ends_normally_is_unchanged():
    def handler():
        yield from range(3)

    assert list(keep_request(handler())) == [0, 1, 2]
