"""The ASGI app: FastAPI at the root with the Gradio UI mounted on it (the API joins under /v1)."""

from __future__ import annotations

import fastapi

from webui.body_limit import BodySizeLimit
from webui.json_bodies import JsonBodies
from webui.page_compression import CompressedPage
from webui.services import Services
from webui.ui import TITLE, mount_ui


def create_app(services: Services) -> fastapi.FastAPI:
    app = fastapi.FastAPI(title=TITLE, docs_url=None, redoc_url=None)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        current = services.models.current
        return {
            "ok": True,
            "model": current.name if current else None,
            "loader": current.loader if current else None,
            "n_ctx": current.backend.n_ctx if current else None,
            "generating": services.generator.active is not None,
            "waiting": services.generator.waiting(),
        }

    if services.settings.api or services.settings.api_key or services.settings.api_keys_path:
        from webui.api import create_api, install_error_handlers

        install_error_handlers(app)
        from webui.api.anthropic import create_messages_api
        from webui.api.embeddings import create_embeddings_api
        from webui.api.llamacpp_compat import create_llamacpp_api

        # The Messages API first: the OpenAI router ends with a catch-all that answers unknown /v1 routes.
        app.include_router(create_messages_api(services), prefix="/v1")
        app.include_router(create_embeddings_api(services), prefix="/v1")
        app.include_router(create_api(services), prefix="/v1")
        # llama.cpp server's /props and /tokenize: another copy's remote loader reads the template and counts tokens
        app.include_router(create_llamacpp_api(services))

    settings = services.settings
    app.add_middleware(
        BodySizeLimit,
        max_bytes=int(settings.max_body_mb * 1_048_576),
        upload_bytes=int(settings.max_upload_mb * 1_048_576),
    )
    app.add_middleware(JsonBodies)  # curl -d '{...}' (no Content-Type) reads as the JSON it is
    app.add_middleware(CompressedPage)
    return mount_ui(app, services)
