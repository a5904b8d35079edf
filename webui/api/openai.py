"""OpenAI-compatible routes under ``/v1``, served by the same generation queue as the UI.

Request bodies are in ``webui.api.schemas``, errors in ``webui.api.errors``, the plumbing
between a job and its HTTP client (SSE, disconnects) in ``webui.api.streaming``. Each
request's job registers its cancel in ``services.cancels`` under the response's id.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from webui.accounts.users import User
from webui.agents.engine import (
    ChatRequest,
    Reply,
    ReplyAssembler,
    ReplyEvent,
    chat_prepare,
    check_request,
    load_images,
)
from webui.agents.types import ToolChoice, ToolSpec
from webui.api.auth import admin_route, current_user, is_admin, view_for
from webui.api.errors import error_of, header_text
from webui.api.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    GenerationRequest,
    LoadModelRequest,
    UnloadModelRequest,
)
from webui.api.streaming import collect_with, event_stream, first_chunk, rest_of
from webui.errors import (
    EmptyPromptError,
    GenerationError,
    InvalidMessagesError,
    ModelNotFoundError,
    PromptTooLongError,
    SchemaError,
    SettingsError,
    UnsupportedFeatureError,
    WebUIError,
)
from webui.generation.limits import UserLimits, check_choices
from webui.generation.scheduler import GenerationJob, GenerationStats, Prepare, Prepared
from webui.loaders import Chunk
from webui.loaders.base import StreamExtras, TokenLogprob
from webui.models.manager import LoadedModel
from webui.params import SAMPLING_FIELDS, SPEED_ONLY_FIELDS, SamplingParams
from webui.services import Services

log = logging.getLogger(__name__)


def _logprob_entry(lp: TokenLogprob) -> dict[str, Any]:
    return {
        "token": lp.token,
        "logprob": lp.logprob,
        "bytes": list(lp.bytes),
        "top_logprobs": [{"token": t.token, "logprob": t.logprob, "bytes": list(t.bytes)} for t in lp.top],
    }


def chat_logprobs(entries: list[TokenLogprob]) -> dict[str, Any]:
    """OpenAI's chat shape: ``{"content": [{token, logprob, bytes, top_logprobs}], "refusal": null}``."""
    return {"content": [_logprob_entry(lp) for lp in entries], "refusal": None}


def completion_logprobs(entries: list[TokenLogprob], offset: int = 0) -> dict[str, Any]:
    """The legacy completions shape: parallel lists of tokens, logprobs, top alternatives, text offsets."""
    offsets, at = [], offset
    for lp in entries:
        offsets.append(at)
        at += len(lp.token)
    return {
        "tokens": [lp.token for lp in entries],
        "token_logprobs": [lp.logprob for lp in entries],
        "top_logprobs": [{t.token: t.logprob for t in lp.top} if lp.logprob is not None else None for lp in entries],
        "text_offset": offsets,
    }


class _Reply:
    """The OpenAI shapes of one answer: a whole response, or the events of a stream."""

    def __init__(self, chat: bool) -> None:
        self.chat = chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        #: The model that ran the job (known once the job has started), not the one current when asked.
        self.model = ""

    @staticmethod
    def usage(stats: list[GenerationStats]) -> dict[str, int]:
        prompt = stats[0].prompt_tokens if stats else 0
        completion = sum(s.completion_tokens for s in stats)
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        cut = max((s.prompt_cut for s in stats), default=0)
        if cut:  # a raw prompt longer than truncation_length lost its start: never silently
            usage["prompt_tokens_cut"] = cut
        return usage

    @staticmethod
    def finish(stats: GenerationStats) -> str:
        return "length" if stats.finish_reason == "length" else "stop"

    def body(self, choices: list[dict[str, Any]], stats: list[GenerationStats]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage(stats),
        }

    def chunk(self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> str:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None:
            body["usage"] = usage
        return json.dumps(body, ensure_ascii=False)

    def event(
        self,
        delta: dict[str, Any] | str | None,
        finish: str | None = None,
        usage: dict[str, int] | None = None,
        index: int = 0,
        logprobs: dict[str, Any] | None = None,
    ) -> str:
        """One ``data:`` payload of a stream: ``delta`` is a chat delta or a completion's text."""
        if self.chat:
            choice: dict[str, Any] = {"index": index, "delta": delta or {}, "finish_reason": finish}
        else:
            choice = {"index": index, "text": delta or "", "finish_reason": finish}
        if logprobs is not None:
            choice["logprobs"] = logprobs
        return self.chunk([choice], usage)


def create_api(services: Services) -> APIRouter:
    # The caller (their API key's user) is worked out once per request: the router's dependency
    # refuses a missing key on every route, the routes that need the user ask for the same one.
    caller = current_user(services)
    router = APIRouter(dependencies=[Depends(caller)])

    def params_of(view: Services, req: GenerationRequest, limits: UserLimits, **updates: Any) -> SamplingParams:
        base = view.presets.load(req.preset).params.model_dump() if req.preset else {}
        sent = {k: getattr(req, k) for k in req.model_fields_set if k in SAMPLING_FIELDS}
        params = SamplingParams.model_validate({**base, **sent, **updates})
        if limits.max_tokens and params.max_tokens > limits.max_tokens and "max_tokens" not in {**sent, **updates}:
            # Not asked for (a default or a preset's): the user's limit applies instead of refusing them.
            params = params.model_copy(update={"max_tokens": limits.max_tokens})
        return params

    def embedding_name() -> str | None:
        info = services.embeddings.current
        return info.name if info is not None else None

    def model_entry(name: str, loaded: LoadedModel | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "local",
            "loaded": loaded is not None,
        }
        if loaded is not None:
            # What the router knows of it: requests naming it go to it (see docs/performance.md).
            current = services.models.current
            entry.update(
                created=int(loaded.loaded_at),
                loader=loaded.loader,
                main=current is not None and current.name == loaded.name,
                memory_bytes=loaded.memory_bytes,
                idle_seconds=round(max(0.0, time.time() - loaded.last_used), 1),
                requests=loaded.requests,
            )
        if name == embedding_name():
            # The embedding model (POST /v1/embeddings), loaded beside the chat model.
            entry.update(loaded=True, embedding=True)
        return entry

    @router.get("/models")
    def list_models() -> dict[str, Any]:
        """The loaded models first (each a name requests may route to), then the rest of the models folder."""
        loaded = services.models.loaded_models()
        entries = [model_entry(m.name, m) for m in loaded]
        shown = {m.name for m in loaded}
        embedder = embedding_name()
        names = services.models.list_models()
        if embedder is not None and embedder not in names:
            names.append(embedder)  # loaded from a path outside the models folder
        entries += [model_entry(n) for n in names if n not in shown]
        return {"object": "list", "data": entries}

    @router.get("/models/{model_id:path}")
    def get_model(model_id: str) -> dict[str, Any]:
        for loaded in services.models.loaded_models():
            if model_id in (loaded.name, loaded.backend.served_name):
                return model_entry(model_id, loaded)
        if model_id == embedding_name():
            return model_entry(model_id)
        if model_id in services.models.list_models():
            return model_entry(model_id)
        raise ModelNotFoundError(f"The model {model_id!r} does not exist. GET /v1/models lists the models.")

    @router.post("/internal/model/load")
    def load_model(req: LoadModelRequest, user: User | None = Depends(caller)) -> dict[str, Any]:
        """Load a model (admins; other users only the models the admin allowed, --user-models)."""
        view = view_for(services, user)
        try:
            with admin_route(user):
                loaded = view.load_model(req.model_name, req.loader, explicit=dict(req.options or {}))
        except ValidationError as exc:
            raise SettingsError(f"Invalid load options: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from exc
        return {"model": loaded.name, "loader": loaded.loader, "n_ctx": loaded.backend.n_ctx}

    @router.post("/internal/model/unload")
    def unload_model(req: UnloadModelRequest | None = None, user: User | None = Depends(caller)) -> dict[str, Any]:
        """Free a loaded model's memory (text-generation-webui has the same route): the one named by
        ``model_name``, or every one. Admins only."""
        name = req.model_name if req is not None else None
        loaded = services.models.loaded_models()
        if name and name not in {m.name for m in loaded} | {m.backend.served_name for m in loaded}:
            listed = ", ".join(m.name for m in loaded) or "none"
            raise ModelNotFoundError(f"{name!r} is not loaded. Loaded: {listed}.")
        named = [m.name for m in loaded if name in (m.name, m.backend.served_name)]
        with admin_route(user):
            view_for(services, user).unload_model(named[0] if named else None)
        current = services.models.current
        return {"model": current.name if current else None, "loaded": [m.name for m in services.models.loaded_models()]}

    @router.get("/internal/requests")
    def recent_requests(user: User | None = Depends(caller)) -> dict[str, Any]:
        """Stats of the last finished generations (UI and API), newest last: an admin's view has everyone's,
        another user's only their own."""
        recent = list(services.generator.recent)
        if not is_admin(user):
            assert user is not None
            recent = [s for s in recent if s.user == user.name]
        return {"data": [s.as_dict() for s in recent]}

    @router.get("/internal/queue")
    def queue(user: User | None = Depends(caller)) -> dict[str, Any]:
        """The generation queue, running first: each entry's position, state, seconds waited and estimated
        seconds until it starts; ``mine`` marks the caller's. Others' names are shown to admins only."""
        entries = services.generator.queue_view(user.name if user else None, is_admin(user))
        return {"object": "list", "data": entries}

    def refuse_oversized(texts: list[str], target: str | None) -> None:
        """A prompt that cannot fit whatever the tokenizer does is refused here, not after the queue.

        No token is longer than the vocabulary's longest one, so a text of B bytes has at least
        B / longest tokens: cheap to know, and enough to refuse a multi-megabyte paste at once.
        """
        current = services.models.find(target)
        if current is None:
            return  # loaded when its turn comes (--load-on-demand)
        longest = current.backend.max_token_bytes()
        if not longest:
            return
        size = sum(len(t.encode("utf-8", "replace")) for t in texts)
        at_least = size // longest
        if at_least >= current.backend.n_ctx:
            raise PromptTooLongError(at_least, current.backend.n_ctx, at_least=True)

    def ignored_header(req: GenerationRequest, target: str | None) -> dict[str, str]:
        ignored = req.ignored_fields()
        current = services.models.find(target)
        if current is not None:
            # speed-only options the loaded model's loader does not have (the text is the same without them)
            ignored += [
                name
                for name in SPEED_ONLY_FIELDS
                if name in req.model_fields_set
                and name not in current.backend.supported_params
                and getattr(req, name) != SamplingParams.model_fields[name].default
            ]
        if not ignored:
            return {}
        if req.unknown_fields():
            log.info("Request fields this server does not know (ignored): %s", ", ".join(req.unknown_fields()))
        return {"x-webui-ignored-fields": header_text(", ".join(ignored))}

    @router.post("/completions")
    async def completions(req: CompletionRequest, request: Request, user: User | None = Depends(caller)) -> Any:
        view = view_for(services, user)
        limits = view.limits_for(user)
        check_choices(req.n, limits)
        target = view.route_model(req.model)
        prompt = req.prompt if isinstance(req.prompt, str) else "".join(req.prompt)
        refuse_oversized([prompt], target)
        if not prompt:
            raise EmptyPromptError()
        top = req.logprobs
        extras = StreamExtras(top_logprobs=top, echo_logprobs=req.echo and top is not None) if top is not None else None

        def prepare(loaded: LoadedModel, params: SamplingParams) -> Prepared:
            if extras is not None and not loaded.backend.capabilities.logprobs:
                raise UnsupportedFeatureError(f"The {loaded.loader} loader cannot return logprobs.")
            return Prepared(prompt, extras=extras)

        reply = _Reply(chat=False)
        params = params_of(view, req, limits)
        jobs = submit_all(reply, params, req.n, prepare, user, limits, target)
        headers = ignored_header(req, target)
        echo = prompt if req.echo else ""
        if req.stream:
            return await stream_response(request, reply, jobs, headers, completion_events(reply, jobs, echo, req))
        choices: list[dict[str, Any]] = []
        stats: list[GenerationStats] = []
        try:
            return await whole_completion(request, reply, jobs, req, echo, headers, choices, stats)
        finally:
            release_all(reply, jobs)

    async def whole_completion(
        request: Request,
        reply: _Reply,
        jobs: list[GenerationJob],
        req: CompletionRequest,
        echo: str,
        headers: dict[str, str],
        choices: list[dict[str, Any]],
        stats: list[GenerationStats],
    ) -> Any:
        top = req.logprobs
        for i, job in enumerate(jobs):
            chunks: list[Chunk] = []
            await run_job(request, jobs, job, chunks.append)
            assert job.stats is not None
            choice: dict[str, Any] = {"index": i, "text": echo + job.text, "finish_reason": reply.finish(job.stats)}
            choice["logprobs"] = None
            if top is not None:
                entries = [lp for c in chunks for lp in (c.prompt_logprobs or [])] if req.echo else []
                entries += [lp for c in chunks for lp in (c.logprobs or [])]
                choice["logprobs"] = completion_logprobs(entries)
            choices.append(choice)
            stats.append(job.stats)
        reply.model = ran_on(jobs[0])
        cut = max(s.prompt_cut for s in stats)
        if cut:
            headers = {**headers, "x-webui-notice": prompt_cut_notice(cut)}
        return JSONResponse(reply.body(choices, stats), headers=headers)

    @router.post("/chat/completions")
    async def chat_completions(
        req: ChatCompletionRequest, request: Request, user: User | None = Depends(caller)
    ) -> Any:
        view = view_for(services, user)
        limits = view.limits_for(user)
        chat = chat_request_of(view, req)  # first: a bad name (character, preset) is a 400 with or without a model
        loose = check_request(chat)
        check_choices(req.n, limits)
        target = view.route_model(req.model)
        refuse_oversized([str(m.get("content") or "") for m in chat.messages], target)
        if chat.image_urls:
            await run_in_threadpool(load_images, chat, allow_fetch=services.settings.allow_image_urls)
        updates = {"max_tokens": req.max_completion_tokens} if req.max_completion_tokens else {}
        params = params_of(view, req, limits, **updates)
        reply = _Reply(chat=True)
        prepare = chat_prepare(view.template_for, chat, view.tool_format_for)
        jobs = submit_all(reply, params, req.n, prepare, user, limits, target)
        headers = ignored_header(req, target)
        if loose:
            # Sent without "strict": shaped by the grammar, these checked only after generation.
            log.info("Schema constraints not enforced by the grammar: %s", "; ".join(loose))
            headers["x-webui-not-enforced"] = header_text("; ".join(loose))
        if req.stream:
            return await stream_response(request, reply, jobs, headers, chat_events(reply, jobs, req))
        try:
            return await whole_chat(request, reply, jobs, req, headers)
        finally:
            release_all(reply, jobs)

    async def whole_chat(
        request: Request, reply: _Reply, jobs: list[GenerationJob], req: ChatCompletionRequest, headers: dict[str, str]
    ) -> Any:
        choices: list[dict[str, Any]] = []
        stats: list[GenerationStats] = []
        for i, job in enumerate(jobs):
            assembler = ReplyAssembler(job)
            await run_job(request, jobs, job, assembler.feed)
            assembler.finish()
            assert job.stats is not None
            choices.append(chat_choice(i, assembler.reply, req.logprobs))
            stats.append(job.stats)
            headers.update(template_header(job))
        reply.model = ran_on(jobs[0])
        cut = max(s.prompt_cut for s in stats)
        if cut:
            headers = {**headers, "x-webui-notice": prompt_cut_notice(cut)}
        return JSONResponse(reply.body(choices, stats), headers=headers)

    def chat_request_of(view: Services, req: ChatCompletionRequest) -> ChatRequest:
        messages: list[dict[str, Any]] = []
        urls: list[str] = []
        for m in req.messages:
            content, images = m.content_and_images()
            if images and m.role != "user":
                raise InvalidMessagesError(f"Images go in user messages (a {m.role} message has one).")
            urls += images
            message: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": content}
            if m.tool_calls:
                message["tool_calls"] = [c.model_dump() for c in m.tool_calls]
            if m.tool_call_id:
                message["tool_call_id"] = m.tool_call_id
            if m.role == "tool" and m.name:
                message["name"] = m.name
            messages.append(message)
        if not any(m["role"] == "system" for m in messages):
            system = "\n\n".join(
                p
                for p in (
                    (req.system_prompt or "").strip(),
                    view.characters.load(req.character).system_text("User") if req.character else "",
                )
                if p
            )
            if system:
                messages.insert(0, {"role": "system", "content": system})
        tools = [
            ToolSpec(t.function.name, t.function.description, t.function.parameters, bool(t.function.strict))
            for t in req.tools or []
        ]
        thinking = (req.chat_template_kwargs or {}).get("enable_thinking")
        return ChatRequest(
            messages=messages,
            tools=tools,
            tool_choice=tool_choice_of(req.tool_choice, bool(tools)),
            parallel_tool_calls=req.parallel_tool_calls,
            response_format=req.response_format if (req.response_format or {}).get("type") != "text" else None,
            reasoning="inline" if req.reasoning_format in ("none", "inline") else "split",
            enable_thinking=bool(thinking) if thinking is not None else None,
            reasoning_effort=req.reasoning_effort,
            top_logprobs=(req.top_logprobs or 0) if req.logprobs else None,
            tool_format=req.tool_format,
            image_urls=urls,
        )

    def submit_all(
        reply: _Reply,
        params: SamplingParams,
        n: int,
        prepare: Prepare,
        user: User | None,
        limits: UserLimits,
        model: str | None,
    ) -> list[GenerationJob]:
        """``n`` jobs (one per choice) for ``model``, each with its own seed; cancels registered under the reply's
        id.

        All or none: a job refused (the user's queue limit) cancels the ones already queued.
        """
        jobs: list[GenerationJob] = []
        for i in range(n):
            seeded = params if params.seed == -1 or i == 0 else params.model_copy(update={"seed": params.seed + i})
            name = f"{reply.id}-{i}" if i else reply.id
            cancel = services.cancels.start(name)
            try:
                job = services.generator.submit(
                    params=seeded,
                    cancel=cancel,
                    prepare=prepare,
                    user=user.name if user else None,
                    limits=limits,
                    model=model,
                )
            except BaseException:
                services.cancels.end(name, cancel)
                for queued in jobs:
                    queued.cancel.set()
                release_all(reply, jobs)
                raise
            jobs.append(job)
        return jobs

    def release_all(reply: _Reply, jobs: list[GenerationJob]) -> None:
        for i, job in enumerate(jobs):
            services.cancels.end(f"{reply.id}-{i}" if i else reply.id, job.cancel)

    async def run_job(request: Request, jobs: list[GenerationJob], job: GenerationJob, on_chunk: Any) -> None:
        try:
            await collect_with(request, job, on_chunk)
        except BaseException:
            for other in jobs:  # the client is gone or the request failed: the other choices too
                other.cancel.set()
            raise

    async def stream_response(
        request: Request, reply: _Reply, jobs: list[GenerationJob], headers: dict[str, str], events: Any
    ) -> Any:
        """Wait for the first job's first chunk (so its errors are HTTP errors), then stream the rest."""
        try:
            chunks, first = await first_chunk(request, jobs[0])
        except BaseException:
            for job in jobs:
                job.cancel.set()
            release_all(reply, jobs)
            raise
        reply.model = ran_on(jobs[0])
        headers = {**headers, **template_header(jobs[0])}
        return event_stream(
            jobs[0], events(chunks, first), lambda: release_all(reply, jobs), headers=headers, jobs=tuple(jobs[1:])
        )

    def template_header(job: GenerationJob) -> dict[str, str]:
        """Say when the model's own template was not used (unsafe, unusable, a base model)."""
        plan = job.prepared.detail if job.prepared is not None else None
        note = getattr(plan, "template_note", None)
        if not note or getattr(note, "key", "") in ("template.note_own", "template.note_override"):
            return {}
        log.warning("%s", note)
        return {"x-webui-template-note": header_text(str(note), 300)}

    def ran_on(job: GenerationJob) -> str:
        if job.stats is not None and job.stats.model:
            return job.stats.model
        current = services.models.current  # the job ended before it reached a model (cancelled in the queue)
        return current.name if current else ""

    def chat_events(reply: _Reply, jobs: list[GenerationJob], req: ChatCompletionRequest) -> Any:
        def events(chunks: Iterator[Chunk], first: Chunk | None) -> AsyncIterator[str]:
            return _chat_stream(reply, jobs, req, chunks, first)

        return finished(events, reply, jobs, req)

    async def _chat_stream(
        reply: _Reply,
        jobs: list[GenerationJob],
        req: ChatCompletionRequest,
        chunks: Iterator[Chunk],
        first: Chunk | None,
    ) -> AsyncIterator[str]:
        usage_chunk = wants_usage_chunk(req)
        for i, job in enumerate(jobs):
            assembler = ReplyAssembler(job)
            yield reply.event({"role": "assistant", "content": ""}, index=i)
            started: set[int] = set()

            def deltas(events: list[ReplyEvent], i: int = i, started: set[int] = started) -> Iterator[str]:
                for e in events:
                    yield reply.event(delta_of(e, started), index=i, logprobs=event_logprobs(e, req.logprobs))

            if i == 0:
                if first is not None:
                    for out in deltas(assembler.feed(first)):
                        yield out
                source = rest_of(job, chunks)
            else:
                source = rest_of(job, iter(job))
            async for chunk in source:
                for out in deltas(assembler.feed(chunk)):
                    yield out
            for out in deltas(assembler.finish()):
                yield out
            assert job.stats is not None
            finish = assembler.reply.finish_reason
            # With include_usage only the extra last chunk has usage (OpenAI's rule); without it the
            # finishing chunk carries it, as this server always did.
            usage = None if usage_chunk else reply.usage([job.stats])
            yield reply.event(None, "stop" if finish == "cancelled" else finish, usage, index=i)

    def completion_events(reply: _Reply, jobs: list[GenerationJob], echo: str, req: CompletionRequest) -> Any:
        async def events(chunks: Iterator[Chunk], first: Chunk | None) -> AsyncIterator[str]:
            usage_chunk = wants_usage_chunk(req)
            for i, job in enumerate(jobs):
                offset = 0
                if echo:
                    yield reply.event(echo, index=i)
                    offset = len(echo)

                def piece(chunk: Chunk, i: int = i) -> str | None:
                    nonlocal offset
                    entries = list(chunk.prompt_logprobs or []) if req.echo else []
                    entries += chunk.logprobs or []
                    logprobs = completion_logprobs(entries, offset) if req.logprobs is not None and entries else None
                    if not chunk.text and logprobs is None:
                        return None
                    offset += len(chunk.text)
                    return reply.event(chunk.text, index=i, logprobs=logprobs)

                source = rest_of(job, chunks) if i == 0 else rest_of(job, iter(job))
                if i == 0 and first is not None and (out := piece(first)) is not None:
                    yield out
                async for chunk in source:
                    if (out := piece(chunk)) is not None:
                        yield out
                assert job.stats is not None
                usage = None if usage_chunk else reply.usage([job.stats])
                yield reply.event(None, reply.finish(job.stats), usage, index=i)

        return finished(events, reply, jobs, req)

    @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    def unknown_route(rest: str) -> None:
        # Without this the UI mounted at the root would answer FastAPI's {"detail": "Not Found"}.
        raise StarletteHTTPException(status_code=404)

    return router


def wants_usage_chunk(req: GenerationRequest) -> bool:
    return req.stream_options is not None and req.stream_options.include_usage


def prompt_cut_notice(cut: int) -> str:
    return (
        f"The prompt was longer than truncation_length: its first {cut} tokens were not sent (usage.prompt_tokens_cut)."
    )


def finished(events: Any, reply: _Reply, jobs: list[GenerationJob], req: GenerationRequest) -> Any:
    """``events`` (a stream's choices) made a whole stream: an error as its last event, the usage chunk
    when asked for (``stream_options.include_usage``), then ``[DONE]``."""

    async def stream(chunks: Iterator[Chunk], first: Chunk | None) -> AsyncIterator[str]:
        try:
            async for out in events(chunks, first):
                yield out
        except WebUIError as exc:
            # The response has started (200): the error becomes the stream's last event, in OpenAI's
            # shape, which the openai client raises as an APIError with this message.
            yield json.dumps(error_of(exc))
            return
        except Exception as exc:
            log.exception("Streaming %s failed", reply.id)
            yield json.dumps(error_of(GenerationError(f"Streaming failed: {type(exc).__name__}: {exc}")))
            return
        if wants_usage_chunk(req):
            yield reply.chunk([], reply.usage([j.stats for j in jobs if j.stats is not None]))
        yield "[DONE]"

    return stream


def tool_choice_of(value: Any, have_tools: bool) -> ToolChoice:
    if value is None:
        return ToolChoice("auto" if have_tools else "none")
    if isinstance(value, str):
        return ToolChoice(value)  # type: ignore[arg-type]
    if value.get("type") == "function" and isinstance(value.get("function"), dict) and value["function"].get("name"):
        return ToolChoice("function", value["function"]["name"])
    raise SchemaError(
        'tool_choice must be "auto", "none", "required" or {"type": "function", "function": {"name": ...}}.'
    )


def delta_of(event: ReplyEvent, started: set[int]) -> dict[str, Any]:
    if event.kind == "content":
        return {"content": event.text}
    if event.kind == "reasoning":
        return {"reasoning_content": event.text}
    call: dict[str, Any] = {"index": event.index, "function": {"arguments": event.arguments}}
    if event.index not in started:
        started.add(event.index)
        call["id"] = event.id
        call["type"] = "function"
        call["function"]["name"] = event.name
    return {"tool_calls": [call]}


def event_logprobs(event: ReplyEvent, wanted: bool) -> dict[str, Any] | None:
    if not wanted or event.kind != "content":
        return None
    return chat_logprobs(event.logprobs or [])


def chat_choice(index: int, answer: Reply, logprobs: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.content}
    if answer.tool_calls:
        message["content"] = answer.content or None
        message["tool_calls"] = [c.openai() for c in answer.tool_calls]
    if answer.reasoning:
        message["reasoning_content"] = answer.reasoning
    finish = "stop" if answer.finish_reason == "cancelled" else answer.finish_reason
    return {
        "index": index,
        "message": message,
        "logprobs": chat_logprobs(answer.logprobs) if logprobs else None,
        "finish_reason": finish,
    }
