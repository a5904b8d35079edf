"""The HTTP API: OpenAI-compatible routes under /v1 (routes in ``openai``, request bodies in ``schemas``,
OpenAI-shaped errors in ``errors``, SSE and disconnects in ``streaming``)."""

from webui.api.errors import install_error_handlers
from webui.api.openai import create_api

__all__ = ["create_api", "install_error_handlers"]
