"""Request bodies of Anthropic's Messages API and their translation into the engine's request.

An Anthropic request becomes the engine's OpenAI-shaped :class:`~webui.agents.engine.ChatRequest`:
``system`` -> a system message; ``tool_use`` blocks -> an assistant message's ``tool_calls`` (``arguments``
the JSON text of ``input``); ``tool_result`` blocks -> ``tool`` messages (text blocks joined; ``is_error``
says "Error: " first); text blocks of one message, and consecutive messages of one role (which Anthropic
combines into one turn), joined by a blank line; ``tool_choice`` any -> required, tool -> the function;
``thinking`` -> ``enable_thinking``; ``output_config.format`` -> a JSON-schema ``response_format``.

Unknown fields are kept by the models (``extra="allow"``) so they can be named: the harmless ones
(``metadata``, ``cache_control``...) are returned to be reported, the others refused with a 400.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from webui.agents.engine import ChatRequest
from webui.agents.types import ToolChoice, ToolSpec
from webui.attachments.types import IMAGE_MARKER
from webui.errors import InvalidMessagesError, SchemaError, UnsupportedFeatureError
from webui.params import SamplingParams

#: Fields that change nothing in the answer, by where they are: listed in the header, no error.
HARMLESS_FIELDS = frozenset({"metadata", "service_tier", "cache_control", "inference_geo", "speed", "diagnostics"})
HARMLESS_FIELDS |= {"container", "anthropic_version", "user_profile_id", "workspace_id"}
HARMLESS_BLOCK_FIELDS = frozenset({"cache_control", "citations"})
HARMLESS_TOOL_FIELDS = frozenset({"cache_control", "input_examples", "eager_input_streaming", "allowed_callers"})
#: Top-level fields we know and cannot honour, with the reason the 400 gives.
UNSUPPORTED_FIELDS = {
    "mcp_servers": "MCP servers are not supported here: connect them on the client and send their tools",
    "context_management": "context management (clearing old tool results) is not supported",
}


def _sampling_names() -> dict[str, str]:
    """Our own extensions: the ``SamplingParams`` fields by their names and aliases (``extra_body={"seed": 1}``),
    as name -> field, except the ones the Messages API has its own field for (``max_tokens``, ``stop_sequences``)."""
    names: dict[str, str] = {}
    for name, info in SamplingParams.model_fields.items():
        if name not in ("max_tokens", "stop"):
            names[name] = name
            names |= {str(alias): name for alias in getattr(info.validation_alias, "choices", ())}
    return names


_SAMPLING_NAMES = _sampling_names()
_CHOICE_MODES: dict[str, Literal["auto", "required", "none"]] = {"auto": "auto", "any": "required", "none": "none"}
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


# -- request bodies ---------------------------------------------------------------------------------------


class _Open(BaseModel):
    """Unknown fields are kept, to be refused or reported by name (see :class:`_Fields`)."""

    model_config = ConfigDict(extra="allow")


class TextBlock(_Open):
    type: Literal["text"]
    text: str


class ImageBlock(_Open):
    type: Literal["image"]
    #: ``{"type": "base64", "media_type": ..., "data": ...}`` or ``{"type": "url", "url": ...}``.
    source: dict[str, Any] | None = None


class DocumentBlock(_Open):
    type: Literal["document"]


class ToolUseBlock(_Open):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any] = Field(default_factory=dict)


ResultPart = Annotated[TextBlock | ImageBlock | DocumentBlock, Field(discriminator="type")]


class ToolResultBlock(_Open):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[ResultPart] = ""
    is_error: bool = False


class ThinkingBlock(_Open):
    """An earlier answer's thinking, sent back by the client (its text goes to the template as
    ``reasoning_content``; templates that do not show old reasoning drop it, as Anthropic's models do)."""

    type: Literal["thinking", "redacted_thinking"]
    thinking: str = ""
    signature: str = ""
    data: str = ""


ContentBlock = Annotated[
    TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock,
    Field(discriminator="type"),
]


class Message(_Open):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class Tool(_Open):
    name: str
    description: str = ""
    input_schema: dict[str, Any] | None = None
    #: None or "custom": a client tool. Anthropic's server tools (``web_search_...``) have their own type.
    type: str | None = None
    strict: bool = False
    defer_loading: bool = False


class ToolChoiceParam(_Open):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False


class ThinkingParam(_Open):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None
    display: Literal["summarized", "omitted"] | None = None


class OutputFormat(_Open):
    type: Literal["json_schema"]
    json_schema: dict[str, Any] = Field(alias="schema")


class OutputConfig(_Open):
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: OutputFormat | None = None


class CountTokensRequest(_Open):
    """The body of ``/v1/messages/count_tokens`` (and what ``/v1/messages`` adds to)."""

    model: str = Field(
        "",
        description="The loaded model to answer (GET /v1/models lists them). With one model loaded, any name that is not another model of the models folder goes to it.",
    )
    messages: list[Message] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[Tool] = Field(default_factory=list)
    tool_choice: ToolChoiceParam | None = None
    thinking: ThinkingParam | None = None
    output_config: OutputConfig | None = None


class MessagesRequest(CountTokensRequest):
    """The body of ``/v1/messages``; also takes any ``SamplingParams`` field by its name, and ``preset``."""

    max_tokens: int
    stop_sequences: list[str] = Field(default_factory=list)
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stream: bool = False
    preset: str | None = Field(None, description="Start from this preset's values.")


# -- Anthropic -> the engine ------------------------------------------------------------------------------


class _Fields:
    """Fields a request sent that we do not use: the harmless ones (reported) and the others (refused)."""

    def __init__(self) -> None:
        self.ignored: list[str] = []
        self.refused: list[str] = []

    def check(self, model: BaseModel, where: str, harmless: frozenset[str]) -> None:
        for name in model.model_extra or {}:
            path = f"{where}{name}"
            target = self.ignored if name in harmless else self.refused
            if path not in target:
                target.append(path)

    def raise_refused(self) -> None:
        if self.refused:
            raise UnsupportedFeatureError(
                f"Unknown or unsupported field(s): {', '.join(self.refused)}. This server cannot honour them."
            )


def chat_request_of(body: CountTokensRequest) -> tuple[ChatRequest, list[str]]:
    """The engine's request for ``body``, and the harmless fields it sent that change nothing."""
    fields = _Fields()
    for name in body.model_extra or {}:
        if name in UNSUPPORTED_FIELDS:
            raise UnsupportedFeatureError(f"{name}: {UNSUPPORTED_FIELDS[name]}.")
        if name in HARMLESS_FIELDS:
            fields.ignored.append(name)
        elif name not in _SAMPLING_NAMES and name != "tool_format":
            fields.refused.append(name)
    messages: list[dict[str, Any]] = []
    system = body.system
    if isinstance(system, list):
        for block in system:
            fields.check(block, "system[].", HARMLESS_BLOCK_FIELDS)
        system = "\n\n".join(b.text for b in system)
    if system:
        messages.append({"role": "system", "content": system})
    urls: list[str] = []
    for i, message in enumerate(body.messages):
        fields.check(message, "messages[].", frozenset())
        messages += _openai_messages(message, i, fields, urls)
    messages = _merge_turns(messages)
    if not any(m["role"] != "system" for m in messages):
        raise InvalidMessagesError("messages: there is no message to answer (every message is empty).")
    if messages[-1]["role"] == "assistant":
        raise UnsupportedFeatureError(
            "The last message is the assistant's (a prefill, to continue it): that is not supported yet. "
            "End with a user message."
        )
    tools = [_tool_spec(tool, i, fields) for i, tool in enumerate(body.tools)]
    choice, parallel = _tool_choice(body.tool_choice, fields)
    request = ChatRequest(
        messages=messages, tools=tools, tool_choice=choice, parallel_tool_calls=parallel, image_urls=urls
    )
    if body.thinking is not None:
        fields.check(body.thinking, "thinking.", frozenset())
        request.enable_thinking = {"enabled": True, "disabled": False}.get(body.thinking.type)
        if body.thinking.budget_tokens is not None:
            fields.ignored.append("thinking.budget_tokens")  # a hint to Claude too; local templates have none
    if body.output_config is not None:
        config = body.output_config
        fields.check(config, "output_config.", frozenset())
        if config.effort is not None:
            request.reasoning_effort = _EFFORTS[config.effort]
        if config.format is not None:
            fields.check(config.format, "output_config.format.", frozenset())
            schema = {"name": "output", "schema": config.format.json_schema, "strict": True}
            request.response_format = {"type": "json_schema", "json_schema": schema}
    tool_format = (body.model_extra or {}).get("tool_format")
    if tool_format is not None:
        request.tool_format = str(tool_format)
    fields.raise_refused()
    try:
        json.dumps(messages, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidMessagesError(
            "The messages hold a lone UTF-16 surrogate (e.g. \\ud800), which is not text."
        ) from exc
    return request, fields.ignored


def _openai_messages(message: Message, i: int, fields: _Fields, urls: list[str]) -> list[dict[str, Any]]:
    """One Anthropic message as OpenAI-shaped messages (a user's tool results become ``tool`` messages).

    An image block becomes an ``IMAGE_MARKER`` in the text and its URL (a data URL for base64) goes
    to ``urls``, in order.
    """
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content.replace(IMAGE_MARKER, "<_media_>")}]
    out: list[dict[str, Any]] = []
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking: list[str] = []

    def flush_text() -> None:
        if texts:
            out.append({"role": "user", "content": "\n\n".join(texts)})
            texts.clear()

    for j, block in enumerate(message.content):
        where = f"messages[{i}].content[{j}]"
        fields.check(block, "messages[].content[].", HARMLESS_BLOCK_FIELDS)
        if isinstance(block, TextBlock):
            texts.append(block.text.replace(IMAGE_MARKER, "<_media_>"))
        elif isinstance(block, ImageBlock):
            if message.role != "user":
                raise InvalidMessagesError(f"{where}: an image block belongs in a user message.")
            urls.append(_image_source(block, where))
            texts.append(IMAGE_MARKER)
        elif isinstance(block, DocumentBlock):
            raise UnsupportedFeatureError(
                f"{where} is a document block: send the document's text in a text block "
                "(the Chat tab reads PDF and Word files)."
            )
        elif isinstance(block, ThinkingBlock):
            if message.role == "assistant" and block.thinking:
                thinking.append(block.thinking)
        elif isinstance(block, ToolUseBlock):
            if message.role != "assistant":
                raise InvalidMessagesError(f"{where}: a tool_use block belongs in an assistant message.")
            arguments = json.dumps(block.input, ensure_ascii=False)
            calls.append({"id": block.id, "type": "function", "function": {"name": block.name, "arguments": arguments}})
        else:
            if message.role != "user":
                raise InvalidMessagesError(f"{where}: a tool_result block belongs in a user message.")
            flush_text()
            out.append(
                {"role": "tool", "tool_call_id": block.tool_use_id, "content": _result_text(block, where, fields)}
            )
    if message.role == "user":
        flush_text()
        return out
    reply: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(texts)}
    if calls:
        reply["tool_calls"] = calls
    if thinking:
        reply["reasoning_content"] = "\n\n".join(thinking)
    return [reply]


def _image_source(block: ImageBlock, where: str) -> str:
    """An image block's source as a URL: ``base64`` -> a data URL; ``url`` as it is."""
    source = block.source
    if not isinstance(source, dict):
        raise InvalidMessagesError(f"{where}: an image block needs a source (type base64 or url).")
    kind = source.get("type")
    if kind == "base64":
        media, data = source.get("media_type"), source.get("data")
        if not isinstance(media, str) or not isinstance(data, str):
            raise InvalidMessagesError(f"{where}.source: base64 images need media_type and data (strings).")
        return f"data:{media};base64,{data}"
    if kind == "url" and isinstance(source.get("url"), str):
        return str(source["url"])
    raise InvalidMessagesError(f"{where}.source: type must be 'base64' or 'url' (with its fields).")


def _result_text(block: ToolResultBlock, where: str, fields: _Fields) -> str:
    if isinstance(block.content, str):
        text = block.content
    else:
        parts = []
        for k, part in enumerate(block.content):
            fields.check(part, "messages[].content[].content[].", HARMLESS_BLOCK_FIELDS)
            if not isinstance(part, TextBlock):
                raise UnsupportedFeatureError(
                    f"{where}.content[{k}] is an {part.type}: images are not supported yet (text only)."
                )
            parts.append(part.text)
        text = "\n\n".join(parts)
    # The templates have no place for "this call failed": the model reads it in the result.
    return f"Error: {text}" if block.is_error else text


def _merge_turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive user (or assistant) messages as one turn, as Anthropic's API combines them."""
    out: list[dict[str, Any]] = []
    for m in messages:
        last = out[-1] if out else None
        if last is None or m["role"] != last["role"] or m["role"] not in ("user", "assistant"):
            out.append(dict(m))
            continue
        last["content"] = "\n\n".join(t for t in (last["content"], m["content"]) if t)
        if m.get("tool_calls"):
            last["tool_calls"] = [*last.get("tool_calls", []), *m["tool_calls"]]
        if m.get("reasoning_content"):
            last["reasoning_content"] = "\n\n".join(
                t for t in (last.get("reasoning_content"), m["reasoning_content"]) if t
            )
    return out


def _tool_spec(tool: Tool, i: int, fields: _Fields) -> ToolSpec:
    if tool.type not in (None, "custom"):
        raise UnsupportedFeatureError(
            f"tools[{i}] is Anthropic's server tool {tool.type!r}: only client tools (name, description, "
            "input_schema) are supported."
        )
    if tool.defer_loading:
        raise UnsupportedFeatureError(f"tools[{i}].defer_loading (tool search) is not supported.")
    if tool.input_schema is None:
        raise SchemaError(f"tools[{i}].input_schema is missing.")
    fields.check(tool, "tools[].", HARMLESS_TOOL_FIELDS)
    return ToolSpec(tool.name, tool.description, tool.input_schema, tool.strict)


def _tool_choice(choice: ToolChoiceParam | None, fields: _Fields) -> tuple[ToolChoice, bool]:
    if choice is None:
        return ToolChoice(), True
    fields.check(choice, "tool_choice.", frozenset())
    if choice.type == "tool":
        if not choice.name:
            raise SchemaError("tool_choice of type 'tool' needs the tool's name.")
        return ToolChoice("function", choice.name), not choice.disable_parallel_tool_use
    return ToolChoice(_CHOICE_MODES[choice.type]), not choice.disable_parallel_tool_use


def params_of(body: MessagesRequest, preset: dict[str, Any] | None = None) -> SamplingParams:
    """The sampling parameters: ``preset``'s values, then the fields sent (ours by name too)."""
    sent: dict[str, Any] = {"max_tokens": body.max_tokens}
    for name in ("temperature", "top_p", "top_k"):
        if getattr(body, name) is not None:
            sent[name] = getattr(body, name)
    for name, value in (body.model_extra or {}).items():
        if name in _SAMPLING_NAMES:
            sent[_SAMPLING_NAMES[name]] = value
    return SamplingParams.model_validate({**(preset or {}), **sent})
