"""Request bodies of the /v1 API (they are also what /openapi.json publishes).

A generation request accepts every ``SamplingParams`` field by its own name (same ranges and
descriptions), plus ``preset`` (a preset file's values, overridden by the fields sent).

Nothing a client sends is dropped without a word: fields we do not know are listed in the
``x-webui-ignored-fields`` response header (and the log); fields that would change the answer and that
we cannot honour (``logit_bias``, audio, the legacy ``functions``...) are a 400 naming them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from webui.attachments.types import IMAGE_MARKER
from webui.params import SamplingParams

#: Fields OpenAI clients send that change nothing in the answer (listed in the header, no error).
HARMLESS_FIELDS = frozenset({"user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key"})
#: Fields that would change the answer and are not supported: a 400 naming the field.
UNSUPPORTED_FIELDS = {
    "logit_bias": "logit_bias is not supported",
    "audio": "audio output is not supported",
    "modalities": "output modalities other than text are not supported",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not supported",
    "functions": "the legacy 'functions' field is not supported: send 'tools'",
    "function_call": "the legacy 'function_call' field is not supported: send 'tool_choice'",
    "suffix": "suffix (fill-in-the-middle) is not supported",
    "best_of": "best_of is not supported: use n",
    "verbosity": "verbosity is not supported",
}
#: The most choices one request may ask for (each is a generation of its own).
MAX_CHOICES = 8


def lone_surrogate(text: str) -> bool:
    """A string JSON can carry (``"\\ud800"``) but that is not text (it cannot be encoded as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_text(value: Any, where: str) -> None:
    if isinstance(value, str):
        if lone_surrogate(value):
            raise ValueError(f"{where} holds a lone UTF-16 surrogate (e.g. \\ud800), which is not valid text")
    elif isinstance(value, dict):
        for v in value.values():
            _check_text(v, where)
    elif isinstance(value, list):
        for v in value:
            _check_text(v, where)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class GenerationRequest(SamplingParams):
    """What every generation route takes: sampling fields, a preset, streaming or not."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    model: str | None = Field(
        None,
        description="The loaded model to answer (GET /v1/models lists them). With one model loaded, any name that is not another model of the models folder goes to it.",
    )
    stream: bool = False
    preset: str | None = Field(None, description="Start from this preset's values.")
    n: int = Field(1, ge=1, le=MAX_CHOICES, description=f"How many answers to generate (1-{MAX_CHOICES}).")
    stream_options: StreamOptions | None = None

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> GenerationRequest:
        for name in self.model_extra or {}:
            if name in UNSUPPORTED_FIELDS and (self.model_extra or {}).get(name) not in (None, 1, [], {}):
                raise ValueError(f"{name}: {UNSUPPORTED_FIELDS[name]}")
        return self

    def ignored_fields(self) -> list[str]:
        """Fields sent that this server does not use (for the response header): unknown ones, known
        harmless ones, and unsupported ones sent empty (``logit_bias: {}`` asks for nothing)."""
        return sorted(self.model_extra or {})

    def unknown_fields(self) -> list[str]:
        """Ignored fields that are not known to be harmless (worth a line in the log)."""
        return [k for k in self.ignored_fields() if k not in HARMLESS_FIELDS and k not in UNSUPPORTED_FIELDS]


class CompletionRequest(GenerationRequest):
    prompt: str | list[str]
    logprobs: int | None = Field(None, ge=0, le=20, description="Logprobs of each token and this many alternatives.")
    echo: bool = Field(False, description="Return the prompt before the completion (with its logprobs if asked).")

    @field_validator("prompt")
    @classmethod
    def _text(cls, value: Any) -> Any:
        _check_text(value, "prompt")
        return value


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    arguments: str = "{}"


class ToolCallParam(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """A message: ``content`` is text or a list of parts (text parts joined; image parts become markers)."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = ""
    name: str | None = None
    tool_calls: list[ToolCallParam] | None = None
    tool_call_id: str | None = None

    @field_validator("content")
    @classmethod
    def _parts(cls, value: Any) -> Any:
        _check_text(value, "content")
        if isinstance(value, list):
            for i, part in enumerate(value):
                kind = part.get("type")
                if kind in ("image_url", "input_image"):
                    if _image_url(part) is None:
                        raise ValueError(
                            f"content[{i}] is an image part without a URL: "
                            "{'type': 'image_url', 'image_url': {'url': 'data:image/png;base64,...'}}"
                        )
                    continue
                if kind in ("input_audio", "file", "audio", "image"):
                    raise ValueError(f"content[{i}] is a {kind} part: only text and image_url parts are supported")
                if kind != "text" or not isinstance(part.get("text"), str):
                    raise ValueError(f"content[{i}] must be a text part: {{'type': 'text', 'text': '...'}}")
        return value

    def text(self) -> str:
        return self.content_and_images()[0]

    def content_and_images(self) -> tuple[str, list[str]]:
        """The text, with an ``IMAGE_MARKER`` where each image part is, and the images' URLs in order."""
        if not isinstance(self.content, list):
            return (self.content or "").replace(IMAGE_MARKER, "<_media_>"), []
        pieces: list[str] = []
        urls: list[str] = []
        for part in self.content:
            url = _image_url(part)
            if url is not None:
                urls.append(url)
                pieces.append(IMAGE_MARKER + "\n")
            else:
                # Text that happens to hold the marker must not take an image's place.
                pieces.append(str(part.get("text", "")).replace(IMAGE_MARKER, "<_media_>"))
        return "".join(pieces), urls


def _image_url(part: dict[str, Any]) -> str | None:
    """The URL of an image part (``image_url``: ``{"url": ...}`` or a string; ``input_image`` likewise)."""
    if part.get("type") not in ("image_url", "input_image"):
        return None
    value = part.get("image_url")
    if isinstance(value, dict):
        value = value.get("url")
    return value if isinstance(value, str) and value else None


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class ToolParam(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"]
    function: FunctionDef


class ChatCompletionRequest(GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    character: str | None = Field(
        None,
        description="A character from characters/: its context becomes the "
        "system prompt (unless the messages bring their own).",
    )
    system_prompt: str | None = Field(
        None, description="A system prompt to send first (unless the messages bring their own)."
    )
    max_completion_tokens: int | None = Field(None, ge=1, le=32768, description="The same as max_tokens.")
    tools: list[ToolParam] | None = None
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    response_format: dict[str, Any] | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    reasoning_format: Literal["auto", "deepseek", "none", "split", "inline"] = Field(
        "auto",
        description="Where a reasoning model's thinking goes: 'auto' / 'deepseek' / 'split' put it in "
        "reasoning_content; 'none' / 'inline' leave it in content.",
    )
    reasoning_effort: Literal["low", "medium", "high"] | None = None
    chat_template_kwargs: dict[str, Any] | None = Field(
        None, description="Values for the chat template; enable_thinking (true/false) is the one used."
    )
    tool_format: str | None = Field(
        None, description="Override the tool-call format read from the template (hermes, llama3, mistral...)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        if self.chat_template_kwargs:
            unknown = sorted(set(self.chat_template_kwargs) - {"enable_thinking"})
            if unknown:
                raise ValueError(f"chat_template_kwargs: only enable_thinking is supported, not {', '.join(unknown)}")
        return self

    def ignored_fields(self) -> list[str]:
        # An image part's "detail" (low / high) changes nothing here: every image is scaled to at most
        # 2048 px and the model's own preprocessor decides its tiles. Said, not dropped silently.
        detail = any(
            isinstance(part.get("image_url"), dict) and part["image_url"].get("detail") not in (None, "auto")
            for m in self.messages
            if isinstance(m.content, list)
            for part in m.content
        )
        return super().ignored_fields() + (["messages[].content[].image_url.detail"] if detail else [])


class UnloadModelRequest(BaseModel):
    #: The loaded model to free (None: every loaded model).
    model_name: str | None = None


class LoadModelRequest(BaseModel):
    """``options`` are load options (``n_ctx``, ``draft_model``...); text-generation-webui's clients send them
    as ``args``, which is taken too. Any other field is refused, not dropped."""

    model_config = ConfigDict(extra="forbid")

    model_name: str
    loader: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _args_are_options(self) -> LoadModelRequest:
        if self.args:
            self.options = {**self.args, **self.options}
            self.args = {}
        return self
