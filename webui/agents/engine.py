"""The chat request engine: one chat request (OpenAI- or Anthropic-shaped at the edge) in, a generation
job's prepare step out, and the job's chunks back into an answer: content, reasoning, tool calls.

Both API routes (``/v1/chat/completions`` and ``/v1/messages``) translate their body into a
:class:`ChatRequest`, submit ``generator.submit(params=..., cancel=..., prepare=chat_prepare(...))`` and
feed the job's chunks to a :class:`ReplyAssembler`, which hands out :class:`ReplyEvent` s to stream and
ends with a :class:`Reply`. What depends on the model (its template, its tool-call format, whether it
thinks in ``<think>`` blocks, whether the loader can apply a grammar) is decided in the prepare step, on
the generation thread, for the model that runs the job; the assembler reads it from ``Prepared.detail``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from webui.agents.formats import ToolFormat, detect_format, format_by_name, template_handles_tools, tools_system_text
from webui.agents.reasoning import (
    ReasoningSplitter,
    ReasoningStyle,
    closes_in_prompt,
    opens_in_prompt,
    reasoning_style,
    template_has_thinking_switch,
    thinking_kwargs,
)
from webui.agents.types import CallCollector, ToolCall, ToolChoice, ToolSpec, ToolStreamEvent
from webui.attachments.images import read_image
from webui.attachments.types import IMAGE_MARKER, ImageInput
from webui.attachments.urls import fetch_image_url
from webui.errors import InvalidMessagesError, SchemaError, UnsupportedFeatureError
from webui.generation.scheduler import Prepare, Prepared
from webui.loaders.base import ChatPayload, Chunk, StreamExtras, TokenLogprob
from webui.models.manager import LoadedModel
from webui.params import SamplingParams
from webui.structured.gbnf import json_object_grammar, schema_grammar
from webui.structured.schema import check_schema, validate

log = logging.getLogger(__name__)

#: The model's template (a ``ChatTemplate``) and a note saying which one and why (``Services.template_for``).
TemplateFor = Callable[[LoadedModel], tuple[Any, Any]]
FinishReason = Literal["stop", "length", "tool_calls", "cancelled"]


@dataclass
class ChatRequest:
    """A chat request as the engine takes it, whatever API it came through."""

    #: OpenAI-shaped messages: ``role`` (system, user, assistant, tool), ``content`` (text); an assistant
    #: message may have ``tool_calls`` (OpenAI dicts, ``arguments`` a JSON string); a ``tool`` message
    #: has ``tool_call_id`` (and optionally ``name``).
    messages: list[dict[str, Any]]
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    parallel_tool_calls: bool = True
    #: ``{"type": "json_object"}`` or ``{"type": "json_schema", "json_schema": {"schema": ..., "strict": ...}}``.
    response_format: dict[str, Any] | None = None
    #: "split": reasoning comes apart from the answer (``reasoning_content``); "inline": left in the text.
    reasoning: Literal["split", "inline"] = "split"
    #: Thinking on/off for templates that read ``enable_thinking`` (None: the template's default).
    enable_thinking: bool | None = None
    #: For templates that read ``reasoning_effort`` (gpt-oss): "low", "medium", "high".
    reasoning_effort: str | None = None
    #: None: no logprobs; 0-20: each token's logprob and that many alternatives.
    top_logprobs: int | None = None
    #: A tool-call format name that overrides the one read from the template (see ``formats.FORMAT_NAMES``).
    tool_format: str | None = None
    #: The images of the messages, in order: each is an ``IMAGE_MARKER`` in a message's content. The edge
    #: collects their URLs (``image_urls``); :func:`load_images` turns them into checked ``images``.
    image_urls: list[str] = field(default_factory=list)
    images: list[ImageInput] = field(default_factory=list)


def load_images(req: ChatRequest, *, allow_fetch: bool) -> None:
    """Decode and check the request's images (data URLs; http(s) only when ``allow_fetch``).

    Blocking (a fetch, image decoding): the API runs it in a worker thread. ``AttachmentError``
    (a 400) names the image that cannot be used.
    """
    req.images = [
        read_image(f"image {i + 1}", fetch_image_url(url, allow_fetch=allow_fetch))
        for i, url in enumerate(req.image_urls)
    ]


def with_image_parts(messages: list[dict[str, Any]], images: list[ImageInput]) -> list[dict[str, Any]]:
    """Messages for a chat server: each image marker in a text becomes an ``image_url`` part (a data
    URL), in order."""
    if not images:
        return messages
    queue = list(images)
    out: list[dict[str, Any]] = []
    for m in messages:
        content = m.get("content")
        if not isinstance(content, str) or IMAGE_MARKER not in content:
            out.append(m)
            continue
        parts: list[dict[str, Any]] = []
        pieces = content.split(IMAGE_MARKER)
        for i, piece in enumerate(pieces):
            if piece.strip():
                parts.append({"type": "text", "text": piece.strip("\n")})
            if i < len(pieces) - 1 and queue:
                parts.append({"type": "image_url", "image_url": {"url": queue.pop(0).data_url()}})
        out.append({**m, "content": parts})
    return out


def no_vision_error(model: str, n: int) -> UnsupportedFeatureError:
    return UnsupportedFeatureError(
        f"The loaded model ({model}) cannot see images, and the request has {n}: load a vision model "
        "(a GGUF with its mmproj projector, or a transformers vision model), or a chat server that takes "
        "images, or send text only.",
        key="attach.no_vision_request",
        model=model,
        n=n,
    )


@dataclass
class ChatPlan:
    """What the prepare step decided for the model that runs the request (``Prepared.detail``)."""

    request: ChatRequest
    #: The loader takes messages (a chat server): its chunks bring reasoning and tool calls parsed.
    remote: bool = False
    format: ToolFormat | None = None
    reasoning: ReasoningStyle | None = None
    #: The prompt ends inside an open think block: the output starts as reasoning.
    thinking_open: bool = False
    #: The prompt closed the think block (thinking off) or a grammar shapes the output: all answer.
    answered: bool = False
    #: The template was replaced or is not the model's own (a note for the caller's log / header).
    template_note: str | None = None


@dataclass
class ReplyEvent:
    """A piece of the answer to stream: text, reasoning, or part of tool call ``index``."""

    kind: Literal["content", "reasoning", "tool_call"]
    text: str = ""
    index: int = 0
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    #: Logprobs of the tokens that made this piece (content events; with ``top_logprobs``).
    logprobs: list[TokenLogprob] | None = None


@dataclass
class Reply:
    """The whole answer once the job has ended."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: FinishReason = "stop"
    logprobs: list[TokenLogprob] = field(default_factory=list)


# -- checks before queueing --------------------------------------------------------------------------


def check_request(req: ChatRequest) -> list[str]:
    """Cheap checks of a request before it waits in the queue (each a clear 400).

    Returns the schema constraints that the grammar will not enforce in schemas sent without
    ``strict`` (the caller reports them; generated arguments are still validated against them).
    """
    loose: list[str] = []
    names: set[str] = set()
    for i, tool in enumerate(req.tools):
        if not tool.name:
            raise SchemaError(f"tools[{i}].function.name is empty.")
        if tool.name in names:
            raise SchemaError(f"tools[{i}]: two tools are named {tool.name!r}.")
        names.add(tool.name)
        check_schema(tool.parameters, f"tools[{i}].function.parameters", strict=tool.strict, loose=loose)
    choice = req.tool_choice
    if choice.mode == "function" and choice.name not in names:
        raise SchemaError(f"tool_choice names the function {choice.name!r}, which is not in tools.")
    if choice.mode == "required" and not req.tools:
        raise SchemaError("tool_choice is 'required' but no tools were sent.")
    fmt = req.response_format
    if fmt is not None and not isinstance(fmt, dict):
        raise SchemaError('response_format must be an object such as {"type": "json_object"}.')
    if fmt is not None:
        kind = fmt.get("type")
        if kind not in ("text", "json_object", "json_schema"):
            raise SchemaError(f"response_format.type {kind!r} is not one of text, json_object, json_schema.")
        if kind == "json_schema":
            spec = fmt.get("json_schema") or {}
            if not isinstance(spec, dict):
                raise SchemaError("response_format.json_schema must be an object with a 'schema'.")
            schema = spec.get("schema")
            if schema is None:
                raise SchemaError("response_format.json_schema.schema is missing.")
            strict = bool(spec.get("strict"))
            check_schema(schema, "response_format.json_schema.schema", strict=strict, loose=loose)
        if kind != "text" and req.tools and choice.mode != "none":
            raise UnsupportedFeatureError(
                "response_format and tools cannot both be enforced on one reply: send tool_choice 'none' "
                "or leave out response_format."
            )
    if req.tool_format is not None:
        format_by_name(req.tool_format)  # raises for an unknown name
    _check_tool_messages(req.messages)
    return loose


def _check_tool_messages(messages: list[dict[str, Any]]) -> None:
    called: dict[str, str] = {}
    for i, m in enumerate(messages):
        for call in m.get("tool_calls") or []:
            function = call.get("function") or {}
            if not call.get("id") or not function.get("name"):
                raise InvalidMessagesError(f"messages[{i}].tool_calls: every call needs an id and function.name.")
            called[call["id"]] = function["name"]
        if m.get("role") == "tool":
            ref = m.get("tool_call_id")
            if not ref:
                raise InvalidMessagesError(f"messages[{i}] is a tool message without tool_call_id.")
            if ref not in called:
                raise InvalidMessagesError(
                    f"messages[{i}] answers tool call {ref!r}, but no earlier assistant message made that call."
                )


# -- the prepare step -----------------------------------------------------------------------------------


def chat_prepare(
    template_for: TemplateFor, req: ChatRequest, tool_format_for: Callable[[LoadedModel], str | None] | None = None
) -> Prepare:
    """The job's prepare step for ``req``: runs on the generation thread with the model that answers.

    ``tool_format_for``: the tool-call format chosen for a model (its per-model setting), used when
    the request names none; else the format is read from the template.
    """

    def prepare(loaded: LoadedModel, params: SamplingParams) -> Prepared:
        backend = loaded.backend
        caps = backend.capabilities
        if req.top_logprobs is not None and not caps.logprobs:
            raise UnsupportedFeatureError(f"The {loaded.loader} loader cannot return logprobs.")
        if len(req.images) != len(req.image_urls):
            raise UnsupportedFeatureError("The request's images were not loaded (internal error: load_images).")
        if req.images and not caps.images:
            raise no_vision_error(loaded.name, len(req.images))
        using_tools = bool(req.tools) and req.tool_choice.mode != "none"
        if caps.chat_messages:
            return _prepare_for_server(req, using_tools)
        template, note = template_for(loaded)
        fmt: ToolFormat | None = None
        if using_tools:
            chosen = req.tool_format or (tool_format_for(loaded) if tool_format_for is not None else None)
            fmt = format_by_name(chosen) if chosen else detect_format(template.source, backend.metadata)
        handles = template_handles_tools(template.source)
        history_format = fmt or detect_format(template.source, backend.metadata)
        messages = messages_for_template(req.messages, history_format, handles, req.tools if using_tools else [])
        extra: dict[str, Any] = {}
        if using_tools and handles:
            extra["tools"] = [t.openai() for t in req.tools]
        # Thinking "off" for a model that has no switch is already the case; "on", or an effort it
        # does not read, is an error rather than a silent no-op.
        thinking = req.enable_thinking
        if thinking is False and not template_has_thinking_switch(template.source):
            thinking = None
        extra.update(thinking_kwargs(template.source, enable_thinking=thinking, reasoning_effort=req.reasoning_effort))
        prompt = template.render(messages, add_generation_prompt=True, **extra)
        grammar, triggers = _grammar_for(req, fmt, lazy=caps.lazy_grammar)
        if grammar is not None and not caps.grammar:
            what = "a tool call" if fmt is not None else "JSON output"
            raise UnsupportedFeatureError(
                f"The {loaded.loader} loader cannot constrain the output to {what} (no grammar support): "
                "use tool_choice 'auto' or no response_format with this model, or the llama.cpp loader."
            )
        style = reasoning_style(template.source) if req.reasoning == "split" else None
        constrained_from_start = grammar is not None and not triggers
        thinking_open = style is not None and not constrained_from_start and opens_in_prompt(style, prompt)
        answered = style is not None and (constrained_from_start or closes_in_prompt(style, prompt))
        extras = None
        if req.top_logprobs is not None or triggers or req.images:
            extras = StreamExtras(top_logprobs=req.top_logprobs, grammar_triggers=triggers, images=tuple(req.images))
        plan = ChatPlan(
            req, format=fmt, reasoning=style, thinking_open=thinking_open, answered=answered, template_note=note
        )
        return Prepared(
            prompt, stop=list(template.stop_strings), front_cut=False, grammar=grammar, extras=extras, detail=plan
        )

    return prepare


def _prepare_for_server(req: ChatRequest, using_tools: bool) -> Prepared:
    choice: Any = None
    if req.tools:
        mode = req.tool_choice.mode
        choice = {"type": "function", "function": {"name": req.tool_choice.name}} if mode == "function" else mode
    extra: dict[str, Any] = {}
    if req.reasoning_effort:
        extra["reasoning_effort"] = req.reasoning_effort
    if req.enable_thinking is not None:
        extra["chat_template_kwargs"] = {"enable_thinking": req.enable_thinking}
    payload = ChatPayload(
        messages=tuple(with_image_parts(req.messages, req.images)),
        tools=tuple(t.openai() for t in req.tools),
        tool_choice=choice,
        parallel_tool_calls=req.parallel_tool_calls if req.tools else None,
        response_format=req.response_format,
        extra=extra or None,
    )
    last = next((str(m.get("content") or "") for m in reversed(req.messages) if m.get("content")), "")
    return Prepared(
        last or "(chat)",  # unused by a chat server; a job's prompt is never empty
        front_cut=False,
        extras=StreamExtras(top_logprobs=req.top_logprobs, chat=payload),
        detail=ChatPlan(req, remote=True),
    )


def call_grammar(
    fmt: ToolFormat, tools: list[ToolSpec], choice: ToolChoice, parallel: bool, *, lazy: bool
) -> tuple[str | None, tuple[str, ...]]:
    """The grammar for tool calls in ``fmt`` and, for a lazy one (``auto``), its triggers.

    Forced (``required`` or a named function): the reply is calls from its first token. ``auto``: free
    text until the model starts a call, then a valid call - when the loader can apply a grammar from a
    trigger (``lazy``); otherwise no grammar, and the calls are checked after generation.
    """
    if choice.mode == "none" or not tools:
        return None, ()
    if choice.forced:
        # A named function is one call to it (small models otherwise repeat it until max_tokens).
        return fmt.grammar(tools, choice, parallel and choice.mode != "function"), ()
    if lazy:
        return fmt.grammar(tools, choice, parallel), tuple(fmt.triggers)
    return None, ()


def _grammar_for(req: ChatRequest, fmt: ToolFormat | None, *, lazy: bool) -> tuple[str | None, tuple[str, ...]]:
    """The grammar of the reply and, for a lazy one, its triggers."""
    if fmt is not None:
        return call_grammar(fmt, req.tools, req.tool_choice, req.parallel_tool_calls, lazy=lazy)
    rf = req.response_format or {}
    if rf.get("type") == "json_object":
        return json_object_grammar(), ()
    if rf.get("type") == "json_schema":
        return schema_grammar(rf["json_schema"]["schema"]), ()
    return None, ()


def messages_for_template(
    messages: list[dict[str, Any]], fmt: ToolFormat, handles_tools: bool, tools: list[ToolSpec]
) -> list[dict[str, Any]]:
    """The messages as the model's template takes them.

    A template that handles tools gets them as transformers passes them (a call's ``arguments`` as an
    object, ``tool`` messages as they are). One that does not gets the tools described in the system
    message, earlier calls written the way the model writes them, and tool results as user messages.
    """
    names = {c["id"]: (c.get("function") or {}).get("name", "") for m in messages for c in m.get("tool_calls") or []}
    if handles_tools:
        out = []
        for m in messages:
            m = dict(m)
            if m.get("tool_calls"):
                m["tool_calls"] = [_call_for_template(c) for c in m["tool_calls"]]
            if m.get("role") == "tool" and "name" not in m:
                m["name"] = names.get(m.get("tool_call_id", ""), "")
            out.append(m)
        return out
    out = []
    for m in messages:
        role = m.get("role")
        if role == "assistant" and m.get("tool_calls"):
            calls = fmt.render_calls(
                [
                    ToolCall(name=c["function"]["name"], arguments=c["function"].get("arguments") or "{}", id=c["id"])
                    for c in m["tool_calls"]
                ]
            )
            text = str(m.get("content") or "")
            out.append({"role": "assistant", "content": f"{text}\n{calls}".strip() if text else calls})
        elif role == "tool":
            name = m.get("name") or names.get(m.get("tool_call_id", ""), "")
            result = f"Result of the tool {name}:\n{m.get('content') or ''}"
            if out and out[-1].get("role") == "user" and out[-1].get("_tool_results"):
                out[-1]["content"] += "\n\n" + result
            else:
                out.append({"role": "user", "content": result, "_tool_results": True})
        else:
            out.append({"role": role, "content": m.get("content") or ""})
    for m in out:
        m.pop("_tool_results", None)
    if tools:
        text = tools_system_text(tools, fmt)
        if out and out[0].get("role") == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{text}".strip()}
        else:
            out.insert(0, {"role": "system", "content": text})
    return out


def _call_for_template(call: dict[str, Any]) -> dict[str, Any]:
    function = dict(call.get("function") or {})
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            function["arguments"] = json.loads(arguments)
        except ValueError:
            pass  # left as text: the template shows what the client sent
    return {**call, "function": function}


# -- the answer -------------------------------------------------------------------------------------------


class ReplyAssembler:
    """A job's chunks -> events to stream and, at the end, the whole :class:`Reply`.

    Tool calls are handed out once each is complete and checked against its tool's schema (a call
    the model wrote wrongly under ``auto`` stays text, as the model wrote it), so a streaming client
    never gets a call the non-streaming answer would not have had.
    """

    def __init__(self, job: Any) -> None:
        self.job = job
        self.reply = Reply()
        self._plan: ChatPlan | None = None
        self._splitter: ReasoningSplitter | None = None
        self._parser: Any = None
        self._calls = CallCollector()
        self._server_calls = CallCollector()
        self._server_tool_finish = False
        self._pending_logprobs: list[TokenLogprob] = []

    @property
    def plan(self) -> ChatPlan:
        if self._plan is None:
            prepared = self.job.prepared
            plan = prepared.detail if prepared is not None else None
            if not isinstance(plan, ChatPlan):
                raise TypeError("ReplyAssembler needs a job made by chat_prepare")
            self._plan = plan
            if not plan.remote:
                if plan.reasoning is not None:
                    self._splitter = ReasoningSplitter(
                        plan.reasoning, started=plan.thinking_open, answered=plan.answered
                    )
                if plan.format is not None:
                    self._parser = plan.format.stream(plan.request.tools)
        return self._plan

    def feed(self, chunk: Chunk) -> list[ReplyEvent]:
        plan = self.plan
        events: list[ReplyEvent] = []
        if chunk.reasoning:
            events.append(ReplyEvent("reasoning", chunk.reasoning))
        if chunk.text:
            events += self._text(chunk.text)
        for delta in chunk.tool_calls or []:
            self._server_calls.add(delta.index, delta.id, delta.name, delta.arguments)
            events.append(
                ReplyEvent("tool_call", index=delta.index, id=delta.id, name=delta.name, arguments=delta.arguments)
            )
        if chunk.finish_tool_calls:
            self._server_tool_finish = True
        if chunk.logprobs:
            self._pending_logprobs += chunk.logprobs
            self.reply.logprobs += chunk.logprobs
        if self._pending_logprobs and plan is not None:
            target = next((e for e in events if e.kind == "content"), None)
            if target is not None:
                target.logprobs, self._pending_logprobs = self._pending_logprobs, []
        return self._keep(events)

    def finish(self) -> list[ReplyEvent]:
        """The rest once the job has ended: held-back text, the checked tool calls, the finish reason."""
        plan = self.plan
        events: list[ReplyEvent] = []
        if self._splitter is not None:
            reasoning, content = self._splitter.finish()
            if reasoning:
                events.append(ReplyEvent("reasoning", reasoning))
            if content:
                events += self._content(content)
        if self._parser is not None:
            leftover = self._from_parser(self._parser.finish())
            if self.job.stats is not None and self.job.stats.finish_reason == "length" and plan.format is not None:
                # A call cut off by max_tokens is half written markup, not text for the user.
                triggers = [re.compile(t) for t in plan.format.triggers]
                leftover = [e for e in leftover if not any(t.search(e.text) for t in triggers)]
            events += leftover
        events = self._keep(events)
        events += self._release_calls()
        if self._pending_logprobs:
            events.append(ReplyEvent("content", "", logprobs=self._pending_logprobs))
            self._pending_logprobs = []
        stats = self.job.stats
        reason = stats.finish_reason if stats is not None else "stop"
        if plan.remote:
            self.reply.tool_calls = self._server_calls.calls()
        if reason == "cancelled":
            self.reply.finish_reason = "cancelled"
        elif reason == "length":  # cut by max_tokens, whatever came before (a call may be half written)
            self.reply.finish_reason = "length"
        elif self.reply.tool_calls or self._server_tool_finish:
            self.reply.finish_reason = "tool_calls"
        else:
            self.reply.finish_reason = "stop"
        return events

    # -- inside -------------------------------------------------------------------------------------

    def _text(self, text: str) -> list[ReplyEvent]:
        if self._splitter is None:
            return self._content(text)
        reasoning, content = self._splitter.feed(text)
        events = [ReplyEvent("reasoning", reasoning)] if reasoning else []
        return events + (self._content(content) if content else [])

    def _content(self, text: str) -> list[ReplyEvent]:
        if self._parser is None:
            return [ReplyEvent("content", text)]
        return self._from_parser(self._parser.feed(text))

    def _from_parser(self, items: list[ToolStreamEvent]) -> list[ReplyEvent]:
        events = []
        for item in items:
            if item.content:
                events.append(ReplyEvent("content", item.content))
            if item.index is not None:
                self._calls.add(item.index, item.id, item.name, item.arguments)
        return events

    def _keep(self, events: list[ReplyEvent]) -> list[ReplyEvent]:
        for e in events:
            if e.kind == "content":
                self.reply.content += e.text
            elif e.kind == "reasoning":
                self.reply.reasoning += e.text
        return events

    def _release_calls(self) -> list[ReplyEvent]:
        """The parsed calls, each checked; a wrong one becomes text (it is what the model wrote)."""
        plan = self.plan
        tools = {t.name: t for t in plan.request.tools}
        events: list[ReplyEvent] = []
        for call in self._calls.calls():
            problem = call_problem(call, tools)
            if problem is not None:
                log.warning("The model wrote a tool call that is not valid (%s): returned as text", problem)
                text = plan.format.render_call(call) if plan.format is not None else call.arguments
                events += self._keep([ReplyEvent("content", text)])
                continue
            index = len(self.reply.tool_calls)
            self.reply.tool_calls.append(call)
            # As OpenAI streams a call: id and name first, then the arguments (the client joins the pieces).
            events.append(ReplyEvent("tool_call", index=index, id=call.id, name=call.name))
            events.append(ReplyEvent("tool_call", index=index, arguments=call.arguments))
        return events


def call_problem(call: ToolCall, tools: dict[str, ToolSpec]) -> str | None:
    """What is wrong with a call the model wrote (None: it names a tool and its arguments match)."""
    tool = tools.get(call.name)
    if tool is None:
        return f"no tool is named {call.name!r}"
    try:
        value = json.loads(call.arguments or "{}")
    except ValueError as exc:
        return f"arguments are not JSON: {exc}"
    if not isinstance(value, dict):
        return "arguments are not a JSON object"
    problems = validate(tool.parameters, value)
    if problems:
        return "; ".join(problems[:3])
    call.arguments = json.dumps(value, ensure_ascii=False)
    return None
