"""OpenAI-compatible API under ``/v1``, served by the same generation queue as the UI.

Request bodies accept every ``SamplingParams`` field by its own name (same ranges),
plus ``preset`` (a preset file's values, overridden by the fields sent). Errors
have OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.
"""
from __future__ import annotations

import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from webui.errors import WebUIError
from webui.generation.scheduler import GenerationJob
from webui.loaders import Chunk
from webui.params import SAMPLING_FIELDS, SamplingParams
from webui.services import Services


class _Request(SamplingParams):
    # OpenAI clients send fields we do not use (n, user, logprobs...): ignore them.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    model: str | None = Field(None, description="Any name; the loaded model answers.")
    stream: bool = False
    preset: str | None = Field(None, description="Start from this preset's values.")


class CompletionRequest(_Request):
    prompt: str | list[str]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | None = ""


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    character: str | None = Field(None, description="A character from characters/: its context becomes the "
                                                    "system prompt (unless the messages bring their own).")
    system_prompt: str | None = Field(None, description="A system prompt to send first (unless the messages "
                                                        "bring their own).")


class LoadModelRequest(BaseModel):
    model_name: str
    loader: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


def error_body(message: str, type_: str = "invalid_request_error", code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def install_error_handlers(app: FastAPI) -> None:
    """OpenAI-shaped errors for /v1 (the UI's own routes are left alone)."""

    @app.exception_handler(WebUIError)
    async def _webui_error(request: Request, exc: WebUIError) -> JSONResponse:
        kind = "server_error" if exc.status_code >= 500 else "invalid_request_error"
        return JSONResponse(error_body(exc.message, kind, exc.code), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}" for e in exc.errors())
        return JSONResponse(error_body(f"Invalid request: {problems}", code="invalid_value", param=param),
                            status_code=400)


def create_api(services: Services) -> APIRouter:
    key = services.settings.api_key

    def check_key(request: Request) -> None:
        if not key:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), key.encode()):
            raise _Unauthorized()

    router = APIRouter(dependencies=[Depends(check_key)])

    def params_of(req: _Request) -> SamplingParams:
        base = services.presets.load(req.preset).params.model_dump() if req.preset else {}
        sent = {k: getattr(req, k) for k in req.model_fields_set if k in SAMPLING_FIELDS}
        return SamplingParams.model_validate({**base, **sent})

    def model_name() -> str:
        current = services.models.current
        if current is None:
            from webui.errors import NoModelLoadedError

            raise NoModelLoadedError("No model is loaded. Load one in the web UI or with POST "
                                     "/v1/internal/model/load.")
        return current.name

    @router.get("/models")
    def list_models() -> dict[str, Any]:
        current = services.models.current
        names = services.models.list_models()
        return {"object": "list", "data": [
            {"id": n, "object": "model", "created": 0, "owned_by": "local",
             "loaded": bool(current and current.name == n)} for n in names]}

    @router.post("/internal/model/load")
    def load_model(req: LoadModelRequest) -> dict[str, Any]:
        try:
            loaded = services.load_model(req.model_name, req.loader, explicit=dict(req.options or {}))
        except ValidationError as exc:
            raise WebUIError(f"Invalid load options: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from exc
        return {"model": loaded.name, "loader": loaded.loader, "n_ctx": loaded.backend.n_ctx}

    @router.post("/internal/model/unload")
    def unload_model() -> dict[str, Any]:
        """Free the loaded model's memory (text-generation-webui has the same route)."""
        services.models.unload()
        return {"model": None}

    @router.get("/internal/requests")
    def recent_requests() -> dict[str, Any]:
        """Stats of the last finished generations (UI and API), newest last."""
        return {"data": [s.as_dict() for s in services.generator.recent]}

    @router.post("/completions")
    async def completions(req: CompletionRequest, request: Request) -> Any:
        prompt = req.prompt if isinstance(req.prompt, str) else "".join(req.prompt)
        return await respond(request, req, prompt, chat=False)

    @router.post("/chat/completions")
    async def chat_completions(req: ChatCompletionRequest, request: Request) -> Any:
        current = services.models.current
        name = model_name()
        assert current is not None
        template, _ = services.choose_template(current.backend.chat_template,
                                               services.template_override_for(name))
        messages = [{"role": m.role, "content": m.content or ""} for m in req.messages]
        if not any(m["role"] == "system" for m in messages):
            system = "\n\n".join(p for p in (
                (req.system_prompt or "").strip(),
                services.characters.load(req.character).system_text("User") if req.character else "") if p)
            if system:
                messages.insert(0, {"role": "system", "content": system})
        prompt = template.render(messages, add_generation_prompt=True)
        return await respond(request, req, prompt, chat=True)

    async def respond(request: Request, req: _Request, prompt: str, *, chat: bool) -> Any:
        name = model_name()
        params = params_of(req)
        job = services.generator.submit(prompt, params)
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        if req.stream:
            chunks = iter(job)
            # Wait for the first chunk before answering, so an error (prompt too long...) is a
            # proper HTTP error and not an event inside a 200 stream.
            try:
                first = await run_in_threadpool(next, chunks, None)
            except BaseException:
                job.cancel.set()
                raise
            return StreamingResponse(stream_sse(request, job, chunks, first, ident, created, name, chat),
                                     media_type="text/event-stream")
        text = ""
        try:
            async for chunk in iterate_in_threadpool(iter(job)):
                text += chunk.text
        finally:
            if not job.finished:
                job.cancel.set()
        stats = job.stats
        assert stats is not None
        usage = {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
                 "total_tokens": stats.prompt_tokens + stats.completion_tokens}
        finish = "length" if stats.finish_reason == "length" else "stop"
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {"id": ident, "object": "chat.completion" if chat else "text_completion", "created": created,
                "model": name, "choices": [choice], "usage": usage}

    async def stream_sse(request: Request, job: GenerationJob, chunks: Iterator[Chunk], first: Chunk | None,
                         ident: str, created: int, name: str, chat: bool) -> AsyncIterator[str]:
        kind = "chat.completion.chunk" if chat else "text_completion"

        def event(delta: str | None, finish: str | None, usage: dict | None = None) -> str:
            if chat:
                choice: dict[str, Any] = {"index": 0, "delta": {} if delta is None else {"content": delta},
                                          "finish_reason": finish}
            else:
                choice = {"index": 0, "text": delta or "", "finish_reason": finish}
            body: dict[str, Any] = {"id": ident, "object": kind, "created": created, "model": name,
                                    "choices": [choice]}
            if usage is not None:
                body["usage"] = usage
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        try:
            if chat:
                opening = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                yield "data: " + json.dumps({"id": ident, "object": kind, "created": created, "model": name,
                                             "choices": [opening]}) + "\n\n"
            if first is not None and first.text:
                yield event(first.text, None)
            try:
                async for chunk in iterate_in_threadpool(chunks):
                    if await request.is_disconnected():
                        job.cancel.set()  # the client went away: free the model for the next request
                        return
                    if chunk.text:
                        yield event(chunk.text, None)
            except WebUIError as exc:
                yield f"data: {json.dumps(error_body(exc.message, code=exc.code))}\n\n"
                return
            stats = job.stats
            assert stats is not None
            usage = {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
                     "total_tokens": stats.prompt_tokens + stats.completion_tokens}
            yield event(None, "length" if stats.finish_reason == "length" else "stop", usage)
            yield "data: [DONE]\n\n"
        finally:
            if not job.finished:
                job.cancel.set()

    return router


class _Unauthorized(WebUIError):
    status_code = 401
    code = "invalid_api_key"

    def __init__(self) -> None:
        super().__init__("Missing or wrong API key. Send 'Authorization: Bearer <key>' (the key given with --api-key).")
