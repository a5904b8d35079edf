"""llama.cpp server's ``GET /props`` and ``POST /tokenize``, at the root where llama.cpp serves them.

With them this app, started with ``--api``, is a whole remote for another copy of it (the remote loader)
and for other clients of llama.cpp's server: they read the loaded model's chat template and context size
from ``/props`` and count tokens exactly with ``/tokenize``. Without them the remote loader fell back to
ChatML and called the model a base model (a chat model answered its own question back), and estimated
every token count from the text's length.

``/props`` answers for the main loaded model; ``/tokenize`` takes ``content``, llama.cpp's ``add_special``
(default false: no BOS) and a ``model`` name (as on /v1; none: the main model), and refuses the fields it
cannot honour (``with_pieces``).
The API key applies as on /v1.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from webui.api.auth import current_user
from webui.errors import ModelNotFoundError, NoModelLoadedError, UnsupportedFeatureError
from webui.models.manager import LoadedModel
from webui.services import Services


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str
    add_special: bool = False
    with_pieces: bool = False
    #: A loaded model's name (as the /v1 routes take it); none: the main model.
    model: str | None = None


def create_llamacpp_api(services: Services) -> APIRouter:
    router = APIRouter(dependencies=[Depends(current_user(services))])

    def main_model() -> LoadedModel:
        loaded = services.models.current
        if loaded is None:
            raise NoModelLoadedError()
        return loaded

    def named_model(name: str | None) -> LoadedModel:
        """The loaded model ``name`` goes to, as on /v1; a name that is not loaded is the /v1 routes' 404 (or,
        where it could be loaded on demand, a 404 saying /tokenize does not load models)."""
        loaded = services.models.find(name)
        if loaded is not None:
            return loaded
        services.models.route(name)  # raises the 404 naming the loaded models (or "no model is loaded")
        raise ModelNotFoundError(f"The model {name} is not loaded: /tokenize does not load models. Load it first.")

    @router.get("/props")
    def props() -> dict[str, Any]:
        loaded = main_model()
        backend = loaded.backend
        return {
            "model_alias": loaded.name,
            "model_path": loaded.name,
            "chat_template": backend.chat_template or "",
            "default_generation_settings": {"n_ctx": backend.n_ctx},
        }

    @router.post("/tokenize")
    def tokenize(req: TokenizeRequest) -> dict[str, Any]:
        if req.with_pieces:
            raise UnsupportedFeatureError("with_pieces is not supported here: /tokenize answers the token ids only.")
        backend = named_model(req.model).backend
        tokens = backend.tokenize(req.content)
        if not req.add_special:
            # the loaders tokenize as for a prompt (with BOS where the model adds one): llama.cpp's default is without
            bos = backend.tokenize("")
            if bos and tokens[: len(bos)] == bos:
                tokens = tokens[len(bos) :]
        return {"tokens": tokens}

    return router
