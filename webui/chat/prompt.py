"""Conversations: prompt building per mode, context truncation, and one chat turn.

Modes, as text-generation-webui defines them:
- ``instruct``: the messages go through the model's chat template (system prompt first).
- ``chat``: a plain transcript ``Name: text`` after the character's context; the model
  writes the character's next line.
- ``chat-instruct``: that transcript wrapped in an instruction ("Continue the chat dialogue
  below...") sent through the chat template.

Truncation drops whole old turns, in steps, and remembers where the kept part starts
(``Chat.context_start``), so the prompt prefix stays the same from one turn to the next and
llama.cpp reuses its KV cache (DESIGN.md rule 7). The system prompt and character are
always kept.

A character card adds to this: its ``system_prompt`` replaces the System prompt box (unless
empty), fired lorebook entries go before/after the character's description, and its
``post_history_instructions`` go after the history, right before the reply. ``Prompt.lore``
says which lorebook entries fired, for the prompt view.

A reasoning model's thinking is kept with its reply (``Message.reasoning``) and never sent back:
only the replies are.

Tools (instruct mode): ``ChatOptions.tools`` are the tools the model may call and
``ChatOptions.tool_format`` the format it writes calls in (chosen for the model on the generation
thread). Earlier calls and their results go to the template through its tool roles when it has
them, written out as the model writes them otherwise - the same conversion as the API's
(``webui.agents.engine.messages_for_template``). ``ChatOptions.thinking`` reaches templates that read ``enable_thinking``;
``Prompt.reasoning`` / ``Prompt.thinking_open`` tell the turn how to split the output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from webui.agents.engine import messages_for_template
from webui.agents.formats import ToolFormat, template_handles_tools
from webui.agents.reasoning import (
    THINK,
    ReasoningStyle,
    closes_in_prompt,
    opens_in_prompt,
    reasoning_style,
    template_reads,
)
from webui.agents.types import ToolSpec
from webui.attachments.types import IMAGE_MARKER, ImageInput
from webui.catalogue import Keyed
from webui.characters.character import Character
from webui.characters.lorebook import MAX_SCAN_DEPTH, NOTHING, Activation, activate
from webui.chat.attachments import Materials, message_text
from webui.chat.history import Chat, Message
from webui.errors import ConversationRejectedError, PromptTooLongError

Mode = Literal["instruct", "chat", "chat-instruct"]
MODES: tuple[str, ...] = ("instruct", "chat", "chat-instruct")
DEFAULT_CHAT_INSTRUCT = (
    'Continue the chat dialogue below. Write a single reply for the character "<|character|>".\n\n<|prompt|>'
)


class Template(Protocol):
    @property
    def stop_strings(self) -> list[str]:
        """What ends the assistant's turn in this template (stop strings for a model not trained on it)."""

    def render(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True, **extra: Any) -> str: ...


@dataclass
class Persona:
    """Who the user is in a chat: a name and, optionally, a short description."""

    name: str = "You"
    description: str = ""


@dataclass
class ChatOptions:
    mode: Mode = "instruct"
    system_prompt: str = ""
    persona: Persona = field(default_factory=Persona)
    chat_instruct_command: str = DEFAULT_CHAT_INSTRUCT
    #: A reasoning model thinks first (True) or not (False), for templates that read ``enable_thinking``;
    #: None: the template's default.
    thinking: bool | None = None
    #: Tools the model may call in this reply (instruct mode), and the format it writes calls in.
    tools: list[ToolSpec] = field(default_factory=list)
    tool_format: ToolFormat | None = None


@dataclass
class Prompt:
    text: str
    stop: list[str]
    tokens: int
    #: Messages of the chat left out because the context is full (the oldest ones).
    dropped: int
    #: The lorebook entries that fired for this prompt.
    lore: Activation = field(default_factory=lambda: NOTHING)
    #: The context the prompt was fitted into: the model's, or ``truncation_length`` when smaller.
    n_ctx: int = 0
    #: True when the token count is an estimate (a server without a tokenize endpoint).
    tokens_estimated: bool = False
    #: Which chat template made the prompt, and why (a ``Keyed`` line for the UI).
    template_note: str = ""
    #: How the model marks its thinking (read off the template), and whether the prompt (before the
    #: reply prefix) already opened a thinking block (the output starts as thinking) or ended with a
    #: closed one (thinking switched off: the output is all answer).
    reasoning: ReasoningStyle = THINK
    thinking_open: bool = False
    thinking_closed: bool = False
    #: What the reply was made to start with (the turn splits it with the output).
    reply_prefix: str = ""
    #: The tools offered in this prompt and the format their calls are parsed in (None: no tools).
    tools: list[ToolSpec] = field(default_factory=list)
    tool_format: ToolFormat | None = None
    #: The images of the kept messages, in the order of their markers in ``text``.
    images: list[ImageInput] = field(default_factory=list)

    @property
    def note(self) -> str:
        if not self.dropped:
            return ""
        return Keyed(
            f"{self.dropped} oldest messages no longer fit in the context and are not sent.",
            "chat.note_dropped",
            n=self.dropped,
        )


def _system_text(character: Character, options: ChatOptions, lore: Activation = NOTHING) -> str:
    user = options.persona.name
    parts = [
        character.system_prompt_with(options.system_prompt, user).strip(),
        character.system_text(user, lore_before=lore.text("before"), lore_after=lore.text("after")),
    ]
    if options.persona.description.strip():
        parts.append(f"{user}: {options.persona.description.strip()}")
    return "\n\n".join(p for p in parts if p)


def _transcript(
    messages: list[Message], character: Character, options: ChatOptions, lore: Activation, system: str
) -> str:
    """``Name: text`` lines after the character (and ``system`` on top, which may be empty)."""
    user = options.persona.name
    names = {"user": user, "assistant": character.name}
    lines = [f"{names[m.role]}: {m.content}" for m in messages if m.role in names]
    head = "\n\n".join(
        p
        for p in (
            system.strip(),
            _system_text(replace(character, system_prompt=""), ChatOptions(persona=options.persona), lore),
        )
        if p
    )
    after = character.fill(character.post_history_instructions, user).strip()
    return "\n".join(([head] if head else []) + lines + ([after] if after else []))


def render(
    messages: list[Message],
    character: Character,
    options: ChatOptions,
    template: Template,
    reply_prefix: str = "",
    lore: Activation = NOTHING,
) -> tuple[str, list[str]]:
    """The prompt text and the stop strings for ``messages`` (the kept part of a chat)."""
    user, char = options.persona.name, character.name
    if options.mode == "instruct":
        msgs = [{"role": "system", "content": s} for s in [_system_text(character, options, lore)] if s]
        msgs += [_message_dict(m) for m in messages if m.role in ("user", "assistant", "tool")]
        after = character.fill(character.post_history_instructions, user).strip()
        if after:
            _add_after_history(msgs, after)
        if options.tool_format is not None:
            handles = template_handles_tools(getattr(template, "source", None))
            msgs = messages_for_template(msgs, options.tool_format, handles, options.tools)
        return _render_folding_system(template, msgs, options) + reply_prefix, list(template.stop_strings)
    stops = [f"\n{user}:", f"\n{char}:"]
    if options.mode == "chat":
        # The System prompt box is not used in chat mode (as before); a card's own system prompt is.
        transcript = _transcript(messages, character, options, lore, character.system_prompt_with("", user))
        return f"{transcript}\n{char}:" + (f" {reply_prefix}" if reply_prefix else ""), stops
    transcript = _transcript(messages, character, options, lore, "")
    command = options.chat_instruct_command.replace("<|character|>", char).replace("<|prompt|>", transcript)
    system = character.system_prompt_with(options.system_prompt, user).strip()
    msgs = [{"role": "system", "content": s} for s in [system] if s]
    msgs.append({"role": "user", "content": command})
    return _render_folding_system(template, msgs, options) + reply_prefix, [*stops, *template.stop_strings]


def _message_dict(m: Message) -> dict[str, Any]:
    """A stored message as the OpenAI-shaped dict templates (and the tool conversion) take."""
    d: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        d["tool_calls"] = [dict(c) for c in m.tool_calls]
    if m.role == "tool":
        d["tool_call_id"], d["name"] = m.tool_call_id, m.name
    return d


def _add_after_history(msgs: list[dict], text: str) -> None:
    """Put ``text`` after the history: appended to the last user message (every template accepts that)."""
    for m in reversed(msgs):
        if m["role"] == "user":
            m["content"] = f"{m['content']}\n\n{text}"
            return
        if m["role"] == "assistant":
            break
    msgs.append({"role": "user", "content": text})


def template_kwargs(template: Template, options: ChatOptions) -> dict[str, Any]:
    """The extra variables the template is rendered with: ``enable_thinking`` when it reads it and the
    chat chose (the Chat tab shows its Thinking switch only for such templates)."""
    extra: dict[str, Any] = {}
    source = getattr(template, "source", None)
    if options.thinking is not None and template_reads(source, "enable_thinking"):
        extra["enable_thinking"] = options.thinking
    if options.tools and options.tool_format is not None and template_handles_tools(source):
        extra["tools"] = [t.openai() for t in options.tools]
    return extra


def _render_folding_system(template: Template, msgs: list[dict], options: ChatOptions) -> str:
    """Render; a template that refuses system messages gets the system text in the first user turn."""
    extra = template_kwargs(template, options)
    try:
        return template.render(msgs, add_generation_prompt=True, **extra)
    except ConversationRejectedError:
        if not msgs or msgs[0]["role"] != "system":
            raise
        system, rest = msgs[0]["content"], msgs[1:]
        for i, m in enumerate(rest):
            if m["role"] == "user":
                rest = [*rest[:i], {"role": "user", "content": f"{system}\n\n{m['content']}"}, *rest[i + 1 :]]
                break
        return template.render(rest, add_generation_prompt=True, **extra)


def context_limit(n_ctx: int, truncation_length: int) -> int:
    """The context a chat prompt must fit: the model's, or ``truncation_length`` when that is smaller.

    A chat prompt is never cut from the front by the loader (that would drop the system prompt
    and move the prefix every turn); ``truncation_length`` shrinks the budget of whole turns instead.
    """
    return min(n_ctx, truncation_length) if truncation_length > 0 else n_ctx


def build_prompt(
    chat: Chat,
    history: list[Message],
    character: Character,
    options: ChatOptions,
    template: Template,
    *,
    n_ctx: int,
    max_new_tokens: int,
    tokenize: Callable[[str], list[int]],
    reply_prefix: str = "",
    materials: Callable[[Message], Materials] | None = None,
    image_tokens: Callable[[ImageInput], int] | None = None,
) -> Prompt:
    """Render the prompt for ``history`` (the chat's messages up to the reply being written).

    ``materials`` reads a message's attachments back (documents' text and images); each image
    counts as ``image_tokens(image)`` tokens in place of its marker.

    When it does not fit in ``n_ctx - max_new_tokens``, the oldest whole turns are dropped
    in steps of about a quarter of the kept messages, and ``chat.context_start`` remembers
    the new start so the next turns begin with the same prefix.
    """
    # Room for the reply: max_new_tokens, but never more than half the context (a long reply is
    # then cut at the context end instead of making every prompt impossible).
    budget = max(1, n_ctx - min(max_new_tokens, n_ctx // 2))
    history, images_of = _with_attachments(history, materials)
    marker_tokens = len(tokenize(IMAGE_MARKER)) - len(tokenize("")) if any(images_of) else 0
    start = min(chat.context_start, _last_user_index(history))
    # The lorebook looks at the newest messages only, which truncation never drops.
    lore = activate(
        character.character_book,
        [m.content for m in history[-MAX_SCAN_DEPTH:]],
        count_tokens=lambda t: len(tokenize(t)),
        default_budget=max(64, n_ctx // 4),
    )
    while True:
        text, stops = render(history[start:], character, options, template, reply_prefix, lore)
        images = [image for kept in images_of[start:] for image in kept]
        n = len(tokenize(text))
        if images:
            n += sum((image_tokens(i) if image_tokens is not None else 0) - marker_tokens for i in images)
        if n <= budget:
            chat.context_start = start
            style = reasoning_style(getattr(template, "source", None)) or THINK
            rendered = text[: len(text) - len(reply_prefix)] if reply_prefix and text.endswith(reply_prefix) else text
            return Prompt(
                text,
                stops,
                n,
                start,
                lore,
                n_ctx=n_ctx,
                reasoning=style,
                thinking_open=opens_in_prompt(style, rendered),
                thinking_closed=closes_in_prompt(style, rendered),
                reply_prefix=reply_prefix,
                tools=list(options.tools) if options.tool_format is not None else [],
                tool_format=options.tool_format if options.tools else None,
                images=images,
            )
        nxt = _next_turn(history, start + max(2, (len(history) - start) // 4))
        if nxt is None or nxt > _last_user_index(history):
            raise PromptTooLongError(n, n_ctx)
        start = nxt


def _with_attachments(
    history: list[Message], materials: Callable[[Message], Materials] | None
) -> tuple[list[Message], list[list[ImageInput]]]:
    """``history`` with each message's attachments written into its text, and each message's images."""
    if materials is None or not any(m.attachments for m in history):
        return history, [[] for _ in history]
    out: list[Message] = []
    images: list[list[ImageInput]] = []
    for m in history:
        # Text that happens to hold the marker must not take an image's place.
        typed = m.content.replace(IMAGE_MARKER, "<_media_>")
        found = materials(m) if m.attachments else Materials()
        out.append(replace(m, content=message_text(found, typed)) if m.attachments or typed != m.content else m)
        images.append(list(found.images))
    return out, images


def _last_user_index(history: list[Message]) -> int:
    for i in range(len(history) - 1, -1, -1):
        if history[i].role == "user":
            return i
    return 0


def _next_turn(history: list[Message], index: int) -> int | None:
    """The first user message at or after ``index`` (a turn boundary)."""
    for i in range(index, len(history)):
        if history[i].role == "user":
            return i
    return None
