"""``POST /v1/embeddings``: the embedding model for RAG clients (openai, LangChain, LlamaIndex, Open WebUI).

OpenAI's request and response shapes. ``input`` is a text, a list of texts, or token ids (a list, or a
list of lists); ``encoding_format`` "base64" gives each vector as the base64 of its little-endian float32
bytes, which the ``openai`` Python client asks for by default. ``dimensions`` other than the model's own
is a 400: a vector cannot be shortened unless the model was trained for it.

Token ids are refused unless the request says they come from the embedding model's own tokenizer
(``"model_token_ids": true``): clients that count tokens themselves - LangChain's ``OpenAIEmbeddings``
by default - send ids of OpenAI's tiktoken vocabulary, which name other words in the loaded model's, so
embedding them would give wrong vectors without a word.

Fields of our own: ``truncate`` (embed the start of a too-long input instead of refusing it),
``normalize`` (false: the raw pooled vectors), ``model_token_ids``. Fields we do not use (``user``...) are
listed in the ``x-webui-ignored-fields`` response header, as on the other /v1 routes.

The model runs in the threadpool, under its own lock, beside the chat model; a client that goes away
stops its request between two batches.
"""

from __future__ import annotations

import base64
import logging
import threading
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator
from starlette.concurrency import run_in_threadpool

from webui.accounts.users import User
from webui.api.auth import admin_route, current_user, view_for
from webui.api.errors import header_text
from webui.api.schemas import HARMLESS_FIELDS, lone_surrogate
from webui.api.streaming import cancel_on_disconnect
from webui.errors import NoEmbeddingModelError, UnsupportedFeatureError
from webui.models.embeddings import MAX_INPUTS, EmbeddingModelInfo
from webui.services import Services

log = logging.getLogger(__name__)

NO_MODEL_MESSAGE = (
    "No embedding model is loaded. Start the server with --embedding-model NAME (a .gguf file or a "
    "sentence-transformers folder in the models folder), load one in the web UI's Model tab (Embedding model), "
    'or POST /v1/internal/embedding-model/load {"model_name": NAME}.'
)
TOKEN_IDS_MESSAGE = (
    "input holds token ids, and this server cannot tell which tokenizer made them: clients that count tokens "
    "themselves (LangChain's OpenAIEmbeddings does by default) send ids of OpenAI's tiktoken vocabulary, which "
    "mean other words to the loaded embedding model. Send the texts instead (LangChain: "
    "OpenAIEmbeddings(..., check_embedding_ctx_length=False)). If the ids come from the embedding model's own "
    'tokenizer, add "model_token_ids": true.'
)


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    input: str | list[str] | list[StrictInt] | list[list[StrictInt]] = Field(
        description=f"A text, a list of texts (at most {MAX_INPUTS}), or token ids (see model_token_ids)."
    )
    model: str | None = Field(None, description="Any name; the loaded embedding model answers (named in the reply).")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: lists of numbers; base64: each vector's little-endian float32 bytes."
    )
    dimensions: int | None = Field(
        None, ge=1, description="Only the model's own size is accepted (vectors are not shortened)."
    )
    truncate: bool = Field(False, description="Embed the start of an input longer than the model takes (else 400).")
    normalize: bool = Field(True, description="Scale every vector to length 1 (cosine similarity = dot product).")
    model_token_ids: bool = Field(
        False, description="Token-id inputs are ids of the embedding model's own tokenizer (else they are refused)."
    )

    @field_validator("input")
    @classmethod
    def _some_text(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("input is an empty list: send a text or a list of texts")
        texts = [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)]
        if any(lone_surrogate(t) for t in texts):
            raise ValueError("input holds a lone UTF-16 surrogate (e.g. \\ud800), which is not valid text")
        return value

    def inputs(self) -> list[str] | list[list[int]]:
        value = self.input
        if isinstance(value, str):
            return [value]
        if value and isinstance(value[0], int):
            return [value]  # one list of token ids is one input
        return value  # type: ignore[return-value]

    @property
    def token_ids(self) -> bool:
        return isinstance(self.input, list) and not isinstance(self.input[0], str)

    def ignored_fields(self) -> list[str]:
        return sorted(self.model_extra or {})


class LoadEmbeddingModelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_name: str = Field(description="A .gguf file or a model folder in the models folder.")


def encode(vector: list[float], encoding_format: str) -> list[float] | str:
    """A vector as OpenAI sends it: a list of numbers, or the base64 of its little-endian float32 bytes."""
    if encoding_format != "base64":
        return vector
    import numpy as np

    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def model_info(info: EmbeddingModelInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return {
        "model": info.name,
        "kind": info.kind,
        "dimensions": info.dims,
        "n_ctx": info.n_ctx,
        "pooling": info.pooling,
    }


def create_embeddings_api(services: Services) -> APIRouter:
    caller = current_user(services)
    router = APIRouter(dependencies=[Depends(caller)])

    @router.post("/embeddings")
    async def embeddings(req: EmbeddingRequest, request: Request) -> JSONResponse:
        models = services.embeddings
        info = models.current
        if info is None:
            raise NoEmbeddingModelError(NO_MODEL_MESSAGE)
        if req.dimensions is not None and req.dimensions != info.dims:
            raise UnsupportedFeatureError(
                f"dimensions: the embedding model {info.name} gives {info.dims}-dimension vectors and cannot "
                f"shorten them. Leave dimensions out (or send {info.dims})."
            )
        if req.token_ids and not req.model_token_ids:
            raise UnsupportedFeatureError(TOKEN_IDS_MESSAGE)
        inputs = req.inputs()
        cancel = threading.Event()
        async with cancel_on_disconnect(request, cancel):
            result = await run_in_threadpool(
                lambda: models.embed(inputs, truncate=req.truncate, normalize=req.normalize, cancel=cancel)
            )
        body = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": encode(vector, req.encoding_format)}
                for i, vector in enumerate(result.vectors)
            ],
            "model": result.model,
            "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
        }
        return JSONResponse(body, headers=ignored_header(req))

    @router.get("/internal/embedding-model")
    def current_model() -> dict[str, Any]:
        """The loaded embedding model (``model`` null when there is none)."""
        return model_info(services.embeddings.current) or {"model": None}

    @router.post("/internal/embedding-model/load")
    def load_model(req: LoadEmbeddingModelRequest, user: User | None = Depends(caller)) -> dict[str, Any]:
        with admin_route(user):
            info = view_for(services, user).load_embedding_model(req.model_name)  # admins only
        return model_info(info) or {}

    @router.post("/internal/embedding-model/unload")
    def unload_model(user: User | None = Depends(caller)) -> dict[str, Any]:
        with admin_route(user):
            view_for(services, user).unload_embedding_model()  # admins only
        return {"model": None}

    return router


def ignored_header(req: EmbeddingRequest) -> dict[str, str]:
    ignored = req.ignored_fields()
    if not ignored:
        return {}
    unknown = [k for k in ignored if k not in HARMLESS_FIELDS]
    if unknown:
        log.info("Embedding request fields this server does not know (ignored): %s", ", ".join(unknown))
    return {"x-webui-ignored-fields": header_text(", ".join(ignored))}
