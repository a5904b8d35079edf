"""JSON bodies sent without saying so are read as JSON, as ASGI middleware.

``curl URL -d '{"model_name": ...}'`` - the way guides (and this README) show the API - sends the JSON with
``Content-Type: application/x-www-form-urlencoded``, curl's default for ``-d``. FastAPI then reads no
object and answered "Input should be a valid dictionary or object to extract fields from", which says
nothing of the missing header. llama.cpp's server reads such a body as JSON; so does this one, for the API's
routes (``/v1/...``, ``/tokenize``): a POST with that type, or none, gets ``application/json``. A body that
is not JSON then gets the JSON parser's own error. The UI's routes (Gradio's forms, uploads) are left alone.
"""

from __future__ import annotations

from typing import Any

#: Content types curl and other tools send by default with a body that is in fact JSON.
_UNSAID = {b"", b"application/x-www-form-urlencoded"}

#: The API's routes that take JSON bodies.
_API_PREFIXES = ("/v1/", "/tokenize")


class JsonBodies:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope.get("type") == "http"
            and scope.get("method") == "POST"
            and str(scope.get("path", "")).startswith(_API_PREFIXES)
        ):
            headers = list(scope.get("headers") or [])
            kind = next((v for k, v in headers if k == b"content-type"), b"")
            if kind.split(b";")[0].strip().lower() in _UNSAID:
                headers = [(k, v) for k, v in headers if k != b"content-type"]
                headers.append((b"content-type", b"application/json"))
                scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)
