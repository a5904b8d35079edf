"""Anthropic's Messages API under ``/v1`` (``/v1/messages``, ``/v1/messages/count_tokens``), so the official
``anthropic`` SDK and the tools built on it talk to the loaded model unchanged.

A request (bodies and their translation in ``webui.api.anthropic_schemas``) runs as a chat job like
``/v1/chat/completions``; the engine's events come back as Anthropic content blocks (thinking, text,
tool_use, in order of appearance), whole or as Anthropic's SSE events (``message_start``,
``content_block_start`` / ``_delta`` / ``_stop``, ``message_delta``, ``message_stop``, or ``error``).

Stop sequences are matched here, on the answer's text (not on thinking or tool calls), so the answer can
say which one ended it (``stop_reason: "stop_sequence"``), as Anthropic's does. Errors of these routes,
and only these, are in Anthropic's shape: ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Literal, cast

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from webui.accounts.users import User
from webui.agents.engine import Reply, ReplyAssembler, ReplyEvent, chat_prepare, check_request, load_images
from webui.api.anthropic_schemas import CountTokensRequest, MessagesRequest, chat_request_of, params_of
from webui.api.auth import current_user, view_for
from webui.api.errors import error_headers, header_text
from webui.api.streaming import collect_with, event_stream, first_chunk, rest_of
from webui.attachments.types import IMAGE_MARKER
from webui.errors import GenerationError, UnauthorizedError, WebUIError
from webui.generation.scheduler import GenerationJob, GenerationStats, Prepared
from webui.loaders.base import Chunk, find_stop, held_back
from webui.params import SamplingParams
from webui.services import Services

log = logging.getLogger(__name__)

_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}
_ERROR_TYPES |= {413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}
_KEY_MESSAGE = "Missing or wrong API key. Send 'x-api-key: <key>' (your key from the server's admin, or --api-key)."

# -- the engine -> Anthropic ------------------------------------------------------------------------------

#: One SSE event: its name and its data.
Event = tuple[str, dict[str, Any]]


class _StopWatch:
    """Finds the first stop sequence in a text that arrives in pieces; text that could be the start of
    one is held back until it is known not to be."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.held = ""
        self.hit: str | None = None

    def feed(self, text: str) -> str:
        """What of ``text`` may be shown now (after a hit: nothing more)."""
        if self.hit is not None:
            return ""
        if not self.stops:
            return text
        self.held += text
        at = find_stop(self.held, self.stops)
        if at >= 0:
            self.hit = next(s for s in self.stops if self.held.find(s) == at)
            shown, self.held = self.held[:at], ""
            return shown
        keep = held_back(self.held, self.stops)
        shown, self.held = self.held[: len(self.held) - keep], self.held[len(self.held) - keep :]
        return shown

    def flush(self) -> str:
        shown, self.held = self.held, ""
        return shown


def tool_use_id(call_id: str | None) -> str:
    """Anthropic's style of id for a call (the client sends it back in its tool_result as it is)."""
    if not call_id:
        return "toolu_" + uuid.uuid4().hex[:24]
    return "toolu_" + call_id[5:] if call_id.startswith("call_") else call_id


class MessageShape:
    """One answer in Anthropic's shapes: the engine's events become content blocks (thinking, text,
    tool_use, in order of appearance) and, for a stream, the events that build them."""

    def __init__(self, stops: list[str] | None = None, show_thinking: bool = True) -> None:
        self.id = "msg_" + uuid.uuid4().hex[:24]
        #: The model that ran the job (known once it has started).
        self.model = ""
        self.blocks: list[dict[str, Any]] = []
        self.show_thinking = show_thinking
        self._stop = _StopWatch(stops or [])
        self._open: int | None = None
        self._calls: dict[int, int] = {}
        self._arguments: dict[int, str] = {}

    @property
    def stop_sequence(self) -> str | None:
        """The stop sequence that ended the answer (the job is to be cancelled then)."""
        return self._stop.hit

    def add(self, events: list[ReplyEvent]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            if self._stop.hit is not None:
                break  # the answer ended at the stop sequence: what the model wrote after is not part of it
            if event.kind == "content":
                text = self._stop.feed(event.text)
                if text:
                    out += self._text("text", text)
                continue
            out += self._flush()
            if event.kind == "reasoning":
                if event.text and self.show_thinking:
                    out += self._text("thinking", event.text)
            else:
                out += self._tool_call(event)
        return out

    def end(self) -> list[Event]:
        """The held-back text and the last block's end, once the engine has said everything."""
        out = self._flush() + self._close()
        for index, text in self._arguments.items():
            block = self.blocks[index]
            try:
                value = json.loads(text or "{}")
            except ValueError:
                value = None
            if not isinstance(value, dict):
                raise GenerationError(
                    f"The model's call of {block['name']!r} has arguments that are not a JSON object."
                )
            block["input"] = value
        return out

    def message(self, stop_reason: str | None, usage: dict[str, int], content: bool = True) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": self.blocks if content else [],
            "stop_reason": stop_reason,
            "stop_sequence": self.stop_sequence,
            "usage": usage,
        }

    def stop_reason(self, reply: Reply) -> str:
        if self.stop_sequence is not None:
            return "stop_sequence"
        return {"tool_calls": "tool_use", "length": "max_tokens"}.get(reply.finish_reason, "end_turn")

    # -- inside -----------------------------------------------------------------------------------------

    def _flush(self) -> list[Event]:
        text = self._stop.flush()
        return self._text("text", text) if text else []

    def _start(self, block: dict[str, Any]) -> list[Event]:
        out = self._close()
        self.blocks.append(block)
        self._open = len(self.blocks) - 1
        start = {"type": "content_block_start", "index": self._open, "content_block": dict(block)}
        return [*out, ("content_block_start", start)]

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _text(self, kind: Literal["text", "thinking"], text: str) -> list[Event]:
        out: list[Event] = []
        if self._open is None or self.blocks[self._open]["type"] != kind:
            empty = (
                {"type": "text", "text": ""}
                if kind == "text"
                else {"type": "thinking", "thinking": "", "signature": ""}
            )
            out += self._start(empty)
        assert self._open is not None
        self.blocks[self._open][kind] += text
        delta = {"type": "text_delta", "text": text} if kind == "text" else {"type": "thinking_delta", "thinking": text}
        return [*out, ("content_block_delta", {"type": "content_block_delta", "index": self._open, "delta": delta})]

    def _tool_call(self, event: ReplyEvent) -> list[Event]:
        out: list[Event] = []
        index = self._calls.get(event.index)
        if index is None:
            out += self._start({"type": "tool_use", "id": tool_use_id(event.id), "name": event.name or "", "input": {}})
            index = self._calls[event.index] = len(self.blocks) - 1
            self._arguments[index] = ""
        elif event.name:
            self.blocks[index]["name"] += event.name  # a server that sends the name in pieces
        if event.arguments:
            self._arguments[index] += event.arguments
            delta = {"type": "input_json_delta", "partial_json": event.arguments}
            out.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        return out


def usage_of(stats: GenerationStats | None) -> dict[str, int]:
    prompt, completion = (stats.prompt_tokens, stats.completion_tokens) if stats is not None else (0, 0)
    usage = {"input_tokens": prompt, "output_tokens": completion}
    return usage | {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


# -- errors -----------------------------------------------------------------------------------------------


def error_type(status: int) -> str:
    """Anthropic's error type for an HTTP status."""
    return _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def _validation_message(errors: list[Any]) -> str:
    problems = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        problems.append(f"{'.'.join(loc)}: {e.get('msg')}" if loc else str(e.get("msg")))
    return "Invalid request: " + "; ".join(problems)


def error_response(exc: Exception) -> JSONResponse:
    """``exc`` as Anthropic's error response (only the routes of this module answer this way)."""
    headers = None
    if isinstance(exc, UnauthorizedError):
        status, message = exc.status_code, _KEY_MESSAGE
    elif isinstance(exc, WebUIError):
        status, message, headers = exc.status_code, exc.message, error_headers(exc)
    elif isinstance(exc, RequestValidationError | ValidationError):
        status, message = 400, _validation_message(list(exc.errors()))
    elif isinstance(exc, HTTPException):
        status, message = exc.status_code, str(exc.detail)
    else:
        log.exception("The Messages API failed", exc_info=exc)
        status, message = 500, f"Internal error: {type(exc).__name__}: {exc}"
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


class _AnthropicRoute(APIRoute):
    """A route whose errors (a bad key, an invalid body, a typed error) are in Anthropic's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                return error_response(exc)

        return handle


# -- the routes -------------------------------------------------------------------------------------------


def create_messages_api(services: Services) -> APIRouter:
    """``/messages`` and ``/messages/count_tokens``, to be included under ``/v1``."""
    caller = current_user(services)
    router = APIRouter(route_class=_AnthropicRoute, dependencies=[Depends(caller)])

    def ignored_header(ignored: list[str]) -> dict[str, str]:
        if not ignored:
            return {}
        log.info("Messages API fields not used by this server: %s", ", ".join(ignored))
        return {"x-webui-ignored-fields": header_text(", ".join(ignored))}

    def ran_on(job: GenerationJob) -> str:
        if job.stats is not None and job.stats.model:
            return job.stats.model
        current = services.models.current  # the job ended before it reached a model (cancelled in the queue)
        return current.name if current else ""

    @router.post("/messages")
    async def messages(body: MessagesRequest, request: Request, user: User | None = Depends(caller)) -> Response:
        view = view_for(services, user)
        chat, ignored = chat_request_of(body)
        loose = check_request(chat)
        preset = view.presets.load(body.preset).params.model_dump() if body.preset else None
        params = params_of(body, preset)
        target = view.route_model(body.model)
        if chat.image_urls:
            await run_in_threadpool(load_images, chat, allow_fetch=services.settings.allow_image_urls)
        show_thinking = body.thinking is None or body.thinking.display != "omitted"
        shape = MessageShape(body.stop_sequences, show_thinking)
        cancel = services.cancels.start(shape.id)
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                services.cancels.end(shape.id, cancel)

        headers = ignored_header(ignored)
        if loose:  # schemas sent without strict: shaped by the grammar, these checked only afterwards
            log.info("Schema constraints not enforced by the grammar: %s", "; ".join(loose))
            headers["x-webui-not-enforced"] = header_text("; ".join(loose))
        try:
            job = services.generator.submit(
                params=params,
                cancel=cancel,
                prepare=chat_prepare(view.template_for, chat, view.tool_format_for),
                user=user.name if user else None,
                limits=view.limits_for(user),
                model=target,
            )
            assembler = ReplyAssembler(job)

            def feed(chunk: Chunk) -> list[Event]:
                if shape.stop_sequence is not None:
                    return []  # the job is being cancelled: its chunks are drained for its stats
                events = shape.add(assembler.feed(chunk))
                if shape.stop_sequence is not None:
                    job.cancel.set()
                return events

            if body.stream:
                chunks, first = await first_chunk(request, job)
                shape.model = ran_on(job)
                events = stream(job, chunks, first, feed, assembler, shape)
                # event_stream hands its items to EventSourceResponse, which takes these dicts too.
                return event_stream(job, cast(AsyncIterator[str], events), release, headers=headers)
            await collect_with(request, job, feed)
        except BaseException:
            release()
            raise
        release()
        if job.prepared is not None:
            shape.add(assembler.finish())
        shape.end()
        shape.model = ran_on(job)
        body_out = shape.message(shape.stop_reason(assembler.reply), usage_of(job.stats))
        return JSONResponse(body_out, headers=headers)

    async def stream(
        job: GenerationJob,
        chunks: Iterator[Chunk],
        first: Chunk | None,
        feed: Callable[[Chunk], list[Event]],
        assembler: ReplyAssembler,
        shape: MessageShape,
    ) -> AsyncIterator[dict[str, str]]:
        def sse(event: Event) -> dict[str, str]:
            # A dict, not a ServerSentEvent: it takes the stream's line ends ("\n", see event_stream).
            return {"event": event[0], "data": json.dumps(event[1], ensure_ascii=False)}

        prompt_tokens = job.prepared.tokens if job.prepared is not None else None
        start = shape.message(None, usage_of(None) | {"input_tokens": prompt_tokens or 0}, content=False)
        yield sse(("message_start", {"type": "message_start", "message": start}))
        try:
            for event in feed(first) if first is not None else []:
                yield sse(event)
            async for chunk in rest_of(job, chunks):
                for event in feed(chunk):
                    yield sse(event)
            if job.prepared is not None:
                for event in shape.add(assembler.finish()):
                    yield sse(event)
            for event in shape.end():
                yield sse(event)
        except WebUIError as exc:
            # The response has started (200): the error is the stream's last event, which the SDK raises.
            yield sse(("error", error_body(exc.status_code, exc.message)))
            return
        except Exception as exc:
            log.exception("Streaming %s failed", shape.id)
            yield sse(("error", error_body(500, f"Streaming failed: {type(exc).__name__}: {exc}")))
            return
        delta = {"stop_reason": shape.stop_reason(assembler.reply), "stop_sequence": shape.stop_sequence}
        yield sse(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage_of(job.stats)}))
        yield sse(("message_stop", {"type": "message_stop"}))

    @router.post("/messages/count_tokens")
    async def count_tokens(body: CountTokensRequest, user: User | None = Depends(caller)) -> Response:
        view = view_for(services, user)
        chat, ignored = chat_request_of(body)
        check_request(chat)
        target = view.route_model(body.model)
        if chat.image_urls:
            await run_in_threadpool(load_images, chat, allow_fetch=services.settings.allow_image_urls)
        prepare = chat_prepare(view.template_for, chat, view.tool_format_for)

        def count() -> int:
            # On the generation thread, between jobs: the tokenizer of the model that would answer.
            with services.models.use(target) as loaded:
                prepared = prepare(loaded, SamplingParams())
                if prepared.tokens is not None:
                    return prepared.tokens
                backend = loaded.backend
                n = len(backend.tokenize(_prompt_text(prepared)))
                if chat.images and not backend.capabilities.chat_messages:
                    # Each image takes its own tokens in place of its marker.
                    marker = len(backend.tokenize(IMAGE_MARKER)) - len(backend.tokenize(""))
                    n += sum(backend.image_tokens(image) - marker for image in chat.images)
                return n

        n = await run_in_threadpool(services.generator.call, count)
        return JSONResponse({"input_tokens": n}, headers=ignored_header(ignored))

    return router


def _prompt_text(prepared: Prepared) -> str:
    """The text the model reads: the prompt, or for a chat server the messages' text (an estimate)."""
    chat = prepared.extras.chat if prepared.extras is not None else None
    if chat is None:
        return prepared.prompt
    return "\n\n".join(str(m.get("content") or "") for m in chat.messages)
