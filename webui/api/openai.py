"""OpenAI-compatible routes under ``/v1``, served by the same generation queue as the UI.

Request bodies are in ``webui.api.schemas``, errors in ``webui.api.errors``, the plumbing
between a job and its HTTP client (SSE, disconnects) in ``webui.api.streaming``. Each
request's job registers its cancel in ``services.cancels`` under the response's id.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from webui.api.errors import error_of
from webui.api.schemas import ChatCompletionRequest, CompletionRequest, GenerationRequest, LoadModelRequest
from webui.api.streaming import collect, event_stream, first_chunk, rest_of
from webui.errors import GenerationError, NoModelLoadedError, UnauthorizedError, WebUIError
from webui.generation.scheduler import GenerationJob, GenerationStats, Prepare, Prepared
from webui.loaders import Chunk
from webui.models.manager import LoadedModel
from webui.params import SAMPLING_FIELDS, SamplingParams
from webui.services import Services

log = logging.getLogger(__name__)


class _Reply:
    """The OpenAI shapes of one answer: a whole response, or the events of a stream."""

    def __init__(self, chat: bool) -> None:
        self.chat = chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        #: The model that ran the job (known once the job has started), not the one current when asked.
        self.model = ""

    @staticmethod
    def usage(stats: GenerationStats) -> dict[str, int]:
        return {
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.completion_tokens,
            "total_tokens": stats.prompt_tokens + stats.completion_tokens,
        }

    @staticmethod
    def finish(stats: GenerationStats) -> str:
        return "length" if stats.finish_reason == "length" else "stop"

    def whole(self, text: str, stats: GenerationStats) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": self.finish(stats)}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {
            "id": self.id,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": self.usage(stats),
        }

    def event(
        self, delta: dict[str, Any] | str | None, finish: str | None = None, usage: dict[str, int] | None = None
    ) -> str:
        """One ``data:`` payload of a stream: ``delta`` is a chat delta or a completion's text."""
        if self.chat:
            choice: dict[str, Any] = {"index": 0, "delta": delta or {}, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": delta or "", "finish_reason": finish}
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }
        if usage is not None:
            body["usage"] = usage
        return json.dumps(body, ensure_ascii=False)

    def text(self, text: str) -> str:
        return self.event({"content": text} if self.chat else text)


def create_api(services: Services) -> APIRouter:
    key = services.settings.api_key

    def check_key(request: Request) -> None:
        if not key:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), key.encode()):
            raise UnauthorizedError()

    router = APIRouter(dependencies=[Depends(check_key)])

    def params_of(req: GenerationRequest) -> SamplingParams:
        base = services.presets.load(req.preset).params.model_dump() if req.preset else {}
        sent = {k: getattr(req, k) for k in req.model_fields_set if k in SAMPLING_FIELDS}
        return SamplingParams.model_validate({**base, **sent})

    @router.get("/models")
    def list_models() -> dict[str, Any]:
        current = services.models.current
        names = services.models.list_models()
        return {
            "object": "list",
            "data": [
                {
                    "id": n,
                    "object": "model",
                    "created": 0,
                    "owned_by": "local",
                    "loaded": bool(current and current.name == n),
                }
                for n in names
            ],
        }

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
        return await respond(request, req, prompt, _Reply(chat=False))

    @router.post("/chat/completions")
    async def chat_completions(req: ChatCompletionRequest, request: Request) -> Any:
        messages = [{"role": m.role, "content": m.content or ""} for m in req.messages]
        if not any(m["role"] == "system" for m in messages):
            system = "\n\n".join(
                p
                for p in (
                    (req.system_prompt or "").strip(),
                    services.characters.load(req.character).system_text("User") if req.character else "",
                )
                if p
            )
            if system:
                messages.insert(0, {"role": "system", "content": system})

        def prepare(loaded: LoadedModel, params: SamplingParams) -> Prepared:
            # On the generation thread, with the template of the model that answers.
            template, _ = services.template_for(loaded)
            return Prepared(template.render(messages, add_generation_prompt=True), stop=list(template.stop_strings))

        return await respond(request, req, prepare, _Reply(chat=True))

    async def respond(request: Request, req: GenerationRequest, prompt: str | Prepare, reply: _Reply) -> Any:
        if services.models.current is None:
            raise NoModelLoadedError("No model is loaded. Load one in the web UI or with POST /v1/internal/model/load.")
        params = params_of(req)
        cancel = services.cancels.start(reply.id)
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                services.cancels.end(reply.id, cancel)

        try:
            if isinstance(prompt, str):
                job = services.generator.submit(prompt, params, cancel)
            else:
                job = services.generator.submit(params=params, cancel=cancel, prepare=prompt)
            if req.stream:
                chunks, first = await first_chunk(request, job)
                reply.model = ran_on(job)
                return event_stream(job, stream(job, chunks, first, reply), release)
            text = await collect(request, job)
        except BaseException:
            release()
            raise
        release()
        assert job.stats is not None
        reply.model = ran_on(job)
        return reply.whole(text, job.stats)

    def ran_on(job: GenerationJob) -> str:
        if job.stats is not None and job.stats.model:
            return job.stats.model
        current = services.models.current  # the job ended before it reached a model (cancelled in the queue)
        return current.name if current else ""

    async def stream(
        job: GenerationJob, chunks: Iterator[Chunk], first: Chunk | None, reply: _Reply
    ) -> AsyncIterator[str]:
        try:
            if reply.chat:
                yield reply.event({"role": "assistant", "content": ""})
            if first is not None and first.text:
                yield reply.text(first.text)
            async for chunk in rest_of(job, chunks):
                if chunk.text:
                    yield reply.text(chunk.text)
        except WebUIError as exc:
            # The response has started (200): the error becomes the stream's last event, in OpenAI's
            # shape, which the openai client raises as an APIError with this message.
            yield json.dumps(error_of(exc))
            return
        except Exception as exc:
            log.exception("Streaming %s failed", reply.id)
            yield json.dumps(error_of(GenerationError(f"Streaming failed: {type(exc).__name__}: {exc}")))
            return
        stats = job.stats
        assert stats is not None
        yield reply.event(None, reply.finish(stats), reply.usage(stats))
        yield "[DONE]"

    return router
