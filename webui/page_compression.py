"""The page itself sent gzip-compressed, as ASGI middleware.

Gradio writes the whole UI into the page: its config, every translation and the description of every
endpoint, about 2.3 MB of HTML for this app, sent uncompressed. On a class's Wi-Fi that is seconds before
the page can draw; gzipped it is about 150 KB. Only the page's own documents are compressed (the HTML, the
config and the API description): streamed replies (SSE, the UI's queue and /v1) and uploads pass untouched,
so a token is never held in a compressor's buffer.
"""

from __future__ import annotations

from typing import Any

from starlette.middleware.gzip import GZipMiddleware

#: GET paths answered with the page's documents.
PAGE_PATHS = frozenset({"/", "/config", "/gradio_api/info"})


class CompressedPage:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=1024, compresslevel=6)  # 20 ms for the page; 9: 31 ms, 3 % smaller

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and scope.get("method") == "GET" and scope.get("path") in PAGE_PATHS:
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)
